//! Reconcile throughput: 1,000 workloads x 100 replicas (100,000 instances) onto 5,000 simulated
//! nodes with the in-memory store, from the first submit until every instance is Running.
//!
//! `cargo bench -p orchestrator_core --bench reconcile` (options: `--workloads N --replicas N
//! --nodes N --start-delay-ms N`). Prints one line of results; the target is <= 20 s
//! on the project's 2-core machine.

mod common;

use cluster_manager_interface::StaticClusterManager;
use common::arg;
use container_runtime_interface::{SimulatedRuntime, SimulatedRuntimeConfig};
use orchestrator_core::{OrchestratorBuilder, OrchestratorConfig};
use orchestrator_shared_types::{
    ContainerConfig, InstanceStatus, Node, Resources, WorkloadDefinition,
};
use state_store_interface::InMemoryStore;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let workloads = arg("--workloads", 1_000);
    let replicas = arg("--replicas", 100);
    let nodes = arg("--nodes", 5_000);
    let start_delay = Duration::from_millis(arg("--start-delay-ms", 5));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run(workloads, replicas, nodes, start_delay));
}

async fn run(workloads: u64, replicas: u64, node_count: u64, start_delay: Duration) {
    let store = Arc::new(InMemoryStore::new());
    let sim = Arc::new(SimulatedRuntime::new(SimulatedRuntimeConfig {
        start_delay,
        event_capacity: 1 << 18,
        ..Default::default()
    }));
    let cluster = Arc::new(StaticClusterManager::new());
    for i in 0..node_count {
        cluster.upsert_node(Node::new(
            format!("node-{i:05}").as_str(),
            Resources::new(16_000, 65_536, 100_000),
        ));
    }
    let orchestrator = OrchestratorBuilder::new()
        .store(store.clone())
        .runtime(sim.clone())
        .cluster_manager(cluster)
        .config(OrchestratorConfig {
            max_concurrent_operations: 512,
            ..OrchestratorConfig::default()
        })
        .spawn()
        .await
        .expect("orchestrator");
    let handle = orchestrator.handle();
    // Mixed sizes, as a real cluster would see.
    let sizes = [
        (100, 128),
        (250, 512),
        (500, 1024),
        (1000, 256),
        (200, 2048),
    ];
    let total = workloads * replicas;

    let started = Instant::now();
    for w in 0..workloads {
        let (cpu, mem) = sizes[(w % sizes.len() as u64) as usize];
        let mut c = ContainerConfig::new("main", "bench/app:1");
        c.resources = Resources::new(cpu, mem, 0);
        let def = WorkloadDefinition::new(&format!("w{w:04}"), replicas as u32, c);
        handle.create(def).await.expect("create");
    }
    let submitted = started.elapsed();
    let mut last_print = Instant::now();
    loop {
        let summary = handle.summary().await.expect("summary");
        let running = summary.count(InstanceStatus::Running) as u64;
        if running == total {
            break;
        }
        if last_print.elapsed() > Duration::from_secs(2) {
            eprintln!(
                "  {:>6.1}s running {running}/{total} {:?}",
                started.elapsed().as_secs_f64(),
                summary.instances
            );
            last_print = Instant::now();
        }
        if started.elapsed() > Duration::from_secs(600) {
            panic!("did not converge in 10 minutes: {summary:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let converged = started.elapsed();
    let m = orchestrator.metrics().snapshot();
    println!(
        "reconcile: {total} replicas ({workloads} workloads x {replicas}) on {node_count} nodes, \
         start delay {start_delay:?}: all Running in {:.2} s (submit {:.2} s); {:.0} replicas/s; \
         plans {} taking {:.2} s in total, placements {}, instance writes {}",
        converged.as_secs_f64(),
        submitted.as_secs_f64(),
        total as f64 / converged.as_secs_f64(),
        m.reconciles,
        m.reconcile_time.as_secs_f64(),
        m.placements,
        m.persisted,
    );
    assert_eq!(sim.running_count() as u64, total, "the runtime agrees");
    orchestrator.shutdown().await;
}
