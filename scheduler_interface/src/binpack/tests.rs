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
