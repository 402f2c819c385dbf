//! The conformance suite against [`RedbStore`], each check on a fresh store in its own temporary
//! directory: with the default limits (the compaction check replays everything) and with small
//! ones (it takes the `Compacted` branch, and history and event pruning run on every commit).
//! Needs `--features redb,conformance` (`--all-features`).
#![cfg(all(feature = "redb", feature = "conformance"))]

use async_trait::async_trait;
use orchestrator_shared_types::Event;
use state_store_interface::redb_store::RedbOptions;
use state_store_interface::{
    Entry, EventFilter, Kind, Op, RedbStore, Revision, StateStore, StoreError, Watch,
};
use tempfile::TempDir;

/// A store and the directory it lives in, removed after the store is closed (fields drop in
/// order).
struct TempRedb {
    store: RedbStore,
    _dir: TempDir,
}

impl TempRedb {
    fn open(options: RedbOptions) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = RedbStore::open_with(dir.path(), options).expect("the store opens");
        Self { store, _dir: dir }
    }
}

#[async_trait]
impl StateStore for TempRedb {
    async fn get(&self, kind: Kind, key: &str) -> Result<Option<Entry>, StoreError> {
        self.store.get(kind, key).await
    }
    async fn list(&self, kind: Kind, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        self.store.list(kind, prefix).await
    }
    // Delegated, or the suite would check the trait's default instead of the range scan.
    async fn list_page<'a>(
        &self,
        kind: Kind,
        prefix: &str,
        start_after: Option<&'a str>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        self.store.list_page(kind, prefix, start_after, limit).await
    }
    async fn commit(&self, ops: Vec<Op>) -> Result<Revision, StoreError> {
        self.store.commit(ops).await
    }
    async fn revision(&self) -> Result<Revision, StoreError> {
        self.store.revision().await
    }
    async fn watch_kinds(
        &self,
        after: Revision,
        kinds: state_store_interface::KindSet,
    ) -> Result<Watch, StoreError> {
        self.store.watch_kinds(after, kinds).await
    }
    async fn append_events(&self, events: Vec<Event>) -> Result<(), StoreError> {
        self.store.append_events(events).await
    }
    async fn list_events(&self, filter: &EventFilter) -> Result<Vec<Event>, StoreError> {
        self.store.list_events(filter).await
    }
}

async fn default_store() -> TempRedb {
    TempRedb::open(RedbOptions::default())
}

/// Keeps only 100 changes of history and 100 events.
async fn small_store() -> TempRedb {
    TempRedb::open(RedbOptions {
        history_limit: 100,
        event_limit: 100,
        ..RedbOptions::default()
    })
}

mod default_limits {
    state_store_interface::state_store_conformance!(super::default_store);
}

mod small_limits {
    state_store_interface::state_store_conformance!(super::small_store);
}
