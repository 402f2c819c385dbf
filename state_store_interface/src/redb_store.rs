//! [`RedbStore`]: the embedded, persistent store (feature `redb`), the daemon's default.
//!
//! It keeps the same semantics as [`crate::InMemoryStore`] (and passes the same conformance
//! suite) in one [redb](https://www.redb.org) file, `state.redb`, in a data directory. Reopening
//! the directory keeps everything: entries with their revisions, the revision counter, the event
//! log and the watch history.
//!
//! # On disk
//! * `workloads`, `instances`, `nodes`: one table per [`Kind`], keyed by the entry's key (so a
//!   prefix `list` is a plain range scan). A value is a record: `create_revision` (u64 LE),
//!   `mod_revision` (u64 LE), then the value bytes as given. A fixed header rather than JSON
//!   because the value is already JSON and is stored untouched.
//! * `history`: every change, for watch replay, keyed by `(revision, index in its commit)`. A
//!   value is: kind (u8: 0 workload, 1 instance, 2 node), op (u8: 0 delete, 1 put), key length
//!   (u32 LE), the key (UTF-8), then, for a put, the value bytes. Bounded: the oldest changes
//!   beyond [`RedbOptions::history_limit`] are dropped by the transaction that adds new ones,
//!   and a watch from before them fails with [`StoreError::Compacted`].
//! * `events`: the event log, keyed by `seq`, each event as JSON (readable, and the type
//!   changes more often than the entry records). The oldest beyond
//!   [`RedbOptions::event_limit`] are dropped by the transaction that appends.
//! * `events_by_workload`: an index of the event log, `(workload id, seq) -> ()`, maintained by
//!   the same transactions, so a workload's recent events are found without scanning the log
//!   (`describe` of an old workload would otherwise decode up to the whole log).
//! * `meta`: u64 counters: `format` (the layout above, 2; a layout-1 file gets its index built
//!   when opened), `revision`, `event_seq` and
//!   `compacted` (the highest revision of a change dropped from `history`).
//!
//! Records are decoded with checks: a malformed one is a [`StoreError::Backend`] naming the
//! entry and the file, never a panic. Everything one write changes (entries, history, counters)
//! is in one redb transaction, so a crash leaves all of it or none of it.
//!
//! # Writes: one writer thread and group commit
//! A durable redb commit costs an fsync (about 0.3 ms, so ~3k commits/s) however little it
//! writes, while 100 writes in one commit run at 64–88k/s. So `commit` and `append_events` do
//! not write themselves: they queue a request to one writer thread (redb is synchronous, so it
//! never blocks the async runtime) and await its answer. The thread takes everything queued,
//! applies each request in order inside ONE write transaction — each commit gets its own
//! consecutive revision and checks its preconditions against the state including the earlier
//! requests of the group; one that fails writes nothing and gets its error while the others go
//! on — commits durably ([`Durability::Immediate`]) once, and only then publishes the changes to
//! watchers and answers the callers. An acknowledged write has been fsynced. If the transaction
//! fails, every request of the group fails with [`StoreError::Backend`] and every watch ends
//! (a failed redb commit may still have become durable, all of it or nothing, so callers must
//! re-read and watchers re-list). After a failed commit redb refuses further writes until the
//! database is reopened, so that error is permanent: the daemon must restart (reopening repairs
//! the file).
//!
//! Measured through this store (`tests/redb_throughput.rs`, release build, 1 KB values, ext4,
//! a busy machine): 1.8–2.3k sequential commits/s, 16–21k/s from 64 concurrent committers
//! (about 32 commits per durable transaction).
//!
//! # Reads
//! Reads use their own read transactions (a consistent snapshot, never blocked by the writer).
//! `get` is a point read and runs on the calling task, `revision` reads the last published
//! revision from memory; `list`, `list_page`, `list_events` and `watch` (which may replay a long
//! history) run on tokio's blocking pool. `list_page` is a range scan that stops after its page,
//! so paging through a large table never reads more than the pages asked for.
//!
//! # Shared rules
//! What a commit may do and how the event log is numbered, kept and filtered come from
//! [`crate::rules`]; the fan-out to watchers from [`crate::watch_hub`]. This file keeps the
//! data on disk and the order of writes.
//!
//! # Watches
//! redb has no watch, so watches live in this process, as in the in-memory twin. The writer
//! publishes a group's changes under the hub lock after the durable commit; `watch(after)` takes
//! the same lock, replays the history from disk up to the last published revision and registers
//! the watcher for what follows, so a watch started during a concurrent commit neither misses
//! nor repeats a change. Each watcher has a bounded channel (its replay plus
//! [`RedbOptions::watch_buffer`] live changes); one that falls further behind is dropped, so
//! its stream ends with `None` after what it holds and it re-lists, never silently skipping.
//!
//! # Processes
//! The file is locked by the process that opens it: a second `open` of the same directory
//! (another daemon, or another store in this process) fails with an error naming the file.
//! Dropping the store waits for the writer thread to finish what is queued and closes the file.
//!
//! # Tests
//! `tests/redb_conformance.rs` (the suite), `tests/redb_reopen.rs` (persistence, locking,
//! concurrent watches), `tests/redb_crash.rs` (acknowledged writes survive `kill -9` of the
//! `redb-crash-writer` helper binary, `src/bin/redb_crash_writer.rs`) and
//! `tests/redb_throughput.rs` (numbers, printed).

use crate::memory::{DEFAULT_EVENTS, DEFAULT_HISTORY, DEFAULT_WATCH_BUFFER};
use crate::rules::{self, Found, Plan};
use crate::watch_hub::{check_kept, WatchHub};
use crate::{
    Entry, EventFilter, Kind, KindSet, Op, Revision, StateStore, StoreError, Watch, WatchEvent,
};
use async_trait::async_trait;
use orchestrator_shared_types::Event;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table,
    TableDefinition, WriteTransaction,
};
use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// The name of the database file inside the data directory.
pub const STATE_FILE: &str = "state.redb";
/// Requests the writer applies in one transaction at most, so one group's latency stays bounded
/// under a flood of writers.
pub const DEFAULT_MAX_GROUP: usize = 1024;

/// The on-disk layout version this build reads and writes (see the module docs).
const FORMAT: u64 = 2;

const WORKLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("workloads");
const INSTANCES: TableDefinition<&str, &[u8]> = TableDefinition::new("instances");
const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes");
const ASSIGNMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("assignments");
const CONTAINER_STATUSES: TableDefinition<&str, &[u8]> = TableDefinition::new("container_statuses");
const CLUSTER: TableDefinition<&str, &[u8]> = TableDefinition::new("cluster");
const HISTORY: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("history");
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const EVENTS_BY_WORKLOAD: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("events_by_workload");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const META_FORMAT: &str = "format";
const META_REVISION: &str = "revision";
const META_EVENT_SEQ: &str = "event_seq";
const META_COMPACTED: &str = "compacted";

/// Limits and tuning of a [`RedbStore`]; `Default` gives the daemon's values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedbOptions {
    /// Changes kept for watch replay (100,000 by default); older ones are compacted.
    pub history_limit: usize,
    /// Most recent events kept in the log (10,000 by default).
    pub event_limit: usize,
    /// Live changes a watcher may fall behind by before it is dropped (10,000 by default, at
    /// least 1).
    pub watch_buffer: usize,
    /// Requests applied in one write transaction at most (1,024 by default, at least 1).
    pub max_group: usize,
}

impl Default for RedbOptions {
    fn default() -> Self {
        Self {
            history_limit: DEFAULT_HISTORY,
            event_limit: DEFAULT_EVENTS,
            watch_buffer: DEFAULT_WATCH_BUFFER,
            max_group: DEFAULT_MAX_GROUP,
        }
    }
}

/// Counters of the writer thread, to see group commit at work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Write requests (`commit` and `append_events` calls) answered.
    pub requests: u64,
    /// Durable redb transactions committed for them.
    pub transactions: u64,
}

/// The embedded, persistent [`StateStore`]: one redb file in a data directory, written by one
/// group-committing thread, with in-process watches. See the [module docs](self).
pub struct RedbStore {
    shared: Arc<Shared>,
    /// `None` once dropping: closing the queue is what stops the writer.
    queue: Option<std_mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
    watch_buffer: usize,
}

// ---------------------------------------------------------------------------------------------
// Errors

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What was being done to which file, above the underlying error.
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}")]
struct Context {
    action: String,
    path: String,
    #[source]
    source: BoxError,
}

/// A failure below the store's API: redb's, or a record that does not decode.
#[derive(Debug, thiserror::Error)]
enum DbError {
    #[error(transparent)]
    Redb(#[from] redb::Error),
    #[error("corrupt record: {0}")]
    Corrupt(String),
    #[error("corrupt event {seq}")]
    CorruptEvent {
        seq: u64,
        #[source]
        source: serde_json::Error,
    },
    #[error("the file has layout version {0}, this build reads version {FORMAT}")]
    Format(u64),
}

/// `?` converts each redb error type into [`DbError`] (they all fold into `redb::Error`).
macro_rules! from_redb {
    ($($t:ty),* $(,)?) => {
        $(impl From<$t> for DbError {
            fn from(e: $t) -> Self {
                DbError::Redb(e.into())
            }
        })*
    };
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError,
);

// ---------------------------------------------------------------------------------------------
// Record layouts (see the module docs)

/// The revisions of an entry record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Revisions {
    create: Revision,
    modified: Revision,
}

const ENTRY_HEADER: usize = 16;
const CHANGE_HEADER: usize = 6;

fn encode_entry(revisions: Revisions, value: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(ENTRY_HEADER + value.len());
    record.extend_from_slice(&revisions.create.to_le_bytes());
    record.extend_from_slice(&revisions.modified.to_le_bytes());
    record.extend_from_slice(value);
    record
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    let raw: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(raw))
}

fn decode_revisions(kind: Kind, key: &str, record: &[u8]) -> Result<Revisions, DbError> {
    match (u64_at(record, 0), u64_at(record, 8)) {
        (Some(create), Some(modified)) => Ok(Revisions { create, modified }),
        _ => Err(DbError::Corrupt(format!(
            "{kind:?} {key:?}: {} bytes, shorter than the {ENTRY_HEADER}-byte header",
            record.len()
        ))),
    }
}

fn decode_entry(kind: Kind, key: &str, record: &[u8]) -> Result<Entry, DbError> {
    let revisions = decode_revisions(kind, key, record)?;
    Ok(Entry {
        kind,
        key: key.to_owned(),
        value: record[ENTRY_HEADER..].to_vec(),
        create_revision: revisions.create,
        mod_revision: revisions.modified,
    })
}

fn kind_tag(kind: Kind) -> u8 {
    match kind {
        Kind::Workload => 0,
        Kind::Instance => 1,
        Kind::Node => 2,
        Kind::Assignment => 3,
        Kind::ContainerStatus => 4,
        Kind::Cluster => 5,
    }
}

fn kind_of_tag(tag: u8) -> Option<Kind> {
    Kind::ALL.into_iter().find(|k| kind_tag(*k) == tag)
}

fn entries_table(kind: Kind) -> TableDefinition<'static, &'static str, &'static [u8]> {
    match kind {
        Kind::Workload => WORKLOADS,
        Kind::Instance => INSTANCES,
        Kind::Node => NODES,
        Kind::Assignment => ASSIGNMENTS,
        Kind::ContainerStatus => CONTAINER_STATUSES,
        Kind::Cluster => CLUSTER,
    }
}

fn encode_change(kind: Kind, key: &str, value: Option<&[u8]>) -> Result<Vec<u8>, DbError> {
    let key_len = u32::try_from(key.len())
        .map_err(|_| DbError::Corrupt(format!("key of {} bytes is too long", key.len())))?;
    let bytes = value.unwrap_or_default();
    let mut record = Vec::with_capacity(CHANGE_HEADER + key.len() + bytes.len());
    record.push(kind_tag(kind));
    record.push(u8::from(value.is_some()));
    record.extend_from_slice(&key_len.to_le_bytes());
    record.extend_from_slice(key.as_bytes());
    record.extend_from_slice(bytes);
    Ok(record)
}

fn decode_change(revision: Revision, record: &[u8]) -> Result<WatchEvent, DbError> {
    let corrupt = |what: &str| DbError::Corrupt(format!("change at revision {revision}: {what}"));
    let (&[tag, op], rest) = record
        .split_first_chunk::<2>()
        .ok_or_else(|| corrupt("truncated header"))?;
    let kind = kind_of_tag(tag).ok_or_else(|| corrupt(&format!("unknown kind tag {tag}")))?;
    let (len, rest) = rest
        .split_first_chunk::<4>()
        .ok_or_else(|| corrupt("truncated header"))?;
    let len = u32::from_le_bytes(*len) as usize;
    let key = rest.get(..len).ok_or_else(|| corrupt("truncated key"))?;
    let key = std::str::from_utf8(key).map_err(|_| corrupt("key is not UTF-8"))?;
    let value = &rest[len..];
    let value = match op {
        0 if value.is_empty() => None,
        0 => return Err(corrupt("a delete with a value")),
        1 => Some(value.to_vec()),
        other => return Err(corrupt(&format!("unknown op tag {other}"))),
    };
    Ok(WatchEvent {
        revision,
        kind,
        key: key.to_owned(),
        value,
    })
}

/// The `history` key of a change: `(revision, index in its commit)`.
fn history_key(revision: Revision, index: usize) -> Result<(u64, u32), DbError> {
    let index = u32::try_from(index)
        .map_err(|_| DbError::Corrupt(format!("more than {} changes in one commit", u32::MAX)))?;
    Ok((revision, index))
}

// ---------------------------------------------------------------------------------------------
// Counters and tables

/// The `meta` counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counters {
    revision: Revision,
    event_seq: u64,
    compacted: Revision,
}

impl Counters {
    fn load(meta: &impl ReadableTable<&'static str, u64>) -> Result<Self, DbError> {
        let get = |name: &str| -> Result<u64, DbError> {
            Ok(meta.get(name)?.map_or(0, |guard| guard.value()))
        };
        Ok(Self {
            revision: get(META_REVISION)?,
            event_seq: get(META_EVENT_SEQ)?,
            compacted: get(META_COMPACTED)?,
        })
    }

    fn save(&self, meta: &mut Table<'_, &'static str, u64>) -> Result<(), DbError> {
        meta.insert(META_REVISION, self.revision)?;
        meta.insert(META_EVENT_SEQ, self.event_seq)?;
        meta.insert(META_COMPACTED, self.compacted)?;
        Ok(())
    }
}

/// Every table, opened in one write transaction.
struct WriteTables<'t> {
    /// Indexed by `kind_tag`.
    entries: [Table<'t, &'static str, &'static [u8]>; Kind::ALL.len()],
    history: Table<'t, (u64, u32), &'static [u8]>,
    events: Table<'t, u64, &'static [u8]>,
    events_by_workload: Table<'t, (&'static str, u64), ()>,
    meta: Table<'t, &'static str, u64>,
}

impl<'t> WriteTables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Self, DbError> {
        Ok(Self {
            entries: [
                txn.open_table(entries_table(Kind::Workload))?,
                txn.open_table(entries_table(Kind::Instance))?,
                txn.open_table(entries_table(Kind::Node))?,
                txn.open_table(entries_table(Kind::Assignment))?,
                txn.open_table(entries_table(Kind::ContainerStatus))?,
                txn.open_table(entries_table(Kind::Cluster))?,
            ],
            history: txn.open_table(HISTORY)?,
            events: txn.open_table(EVENTS)?,
            events_by_workload: txn.open_table(EVENTS_BY_WORKLOAD)?,
            meta: txn.open_table(META)?,
        })
    }

    fn entries(&mut self, kind: Kind) -> &mut Table<'t, &'static str, &'static [u8]> {
        &mut self.entries[usize::from(kind_tag(kind))]
    }
}

/// Creates the tables of a new file (read transactions fail on a table that does not exist) and
/// checks the layout version of an old one; returns its counters.
fn initialize(db: &Database) -> Result<Counters, DbError> {
    let txn = db.begin_write()?;
    let counters = {
        let mut tables = WriteTables::open(&txn)?;
        let format = tables.meta.get(META_FORMAT)?.map(|guard| guard.value());
        match format {
            None => {
                tables.meta.insert(META_FORMAT, FORMAT)?;
            }
            Some(FORMAT) => {}
            Some(1) => {
                // Layout 1 had no per-workload event index: build it from the log.
                let mut index = Vec::new();
                for item in tables.events.iter()? {
                    let (seq, json) = item?;
                    if let Some(w) = event_workload(seq.value(), json.value())? {
                        index.push((w, seq.value()));
                    }
                }
                for (w, seq) in &index {
                    tables.events_by_workload.insert((w.as_str(), *seq), ())?;
                }
                tables.meta.insert(META_FORMAT, FORMAT)?;
            }
            Some(other) => return Err(DbError::Format(other)),
        }
        Counters::load(&tables.meta)?
    };
    txn.commit()?;
    Ok(counters)
}

fn decode_event(seq: u64, json: &[u8]) -> Result<Event, DbError> {
    serde_json::from_slice(json).map_err(|source| DbError::CorruptEvent { seq, source })
}

/// The workload a stored event is about, for the per-workload index.
fn event_workload(seq: u64, json: &[u8]) -> Result<Option<String>, DbError> {
    Ok(decode_event(seq, json)?.workload_id.map(|w| w.0))
}

// ---------------------------------------------------------------------------------------------
// Shared state: the database, the watch hub, the writer's work

/// A write queued to the writer thread.
enum Job {
    Commit(Vec<Op>),
    Events(Vec<Event>),
}

impl Job {
    fn operation(&self) -> &'static str {
        match self {
            Job::Commit(_) => "commit",
            Job::Events(_) => "append_events",
        }
    }
}

/// A job and where to answer it: the commit's revision (0 for appended events) or its error.
struct Request {
    job: Job,
    reply: oneshot::Sender<Result<Revision, StoreError>>,
}

struct Shared {
    db: Database,
    path: PathBuf,
    history_limit: u64,
    event_limit: u64,
    hub: Mutex<WatchHub>,
    /// `hub.published`, readable without the lock: `revision()` must not wait behind a watch
    /// replaying a long history under it.
    published: AtomicU64,
    requests: AtomicU64,
    transactions: AtomicU64,
}

/// What a write transaction did, to publish and answer once it is durable.
struct Applied {
    outcomes: Vec<Result<Revision, StoreError>>,
    changes: Vec<WatchEvent>,
    revision: Revision,
    committed: bool,
}

impl Shared {
    fn hub(&self) -> MutexGuard<'_, WatchHub> {
        // Critical sections only push to channels and vectors: a panic there (allocation
        // failure aside) cannot leave the hub half-updated, so a poisoned lock is still usable.
        self.hub.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A `Backend` error saying what was done to this file.
    fn fail(
        &self,
        operation: &'static str,
        action: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> StoreError {
        StoreError::Backend {
            operation,
            source: Box::new(Context {
                action: action.into(),
                path: self.path.display().to_string(),
                source: source.into(),
            }),
        }
    }

    // --- reads -------------------------------------------------------------------------------

    fn get_entry(&self, kind: Kind, key: &str) -> Result<Option<Entry>, DbError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(entries_table(kind))?;
        let Some(record) = table.get(key)? else {
            return Ok(None);
        };
        decode_entry(kind, key, record.value()).map(Some)
    }

    /// At most `limit` entries with `prefix` after `start_after`, by key: `list` is the
    /// unbounded case, `list_page` the bounded one. A range scan that stops at the first key
    /// past the prefix or at `limit`, so a page costs O(log n + limit) whatever the table holds.
    fn list_entries(
        &self,
        kind: Kind,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Entry>, DbError> {
        let mut entries = Vec::new();
        if limit == 0 {
            return Ok(entries);
        }
        let txn = self.db.begin_read()?;
        let table = txn.open_table(entries_table(kind))?;
        let from = rules::page_start(prefix, start_after);
        for item in table.range::<&str>((from, Bound::Unbounded))? {
            let (key, record) = item?;
            let key = key.value();
            if !key.starts_with(prefix) {
                break;
            }
            entries.push(decode_entry(kind, key, record.value())?);
            if entries.len() >= limit {
                break;
            }
        }
        Ok(entries)
    }

    fn read_events(&self, filter: &EventFilter) -> Result<Vec<Event>, DbError> {
        let Some(first) = rules::first_seq(filter) else {
            return Ok(Vec::new());
        };
        if filter.limit == Some(0) {
            // Not even a read transaction.
            return Ok(Vec::new());
        }
        let txn = self.db.begin_read()?;
        let table = txn.open_table(EVENTS)?;
        if let Some(workload) = &filter.workload_id {
            // The per-workload index: touch only this workload's events, however many others
            // the log holds.
            let index = txn.open_table(EVENTS_BY_WORKLOAD)?;
            let range = index.range((workload.as_str(), first)..=(workload.as_str(), u64::MAX))?;
            let candidates = range.filter_map(|item| {
                let seq = match item {
                    Ok(item) => item.0.value().1,
                    Err(e) => return Some(Err(DbError::from(e))),
                };
                match table.get(seq) {
                    Ok(json) => json.map(|json| decode_event(seq, json.value())),
                    Err(e) => Some(Err(e.into())),
                }
            });
            return rules::select_events(filter, candidates);
        }
        // The selection reads from the end `limit` counts from and stops as soon as it has
        // enough: newest first for the most recent matches, oldest first for the next page.
        let candidates = table.range(first..)?.map(|item| {
            let (seq, json) = item?;
            decode_event(seq.value(), json.value())
        });
        rules::select_events(filter, candidates)
    }

    /// The kept changes in `(after, upto]`, or the [`StoreError::Compacted`] error if some of
    /// them were dropped.
    fn history(
        &self,
        after: Revision,
        upto: Revision,
    ) -> Result<Result<Vec<WatchEvent>, StoreError>, DbError> {
        let txn = self.db.begin_read()?;
        let compacted = Counters::load(&txn.open_table(META)?)?.compacted;
        if let Err(e) = check_kept(after, compacted) {
            return Ok(Err(e));
        }
        let mut changes = Vec::new();
        if after < upto {
            let history = txn.open_table(HISTORY)?;
            for item in history.range((after + 1, 0)..=(upto, u32::MAX))? {
                let (key, record) = item?;
                changes.push(decode_change(key.value().0, record.value())?);
            }
        }
        Ok(Ok(changes))
    }

    fn open_watch(
        &self,
        after: Revision,
        buffer: usize,
        kinds: KindSet,
    ) -> Result<Watch, StoreError> {
        // Under the lock the writer publishes with: the replay ends at the last published
        // revision and the watcher gets everything after it, so a concurrent commit is seen
        // exactly once (a commit durable but not yet published is in neither the replay nor
        // missed: it is published to this watcher next).
        let mut hub = self.hub();
        let published = hub.published();
        let replay = match self.history(after, published) {
            Ok(Ok(changes)) => changes,
            Ok(Err(compacted)) => return Err(compacted),
            Err(e) => {
                return Err(self.fail(
                    "watch",
                    format!("replaying the changes after revision {after} from"),
                    e,
                ))
            }
        };
        Ok(hub.subscribe(after, replay.into_iter(), buffer, kinds))
    }

    // --- the writer --------------------------------------------------------------------------

    /// Applies a group of requests in one durable transaction, publishes its changes, then
    /// answers each request. Only the writer thread calls it (and unit tests, while the writer
    /// is idle), so groups are applied and published in order.
    fn write_group(&self, group: Vec<Request>) {
        let count = group.len();
        // Counted before answering, so a caller that got its answer sees itself counted.
        self.requests.fetch_add(count as u64, Ordering::Relaxed);
        let (jobs, replies): (Vec<Job>, Vec<_>) =
            group.into_iter().map(|r| (r.job, r.reply)).unzip();
        let operations: Vec<&'static str> = jobs.iter().map(Job::operation).collect();
        match self.apply_group(jobs) {
            Ok(applied) => {
                if applied.committed {
                    self.transactions.fetch_add(1, Ordering::Relaxed);
                }
                // Publish before answering, so a caller whose commit returned finds its change
                // already queued to every live watcher (as with the in-memory store).
                self.publish(&applied.changes, applied.revision);
                for (reply, outcome) in replies.into_iter().zip(applied.outcomes) {
                    // The caller may have gone away; its write stands anyway.
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                // The group failed as a whole. A failed redb commit may still have become
                // durable (all of it or nothing), so the callers get a non-transient error and
                // must re-read, and every watch ends (`None`, "re-list") rather than risk missing
                // changes that were never published.
                self.hub().close();
                let e = Arc::new(e);
                for (reply, operation) in replies.into_iter().zip(operations) {
                    let action = format!("writing a group of {count} requests to");
                    let _ = reply.send(Err(self.fail(operation, action, e.clone())));
                }
            }
        }
    }

    fn apply_group(&self, jobs: Vec<Job>) -> Result<Applied, DbError> {
        let mut txn = self.db.begin_write()?;
        // redb's default, set anyway because acknowledging a write promises it survives a crash:
        // `commit` returns only after the fsync.
        txn.set_durability(Durability::Immediate)?;
        let mut outcomes = Vec::with_capacity(jobs.len());
        let mut changes = Vec::new();
        let (before, counters) = {
            let mut tables = WriteTables::open(&txn)?;
            let before = Counters::load(&tables.meta)?;
            let mut counters = before;
            for job in jobs {
                let outcome = match job {
                    Job::Commit(ops) => {
                        self.apply_commit(&mut tables, &mut counters, ops, &mut changes)?
                    }
                    Job::Events(events) => self.apply_events(&mut tables, &mut counters, events)?,
                };
                outcomes.push(outcome);
            }
            while tables.history.len()? > self.history_limit {
                match tables.history.pop_first()? {
                    Some((key, _)) => counters.compacted = key.value().0,
                    None => break,
                }
            }
            counters.save(&mut tables.meta)?;
            (before, counters)
        };
        // A group of only conflicts, empty batches and no-op deletes wrote nothing: skip the
        // fsync.
        let committed = !changes.is_empty() || counters.event_seq != before.event_seq;
        if committed {
            txn.commit()?;
        } else {
            txn.abort()?;
        }
        Ok(Applied {
            outcomes,
            changes,
            revision: counters.revision,
            committed,
        })
    }

    /// Applies one commit inside the group's transaction. The outer error is a storage failure
    /// that fails the whole group; the inner one is this commit's own (conflict, duplicate key,
    /// corrupt record), checked before it writes anything.
    fn apply_commit(
        &self,
        tables: &mut WriteTables<'_>,
        counters: &mut Counters,
        ops: Vec<Op>,
        changes: &mut Vec<WatchEvent>,
    ) -> Result<Result<Revision, StoreError>, DbError> {
        // Preconditions see the state before the batch, which includes the earlier commits of
        // this group.
        let plan = rules::plan_commit(ops, counters.revision, |kind, key| {
            let table = &tables.entries[usize::from(kind_tag(kind))];
            Ok::<_, DbError>(match table.get(key)? {
                None => Found::Absent,
                Some(record) => match decode_revisions(kind, key, record.value()) {
                    Ok(revisions) => Found::Present {
                        create_revision: revisions.create,
                        mod_revision: revisions.modified,
                    },
                    Err(e) => Found::Unreadable(self.fail(
                        "commit",
                        format!("reading {kind:?} {key:?} from"),
                        e,
                    )),
                },
            })
        })?;
        let Plan { revision, writes } = match plan {
            Ok(plan) => plan,
            Err(e) => return Ok(Err(e)),
        };
        for (index, write) in writes.into_iter().enumerate() {
            let change = write.change;
            let (kind, key) = (change.kind, change.key.as_str());
            match &change.value {
                Some(value) => {
                    let revisions = Revisions {
                        create: write.create_revision,
                        modified: revision,
                    };
                    tables
                        .entries(kind)
                        .insert(key, encode_entry(revisions, value).as_slice())?;
                }
                None => {
                    tables.entries(kind).remove(key)?;
                }
            }
            let record = encode_change(kind, key, change.value.as_deref())?;
            tables
                .history
                .insert(history_key(revision, index)?, record.as_slice())?;
            changes.push(change);
        }
        counters.revision = revision;
        Ok(Ok(revision))
    }

    /// Appends events inside the group's transaction and drops the oldest beyond the limit.
    fn apply_events(
        &self,
        tables: &mut WriteTables<'_>,
        counters: &mut Counters,
        events: Vec<Event>,
    ) -> Result<Result<Revision, StoreError>, DbError> {
        // Encode everything first, so a failure writes nothing.
        let mut events = events;
        let seq = rules::number_events(&mut events, counters.event_seq);
        let mut encoded = Vec::with_capacity(events.len());
        let mut workloads = Vec::with_capacity(events.len());
        for event in events {
            let seq = event.seq;
            workloads.push(event.workload_id.as_ref().map(|w| w.0.clone()));
            match serde_json::to_vec(&event) {
                Ok(json) => encoded.push((seq, json)),
                Err(e) => {
                    return Ok(Err(self.fail(
                        "append_events",
                        format!("encoding event {seq} for"),
                        e,
                    )))
                }
            }
        }
        if encoded.is_empty() {
            return Ok(Ok(0));
        }
        for ((seq, json), workload) in encoded.iter().zip(&workloads) {
            tables.events.insert(*seq, json.as_slice())?;
            if let Some(w) = workload {
                tables.events_by_workload.insert((w.as_str(), *seq), ())?;
            }
        }
        counters.event_seq = seq;
        let last_dropped = rules::last_dropped_seq(seq, self.event_limit);
        if last_dropped > 0 {
            // Drop the index entries of the events that go; each append drops about as many
            // events as it adds, so this decodes O(appended) events, not the log.
            let mut dropped = Vec::new();
            for item in tables.events.range(..=last_dropped)? {
                let (seq, json) = item?;
                if let Some(w) = event_workload(seq.value(), json.value())? {
                    dropped.push((w, seq.value()));
                }
            }
            for (w, seq) in &dropped {
                tables.events_by_workload.remove((w.as_str(), *seq))?;
            }
            tables.events.retain_in(..=last_dropped, |_, _| false)?;
        }
        Ok(Ok(0))
    }

    /// Sends a durable group's changes to the watchers.
    fn publish(&self, changes: &[WatchEvent], revision: Revision) {
        let mut hub = self.hub();
        hub.publish(changes, revision);
        self.published.store(revision, Ordering::Release);
    }
}

/// The writer thread: takes everything queued (up to `max_group` requests) and writes it as one
/// group, until the store closes the queue.
fn writer_loop(shared: Arc<Shared>, queue: std_mpsc::Receiver<Request>, max_group: usize) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < max_group {
            match queue.try_recv() {
                Ok(request) => group.push(request),
                Err(_) => break,
            }
        }
        shared.write_group(group);
    }
}

// ---------------------------------------------------------------------------------------------
// The store

impl RedbStore {
    /// Opens (creating it if needed) the store in `dir`: the directory and its `state.redb`,
    /// with the default limits. Blocking (it may repair the file after a crash): call it before
    /// starting the runtime or from `spawn_blocking`.
    ///
    /// Fails if another process (or another store of this one) has the file open.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, RedbOptions::default())
    }

    /// [`RedbStore::open`] with explicit limits.
    pub fn open_with(dir: &Path, options: RedbOptions) -> Result<Self, StoreError> {
        let path = dir.join(STATE_FILE);
        let fail = |action: &str, source: BoxError| StoreError::Backend {
            operation: "open",
            source: Box::new(Context {
                action: action.to_owned(),
                path: path.display().to_string(),
                source,
            }),
        };
        std::fs::create_dir_all(dir)
            .map_err(|e| fail("creating the data directory of", e.into()))?;
        let db = match Database::create(&path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                // The path is in the context above this message.
                return Err(fail(
                    "opening",
                    "the file is already open (locked by another process, or another store in \
                     this one): is another orchestratord running on this data dir?"
                        .into(),
                ));
            }
            Err(e) => return Err(fail("opening", DbError::from(e).into())),
        };
        let counters = initialize(&db).map_err(|e| fail("initializing", e.into()))?;
        let shared = Arc::new(Shared {
            db,
            path: path.clone(),
            history_limit: options.history_limit as u64,
            event_limit: options.event_limit as u64,
            hub: Mutex::new(WatchHub::new(counters.revision)),
            published: AtomicU64::new(counters.revision),
            requests: AtomicU64::new(0),
            transactions: AtomicU64::new(0),
        });
        let (queue, requests) = std_mpsc::channel();
        let writer = {
            let shared = shared.clone();
            let max_group = options.max_group.max(1);
            std::thread::Builder::new()
                .name("redb-writer".into())
                .spawn(move || writer_loop(shared, requests, max_group))
                .map_err(|e| fail("starting the writer thread of", e.into()))?
        };
        Ok(Self {
            shared,
            queue: Some(queue),
            writer: Some(writer),
            watch_buffer: options.watch_buffer.max(1),
        })
    }

    /// The store for humans: `redb:/path/to/state.redb`.
    pub fn describe(&self) -> String {
        format!("redb:{}", self.shared.path.display())
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// How many write requests the writer answered in how many durable transactions.
    pub fn writer_stats(&self) -> WriterStats {
        WriterStats {
            requests: self.shared.requests.load(Ordering::Relaxed),
            transactions: self.shared.transactions.load(Ordering::Relaxed),
        }
    }

    /// Queues `job` to the writer and waits for its answer.
    async fn submit(&self, job: Job) -> Result<Revision, StoreError> {
        let operation = job.operation();
        let (reply, answer) = oneshot::channel();
        let queue = self.queue.as_ref().ok_or(StoreError::Closed)?;
        // Fails only if the writer thread is gone, which it is only after a panic.
        queue
            .send(Request { job, reply })
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| {
            self.shared.fail(
                operation,
                "waiting for the writer of",
                "the writer thread stopped before answering: the write may or may not be applied",
            )
        })?
    }

    /// Runs a read on tokio's blocking pool (for scans that may take a while).
    async fn blocking<T: Send + 'static>(
        &self,
        operation: &'static str,
        read: impl FnOnce(&Shared) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || read(&shared))
            .await
            .map_err(|e| self.shared.fail(operation, "a blocking read of", e))?
    }
}

impl fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.shared.path)
            .field("revision", &self.shared.published.load(Ordering::Acquire))
            .field("writer", &self.writer_stats())
            .finish()
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        // Closing the queue lets the writer answer what is queued and exit; joining it means the
        // file is closed (its lock released) once the store is gone, so the directory can be
        // reopened at once. It blocks for at most one group's commit.
        drop(self.queue.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        // End every watch (`None`), even if a blocking read still holds the shared state.
        self.shared.hub().close();
    }
}

#[async_trait]
impl StateStore for RedbStore {
    async fn get(&self, kind: Kind, key: &str) -> Result<Option<Entry>, StoreError> {
        // A point read: microseconds, fine on the calling task.
        self.shared.get_entry(kind, key).map_err(|e| {
            self.shared
                .fail("get", format!("reading {kind:?} {key:?} from"), e)
        })
    }

    async fn list(&self, kind: Kind, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        let prefix = prefix.to_owned();
        self.blocking("list", move |shared| {
            shared
                .list_entries(kind, &prefix, None, usize::MAX)
                .map_err(|e| shared.fail("list", format!("listing {kind:?} {prefix:?} from"), e))
        })
        .await
    }

    async fn list_page<'a>(
        &self,
        kind: Kind,
        prefix: &str,
        start_after: Option<&'a str>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let prefix = prefix.to_owned();
        let start_after = start_after.map(str::to_owned);
        // On the blocking pool like `list`: a page is bounded, but `limit` is the caller's.
        self.blocking("list_page", move |shared| {
            shared
                .list_entries(kind, &prefix, start_after.as_deref(), limit)
                .map_err(|e| {
                    shared.fail(
                        "list_page",
                        format!("listing {kind:?} {prefix:?} after {start_after:?} from"),
                        e,
                    )
                })
        })
        .await
    }

    async fn commit(&self, ops: Vec<Op>) -> Result<Revision, StoreError> {
        self.submit(Job::Commit(ops)).await
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        Ok(self.shared.published.load(Ordering::Acquire))
    }

    async fn watch_kinds(&self, after: Revision, kinds: KindSet) -> Result<Watch, StoreError> {
        let buffer = self.watch_buffer;
        self.blocking("watch", move |shared| {
            shared.open_watch(after, buffer, kinds)
        })
        .await
    }

    async fn append_events(&self, events: Vec<Event>) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        self.submit(Job::Events(events)).await.map(drop)
    }

    async fn list_events(&self, filter: &EventFilter) -> Result<Vec<Event>, StoreError> {
        let filter = filter.clone();
        self.blocking("list_events", move |shared| {
            shared
                .read_events(&filter)
                .map_err(|e| shared.fail("list_events", "listing events from", e))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Precondition;
    use orchestrator_shared_types::EventKind;
    use std::time::Duration;

    fn put(kind: Kind, key: &str, value: &str, precondition: Precondition) -> Op {
        Op::Put {
            kind,
            key: key.into(),
            value: value.as_bytes().to_vec(),
            precondition,
        }
    }

    fn request(job: Job) -> (Request, oneshot::Receiver<Result<Revision, StoreError>>) {
        let (reply, answer) = oneshot::channel();
        (Request { job, reply }, answer)
    }

    /// The whole error chain, as `anyhow`'s `{:#}` would print it.
    fn chain(e: &dyn std::error::Error) -> String {
        let mut text = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        text
    }

    #[test]
    fn records_round_trip() {
        let revisions = Revisions {
            create: 3,
            modified: u64::MAX,
        };
        let record = encode_entry(revisions, b"{\"a\":1}");
        let entry = decode_entry(Kind::Node, "n1", &record).unwrap();
        assert_eq!(
            (entry.create_revision, entry.mod_revision, entry.value),
            (3, u64::MAX, b"{\"a\":1}".to_vec())
        );
        assert_eq!(
            decode_entry(Kind::Node, "n1", &encode_entry(revisions, b""))
                .unwrap()
                .value,
            b""
        );
        for (kind, key, value) in [
            (Kind::Workload, "web", Some(&b"v"[..])),
            (Kind::Instance, "w/é", None),
            (Kind::Node, "", Some(&b""[..])),
        ] {
            let change = decode_change(7, &encode_change(kind, key, value).unwrap()).unwrap();
            assert_eq!(
                change,
                WatchEvent {
                    revision: 7,
                    kind,
                    key: key.into(),
                    value: value.map(<[u8]>::to_vec),
                }
            );
        }
    }

    /// Whatever is on disk, decoding returns an error naming what is wrong, never panics.
    #[test]
    fn malformed_records_are_errors() {
        for len in 0..ENTRY_HEADER {
            let err = decode_entry(Kind::Workload, "web", &vec![0; len]).unwrap_err();
            assert!(err.to_string().contains("\"web\""), "{err}");
        }
        let good = encode_change(Kind::Instance, "w/1", Some(b"v")).unwrap();
        for len in 0..CHANGE_HEADER + 3 {
            assert!(
                decode_change(1, &good[..len]).is_err(),
                "truncated at {len}"
            );
        }
        let mut bad_kind = good.clone();
        bad_kind[0] = 9;
        let mut bad_op = good.clone();
        bad_op[1] = 2;
        let mut delete_with_value = good.clone();
        delete_with_value[1] = 0;
        let mut long_key = good.clone();
        long_key[2..6].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut not_utf8 = good.clone();
        not_utf8[CHANGE_HEADER] = 0xff;
        for record in [bad_kind, bad_op, delete_with_value, long_key, not_utf8] {
            let err = decode_change(5, &record).unwrap_err();
            assert!(err.to_string().contains("revision 5"), "{err}");
        }
    }

    /// One group, one transaction: each commit gets the next revision and sees the earlier ones
    /// of its group; a conflicting one writes nothing and gets its conflict; events interleave.
    #[tokio::test]
    async fn a_group_applies_each_request_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        let base = store
            .commit(vec![put(Kind::Node, "n", "0", Precondition::None)])
            .await
            .unwrap();
        let mut watch = store.watch(base).await.unwrap();
        let before = store.writer_stats();

        let (create, created) = request(Job::Commit(vec![put(
            Kind::Workload,
            "w",
            "1",
            Precondition::Absent,
        )]));
        let (again, conflicted) = request(Job::Commit(vec![
            put(Kind::Node, "n", "lost", Precondition::None),
            put(Kind::Workload, "w", "2", Precondition::Absent),
        ]));
        let (events, appended) = request(Job::Events(vec![Event::new(EventKind::Started, "e")]));
        // Sees the first commit of the group: its revision is `base + 1`.
        let (swap, swapped) = request(Job::Commit(vec![put(
            Kind::Workload,
            "w",
            "3",
            Precondition::ModRevision(base + 1),
        )]));
        let (empty, unchanged) = request(Job::Commit(vec![]));
        // The writer thread is idle: calling the group function directly is what it would do
        // with these five requests queued at once.
        store
            .shared
            .write_group(vec![create, again, events, swap, empty]);

        assert_eq!(created.await.unwrap().unwrap(), base + 1);
        assert!(matches!(
            conflicted.await.unwrap(),
            Err(StoreError::Conflict { kind: Kind::Workload, ref key, .. }) if key == "w"
        ));
        appended.await.unwrap().unwrap();
        assert_eq!(swapped.await.unwrap().unwrap(), base + 2);
        assert_eq!(unchanged.await.unwrap().unwrap(), base + 2);

        let w = store.get(Kind::Workload, "w").await.unwrap().unwrap();
        assert_eq!(
            (w.value, w.create_revision, w.mod_revision),
            (b"3".to_vec(), base + 1, base + 2)
        );
        let n = store.get(Kind::Node, "n").await.unwrap().unwrap();
        assert_eq!(n.value, b"0", "the conflicting commit wrote nothing");
        assert_eq!(store.revision().await.unwrap(), base + 2);
        let logged = store.list_events(&EventFilter::default()).await.unwrap();
        assert_eq!(logged.len(), 1);
        let after = store.writer_stats();
        assert_eq!(
            (
                after.requests - before.requests,
                after.transactions - before.transactions
            ),
            (5, 1),
            "five requests, one durable commit"
        );
        for revision in [base + 1, base + 2] {
            let event = tokio::time::timeout(Duration::from_secs(5), watch.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!((event.revision, event.key.as_str()), (revision, "w"));
        }
    }

    /// A group of only conflicts and no-ops commits nothing (no fsync) and still answers.
    #[tokio::test]
    async fn a_group_without_changes_is_not_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        let r = store
            .commit(vec![put(Kind::Node, "n", "v", Precondition::None)])
            .await
            .unwrap();
        let before = store.writer_stats();
        assert!(store
            .commit(vec![put(Kind::Node, "n", "v", Precondition::Absent)])
            .await
            .is_err());
        let noop = Op::Delete {
            kind: Kind::Node,
            key: "missing".into(),
            precondition: Precondition::None,
        };
        assert_eq!(store.commit(vec![noop]).await.unwrap(), r);
        let after = store.writer_stats();
        assert_eq!(after.requests - before.requests, 2);
        assert_eq!(after.transactions, before.transactions);
    }

    /// A record that does not decode is a `Backend` error naming the entry and the file, for
    /// reads and for a commit that touches it; other commits of the same group go on.
    #[tokio::test]
    async fn a_corrupt_record_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        store
            .commit(vec![put(Kind::Node, "good", "v", Precondition::None)])
            .await
            .unwrap();
        // Write a 3-byte record behind the store's back (the writer thread is idle).
        let txn = store.shared.db.begin_write().unwrap();
        txn.open_table(NODES)
            .unwrap()
            .insert("bad", &b"bad"[..])
            .unwrap();
        txn.commit().unwrap();

        let err = store.get(Kind::Node, "bad").await.unwrap_err();
        assert!(matches!(
            err,
            StoreError::Backend {
                operation: "get",
                ..
            }
        ));
        assert!(!err.is_transient());
        let text = chain(&err);
        assert!(
            text.contains("\"bad\"") && text.contains(STATE_FILE),
            "{text}"
        );
        assert!(matches!(
            store.list(Kind::Node, "").await,
            Err(StoreError::Backend { .. })
        ));
        assert!(store.get(Kind::Node, "good").await.unwrap().is_some());

        let (touch, touched) = request(Job::Commit(vec![put(
            Kind::Node,
            "bad",
            "x",
            Precondition::Exists,
        )]));
        let (other, written) = request(Job::Commit(vec![put(
            Kind::Node,
            "other",
            "x",
            Precondition::None,
        )]));
        store.shared.write_group(vec![touch, other]);
        let err = touched.await.unwrap().unwrap_err();
        assert!(chain(&err).contains("\"bad\""), "{err:?}");
        written.await.unwrap().unwrap();
        // An unconditional put replaces the bad record (it does not need to read it).
        let fixed = store
            .commit(vec![put(Kind::Node, "bad", "fixed", Precondition::None)])
            .await
            .unwrap();
        let entry = store.get(Kind::Node, "bad").await.unwrap().unwrap();
        assert_eq!(
            (entry.value, entry.create_revision, entry.mod_revision),
            (b"fixed".to_vec(), fixed, fixed)
        );
    }
}
