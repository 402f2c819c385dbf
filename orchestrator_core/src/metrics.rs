//! What the core measures, for `/metrics` and benchmarks: counters of the reconcile loop and a
//! histogram of how long planning takes, as `prometheus-client` metrics (lock-free atomics,
//! cheap to bump on every reconcile, readable from any task).
//!
//! The API registers them in its registry with [`CoreMetrics::register`]; benchmarks and tests
//! read them with [`CoreMetrics::snapshot`].

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// Upper bounds of the reconcile duration histogram's buckets, in seconds: a plan takes
/// microseconds for a small workload and milliseconds for thousands of replicas.
pub const RECONCILE_BUCKETS: [f64; 14] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25,
];

/// The reconcile loop's metrics.
#[derive(Debug)]
pub struct CoreMetrics {
    reconciles: Counter,
    /// Total planning time, in seconds (a float counter, as Prometheus counts seconds).
    reconcile_seconds: Counter<f64, AtomicU64>,
    reconcile_duration: Histogram,
    placements: Counter,
    unschedulable: Counter,
    restarts: Counter,
    persisted: Counter,
    persist_failures: Counter,
}

impl Default for CoreMetrics {
    fn default() -> Self {
        Self {
            reconciles: Counter::default(),
            reconcile_seconds: Counter::default(),
            reconcile_duration: Histogram::new(RECONCILE_BUCKETS),
            placements: Counter::default(),
            unschedulable: Counter::default(),
            restarts: Counter::default(),
            persisted: Counter::default(),
            persist_failures: Counter::default(),
        }
    }
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
        let secs = took.as_secs_f64();
        self.reconciles.inc();
        self.reconcile_seconds.inc_by(secs);
        self.reconcile_duration.observe(secs);
        self.placements.inc_by(placements as u64);
        if unschedulable {
            self.unschedulable.inc();
        }
    }

    pub(crate) fn add_restart(&self) {
        self.restarts.inc();
    }

    pub(crate) fn add_persisted(&self, n: u64) {
        self.persisted.inc_by(n);
    }

    pub(crate) fn add_persist_failure(&self) {
        self.persist_failures.inc();
    }

    /// Registers every metric in `registry` (they stay shared: the registry reads the live
    /// values). Names, without the `_total` the encoder adds to counters:
    /// `orchestrator_reconciles`, `orchestrator_reconcile_seconds`,
    /// `orchestrator_reconcile_duration_seconds` (histogram), `orchestrator_placements`,
    /// `orchestrator_unschedulable_plans`, `orchestrator_restarts`,
    /// `orchestrator_instance_writes`, `orchestrator_persist_failures`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "orchestrator_reconciles",
            "Plans computed",
            self.reconciles.clone(),
        );
        registry.register(
            "orchestrator_reconcile_seconds",
            "Time spent planning, in total",
            self.reconcile_seconds.clone(),
        );
        registry.register(
            "orchestrator_reconcile_duration_seconds",
            "Time to plan one workload",
            self.reconcile_duration.clone(),
        );
        registry.register(
            "orchestrator_placements",
            "Replicas placed on a node by the scheduler",
            self.placements.clone(),
        );
        registry.register(
            "orchestrator_unschedulable_plans",
            "Plans in which some replicas fit nowhere",
            self.unschedulable.clone(),
        );
        registry.register(
            "orchestrator_restarts",
            "Instances restarted after an exit",
            self.restarts.clone(),
        );
        registry.register(
            "orchestrator_instance_writes",
            "Instance records written to the store",
            self.persisted.clone(),
        );
        registry.register(
            "orchestrator_persist_failures",
            "Store writes given up after a permanent error",
            self.persist_failures.clone(),
        );
    }

    /// The counters now.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            reconciles: self.reconciles.get(),
            reconcile_time: Duration::try_from_secs_f64(self.reconcile_seconds.get())
                .unwrap_or(Duration::MAX),
            placements: self.placements.get(),
            unschedulable: self.unschedulable.get(),
            restarts: self.restarts.get(),
            persisted: self.persisted.get(),
            persist_failures: self.persist_failures.get(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::prometheus_text::encode;

    fn exposition(m: &CoreMetrics) -> String {
        let mut registry = Registry::default();
        m.register(&mut registry);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn counters_and_the_histogram_follow_the_recordings() {
        let m = CoreMetrics::default();
        for _ in 0..3 {
            m.record_reconcile(Duration::from_micros(400), 2, false);
        }
        m.record_reconcile(Duration::from_micros(800), 0, true);
        m.add_restart();
        m.add_persisted(5);
        m.add_persist_failure();
        let s = m.snapshot();
        assert_eq!(
            (s.reconciles, s.placements, s.unschedulable),
            (4, 6, 1),
            "{s:?}"
        );
        assert_eq!((s.restarts, s.persisted, s.persist_failures), (1, 5, 1));
        // A float sum: within a nanosecond of 2 ms.
        let total = s.reconcile_time.as_nanos();
        assert!((1_999_999..=2_000_001).contains(&total), "{total}");

        let text = exposition(&m);
        for line in [
            "orchestrator_reconciles_total 4",
            "orchestrator_placements_total 6",
            "orchestrator_unschedulable_plans_total 1",
            "orchestrator_restarts_total 1",
            "orchestrator_instance_writes_total 5",
            "orchestrator_persist_failures_total 1",
            "# TYPE orchestrator_reconcile_duration_seconds histogram",
            // 400 µs: over 0.00025, within 0.0005; 800 µs within 0.001. Buckets are cumulative.
            "orchestrator_reconcile_duration_seconds_bucket{le=\"0.00025\"} 0",
            "orchestrator_reconcile_duration_seconds_bucket{le=\"0.0005\"} 3",
            "orchestrator_reconcile_duration_seconds_bucket{le=\"0.001\"} 4",
            "orchestrator_reconcile_duration_seconds_bucket{le=\"+Inf\"} 4",
            "orchestrator_reconcile_duration_seconds_count 4",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        let seconds = |name: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .unwrap_or_else(|| panic!("no {name} in\n{text}"))
                .parse()
                .unwrap()
        };
        for name in [
            "orchestrator_reconcile_seconds_total",
            "orchestrator_reconcile_duration_seconds_sum",
        ] {
            assert!((seconds(name) - 0.002).abs() < 1e-9, "{name}: {text}");
        }
    }

    #[test]
    fn fresh_metrics_read_zero() {
        let m = CoreMetrics::default();
        assert_eq!(m.snapshot(), MetricsSnapshot::default());
        let text = exposition(&m);
        assert!(text.lines().any(|l| l == "orchestrator_reconciles_total 0"));
        assert!(text
            .lines()
            .any(|l| l == "orchestrator_reconcile_duration_seconds_count 0"));
    }
}
