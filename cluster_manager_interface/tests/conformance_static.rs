//! The conformance suite run from outside the crate, the way other implementations will run it
//! (this proves the macro's paths work cross-crate). It needs the `conformance` feature:
//! `cargo test -p cluster_manager_interface --all-features`; without it this file is empty (the
//! in-crate unit tests of `static_manager.rs` still run the suite).
#![cfg(feature = "conformance")]

use cluster_manager_interface::StaticClusterManager;

/// The smallest channel the suite allows (it makes up to 5 changes before it receives), so the
/// lag check overflows after 17 changes.
async fn small_channel() -> StaticClusterManager {
    StaticClusterManager::with_capacity(8)
}

mod default_capacity {
    cluster_manager_interface::cluster_manager_conformance!(|| async {
        cluster_manager_interface::StaticClusterManager::new()
    });
}

mod small_capacity {
    cluster_manager_interface::cluster_manager_conformance!(super::small_channel);
}
