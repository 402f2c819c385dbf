//! Behaviour of [`SimulatedRuntime`] beyond the trait: the knobs scenario tests use (exits,
//! partitions, failing starts), its use of tokio time, and its scale.

use container_runtime_interface::{
    ContainerEvent, ContainerRuntime, ContainerSpec, ContainerState, RuntimeError,
    SimulatedRuntime, SimulatedRuntimeConfig,
};
use orchestrator_shared_types::{ContainerConfig, ContainerId, InstanceId, NodeId, WorkloadId};
use std::time::Duration;
use tokio::sync::broadcast;

fn runtime(start_delay: Duration) -> SimulatedRuntime {
    SimulatedRuntime::new(SimulatedRuntimeConfig {
        start_delay,
        ..SimulatedRuntimeConfig::default()
    })
}

fn spec(id: &str) -> ContainerSpec {
    spec_with_image(id, "img")
}

fn spec_with_image(id: &str, image: &str) -> ContainerSpec {
    ContainerSpec {
        id: ContainerId::from(id),
        instance_id: InstanceId::from(format!("inst-{id}")),
        workload_id: WorkloadId::from("wl"),
        config: ContainerConfig::new("app", image),
    }
}

/// The next event, failing the test if none arrives within a second.
async fn next_event(rx: &mut broadcast::Receiver<ContainerEvent>) -> ContainerEvent {
    tokio::time::timeout(Duration::from_secs(1), rx.recv())
        .await
        .expect("no event within a second")
        .expect("event channel broken")
}

async fn state(rt: &SimulatedRuntime, node: &NodeId, id: &str) -> ContainerState {
    rt.status(node, &ContainerId::from(id)).await.unwrap().state
}

#[tokio::test]
async fn exit_container_emits_exited_with_the_code() {
    let rt = runtime(Duration::ZERO);
    let node = NodeId::from("n1");
    rt.create_and_start(&node, &spec("c")).await.unwrap();
    let mut rx = rt.subscribe();
    rt.exit_container(&node, &ContainerId::from("c"), 42)
        .unwrap();
    let ev = next_event(&mut rx).await;
    assert_eq!(ev.container_id, ContainerId::from("c"));
    assert_eq!(ev.node_id, node);
    assert_eq!(ev.instance_id, InstanceId::from("inst-c"));
    assert_eq!(ev.state, ContainerState::Exited { code: 42 });
    assert_eq!(
        state(&rt, &node, "c").await,
        ContainerState::Exited { code: 42 }
    );
    assert_eq!(rt.running_count(), 0);

    // Exiting twice keeps the first code and sends nothing.
    rt.exit_container(&node, &ContainerId::from("c"), 1)
        .unwrap();
    assert_eq!(
        state(&rt, &node, "c").await,
        ContainerState::Exited { code: 42 }
    );
    assert!(rx.try_recv().is_err());

    let err = rt
        .exit_container(&node, &ContainerId::from("nope"), 1)
        .unwrap_err();
    assert!(matches!(err, RuntimeError::NotFound { .. }), "{err}");
}

#[tokio::test]
async fn exit_after_start_scripts_a_crash() {
    let rt = runtime(Duration::from_millis(1));
    rt.exit_after_start("crasher", 1);
    let node = NodeId::from("n1");
    let mut rx = rt.subscribe();
    rt.create_and_start(&node, &spec_with_image("c", "crasher"))
        .await
        .unwrap();
    assert_eq!(next_event(&mut rx).await.state, ContainerState::Running);
    assert_eq!(
        next_event(&mut rx).await.state,
        ContainerState::Exited { code: 1 }
    );
    // Other images are not affected.
    rt.create_and_start(&node, &spec("d")).await.unwrap();
    assert_eq!(next_event(&mut rx).await.state, ContainerState::Running);
    assert_eq!(state(&rt, &node, "d").await, ContainerState::Running);
}

#[tokio::test]
async fn unreachable_node_fails_every_call_and_recovers() {
    let rt = runtime(Duration::ZERO);
    let node = NodeId::from("n1");
    let other = NodeId::from("n2");
    rt.create_and_start(&node, &spec("c")).await.unwrap();
    rt.create_and_start(&other, &spec("c")).await.unwrap();
    rt.set_node_reachable(&node, false);

    let id = ContainerId::from("c");
    let results: Vec<(&str, Result<(), RuntimeError>)> = vec![
        ("create", rt.create_and_start(&node, &spec("d")).await),
        ("stop", rt.stop(&node, &id, Duration::ZERO).await),
        ("remove", rt.remove(&node, &id).await),
        ("status", rt.status(&node, &id).await.map(|_| ())),
        ("list", rt.list(&node).await.map(|_| ())),
    ];
    for (op, result) in results {
        match result {
            Err(e @ RuntimeError::NodeUnreachable { .. }) => {
                assert!(e.is_transient(), "{op}: unreachable must be retryable");
            }
            other => panic!("{op} on an unreachable node: {other:?}"),
        }
    }
    // Other nodes are unaffected.
    assert_eq!(state(&rt, &other, "c").await, ContainerState::Running);

    // The partitioned node kept running its container; an exit there is not heard...
    let mut rx = rt.subscribe();
    rt.exit_container(&node, &id, 9).unwrap();
    assert!(rx.try_recv().is_err(), "an event crossed the partition");

    // ... but is seen through list once the node is back, and nothing was removed or created.
    rt.set_node_reachable(&node, true);
    let listed = rt.list(&node).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, ContainerState::Exited { code: 9 });
    rt.remove(&node, &id).await.unwrap();
    assert_eq!(rt.containers_on(&node), 0);
}

#[tokio::test]
async fn failed_starts_leave_nothing_behind() {
    let rt = runtime(Duration::ZERO);
    let node = NodeId::from("n1");
    rt.fail_next_starts(2, "image not found");
    for id in ["a", "b"] {
        match rt.create_and_start(&node, &spec(id)).await {
            Err(e @ RuntimeError::StartFailed { .. }) => {
                assert!(!e.is_transient(), "a start failure is not retryable");
                assert!(e.to_string().contains("image not found"), "{e}");
            }
            other => panic!("create {id}: expected StartFailed, got {other:?}"),
        }
        assert_eq!(
            rt.container_count(),
            0,
            "failed create of {id} left a container"
        );
    }
    // The budget is spent: the same id now starts.
    rt.create_and_start(&node, &spec("a")).await.unwrap();
    assert_eq!(state(&rt, &node, "a").await, ContainerState::Running);
}

#[tokio::test]
async fn already_exists_does_not_spend_the_failure_budget() {
    let rt = runtime(Duration::ZERO);
    let node = NodeId::from("n1");
    rt.create_and_start(&node, &spec("a")).await.unwrap();
    rt.fail_next_starts(1, "boom");
    let err = rt.create_and_start(&node, &spec("a")).await.unwrap_err();
    assert!(matches!(err, RuntimeError::AlreadyExists { .. }), "{err}");
    let err = rt.create_and_start(&node, &spec("b")).await.unwrap_err();
    assert!(matches!(err, RuntimeError::StartFailed { .. }), "{err}");
}

#[tokio::test(start_paused = true)]
async fn start_delay_follows_tokio_time() {
    let delay = Duration::from_millis(500);
    let rt = runtime(delay);
    let node = NodeId::from("n1");
    let mut rx = rt.subscribe();
    rt.create_and_start(&node, &spec("c")).await.unwrap();
    assert_eq!(state(&rt, &node, "c").await, ContainerState::Created);

    tokio::time::advance(delay - Duration::from_millis(1)).await;
    tokio::task::yield_now().await;
    assert_eq!(state(&rt, &node, "c").await, ContainerState::Created);
    assert!(rx.try_recv().is_err(), "Running before the delay");

    tokio::time::advance(Duration::from_millis(1)).await;
    let ev = next_event(&mut rx).await;
    assert_eq!(ev.state, ContainerState::Running);
    assert_eq!(state(&rt, &node, "c").await, ContainerState::Running);
}

#[tokio::test]
async fn list_is_per_node() {
    let rt = runtime(Duration::ZERO);
    let (a, b) = (NodeId::from("a"), NodeId::from("b"));
    rt.create_and_start(&a, &spec("x")).await.unwrap();
    rt.create_and_start(&a, &spec("y")).await.unwrap();
    rt.create_and_start(&b, &spec("x")).await.unwrap();
    let mut ids: Vec<String> = rt
        .list(&a)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id.0)
        .collect();
    ids.sort();
    assert_eq!(ids, ["x", "y"]);
    assert_eq!(rt.list(&b).await.unwrap().len(), 1);
    assert!(rt.list(&NodeId::from("empty")).await.unwrap().is_empty());
    assert_eq!((rt.containers_on(&a), rt.container_count()), (2, 3));
}

/// The scale a benchmark needs: 100,000 containers over 5,000 nodes, each waiting a 1 ms start
/// delay, all end up running. Timings are printed, not asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_containers_all_run() {
    const NODES: usize = 5_000;
    const PER_NODE: usize = 20;
    let rt = runtime(Duration::from_millis(1));
    let work: Vec<(NodeId, ContainerSpec)> = (0..NODES * PER_NODE)
        .map(|i| {
            let node = NodeId::from(format!("node-{}", i % NODES));
            (node, spec(&format!("c-{i}")))
        })
        .collect();

    let started = std::time::Instant::now();
    for (node, spec) in &work {
        rt.create_and_start(node, spec).await.unwrap();
    }
    let created = started.elapsed();
    tokio::time::timeout(Duration::from_secs(60), async {
        while rt.running_count() < NODES * PER_NODE {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} running", rt.running_count()));
    eprintln!(
        "{} creates over {NODES} nodes: {created:?}; all running after {:?}",
        NODES * PER_NODE,
        started.elapsed()
    );
    assert_eq!(rt.container_count(), NODES * PER_NODE);
    assert_eq!(rt.containers_on(&NodeId::from("node-0")), PER_NODE);
}
