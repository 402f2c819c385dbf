//! Leader election and the fenced store: exactly one daemon of a cluster runs the reconcile
//! loop, and nothing it writes lands once it is no longer the leader.
//!
//! A candidate takes the leadership by creating `Cluster/leader` (precondition `Absent`) under
//! its daemon's lease; while another holds it, the candidate watches the key and tries again
//! when it is deleted (the holder resigned, or its lease expired). The leader's loop writes
//! through a [`FencedStore`], which adds the [`Fence`] check to every batch: once the key is
//! gone or another holder's, every write fails, and the first such failure deposes the leader
//! at once. A leader also stops at once when its lease is lost ([`super::lease::LeaseKeeper`]),
//! even before a write fails.

use super::fence::fence_down_nodes;
use super::nodes::StoreClusterManager;
use super::records::{LeaderRecord, LEADER_KEY};
use super::runtime::{ClusterRuntime, ClusterRuntimeConfig, RemoteLogs};
use super::RECONNECT;
use crate::backoff::Backoff;
use crate::metrics::CoreMetrics;
use crate::orchestrator::{OrchestratorBuilder, OrchestratorConfig};
use async_trait::async_trait;
use cluster_manager_interface::ClusterManager;
use container_runtime_interface::ContainerRuntime;
use orchestrator_shared_types::Event;
use scheduler_interface::Scheduler;
use state_store_interface::{
    Coordination, Entry, EventFilter, Fence, Kind, KindSet, LeaseId, Op, Precondition, Revision,
    StateStore, StoreError, Watch,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A store whose every batch carries the leader's [`Fence`]; see the module docs.
pub struct FencedStore {
    inner: Arc<dyn StateStore>,
    fence: Fence,
    deposed: CancellationToken,
}

impl FencedStore {
    /// `inner` fenced by `fence`; `deposed` is cancelled by the first write the fence refuses.
    pub fn new(inner: Arc<dyn StateStore>, fence: Fence, deposed: CancellationToken) -> Self {
        Self {
            inner,
            fence,
            deposed,
        }
    }
}

#[async_trait]
impl StateStore for FencedStore {
    async fn get(&self, kind: Kind, key: &str) -> Result<Option<Entry>, StoreError> {
        self.inner.get(kind, key).await
    }

    async fn list(&self, kind: Kind, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        self.inner.list(kind, prefix).await
    }

    async fn list_page<'a>(
        &self,
        kind: Kind,
        prefix: &str,
        start_after: Option<&'a str>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        self.inner.list_page(kind, prefix, start_after, limit).await
    }

    async fn commit(&self, mut ops: Vec<Op>) -> Result<Revision, StoreError> {
        if ops.is_empty() {
            return self.inner.commit(ops).await;
        }
        ops.push(self.fence.check());
        let result = self.inner.commit(ops).await;
        if let Err(e) = &result {
            if self.fence.is_violated_by(e) {
                tracing::warn!("a write was refused by the leadership fence: this daemon is no longer the leader");
                self.deposed.cancel();
            }
        }
        result
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        self.inner.revision().await
    }

    async fn watch_kinds(&self, after: Revision, kinds: KindSet) -> Result<Watch, StoreError> {
        self.inner.watch_kinds(after, kinds).await
    }

    async fn watch_prefix(
        &self,
        after: Revision,
        kind: Kind,
        prefix: &str,
    ) -> Result<Watch, StoreError> {
        self.inner.watch_prefix(after, kind, prefix).await
    }

    async fn append_events(&self, events: Vec<Event>) -> Result<(), StoreError> {
        if self.deposed.is_cancelled() {
            return Err(StoreError::Conflict {
                kind: self.fence.kind,
                key: self.fence.key.clone(),
                reason: "no longer the leader".into(),
            });
        }
        self.inner.append_events(events).await
    }

    async fn list_events(&self, filter: &EventFilter) -> Result<Vec<Event>, StoreError> {
        self.inner.list_events(filter).await
    }
}

/// What a candidate runs once elected.
#[derive(Clone)]
pub struct CandidateConfig {
    /// This daemon as the leader record names it.
    pub leader: LeaderRecord,
    /// This daemon's own runtime (its logs are read directly).
    pub local_runtime: Arc<dyn ContainerRuntime>,
    /// Reads logs of containers on other nodes.
    pub remote_logs: Arc<dyn RemoteLogs>,
    /// The scheduler of the loop.
    pub scheduler: Arc<dyn Scheduler>,
    /// Settings of the loop.
    pub orchestrator: OrchestratorConfig,
    /// Settings of the leader's runtime.
    pub runtime: ClusterRuntimeConfig,
    /// The loop's counters, kept across terms.
    pub metrics: Arc<CoreMetrics>,
}

/// Campaigns for the leadership until `cancel`, leading whenever elected. `leading` says
/// whether this daemon leads now (for `cluster info` and tests). `down_grace` is how long a
/// new term takes missing members for `NotReady` rather than `Down` (see
/// [`super::nodes`]). With `gossip`, a node gossip sees dead is `Down` at once, and the
/// assignments of every node going `Down` are deleted ([`super::fence::fence_down_nodes`]).
pub async fn campaign(
    store: Arc<dyn Coordination>,
    mut lease: watch::Receiver<Option<LeaseId>>,
    config: CandidateConfig,
    down_grace: Duration,
    gossip: Option<Arc<dyn ClusterManager>>,
    leading: watch::Sender<bool>,
    cancel: CancellationToken,
) {
    let value = serde_json::to_vec(&config.leader).expect("leader records serialize");
    let mut backoff = Backoff::new(RECONNECT);
    loop {
        // A lease first.
        let id = loop {
            if let Some(id) = *lease.borrow_and_update() {
                break id;
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                changed = lease.changed() => if changed.is_err() { return },
            }
        };
        let taken = store
            .put_leased(
                Kind::Cluster,
                LEADER_KEY,
                value.clone(),
                id,
                Precondition::Absent,
            )
            .await;
        match taken {
            Ok(revision) => {
                backoff = Backoff::new(RECONNECT);
                let fence = Fence {
                    kind: Kind::Cluster,
                    key: LEADER_KEY.to_owned(),
                    revision,
                };
                tracing::info!(node = %config.leader.node, revision, "elected leader");
                leading.send_replace(true);
                let term = Term {
                    lease_id: id,
                    fence,
                    down_grace,
                    gossip: gossip.clone(),
                };
                lead(&store, &mut lease, term, &config, &cancel).await;
                leading.send_replace(false);
            }
            Err(StoreError::Conflict { .. }) => {
                wait_for_vacancy(store.as_ref(), &mut lease, &cancel).await;
            }
            Err(StoreError::LeaseExpired { .. }) => {}
            Err(e) => {
                tracing::warn!(error = %e, "campaigning failed; retrying");
                if !super::retry_after(&mut backoff, Duration::ZERO, &cancel).await {
                    return;
                }
            }
        }
        if cancel.is_cancelled() {
            return;
        }
    }
}

/// Waits until the leadership key is deleted, the lease changes, or `cancel`; returns at once
/// when the store fails (the caller retries).
async fn wait_for_vacancy(
    store: &dyn Coordination,
    lease: &mut watch::Receiver<Option<LeaseId>>,
    cancel: &CancellationToken,
) {
    let Ok(revision) = store.revision().await else {
        tokio::time::sleep(RECONNECT.initial).await;
        return;
    };
    match store.get(Kind::Cluster, LEADER_KEY).await {
        Ok(Some(_)) => {}
        _ => return,
    }
    let Ok(mut watch) = store
        .watch_kinds(revision, KindSet::of(&[Kind::Cluster]))
        .await
    else {
        tokio::time::sleep(RECONNECT.initial).await;
        return;
    };
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = lease.changed() => return,
            next = watch.next() => match next {
                Some(Ok(e)) if e.key == LEADER_KEY && e.value.is_none() => return,
                Some(Ok(_)) => {}
                _ => return,
            }
        }
    }
}

/// What one term of leadership runs with.
struct Term {
    lease_id: LeaseId,
    fence: Fence,
    down_grace: Duration,
    gossip: Option<Arc<dyn ClusterManager>>,
}

/// One term: runs the loop on the fenced store until the lease is lost, a write is fenced
/// off, or `cancel` (then it drains and resigns). Alongside the loop, it fences the nodes
/// going `Down` ([`super::fence::fence_down_nodes`]).
async fn lead(
    store: &Arc<dyn Coordination>,
    lease: &mut watch::Receiver<Option<LeaseId>>,
    term: Term,
    config: &CandidateConfig,
    cancel: &CancellationToken,
) {
    let Term {
        lease_id,
        fence,
        down_grace,
        gossip,
    } = term;
    let deposed = CancellationToken::new();
    let plain: Arc<dyn StateStore> = store.clone();
    let fenced: Arc<dyn StateStore> = Arc::new(FencedStore::new(
        plain.clone(),
        fence.clone(),
        deposed.clone(),
    ));
    let started = async {
        let runtime = Arc::new(
            ClusterRuntime::start(
                fenced.clone(),
                Some((config.leader.node.clone(), config.local_runtime.clone())),
                config.remote_logs.clone(),
                config.runtime.clone(),
            )
            .await
            .map_err(|e| e.to_string())?,
        );
        let cluster: Arc<dyn ClusterManager> = Arc::new(
            StoreClusterManager::start(plain.clone(), down_grace, gossip)
                .await
                .map_err(|e| e.to_string())?,
        );
        let orchestrator = OrchestratorBuilder::new()
            .store(fenced.clone())
            .runtime(runtime.clone())
            .cluster_manager(cluster.clone())
            .scheduler(config.scheduler.clone())
            .metrics(config.metrics.clone())
            .config(config.orchestrator.clone())
            .spawn()
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((orchestrator, cluster, runtime))
    };
    let orchestrator = tokio::select! {
        () = deposed.cancelled() => None,
        o = started => match o {
            Ok(o) => Some(o),
            Err(e) => {
                tracing::error!(error = %e, "starting the reconcile loop failed; resigning");
                None
            }
        },
    };
    let Some((orchestrator, cluster, runtime)) = orchestrator else {
        resign(plain.as_ref(), &fence).await;
        return;
    };
    // Ends with the term (cancelled below, and awaited: no task outlives its term).
    let fencing_stop = CancellationToken::new();
    let fencing = tokio::spawn(fence_down_nodes(
        fenced.clone(),
        cluster,
        move |node: &orchestrator_shared_types::NodeId| runtime.node_fenced(node),
        fencing_stop.clone(),
    ));
    let lost = async {
        while *lease.borrow_and_update() == Some(lease_id) {
            if lease.changed().await.is_err() {
                return;
            }
        }
    };
    let resigning = tokio::select! {
        () = lost => {
            tracing::warn!("the lease was lost: stopping the reconcile loop now");
            orchestrator.abort().await;
            false
        }
        () = deposed.cancelled() => {
            tracing::warn!("deposed: stopping the reconcile loop now");
            orchestrator.abort().await;
            false
        }
        () = cancel.cancelled() => {
            tracing::info!("shutting down: draining the reconcile loop, then resigning");
            orchestrator.shutdown().await;
            true
        }
    };
    fencing_stop.cancel();
    let _ = fencing.await;
    if resigning {
        resign(plain.as_ref(), &fence).await;
    }
}

/// Deletes the leadership key if this term still holds it, so another candidate takes over at
/// once instead of after the lease's TTL.
async fn resign(store: &dyn StateStore, fence: &Fence) {
    let op = Op::Delete {
        kind: fence.kind,
        key: fence.key.clone(),
        precondition: Precondition::ModRevision(fence.revision),
    };
    match store.commit(vec![op]).await {
        Ok(_) => tracing::info!("resigned the leadership"),
        Err(e) => tracing::debug!(error = %e, "resigning found the leadership already gone"),
    }
}
