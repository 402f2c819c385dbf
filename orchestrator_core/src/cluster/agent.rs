//! [`NodeAgent`]: every daemon of a cluster is its machine's agent (the shape of the kubelet,
//! a Nomad client or a Swarm agent). It registers its node, keeps its member record alive under
//! the daemon's lease, follows the assignments of its node in the store, realizes them with the
//! local runtime and reports what it observes.
//!
//! Each container has a slot holding what is wanted of it (its assignment, or nothing) and a
//! generation that bumps on every change; one worker per slot acts until what it acted on is
//! still what is wanted (level-triggered, like the core's workloads). Work is bounded by a
//! semaphore.
//!
//! After a restart the agent adopts the containers its runtime still runs that an assignment
//! names, and removes the others; an assignment whose container is gone is reported killed,
//! so the leader applies the restart policy rather than the agent re-running it behind its back.

use super::fence::StopAll;
use super::records::{node_prefix, Assignment, ContainerReport, MemberRecord};
use super::RECONNECT;
use crate::backoff::Backoff;
use container_runtime_interface::{ContainerRuntime, ContainerState, Health, RuntimeError};
use orchestrator_shared_types::{ContainerId, Node, NodeId};
use state_store_interface::{
    decode_event, typed::put_op, Coordination, Kind, LeaseId, Op, Precondition, StateStore,
    StoreError, StoreExt, StoredObject,
};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, watch, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Settings of a [`NodeAgent`].
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// This machine as a node; its `address` is where other daemons reach this one.
    pub node: Node,
    /// Most container operations at once.
    pub max_parallel: usize,
    /// How often assignments and local containers are compared in full, whatever the watch
    /// said.
    pub resync_interval: Duration,
    /// Grace period of a container whose assignment was removed while it ran.
    pub remove_grace: Duration,
    /// Where this daemon gossips, if it does (written in its member record).
    pub gossip_address: Option<String>,
}

impl AgentConfig {
    /// Defaults for `node`.
    pub fn new(node: Node) -> Self {
        Self {
            node,
            max_parallel: 16,
            resync_interval: Duration::from_secs(30),
            remove_grace: Duration::from_secs(10),
            gossip_address: None,
        }
    }
}

/// A running node agent; see the module docs. Dropping it does not stop it: call
/// [`NodeAgent::shutdown`].
pub struct NodeAgent {
    shared: Arc<Shared>,
}

struct Shared {
    node: NodeId,
    store: Arc<dyn StateStore>,
    runtime: Arc<dyn ContainerRuntime>,
    config: AgentConfig,
    slots: Mutex<HashMap<ContainerId, Slot>>,
    permits: Semaphore,
    tasks: TaskTracker,
    cancel: CancellationToken,
}

#[derive(Default)]
struct Slot {
    /// What is wanted: the assignment, or `None` (remove the container).
    wanted: Option<Assignment>,
    generation: u64,
    busy: bool,
    /// The assignment whose container was started (or adopted).
    started: Option<String>,
    /// A stop was carried out for `started`.
    stopped: bool,
}

impl NodeAgent {
    /// Registers this node (its record, and its member record whenever `lease` holds one),
    /// adopts what the local runtime runs and starts following the node's assignments.
    pub async fn start(
        config: AgentConfig,
        store: Arc<dyn Coordination>,
        runtime: Arc<dyn ContainerRuntime>,
        lease: watch::Receiver<Option<LeaseId>>,
    ) -> Result<Self, StoreError> {
        let node = config.node.id.clone();
        store.put_obj(&config.node, Precondition::None).await?;
        let shared = Arc::new(Shared {
            node,
            store: store.clone(),
            runtime,
            permits: Semaphore::new(config.max_parallel.max(1)),
            config,
            slots: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
            cancel: CancellationToken::new(),
        });
        let events = shared.runtime.subscribe();
        let revision = shared.resync(true).await?;
        let this = Self { shared };
        let s = &this.shared;
        s.tasks.spawn(register(s.clone(), store, lease));
        s.tasks.spawn(follow_assignments(s.clone(), revision));
        s.tasks.spawn(follow_runtime(s.clone(), events));
        Ok(this)
    }

    /// What [`super::fence::self_fence`] acts on: this agent's containers.
    pub fn fencing(&self) -> Arc<dyn StopAll> {
        self.shared.clone()
    }

    /// Stops following and waits for the operations in flight. Containers keep running (the
    /// next start adopts them) and the member record lives until the lease ends.
    pub async fn shutdown(self) {
        self.shared.cancel.cancel();
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
    }
}

/// Keeps the member record under the current lease: written again whenever a new lease is
/// granted (after the old one was lost).
async fn register(
    s: Arc<Shared>,
    store: Arc<dyn Coordination>,
    mut lease: watch::Receiver<Option<LeaseId>>,
) {
    let member = MemberRecord {
        node: s.node.clone(),
        address: s.config.node.address.clone(),
        gossip: s.config.gossip_address.clone(),
    };
    let value = serde_json::to_vec(&member).expect("member records serialize");
    let key = member.key();
    loop {
        let current = *lease.borrow_and_update();
        if let Some(id) = current {
            let mut backoff = Backoff::new(RECONNECT);
            loop {
                let put =
                    store.put_leased(Kind::Cluster, &key, value.clone(), id, Precondition::None);
                match put.await {
                    Ok(_) => {
                        tracing::info!(node = %s.node, lease = id, "registered as a live member");
                        break;
                    }
                    Err(StoreError::LeaseExpired { .. }) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "registering the member failed; retrying");
                        if !super::retry_after(&mut backoff, Duration::ZERO, &s.cancel).await {
                            return;
                        }
                    }
                }
            }
        }
        tokio::select! {
            () = s.cancel.cancelled() => return,
            changed = lease.changed() => if changed.is_err() { return },
        }
    }
}

/// Follows the node's assignments through the store's watch; re-lists after a gap and every
/// `resync_interval`.
async fn follow_assignments(s: Arc<Shared>, mut revision: u64) {
    let prefix = node_prefix(&s.node);
    let mut backoff = Backoff::new(RECONNECT);
    loop {
        let opened = std::time::Instant::now();
        match s
            .store
            .watch_prefix(revision, Kind::Assignment, &prefix)
            .await
        {
            Ok(mut watch) => {
                let resync = tokio::time::sleep(s.config.resync_interval);
                tokio::pin!(resync);
                loop {
                    let next = tokio::select! {
                        () = s.cancel.cancelled() => return,
                        () = &mut resync => break,
                        next = watch.next() => next,
                    };
                    match next {
                        Some(Ok(event)) => {
                            if !event.key.starts_with(&prefix) {
                                continue;
                            }
                            match decode_event::<Assignment>(&event) {
                                Ok(wanted) => {
                                    let id = ContainerId::from(&event.key[prefix.len()..]);
                                    s.want(id, wanted);
                                }
                                Err(e) => {
                                    tracing::error!(error = %e, "an assignment does not decode")
                                }
                            }
                        }
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "the watch of assignments ended; re-listing");
                            break;
                        }
                        None => break,
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "watching assignments failed"),
        }
        let mut healthy_for = opened.elapsed();
        loop {
            match s.resync(false).await {
                Ok(listed) => {
                    revision = listed;
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "re-listing assignments failed");
                    if !super::retry_after(&mut backoff, healthy_for, &s.cancel).await {
                        return;
                    }
                    healthy_for = Duration::ZERO;
                }
            }
        }
    }
}

/// Most reports written in one batch (etcd refuses transactions of more than 128 operations by
/// default).
const REPORT_BATCH: usize = 100;

/// Turns the local runtime's container events into reports. Events are the one source of a
/// started container's state, taken in the runtime's order, so a report never goes back to an
/// older state; whatever has queued up is written in batches (one store round trip for many
/// containers when hundreds start at once).
async fn follow_runtime(
    s: Arc<Shared>,
    mut events: broadcast::Receiver<container_runtime_interface::ContainerEvent>,
) {
    loop {
        let first = tokio::select! {
            () = s.cancel.cancelled() => return,
            e = events.recv() => e,
        };
        let mut batch = Vec::new();
        let mut next = first;
        loop {
            match next {
                Ok(event) if event.node_id == s.node => batch.push(event),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    tracing::warn!("missed container events; re-reading every container");
                    s.report_all().await;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
            if batch.len() >= REPORT_BATCH {
                break;
            }
            next = match events.try_recv() {
                Ok(e) => Ok(e),
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    Err(broadcast::error::RecvError::Lagged(n))
                }
                Err(_) => break,
            };
        }
        // The last event of a container in the batch is its state.
        let mut reports: HashMap<ContainerId, ContainerReport> = HashMap::new();
        for event in batch {
            if let Some(a) = s.started_assignment(&event.container_id) {
                reports.insert(
                    event.container_id,
                    report_of(&s.node, &a, event.state, event.health),
                );
            }
        }
        if reports.is_empty() {
            continue;
        }
        let ops = reports
            .values()
            .map(|r| put_op(r, Precondition::None))
            .collect();
        if let Err(e) = s.store.commit(ops).await {
            tracing::warn!(error = %e, "writing container reports failed; re-reading every container");
            s.report_all().await;
        }
    }
}

fn report_of(
    node: &NodeId,
    a: &Assignment,
    state: ContainerState,
    health: Option<Health>,
) -> ContainerReport {
    ContainerReport {
        node: node.clone(),
        id: a.spec.id.clone(),
        instance_id: a.spec.instance_id.clone(),
        workload_id: a.spec.workload_id.clone(),
        state,
        health,
        assignment_uid: a.uid.clone(),
    }
}

impl Shared {
    /// Reports the state of every started container, read from the runtime (after missed
    /// events or a failed write).
    async fn report_all(&self) {
        let ids: Vec<ContainerId> = {
            let slots = self.slots.lock().expect("slots lock");
            slots.keys().cloned().collect()
        };
        for id in ids {
            let Some(a) = self.started_assignment(&id) else {
                continue;
            };
            if let Ok(info) = self.runtime.status(&self.node, &id).await {
                self.report(&a, info.state, info.health).await;
            }
        }
    }

    /// The assignment of `id` whose container was started (or adopted), if it is still wanted.
    fn started_assignment(&self, id: &ContainerId) -> Option<Assignment> {
        let slots = self.slots.lock().expect("slots lock");
        let slot = slots.get(id)?;
        let a = slot.wanted.as_ref()?;
        (slot.started.as_deref() == Some(a.uid.as_str())).then(|| a.clone())
    }

    /// Compares the node's assignments with the local containers and acts on every difference.
    /// At start-up (`adopt`), containers already running for an assignment are adopted, and an
    /// assignment whose container is gone although it was reported is reported killed. Returns
    /// the revision the assignments were listed at.
    async fn resync(self: &Arc<Self>, adopt: bool) -> Result<u64, StoreError> {
        let revision = self.store.revision().await?;
        let prefix = node_prefix(&self.node);
        // Listed before the assignments: a report listed here whose assignment is not listed
        // next was left by an assignment removed while this agent did not follow (it was down,
        // or between two watches). Nothing else deletes it, and the leader waits for its
        // deletion before it forgets the container.
        let reported: Vec<ContainerId> = self
            .store
            .list_obj::<ContainerReport>(&prefix)
            .await?
            .into_iter()
            .map(|r| r.value.id)
            .collect();
        let assignments = self.store.list_obj::<Assignment>(&prefix).await?;
        let local = match self.runtime.list(&self.node).await {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(error = %e, "listing local containers failed");
                Vec::new()
            }
        };
        let running: HashMap<ContainerId, ContainerState> =
            local.into_iter().map(|c| (c.id, c.state)).collect();
        let assigned: HashSet<ContainerId> = assignments
            .iter()
            .map(|a| a.value.spec.id.clone())
            .collect();
        if adopt {
            let reports: HashMap<ContainerId, ContainerReport> = self
                .store
                .list_obj::<ContainerReport>(&prefix)
                .await?
                .into_iter()
                .map(|r| (r.value.id.clone(), r.value))
                .collect();
            for a in &assignments {
                let id = &a.value.spec.id;
                let reported = reports.get(id).filter(|r| r.assignment_uid == a.value.uid);
                let adopted = if let Some(state) = running.get(id) {
                    self.report(&a.value, state.clone(), None).await;
                    true
                } else if reported.is_some_and(|r| !r.state.has_exited()) {
                    let state = ContainerState::Killed {
                        code: 137,
                        reason: "the container was gone when its node's agent started".into(),
                    };
                    self.report(&a.value, state, None).await;
                    true
                } else {
                    reported.is_some()
                };
                if adopted {
                    let mut slots = self.slots.lock().expect("slots lock");
                    let slot = slots.entry(id.clone()).or_default();
                    slot.started = Some(a.value.uid.clone());
                    slot.stopped = a.value.stop_grace_ms.is_some()
                        && reported.is_some_and(|r| r.state.has_exited());
                }
            }
        }
        for a in assignments {
            self.want(a.value.spec.id.clone(), Some(a.value));
        }
        let known: Vec<ContainerId> = {
            let slots = self.slots.lock().expect("slots lock");
            slots.keys().cloned().collect()
        };
        for id in known.into_iter().chain(running.into_keys()).chain(reported) {
            if !assigned.contains(&id) {
                self.want(id, None);
            }
        }
        Ok(revision)
    }

    /// Records what is wanted of container `id`; starts its worker unless one runs.
    fn want(self: &Arc<Self>, id: ContainerId, wanted: Option<Assignment>) {
        {
            let mut slots = self.slots.lock().expect("slots lock");
            let slot = slots.entry(id.clone()).or_default();
            if slot.wanted == wanted && (slot.generation > 0 || slot.busy) {
                return;
            }
            slot.wanted = wanted;
            slot.generation += 1;
            if slot.busy {
                return;
            }
            slot.busy = true;
        }
        let this = self.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                () = this.cancel.cancelled() => {}
                () = this.work(id) => {}
            }
        });
    }

    /// Acts on `id` until what it acted on is still what is wanted.
    async fn work(self: &Arc<Self>, id: ContainerId) {
        let _permit = self.permits.acquire().await;
        loop {
            let (wanted, generation, started, stopped) = {
                let slots = self.slots.lock().expect("slots lock");
                let Some(slot) = slots.get(&id) else { return };
                (
                    slot.wanted.clone(),
                    slot.generation,
                    slot.started.clone(),
                    slot.stopped,
                )
            };
            let (started, stopped) = self.act(&id, wanted.as_ref(), started, stopped).await;
            let mut slots = self.slots.lock().expect("slots lock");
            let Some(slot) = slots.get_mut(&id) else {
                return;
            };
            slot.started = started;
            slot.stopped = stopped;
            if slot.generation == generation {
                slot.busy = false;
                if slot.wanted.is_none() {
                    slots.remove(&id);
                }
                return;
            }
        }
    }

    /// One step toward `wanted`; returns the new `(started, stopped)`.
    async fn act(
        &self,
        id: &ContainerId,
        wanted: Option<&Assignment>,
        started: Option<String>,
        stopped: bool,
    ) -> (Option<String>, bool) {
        let node = &self.node;
        let Some(a) = wanted else {
            let _ = self.stop(id, self.config.remove_grace).await;
            match self.runtime.remove(node, id).await {
                // Gone already (e.g. with the previous run of this daemon): only its report
                // is left.
                Ok(()) | Err(RuntimeError::NotFound { .. }) => {}
                Err(e) => {
                    tracing::warn!(container = %id, error = %e, "removing a container failed")
                }
            }
            let key = super::records::container_key(node, id);
            let delete = Op::Delete {
                kind: Kind::ContainerStatus,
                key,
                precondition: Precondition::None,
            };
            if let Err(e) = self.store.commit(vec![delete]).await {
                tracing::warn!(container = %id, error = %e, "deleting a container's report failed");
            }
            return (None, false);
        };
        if started.as_deref() != Some(a.uid.as_str()) {
            if a.stop_grace_ms.is_some() {
                // Stopped before it ever started.
                self.report(a, ContainerState::Exited { code: 0 }, None)
                    .await;
                return (Some(a.uid.clone()), true);
            }
            // Marked started first: the runtime's events about it (Running, an early exit)
            // are reported by `follow_runtime` from now on.
            self.mark_started(id, &a.uid);
            match self.runtime.create_and_start(node, &a.spec).await {
                Ok(()) => {}
                // Adopted (e.g. the agent restarted mid-start): no event will say its state.
                Err(RuntimeError::AlreadyExists { .. }) => {
                    if let Ok(info) = self.runtime.status(node, id).await {
                        self.report(a, info.state, info.health).await;
                    }
                }
                Err(e) => {
                    let state = ContainerState::Failed {
                        message: e.to_string(),
                    };
                    self.report(a, state, None).await;
                }
            }
            return (Some(a.uid.clone()), false);
        }
        if let Some(grace_ms) = a.stop_grace_ms {
            if !stopped {
                // The runtime's exit event reports it; a container the runtime lost has none.
                if !self.stop(id, Duration::from_millis(grace_ms)).await {
                    let state = ContainerState::Killed {
                        code: 137,
                        reason: "the container was gone when it was stopped".into(),
                    };
                    self.report(a, state, None).await;
                }
                return (started, true);
            }
        }
        (started, stopped)
    }

    /// Records that `uid`'s container is being started.
    fn mark_started(&self, id: &ContainerId, uid: &str) {
        let mut slots = self.slots.lock().expect("slots lock");
        if let Some(slot) = slots.get_mut(id) {
            slot.started = Some(uid.to_owned());
            slot.stopped = false;
        }
    }

    /// Stops container `id`; returns `false` if the runtime does not know it.
    async fn stop(&self, id: &ContainerId, grace: Duration) -> bool {
        match self.runtime.stop(&self.node, id, grace).await {
            Ok(()) => true,
            Err(RuntimeError::NotFound { .. }) => false,
            Err(e) => {
                tracing::warn!(container = %id, error = %e, "stopping a container failed");
                true
            }
        }
    }

    /// Writes the report of assignment `a`'s container.
    async fn report(&self, a: &Assignment, state: ContainerState, health: Option<Health>) {
        let report = report_of(&self.node, a, state, health);
        if let Err(e) = self.store.put_obj(&report, Precondition::None).await {
            tracing::warn!(container = %report.id, error = %e, "writing a container's report failed");
        }
    }
}

#[async_trait::async_trait]
impl StopAll for Shared {
    /// Kills every running container of this node at once (no grace: the time they keep
    /// running counts toward the bound on a replica running twice). They stay, stopped, until
    /// the store says what to do with them: removed if their assignments are gone, reported
    /// killed (and restarted by the leader under their policy) if not.
    async fn stop_all(&self, reason: &str) {
        let containers = match self.runtime.list(&self.node).await {
            Ok(list) => list,
            Err(e) => {
                tracing::error!(error = %e, "listing local containers to stop them failed");
                return;
            }
        };
        let mut stopped = 0;
        for c in containers.iter().filter(|c| !c.state.has_exited()) {
            if self.stop(&c.id, Duration::ZERO).await {
                stopped += 1;
            }
        }
        tracing::warn!(stopped, %reason, "stopped this node's containers");
    }

    async fn report_all(&self) {
        Shared::report_all(self).await;
    }
}
