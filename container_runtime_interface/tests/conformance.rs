//! The conformance suite, run from outside the crate the way another implementation would run
//! it, against [`SimulatedRuntime`]: once with a start delay and once without. Needs the
//! `conformance` feature (`cargo test --all-features`); the crate's own unit tests run the suite
//! too, so a plain `cargo test` still covers the simulated runtime.
#![cfg(feature = "conformance")]

use container_runtime_interface::conformance::ConformanceTarget;
use container_runtime_interface::{SimulatedRuntime, SimulatedRuntimeConfig};
use orchestrator_shared_types::{ContainerConfig, NodeId};
use std::sync::Arc;
use std::time::Duration;

/// The image the simulated runtime is told to exit with code 7, standing in for busybox
/// `sh -c "exit 7"` in a real runtime's target.
const EXITS_7: &str = "exits-7";

fn target(start_delay: Duration) -> ConformanceTarget {
    let rt = SimulatedRuntime::new(SimulatedRuntimeConfig {
        start_delay,
        ..SimulatedRuntimeConfig::default()
    });
    rt.exit_after_start(EXITS_7, 7);
    // Stands in for busybox `sh -c "echo ..."`: its log holds its start and its exit.
    rt.exit_after_start("talker", 0);
    ConformanceTarget::new(
        Arc::new(rt),
        NodeId::from("node-a"),
        ContainerConfig::new("sleeper", "busybox"),
    )
    .with_exit(ContainerConfig::new("job", EXITS_7), 7)
    .with_output(
        ContainerConfig::new("talker", "talker"),
        &["started: image talker", "exited with code 0"],
    )
    .with_timeout(Duration::from_secs(5))
}

mod delayed_start {
    container_runtime_interface::runtime_conformance!(super::target(
        std::time::Duration::from_millis(20)
    ));
}

mod immediate_start {
    container_runtime_interface::runtime_conformance!(super::target(std::time::Duration::ZERO));
}
