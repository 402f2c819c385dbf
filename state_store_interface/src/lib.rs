//! Storage of the cluster's state: workloads, instances and nodes as revisioned key-values, plus an
//! append-only event log.
//!
//! The trait is deliberately a small, typed key-value store (in the manner of etcd): every write
//! bumps one store-wide revision, every entry remembers the revision that created and last modified
//! it, writes can be made conditional on those revisions (compare-and-swap) and batched atomically,
//! and a watch replays every change after a given revision. That is enough for the core's
//! optimistic concurrency and for an API that watches, and it maps one-to-one onto redb and etcd.
//! Typed access (`get_obj::<WorkloadDefinition>`) lives in the [`StoreExt`] extension trait so
//! implementations only deal in bytes.
//!
//! # Layout
//! * [`store`] — the [`StateStore`] trait and its data types (`Kind`, `Entry`, `Op`, `Watch`, ...).
//! * [`error`] — [`StoreError`] with `is_transient()`.
//! * [`coordination`] — [`Coordination`]: leases, and the [`Fence`] of a leadership.
//! * [`typed`] — [`StoredObject`] and the [`StoreExt`] helpers that (de)serialize JSON values.
//! * [`rules`] — the rules every store applies the same way: batch and precondition checks, the
//!   plan of a commit, numbering, retention and filtering of the event log.
//! * [`watch_hub`] — fan-out of committed changes to in-process watchers (replay, then live;
//!   a lagging watcher is dropped, never skipped ahead) and the compaction rule.
//! * [`memory`] — [`InMemoryStore`], the twin for tests, scenarios and benchmarks.
//! * [`conformance`] — the suite every implementation must pass (feature `conformance`).
//! * `redb_store` — `RedbStore`, the embedded persistent store in a data directory (feature
//!   `redb`), the daemon's default.
//! * `etcd_store` — `EtcdStore`, the cluster's store on etcd v3, with leases (feature `etcd`).
//! * `etcd_server` — `EtcdServer`, a real etcd in a temp dir for tests (feature `etcd`).

pub mod coordination;
pub mod error;
pub mod memory;
pub mod rules;
pub mod store;
pub mod typed;
pub mod watch_hub;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

#[cfg(feature = "etcd")]
pub mod etcd_server;
#[cfg(feature = "etcd")]
pub mod etcd_store;
#[cfg(feature = "redb")]
pub mod redb_store;

pub use coordination::{Coordination, Fence, LeaseId, DEFAULT_LEASE_TTL};
pub use error::StoreError;
#[cfg(feature = "etcd")]
pub use etcd_store::{EtcdOptions, EtcdStore};
pub use memory::InMemoryStore;
#[cfg(feature = "redb")]
pub use redb_store::RedbStore;
pub use store::{
    Entry, EventFilter, Kind, KindSet, LimitFrom, Op, Precondition, Revision, StateStore, Watch,
    WatchEvent,
};
pub use typed::{decode_event, NodeCordon, StoreExt, StoredObject, Versioned, CORDON_PREFIX};

#[cfg(any(test, feature = "mock"))]
pub use store::MockStateStore;
