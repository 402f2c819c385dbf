//! Packing quality: how many nodes a strategy uses for the mixed workload of `common/mix.rs`,
//! against the lower bound `max(ceil(total CPU / node CPU), ceil(total memory / node memory))`.
//!
//! Replicas are placed in arrival order, one workload after another, until demand reaches
//! 88 % of a 1,000-node cluster. Compared: the default best fit, spread, and a round-robin
//! baseline written here (rotate through the nodes, take the first that fits).
//!
//! Run with `cargo bench -p scheduler_interface --bench packing`.

use orchestrator_shared_types::{NodeId, PlacementStrategy, Resources};
use scheduler_interface::{
    Allocation, BinPackScheduler, ClusterState, PlacementRequest, Scheduler,
};
use std::time::Instant;

#[path = "common/mix.rs"]
mod mix;

fn nodes_n() -> usize { std::env::var("NODES").map(|v| v.parse().unwrap()).unwrap_or(1000) }
fn fill() -> f64 { std::env::var("FILL").map(|v| v.parse().unwrap()).unwrap_or(0.88) }

fn main() {
    println!(
        "{} nodes of {}, demand {:.0} % of the cluster", nodes_n(),
        mix::NODE,
        fill() * 100.0
    );
    println!(
        "{:<12} {:>5} {:>6} {:>6} {:>7} {:>9} {:>9}",
        "strategy", "seed", "used", "bound", "ratio", "unplaced", "time"
    );
    for mix in mix::Mix::ALL {
        if std::env::var("MIX").is_ok_and(|m| m != mix.name()) {
            continue;
        }
        println!("mix {}", mix.name());
        for (name, strategy) in [
            ("binpack", Some(PlacementStrategy::BinPack)),
            ("spread", Some(PlacementStrategy::Spread)),
            ("round-robin", None),
        ] {
            let mut worst: f64 = 0.0;
            let mut sum = 0.0;
            let n: u64 = std::env::var("NSEEDS").map(|v| v.parse().unwrap()).unwrap_or(10);
        for seed in 1..=n {
                let result = run(mix, seed, strategy);
                worst = worst.max(result.ratio());
                sum += result.ratio();
                println!(
                    "{name:<12} {seed:>5} {:>6} {:>6} {:>7.3} {:>9} {:>7.1}ms",
                    result.used,
                    result.bound,
                    result.ratio(),
                    result.unplaced,
                    result.millis
                );
            }
            println!(
                "{name:<12} mean ratio {:.3}, worst {:.3}",
                sum / n as f64,
                worst
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

fn run(mix: mix::Mix, seed: u64, strategy: Option<PlacementStrategy>) -> Packing {
    let mut state = mix::empty_cluster(nodes_n());
    let capacity = mix::NODE.saturating_mul(nodes_n() as u64);
    let workloads = mix::workloads_until(
        mix,
        seed,
        capacity,
        fill(),
        strategy.unwrap_or(PlacementStrategy::BinPack),
    );
    let workloads = if std::env::var("OFFLINE").is_ok() {
        let mut flat: Vec<(PlacementRequest, usize)> = workloads
            .iter()
            .flat_map(|(r, c)| std::iter::repeat_n((r.clone(), 1), *c))
            .collect();
        let key = |r: &PlacementRequest| {
            let a = r.resources.cpu_millicores as f64 / 4000.0;
            let b = r.resources.memory_mb as f64 / 16384.0;
            a.max(b)
        };
        flat.sort_by(|x, y| key(&y.0).total_cmp(&key(&x.0)));
        flat
    } else {
        workloads
    };
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
                    if std::env::var("TRACE").ok() == Some(seed.to_string()) {
                        let used = state
                            .nodes()
                            .filter(|n| state.allocated(&n.id) != Resources::ZERO)
                            .count();
                        let mut d: Vec<_> = outcome.placed.iter().map(|n| n.as_str()).collect();
                        d.sort();
                        d.dedup();
                        eprintln!(
                            "{} x{} -> {} distinct nodes, used now {}",
                            request.resources,
                            count,
                            d.len(),
                            used
                        );
                    }
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
    if std::env::var("PACK_DEBUG").is_ok() {
        let mut stranded = 0;
        let mut cpu_free = 0u64;
        let mut mem_free = 0u64;
        let mut hist = [0usize; 9];
        for n in state.nodes() {
            let a = state.allocated(&n.id);
            if a == Resources::ZERO {
                continue;
            }
            let f = state.free(&n.id).unwrap();
            cpu_free += f.cpu_millicores;
            mem_free += f.memory_mb;
            hist[(f.cpu_millicores / 500).min(8) as usize] += 1;
            if f.memory_mb < 512 && f.cpu_millicores >= 250 {
                stranded += 1;
            }
        }
        eprintln!(
            "  demand cpu {:.3} mem {:.3}",
            total.cpu_millicores as f64 / capacity.cpu_millicores as f64,
            total.memory_mb as f64 / capacity.memory_mb as f64
        );
        eprintln!("  used {used}: mean free cpu {} mem {}, mem-stranded {stranded}, free-cpu hist(500m) {hist:?}", cpu_free / used as u64, mem_free / used as u64);
    }
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
