//! Scenario tests: the real orchestrator over the in-memory store, the simulated runtime and static
//! membership, driven by lists of operations on a paused clock.

mod common;

use common::*;
use orchestrator_shared_types::*;
use std::time::Duration;
use Op::*;

#[tokio::test(start_paused = true)]
async fn submit_places_every_replica_and_runs_it() {
    let mut h = Harness::new().await;
    h.run(vec![
        AddNode(node("n1", 4000, 8192)),
        AddNode(node("n2", 4000, 8192)),
        Submit(workload("web", 5, 500, 512)),
        expect("5 running", |w| {
            w.running("web") == 5 && w.running_containers() == 5
        }),
    ])
    .await;
    let world = h.world().await;
    // Bin-packing: 5 x 500m fits on one 4000m node, so only one node is used.
    let used: std::collections::BTreeSet<_> = world
        .instances("web")
        .iter()
        .map(|i| i.node_id.clone())
        .collect();
    assert_eq!(used.len(), 1, "best fit packs onto one node: {used:?}");
    assert_eq!(world.events_of(EventKind::Scheduled).len(), 5);
    assert_eq!(world.events_of(EventKind::Started).len(), 5);
}

#[tokio::test(start_paused = true)]
async fn scale_up_then_down_removes_newest_first() {
    let mut h = Harness::new().await;
    h.run(vec![
        AddNode(node("n1", 8000, 16384)),
        Submit(workload("api", 2, 100, 64)),
        expect("2 running", |w| w.running("api") == 2),
        Advance(Duration::from_secs(1)),
    ])
    .await;
    let first: Vec<InstanceId> = h
        .world()
        .await
        .instances("api")
        .iter()
        .map(|i| i.id.clone())
        .collect();
    h.run(vec![
        Scale("api", 6),
        expect("6 running", |w| {
            w.running("api") == 6 && w.container_count() == 6
        }),
        Scale("api", 2),
        expect("2 left, containers too", |w| {
            w.instances("api").len() == 2 && w.container_count() == 2
        }),
    ])
    .await;
    let left: Vec<InstanceId> = h
        .world()
        .await
        .instances("api")
        .iter()
        .map(|i| i.id.clone())
        .collect();
    let mut first_sorted = first.clone();
    first_sorted.sort();
    let mut left_sorted = left.clone();
    left_sorted.sort();
    assert_eq!(
        first_sorted, left_sorted,
        "the newest replicas were removed, the oldest kept"
    );
    assert_eq!(h.world().await.events_of(EventKind::Stopped).len(), 4);
}

#[tokio::test(start_paused = true)]
async fn pending_replicas_go_first_on_scale_down() {
    let mut h = Harness::new().await;
    h.run(vec![
        AddNode(node("n1", 1000, 4096)),
        Submit(workload("big", 3, 400, 256)),
        expect("2 running, 1 pending", |w| {
            w.running("big") == 2 && w.count("big", InstanceStatus::Pending) == 1
        }),
        Scale("big", 2),
        expect("the pending one went", |w| {
            w.instances("big").len() == 2 && w.running("big") == 2
        }),
    ])
    .await;
}

#[tokio::test(start_paused = true)]
async fn crashed_container_is_restarted_with_growing_backoff() {
    let mut h = Harness::new().await;
    h.run(vec![
        AddNode(node("n1", 4000, 8192)),
        Submit(workload("svc", 1, 100, 64)),
        expect("running", |w| w.running("svc") == 1),
        Crash("svc", 137),
        expect("failed with exit code", |w| {
            w.instances("svc")[0].last_exit_code == Some(137)
        }),
        expect("restarted once", |w| {
            w.running("svc") == 1 && w.instances("svc")[0].restart_count == 1
        }),
    ])
    .await;
    // Second crash: the backoff doubles (1 s, then 2 s with the fast policy).
    let t0 = tokio::time::Instant::now();
    h.run(vec![
        Crash("svc", 1),
        expect("restarted twice", |w| {
            w.running("svc") == 1 && w.instances("svc")[0].restart_count == 2
        }),
    ])
    .await;
    assert!(
        t0.elapsed() >= Duration::from_secs(2),
        "second restart waited {:?}",
        t0.elapsed()
    );
    let world = h.world().await;
    assert_eq!(world.events_of(EventKind::Restarted).len(), 2);
    assert!(world.events_of(EventKind::Failed)[0]
        .message
        .contains("exited with code 137"));
    // Exactly one container: restarts replace, never duplicate.
    assert_eq!(world.container_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn restart_policies_on_failure_and_never() {
    let mut h = Harness::new().await;
    let mut once = workload("once", 1, 100, 64);
    once.restart_policy = RestartPolicy::OnFailure;
    let mut never = workload("never", 1, 100, 64);
    never.restart_policy = RestartPolicy::Never;
    h.run(vec![
        AddNode(node("n1", 4000, 8192)),
        Submit(once),
        Submit(never),
        expect("both run", |w| {
            w.running("once") == 1 && w.running("never") == 1
        }),
        Crash("once", 0),
        Crash("never", 3),
        Advance(Duration::from_secs(60)),
        expect(
            "OnFailure + exit 0 stays Succeeded; Never stays Failed",
            |w| {
                w.count("once", InstanceStatus::Succeeded) == 1
                    && w.count("never", InstanceStatus::Failed) == 1
                    && w.instances("once")[0].restart_count == 0
                    && w.instances("never")[0].restart_count == 0
            },
        ),
    ])
    .await;
}

#[tokio::test(start_paused = true)]
async fn unschedulable_workload_reports_reasons_then_places_when_a_node_joins() {
    let mut h = Harness::new().await;
    let mut picky = workload("picky", 2, 100, 2048);
    picky.node_selector.insert("disk".into(), "ssd".into());
    h.run(vec![
        AddNode(node("n1", 4000, 1024).with_label("disk", "ssd")),
        AddNode(node("n2", 4000, 1024).with_label("disk", "ssd")),
        AddNode(node("n3", 4000, 8192)),
        Submit(picky),
        expect("2 pending", |w| {
            w.count("picky", InstanceStatus::Pending) == 2
        }),
        expect("an event says why", |w| {
            w.events_of(EventKind::Unschedulable).iter().any(|e| {
                e.message
                    .contains("0/3 nodes fit: 2 insufficient memory, 1 selector mismatch")
            })
        }),
        AddNode(node("n4", 4000, 8192).with_label("disk", "ssd")),
        expect("placed on the new node", |w| {
            w.running("picky") == 2 && w.on_node("picky", "n4") == 2
        }),
    ])
    .await;
    let world = h.world().await;
    let e = world.events_of(EventKind::Unschedulable)[0];
    let u = e.unschedulable.as_ref().expect("typed reasons");
    assert_eq!(u.reasons.get(&RejectReason::InsufficientMemory), Some(&2));
    assert_eq!(u.reasons.get(&RejectReason::SelectorMismatch), Some(&1));
    // Reported once, not on every resync.
    assert_eq!(world.events_of(EventKind::Unschedulable).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn removed_node_instances_are_rescheduled_elsewhere() {
    let mut h = Harness::new().await;
    h.run(vec![
        AddNode(node("n1", 2000, 4096)),
        Submit(workload("web", 3, 500, 512)),
        expect("3 on n1", |w| {
            w.running("web") == 3 && w.on_node("web", "n1") == 3
        }),
        AddNode(node("n2", 2000, 4096)),
        RemoveNode("n1"),
        expect("3 on n2", |w| {
            w.running("web") == 3 && w.on_node("web", "n2") == 3
        }),
    ])
    .await;
    let world = h.world().await;
    assert_eq!(
        world.instances("web").len(),
        3,
        "no leftovers of the lost instances"
    );
    assert_eq!(world.events_of(EventKind::Rescheduled).len(), 3);
}

#[tokio::test(start_paused = true)]
async fn node_down_moves_instances_and_they_are_cleaned_when_it_returns() {
    let mut h = Harness::new().await;
    h.run(vec![
        AddNode(node("n1", 2000, 4096)),
        AddNode(node("n2", 2000, 4096)),
        Submit(workload("web", 2, 1000, 512)),
        expect("2 running on n1", |w| {
            w.running("web") == 2 && w.on_node("web", "n1") == 2
        }),
        NodeDown("n1"),
        expect("2 running on n2", |w| {
            w.running("web") == 2 && w.on_node("web", "n2") == 2
        }),
    ])
    .await;
    // n1 comes back with its old containers still there: they are orphans now and get removed.
    h.runtime.set_node_reachable(&"n1".into(), true);
    h.nodes.remove_node(&"n1".into());
    h.run(vec![
        AddNode(node("n1", 2000, 4096)),
        expect("old containers removed from n1", |w| {
            w.containers
                .get(&NodeId::from("n1"))
                .is_some_and(|c| c.is_empty())
                && w.running("web") == 2
        }),
    ])
    .await;
}

#[tokio::test(start_paused = true)]
async fn delete_stops_and_removes_everything() {
    let mut h = Harness::new().await;
    h.run(vec![
        AddNode(node("n1", 4000, 8192)),
        Submit(workload("tmp", 4, 100, 64)),
        Submit(workload("keep", 1, 100, 64)),
        expect("running", |w| {
            w.running("tmp") == 4 && w.running("keep") == 1
        }),
        Delete("tmp"),
        expect("tmp gone", |w| {
            w.instances("tmp").is_empty() && w.total_instances() == 1 && w.container_count() == 1
        }),
    ])
    .await;
    let world = h.world().await;
    assert!(!world.workloads.contains_key("tmp"));
    assert_eq!(world.running("keep"), 1, "other workloads are untouched");
}

#[tokio::test(start_paused = true)]
async fn template_change_replaces_instances() {
    let mut h = Harness::new().await;
    let mut w = workload("app", 2, 100, 64);
    h.run(vec![
        AddNode(node("n1", 4000, 8192)),
        Submit(w.clone()),
        expect("2 running", |w| w.running("app") == 2),
    ])
    .await;
    let old: Vec<InstanceId> = h
        .world()
        .await
        .instances("app")
        .iter()
        .map(|i| i.id.clone())
        .collect();
    w.containers[0].image = "example/app:2".into();
    let hash = w.spec_hash();
    h.run(vec![
        Update(w),
        expect("2 new running", move |w| {
            w.running("app") == 2
                && w.instances("app").len() == 2
                && w.instances("app").iter().all(|i| i.spec_hash == hash)
                && w.container_count() == 2
        }),
    ])
    .await;
    let new = h.world().await;
    assert!(new.instances("app").iter().all(|i| !old.contains(&i.id)));
}

#[tokio::test(start_paused = true)]
async fn host_ports_are_a_scheduling_resource() {
    let mut h = Harness::new().await;
    let mut w = workload("edge", 3, 100, 64);
    w.containers[0].ports.push(PortMapping {
        container_port: 80,
        host_port: Some(8080),
        protocol: Protocol::Tcp,
    });
    h.run(vec![
        AddNode(node("n1", 8000, 16384)),
        AddNode(node("n2", 8000, 16384)),
        Submit(w),
        expect("2 running (one per node), 1 pending", |w| {
            w.running("edge") == 2
                && w.on_node("edge", "n1") == 1
                && w.on_node("edge", "n2") == 1
                && w.count("edge", InstanceStatus::Pending) == 1
        }),
        expect("reason given", |w| {
            w.events_of(EventKind::Unschedulable)
                .iter()
                .any(|e| e.message.contains("2 host port conflict"))
        }),
    ])
    .await;
}

#[tokio::test(start_paused = true)]
async fn start_failures_are_reported_and_retried() {
    let mut h = Harness::new().await;
    h.runtime
        .fail_next_starts(2, "image not found: example/app:1");
    h.run(vec![
        AddNode(node("n1", 4000, 8192)),
        Submit(workload("flaky", 1, 100, 64)),
        expect("eventually running", |w| w.running("flaky") == 1),
    ])
    .await;
    let world = h.world().await;
    let failed = world.events_of(EventKind::Failed);
    assert_eq!(failed.len(), 2);
    assert!(
        failed[0].message.contains("image not found"),
        "{}",
        failed[0].message
    );
    assert_eq!(world.instances("flaky")[0].restart_count, 2);
}

#[tokio::test(start_paused = true)]
async fn restart_on_the_same_store_converges_without_duplicates() {
    let mut h = Harness::new().await;
    h.run(vec![
        AddNode(node("n1", 8000, 16384)),
        AddNode(node("n2", 8000, 16384)),
        Submit(workload("web", 6, 500, 256)),
        Submit(workload("db", 1, 1000, 2048)),
        expect("all running", |w| {
            w.running("web") == 6 && w.running("db") == 1
        }),
    ])
    .await;
    let before: Vec<InstanceId> = h
        .world()
        .await
        .instances
        .values()
        .flatten()
        .map(|i| i.id.clone())
        .collect();
    // A container that belongs to nobody: an orphan the restarted daemon must remove.
    use container_runtime_interface::ContainerRuntime;
    h.runtime
        .create_and_start(&"n2".into(), &foreign_spec("stranger-x"))
        .await
        .unwrap();
    h.run(vec![
        RestartOrchestrator,
        Advance(Duration::from_secs(10)),
        expect("same instances, orphan gone", |w| {
            w.running("web") == 6 && w.running("db") == 1 && w.container_count() == 7
        }),
    ])
    .await;
    let after: Vec<InstanceId> = h
        .world()
        .await
        .instances
        .values()
        .flatten()
        .map(|i| i.id.clone())
        .collect();
    assert_eq!(before, after, "instances adopted, not recreated");
    // And it still works after the restart.
    h.run(vec![
        Scale("web", 8),
        expect("8 running", |w| {
            w.running("web") == 8 && w.container_count() == 9
        }),
    ])
    .await;
}

#[tokio::test(start_paused = true)]
async fn restart_while_replicas_are_starting_does_not_duplicate() {
    let mut h = Harness::new().await;
    h.run(vec![
        AddNode(node("n1", 8000, 16384)),
        Submit(workload("web", 5, 100, 64)),
        // No waiting: the orchestrator is restarted mid-reconcile.
        RestartOrchestrator,
        expect("5 running, 5 containers", |w| {
            w.running("web") == 5 && w.instances("web").len() == 5 && w.container_count() == 5
        }),
        Advance(Duration::from_secs(30)),
        expect("still exactly 5", |w| {
            w.instances("web").len() == 5 && w.container_count() == 5
        }),
    ])
    .await;
}

#[tokio::test(start_paused = true)]
async fn spread_and_one_per_node() {
    let mut h = Harness::new().await;
    let mut spread = workload("spread", 4, 100, 64);
    spread.placement = PlacementStrategy::Spread;
    let mut solo = workload("solo", 3, 100, 64);
    solo.placement = PlacementStrategy::OnePerNode;
    h.run(vec![
        AddNode(node("n1", 8000, 16384)),
        AddNode(node("n2", 8000, 16384)),
        Submit(spread),
        Submit(solo),
        expect("spread 2+2; solo 1+1 and one pending", |w| {
            w.on_node("spread", "n1") == 2
                && w.on_node("spread", "n2") == 2
                && w.on_node("solo", "n1") == 1
                && w.on_node("solo", "n2") == 1
                && w.count("solo", InstanceStatus::Pending) == 1
        }),
    ])
    .await;
}

#[tokio::test(start_paused = true)]
async fn graceful_shutdown_persists_in_flight_work() {
    let mut h = Harness::new().await;
    h.run(vec![
        AddNode(node("n1", 8000, 16384)),
        Submit(workload("web", 3, 100, 64)),
        Advance(Duration::from_millis(1)),
    ])
    .await;
    h.orchestrator.take().unwrap().shutdown().await;
    let world = h.world().await;
    // Everything started before the shutdown is recorded: containers match records.
    assert_eq!(world.instances("web").len(), world.container_count());
}

#[tokio::test(start_paused = true)]
async fn repeated_triggers_never_start_a_replica_twice() {
    let mut h = Harness::new().await;
    h.run(vec![
        AddNode(node("n1", 8000, 16384)),
        Submit(workload("web", 3, 100, 64)),
    ])
    .await;
    // Many triggers while the first plan's operations are still in flight.
    for _ in 0..20 {
        h.handle().resync();
        h.nodes
            .upsert_node(node("n1", 8000, 16384).with_label("tick", "tock"));
        h.nodes.upsert_node(node("n1", 8000, 16384));
        tokio::time::sleep(Duration::from_millis(10)).await;
        let world = h.world().await;
        assert!(
            world.container_count() <= 3,
            "{} containers",
            world.container_count()
        );
        assert!(world.instances("web").len() <= 3);
    }
    h.run(vec![expect("3 running", |w| {
        w.running("web") == 3 && w.container_count() == 3
    })])
    .await;
}

#[tokio::test(start_paused = true)]
async fn queries_explain_preview_and_node_views_change_nothing() {
    let mut h = Harness::new().await;
    let mut big = workload("big", 1, 100, 4096);
    big.node_selector.insert("zone".into(), "a".into());
    h.run(vec![
        AddNode(node("n1", 4000, 8192).with_label("zone", "a")),
        AddNode(node("n2", 4000, 2048).with_label("zone", "a")),
        AddNode(node("n3", 4000, 8192)),
        Submit(workload("web", 2, 500, 1024)),
        expect("running", |w| w.running("web") == 2),
    ])
    .await;
    let handle = h.handle();
    let nodes = handle.nodes().await.unwrap();
    let n2 = nodes.iter().find(|n| n.node.id.as_str() == "n2").unwrap();
    assert_eq!(
        (n2.instances, n2.allocated),
        (2, Resources::new(1000, 2048, 0)),
        "best fit chose the tightest node"
    );

    let mut preview_def = big.clone();
    preview_def.replicas = 3;
    let preview = handle.preview(preview_def).await.unwrap();
    assert_eq!(preview.placements.get(&NodeId::from("n1")), Some(&2));
    let why = preview.unschedulable.expect("one does not fit");
    assert_eq!(why.unplaced, 1);
    assert_eq!(
        why.to_string(),
        "0/3 nodes fit: 2 insufficient memory, 1 selector mismatch"
    );
    // Nothing changed: no workload, no instance, same allocations.
    let world = h.world().await;
    assert!(!world.workloads.contains_key("big"));
    assert_eq!(handle.nodes().await.unwrap(), nodes);

    big.replicas = 3;
    h.run(vec![
        Submit(big),
        expect("1 pending", |w| {
            w.count("big", InstanceStatus::Pending) == 1
        }),
    ])
    .await;
    let why = h.handle().explain("big").await.unwrap();
    assert_eq!(
        why.to_string(),
        "0/3 nodes fit: 2 insufficient memory, 1 selector mismatch"
    );
    assert!(matches!(
        h.handle().explain("nope").await,
        Err(orchestrator_core::CoreError::NotFound { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn a_multi_container_instance_ends_when_all_exit_or_one_fails() {
    let mut h = Harness::new().await;
    let mut w = workload("pair", 1, 100, 64);
    w.restart_policy = RestartPolicy::OnFailure;
    w.containers
        .push(ContainerConfig::new("sidecar", "example/side:1"));
    h.run(vec![
        AddNode(node("n1", 4000, 8192)),
        Submit(w),
        expect("running with 2 containers", |w| {
            w.running("pair") == 1 && w.container_count() == 2
        }),
    ])
    .await;
    let i = h.world().await.instances("pair")[0].clone();
    let node = i.node_id.clone().unwrap();
    // One container finishes successfully: the instance keeps running.
    h.runtime
        .exit_container(&node, &i.container_ids[1], 0)
        .unwrap();
    h.run(vec![Advance(Duration::from_secs(5))]).await;
    assert_eq!(
        h.world().await.running("pair"),
        1,
        "a sidecar exiting 0 does not end it"
    );
    // The other fails: the instance failed, and OnFailure restarts it (both containers).
    h.runtime
        .exit_container(&node, &i.container_ids[0], 2)
        .unwrap();
    h.run(vec![expect("restarted after the failure", |w| {
        let i = &w.instances("pair")[0];
        i.restart_count == 1 && i.status == InstanceStatus::Running && w.running_containers() == 2
    })])
    .await;
    // Both exit 0: the instance succeeded and, under OnFailure, stays so.
    let i = h.world().await.instances("pair")[0].clone();
    h.runtime
        .exit_container(&node, &i.container_ids[0], 0)
        .unwrap();
    h.runtime
        .exit_container(&node, &i.container_ids[1], 0)
        .unwrap();
    h.run(vec![
        Advance(Duration::from_secs(60)),
        expect("succeeded", |w| {
            w.count("pair", InstanceStatus::Succeeded) == 1
        }),
    ])
    .await;
    assert_eq!(h.world().await.instances("pair")[0].restart_count, 1);
}

/// Host port of each instance of `workload` by instance id (one dynamic port per instance).
fn dynamic_ports(w: &World, workload: &str) -> std::collections::BTreeMap<InstanceId, u16> {
    w.instances(workload)
        .iter()
        .map(|i| {
            assert_eq!(i.ports.len(), 1, "{i:?}");
            (i.id.clone(), i.ports[0].host_port)
        })
        .collect()
}

fn distinct_in_range(ports: &std::collections::BTreeMap<InstanceId, u16>) -> bool {
    let set: std::collections::BTreeSet<u16> = ports.values().copied().collect();
    set.len() == ports.len() && set.iter().all(|p| DYNAMIC_PORT_RANGE.contains(p))
}

#[tokio::test(start_paused = true)]
async fn dynamic_host_ports_let_replicas_share_a_node() {
    let mut h = Harness::new().await;
    let mut w = workload("web", 3, 100, 64);
    w.containers[0].ports.push(PortMapping {
        container_port: 8080,
        host_port: Some(0),
        protocol: Protocol::Tcp,
    });
    h.run(vec![
        AddNode(node("n1", 8000, 16384)),
        Submit(w),
        expect("3 running on one node", |w| {
            w.running("web") == 3 && w.on_node("web", "n1") == 3 && w.running_containers() == 3
        }),
    ])
    .await;
    let first = dynamic_ports(&h.world().await, "web");
    assert!(distinct_in_range(&first), "{first:?}");
    let check_env = |h: &Harness, world: &World| {
        for i in world.instances("web") {
            let spec = h
                .started_spec(i.node_id.as_ref().unwrap(), &i.container_ids[0])
                .expect("started");
            let port = i.ports[0].host_port.to_string();
            assert_eq!(spec.config.env.get("PORT"), Some(&port), "{i:?}");
            assert_eq!(spec.config.env.get("PORT_8080"), Some(&port));
        }
    };
    check_env(&h, &h.world().await);

    // A crash restarts the replica with the port it holds.
    h.run(vec![
        Crash("web", 1),
        expect("restarted", |w| {
            w.running("web") == 3 && w.instances("web").iter().any(|i| i.restart_count == 1)
        }),
    ])
    .await;
    let world = h.world().await;
    assert_eq!(dynamic_ports(&world, "web"), first);
    check_env(&h, &world);

    // Scale down and up: the kept replica keeps its port, the freed ones are reused.
    h.run(vec![
        Scale("web", 1),
        expect("1 left, containers too", |w| {
            w.instances("web").len() == 1 && w.container_count() == 1
        }),
        Scale("web", 3),
        expect("3 running", |w| {
            w.running("web") == 3 && w.instances("web").len() == 3
        }),
    ])
    .await;
    let world = h.world().await;
    let second = dynamic_ports(&world, "web");
    assert!(distinct_in_range(&second), "{second:?}");
    let values = |m: &std::collections::BTreeMap<InstanceId, u16>| {
        m.values()
            .copied()
            .collect::<std::collections::BTreeSet<u16>>()
    };
    assert_eq!(values(&second), values(&first), "freed ports reused");
    assert_eq!(
        first
            .iter()
            .filter(|(id, p)| second.get(*id) == Some(p))
            .count(),
        1,
        "the kept replica kept its port"
    );
    check_env(&h, &world);

    // A restarted daemon adopts the replicas with their ports, and new replicas get others.
    h.run(vec![
        RestartOrchestrator,
        Advance(Duration::from_secs(10)),
        expect("still 3 running", |w| {
            w.running("web") == 3 && w.container_count() == 3
        }),
        Scale("web", 5),
        expect("5 running", |w| {
            w.running("web") == 5 && w.container_count() == 5
        }),
    ])
    .await;
    let world = h.world().await;
    let third = dynamic_ports(&world, "web");
    assert!(distinct_in_range(&third), "{third:?}");
    for (id, port) in &second {
        assert_eq!(third.get(id), Some(port), "{id} kept its port");
    }
    check_env(&h, &world);
}

#[tokio::test(start_paused = true)]
async fn a_drained_node_stays_cordoned_across_restarts_until_uncordoned() {
    let mut h = Harness::new().await;
    h.run(vec![
        AddNode(node("a", 8000, 16384)),
        // b fits 6 replicas of 100m; a 7th and 8th only fit on a.
        AddNode(node("b", 600, 16384)),
        Submit(workload("web", 2, 100, 64)),
        expect("2 running", |w| w.running("web") == 2),
        Drain("a"),
        expect("nothing left on a", |w| {
            w.running("web") == 2 && w.on_node("web", "a") == 0
        }),
        // The new membership knows both nodes as schedulable; the store remembers the cordon.
        RestartWithFreshMembership,
        Scale("web", 8),
        expect("6 running on b, 2 pending, none on a", |w| {
            w.on_node("web", "b") == 6
                && w.count("web", InstanceStatus::Pending) == 2
                && w.on_node("web", "a") == 0
        }),
        Advance(Duration::from_secs(10)),
        expect("still none on a", |w| {
            w.on_node("web", "a") == 0 && w.count("web", InstanceStatus::Pending) == 2
        }),
    ])
    .await;
    let views = h.handle().nodes().await.unwrap();
    let a = views.iter().find(|v| v.node.id.as_str() == "a").unwrap();
    assert!(
        a.node.unschedulable,
        "a is still cordoned after the restart"
    );

    // Uncordoned, and the uncordon survives a restart too: the pending replicas land on a.
    h.run(vec![
        Uncordon("a"),
        RestartWithFreshMembership,
        expect("8 running, 2 on a", |w| {
            w.running("web") == 8 && w.on_node("web", "a") == 2
        }),
    ])
    .await;
    let views = h.handle().nodes().await.unwrap();
    let a = views.iter().find(|v| v.node.id.as_str() == "a").unwrap();
    assert!(!a.node.unschedulable, "a is schedulable after the uncordon");
}

/// Ready replicas of `workload` in the store.
fn ready(w: &World, workload: &str) -> usize {
    w.instances(workload)
        .iter()
        .filter(|i| i.ready && i.status == InstanceStatus::Running)
        .count()
}

#[tokio::test(start_paused = true)]
async fn a_rolling_update_with_surge_1_and_unavailable_0_never_drops_below_desired() {
    let mut h = Harness::new().await;
    let mut w = workload("web", 4, 100, 64);
    w.strategy.max_surge = Quantity::Count(1);
    w.strategy.max_unavailable = Quantity::Count(0);
    h.run(vec![
        AddNode(node("n1", 4000, 8192)),
        Submit(w.clone()),
        expect("4 ready", |w| ready(w, "web") == 4),
    ])
    .await;
    w.containers[0].image = "example/app:2".into();
    let hash = w.spec_hash();
    h.step(Update(w)).await;
    let (mut min_ready, mut max_live, mut steps) = (usize::MAX, 0, 0);
    loop {
        let world = h.world().await;
        min_ready = min_ready.min(ready(&world, "web"));
        let live = world
            .instances("web")
            .iter()
            .filter(|i| i.status.is_live())
            .count();
        max_live = max_live.max(live);
        let done = world
            .instances("web")
            .iter()
            .filter(|i| i.spec_hash == hash && i.ready)
            .count()
            == 4
            && world.instances("web").len() == 4;
        if done {
            break;
        }
        steps += 1;
        assert!(steps < 2000, "the rollout never completed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(min_ready, 4, "never below the desired ready count");
    assert!(max_live <= 5, "at most one above desired: {max_live}");
    let world = h.world().await;
    assert_eq!(world.workloads["web"].revision, 2);
    assert!(world
        .events_of(EventKind::Rollout)
        .iter()
        .any(|e| e.message == "rollout of revision 2 complete"));
}

#[tokio::test(start_paused = true)]
async fn a_template_that_keeps_crashing_rolls_back_by_itself() {
    let mut h = Harness::new().await;
    let mut w = workload("api", 2, 100, 64);
    h.run(vec![
        AddNode(node("n1", 4000, 8192)),
        Submit(w.clone()),
        expect("2 running", |w| w.running("api") == 2),
    ])
    .await;
    let good = w.spec_hash();
    h.runtime.exit_after_start("example/broken:1", 1);
    w.containers[0].image = "example/broken:1".into();
    h.run(vec![
        Update(w),
        expect(
            "rolled back to the first template, all replicas on it",
            move |w| {
                w.workloads["api"].containers[0].image == "example/app:1"
                    && w.instances("api").len() == 2
                    && w.instances("api")
                        .iter()
                        .all(|i| i.spec_hash == good && i.ready)
            },
        ),
    ])
    .await;
    let world = h.world().await;
    let api = &world.workloads["api"];
    assert_eq!(api.revision, 3, "the rollback is a new revision");
    assert_eq!(api.changed_by.as_deref(), Some("auto-rollback"));
    let failed: Vec<_> = api.history.iter().filter(|h| h.failed.is_some()).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].revision, 2);
    let rollout = world.events_of(EventKind::Rollout);
    let message = &rollout
        .iter()
        .find(|e| e.message.contains("failed"))
        .expect("a rollout failure event")
        .message;
    assert!(
        message.contains("restarted 3 times")
            && message.contains("rolling back to the template of revision 1"),
        "{message}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_rollout_resumes_after_a_restart_of_the_orchestrator() {
    let mut h = Harness::new().await;
    let mut w = workload("svc", 4, 100, 64);
    w.strategy.max_surge = Quantity::Count(1);
    w.strategy.max_unavailable = Quantity::Count(0);
    w.strategy.min_ready_seconds = 5;
    h.run(vec![
        AddNode(node("n1", 4000, 8192)),
        Submit(w.clone()),
        expect("4 ready", |w| ready(w, "svc") == 4),
    ])
    .await;
    w.containers[0].image = "example/app:2".into();
    let hash = w.spec_hash();
    let updated = move |w: &World| {
        w.instances("svc")
            .iter()
            .filter(|i| i.spec_hash == hash)
            .count()
    };
    let updated2 = updated.clone();
    h.run(vec![
        Update(w),
        expect("one new replica", move |w| updated(w) >= 1),
        RestartOrchestrator,
        expect("all four replaced, none lost", move |w| {
            updated2(w) == 4 && w.instances("svc").len() == 4 && ready(w, "svc") == 4
        }),
    ])
    .await;
    assert_eq!(h.world().await.container_count(), 4);
}
