//! Packing quality: how many nodes a strategy uses for the mixed workloads of `common/mix.rs`,
//! against the lower bound `max(ceil(total CPU / node CPU), ceil(total memory / node memory))`.
//!
//! Replicas are placed in arrival order, one workload after another, until demand reaches
//! 88 % of a 1,000-node cluster (in CPU or memory, whichever comes first). Compared: the default
//! best fit, spread, and a round-robin baseline written here (rotate through the nodes, take the
//! first that fits). Each line summarises 30 seeds of the same mix; replicas that fit nowhere
//! are counted as unplaced (a strategy that hits the 1,000-node wall scores at most 1/0.88).
//!
//! Run with `cargo bench -p scheduler_interface --bench packing`.

use orchestrator_shared_types::{NodeId, PlacementStrategy, Resources};
use scheduler_interface::{
    Allocation, BinPackScheduler, ClusterState, PlacementRequest, Scheduler,
};
use std::time::Instant;

#[path = "common/mix.rs"]
mod mix;

const NODES: usize = 1_000;
const FILL: f64 = 0.88;
const SEEDS: std::ops::RangeInclusive<u64> = 1..=30;

fn main() {
    println!(
        "{NODES} nodes of {}, demand {:.0} % of the cluster, seeds {:?}",
        mix::NODE,
        FILL * 100.0,
        SEEDS
    );
    println!(
        "{:<10} {:<12} {:>10} {:>10} {:>8} {:>10} {:>11}",
        "mix", "strategy", "mean ratio", "worst", "nodes", "unplaced", "ms per run"
    );
    for mix in mix::Mix::ALL {
        for (name, strategy) in [
            ("binpack", Some(PlacementStrategy::BinPack)),
            ("spread", Some(PlacementStrategy::Spread)),
            ("round-robin", None),
        ] {
            let runs: Vec<Packing> = SEEDS.map(|seed| run(mix, seed, strategy)).collect();
            let n = runs.len() as f64;
            let mean = runs.iter().map(Packing::ratio).sum::<f64>() / n;
            let worst = runs.iter().map(Packing::ratio).fold(0.0, f64::max);
            let nodes = runs.iter().map(|r| r.used as f64).sum::<f64>() / n;
            let unplaced: usize = runs.iter().map(|r| r.unplaced).sum();
            let millis = runs.iter().map(|r| r.millis).sum::<f64>() / n;
            println!(
                "{:<10} {name:<12} {mean:>10.3} {worst:>10.3} {nodes:>8.0} {unplaced:>10} {millis:>11.1}",
                mix.name()
            );
        }
    }
}

struct Packing {
    used: usize,
    bound: u64,
    unplaced: usize,
    millis: f64,
}

impl Packing {
    fn ratio(&self) -> f64 {
        self.used as f64 / self.bound as f64
    }
}

/// Places one seed's workloads on a fresh cluster; `None` is the round-robin baseline.
fn run(mix: mix::Mix, seed: u64, strategy: Option<PlacementStrategy>) -> Packing {
    let mut state = mix::empty_cluster(NODES);
    let capacity = mix::NODE.saturating_mul(NODES as u64);
    let workloads = mix::workloads_until(
        mix,
        seed,
        capacity,
        FILL,
        strategy.unwrap_or(PlacementStrategy::BinPack),
    );
    let mut total = Resources::ZERO;
    for (request, count) in &workloads {
        total += request.resources.saturating_mul(*count as u64);
    }
    let started = Instant::now();
    let unplaced = match strategy {
        Some(_) => {
            let scheduler = BinPackScheduler::new();
            workloads
                .iter()
                .map(|(request, count)| {
                    let outcome = scheduler
                        .place(&mut state, request, *count)
                        .expect("benchmark requests are valid");
                    count - outcome.placed.len()
                })
                .sum()
        }
        None => round_robin(&mut state, &workloads),
    };
    let millis = started.elapsed().as_secs_f64() * 1000.0;
    let used = state
        .nodes()
        .filter(|n| state.allocated(&n.id) != Resources::ZERO)
        .count();
    let bound = total
        .cpu_millicores
        .div_ceil(mix::NODE.cpu_millicores)
        .max(total.memory_mb.div_ceil(mix::NODE.memory_mb));
    Packing {
        used,
        bound,
        unplaced,
        millis,
    }
}

/// The baseline: rotate through the nodes, each replica on the first one from the cursor that
/// fits. Returns how many replicas fit nowhere.
fn round_robin(state: &mut ClusterState, workloads: &[(PlacementRequest, usize)]) -> usize {
    let mut ids: Vec<NodeId> = state.nodes().map(|n| n.id.clone()).collect();
    ids.sort();
    let mut cursor = 0;
    let mut unplaced = 0;
    for (request, count) in workloads {
        let alloc = Allocation {
            workload_id: request.workload_id.clone(),
            resources: request.resources,
            host_ports: Vec::new(),
        };
        for _ in 0..*count {
            let found = (0..ids.len()).map(|i| (cursor + i) % ids.len()).find(|&i| {
                state
                    .free(&ids[i])
                    .is_some_and(|free| request.resources.fits_in(&free))
            });
            match found {
                Some(i) => {
                    state.allocate(&ids[i], &alloc);
                    cursor = (i + 1) % ids.len();
                }
                None => unplaced += 1,
            }
        }
    }
    unplaced
}
