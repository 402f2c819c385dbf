//! The conformance suite run from outside the crate, the way the redb and etcd stores will run
//! it (this proves the macro's paths work cross-crate). It needs the `conformance` feature:
//! `cargo test -p state_store_interface --all-features`; without it this file is empty (the
//! in-crate unit tests of `memory.rs` still run the suite with default limits).
#![cfg(feature = "conformance")]

use state_store_interface::InMemoryStore;

/// A store that keeps only 100 changes of history, so the compaction check takes its
/// `Compacted` branch (with default limits it takes the full-replay one), and 100 events.
async fn small_store() -> InMemoryStore {
    InMemoryStore::with_limits(100, 100)
}

mod default_limits {
    state_store_interface::state_store_conformance!(|| async {
        state_store_interface::InMemoryStore::new()
    });
}

mod small_limits {
    state_store_interface::state_store_conformance!(super::small_store);
}

/// The suite against the trait's default `list_page` (list, then cut), which stores written
/// before it existed get: an in-memory store that overrides nothing but what it must.
mod default_list_page {
    use async_trait::async_trait;
    use orchestrator_shared_types::Event;
    use state_store_interface::{
        Entry, EventFilter, InMemoryStore, Kind, Op, Revision, StateStore, StoreError, Watch,
    };

    struct Plain(InMemoryStore);

    #[async_trait]
    impl StateStore for Plain {
        async fn get(&self, kind: Kind, key: &str) -> Result<Option<Entry>, StoreError> {
            self.0.get(kind, key).await
        }
        async fn list(&self, kind: Kind, prefix: &str) -> Result<Vec<Entry>, StoreError> {
            self.0.list(kind, prefix).await
        }
        async fn commit(&self, ops: Vec<Op>) -> Result<Revision, StoreError> {
            self.0.commit(ops).await
        }
        async fn revision(&self) -> Result<Revision, StoreError> {
            self.0.revision().await
        }
        async fn watch_kinds(
            &self,
            after: Revision,
            kinds: state_store_interface::KindSet,
        ) -> Result<Watch, StoreError> {
            self.0.watch_kinds(after, kinds).await
        }
        async fn append_events(&self, events: Vec<Event>) -> Result<(), StoreError> {
            self.0.append_events(events).await
        }
        async fn list_events(&self, filter: &EventFilter) -> Result<Vec<Event>, StoreError> {
            self.0.list_events(filter).await
        }
    }

    state_store_interface::state_store_conformance!(|| async { Plain(InMemoryStore::new()) });
}
