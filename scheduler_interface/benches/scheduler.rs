//! Placement throughput of [`BinPackScheduler`] at 1,000 and 10,000 nodes.
//!
//! Each iteration places one replica per node (the `Typical` mix of `common/mix.rs`, in
//! workloads of 10–100 replicas) onto a fresh clone of a cluster whose nodes are already 0–60 %
//! used. The clone is made outside the timed section. Throughput is in placements per second.
//!
//! The `plan` group measures the two-step API on the same workloads at 10,000 nodes:
//! * `plan+commit`: each workload planned against the state, then committed (what `place`
//!   does in one step), on a fresh clone as above;
//! * `plan-only`: each workload planned against the same preloaded state and never committed,
//!   as a preview is (no clone at all);
//! * `preview/...`: one workload of 100, 1,000 or 10,000 replicas, the old way (clone the cluster, then
//!   place into the clone; the clone is timed, it is the cost being replaced) and as a plan.
//!
//! Run with `cargo bench -p scheduler_interface --bench scheduler`.

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput};
use orchestrator_shared_types::PlacementStrategy;
use scheduler_interface::{BinPackScheduler, ClusterState, PlacementRequest, Scheduler};
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

fn planning(c: &mut Criterion) {
    let scheduler = BinPackScheduler::new();
    let mut group = c.benchmark_group("plan");
    group.sample_size(10);
    let nodes = 10_000;
    let state = mix::preloaded_cluster(nodes, SEED);
    let requests = mix::workloads(mix::Mix::Typical, SEED, nodes, PlacementStrategy::BinPack);
    group.throughput(Throughput::Elements(nodes as u64));
    group.bench_function(BenchmarkId::new("plan+commit", nodes), |b| {
        b.iter_batched(
            || state.clone(),
            |mut state| {
                for (request, count) in &requests {
                    let plan = scheduler
                        .plan(&state, request, *count)
                        .expect("benchmark requests are valid");
                    assert!(plan.unschedulable.is_none(), "the cluster has room");
                    state.commit(&plan);
                    black_box(&plan);
                }
                state
            },
            BatchSize::PerIteration,
        );
    });
    group.bench_function(BenchmarkId::new("plan-only", nodes), |b| {
        b.iter(|| {
            for (request, count) in &requests {
                let plan = scheduler
                    .plan(&state, request, *count)
                    .expect("benchmark requests are valid");
                black_box(&plan);
            }
        });
    });
    for replicas in [100, 1_000, 10_000] {
        // A typical medium workload.
        let request = PlacementRequest {
            resources: orchestrator_shared_types::Resources::new(500, 1024, 0),
            ..requests[0].0.clone()
        };
        group.throughput(Throughput::Elements(replicas as u64));
        group.bench_function(
            BenchmarkId::new("preview/clone+place", format!("{nodes}x{replicas}")),
            |b| {
                b.iter(|| {
                    let mut scratch: ClusterState = state.clone();
                    let outcome = scheduler
                        .place(&mut scratch, &request, replicas)
                        .expect("benchmark requests are valid");
                    black_box(outcome);
                    // Returned so that dropping the clone is timed too: it is part of the cost.
                    scratch
                });
            },
        );
        group.bench_function(
            BenchmarkId::new("preview/plan", format!("{nodes}x{replicas}")),
            |b| {
                b.iter(|| {
                    let plan = scheduler
                        .plan(&state, &request, replicas)
                        .expect("benchmark requests are valid");
                    black_box(plan)
                });
            },
        );
    }
    group.finish();
}

// By hand rather than with `criterion_group!`, whose generated public function has no docs.
fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    placement(&mut criterion);
    planning(&mut criterion);
    criterion.final_summary();
}
