//! [`ClusterRuntime`]: the [`ContainerRuntime`] the leader's core drives in a cluster. It runs
//! nothing itself: a start or stop is an assignment written to the store (through the leader's
//! fenced store), which the node's agent realizes; the agent's reports come back through the
//! store's watch as container events. The core does not know which node is local.
//!
//! A start returns once the node's agent reports the container started (or failed), so the
//! core's view of an operation in flight is the same as with a local runtime; it gives up after
//! [`ClusterRuntimeConfig::start_timeout`], or at once when the node's member record disappears
//! (its lease expired).

use super::records::{
    container_key, node_prefix, Assignment, ContainerReport, MemberRecord, MEMBERS_PREFIX,
};
use crate::backoff::Backoff;
use async_trait::async_trait;
use container_runtime_interface::{
    ContainerEvent, ContainerInfo, ContainerRuntime, ContainerSpec, ContainerState, LogChunk,
    LogRequest, RuntimeError,
};
use orchestrator_shared_types::{ContainerId, NodeId};
use state_store_interface::{
    decode_event, typed::put_op, Kind, Op, Precondition, StateStore, StoreError, StoreExt,
    StoredObject,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::{CancellationToken, DropGuard};

/// How long an agent gives a container whose assignment was removed while it ran (see
/// [`super::agent::AgentConfig::remove_grace`]); a removal waits for that plus the slack.
const REMOVE_GRACE: Duration = Duration::from_secs(10);

/// Fetches a container's output from the agent of the node that runs it (its agent API).
#[async_trait]
pub trait RemoteLogs: Send + Sync {
    /// `request` of container `id`, from the daemon reached at `address`.
    async fn logs(
        &self,
        address: &str,
        id: &ContainerId,
        request: LogRequest,
    ) -> Result<LogChunk, RuntimeError>;
}

/// Settings of a [`ClusterRuntime`].
#[derive(Clone, Debug)]
pub struct ClusterRuntimeConfig {
    /// Longest a start waits for the node's report (image pulls included).
    pub start_timeout: Duration,
    /// Added to a stop's grace period: how long a stop waits for the report of the exit.
    pub stop_slack: Duration,
}

impl Default for ClusterRuntimeConfig {
    fn default() -> Self {
        Self {
            start_timeout: Duration::from_secs(600),
            stop_slack: Duration::from_secs(30),
        }
    }
}

/// What a waiting start or stop wants to see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    /// Any report past `Created`.
    Started,
    /// An exit.
    Exited,
    /// The report's deletion: the agent removed the container.
    Gone,
}

struct Waiter {
    node: NodeId,
    /// The assignment whose reports answer.
    uid: String,
    want: Want,
    tx: oneshot::Sender<Result<ContainerState, RuntimeError>>,
}

struct Shared {
    store: Arc<dyn StateStore>,
    /// Assignment writes, batched by `write_batches`.
    writes: mpsc::UnboundedSender<(Op, oneshot::Sender<Result<u64, StoreError>>)>,
    events: broadcast::Sender<ContainerEvent>,
    waiters: Mutex<HashMap<ContainerId, Vec<Waiter>>>,
    /// This daemon's own node and runtime: its logs are read directly.
    local: Option<(NodeId, Arc<dyn ContainerRuntime>)>,
    remote_logs: Arc<dyn RemoteLogs>,
    config: ClusterRuntimeConfig,
    /// Made by [`ClusterRuntime::reader`]: reads only; nothing follows the reports.
    reader: bool,
}

/// The leader's runtime in a cluster; see the module docs.
pub struct ClusterRuntime {
    shared: Arc<Shared>,
    _stop_watching: DropGuard,
}

impl ClusterRuntime {
    /// `node` was fenced (its assignments deleted because it went `Down`): starts waiting for
    /// its agent's report fail now. Its member record may never disappear (a daemon restarted
    /// within its lease's TTL registers again under the same key), and the agent will not
    /// report containers whose assignments are gone, so without this a start would wait for
    /// the whole `start_timeout`, holding its workload's reconciliation.
    pub fn node_fenced(&self, node: &NodeId) {
        self.shared.node_lost(
            node,
            "waiting for the node's report (its assignments were deleted)",
        );
    }

    /// A runtime that writes assignments to `store` (the leader's fenced store) and follows the
    /// agents' reports. Returns once the reports are loaded, so a `list` right after sees
    /// every node's containers. `local` is this daemon's node and runtime.
    pub async fn start(
        store: Arc<dyn StateStore>,
        local: Option<(NodeId, Arc<dyn ContainerRuntime>)>,
        remote_logs: Arc<dyn RemoteLogs>,
        config: ClusterRuntimeConfig,
    ) -> Result<Self, StoreError> {
        let (writes, queued) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            store: store.clone(),
            writes,
            events: broadcast::channel(16_384).0,
            waiters: Mutex::new(HashMap::new()),
            local,
            remote_logs,
            config,
            reader: false,
        });
        let cancel = CancellationToken::new();
        let mut follower = ReportFollower {
            shared: shared.clone(),
            reports: HashMap::new(),
            revision: 0,
        };
        follower.relist().await?;
        tokio::spawn(follower.run(cancel.clone()));
        tokio::spawn(write_batches(store, queued, cancel.clone()));
        Ok(Self {
            shared,
            _stop_watching: cancel.drop_guard(),
        })
    }
}

impl ClusterRuntime {
    /// A runtime that only reads (status, listings, logs from any node), for a daemon's API: no
    /// report follower, no writer, nothing loaded at start. Starts, stops and removals fail.
    pub fn reader(
        store: Arc<dyn StateStore>,
        local: Option<(NodeId, Arc<dyn ContainerRuntime>)>,
        remote_logs: Arc<dyn RemoteLogs>,
    ) -> Self {
        let (writes, _) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        Self {
            shared: Arc::new(Shared {
                store,
                writes,
                events: broadcast::channel(1).0,
                waiters: Mutex::new(HashMap::new()),
                local,
                remote_logs,
                config: ClusterRuntimeConfig::default(),
                reader: true,
            }),
            _stop_watching: cancel.drop_guard(),
        }
    }

    /// Refuses a change when this is a [`ClusterRuntime::reader`].
    fn writable(&self, operation: &'static str) -> Result<&Shared, RuntimeError> {
        if self.shared.reader {
            return Err(RuntimeError::Failed {
                operation,
                message:
                    "this runtime of the API only reads; the leader starts and stops containers"
                        .into(),
                transient: false,
            });
        }
        Ok(&self.shared)
    }
}

impl Shared {
    /// Commits `op` in the next batch of assignment writes.
    async fn write(&self, op: Op) -> Result<u64, StoreError> {
        let (tx, rx) = oneshot::channel();
        if self.writes.send((op, tx)).is_err() {
            return Err(StoreError::Closed);
        }
        rx.await.unwrap_or(Err(StoreError::Closed))
    }

    fn wait(
        &self,
        id: &ContainerId,
        node: &NodeId,
        uid: &str,
        want: Want,
    ) -> oneshot::Receiver<Result<ContainerState, RuntimeError>> {
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .expect("waiters lock")
            .entry(id.clone())
            .or_default()
            .push(Waiter {
                node: node.clone(),
                uid: uid.to_owned(),
                want,
                tx,
            });
        rx
    }

    fn forget_waiters(&self, id: &ContainerId) {
        let mut waiters = self.waiters.lock().expect("waiters lock");
        if let Some(list) = waiters.get_mut(id) {
            list.retain(|w| !w.tx.is_closed());
            if list.is_empty() {
                waiters.remove(id);
            }
        }
    }

    /// Answers the waiters a report satisfies.
    fn answer(&self, report: &ContainerReport) {
        let mut waiters = self.waiters.lock().expect("waiters lock");
        let Some(list) = waiters.get_mut(&report.id) else {
            return;
        };
        let mut kept = Vec::with_capacity(list.len());
        for w in list.drain(..) {
            let satisfied = w.node == report.node
                && report.assignment_uid == w.uid
                && match w.want {
                    Want::Started => report.state != ContainerState::Created,
                    Want::Exited => {
                        report.state.has_exited()
                            || matches!(report.state, ContainerState::Failed { .. })
                    }
                    Want::Gone => false,
                };
            if satisfied {
                let _ = w.tx.send(Ok(report.state.clone()));
            } else {
                kept.push(w);
            }
        }
        *list = kept;
        if list.is_empty() {
            waiters.remove(&report.id);
        }
    }

    /// Answers the waiters for the removal of `id` on `node`.
    fn gone(&self, node: &NodeId, id: &ContainerId) {
        let mut waiters = self.waiters.lock().expect("waiters lock");
        let Some(list) = waiters.get_mut(id) else {
            return;
        };
        let (done, kept): (Vec<_>, Vec<_>) = list
            .drain(..)
            .partition(|w| w.want == Want::Gone && &w.node == node);
        *list = kept;
        if list.is_empty() {
            waiters.remove(id);
        }
        for w in done {
            let _ = w.tx.send(Ok(ContainerState::Exited { code: 0 }));
        }
    }

    /// Fails every waiter on `node`: its member record is gone.
    fn node_lost(&self, node: &NodeId, operation: &'static str) {
        let mut waiters = self.waiters.lock().expect("waiters lock");
        for list in waiters.values_mut() {
            let (lost, kept): (Vec<_>, Vec<_>) = list.drain(..).partition(|w| &w.node == node);
            *list = kept;
            for w in lost {
                let _ = w.tx.send(Err(RuntimeError::NodeUnreachable {
                    node: node.clone(),
                    operation,
                }));
            }
        }
        waiters.retain(|_, list| !list.is_empty());
    }
}

fn store_failed(operation: &'static str) -> impl FnOnce(StoreError) -> RuntimeError {
    move |e| RuntimeError::Failed {
        operation,
        transient: e.is_transient(),
        message: format!("the store failed: {e}"),
    }
}

fn info_of(report: &ContainerReport) -> ContainerInfo {
    ContainerInfo {
        id: report.id.clone(),
        node_id: report.node.clone(),
        instance_id: report.instance_id.clone(),
        workload_id: report.workload_id.clone(),
        state: report.state.clone(),
        health: report.health.clone(),
    }
}

/// Waits for a waiter's answer, up to `timeout`.
async fn answer_of(
    rx: oneshot::Receiver<Result<ContainerState, RuntimeError>>,
    timeout: Duration,
    node: &NodeId,
    operation: &'static str,
) -> Result<ContainerState, RuntimeError> {
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(answer)) => answer,
        // The follower ended: the runtime is being dropped.
        Ok(Err(_)) => Err(RuntimeError::NodeUnreachable {
            node: node.clone(),
            operation,
        }),
        Err(_) => Err(RuntimeError::Failed {
            operation,
            transient: true,
            message: format!("node {node} did not report within {} s", timeout.as_secs()),
        }),
    }
}

#[async_trait]
impl ContainerRuntime for ClusterRuntime {
    async fn create_and_start(
        &self,
        node: &NodeId,
        spec: &ContainerSpec,
    ) -> Result<(), RuntimeError> {
        let s = self.writable("create_and_start")?;
        let assignment = Assignment {
            node: node.clone(),
            spec: spec.clone(),
            uid: uuid::Uuid::new_v4().to_string(),
            stop_grace_ms: None,
        };
        // Registered before the write, so the report cannot come first.
        let rx = s.wait(&spec.id, node, &assignment.uid, Want::Started);
        match s.write(put_op(&assignment, Precondition::Absent)).await {
            Ok(_) => {}
            Err(StoreError::Conflict {
                kind: Kind::Assignment,
                ..
            }) => {
                s.forget_waiters(&spec.id);
                return Err(RuntimeError::AlreadyExists {
                    node: node.clone(),
                    id: spec.id.clone(),
                });
            }
            Err(e) => {
                s.forget_waiters(&spec.id);
                return Err(store_failed("create_and_start")(e));
            }
        }
        match answer_of(rx, s.config.start_timeout, node, "create_and_start").await? {
            ContainerState::Failed { message } => Err(RuntimeError::StartFailed {
                node: node.clone(),
                id: spec.id.clone(),
                message,
                source: None,
            }),
            _ => Ok(()),
        }
    }

    async fn stop(
        &self,
        node: &NodeId,
        id: &ContainerId,
        grace: Duration,
    ) -> Result<(), RuntimeError> {
        let s = self.writable("stop")?;
        let key = container_key(node, id);
        let Some(current) = s
            .store
            .get_obj::<Assignment>(&key)
            .await
            .map_err(store_failed("stop"))?
        else {
            return Err(RuntimeError::NotFound {
                node: node.clone(),
                id: id.clone(),
            });
        };
        let rx = s.wait(id, node, &current.value.uid, Want::Exited);
        // Already exited: nothing to wait for.
        if let Some(report) = s
            .store
            .get_obj::<ContainerReport>(&key)
            .await
            .map_err(store_failed("stop"))?
        {
            s.answer(&report.value);
        }
        if current.value.stop_grace_ms.is_none() {
            let mut stopping = current.value;
            stopping.stop_grace_ms = Some(u64::try_from(grace.as_millis()).unwrap_or(u64::MAX));
            match s
                .write(put_op(
                    &stopping,
                    Precondition::ModRevision(current.revision),
                ))
                .await
            {
                Ok(_) => {}
                // Removed meanwhile: nothing runs.
                Err(StoreError::Conflict {
                    kind: Kind::Assignment,
                    ..
                }) => {
                    s.forget_waiters(id);
                    return Ok(());
                }
                Err(e) => {
                    s.forget_waiters(id);
                    return Err(store_failed("stop")(e));
                }
            }
        }
        answer_of(rx, grace + s.config.stop_slack, node, "stop")
            .await
            .map(drop)
    }

    /// Deletes the assignment and waits (boundedly) until the agent removed the container, so
    /// that a `status` right after finds nothing.
    async fn remove(&self, node: &NodeId, id: &ContainerId) -> Result<(), RuntimeError> {
        let s = self.writable("remove")?;
        let key = container_key(node, id);
        let rx = s.wait(id, node, "", Want::Gone);
        let reported = s
            .store
            .get(Kind::ContainerStatus, &key)
            .await
            .map_err(store_failed("remove"))?
            .is_some();
        let deleted = s
            .write(Op::Delete {
                kind: Kind::Assignment,
                key,
                precondition: Precondition::None,
            })
            .await;
        if let Err(e) = deleted {
            s.forget_waiters(id);
            return Err(store_failed("remove")(e));
        }
        if !reported {
            s.forget_waiters(id);
            return Ok(());
        }
        let timeout = s.config.stop_slack + REMOVE_GRACE;
        match answer_of(rx, timeout, node, "remove").await {
            Ok(_) | Err(RuntimeError::NodeUnreachable { .. }) => Ok(()),
            Err(e) => {
                tracing::warn!(%node, container = %id, error = %e, "the node has not removed the container yet");
                Ok(())
            }
        }
    }

    async fn status(&self, node: &NodeId, id: &ContainerId) -> Result<ContainerInfo, RuntimeError> {
        let key = container_key(node, id);
        let store = &self.shared.store;
        if let Some(report) = store
            .get_obj::<ContainerReport>(&key)
            .await
            .map_err(store_failed("status"))?
        {
            return Ok(info_of(&report.value));
        }
        match store
            .get_obj::<Assignment>(&key)
            .await
            .map_err(store_failed("status"))?
        {
            Some(a) => Ok(ContainerInfo {
                id: id.clone(),
                node_id: node.clone(),
                instance_id: a.value.spec.instance_id,
                workload_id: a.value.spec.workload_id,
                state: ContainerState::Created,
                health: None,
            }),
            None => Err(RuntimeError::NotFound {
                node: node.clone(),
                id: id.clone(),
            }),
        }
    }

    /// The node's reported containers, and those assigned but not reported yet (`Created`),
    /// so a new leader finds an assignment its predecessor wrote just before it died.
    async fn list(&self, node: &NodeId) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let store = &self.shared.store;
        let prefix = node_prefix(node);
        let reports = store
            .list_obj::<ContainerReport>(&prefix)
            .await
            .map_err(store_failed("list"))?;
        let assignments = store
            .list_obj::<Assignment>(&prefix)
            .await
            .map_err(store_failed("list"))?;
        let mut infos: Vec<ContainerInfo> = reports.iter().map(|r| info_of(&r.value)).collect();
        let reported: std::collections::HashSet<&ContainerId> =
            reports.iter().map(|r| &r.value.id).collect();
        let unreported: Vec<ContainerInfo> = assignments
            .iter()
            .filter(|a| !reported.contains(&a.value.spec.id))
            .map(|a| ContainerInfo {
                id: a.value.spec.id.clone(),
                node_id: node.clone(),
                instance_id: a.value.spec.instance_id.clone(),
                workload_id: a.value.spec.workload_id.clone(),
                state: ContainerState::Created,
                health: None,
            })
            .collect();
        infos.extend(unreported);
        Ok(infos)
    }

    fn subscribe(&self) -> broadcast::Receiver<ContainerEvent> {
        self.shared.events.subscribe()
    }

    async fn logs(
        &self,
        node: &NodeId,
        id: &ContainerId,
        request: LogRequest,
    ) -> Result<LogChunk, RuntimeError> {
        let s = &self.shared;
        if let Some((local, runtime)) = &s.local {
            if local == node {
                return runtime.logs(node, id, request).await;
            }
        }
        let member = s
            .store
            .get_obj::<MemberRecord>(&super::records::member_key(node))
            .await
            .map_err(store_failed("logs"))?
            .ok_or_else(|| RuntimeError::NodeUnreachable {
                node: node.clone(),
                operation: "logs",
            })?;
        s.remote_logs.logs(&member.value.address, id, request).await
    }
}

/// Most assignment writes in one commit (etcd's default limit is 128 operations, and the
/// leader's fence takes one).
const WRITE_BATCH: usize = 100;

/// Commits the assignment writes of every start, stop and removal in flight together: what
/// queued while one commit ran goes in the next, so a thousand starts cost a few store round
/// trips instead of a thousand. A batch is atomic, so one failing precondition (an assignment
/// that already exists) would fail the others: then its writes are committed one by one, each
/// answered with its own outcome. Writes of one key keep their order (a key already in the
/// batch waits for the next one). Ends when the runtime is dropped.
async fn write_batches(
    store: Arc<dyn StateStore>,
    mut queued: mpsc::UnboundedReceiver<(Op, oneshot::Sender<Result<u64, StoreError>>)>,
    cancel: CancellationToken,
) {
    let mut next: Option<(Op, oneshot::Sender<Result<u64, StoreError>>)> = None;
    loop {
        let first = match next.take() {
            Some(first) => first,
            None => tokio::select! {
                () = cancel.cancelled() => return,
                first = queued.recv() => match first {
                    Some(first) => first,
                    None => return,
                },
            },
        };
        let mut keys = std::collections::HashSet::new();
        keys.insert(first.0.target().1.to_owned());
        let mut batch = vec![first];
        while batch.len() < WRITE_BATCH {
            let Ok(write) = queued.try_recv() else { break };
            if !keys.insert(write.0.target().1.to_owned()) {
                next = Some(write);
                break;
            }
            batch.push(write);
        }
        let ops = batch.iter().map(|(op, _)| op.clone()).collect();
        match store.commit(ops).await {
            Ok(revision) => {
                for (_, reply) in batch {
                    let _ = reply.send(Ok(revision));
                }
            }
            Err(e) if batch.len() == 1 => {
                if let Some((_, reply)) = batch.pop() {
                    let _ = reply.send(Err(e));
                }
            }
            Err(_) => {
                for (op, reply) in batch {
                    let _ = reply.send(store.commit(vec![op]).await);
                }
            }
        }
    }
}

/// Follows the agents' reports (and the members' liveness) through the store's watch: turns
/// report changes into container events and answers waiting starts and stops.
struct ReportFollower {
    shared: Arc<Shared>,
    /// The last report seen per key: a watch or re-list that repeats a state emits nothing.
    reports: HashMap<String, ContainerReport>,
    revision: u64,
}

/// The reports, and the members' liveness (a member gone fails the waits on its node).
const FOLLOWED: [(Kind, &str); 2] = [(Kind::ContainerStatus, ""), (Kind::Cluster, MEMBERS_PREFIX)];

impl ReportFollower {
    /// Reads every report; emits events for those that changed since the last read.
    async fn relist(&mut self) -> Result<(), StoreError> {
        let store = &self.shared.store;
        let revision = store.revision().await?;
        let reports = store.list_obj::<ContainerReport>("").await?;
        let mut seen = HashMap::with_capacity(reports.len());
        for r in reports {
            self.on_report(&r.value);
            seen.insert(r.value.key(), r.value);
        }
        self.reports = seen;
        self.revision = revision;
        Ok(())
    }

    fn on_report(&mut self, report: &ContainerReport) {
        self.shared.answer(report);
        let key = report.key();
        if self
            .reports
            .get(&key)
            .is_some_and(|r| r.state == report.state && r.health == report.health)
        {
            return;
        }
        let _ = self.shared.events.send(ContainerEvent {
            node_id: report.node.clone(),
            container_id: report.id.clone(),
            instance_id: report.instance_id.clone(),
            state: report.state.clone(),
            health: report.health.clone(),
        });
        self.reports.insert(key, report.clone());
    }

    async fn run(mut self, cancel: CancellationToken) {
        let mut backoff = Backoff::new(super::RECONNECT);
        loop {
            let opened = std::time::Instant::now();
            let watch = tokio::select! {
                () = cancel.cancelled() => return,
                w = super::watch_scopes(self.shared.store.as_ref(), self.revision, &FOLLOWED) => w,
            };
            if let Ok(mut watch) = watch {
                loop {
                    let next = tokio::select! {
                        () = cancel.cancelled() => return,
                        n = watch.next() => n,
                    };
                    match next {
                        Some(Ok(event)) => {
                            self.revision = event.revision;
                            self.on_event(&event);
                        }
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "the watch of container reports ended");
                            break;
                        }
                        None => break,
                    }
                }
            }
            // Re-list (with backoff) until the store answers again.
            let mut healthy_for = opened.elapsed();
            loop {
                if !super::retry_after(&mut backoff, healthy_for, &cancel).await {
                    return;
                }
                healthy_for = std::time::Duration::ZERO;
                match self.relist().await {
                    Ok(()) => break,
                    Err(e) => tracing::warn!(error = %e, "re-listing container reports failed"),
                }
            }
        }
    }

    fn on_event(&mut self, event: &state_store_interface::WatchEvent) {
        match event.kind {
            Kind::ContainerStatus => match decode_event::<ContainerReport>(event) {
                Ok(Some(report)) => self.on_report(&report),
                Ok(None) => {
                    if let Some(r) = self.reports.remove(&event.key) {
                        self.shared.gone(&r.node, &r.id);
                    }
                }
                Err(e) => tracing::error!(error = %e, "a container report does not decode"),
            },
            Kind::Cluster if event.value.is_none() => {
                if let Some(node) = event.key.strip_prefix(MEMBERS_PREFIX) {
                    self.shared
                        .node_lost(&NodeId::from(node), "waiting for the node's report");
                }
            }
            _ => {}
        }
    }
}
