//! The workload both benchmarks place: a fixed-seed mix of request sizes on identical nodes.
//!
//! Each workload is one class (small, medium, large, cpu-heavy, memory-heavy) with one size
//! drawn from that class, and 10 to 100 replicas. On average the mixes are CPU-bound on the
//! nodes below (about 2.1 MB per millicore requested for `Typical`, 2.9 for `BigItems`, against
//! 4.1 offered), but a seed's few dozen workloads can lean either way, and bursts of 100
//! identical memory- or cpu-heavy replicas are what makes packing hard.

// Shared by two bench binaries, each of which uses only part of it.
#![allow(dead_code)]

use orchestrator_shared_types::{Labels, Node, NodeId, PlacementStrategy, Resources, WorkloadId};
use scheduler_interface::{Allocation, ClusterState, PlacementRequest};

/// Every node: 4 cores, 16 GiB, disk that never binds.
pub const NODE: Resources = Resources::new(4000, 16384, 1_000_000);

/// One class of requests: (name, weight in percent, CPU choices in millicores, memory choices in
/// MB). A workload draws its class by weight, then one CPU and one memory amount from it.
type Class = (&'static str, u32, &'static [u64], &'static [u64]);

/// Which request sizes to draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mix {
    /// Requests of at most half a node's CPU and a quarter of its memory, as most pods are on
    /// a 4-core, 16 GiB node.
    Typical,
    /// The same classes with large, cpu-heavy and memory-heavy requests of half to three
    /// quarters of a node: a stress case for fragmentation.
    BigItems,
}

impl Mix {
    /// Both mixes, for reports.
    pub const ALL: [Mix; 2] = [Mix::Typical, Mix::BigItems];

    /// Short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Mix::Typical => "typical",
            Mix::BigItems => "big-items",
        }
    }

    fn classes(self) -> &'static [Class; 5] {
        const TYPICAL: [Class; 5] = [
            ("small", 35, &[100, 200, 250], &[128, 256, 512]),
            ("medium", 30, &[500, 750], &[1024, 2048]),
            ("large", 15, &[1000, 1500, 2000], &[2048, 3072, 4096]),
            ("cpu-heavy", 10, &[1000, 1500, 2000], &[256, 512]),
            ("memory-heavy", 10, &[250, 500], &[3072, 4096]),
        ];
        const BIG_ITEMS: [Class; 5] = [
            ("small", 35, &[100, 200, 250], &[128, 256, 512]),
            ("medium", 30, &[500, 750], &[1024, 2048]),
            ("large", 15, &[1000, 2000], &[4096, 6144]),
            ("cpu-heavy", 10, &[1500, 2000, 3000], &[512, 1024]),
            ("memory-heavy", 10, &[250, 500], &[6144, 8192]),
        ];
        match self {
            Mix::Typical => &TYPICAL,
            Mix::BigItems => &BIG_ITEMS,
        }
    }
}

/// `n` empty nodes named `node-00000`, ….
pub fn empty_cluster(n: usize) -> ClusterState {
    let mut state = ClusterState::new();
    for i in 0..n {
        state.upsert_node(Node::new(format!("node-{i:05}"), NODE));
    }
    state
}

/// `n` nodes each already holding a random 0–60 % of its CPU and memory (drawn independently),
/// so free amounts are fragmented the way a long-running cluster's are, which is harder for
/// the free-resource index than an empty or neatly packed cluster.
pub fn preloaded_cluster(n: usize, seed: u64) -> ClusterState {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut state = empty_cluster(n);
    for i in 0..n {
        let existing = Allocation {
            workload_id: WorkloadId::from("existing"),
            resources: Resources::new(rng.u64(0..=24) * 100, rng.u64(0..=38) * 256, 0),
            host_ports: Vec::new(),
        };
        state.allocate(&NodeId::from(format!("node-{i:05}")), &existing);
    }
    state
}

/// One workload: a request and its replica count.
pub fn workload(
    mix: Mix,
    rng: &mut fastrand::Rng,
    index: usize,
    strategy: PlacementStrategy,
) -> (PlacementRequest, usize) {
    let mut pick = rng.u32(0..100);
    let (_, _, cpus, mems) = mix
        .classes()
        .iter()
        .find(|(_, weight, _, _)| {
            if pick < *weight {
                true
            } else {
                pick -= weight;
                false
            }
        })
        .copied()
        .expect("class weights add up to 100");
    let request = PlacementRequest {
        workload_id: WorkloadId::from(format!("workload-{index}")),
        resources: Resources::new(
            cpus[rng.usize(0..cpus.len())],
            mems[rng.usize(0..mems.len())],
            0,
        ),
        host_ports: Vec::new(),
        node_selector: Labels::new(),
        strategy,
    };
    (request, rng.usize(10..=100))
}

/// Workloads totalling exactly `replicas` replicas (the last one is cut short).
pub fn workloads(
    mix: Mix,
    seed: u64,
    replicas: usize,
    strategy: PlacementStrategy,
) -> Vec<(PlacementRequest, usize)> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = Vec::new();
    let mut total = 0;
    while total < replicas {
        let (request, count) = workload(mix, &mut rng, out.len(), strategy);
        let count = count.min(replicas - total);
        total += count;
        out.push((request, count));
    }
    out
}

/// Workloads in arrival order until their demand reaches `fraction` of `capacity` in CPU or in
/// memory, whichever comes first.
pub fn workloads_until(
    mix: Mix,
    seed: u64,
    capacity: Resources,
    fraction: f64,
    strategy: PlacementStrategy,
) -> Vec<(PlacementRequest, usize)> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = Vec::new();
    let mut demand = Resources::ZERO;
    let full = |demand: Resources| {
        demand.cpu_millicores as f64 >= fraction * capacity.cpu_millicores as f64
            || demand.memory_mb as f64 >= fraction * capacity.memory_mb as f64
    };
    while !full(demand) {
        let (request, count) = workload(mix, &mut rng, out.len(), strategy);
        // Cut the last workload so the demand stops at the target rather than past it.
        let mut placed = 0;
        while placed < count && !full(demand) {
            demand += request.resources;
            placed += 1;
        }
        out.push((request, placed));
    }
    out
}
