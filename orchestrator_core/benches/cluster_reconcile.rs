//! Cluster reconcile throughput on a real etcd: one leader (a [`ClusterMember`]) and N-1 more
//! [`NodeAgent`]s in this process, each node with its own simulated runtime as its machine, all
//! talking to one etcd on loopback. Submit → every replica Running as the leader's mirror sees
//! it (the store's instance records, fed back by its watch).
//!
//! `cargo bench -p orchestrator_core --bench cluster_reconcile` (options: `--nodes N
//! --replicas N --workloads N --start-delay-ms N --clients N --max-ops N --agent-parallel N`).
//! Needs etcd (`$ORCHESTRATOR_ETCD` or on the `PATH`); prints "skipped" without it.
//!
//! What is simulated: the agents share `--clients` etcd clients (a daemon has its own) and ONE
//! lease (one keep-alive loop instead of one per agent): every member record is bound to it, so
//! nodes are Ready exactly as with real daemons, but the bench does not measure N keep-alives.

mod common;

use async_trait::async_trait;
use common::arg;
use container_runtime_interface::{
    LogChunk, LogRequest, RuntimeError, SimulatedRuntime, SimulatedRuntimeConfig,
};
use orchestrator_core::cluster::agent::{AgentConfig, NodeAgent};
use orchestrator_core::cluster::leader::CandidateConfig;
use orchestrator_core::cluster::lease::LeaseKeeper;
use orchestrator_core::cluster::member::{ClusterMember, MemberConfig};
use orchestrator_core::cluster::records::LeaderRecord;
use orchestrator_core::cluster::runtime::{ClusterRuntimeConfig, RemoteLogs};
use orchestrator_core::{CoreMetrics, OrchestratorConfig};
use orchestrator_shared_types::{
    ContainerConfig, ContainerId, InstanceStatus, Node, NodeStatus, Resources, WorkloadDefinition,
};
use scheduler_interface::BinPackScheduler;
use state_store_interface::etcd_server::EtcdServer;
use state_store_interface::{Coordination, EtcdStore};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Settings {
    nodes: u64,
    replicas: u64,
    workloads: u64,
    start_delay: Duration,
    clients: u64,
    max_ops: usize,
    agent_parallel: usize,
}

fn main() {
    let settings = Settings {
        nodes: arg("--nodes", 100).max(1),
        replicas: arg("--replicas", 10_000),
        workloads: arg("--workloads", 1).max(1),
        start_delay: Duration::from_millis(arg("--start-delay-ms", 0)),
        clients: arg("--clients", 4).max(1),
        max_ops: arg("--max-ops", 256) as usize,
        agent_parallel: arg("--agent-parallel", 16) as usize,
    };
    let Some(etcd) = EtcdServer::start_or_skip() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run(&etcd, settings));
    // Agents' tasks may still be running: drop the runtime without waiting for them.
    runtime.shutdown_background();
}

struct NoRemoteLogs;

#[async_trait]
impl RemoteLogs for NoRemoteLogs {
    async fn logs(
        &self,
        address: &str,
        _id: &ContainerId,
        _request: LogRequest,
    ) -> Result<LogChunk, RuntimeError> {
        Err(RuntimeError::Failed {
            operation: "logs",
            message: format!("no agent API in this bench ({address})"),
            transient: false,
        })
    }
}

fn node(i: u64) -> Node {
    let id = format!("node-{i:05}");
    let mut node = Node::new(id.as_str(), Resources::new(16_000, 65_536, 100_000));
    node.address = format!("{id}.bench:8080");
    node
}

fn machine(start_delay: Duration) -> Arc<SimulatedRuntime> {
    Arc::new(SimulatedRuntime::new(SimulatedRuntimeConfig {
        start_delay,
        // The default (65,536) preallocates ~4.6 MB of event slots per machine: 23 GB for
        // 5,000 machines. A node here holds at most 160 containers.
        event_capacity: 1024,
        ..Default::default()
    }))
}

async fn run(etcd: &EtcdServer, s: Settings) {
    let endpoints = vec![etcd.client_url()];
    let mut clients: Vec<Arc<dyn Coordination>> = Vec::new();
    for _ in 0..s.clients {
        let store = EtcdStore::connect(&endpoints, "bench")
            .await
            .expect("connect to etcd");
        clients.push(Arc::new(store));
    }
    let metrics = Arc::new(CoreMetrics::default());

    // The leader: a whole member (node-00000), its own client.
    let leader_machine = machine(s.start_delay);
    let leader_node = node(0);
    let config = MemberConfig {
        agent: AgentConfig {
            max_parallel: s.agent_parallel,
            ..AgentConfig::new(leader_node.clone())
        },
        candidate: CandidateConfig {
            leader: LeaderRecord {
                node: leader_node.id.clone(),
                address: leader_node.address.clone(),
            },
            local_runtime: leader_machine.clone(),
            remote_logs: Arc::new(NoRemoteLogs),
            scheduler: Arc::new(BinPackScheduler::new()),
            orchestrator: OrchestratorConfig {
                max_concurrent_operations: s.max_ops,
                ..OrchestratorConfig::default()
            },
            runtime: ClusterRuntimeConfig::default(),
            metrics: metrics.clone(),
        },
        lease_ttl: Duration::from_secs(10),
        cluster_token: None,
        other_clusters: Vec::new(),
        new_cluster: false,
        gossip: None,
        stop_on_store_loss: true,
        data_dir: None,
        store_name: "bench".into(),
    };
    let leader_store = Arc::new(
        EtcdStore::connect(&endpoints, "bench")
            .await
            .expect("connect"),
    );
    let leader = ClusterMember::join(leader_store, leader_machine.clone(), config)
        .await
        .expect("the leader joins");
    let mut leading = leader.leading();
    while !*leading.borrow_and_update() {
        leading.changed().await.expect("campaign runs");
    }
    let handle = leader.handle();

    // The other nodes: agents sharing the clients and one lease.
    let registering = Instant::now();
    let lease = LeaseKeeper::start(clients[0].clone(), Duration::from_secs(10));
    let mut machines = vec![leader_machine];
    let mut agents = Vec::new();
    let mut pending = tokio::task::JoinSet::new();
    for i in 1..s.nodes {
        let store = clients[(i % s.clients) as usize].clone();
        let m = machine(s.start_delay);
        machines.push(m.clone());
        let config = AgentConfig {
            max_parallel: s.agent_parallel,
            ..AgentConfig::new(node(i))
        };
        let lease = lease.subscribe();
        pending.spawn(async move { NodeAgent::start(config, store, m, lease).await });
        if pending.len() >= 64 {
            let started = pending.join_next().await.expect("a start");
            agents.push(started.expect("no panic").expect("the agent starts"));
        }
    }
    while let Some(started) = pending.join_next().await {
        agents.push(started.expect("no panic").expect("the agent starts"));
    }
    loop {
        let view = handle.view().expect("view");
        let ready = view
            .nodes()
            .iter()
            .filter(|n| n.node.status == NodeStatus::Ready && !n.node.unschedulable)
            .count() as u64;
        if ready == s.nodes {
            break;
        }
        assert!(
            registering.elapsed() < Duration::from_secs(300),
            "only {ready}/{} nodes Ready after 5 minutes",
            s.nodes
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let registered = registering.elapsed();
    // The leader's own node table follows the same watch; let it catch up.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let total = s.replicas;
    let per_workload = total / s.workloads;
    let started = Instant::now();
    for w in 0..s.workloads {
        let mut c = ContainerConfig::new("main", "bench/app:1");
        c.resources = Resources::new(100, 128, 0);
        let replicas = if w + 1 == s.workloads {
            total - per_workload * (s.workloads - 1)
        } else {
            per_workload
        };
        let def = WorkloadDefinition::new(&format!("w{w:04}"), replicas as u32, c);
        handle.create(def).await.expect("create");
    }
    let submitted = started.elapsed();
    let mut first_running = None;
    let mut last_print = Instant::now();
    loop {
        let view = handle.view().expect("view");
        let running = view.summary().count(InstanceStatus::Running) as u64;
        if running > 0 && first_running.is_none() {
            first_running = Some(started.elapsed());
        }
        if running >= total {
            break;
        }
        if last_print.elapsed() > Duration::from_secs(2) {
            eprintln!(
                "  {:>6.1}s running {running}/{total}",
                started.elapsed().as_secs_f64()
            );
            last_print = Instant::now();
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "did not converge in 15 minutes: {running}/{total} Running"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let converged = started.elapsed();
    let on_machines: usize = machines.iter().map(|m| m.running_count()).sum();
    let m = metrics.snapshot();
    println!(
        "cluster reconcile (etcd): {total} replicas ({} workloads) on {} nodes, start delay \
         {:?}, {} clients, {} ops in flight, agent parallel {}: all Running in {:.2} s \
         (submit {:.3} s, first Running {:.3} s); {:.0} replicas/s; nodes Ready after {:.2} s; \
         plans {} taking {:.2} s, placements {}, instance writes {}; running on the machines {}",
        s.workloads,
        s.nodes,
        s.start_delay,
        s.clients,
        s.max_ops,
        s.agent_parallel,
        converged.as_secs_f64(),
        submitted.as_secs_f64(),
        first_running.unwrap_or_default().as_secs_f64(),
        total as f64 / converged.as_secs_f64(),
        registered.as_secs_f64(),
        m.reconciles,
        m.reconcile_time.as_secs_f64(),
        m.placements,
        m.persisted,
        on_machines,
    );
    assert_eq!(on_machines as u64, total, "the machines agree");
}
