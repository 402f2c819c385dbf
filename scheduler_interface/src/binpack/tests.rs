use super::*;
use crate::Allocation;
use orchestrator_shared_types::{Labels, Node, NodeId, Protocol, WorkloadId};
use std::collections::HashMap;

fn node(id: &str, cpu: u64, mem: u64) -> Node {
    Node::new(id, Resources::new(cpu, mem, 10_000))
}

fn cluster(nodes: impl IntoIterator<Item = Node>) -> ClusterState {
    let mut state = ClusterState::new();
    for n in nodes {
        state.upsert_node(n);
    }
    state
}

fn request(workload: &str, cpu: u64, mem: u64) -> PlacementRequest {
    PlacementRequest {
        workload_id: WorkloadId::from(workload),
        resources: Resources::new(cpu, mem, 0),
        host_ports: Vec::new(),
        node_selector: Labels::new(),
        strategy: PlacementStrategy::BinPack,
    }
}

fn with_strategy(mut r: PlacementRequest, strategy: PlacementStrategy) -> PlacementRequest {
    r.strategy = strategy;
    r
}

fn ids(placed: &[NodeId]) -> Vec<&str> {
    placed.iter().map(NodeId::as_str).collect()
}

fn fill(state: &mut ClusterState, node: &str, cpu: u64, mem: u64) {
    let filler = Allocation {
        workload_id: WorkloadId::from("filler"),
        resources: Resources::new(cpu, mem, 0),
        host_ports: Vec::new(),
    };
    assert!(state.allocate(&NodeId::from(node), &filler));
}

#[test]
fn best_fit_chooses_the_fullest_fitting_node() {
    let mut state = cluster([
        node("empty", 4000, 4096),
        node("half", 4000, 4096),
        node("nearly-full", 4000, 4096),
        node("too-full", 4000, 4096),
    ]);
    fill(&mut state, "half", 2000, 2048);
    fill(&mut state, "nearly-full", 3000, 3072);
    fill(&mut state, "too-full", 3900, 4000);
    let s = BinPackScheduler::new();
    let out = s.place(&mut state, &request("w", 500, 512), 3).unwrap();
    // 1024 MB free on nearly-full holds two; the third goes to the next fullest.
    assert_eq!(ids(&out.placed), ["nearly-full", "nearly-full", "half"]);
    assert_eq!(out.unschedulable, None);
}

#[test]
fn best_fit_weighs_cpu_and_memory_together() {
    // "mem-tight" is tightest in memory but would be left with idle CPU; "both-tight" fits the
    // replica in both dimensions.
    let mut state = cluster([
        node("mem-tight", 4000, 4096),
        node("both-tight", 4000, 4096),
    ]);
    fill(&mut state, "mem-tight", 0, 3584);
    fill(&mut state, "both-tight", 3000, 3000);
    let out = BinPackScheduler::new()
        .place(&mut state, &request("w", 1000, 512), 1)
        .unwrap();
    assert_eq!(ids(&out.placed), ["both-tight"]);
}

#[test]
fn best_fit_does_not_strand_the_scarce_resource() {
    let nodes = || {
        cluster([
            node("a", 4000, 16384),
            node("b", 4000, 16384),
            node("c", 4000, 16384),
            node("z", 4000, 16384),
        ])
    };
    let memory_heavy = request("w", 250, 8192);
    let s = BinPackScheduler::new();

    // CPU-bound so far (z is busy with CPU): a second memory-heavy replica on "a" would fill
    // its memory and leave 3500m of the scarce CPU idle for good, so a fresh node is better.
    let mut cpu_bound = nodes();
    fill(&mut cpu_bound, "a", 250, 8192);
    fill(&mut cpu_bound, "z", 3900, 1024);
    let out = s.place(&mut cpu_bound, &memory_heavy, 1).unwrap();
    assert_eq!(ids(&out.placed), ["b"]);

    // Memory-bound so far: CPU left over is expected, so plain best fit pairs them.
    let mut memory_bound = nodes();
    fill(&mut memory_bound, "a", 250, 8192);
    let out = s.place(&mut memory_bound, &memory_heavy, 1).unwrap();
    assert_eq!(ids(&out.placed), ["a"]);
}

#[test]
fn spread_spreads() {
    let mut state = cluster((0..4).map(|i| node(&format!("n{i}"), 4000, 8192)));
    let s = BinPackScheduler::new();
    let r = with_strategy(request("w", 100, 128), PlacementStrategy::Spread);
    let out = s.place(&mut state, &r, 8).unwrap();
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for id in &out.placed {
        *per_node.entry(id.as_str()).or_default() += 1;
    }
    assert_eq!(per_node.len(), 4);
    assert!(per_node.values().all(|&n| n == 2), "{per_node:?}");
}

#[test]
fn spread_prefers_the_emptiest_node() {
    let mut state = cluster([node("a", 4000, 8192), node("b", 4000, 8192)]);
    fill(&mut state, "a", 1000, 1024);
    let r = with_strategy(request("w", 100, 128), PlacementStrategy::Spread);
    let out = BinPackScheduler::new().place(&mut state, &r, 1).unwrap();
    assert_eq!(ids(&out.placed), ["b"]);
}

#[test]
fn one_per_node_never_doubles_up_and_says_why() {
    let mut state = cluster((0..3).map(|i| node(&format!("n{i}"), 4000, 8192)));
    let s = BinPackScheduler::new();
    let r = with_strategy(request("w", 100, 128), PlacementStrategy::OnePerNode);
    let out = s.place(&mut state, &r, 5).unwrap();
    let mut placed = ids(&out.placed);
    placed.sort();
    assert_eq!(placed, ["n0", "n1", "n2"]);
    let why = out.unschedulable.unwrap();
    assert_eq!(why.unplaced, 2);
    assert_eq!(why.reasons, [(RejectReason::AntiAffinity, 3)].into());
    assert_eq!(why.to_string(), "0/3 nodes fit: 3 one replica per node");
    // Another workload is not affected.
    let other = with_strategy(request("v", 100, 128), PlacementStrategy::OnePerNode);
    assert_eq!(s.place(&mut state, &other, 3).unwrap().placed.len(), 3);
}

#[test]
fn node_selector_is_honoured() {
    let mut state = cluster([
        node("plain", 4000, 8192),
        node("gpu", 4000, 8192).with_label("gpu", "yes"),
        node("gpu-other", 4000, 8192).with_label("gpu", "no"),
    ]);
    let mut r = request("w", 100, 128);
    r.node_selector.insert("gpu".into(), "yes".into());
    let out = BinPackScheduler::new().place(&mut state, &r, 2).unwrap();
    assert_eq!(ids(&out.placed), ["gpu", "gpu"]);

    r.node_selector.insert("zone".into(), "nowhere".into());
    let out = BinPackScheduler::new().place(&mut state, &r, 1).unwrap();
    assert!(out.placed.is_empty());
    assert_eq!(
        out.unschedulable.unwrap().to_string(),
        "0/3 nodes fit: 3 selector mismatch"
    );
}

#[test]
fn selector_matching_many_nodes_uses_the_free_index() {
    // Enough matching nodes that the label set is not walked; the result must be the same.
    let mut state = cluster((0..64).map(|i| {
        node(&format!("n{i:02}"), 4000, 8192).with_label("pool", if i % 2 == 0 { "a" } else { "b" })
    }));
    fill(&mut state, "n10", 3000, 6000);
    fill(&mut state, "n11", 3500, 7000);
    let mut r = request("w", 100, 128);
    r.node_selector.insert("pool".into(), "a".into());
    let out = BinPackScheduler::new().place(&mut state, &r, 1).unwrap();
    assert_eq!(ids(&out.placed), ["n10"]);
}

#[test]
fn host_ports_conflict_per_protocol() {
    let mut state = cluster([node("only", 4000, 8192)]);
    let s = BinPackScheduler::new();
    let mut tcp = request("web", 100, 128);
    tcp.host_ports = vec![(Protocol::Tcp, 8080)];
    let out = s.place(&mut state, &tcp, 2).unwrap();
    assert_eq!(out.placed.len(), 1);
    let why = out.unschedulable.unwrap();
    assert_eq!(why.to_string(), "0/1 nodes fit: 1 host port conflict");

    // The same port in another workload conflicts too; over UDP it does not.
    let mut other_tcp = request("other", 100, 128);
    other_tcp.host_ports = vec![(Protocol::Tcp, 8080)];
    assert!(s
        .place(&mut state, &other_tcp, 1)
        .unwrap()
        .placed
        .is_empty());
    let mut udp = request("dns", 100, 128);
    udp.host_ports = vec![(Protocol::Udp, 8080)];
    assert_eq!(s.place(&mut state, &udp, 1).unwrap().placed.len(), 1);
}

#[test]
fn allocations_are_accounted_across_calls_and_release_frees() {
    let mut state = cluster([node("a", 1000, 1024)]);
    let s = BinPackScheduler::new();
    let r = request("w", 400, 256);
    assert_eq!(s.place(&mut state, &r, 2).unwrap().placed.len(), 2);
    let out = s.place(&mut state, &r, 1).unwrap();
    assert!(out.placed.is_empty());
    assert_eq!(
        out.unschedulable.unwrap().to_string(),
        "0/1 nodes fit: 1 insufficient cpu"
    );
    assert_eq!(
        state.allocated(&NodeId::from("a")),
        Resources::new(800, 512, 0)
    );
    assert_eq!(
        state.replicas_on(&WorkloadId::from("w"), &NodeId::from("a")),
        2
    );

    let alloc = Allocation {
        workload_id: r.workload_id.clone(),
        resources: r.resources,
        host_ports: Vec::new(),
    };
    state.release(&NodeId::from("a"), &alloc);
    assert_eq!(ids(&s.place(&mut state, &r, 1).unwrap().placed), ["a"]);
}

#[test]
fn reasons_read_like_kubectl() {
    let mut state = cluster([
        node("small-1", 4000, 1024).with_label("tier", "web"),
        node("small-2", 4000, 1024).with_label("tier", "web"),
        node("busy", 4000, 8192).with_label("tier", "web"),
        node("db-1", 4000, 65536).with_label("tier", "db"),
        node("db-2", 4000, 65536).with_label("tier", "db"),
    ]);
    fill(&mut state, "busy", 0, 7680);
    let mut r = request("w", 500, 2048);
    r.node_selector.insert("tier".into(), "web".into());
    let s = BinPackScheduler::new();
    let out = s.place(&mut state, &r, 2).unwrap();
    assert!(out.placed.is_empty());
    let why = out.unschedulable.unwrap();
    assert_eq!(why.nodes_total, 5);
    assert_eq!(why.unplaced, 2);
    assert_eq!(
        why.to_string(),
        "0/5 nodes fit: 3 insufficient memory, 2 selector mismatch"
    );
    assert_eq!(s.explain(&state, &r), Unschedulable { unplaced: 1, ..why });
}

#[test]
fn explain_does_not_place() {
    let state = cluster([node("a", 1000, 1024), node("b", 100, 1024)]);
    let s = BinPackScheduler::new();
    let why = s.explain(&state, &request("w", 500, 512));
    assert_eq!(why.to_string(), "1/2 nodes fit: 1 insufficient cpu");
    assert_eq!(why.unplaced, 0);
    assert_eq!(state.allocated(&NodeId::from("a")), Resources::ZERO);
    let empty = s.explain(&ClusterState::new(), &request("w", 500, 512));
    assert_eq!(empty.to_string(), "0/0 nodes fit: no nodes in the cluster");
}

#[test]
fn unready_and_cordoned_nodes_are_never_chosen() {
    let mut down = node("down", 64_000, 65_536);
    down.status = NodeStatus::Down;
    let mut not_ready = node("not-ready", 64_000, 65_536);
    not_ready.status = NodeStatus::NotReady;
    let mut cordoned = node("cordoned", 64_000, 65_536);
    cordoned.unschedulable = true;
    let mut state = cluster([down, not_ready, cordoned, node("ok", 1000, 1024)]);
    let s = BinPackScheduler::new();
    for strategy in [
        PlacementStrategy::BinPack,
        PlacementStrategy::Spread,
        PlacementStrategy::OnePerNode,
    ] {
        let r = with_strategy(request(&format!("{strategy:?}"), 300, 300), strategy);
        let out = s.place(&mut state, &r, 5).unwrap();
        assert!(out.placed.iter().all(|id| id.as_str() == "ok"), "{out:?}");
    }
    let why = s.explain(&state, &request("w", 900, 900));
    assert_eq!(
        why.to_string(),
        "0/4 nodes fit: 2 node not ready, 1 node unschedulable, 1 insufficient cpu"
    );
}

#[test]
fn zero_count_and_invalid_requests() {
    let mut state = cluster([node("a", 1000, 1024)]);
    let s = BinPackScheduler::new();
    assert_eq!(
        s.place(&mut state, &request("w", 100, 100), 0).unwrap(),
        PlacementOutcome::default()
    );
    assert!(matches!(
        s.place(&mut state, &request("w", 0, 0), 1),
        Err(SchedulerError::InvalidRequest(_))
    ));
    // Nothing in the cluster: every replica is unplaced, no panic.
    let out = s
        .place(&mut ClusterState::new(), &request("w", 1, 1), 3)
        .unwrap();
    assert_eq!(out.unschedulable.unwrap().unplaced, 3);
}

#[test]
fn ties_are_deterministic() {
    let run = || {
        let mut state = cluster((0..20).map(|i| node(&format!("n{i}"), 4000, 8192)));
        let s = BinPackScheduler::new();
        let mut placed = Vec::new();
        for strategy in [PlacementStrategy::BinPack, PlacementStrategy::Spread] {
            let r = with_strategy(request("w", 300, 700), strategy);
            placed.extend(s.place(&mut state, &r, 30).unwrap().placed);
        }
        placed
    };
    assert_eq!(run(), run());
}

/// An independent brute-force model of feasibility, to check the indexed search against.
fn brute_force_fits(state: &ClusterState, node: &Node, r: &PlacementRequest) -> bool {
    let free = state.free(&node.id).unwrap();
    node.is_schedulable()
        && r.node_selector
            .iter()
            .all(|(k, v)| node.labels.get(k) == Some(v))
        && !(r.strategy == PlacementStrategy::OnePerNode
            && state.replicas_on(&r.workload_id, &node.id) > 0)
        && r.host_ports
            .iter()
            .all(|&p| !state.host_port_claimed(&node.id, p))
        && r.resources.fits_in(&free)
}

#[test]
fn property_never_overcommits_and_never_misses_a_feasible_node() {
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    for round in 0..40 {
        let mut state = ClusterState::new();
        let n = rng.usize(1..60);
        for i in 0..n {
            let mut nd = node(&format!("n{i}"), rng.u64(1..9) * 500, rng.u64(1..17) * 512);
            nd.allocatable.disk_mb = rng.u64(0..4) * 1000;
            match rng.u8(0..10) {
                0 => nd.status = NodeStatus::NotReady,
                1 => nd.unschedulable = true,
                _ => {}
            }
            if rng.bool() {
                nd = nd.with_label("zone", ["a", "b", "c"][rng.usize(0..3)]);
            }
            state.upsert_node(nd);
        }
        // A fixed small limit so the bounded scoring is exercised even on small clusters.
        let s = if round % 2 == 0 {
            BinPackScheduler::new()
        } else {
            BinPackScheduler::with_candidate_limit(1)
        };
        let mut placements: Vec<(NodeId, Allocation)> = Vec::new();
        for call in 0..60 {
            let mut r = request(
                &format!("w{}", rng.u8(0..8)),
                rng.u64(0..5) * 250,
                rng.u64(1..9) * 256,
            );
            r.resources.disk_mb = rng.u64(0..3) * 500;
            r.strategy = [
                PlacementStrategy::BinPack,
                PlacementStrategy::Spread,
                PlacementStrategy::OnePerNode,
            ][rng.usize(0..3)];
            if rng.u8(0..4) == 0 {
                r.host_ports = vec![([Protocol::Tcp, Protocol::Udp][rng.usize(0..2)], 80)];
            }
            if rng.u8(0..4) == 0 {
                r.node_selector
                    .insert("zone".into(), ["a", "b", "z"][rng.usize(0..3)].into());
            }
            let count = rng.usize(0..12);
            let out = s.place(&mut state, &r, count).unwrap();
            let ctx = format!("round {round} call {call}: {r:?} x{count} -> {out:?}");
            for id in &out.placed {
                placements.push((
                    id.clone(),
                    Allocation {
                        workload_id: r.workload_id.clone(),
                        resources: r.resources,
                        host_ports: r.host_ports.clone(),
                    },
                ));
            }
            match &out.unschedulable {
                None => assert_eq!(out.placed.len(), count, "{ctx}"),
                Some(why) => {
                    assert_eq!(out.placed.len() + why.unplaced, count, "{ctx}");
                    assert!(
                        state.nodes().all(|nd| !brute_force_fits(&state, nd, &r)),
                        "a node fits but was not found: {ctx}"
                    );
                    assert_eq!(why.reasons.values().sum::<usize>(), state.len(), "{ctx}");
                }
            }
            for nd in state.nodes() {
                assert!(
                    state.allocated(&nd.id).fits_in(&nd.allocatable),
                    "{} overcommitted: {ctx}",
                    nd.id
                );
                let mut ports = HashMap::new();
                for (_, a) in placements.iter().filter(|(on, _)| on == &nd.id) {
                    for p in &a.host_ports {
                        *ports.entry(*p).or_insert(0) += 1;
                        assert!(ports[p] <= 1, "host port claimed twice on {}: {ctx}", nd.id);
                    }
                }
            }
            // Release a few to exercise the index on the way down too.
            for _ in 0..rng.usize(0..3) {
                if !placements.is_empty() {
                    let (id, a) = placements.swap_remove(rng.usize(0..placements.len()));
                    state.release(&id, &a);
                }
            }
        }
    }
}

#[test]
fn one_per_node_property() {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut state = cluster((0..50).map(|i| node(&format!("n{i}"), 8000, 16384)));
    let s = BinPackScheduler::new();
    for _ in 0..20 {
        let r = with_strategy(
            request(&format!("w{}", rng.u8(0..4)), 100, 128),
            PlacementStrategy::OnePerNode,
        );
        s.place(&mut state, &r, rng.usize(1..30)).unwrap();
        for nd in state.nodes() {
            assert!(state.replicas_on(&r.workload_id, &nd.id) <= 1);
        }
    }
}

// ---- plans: computed against a shared state, committed separately -------------------------

fn alloc_of(r: &PlacementRequest) -> Allocation {
    r.allocation()
}

#[test]
fn a_plan_sees_its_own_replicas_and_changes_nothing_until_committed() {
    let mut state = cluster([node("a", 1000, 1024), node("b", 1000, 1024)]);
    fill(&mut state, "b", 600, 0);
    let s = BinPackScheduler::new();
    let r = request("w", 400, 256);
    let before = state.observable();
    let plan = s.plan(&state, &r, 4).unwrap();
    // b is the tighter node: it takes one; a takes two; the fourth sees three placed and fits
    // nowhere, exactly as placing would say.
    assert_eq!(
        plan.placed().map(NodeId::as_str).collect::<Vec<_>>(),
        ["b", "a", "a"]
    );
    assert_eq!(
        plan.unschedulable.as_ref().unwrap().to_string(),
        "0/2 nodes fit: 2 insufficient cpu"
    );
    assert!(plan.placements.iter().all(|p| p.allocation == alloc_of(&r)));
    assert!(plan.released.is_empty());
    assert_eq!(state.observable(), before, "planning changed the state");

    let mut placed = state.clone();
    let outcome = s.place(&mut placed, &r, 4).unwrap();
    assert_eq!(state.commit(&plan), 3);
    assert_eq!(plan.into_outcome(), outcome);
    assert_eq!(state.observable(), placed.observable());
}

#[test]
fn a_plan_with_released_replicas_reuses_their_room_and_commit_releases_them() {
    let mut state = cluster([node("a", 1000, 1024)]);
    let s = BinPackScheduler::new();
    let mut r = with_strategy(request("w", 500, 512), PlacementStrategy::OnePerNode);
    r.host_ports = vec![(Protocol::Tcp, 80)];
    let a = NodeId::from("a");
    let old = alloc_of(&r);
    assert!(state.allocate(&a, &old));
    fill(&mut state, "a", 500, 0);
    let before = state.observable();

    // Without releasing, every filter from one-per-node on says no.
    let plan = s.plan(&state, &r, 1).unwrap();
    assert!(plan.placements.is_empty());
    assert_eq!(
        plan.unschedulable.unwrap().to_string(),
        "0/1 nodes fit: 1 one replica per node"
    );
    // Released, its replica count, host port and resources are free again for the plan.
    let released = vec![(a.clone(), old.clone()), ("gone".into(), old.clone())];
    let plan = s.plan_with(&state, &r, 2, &released).unwrap();
    assert_eq!(plan.placed().map(NodeId::as_str).collect::<Vec<_>>(), ["a"]);
    assert_eq!(plan.unschedulable.as_ref().unwrap().unplaced, 1);
    assert_eq!(plan.released, released);
    assert_eq!(state.observable(), before, "planning changed the state");

    assert_eq!(state.commit(&plan), 1);
    assert_eq!(state.allocated(&a), Resources::new(1000, 512, 0));
    assert_eq!(state.replicas_on(&r.workload_id, &a), 1);
    assert!(state.host_port_claimed(&a, (Protocol::Tcp, 80)));
}

#[test]
fn commit_skips_placements_on_nodes_removed_since_the_plan() {
    let mut state = cluster([node("a", 1000, 1024), node("b", 1000, 1024)]);
    let plan = BinPackScheduler::new()
        .plan(
            &state,
            &with_strategy(request("w", 100, 100), PlacementStrategy::Spread),
            2,
        )
        .unwrap();
    assert_eq!(plan.placements.len(), 2);
    state.remove_node(&"b".into());
    assert_eq!(state.commit(&plan), 1);
    assert_eq!(state.allocated(&"a".into()), Resources::new(100, 100, 0));
}

/// A random cluster for the plan properties: sizes that fragment (or, when `uniform`, identical
/// nodes, where ties and the roomiest-node hint decide), some nodes down or cordoned, a common
/// label (matched by many nodes, so selectors use the free index) and a rare one (so they walk
/// the label index).
fn random_cluster(rng: &mut fastrand::Rng, n: usize, uniform: bool) -> ClusterState {
    let mut state = ClusterState::new();
    for i in 0..n {
        state.upsert_node(random_node(rng, i, uniform));
    }
    state
}

fn random_node(rng: &mut fastrand::Rng, i: usize, uniform: bool) -> Node {
    let mut nd = if uniform {
        node(&format!("n{i}"), 4000, 8192)
    } else {
        node(&format!("n{i}"), rng.u64(1..9) * 500, rng.u64(1..17) * 512)
    };
    nd.allocatable.disk_mb = if uniform {
        10_000
    } else {
        rng.u64(0..4) * 1000
    };
    match rng.u8(0..12) {
        0 => nd.status = NodeStatus::NotReady,
        1 => nd.unschedulable = true,
        _ => {}
    }
    if rng.u8(0..4) != 0 {
        nd = nd.with_label("zone", ["a", "b", "c"][rng.usize(0..3)]);
    }
    if rng.u8(0..10) == 0 {
        nd = nd.with_label("gpu", "yes");
    }
    nd
}

fn random_request(rng: &mut fastrand::Rng) -> PlacementRequest {
    let mut r = request(
        &format!("w{}", rng.u8(0..6)),
        rng.u64(0..5) * 250,
        rng.u64(1..9) * 256,
    );
    r.resources.disk_mb = rng.u64(0..3) * 500;
    r.strategy = [
        PlacementStrategy::BinPack,
        PlacementStrategy::BinPack,
        PlacementStrategy::Spread,
        PlacementStrategy::OnePerNode,
    ][rng.usize(0..4)];
    if rng.u8(0..4) == 0 {
        r.host_ports = vec![([Protocol::Tcp, Protocol::Udp][rng.usize(0..2)], 80)];
    }
    match rng.u8(0..6) {
        0 => {
            r.node_selector
                .insert("zone".into(), ["a", "b", "z"][rng.usize(0..3)].into());
        }
        1 => {
            r.node_selector.insert("gpu".into(), "yes".into());
        }
        _ => {}
    }
    r
}

/// Schedulers for the properties: the default limit, and small fixed ones so that which
/// candidates are offered, and in what order, decides the result.
fn schedulers() -> [BinPackScheduler; 3] {
    [
        BinPackScheduler::new(),
        BinPackScheduler::with_candidate_limit(1),
        BinPackScheduler::with_candidate_limit(3),
    ]
}

#[test]
fn property_plan_then_commit_is_place() {
    let mut rng = fastrand::Rng::with_seed(0x91a7);
    for round in 0..60 {
        let n = rng.usize(1..80);
        let uniform = round % 2 == 1;
        let mut placed = random_cluster(&mut rng, n, uniform);
        let mut planned = placed.clone();
        let s = &schedulers()[round % 3];
        let mut live: Vec<(NodeId, Allocation)> = Vec::new();
        for call in 0..50 {
            let r = random_request(&mut rng);
            // Some counts larger than the cluster, so plans touch many nodes.
            let count = if rng.u8(0..5) == 0 {
                rng.usize(0..3 * n + 2)
            } else {
                rng.usize(0..12)
            };
            let outcome = s.place(&mut placed, &r, count).unwrap();
            let before = planned.observable();
            let plan = s.plan(&planned, &r, count).unwrap();
            let ctx = format!("round {round} call {call}: {r:?} x{count}");
            // `plan` takes `&ClusterState`; this guards against interior caches slipping in.
            assert_eq!(
                planned.observable(),
                before,
                "plan changed the state: {ctx}"
            );
            assert_eq!(planned.commit(&plan), plan.placements.len(), "{ctx}");
            assert!(
                plan.placements.iter().all(|p| p.allocation == alloc_of(&r)),
                "{ctx}"
            );
            assert_eq!(plan.into_outcome(), outcome, "{ctx}");
            assert_eq!(planned.observable(), placed.observable(), "{ctx}");
            live.extend(outcome.placed.iter().map(|id| (id.clone(), alloc_of(&r))));

            // Move the indexes both ways between calls: releases, and node changes.
            for _ in 0..rng.usize(0..4) {
                if !live.is_empty() {
                    let (id, a) = live.swap_remove(rng.usize(0..live.len()));
                    placed.release(&id, &a);
                    planned.release(&id, &a);
                }
            }
            if rng.u8(0..8) == 0 {
                let i = rng.usize(0..n + 3);
                let changed = random_node(&mut rng, i, uniform);
                placed.upsert_node(changed.clone());
                planned.upsert_node(changed);
            }
            if rng.u8(0..16) == 0 {
                let gone = NodeId::from(format!("n{}", rng.usize(0..n)));
                placed.remove_node(&gone);
                planned.remove_node(&gone);
                live.retain(|(id, _)| *id != gone);
            }
        }
    }
}

#[test]
fn property_plan_with_released_is_release_then_place() {
    let mut rng = fastrand::Rng::with_seed(0xde1e7e);
    for round in 0..60 {
        let n = rng.usize(1..60);
        let mut state = random_cluster(&mut rng, n, round % 2 == 1);
        let s = &schedulers()[round % 3];
        let mut live: Vec<(NodeId, Allocation)> = Vec::new();
        // Fill the cluster part way with several workloads.
        for _ in 0..rng.usize(1..30) {
            let r = random_request(&mut rng);
            let out = s.place(&mut state, &r, rng.usize(1..10)).unwrap();
            live.extend(out.placed.iter().map(|id| (id.clone(), alloc_of(&r))));
        }
        for call in 0..20 {
            let r = random_request(&mut rng);
            let count = rng.usize(0..2 * n + 2);
            // Mostly the request's own replicas (an update's preview), some of other workloads,
            // now and then an unknown node or the same allocation twice.
            let mut released: Vec<(NodeId, Allocation)> = live
                .iter()
                .filter(|(_, a)| {
                    (a.workload_id == r.workload_id || rng.u8(0..8) == 0) && rng.u8(0..4) != 0
                })
                .cloned()
                .collect();
            if rng.u8(0..6) == 0 {
                released.push(("unknown".into(), alloc_of(&r)));
            }
            if !released.is_empty() && rng.u8(0..6) == 0 {
                released.push(released[0].clone());
            }
            let ctx = format!("round {round} call {call}: {r:?} x{count}, {released:?}");

            let mut expected = state.clone();
            for (id, a) in &released {
                expected.release(id, a);
            }
            let outcome = s.place(&mut expected, &r, count).unwrap();

            let before = state.observable();
            let plan = s.plan_with(&state, &r, count, &released).unwrap();
            assert_eq!(state.observable(), before, "plan changed the state: {ctx}");
            assert_eq!(plan.released, released, "{ctx}");
            let mut committed = state.clone();
            committed.commit(&plan);
            assert_eq!(plan.into_outcome(), outcome, "{ctx}");
            assert_eq!(committed.observable(), expected.observable(), "{ctx}");

            // Keep the state moving: sometimes adopt the committed result.
            if rng.bool() {
                state = committed;
                live.retain(|l| !released.contains(l));
                live.extend(outcome.placed.iter().map(|id| (id.clone(), alloc_of(&r))));
            }
        }
    }
}

/// A scheduler that only plans: [`Scheduler::place`] is the trait's provided plan + commit.
struct PlanOnly(BinPackScheduler);

impl Scheduler for PlanOnly {
    fn name(&self) -> &'static str {
        "plan-only"
    }

    fn plan_with(
        &self,
        state: &ClusterState,
        request: &PlacementRequest,
        count: usize,
        released: &[(NodeId, Allocation)],
    ) -> Result<PlacementPlan, SchedulerError> {
        self.0.plan_with(state, request, count, released)
    }

    fn explain(&self, state: &ClusterState, request: &PlacementRequest) -> Unschedulable {
        self.0.explain(state, request)
    }
}

#[test]
fn the_provided_place_is_plan_then_commit() {
    let mut rng = fastrand::Rng::with_seed(3);
    let mut direct = random_cluster(&mut rng, 40, false);
    let mut provided = direct.clone();
    let s = BinPackScheduler::new();
    // Through a trait object, as the core holds its scheduler: the trait stays object-safe.
    let p: Box<dyn Scheduler> = Box::new(PlanOnly(BinPackScheduler::new()));
    for _ in 0..100 {
        let r = random_request(&mut rng);
        let count = rng.usize(0..20);
        assert_eq!(
            p.place(&mut provided, &r, count),
            s.place(&mut direct, &r, count)
        );
        assert_eq!(provided.observable(), direct.observable());
    }
    assert!(matches!(
        p.place(&mut provided, &request("w", 0, 0), 1),
        Err(SchedulerError::InvalidRequest(_))
    ));
}

#[test]
fn a_mock_scheduler_can_be_told_what_to_plan() {
    let mut mock = crate::MockScheduler::new();
    mock.expect_plan_with().returning(|_, _, count, released| {
        Ok(PlacementPlan {
            released: released.to_vec(),
            placements: Vec::new(),
            unschedulable: Some(Unschedulable {
                unplaced: count,
                ..Unschedulable::default()
            }),
        })
    });
    let mut state = cluster([node("a", 1000, 1024)]);
    let plan = mock.plan_with(&state, &request("w", 1, 1), 2, &[]).unwrap();
    assert_eq!(plan.unschedulable.unwrap().unplaced, 2);
    // The provided `place` is mocked too (callers force its errors in their tests).
    mock.expect_place()
        .returning(|_, _, _| Err(SchedulerError::InvalidRequest("boom".into())));
    assert!(mock.place(&mut state, &request("w", 1, 1), 1).is_err());
}

#[test]
fn a_plan_offers_the_roomiest_node_under_its_own_placements() {
    // One candidate per replica: after "n3" is full of the plan's own replicas, the roomiest
    // node is "n2" (the state's index still says "n3").
    let state = cluster((0..4).map(|i| node(&format!("n{i}"), 4000, 8192)));
    let s = BinPackScheduler::with_candidate_limit(1);
    let r = request("w", 1000, 1024);
    let plan = s.plan(&state, &r, 5).unwrap();
    let mut placed = state.clone();
    let outcome = s.place(&mut placed, &r, 5).unwrap();
    assert_eq!(ids(&outcome.placed), ["n3", "n3", "n3", "n3", "n2"]);
    assert_eq!(plan.into_outcome(), outcome);
}
