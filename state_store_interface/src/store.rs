//! The [`StateStore`] trait and the types it speaks.

use crate::StoreError;
use async_trait::async_trait;
use orchestrator_shared_types::{Event, WorkloadId};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// A store-wide, strictly increasing version number. Every committed write gets the next one.
/// Revision 0 means "nothing yet".
pub type Revision = u64;

/// The collections of the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    /// Workload definitions, keyed by name.
    Workload,
    /// Workload instances, keyed by `{workload_id}/{instance_id}`.
    Instance,
    /// Nodes, keyed by node id; node cordons, keyed by `cordons/{node_id}` (see
    /// [`crate::typed::NodeCordon`]).
    Node,
    /// Containers the leader assigned to a node, keyed by `{node_id}/{container_id}`; written by
    /// the leader only (a cluster's node agents realize them).
    Assignment,
    /// What a node's agent observes of its containers, keyed by `{node_id}/{container_id}`;
    /// written by that node's agent only.
    ContainerStatus,
    /// Cluster-wide records: the cluster's identity (`id`), the leadership key (`leader`) and the
    /// members' liveness keys (`members/{node_id}`), the last two bound to leases (see
    /// [`crate::Coordination`]).
    Cluster,
}

impl Kind {
    /// Every kind, in a fixed order.
    pub const ALL: [Kind; 6] = [
        Kind::Workload,
        Kind::Instance,
        Kind::Node,
        Kind::Assignment,
        Kind::ContainerStatus,
        Kind::Cluster,
    ];
}

/// A set of [`Kind`]s: which collections a watch follows (see [`StateStore::watch_kinds`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KindSet(u8);

impl KindSet {
    /// Every collection.
    pub const ALL: KindSet = KindSet(0b11_1111);

    /// The collections in `kinds`.
    pub const fn of(kinds: &[Kind]) -> Self {
        let mut bits = 0;
        let mut i = 0;
        while i < kinds.len() {
            bits |= Self::bit(kinds[i]);
            i += 1;
        }
        Self(bits)
    }

    /// Whether `kind` is in the set.
    pub fn contains(self, kind: Kind) -> bool {
        self.0 & Self::bit(kind) != 0
    }

    const fn bit(kind: Kind) -> u8 {
        match kind {
            Kind::Workload => 1,
            Kind::Instance => 2,
            Kind::Node => 4,
            Kind::Assignment => 8,
            Kind::ContainerStatus => 16,
            Kind::Cluster => 32,
        }
    }
}

/// One stored key-value with its revisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its collection.
    pub kind: Kind,
    /// Its key within the collection.
    pub key: String,
    /// The value (JSON, see [`crate::StoreExt`]).
    pub value: Vec<u8>,
    /// Revision of the write that created it.
    pub create_revision: Revision,
    /// Revision of the write that last modified it.
    pub mod_revision: Revision,
}

/// A condition a write needs to hold, checked atomically with the write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Write unconditionally.
    None,
    /// The key must not exist (create).
    Absent,
    /// The key must exist.
    Exists,
    /// The key must exist and have been last modified at exactly this revision (compare-and-swap).
    ModRevision(Revision),
}

/// One operation of a batch: a write, or a check that writes nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Create or replace `key`.
    Put {
        /// Collection.
        kind: Kind,
        /// Key.
        key: String,
        /// New value.
        value: Vec<u8>,
        /// Condition.
        precondition: Precondition,
    },
    /// Remove `key`. Deleting an absent key with `Precondition::None` is not an error.
    Delete {
        /// Collection.
        kind: Kind,
        /// Key.
        key: String,
        /// Condition.
        precondition: Precondition,
    },
    /// Writes nothing: the batch commits only if `precondition` holds for `key` (an etcd
    /// compare without an operation). A leader fences its writes so: every batch checks the
    /// leadership key it holds, so a deposed leader's late writes fail.
    Check {
        /// Collection.
        kind: Kind,
        /// Key.
        key: String,
        /// Condition.
        precondition: Precondition,
    },
}

impl Op {
    /// The collection and key the op writes (or checks).
    pub fn target(&self) -> (Kind, &str) {
        match self {
            Op::Put { kind, key, .. }
            | Op::Delete { kind, key, .. }
            | Op::Check { kind, key, .. } => (*kind, key),
        }
    }

    /// The condition the op needs to hold.
    pub fn precondition(&self) -> Precondition {
        match self {
            Op::Put { precondition, .. }
            | Op::Delete { precondition, .. }
            | Op::Check { precondition, .. } => *precondition,
        }
    }

    /// Whether the op writes (a [`Op::Check`] does not).
    pub fn writes(&self) -> bool {
        !matches!(self, Op::Check { .. })
    }
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    /// Revision of the commit that made the change.
    pub revision: Revision,
    /// Collection.
    pub kind: Kind,
    /// Key.
    pub key: String,
    /// The new value, or `None` for a delete.
    pub value: Option<Vec<u8>>,
}

/// Which events [`StateStore::list_events`] returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only events about this workload.
    pub workload_id: Option<WorkloadId>,
    /// Only events with `seq` greater than this.
    pub after_seq: Option<u64>,
    /// At most this many (still returned oldest first); [`EventFilter::limit_from`] says which.
    pub limit: Option<usize>,
    /// Which end of the matching events `limit` keeps: the most recent (the default, for "what
    /// happened lately"), or the oldest (for paging forward with `after_seq`).
    pub limit_from: LimitFrom,
}

/// The end of the matching events that [`EventFilter::limit`] counts from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LimitFrom {
    /// Keep the most recent matches: a tail of the log.
    #[default]
    Newest,
    /// Keep the oldest matches after `after_seq`: the next page when reading the log in order,
    /// so that pages that each pass the last `seq` of the previous one miss nothing.
    Oldest,
}

/// A stream of changes, in revision order, with no gaps: every change committed after the
/// watch's start revision is delivered exactly once, or the stream ends early: with an error
/// (e.g. [`StoreError::Compacted`]), or with `None` when the store dropped a watcher that fell too
/// far behind (or closed). Either way the watcher must re-list and watch again from the listed
/// revision; it is never silently skipped ahead.
#[derive(Debug)]
pub struct Watch {
    rx: mpsc::Receiver<Result<WatchEvent, StoreError>>,
}

impl Watch {
    /// A watch fed by `rx`; implementations create the channel and feed it from a task.
    pub fn new(rx: mpsc::Receiver<Result<WatchEvent, StoreError>>) -> Self {
        Self { rx }
    }

    /// The next change; `None` when the store ended the watch (it closed, or this watcher fell
    /// too far behind): re-list, then watch again.
    pub async fn next(&mut self) -> Option<Result<WatchEvent, StoreError>> {
        self.rx.recv().await
    }

    /// The next change if one is already queued, without waiting (for unit tests of the
    /// stores' fan-out).
    #[cfg(test)]
    pub(crate) fn try_next(
        &mut self,
    ) -> Result<Result<WatchEvent, StoreError>, mpsc::error::TryRecvError> {
        self.rx.try_recv()
    }
}

/// Revisioned, transactional storage of workloads, instances and nodes, plus the event log.
///
/// Implementations must pass [`crate::conformance`]. All methods are safe to call concurrently.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait StateStore: Send + Sync {
    /// The entry at `key`, if any.
    async fn get(&self, kind: Kind, key: &str) -> Result<Option<Entry>, StoreError>;

    /// Every entry of `kind` whose key starts with `prefix` (empty: all), sorted by key.
    async fn list(&self, kind: Kind, prefix: &str) -> Result<Vec<Entry>, StoreError>;

    /// One page of [`StateStore::list`]: the first `limit` entries of `kind` whose key starts
    /// with `prefix` and sorts strictly after `start_after` (from the start when `None`),
    /// sorted by key. Passing the last key of each page as the next `start_after` visits every
    /// entry once, in order, however many there are (entries written meanwhile are seen if
    /// their key is after the cursor). `start_after` need not be a stored key, nor start with
    /// `prefix`. A `limit` of 0 gives nothing.
    ///
    /// Stores should override this with a range scan costing O(log n + limit): callers page
    /// precisely so as not to read everything. This default does read everything (`list`,
    /// then cut), so that implementations written before it keep working, only slower.
    async fn list_page<'a>(
        &self,
        kind: Kind,
        prefix: &str,
        start_after: Option<&'a str>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut entries = self.list(kind, prefix).await?;
        let skip = start_after.map_or(0, |after| {
            entries.partition_point(|e| e.key.as_str() <= after)
        });
        entries.drain(..skip);
        entries.truncate(limit);
        Ok(entries)
    }

    /// Applies `ops` atomically: all of them at one new revision, or none if any precondition
    /// fails (then [`StoreError::Conflict`] names the first failing key). Returns the revision of
    /// the commit. An empty batch changes nothing and returns the current revision.
    ///
    /// Preconditions are checked against the state before the batch, as in an etcd transaction.
    /// A batch must not write the same key twice (etcd refuses it): such a batch fails as a whole
    /// with a non-transient error. A delete of an absent key is no change: a batch of only such
    /// deletes returns the current revision and emits no watch event.
    async fn commit(&self, ops: Vec<Op>) -> Result<Revision, StoreError>;

    /// The revision of the last commit.
    async fn revision(&self) -> Result<Revision, StoreError>;

    /// Every change committed after revision `after`, then live changes as they commit.
    /// Fails with [`StoreError::Compacted`] if the store no longer keeps all changes after
    /// `after`; its `oldest` is the oldest revision whose changes are all kept, so
    /// `watch(oldest - 1)` works (but re-listing first is what the caller usually needs).
    async fn watch(&self, after: Revision) -> Result<Watch, StoreError> {
        self.watch_kinds(after, KindSet::ALL).await
    }

    /// [`StateStore::watch`] of the changes to the collections in `kinds` only, with the same
    /// guarantees for those (every one after `after` exactly once, in order, or the stream
    /// ends). Changes to other collections are not sent at all, so a watcher that follows
    /// workloads does not pay for a flood of instance writes (etcd: a watch on a key prefix).
    async fn watch_kinds(&self, after: Revision, kinds: KindSet) -> Result<Watch, StoreError>;

    /// [`StateStore::watch_kinds`] of the keys of `kind` that start with `prefix` only, with
    /// the same guarantees for those keys: a node's agent follows its own node's assignments
    /// without receiving every other node's (etcd: a watch on that key prefix, so thousands of
    /// agents on one etcd each get only their own changes).
    ///
    /// This default filters a watch of the whole collection in a forwarding task; stores that
    /// can filter at the source override it.
    async fn watch_prefix(
        &self,
        after: Revision,
        kind: Kind,
        prefix: &str,
    ) -> Result<Watch, StoreError> {
        let mut whole = self.watch_kinds(after, KindSet::of(&[kind])).await?;
        let (tx, rx) = mpsc::channel(1024);
        let prefix = prefix.to_owned();
        // Ends when the source ends (after forwarding its error) or the watcher is dropped.
        tokio::spawn(async move {
            while let Some(item) = whole.next().await {
                let wanted = item.as_ref().map_or(true, |e| e.key.starts_with(&prefix));
                if wanted && tx.send(item).await.is_err() {
                    return;
                }
            }
        });
        Ok(Watch::new(rx))
    }

    /// Appends events to the log, assigning each the next `seq`. The log keeps a bounded
    /// number of the most recent events.
    async fn append_events(&self, events: Vec<Event>) -> Result<(), StoreError>;

    /// Events matching `filter`, oldest first.
    async fn list_events(&self, filter: &EventFilter) -> Result<Vec<Event>, StoreError>;
}
