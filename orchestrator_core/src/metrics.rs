//! Counters the core keeps for `/metrics` and benchmarks. Plain atomics: cheap enough to bump
//! on every reconcile, readable from any task.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Counters of the reconcile loop.
#[derive(Debug, Default)]
pub struct CoreMetrics {
    reconciles: AtomicU64,
    reconcile_nanos: AtomicU64,
    placements: AtomicU64,
    unschedulable: AtomicU64,
    restarts: AtomicU64,
    persisted: AtomicU64,
    persist_failures: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Plans computed.
    pub reconciles: u64,
    /// Time spent planning, in total.
    pub reconcile_time: Duration,
    /// Replicas placed on a node by the scheduler.
    pub placements: u64,
    /// Plans in which some replicas fit nowhere.
    pub unschedulable: u64,
    /// Instances restarted after an exit.
    pub restarts: u64,
    /// Instance records written to the store.
    pub persisted: u64,
    /// Store writes given up after a permanent error.
    pub persist_failures: u64,
}

impl CoreMetrics {
    pub(crate) fn record_reconcile(&self, took: Duration, placements: usize, unschedulable: bool) {
        self.reconciles.fetch_add(1, Relaxed);
        self.reconcile_nanos
            .fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Relaxed);
        self.placements.fetch_add(placements as u64, Relaxed);
        if unschedulable {
            self.unschedulable.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn add_restart(&self) {
        self.restarts.fetch_add(1, Relaxed);
    }

    pub(crate) fn add_persisted(&self, n: u64) {
        self.persisted.fetch_add(n, Relaxed);
    }

    pub(crate) fn add_persist_failure(&self) {
        self.persist_failures.fetch_add(1, Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            reconciles: self.reconciles.load(Relaxed),
            reconcile_time: Duration::from_nanos(self.reconcile_nanos.load(Relaxed)),
            placements: self.placements.load(Relaxed),
            unschedulable: self.unschedulable.load(Relaxed),
            restarts: self.restarts.load(Relaxed),
            persisted: self.persisted.load(Relaxed),
            persist_failures: self.persist_failures.load(Relaxed),
        }
    }
}
