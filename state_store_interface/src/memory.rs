//! [`InMemoryStore`]: the twin of the store for tests, scenarios and benchmarks.
//!
//! Everything sits behind one `std` mutex: there is no I/O, so every method locks, works and
//! unlocks without awaiting, and one lock makes each commit trivially atomic and totally ordered
//! with the watch fan-out. Costs are those of the real stores' hot paths: `get` and each op of a
//! commit are O(log n), `list` is a range scan O(log n + matches) and `list_page` one of
//! O(log n + limit), a commit's fan-out is
//! O(watchers × changes), and nothing ever copies the whole map.
//!
//! Values are kept as `Arc<[u8]>`, shared between the table and the watch history, so keeping
//! 100,000 changes of history does not double the memory of a store rewritten in a loop.
//!
//! The rules it shares with the other stores come from [`crate::rules`] (preconditions, the plan
//! of a commit, the event log's numbering, retention and filtering) and [`crate::watch_hub`]
//! (fan-out); this file only keeps the data.
//!
//! # Watches
//! Changes are kept in a bounded history (100,000 by default). `watch(after)` replays the
//! history's changes after `after`, then registers the watcher with the hub for live changes,
//! all under the lock, so nothing is missed or repeated in between. If `after` is older than
//! what the history still holds, the watch fails with [`StoreError::Compacted`].
//!
//! Each watcher has a bounded channel (room for its replay plus 10,000 live changes by default).
//! A watcher that stops reading is never skipped ahead silently: when its channel is full, the
//! store drops it and its stream ends (`next()` returns `None`) after the changes it already
//! holds. `None` therefore means "re-list, then watch again from the listed revision".

use crate::rules::{self, Found, Plan};
use crate::watch_hub::{check_kept, ToEvent, WatchHub};
use crate::*;
use async_trait::async_trait;
use orchestrator_shared_types::Event;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Changes of watch history kept by [`InMemoryStore::new`].
pub const DEFAULT_HISTORY: usize = 100_000;
/// Events of the event log kept by [`InMemoryStore::new`].
pub const DEFAULT_EVENTS: usize = 10_000;
/// Live changes a watcher may fall behind by before it is dropped.
pub const DEFAULT_WATCH_BUFFER: usize = 10_000;

/// The in-memory twin of the store, for tests, scenarios and benchmarks.
pub struct InMemoryStore {
    inner: Arc<Mutex<Inner>>,
    history_limit: usize,
    event_limit: usize,
    watch_buffer: usize,
    /// Expires leases on time (see [`Coordination`]); started by the first lease, aborted
    /// when the store is dropped.
    lease_timer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Wakes the timer when a lease is granted (it may end before the ones it waits for).
    lease_granted: Arc<Notify>,
}

/// A lease of the twin: its TTL, when it ends, and the keys bound to it.
struct Lease {
    ttl: Duration,
    deadline: Instant,
    keys: BTreeSet<(Kind, String)>,
}

/// A stored value with its revisions.
struct Stored {
    value: Arc<[u8]>,
    create_revision: Revision,
    mod_revision: Revision,
}

/// One change, as kept in the watch history.
struct Change {
    revision: Revision,
    kind: Kind,
    key: String,
    value: Option<Arc<[u8]>>,
}

impl ToEvent for Change {
    fn revision(&self) -> Revision {
        self.revision
    }

    fn kind(&self) -> Kind {
        self.kind
    }

    fn to_event(&self) -> WatchEvent {
        WatchEvent {
            revision: self.revision,
            kind: self.kind,
            key: self.key.clone(),
            value: self.value.as_deref().map(<[u8]>::to_vec),
        }
    }
}

struct Inner {
    /// One table per kind, so lookups borrow the `&str` key instead of building a `(Kind, String)`.
    tables: [BTreeMap<String, Stored>; Kind::ALL.len()],
    history: VecDeque<Change>,
    /// Highest revision of a change dropped from the history (0: none dropped).
    compacted: Revision,
    /// The watchers; its published revision is the store's revision (commits publish under
    /// the same lock).
    hub: WatchHub,
    events: VecDeque<Event>,
    last_seq: u64,
    leases: HashMap<LeaseId, Lease>,
    /// The lease each leased key is bound to.
    bound: HashMap<(Kind, String), LeaseId>,
    last_lease: LeaseId,
}

fn slot(kind: Kind) -> usize {
    match kind {
        Kind::Workload => 0,
        Kind::Instance => 1,
        Kind::Node => 2,
        Kind::Assignment => 3,
        Kind::ContainerStatus => 4,
        Kind::Cluster => 5,
    }
}

impl Inner {
    fn table(&self, kind: Kind) -> &BTreeMap<String, Stored> {
        &self.tables[slot(kind)]
    }

    fn table_mut(&mut self, kind: Kind) -> &mut BTreeMap<String, Stored> {
        &mut self.tables[slot(kind)]
    }
}

fn entry(kind: Kind, key: &str, stored: &Stored) -> Entry {
    Entry {
        kind,
        key: key.to_owned(),
        value: stored.value.to_vec(),
        create_revision: stored.create_revision,
        mod_revision: stored.mod_revision,
    }
}

/// What a commit finds at a key: in memory, an entry is always readable.
fn found(stored: Option<&Stored>) -> Found {
    match stored {
        None => Found::Absent,
        Some(s) => Found::Present {
            create_revision: s.create_revision,
            mod_revision: s.mod_revision,
        },
    }
}

impl InMemoryStore {
    /// An empty store keeping up to 10,000 events and 100,000 changes of watch history.
    pub fn new() -> Self {
        Self::with_limits(DEFAULT_HISTORY, DEFAULT_EVENTS)
    }

    /// An empty store keeping up to `history` changes for watches (older ones are compacted) and
    /// the `events` most recent events.
    pub fn with_limits(history: usize, events: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                tables: Default::default(),
                history: VecDeque::new(),
                compacted: 0,
                hub: WatchHub::new(0),
                events: VecDeque::new(),
                last_seq: 0,
                leases: HashMap::new(),
                bound: HashMap::new(),
                last_lease: 0,
            })),
            history_limit: history,
            event_limit: events,
            watch_buffer: DEFAULT_WATCH_BUFFER,
            lease_timer: Mutex::new(None),
            lease_granted: Arc::new(Notify::new()),
        }
    }

    /// Sets how many live changes a watcher may fall behind by before the store drops it
    /// (at least 1).
    pub fn with_watch_buffer(mut self, changes: usize) -> Self {
        self.watch_buffer = changes.max(1);
        self
    }

    /// The data, with the leases that have ended expired first (lazily, so a reader never
    /// sees a key whose lease is over, even if the timer has not run yet).
    fn lock(&self) -> MutexGuard<'_, Inner> {
        let mut inner = lock(&self.inner);
        expire_leases(&mut inner, self.history_limit);
        inner
    }

    /// Starts the lease timer if it does not run: a task that expires leases when they end
    /// (so watchers see their keys' deletes without anyone calling the store). It holds the
    /// data only weakly and is aborted when the store is dropped.
    fn start_lease_timer(&self) {
        let mut timer = self
            .lease_timer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if timer.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let data = Arc::downgrade(&self.inner);
        let granted = self.lease_granted.clone();
        let history_limit = self.history_limit;
        *timer = Some(tokio::spawn(async move {
            loop {
                let next = {
                    let Some(data) = data.upgrade() else { return };
                    let mut inner = lock(&data);
                    expire_leases(&mut inner, history_limit);
                    inner.leases.values().map(|l| l.deadline).min()
                };
                match next {
                    Some(deadline) => tokio::select! {
                        _ = tokio::time::sleep_until(deadline) => {}
                        _ = granted.notified() => {}
                    },
                    None => granted.notified().await,
                }
            }
        }));
    }
}

impl Drop for InMemoryStore {
    fn drop(&mut self) {
        let timer = self
            .lease_timer
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(timer) = timer.take() {
            timer.abort();
        }
    }
}

fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    // Critical sections check everything before they mutate and do not panic midway (short
    // of an allocation failure, which aborts), so a poisoned lock still guards consistent
    // data.
    inner.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Ends the leases whose time is up: each one's keys are deleted in one commit, which
/// watchers see.
fn expire_leases(inner: &mut Inner, history_limit: usize) {
    if inner.leases.is_empty() {
        return;
    }
    let now = Instant::now();
    let ended: Vec<LeaseId> = inner
        .leases
        .iter()
        .filter(|(_, l)| l.deadline <= now)
        .map(|(id, _)| *id)
        .collect();
    for id in ended {
        end_lease(inner, id, history_limit);
    }
}

/// Removes lease `id` and deletes its keys in one commit.
fn end_lease(inner: &mut Inner, id: LeaseId, history_limit: usize) {
    let Some(lease) = inner.leases.remove(&id) else {
        return;
    };
    let ops = lease
        .keys
        .into_iter()
        .map(|(kind, key)| Op::Delete {
            kind,
            key,
            precondition: Precondition::None,
        })
        .collect();
    // Unconditional deletes of distinct keys cannot fail.
    let _ = commit_locked(inner, ops, history_limit);
}

impl Default for InMemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for InMemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the values: a benchmark store holds hundreds of thousands of them.
        let inner = self.lock();
        f.debug_struct("InMemoryStore")
            .field("revision", &inner.hub.published())
            .field(
                "entries",
                &inner.tables.iter().map(BTreeMap::len).sum::<usize>(),
            )
            .field("history", &inner.history.len())
            .field("compacted", &inner.compacted)
            .field("watchers", &inner.hub.watchers())
            .field("events", &inner.events.len())
            .finish()
    }
}

#[async_trait]
impl StateStore for InMemoryStore {
    async fn get(&self, kind: Kind, key: &str) -> Result<Option<Entry>, StoreError> {
        let inner = self.lock();
        Ok(inner.table(kind).get(key).map(|s| entry(kind, key, s)))
    }

    async fn list(&self, kind: Kind, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .table(kind)
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, s)| entry(kind, key, s))
            .collect())
    }

    async fn list_page<'a>(
        &self,
        kind: Kind,
        prefix: &str,
        start_after: Option<&'a str>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let inner = self.lock();
        let from = rules::page_start(prefix, start_after);
        Ok(inner
            .table(kind)
            .range::<str, _>((from, Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .take(limit)
            .map(|(key, s)| entry(kind, key, s))
            .collect())
    }

    async fn commit(&self, ops: Vec<Op>) -> Result<Revision, StoreError> {
        let mut inner = self.lock();
        commit_locked(&mut inner, ops, self.history_limit)
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        Ok(self.lock().hub.published())
    }

    async fn watch_kinds(&self, after: Revision, kinds: KindSet) -> Result<Watch, StoreError> {
        let mut inner = self.lock();
        check_kept(after, inner.compacted)?;
        let inner = &mut *inner;
        let start = inner.history.partition_point(|c| c.revision <= after);
        let replay = inner
            .history
            .range(start..)
            .filter(|c| kinds.contains(c.kind))
            .map(Change::to_event);
        Ok(inner.hub.subscribe(after, replay, self.watch_buffer, kinds))
    }

    async fn append_events(&self, mut events: Vec<Event>) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.last_seq = rules::number_events(&mut events, inner.last_seq);
        inner.events.extend(events);
        let dropped = rules::last_dropped_seq(inner.last_seq, self.event_limit as u64);
        let excess = inner.events.partition_point(|e| e.seq <= dropped);
        inner.events.drain(..excess);
        Ok(())
    }

    async fn list_events(&self, filter: &EventFilter) -> Result<Vec<Event>, StoreError> {
        let inner = self.lock();
        let Some(first) = rules::first_seq(filter) else {
            return Ok(Vec::new());
        };
        // `seq` increases along the log: binary search for the first candidate; the selection
        // reads from the end its limit counts from and stops there.
        let start = inner.events.partition_point(|e| e.seq < first);
        let candidates = inner
            .events
            .range(start..)
            .map(Ok::<_, std::convert::Infallible>);
        let Ok(events) = rules::select_events(filter, candidates);
        Ok(events.into_iter().cloned().collect())
    }
}

/// Commits `ops` under the lock: the body of [`StateStore::commit`], shared with the ends of
/// leases. Every key written loses its lease binding (a later write rebinds it).
fn commit_locked(
    inner: &mut Inner,
    ops: Vec<Op>,
    history_limit: usize,
) -> Result<Revision, StoreError> {
    let current = inner.hub.published();
    let Ok(plan) = rules::plan_commit(ops, current, |kind, key| {
        Ok::<_, std::convert::Infallible>(found(inner.table(kind).get(key)))
    });
    let Plan { revision, writes } = plan?;
    if writes.is_empty() {
        return Ok(revision);
    }

    let mut changes = Vec::with_capacity(writes.len());
    for write in writes {
        let WatchEvent {
            kind, key, value, ..
        } = write.change;
        if !inner.bound.is_empty() {
            unbind(inner, kind, &key);
        }
        let table = inner.table_mut(kind);
        let value: Option<Arc<[u8]>> = match value {
            Some(value) => {
                let value: Arc<[u8]> = value.into();
                let stored = Stored {
                    value: value.clone(),
                    create_revision: write.create_revision,
                    mod_revision: revision,
                };
                // Replace in place when the key exists, so only new keys are copied.
                match table.get_mut(&key) {
                    Some(old) => *old = stored,
                    None => {
                        table.insert(key.clone(), stored);
                    }
                }
                Some(value)
            }
            None => {
                table.remove(&key);
                None
            }
        };
        changes.push(Change {
            revision,
            kind,
            key,
            value,
        });
    }

    let limit = history_limit;
    inner.hub.publish(&changes, revision);
    inner.history.extend(changes);
    while inner.history.len() > limit {
        if let Some(dropped) = inner.history.pop_front() {
            inner.compacted = dropped.revision;
        }
    }
    Ok(revision)
}

/// Forgets the lease binding of `key`, if any.
fn unbind(inner: &mut Inner, kind: Kind, key: &str) {
    if let Some(id) = inner.bound.remove(&(kind, key.to_owned())) {
        if let Some(lease) = inner.leases.get_mut(&id) {
            lease.keys.remove(&(kind, key.to_owned()));
        }
    }
}

/// The twin of etcd's leases: TTLs on tokio's clock (so paused-time tests can advance them),
/// ids counting up from 1, expiry checked on every call and by a timer task.
#[async_trait]
impl Coordination for InMemoryStore {
    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        let id = {
            let mut inner = self.lock();
            inner.last_lease += 1;
            let id = inner.last_lease;
            inner.leases.insert(
                id,
                Lease {
                    ttl,
                    deadline: Instant::now() + ttl,
                    keys: BTreeSet::new(),
                },
            );
            id
        };
        self.start_lease_timer();
        self.lease_granted.notify_one();
        Ok(id)
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        let mut inner = self.lock();
        match inner.leases.get_mut(&lease) {
            Some(l) => {
                l.deadline = Instant::now() + l.ttl;
                Ok(())
            }
            None => Err(StoreError::LeaseExpired { lease }),
        }
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        let mut inner = self.lock();
        end_lease(&mut inner, lease, self.history_limit);
        Ok(())
    }

    async fn put_leased(
        &self,
        kind: Kind,
        key: &str,
        value: Vec<u8>,
        lease: LeaseId,
        precondition: Precondition,
    ) -> Result<Revision, StoreError> {
        let mut inner = self.lock();
        if !inner.leases.contains_key(&lease) {
            return Err(StoreError::LeaseExpired { lease });
        }
        let op = Op::Put {
            kind,
            key: key.to_owned(),
            value,
            precondition,
        };
        let revision = commit_locked(&mut inner, vec![op], self.history_limit)?;
        inner.bound.insert((kind, key.to_owned()), lease);
        if let Some(l) = inner.leases.get_mut(&lease) {
            l.keys.insert((kind, key.to_owned()));
        }
        Ok(revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_shared_types::EventKind;

    crate::state_store_conformance!(|| async { InMemoryStore::new() });

    mod coordination {
        use crate::InMemoryStore;

        crate::coordination_conformance!(|| async { InMemoryStore::new() });
    }

    fn put(key: &str, value: &str) -> Op {
        Op::Put {
            kind: Kind::Instance,
            key: key.into(),
            value: value.as_bytes().to_vec(),
            precondition: Precondition::None,
        }
    }

    async fn next(watch: &mut Watch) -> Option<Result<WatchEvent, StoreError>> {
        tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .expect("the watch answers within 5 s")
    }

    #[tokio::test]
    async fn old_history_is_compacted_exactly() {
        let store = InMemoryStore::with_limits(3, 10);
        for i in 1..=5 {
            store.commit(vec![put("k", &i.to_string())]).await.unwrap();
        }
        // Kept: revisions 3, 4, 5.
        match store.watch(1).await {
            Err(StoreError::Compacted { requested, oldest }) => {
                assert_eq!((requested, oldest), (1, 3));
            }
            other => panic!("expected Compacted, got {other:?}"),
        }
        let mut watch = store.watch(2).await.unwrap();
        for revision in 3..=5 {
            assert_eq!(next(&mut watch).await.unwrap().unwrap().revision, revision);
        }
    }

    #[tokio::test]
    async fn a_batch_partly_compacted_is_compacted_whole() {
        let store = InMemoryStore::with_limits(2, 10);
        store
            .commit(vec![put("a", "1"), put("b", "1"), put("c", "1")])
            .await
            .unwrap();
        // One change of revision 1 was dropped: watching from 0 would miss it.
        assert!(matches!(
            store.watch(0).await,
            Err(StoreError::Compacted { oldest: 2, .. })
        ));
        assert!(store.watch(1).await.is_ok());
    }

    #[tokio::test]
    async fn a_full_watcher_is_dropped_not_skipped() {
        let store = InMemoryStore::new().with_watch_buffer(3);
        let mut slow = store.watch(0).await.unwrap();
        let mut fast = store.watch(0).await.unwrap();
        for i in 1..=3 {
            store.commit(vec![put("k", &i.to_string())]).await.unwrap();
            assert_eq!(next(&mut fast).await.unwrap().unwrap().revision, i);
        }
        store.commit(vec![put("k", "4")]).await.unwrap(); // `slow` is full: dropped.
        store.commit(vec![put("k", "5")]).await.unwrap();
        for revision in 1..=3 {
            assert_eq!(next(&mut slow).await.unwrap().unwrap().revision, revision);
        }
        assert!(
            next(&mut slow).await.is_none(),
            "ends instead of skipping 4 and 5"
        );
        for revision in 4..=5 {
            assert_eq!(next(&mut fast).await.unwrap().unwrap().revision, revision);
        }
        assert_eq!(store.lock().hub.watchers(), 1);
    }

    #[tokio::test]
    async fn a_long_replay_does_not_overflow_the_watcher() {
        let store = InMemoryStore::new().with_watch_buffer(2);
        for i in 0..50 {
            store
                .commit(vec![put(&format!("k{i}"), "v")])
                .await
                .unwrap();
        }
        let mut watch = store.watch(0).await.unwrap();
        store.commit(vec![put("live", "v")]).await.unwrap();
        for revision in 1..=51 {
            assert_eq!(next(&mut watch).await.unwrap().unwrap().revision, revision);
        }
    }

    #[tokio::test]
    async fn dropped_watches_are_forgotten() {
        let store = InMemoryStore::new();
        drop(store.watch(0).await.unwrap());
        store.commit(vec![put("k", "v")]).await.unwrap();
        assert_eq!(store.lock().hub.watchers(), 0);
    }

    #[tokio::test]
    async fn watch_ends_when_the_store_is_dropped() {
        let store = InMemoryStore::new();
        let mut watch = store.watch(0).await.unwrap();
        drop(store);
        assert!(next(&mut watch).await.is_none());
    }

    #[tokio::test]
    async fn event_log_keeps_the_most_recent() {
        let store = InMemoryStore::with_limits(10, 3);
        let events = (1..=5)
            .map(|i| Event::new(EventKind::Started, format!("e{i}")))
            .collect();
        store.append_events(events).await.unwrap();
        let kept = store.list_events(&EventFilter::default()).await.unwrap();
        let seqs: Vec<u64> = kept.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [3, 4, 5]);
        store
            .append_events(vec![Event::new(EventKind::Stopped, "e6")])
            .await
            .unwrap();
        let kept = store.list_events(&EventFilter::default()).await.unwrap();
        assert_eq!(kept.last().map(|e| e.seq), Some(6), "seq keeps counting");
    }

    #[tokio::test]
    async fn duplicate_keys_in_a_batch_are_refused() {
        let store = InMemoryStore::new();
        let err = store
            .commit(vec![put("k", "1"), put("other", "1"), put("k", "2")])
            .await;
        assert!(matches!(err, Err(StoreError::Backend { .. })), "{err:?}");
        assert_eq!(store.revision().await.unwrap(), 0);
        assert_eq!(store.list(Kind::Instance, "").await.unwrap(), vec![]);
        // The same key in two kinds is two keys.
        let node = Op::Put {
            kind: Kind::Node,
            key: "k".into(),
            value: b"n".to_vec(),
            precondition: Precondition::None,
        };
        assert_eq!(store.commit(vec![put("k", "1"), node]).await.unwrap(), 1);
    }
}
