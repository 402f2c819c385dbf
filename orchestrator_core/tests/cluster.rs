//! Clusters in one process: several members on one in-memory store (with its lease twin), each
//! with its own simulated runtime as its machine. The same members run on etcd in the daemon's
//! black-box tests; these check the logic fast and deterministically enough for every run.

mod common;

use async_trait::async_trait;
use common::workload;
use container_runtime_interface::{
    ContainerRuntime, ContainerState, LogChunk, LogRequest, RuntimeError, SimulatedRuntime,
    SimulatedRuntimeConfig,
};
use orchestrator_core::cluster::agent::{AgentConfig, NodeAgent};
use orchestrator_core::cluster::leader::{CandidateConfig, FencedStore};
use orchestrator_core::cluster::member::{ClusterMember, MemberConfig};
use orchestrator_core::cluster::records::{Assignment, LeaderRecord};
use orchestrator_core::cluster::runtime::{ClusterRuntime, ClusterRuntimeConfig, RemoteLogs};
use orchestrator_core::{CoreError, OrchestratorHandle};
use orchestrator_shared_types::{
    ContainerConfig, ContainerId, Node, NodeId, NodeStatus, PlacementStrategy, Resources,
};
use scheduler_interface::BinPackScheduler;
use state_store_interface::{
    Coordination, Fence, InMemoryStore, Kind, Op, Precondition, StateStore, StoreError, StoreExt,
};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const TTL: Duration = Duration::from_secs(1);

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
            message: format!("no agent API in this test ({address})"),
            transient: false,
        })
    }
}

fn machine() -> Arc<SimulatedRuntime> {
    Arc::new(SimulatedRuntime::new(SimulatedRuntimeConfig {
        start_delay: Duration::from_millis(20),
        ..SimulatedRuntimeConfig::default()
    }))
}

fn config(id: &str, runtime: Arc<SimulatedRuntime>, token: Option<&str>) -> MemberConfig {
    let mut node = Node::new(id, Resources::new(4000, 8192, 10_000));
    node.address = format!("{id}.test:8080");
    MemberConfig {
        agent: AgentConfig::new(node),
        candidate: CandidateConfig {
            leader: LeaderRecord {
                node: NodeId::from(id),
                address: format!("{id}.test:8080"),
            },
            local_runtime: runtime,
            remote_logs: Arc::new(NoRemoteLogs),
            scheduler: Arc::new(BinPackScheduler::new()),
            orchestrator: common::fast_config(),
            runtime: ClusterRuntimeConfig::default(),
            metrics: Default::default(),
        },
        lease_ttl: TTL,
        cluster_token: token.map(str::to_owned),
        data_dir: None,
        store_name: "memory".into(),
        other_clusters: Vec::new(),
        new_cluster: false,
        gossip: None,
        stop_on_store_loss: true,
    }
}

async fn join(
    store: &Arc<InMemoryStore>,
    id: &str,
    runtime: Arc<SimulatedRuntime>,
) -> ClusterMember {
    ClusterMember::join(store.clone(), runtime.clone(), config(id, runtime, None))
        .await
        .unwrap()
}

/// Waits up to `within` for `check`, polling.
async fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn leaders(members: &[&ClusterMember]) -> usize {
    members.iter().filter(|m| *m.leading().borrow()).count()
}

fn running(handle: &OrchestratorHandle, name: &str) -> usize {
    let view = handle.view().unwrap();
    view.workload(name)
        .map_or(0, |w| view.replica_counts(&w.id).running as usize)
}

/// Running containers of every machine, by container id; panics on a container running on two.
async fn running_containers(
    machines: &[(&str, &Arc<SimulatedRuntime>)],
) -> Vec<(String, ContainerId)> {
    let mut all = Vec::new();
    let mut seen = HashSet::new();
    for (node, rt) in machines {
        for c in rt.list(&NodeId::from(*node)).await.unwrap() {
            if c.state == ContainerState::Running {
                assert!(
                    seen.insert(c.instance_id.clone()),
                    "instance {} runs twice",
                    c.instance_id
                );
                all.push(((*node).to_owned(), c.id));
            }
        }
    }
    all
}

fn spread(name: &str, replicas: u32, cpu: u64) -> orchestrator_shared_types::WorkloadDefinition {
    let mut w = workload(name, replicas, cpu, 64);
    w.placement = PlacementStrategy::Spread;
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_elect_one_leader_spread_work_and_any_member_answers() {
    let store = Arc::new(InMemoryStore::new());
    let (m1, m2, m3) = (machine(), machine(), machine());
    let a = join(&store, "n1", m1.clone()).await;
    let b = join(&store, "n2", m2.clone()).await;
    let c = join(&store, "n3", m3.clone()).await;
    eventually("one leader", Duration::from_secs(5), || {
        leaders(&[&a, &b, &c]) == 1
    })
    .await;

    // Written through one member, reconciled by the leader, seen by every member.
    b.handle().create(spread("web", 6, 2000)).await.unwrap();
    for m in [&a, &b, &c] {
        let h = m.handle();
        eventually(
            "6 running in every member's view",
            Duration::from_secs(10),
            || running(&h, "web") == 6,
        )
        .await;
    }
    let machines = [("n1", &m1), ("n2", &m2), ("n3", &m3)];
    let containers = running_containers(&machines).await;
    assert_eq!(containers.len(), 6);
    for (node, _) in &machines {
        assert_eq!(
            containers.iter().filter(|(n, _)| n == node).count(),
            2,
            "2 replicas of 2000m fit on each 4000m node: {containers:?}"
        );
    }
    assert_eq!(leaders(&[&a, &b, &c]), 1);

    // cluster info: the leader and three live members.
    let membership = c.membership().membership().await;
    assert_eq!(membership.members.len(), 3);
    assert_eq!(membership.members.iter().filter(|m| m.leader).count(), 1);
    assert!(membership.leader.is_some());
    assert!(membership.store_health.reachable);

    for m in [a, b, c] {
        m.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_leaving_hands_over_and_a_returning_node_loses_its_stale_containers() {
    let store = Arc::new(InMemoryStore::new());
    let (m1, m2, m3) = (machine(), machine(), machine());
    let a = join(&store, "n1", m1.clone()).await;
    eventually("n1 leads", Duration::from_secs(5), || *a.leading().borrow()).await;
    let b = join(&store, "n2", m2.clone()).await;
    let c = join(&store, "n3", m3.clone()).await;
    let h = c.handle();
    // Every member registered and live before placing, so that the spread puts one per node.
    eventually("three ready nodes", Duration::from_secs(5), || {
        let view = h.view().unwrap();
        let nodes = view.nodes();
        nodes.len() == 3 && nodes.iter().all(|n| n.node.status == NodeStatus::Ready)
    })
    .await;
    b.handle().create(spread("web", 3, 1000)).await.unwrap();
    eventually("3 running", Duration::from_secs(10), || {
        running(&h, "web") == 3
    })
    .await;
    assert_eq!(m1.list(&NodeId::from("n1")).await.unwrap().len(), 1);

    // The leader (n1) leaves: another takes over; n1's lease ends, so n1 is Down and its
    // replica runs elsewhere. Its container is still there (a machine cut off).
    a.shutdown().await;
    eventually("a new leader", Duration::from_secs(5), || {
        leaders(&[&b, &c]) == 1
    })
    .await;
    eventually(
        "the replica of n1 replaced",
        Duration::from_secs(10),
        || {
            let view = h.view().unwrap();
            let on_live = view
                .nodes()
                .iter()
                .filter(|n| n.node.id.as_str() != "n1")
                .map(|n| n.instances)
                .sum::<usize>();
            running(&h, "web") == 3 && on_live == 3
        },
    )
    .await;

    // n1 comes back with its old container still running: it is removed, nothing runs twice.
    let a = join(&store, "n1", m1.clone()).await;
    let n1 = NodeId::from("n1");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !m1.list(&n1).await.unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "n1's stale container was not removed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let containers = running_containers(&[("n1", &m1), ("n2", &m2), ("n3", &m3)]).await;
    assert_eq!(containers.len(), 3, "{containers:?}");
    assert_eq!(leaders(&[&a, &b, &c]), 1);
    for m in [a, b, c] {
        m.shutdown().await;
    }
}

#[tokio::test]
async fn a_deposed_leaders_writes_fail_and_say_so() {
    let store = Arc::new(InMemoryStore::new());
    let lease = store.grant_lease(TTL).await.unwrap();
    let revision = store
        .put_leased(
            Kind::Cluster,
            "leader",
            b"{}".to_vec(),
            lease,
            Precondition::Absent,
        )
        .await
        .unwrap();
    let deposed = CancellationToken::new();
    let fenced = FencedStore::new(
        store.clone(),
        Fence {
            kind: Kind::Cluster,
            key: "leader".into(),
            revision,
        },
        deposed.clone(),
    );
    let put = |v: &str| Op::Put {
        kind: Kind::Workload,
        key: "w".into(),
        value: v.as_bytes().to_vec(),
        precondition: Precondition::None,
    };
    fenced.commit(vec![put("1")]).await.unwrap();
    assert!(!deposed.is_cancelled());

    // The lease ends (the leader was cut off): its next write is refused.
    store.revoke_lease(lease).await.unwrap();
    let err = fenced.commit(vec![put("2")]).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { ref key, .. } if key == "leader"),
        "{err}"
    );
    assert!(deposed.is_cancelled());
    assert_eq!(
        store.get(Kind::Workload, "w").await.unwrap().unwrap().value,
        b"1"
    );
}

#[tokio::test]
async fn a_daemon_with_another_token_or_cluster_is_refused() {
    let store = Arc::new(InMemoryStore::new());
    let rt = machine();
    let first = ClusterMember::join(
        store.clone(),
        rt.clone(),
        config("n1", rt.clone(), Some("s3cret")),
    )
    .await
    .unwrap();
    let refused = |r: Result<ClusterMember, CoreError>| match r {
        Err(CoreError::Join { reason }) => reason,
        Err(e) => panic!("expected a join refusal, got {e}"),
        Ok(_) => panic!("expected a join refusal"),
    };
    let other = machine();
    let wrong = ClusterMember::join(
        store.clone(),
        other.clone(),
        config("n2", other.clone(), Some("nope")),
    )
    .await;
    assert!(refused(wrong).contains("wrong --cluster-token"));
    let none = ClusterMember::join(
        store.clone(),
        other.clone(),
        config("n2", other.clone(), None),
    )
    .await;
    assert!(refused(none).contains("requires a cluster token"));

    // A daemon that remembers a cluster refuses a store that lost it (etcd emptied).
    let dir = tempfile::tempdir().unwrap();
    let mut remembered = config("n3", other.clone(), None);
    remembered.data_dir = Some(dir.path().to_owned());
    std::fs::write(dir.path().join("cluster-id"), "an-old-cluster").unwrap();
    let empty = Arc::new(InMemoryStore::new());
    let lost = ClusterMember::join(empty.clone(), other.clone(), remembered).await;
    assert!(refused(lost).contains("holds no cluster"));
    assert!(
        empty.list(Kind::Cluster, "").await.unwrap().is_empty(),
        "nothing was created"
    );
    first.shutdown().await;
}

/// An assignment stopped before its agent got to start it is reported exited, not run.
#[tokio::test]
async fn an_assignment_stopped_before_it_started_never_runs() {
    let store = Arc::new(InMemoryStore::new());
    let rt = machine();
    let node = Node::new("n1", Resources::new(1000, 1024, 0));
    let spec = container_runtime_interface::ContainerSpec {
        id: ContainerId::from("i1-main"),
        instance_id: "w/i1".into(),
        workload_id: "w".into(),
        config: ContainerConfig::new("main", "example/app:1"),
    };
    store
        .put_obj(
            &Assignment {
                node: node.id.clone(),
                spec,
                uid: "u1".into(),
                stop_grace_ms: Some(100),
            },
            Precondition::None,
        )
        .await
        .unwrap();
    let agent = NodeAgent::start(
        AgentConfig::new(node),
        store.clone(),
        rt.clone(),
        watch::channel(None).1,
    )
    .await
    .unwrap();
    let report_key = "n1/i1-main";
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(e) = store.get(Kind::ContainerStatus, report_key).await.unwrap() {
            let text = String::from_utf8(e.value).unwrap();
            assert!(text.contains("Exited"), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "no report");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(rt.list(&NodeId::from("n1")).await.unwrap().is_empty());
    agent.shutdown().await;
}

/// A report whose assignment was removed while the node's agent was down is deleted when the
/// agent starts: the leader's removal waits for that, and nothing else would delete it.
#[tokio::test]
async fn a_report_left_by_an_assignment_removed_while_the_agent_was_down_is_deleted() {
    let store = Arc::new(InMemoryStore::new());
    let node = Node::new("n1", Resources::new(1000, 1024, 0));
    let report = orchestrator_core::cluster::records::ContainerReport {
        node: node.id.clone(),
        id: ContainerId::from("i1-main"),
        instance_id: "w/i1".into(),
        workload_id: "w".into(),
        state: ContainerState::Running,
        health: None,
        assignment_uid: "u1".into(),
    };
    store.put_obj(&report, Precondition::None).await.unwrap();
    let agent = NodeAgent::start(
        AgentConfig::new(node),
        store.clone(),
        machine(),
        watch::channel(None).1,
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while store
        .get(Kind::ContainerStatus, "n1/i1-main")
        .await
        .unwrap()
        .is_some()
    {
        assert!(
            Instant::now() < deadline,
            "the orphaned report is still there"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    agent.shutdown().await;
}

/// The runtime conformance suite through the cluster path: the leader's `ClusterRuntime`
/// writing assignments, a node agent realizing them with a simulated runtime, reports back.
mod through_the_store {
    use super::*;

    async fn target() -> container_runtime_interface::conformance::ConformanceTarget {
        let store = Arc::new(InMemoryStore::new());
        let local = Arc::new(SimulatedRuntime::new(SimulatedRuntimeConfig {
            start_delay: Duration::from_millis(5),
            ..SimulatedRuntimeConfig::default()
        }));
        local.exit_after_start("exits-3", 3);
        local.exit_after_start("talks", 0);
        let node = NodeId::from("node-1");
        let agent = NodeAgent::start(
            AgentConfig::new(Node::new("node-1", Resources::new(1000, 1024, 0))),
            store.clone(),
            local.clone(),
            watch::channel(None).1,
        )
        .await
        .unwrap();
        // Lives as long as the test's runtime.
        std::mem::forget(agent);
        let runtime = ClusterRuntime::start(
            store,
            Some((node.clone(), local as Arc<dyn ContainerRuntime>)),
            Arc::new(NoRemoteLogs),
            ClusterRuntimeConfig::default(),
        )
        .await
        .unwrap();
        let mut talker = ContainerConfig::new("talker", "talks");
        talker.command = vec!["echo".into(), "hello".into()];
        container_runtime_interface::conformance::ConformanceTarget::new(
            Arc::new(runtime),
            node,
            ContainerConfig::new("app", "sleeps"),
        )
        .with_exit(ContainerConfig::new("job", "exits-3"), 3)
        .with_output(
            talker,
            &[
                "started: image talks, command echo hello",
                "exited with code 0",
            ],
        )
    }

    container_runtime_interface::runtime_conformance!(target().await);
}
