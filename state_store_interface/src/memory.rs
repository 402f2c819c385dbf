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
//! # Watches
//! Changes are kept in a bounded history (100,000 by default). `watch(after)` replays the
//! history's changes after `after`, then registers the watcher for live changes, all under the
//! lock, so nothing is missed or repeated in between. If `after` is older than what the history
//! still holds, the watch fails with [`StoreError::Compacted`].
//!
//! Each watcher has a bounded channel (room for its replay plus 10,000 live changes by default).
//! A watcher that stops reading is never skipped ahead silently: when its channel is full, the
//! store drops it and its stream ends (`next()` returns `None`) after the changes it already
//! holds. `None` therefore means "re-list, then watch again from the listed revision".

use crate::*;
use async_trait::async_trait;
use orchestrator_shared_types::Event;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::mpsc;

/// Changes of watch history kept by [`InMemoryStore::new`].
pub const DEFAULT_HISTORY: usize = 100_000;
/// Events of the event log kept by [`InMemoryStore::new`].
pub const DEFAULT_EVENTS: usize = 10_000;
/// Live changes a watcher may fall behind by before it is dropped.
pub const DEFAULT_WATCH_BUFFER: usize = 10_000;

/// The in-memory twin of the store, for tests, scenarios and benchmarks.
pub struct InMemoryStore {
    inner: Mutex<Inner>,
    history_limit: usize,
    event_limit: usize,
    watch_buffer: usize,
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

impl Change {
    fn to_event(&self) -> WatchEvent {
        WatchEvent {
            revision: self.revision,
            kind: self.kind,
            key: self.key.clone(),
            value: self.value.as_deref().map(<[u8]>::to_vec),
        }
    }
}

struct Watcher {
    tx: mpsc::Sender<Result<WatchEvent, StoreError>>,
    /// Only changes after this revision are sent (a watch may start in the future).
    after: Revision,
}

#[derive(Default)]
struct Inner {
    /// One table per kind, so lookups borrow the `&str` key instead of building a `(Kind, String)`.
    tables: [BTreeMap<String, Stored>; 3],
    revision: Revision,
    history: VecDeque<Change>,
    /// Highest revision of a change dropped from the history (0: none dropped).
    compacted: Revision,
    watchers: Vec<Watcher>,
    events: VecDeque<Event>,
    last_seq: u64,
}

fn slot(kind: Kind) -> usize {
    match kind {
        Kind::Workload => 0,
        Kind::Instance => 1,
        Kind::Node => 2,
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

/// Why `precondition` fails against the current entry, if it does.
fn violated(precondition: Precondition, current: Option<&Stored>) -> Option<String> {
    match (precondition, current) {
        (Precondition::None, _) => None,
        (Precondition::Absent, None) | (Precondition::Exists, Some(_)) => None,
        (Precondition::Absent, Some(s)) => Some(format!(
            "expected absent, exists (mod revision {})",
            s.mod_revision
        )),
        (Precondition::Exists, None) => Some("expected to exist, absent".into()),
        (Precondition::ModRevision(want), Some(s)) if s.mod_revision == want => None,
        (Precondition::ModRevision(want), Some(s)) => Some(format!(
            "expected mod revision {want}, found {}",
            s.mod_revision
        )),
        (Precondition::ModRevision(want), None) => {
            Some(format!("expected mod revision {want}, absent"))
        }
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
            inner: Mutex::new(Inner::default()),
            history_limit: history,
            event_limit: events,
            watch_buffer: DEFAULT_WATCH_BUFFER,
        }
    }

    /// Sets how many live changes a watcher may fall behind by before the store drops it
    /// (at least 1).
    pub fn with_watch_buffer(mut self, changes: usize) -> Self {
        self.watch_buffer = changes.max(1);
        self
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Critical sections check everything before they mutate and do not panic midway (short
        // of an allocation failure, which aborts), so a poisoned lock still guards consistent
        // data.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
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
            .field("revision", &inner.revision)
            .field(
                "entries",
                &inner.tables.iter().map(BTreeMap::len).sum::<usize>(),
            )
            .field("history", &inner.history.len())
            .field("compacted", &inner.compacted)
            .field("watchers", &inner.watchers.len())
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
        // Start at the later of the prefix and the cursor: every key with the prefix sorts at or
        // after the prefix, so a cursor before it excludes nothing.
        let from = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
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

        // Check everything before writing anything: preconditions see the state before the
        // batch, as in an etcd transaction, and a key may be written once per batch (etcd
        // refuses duplicates, so the twin does too rather than let code pass here and fail there).
        if ops.len() > 1 {
            let mut targets: Vec<(Kind, &str)> = ops.iter().map(Op::target).collect();
            targets.sort_unstable();
            if let Some(w) = targets.windows(2).find(|w| w[0] == w[1]) {
                return Err(StoreError::Backend {
                    operation: "commit",
                    source: format!("{:?} {:?} is written twice in one batch", w[0].0, w[0].1)
                        .into(),
                });
            }
        }
        for op in &ops {
            let (kind, key) = op.target();
            let precondition = match op {
                Op::Put { precondition, .. } | Op::Delete { precondition, .. } => *precondition,
            };
            if let Some(reason) = violated(precondition, inner.table(kind).get(key)) {
                return Err(StoreError::Conflict {
                    kind,
                    key: key.to_owned(),
                    reason,
                });
            }
        }

        let revision = inner.revision + 1;
        let mut changes = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                Op::Put {
                    kind, key, value, ..
                } => {
                    let value: Arc<[u8]> = value.into();
                    let table = inner.table_mut(kind);
                    match table.get_mut(&key) {
                        Some(stored) => {
                            stored.value = value.clone();
                            stored.mod_revision = revision;
                        }
                        None => {
                            table.insert(
                                key.clone(),
                                Stored {
                                    value: value.clone(),
                                    create_revision: revision,
                                    mod_revision: revision,
                                },
                            );
                        }
                    }
                    changes.push(Change {
                        revision,
                        kind,
                        key,
                        value: Some(value),
                    });
                }
                Op::Delete { kind, key, .. } => {
                    // Deleting nothing is not a change: no revision, no watch event (as etcd).
                    if inner.table_mut(kind).remove(&key).is_some() {
                        changes.push(Change {
                            revision,
                            kind,
                            key,
                            value: None,
                        });
                    }
                }
            }
        }
        if changes.is_empty() {
            return Ok(inner.revision);
        }
        inner.revision = revision;

        // A watcher whose channel is full or closed is dropped, never skipped ahead: its
        // stream ends after what it holds, which tells it to re-list.
        inner.watchers.retain(|w| {
            changes
                .iter()
                .filter(|c| c.revision > w.after)
                .all(|c| w.tx.try_send(Ok(c.to_event())).is_ok())
        });

        let limit = self.history_limit;
        let inner = &mut *inner;
        inner.history.extend(changes);
        while inner.history.len() > limit {
            if let Some(dropped) = inner.history.pop_front() {
                inner.compacted = dropped.revision;
            }
        }
        Ok(revision)
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        Ok(self.lock().revision)
    }

    async fn watch(&self, after: Revision) -> Result<Watch, StoreError> {
        let mut inner = self.lock();
        // Every change after `after` must still be in the history: the dropped ones all have a
        // revision <= `compacted`.
        if after < inner.compacted {
            return Err(StoreError::Compacted {
                requested: after,
                oldest: inner.compacted + 1,
            });
        }
        let start = inner.history.partition_point(|c| c.revision <= after);
        let replay = inner.history.len() - start;
        // Room for the whole replay on top of the live buffer, so replaying never drops the
        // watcher and the replay can be queued here, under the lock, in order before any live
        // change. tokio allocates the channel's slots lazily, so a large capacity costs nothing.
        let (tx, rx) = mpsc::channel(replay + self.watch_buffer);
        for change in inner.history.range(start..) {
            // Cannot fail: the channel has room for the replay and `rx` is alive.
            let _ = tx.try_send(Ok(change.to_event()));
        }
        inner.watchers.push(Watcher { tx, after });
        Ok(Watch::new(rx))
    }

    async fn append_events(&self, events: Vec<Event>) -> Result<(), StoreError> {
        let mut inner = self.lock();
        for mut event in events {
            inner.last_seq += 1;
            event.seq = inner.last_seq;
            inner.events.push_back(event);
        }
        let excess = inner.events.len().saturating_sub(self.event_limit);
        inner.events.drain(..excess);
        Ok(())
    }

    async fn list_events(&self, filter: &EventFilter) -> Result<Vec<Event>, StoreError> {
        let inner = self.lock();
        let after = filter.after_seq.unwrap_or(0);
        let wanted = |e: &&Event| {
            filter
                .workload_id
                .as_ref()
                .is_none_or(|w| e.workload_id.as_ref() == Some(w))
        };
        if filter.limit_from == LimitFrom::Oldest {
            // `seq` increases along the log: binary search for the first one after `after`,
            // then read forward only as far as the page.
            let start = inner.events.partition_point(|e| e.seq <= after);
            return Ok(inner
                .events
                .range(start..)
                .filter(wanted)
                .take(filter.limit.unwrap_or(usize::MAX))
                .cloned()
                .collect());
        }
        // Newest first, so `limit` keeps the most recent matches and the scan stops early.
        let mut events: Vec<Event> = inner
            .events
            .iter()
            .rev()
            .take_while(|e| e.seq > after)
            .filter(wanted)
            .take(filter.limit.unwrap_or(usize::MAX))
            .cloned()
            .collect();
        events.reverse();
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_shared_types::EventKind;
    use std::time::Duration;

    crate::state_store_conformance!(|| async { InMemoryStore::new() });

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
        assert_eq!(store.lock().watchers.len(), 1);
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
        assert!(store.lock().watchers.is_empty());
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
