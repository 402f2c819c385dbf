//! [`Mirror`]: the view every daemon of a cluster answers reads from, built from the store and
//! kept current by its watch (a reflector: one writer, cheap readers). The leader's loop writes
//! instance records to the store and the mirror follows them, so every daemon, the leader
//! included, answers from the same kind of view.
//!
//! While the store cannot be reached the mirror keeps its last view, marked stale with the
//! reason, and re-lists with backoff until the store answers again.

use super::nodes::NodeTable;
use super::records::{LeaderRecord, LEADER_KEY};
use super::RECONNECT;
use crate::backoff::Backoff;
use crate::view::ClusterView;
use orchestrator_shared_types::api::{LeaderInfo, MemberInfo};
use orchestrator_shared_types::{WorkloadDefinition, WorkloadInstance};
use scheduler_interface::Scheduler;
use state_store_interface::{
    decode_event, Kind, KindSet, StateStore, StoreError, StoreExt, WatchEvent,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

const MIRRORED: KindSet = KindSet::of(&[Kind::Workload, Kind::Instance, Kind::Node, Kind::Cluster]);

/// Shortest time between two views (more while building one takes long: see `publish`).
const MIN_PUBLISH_INTERVAL: Duration = Duration::from_millis(20);

/// What the mirror knows besides the view: the leader, the members and the store's health.
#[derive(Clone, Debug, Default)]
pub struct MirrorStatus {
    /// The leader, if one holds the leadership key.
    pub leader: Option<LeaderInfo>,
    /// Every registered node with its liveness.
    pub members: Vec<MemberInfo>,
    /// The store revision the mirror has followed to.
    pub revision: u64,
    /// Why the store cannot be followed now, and since when.
    pub error: Option<(String, chrono::DateTime<chrono::Utc>)>,
}

/// A store-fed view; see the module docs.
pub struct Mirror {
    view: watch::Receiver<Arc<ClusterView>>,
    status: Arc<Mutex<MirrorStatus>>,
    _stop: DropGuard,
}

impl Mirror {
    /// Loads the store and follows it until dropped. Fails if the first listing fails.
    pub async fn start(
        store: Arc<dyn StateStore>,
        scheduler: Arc<dyn Scheduler>,
    ) -> Result<Self, StoreError> {
        let mut records = Records::default();
        let revision = records.load(store.as_ref()).await?;
        let status = Arc::new(Mutex::new(MirrorStatus::default()));
        let (tx, view) = watch::channel(Arc::new(records.view(scheduler.clone())));
        records.update_status(&status, revision, None);
        let cancel = CancellationToken::new();
        let follower = Follower {
            store,
            scheduler,
            records,
            tx,
            status: status.clone(),
            revision,
        };
        tokio::spawn(follower.run(cancel.clone()));
        Ok(Self {
            view,
            status,
            _stop: cancel.drop_guard(),
        })
    }

    /// The views, as the handle reads them.
    pub fn views(&self) -> watch::Receiver<Arc<ClusterView>> {
        self.view.clone()
    }

    /// The leader, members and health as last seen.
    pub fn status(&self) -> MirrorStatus {
        self.status.lock().expect("mirror status lock").clone()
    }
}

#[derive(Default)]
struct Records {
    defs: HashMap<String, WorkloadDefinition>,
    instances: HashMap<String, WorkloadInstance>,
    nodes: NodeTable,
    leader: Option<(LeaderRecord, u64)>,
}

impl Records {
    /// Reads everything mirrored; returns the revision read at (before the lists, so the
    /// watch from it replays anything they missed).
    async fn load(&mut self, store: &dyn StateStore) -> Result<u64, StoreError> {
        let revision = store.revision().await?;
        self.defs = store
            .list_obj::<WorkloadDefinition>("")
            .await?
            .into_iter()
            .map(|d| (d.value.name.clone(), d.value))
            .collect();
        self.instances = store
            .list(Kind::Instance, "")
            .await?
            .into_iter()
            .filter_map(|e| match serde_json::from_slice::<WorkloadInstance>(&e.value) {
                Ok(i) => Some((e.key, i)),
                Err(err) => {
                    tracing::error!(key = %e.key, error = %err, "an instance record does not decode");
                    None
                }
            })
            .collect();
        self.nodes = NodeTable::load(store).await?;
        self.leader = match store.get(Kind::Cluster, LEADER_KEY).await? {
            Some(e) => serde_json::from_slice::<LeaderRecord>(&e.value)
                .ok()
                .map(|l| (l, e.mod_revision)),
            None => None,
        };
        Ok(revision)
    }

    fn apply(&mut self, event: &WatchEvent) {
        match event.kind {
            Kind::Workload => match decode_event::<WorkloadDefinition>(event) {
                Ok(Some(d)) => {
                    self.defs.insert(event.key.clone(), d);
                }
                Ok(None) => {
                    self.defs.remove(&event.key);
                }
                Err(e) => tracing::error!(error = %e, "a workload does not decode"),
            },
            Kind::Instance => match decode_event::<WorkloadInstance>(event) {
                Ok(Some(i)) => {
                    self.instances.insert(event.key.clone(), i);
                }
                Ok(None) => {
                    self.instances.remove(&event.key);
                }
                Err(e) => tracing::error!(error = %e, "an instance record does not decode"),
            },
            Kind::Cluster if event.key == LEADER_KEY => {
                self.leader = match decode_event::<LeaderRecord>(event) {
                    Ok(Some(l)) => Some((l, event.revision)),
                    _ => None,
                };
            }
            _ => {
                self.nodes.apply(event);
            }
        }
    }

    fn view(&self, scheduler: Arc<dyn Scheduler>) -> ClusterView {
        ClusterView::from_records(
            scheduler,
            self.nodes.nodes(),
            self.defs.values().cloned().collect(),
            self.instances.values().cloned().collect(),
        )
    }

    fn update_status(
        &self,
        status: &Mutex<MirrorStatus>,
        revision: u64,
        error: Option<(String, chrono::DateTime<chrono::Utc>)>,
    ) {
        let leader = self.leader.as_ref().map(|(l, rev)| LeaderInfo {
            node: l.node.clone(),
            address: l.address.clone(),
            since_revision: *rev,
        });
        let members = self
            .nodes
            .nodes()
            .into_iter()
            .map(|n| MemberInfo {
                leader: leader.as_ref().is_some_and(|l| l.node == n.id),
                node: n.id,
                address: n.address,
                status: n.status,
            })
            .collect();
        *status.lock().expect("mirror status lock") = MirrorStatus {
            leader,
            members,
            revision,
            error,
        };
    }
}

struct Follower {
    store: Arc<dyn StateStore>,
    scheduler: Arc<dyn Scheduler>,
    records: Records,
    tx: watch::Sender<Arc<ClusterView>>,
    status: Arc<Mutex<MirrorStatus>>,
    revision: u64,
}

impl Follower {
    fn publish(&mut self) -> Duration {
        let started = Instant::now();
        self.tx
            .send_replace(Arc::new(self.records.view(self.scheduler.clone())));
        self.records
            .update_status(&self.status, self.revision, None);
        // Building costs about the size of the cluster: at most ~10 % of the time goes to it.
        (started.elapsed() * 10).max(MIN_PUBLISH_INTERVAL)
    }

    fn mark_stale(&mut self, error: &StoreError, since: chrono::DateTime<chrono::Utc>) {
        let reason = format!(
            "the store is unreachable since {}: {error}",
            since.format("%H:%M:%S")
        );
        let stale = self.tx.borrow().marked_stale(reason.as_str());
        self.tx.send_replace(Arc::new(stale));
        self.records.update_status(
            &self.status,
            self.revision,
            Some((error.to_string(), since)),
        );
    }

    async fn run(mut self, cancel: CancellationToken) {
        let mut backoff = Backoff::new(RECONNECT);
        loop {
            let opened = Instant::now();
            let watch = self.store.watch_kinds(self.revision, MIRRORED).await;
            let ended = match watch {
                Ok(mut watch) => {
                    let mut next_publish: Option<Instant> = None;
                    let mut interval = MIN_PUBLISH_INTERVAL;
                    let mut last_publish = Instant::now();
                    loop {
                        let publish_at = next_publish
                            .map(tokio::time::Instant::from_std)
                            .unwrap_or_else(|| {
                                tokio::time::Instant::now() + Duration::from_secs(3600)
                            });
                        tokio::select! {
                            () = cancel.cancelled() => return,
                            () = tokio::time::sleep_until(publish_at), if next_publish.is_some() => {
                                interval = self.publish();
                                last_publish = Instant::now();
                                next_publish = None;
                            }
                            next = watch.next() => match next {
                                Some(Ok(event)) => {
                                    self.revision = event.revision;
                                    self.records.apply(&event);
                                    next_publish.get_or_insert(last_publish + interval);
                                }
                                Some(Err(e)) => break e,
                                None => break StoreError::Closed,
                            }
                        }
                    }
                }
                Err(e) => e,
            };
            if let StoreError::Reset { .. } = ended {
                tracing::error!(error = %ended, "the store was reset: this daemon stops following it");
            }
            let since = chrono::Utc::now();
            tracing::warn!(error = %ended, "the store's watch ended; re-listing");
            self.mark_stale(&ended, since);
            let mut healthy_for = opened.elapsed();
            loop {
                let delay = backoff.fail(healthy_for);
                healthy_for = Duration::ZERO;
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
                let mut records = Records::default();
                match records.load(self.store.as_ref()).await {
                    Ok(revision) => {
                        self.records = records;
                        self.revision = revision;
                        self.publish();
                        tracing::info!(revision, "following the store again");
                        break;
                    }
                    Err(e) => self.mark_stale(&e, since),
                }
            }
        }
    }
}
