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
