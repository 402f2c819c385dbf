//! Placement throughput of [`BinPackScheduler`] at 1,000 and 10,000 nodes.
//!
//! Each iteration places one replica per node (the `Typical` mix of `common/mix.rs`, in
//! workloads of 10–100 replicas) onto a fresh clone of a cluster whose nodes are already 0–60 %
//! used. The clone is made outside the timed section. Throughput is in placements per second.
//!
//! Run with `cargo bench -p scheduler_interface --bench scheduler`.

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput};
use orchestrator_shared_types::PlacementStrategy;
use scheduler_interface::{BinPackScheduler, Scheduler};
use std::hint::black_box;

#[path = "common/mix.rs"]
mod mix;

const SEED: u64 = 42;

fn placement(c: &mut Criterion) {
    let scheduler = BinPackScheduler::new();
    let mut group = c.benchmark_group("place");
    group.sample_size(10);
    let cases = [
        ("binpack", PlacementStrategy::BinPack, 1_000),
        ("binpack", PlacementStrategy::BinPack, 10_000),
        ("spread", PlacementStrategy::Spread, 10_000),
    ];
    for (name, strategy, nodes) in cases {
        let state = mix::preloaded_cluster(nodes, SEED);
        let requests = mix::workloads(mix::Mix::Typical, SEED, nodes, strategy);
        group.throughput(Throughput::Elements(nodes as u64));
        group.bench_function(BenchmarkId::new(name, nodes), |b| {
            b.iter_batched(
                || state.clone(),
                |mut state| {
                    for (request, count) in &requests {
                        let outcome = scheduler
                            .place(&mut state, request, *count)
                            .expect("benchmark requests are valid");
                        assert!(outcome.unschedulable.is_none(), "the cluster has room");
                        black_box(&outcome);
                    }
                    // Returned so that dropping the state is not timed.
                    state
                },
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

// By hand rather than with `criterion_group!`, whose generated public function has no docs.
fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    placement(&mut criterion);
    criterion.final_summary();
}
