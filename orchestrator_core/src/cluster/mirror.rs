//! [`Mirror`]: the view every daemon of a cluster answers reads from, built from the store and
//! kept current by its watch (a reflector: one writer, cheap readers). The leader's loop writes
//! instance records to the store and the mirror follows them, so every daemon, the leader
//! included, answers from the same kind of view.
//!
//! While the store cannot be reached the mirror keeps its last view, marked stale with the
//! reason, and re-lists with backoff until the store answers again. A store's watch may ride
//! out an outage by itself (`EtcdStore` re-connects its watches silently), so the mirror also
//! probes the store every [`PROBE_INTERVAL`]: a probe that fails marks the view stale at once,
//! and the first that answers again clears the mark (the watch, resumed from its last
//! revision, brings what changed meanwhile).
//!
//! The API reads workloads and instances from the store itself; [`Mirror::reads`] wraps the
//! store so that those reads are answered from the mirror's copy of the records instead
//! whenever the store is unreachable (at once while the probe says so, else after the store
//! call failed as unavailable). The answers are then marked stale by the API, as the view is.

use super::nodes::NodeTable;
use super::records::{LeaderRecord, LEADER_KEY};
use super::RECONNECT;
use crate::backoff::Backoff;
use crate::view::ClusterView;
use async_trait::async_trait;
use orchestrator_shared_types::api::{LeaderInfo, MemberInfo};
use orchestrator_shared_types::Event;
use orchestrator_shared_types::{WorkloadDefinition, WorkloadInstance};
use scheduler_interface::Scheduler;
use state_store_interface::{
    decode_event, Entry, EventFilter, Kind, KindSet, Op, Revision, StateStore, StoreError, Watch,
    WatchEvent,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

/// What the mirror follows: not the assignments and reports, the bulk of a cluster's writes.
const MIRRORED: [(Kind, &str); 4] = [
    (Kind::Workload, ""),
    (Kind::Instance, ""),
    (Kind::Node, ""),
    (Kind::Cluster, ""),
];

/// Shortest time between two views (more while building one takes long: see `publish`).
const MIN_PUBLISH_INTERVAL: Duration = Duration::from_millis(20);

/// How often the mirror asks the store for its revision, to notice it is unreachable even while
/// the watch waits quietly.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Longest wait for one probe: a store that does not answer within it counts as unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the mirror knows besides the view: the leader, the members and the store's health.
#[derive(Clone, Debug, Default)]
pub struct MirrorStatus {
    /// The leader, if one holds the leadership key.
    pub leader: Option<LeaderInfo>,
    /// Every registered node with its liveness.
    pub members: Vec<MemberInfo>,
    /// Where the live members gossip (those that do), by node.
    pub gossip: Vec<(orchestrator_shared_types::NodeId, String)>,
    /// The store revision the mirror has followed to.
    pub revision: u64,
    /// Why the store cannot be followed now, and since when.
    pub error: Option<(String, chrono::DateTime<chrono::Utc>)>,
}

/// The kinds whose raw records the mirror keeps for [`Mirror::reads`].
const CACHED: KindSet = KindSet::of(&[Kind::Workload, Kind::Instance]);

/// The raw records of [`CACHED`] kinds, by kind and key, as last followed.
type Cache = BTreeMap<(u8, String), Entry>;

fn cache_key(kind: Kind, key: &str) -> (u8, String) {
    (kind as u8, key.to_owned())
}

/// A store-fed view; see the module docs.
pub struct Mirror {
    view: watch::Receiver<Arc<ClusterView>>,
    status: Arc<Mutex<MirrorStatus>>,
    cache: Arc<Mutex<Cache>>,
    _stop: DropGuard,
}

impl Mirror {
    /// Loads the store and follows it until dropped. Fails if the first listing fails.
    pub async fn start(
        store: Arc<dyn StateStore>,
        scheduler: Arc<dyn Scheduler>,
    ) -> Result<Self, StoreError> {
        let cache = Arc::new(Mutex::new(Cache::new()));
        let mut records = Records::default();
        let revision = records.load(store.as_ref(), &cache).await?;
        let status = Arc::new(Mutex::new(MirrorStatus::default()));
        let (tx, view) = watch::channel(Arc::new(records.view(scheduler.clone())));
        records.update_status(&status, revision, None);
        let cancel = CancellationToken::new();
        let (health_tx, health) = watch::channel(None);
        tokio::spawn(probe(store.clone(), health_tx, cancel.clone()));
        let follower = Follower {
            cache: cache.clone(),
            store,
            scheduler,
            records,
            tx,
            status: status.clone(),
            revision,
            health,
            unreachable: None,
        };
        tokio::spawn(follower.run(cancel.clone()));
        Ok(Self {
            view,
            status,
            cache,
            _stop: cancel.drop_guard(),
        })
    }

    /// `store`, with its reads of workloads and instances answered from this mirror while the
    /// store is unreachable (see the module docs); everything else goes to `store`.
    pub fn reads(&self, store: Arc<dyn StateStore>) -> Arc<dyn StateStore> {
        Arc::new(FallbackReads {
            store,
            status: self.status.clone(),
            cache: self.cache.clone(),
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
    /// Reads everything mirrored (the raw workload and instance records into `cache`); returns
    /// the revision read at (before the lists, so the watch from it replays anything they
    /// missed).
    async fn load(
        &mut self,
        store: &dyn StateStore,
        cache: &Mutex<Cache>,
    ) -> Result<u64, StoreError> {
        let revision = store.revision().await?;
        let workloads = store.list(Kind::Workload, "").await?;
        let instances = store.list(Kind::Instance, "").await?;
        *cache.lock().expect("mirror cache lock") = workloads
            .iter()
            .chain(&instances)
            .map(|e| (cache_key(e.kind, &e.key), e.clone()))
            .collect();
        self.defs = workloads
            .into_iter()
            .filter_map(
                |e| match serde_json::from_slice::<WorkloadDefinition>(&e.value) {
                    Ok(d) => Some((e.key, d)),
                    Err(err) => {
                        tracing::error!(key = %e.key, error = %err, "a workload does not decode");
                        None
                    }
                },
            )
            .collect();
        self.instances = instances
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

    /// Applies a watch event (to `cache` too, for a workload or an instance).
    fn apply(&mut self, event: &WatchEvent, cache: &Mutex<Cache>) {
        if CACHED.contains(event.kind) {
            let key = cache_key(event.kind, &event.key);
            let mut cache = cache.lock().expect("mirror cache lock");
            match &event.value {
                Some(value) => {
                    let created = cache
                        .get(&key)
                        .map_or(event.revision, |e| e.create_revision);
                    cache.insert(
                        key,
                        Entry {
                            kind: event.kind,
                            key: event.key.clone(),
                            value: value.clone(),
                            create_revision: created,
                            mod_revision: event.revision,
                        },
                    );
                }
                None => {
                    cache.remove(&key);
                }
            }
        }
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
        let gossip = self
            .nodes
            .members()
            .filter_map(|m| Some((m.node.clone(), m.gossip.clone()?)))
            .collect();
        *status.lock().expect("mirror status lock") = MirrorStatus {
            leader,
            members,
            gossip,
            revision,
            error,
        };
    }
}

/// Probes the store every [`PROBE_INTERVAL`] until `cancel`; publishes the error of the last
/// probe (`None` while the store answers).
async fn probe(
    store: Arc<dyn StateStore>,
    health: watch::Sender<Option<String>>,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(PROBE_INTERVAL) => {}
        }
        let probed = tokio::select! {
            () = cancel.cancelled() => return,
            probed = tokio::time::timeout(PROBE_TIMEOUT, store.revision()) => probed,
        };
        let error = match probed {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("the store did not answer within {PROBE_TIMEOUT:?}")),
        };
        health.send_if_modified(|current| {
            let changed = current.is_some() != error.is_some();
            *current = error;
            changed
        });
    }
}

struct Follower {
    /// Kept current event by event (the fallback reads take what they answer from it), never
    /// copied whole.
    cache: Arc<Mutex<Cache>>,
    store: Arc<dyn StateStore>,
    scheduler: Arc<dyn Scheduler>,
    records: Records,
    tx: watch::Sender<Arc<ClusterView>>,
    status: Arc<Mutex<MirrorStatus>>,
    revision: u64,
    /// The probe's verdict.
    health: watch::Receiver<Option<String>>,
    /// Why the probe finds the store unreachable, and since when.
    unreachable: Option<(String, chrono::DateTime<chrono::Utc>)>,
}

impl Follower {
    fn publish(&mut self) -> Duration {
        let started = Instant::now();
        self.tx
            .send_replace(Arc::new(self.records.view(self.scheduler.clone())));
        self.records
            .update_status(&self.status, self.revision, None);
        if let Some((error, since)) = self.unreachable.clone() {
            // Still cut off: the new view is as stale as the last.
            self.mark_stale(&error, since);
        }
        // Building costs about the size of the cluster: at most ~10 % of the time goes to it.
        (started.elapsed() * 10).max(MIN_PUBLISH_INTERVAL)
    }

    fn mark_stale(&mut self, error: &str, since: chrono::DateTime<chrono::Utc>) {
        let reason = format!(
            "the store is unreachable since {}: {error}",
            since.format("%H:%M:%S")
        );
        let stale = self.tx.borrow().marked_stale(reason.as_str());
        self.tx.send_replace(Arc::new(stale));
        self.records
            .update_status(&self.status, self.revision, Some((error.to_owned(), since)));
    }

    /// Follows the probe's verdict: marks the view stale when the store stops answering, and
    /// publishes a fresh one when it answers again.
    fn health_changed(&mut self) {
        let error = self.health.borrow_and_update().clone();
        match (error, self.unreachable.is_some()) {
            (Some(error), false) => {
                let since = chrono::Utc::now();
                tracing::warn!(%error, "the store is unreachable: answering from the last view, marked stale");
                self.unreachable = Some((error.clone(), since));
                self.mark_stale(&error, since);
            }
            (None, true) => {
                self.unreachable = None;
                tracing::info!("the store answers again");
                self.publish();
            }
            _ => {}
        }
    }

    async fn run(mut self, cancel: CancellationToken) {
        let mut backoff = Backoff::new(RECONNECT);
        loop {
            let opened = Instant::now();
            let watch = super::watch_scopes(self.store.as_ref(), self.revision, &MIRRORED).await;
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
                            changed = self.health.changed() => {
                                if changed.is_ok() {
                                    self.health_changed();
                                }
                            }
                            () = tokio::time::sleep_until(publish_at), if next_publish.is_some() => {
                                interval = self.publish();
                                last_publish = Instant::now();
                                next_publish = None;
                            }
                            next = watch.next() => match next {
                                Some(Ok(event)) => {
                                    self.revision = event.revision;
                                    self.records.apply(&event, &self.cache);
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
            let since = chrono::Utc::now();
            tracing::warn!(error = %ended, "the store's watch ended; re-listing");
            self.mark_stale(&ended.to_string(), since);
            let mut healthy_for = opened.elapsed();
            loop {
                if !super::retry_after(&mut backoff, healthy_for, &cancel).await {
                    return;
                }
                healthy_for = Duration::ZERO;
                let mut records = Records::default();
                match records.load(self.store.as_ref(), &self.cache).await {
                    Ok(revision) => {
                        self.records = records;
                        self.revision = revision;
                        self.publish();
                        tracing::info!(revision, "following the store again");
                        break;
                    }
                    Err(e) => self.mark_stale(&e.to_string(), since),
                }
            }
        }
    }
}

/// The store as the API of a member reads it; see [`Mirror::reads`].
struct FallbackReads {
    store: Arc<dyn StateStore>,
    status: Arc<Mutex<MirrorStatus>>,
    cache: Arc<Mutex<Cache>>,
}

impl FallbackReads {
    /// Whether reads of `kind` are answered from the mirror's records: it keeps them, and the
    /// store is known to be unreachable (or `failed` says so).
    fn answers_from_cache(&self, kind: Kind, failed: Option<&StoreError>) -> bool {
        CACHED.contains(kind)
            && match failed {
                Some(e) => e.is_transient(),
                None => self
                    .status
                    .lock()
                    .expect("mirror status lock")
                    .error
                    .is_some(),
            }
    }

    /// The entry at `key` in the mirror's records.
    fn cached_entry(&self, kind: Kind, key: &str) -> Option<Entry> {
        let cache = self.cache.lock().expect("mirror cache lock");
        cache.get(&cache_key(kind, key)).cloned()
    }

    /// A page of the mirror's records (see [`StateStore::list_page`]).
    fn cached_page(
        &self,
        kind: Kind,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Vec<Entry> {
        let cache = self.cache.lock().expect("mirror cache lock");
        Self::page(&cache, kind, prefix, start_after, limit)
    }

    fn page(
        cache: &Cache,
        kind: Kind,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Vec<Entry> {
        let from = cache_key(kind, prefix);
        cache
            .range(from..)
            .map(|(_, e)| e)
            .take_while(|e| e.kind == kind && e.key.starts_with(prefix))
            .filter(|e| start_after.is_none_or(|after| e.key.as_str() > after))
            .take(limit)
            .cloned()
            .collect()
    }
}

#[async_trait]
impl StateStore for FallbackReads {
    async fn get(&self, kind: Kind, key: &str) -> Result<Option<Entry>, StoreError> {
        if self.answers_from_cache(kind, None) {
            return Ok(self.cached_entry(kind, key));
        }
        match self.store.get(kind, key).await {
            Err(e) if self.answers_from_cache(kind, Some(&e)) => Ok(self.cached_entry(kind, key)),
            found => found,
        }
    }

    async fn list(&self, kind: Kind, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        self.list_page(kind, prefix, None, usize::MAX).await
    }

    async fn list_page<'a>(
        &self,
        kind: Kind,
        prefix: &str,
        start_after: Option<&'a str>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        if self.answers_from_cache(kind, None) {
            return Ok(self.cached_page(kind, prefix, start_after, limit));
        }
        match self.store.list_page(kind, prefix, start_after, limit).await {
            Err(e) if self.answers_from_cache(kind, Some(&e)) => {
                Ok(self.cached_page(kind, prefix, start_after, limit))
            }
            listed => listed,
        }
    }

    async fn commit(&self, ops: Vec<Op>) -> Result<Revision, StoreError> {
        self.store.commit(ops).await
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        self.store.revision().await
    }

    async fn watch_kinds(&self, after: Revision, kinds: KindSet) -> Result<Watch, StoreError> {
        self.store.watch_kinds(after, kinds).await
    }

    async fn watch_prefix(
        &self,
        after: Revision,
        kind: Kind,
        prefix: &str,
    ) -> Result<Watch, StoreError> {
        self.store.watch_prefix(after, kind, prefix).await
    }

    async fn append_events(&self, events: Vec<Event>) -> Result<(), StoreError> {
        self.store.append_events(events).await
    }

    async fn list_events(&self, filter: &EventFilter) -> Result<Vec<Event>, StoreError> {
        self.store.list_events(filter).await
    }
}
