//! Rolling update of 100 replicas on the simulated runtime: a replica is ready 100 ms after it
//! is started (`--start-delay-ms`; the simulated runtime's containers run, and nothing probes
//! them, so running is ready), default strategy (surge 25 %, unavailable 25 %). Measures the
//! time from the template change until every replica runs the new template and is ready, and
//! samples the ready count every 5 ms: it must never fall below desired - max_unavailable.
//!
//! `cargo bench -p orchestrator_core --bench rollout` (options: `--replicas N --nodes N
//! --start-delay-ms N --runs N`). Prints one line per run.

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
    let replicas = arg("--replicas", 100) as u32;
    let nodes = arg("--nodes", 10);
    let start_delay = Duration::from_millis(arg("--start-delay-ms", 100));
    let runs = arg("--runs", 3);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    for run in 1..=runs {
        runtime.block_on(once(run, replicas, nodes, start_delay));
    }
}

async fn once(run: u64, replicas: u32, node_count: u64, start_delay: Duration) {
    let store = Arc::new(InMemoryStore::new());
    let sim = Arc::new(SimulatedRuntime::new(SimulatedRuntimeConfig {
        start_delay,
        ..Default::default()
    }));
    let cluster = Arc::new(StaticClusterManager::new());
    for i in 0..node_count {
        cluster.upsert_node(Node::new(
            format!("node-{i:03}").as_str(),
            Resources::new(16_000, 65_536, 100_000),
        ));
    }
    let orchestrator = OrchestratorBuilder::new()
        .store(store)
        .runtime(sim)
        .cluster_manager(cluster)
        .config(OrchestratorConfig {
            stop_grace: Duration::ZERO,
            ..OrchestratorConfig::default()
        })
        .spawn()
        .await
        .expect("orchestrator");
    let handle = orchestrator.handle();
    let def = WorkloadDefinition::new("web", replicas, ContainerConfig::new("app", "bench/app:1"));
    let (surge, unavailable) = def.strategy.limits(replicas);
    let created = handle.create(def).await.expect("create").value;
    let ready = |hash: Option<&str>| {
        let view = handle.view().expect("view");
        let slice = view.instances_of(&created.id);
        slice
            .iter()
            .filter(|i| {
                i.ready
                    && i.status == InstanceStatus::Running
                    && hash.is_none_or(|h| i.spec_hash == h)
            })
            .count()
    };
    while ready(None) < replicas as usize {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut next = created.clone();
    next.containers[0].image = "bench/app:2".into();
    let hash = next.spec_hash();
    let started = Instant::now();
    handle.update(next, None).await.expect("update");
    let (mut min_ready, mut max_live) = (usize::MAX, 0);
    loop {
        let view = handle.view().expect("view");
        let instances = view.instances_of(&created.id);
        let live = instances.iter().filter(|i| i.status.is_live()).count();
        let ready_now = instances
            .iter()
            .filter(|i| i.ready && i.status == InstanceStatus::Running)
            .count();
        min_ready = min_ready.min(ready_now);
        max_live = max_live.max(live);
        if ready(Some(&hash)) == replicas as usize && instances.len() == replicas as usize {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = started.elapsed();
    println!(
        "run {run}: {replicas} replicas, ready after {} ms, surge {surge}, unavailable {unavailable}: \
         complete in {:.2} s; min ready {min_ready} (floor {}), max live {max_live} (ceiling {})",
        start_delay.as_millis(),
        took.as_secs_f64(),
        replicas - unavailable,
        replicas + surge,
    );
    assert!(
        min_ready >= (replicas - unavailable) as usize,
        "availability fell below the floor"
    );
    orchestrator.shutdown().await;
}
