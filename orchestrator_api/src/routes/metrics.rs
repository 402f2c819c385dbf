//! `/metrics`: Prometheus text exposition (format 0.0.4), written by hand: a dozen series do not
//! need a metrics library.

use crate::middleware::{HttpSnapshot, LATENCY_BUCKETS};
use crate::ApiState;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use orchestrator_core::{MetricsSnapshot, Summary};
use orchestrator_shared_types::InstanceStatus;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Content type of the text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every status, so that a status with no instance reads 0 instead of vanishing.
const STATUSES: [InstanceStatus; 8] = [
    InstanceStatus::Pending,
    InstanceStatus::Scheduled,
    InstanceStatus::Running,
    InstanceStatus::Succeeded,
    InstanceStatus::Failed,
    InstanceStatus::Stopping,
    InstanceStatus::Stopped,
    InstanceStatus::Lost,
];

/// The loop's gauges and counters, and the API's HTTP counters.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "health",
    responses((status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain"))
)]
pub(crate) async fn render(State(state): State<ApiState>) -> impl IntoResponse {
    // A stopped loop must not make the metrics endpoint fail: its gauges are left out and
    // `orchestrator_loop_up` says why.
    let summary = state.handle().summary().await.ok();
    let text = exposition(
        summary.as_ref(),
        &state.core_metrics().snapshot(),
        &state.http_metrics().snapshot(),
    );
    ([(CONTENT_TYPE, PROMETHEUS_TEXT)], text)
}

/// Writes the `# HELP` and `# TYPE` lines of a metric.
fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A metric with one unlabelled sample.
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// The whole exposition.
pub(crate) fn exposition(
    summary: Option<&Summary>,
    core: &MetricsSnapshot,
    http: &HttpSnapshot,
) -> String {
    let mut out = String::with_capacity(4096);
    let up = u8::from(summary.is_some());
    single(
        &mut out,
        "orchestrator_loop_up",
        "gauge",
        "Whether the reconcile loop answered this scrape (1) or not (0).",
        up,
    );
    if let Some(s) = summary {
        loop_gauges(&mut out, s);
    }
    core_counters(&mut out, core);
    http_series(&mut out, http);
    out
}

fn loop_gauges(out: &mut String, s: &Summary) {
    single(
        out,
        "orchestrator_workloads",
        "gauge",
        "Workloads known to the loop.",
        s.workloads,
    );
    single(
        out,
        "orchestrator_nodes",
        "gauge",
        "Nodes known to the loop.",
        s.nodes,
    );
    single(
        out,
        "orchestrator_workloads_in_flight",
        "gauge",
        "Workloads with runtime operations in flight.",
        s.in_flight,
    );
    header(
        out,
        "orchestrator_instances",
        "gauge",
        "Instances per status.",
    );
    let mut counts: BTreeMap<InstanceStatus, usize> = STATUSES.iter().map(|s| (*s, 0)).collect();
    counts.extend(s.instances.iter().map(|(k, v)| (*k, *v)));
    for (status, n) in counts {
        let _ = writeln!(out, "orchestrator_instances{{status=\"{status}\"}} {n}");
    }
}

fn core_counters(out: &mut String, m: &MetricsSnapshot) {
    single(
        out,
        "orchestrator_reconciles_total",
        "counter",
        "Plans computed.",
        m.reconciles,
    );
    let secs = m.reconcile_time.as_secs_f64();
    single(
        out,
        "orchestrator_reconcile_seconds_total",
        "counter",
        "Time spent planning, in total.",
        secs,
    );
    let average = if m.reconciles == 0 {
        0.0
    } else {
        secs / m.reconciles as f64
    };
    single(
        out,
        "orchestrator_reconcile_seconds_average",
        "gauge",
        "Average time of one plan since start (reconcile_seconds_total / reconciles_total).",
        average,
    );
    single(
        out,
        "orchestrator_placements_total",
        "counter",
        "Replicas placed on a node by the scheduler.",
        m.placements,
    );
    single(
        out,
        "orchestrator_unschedulable_plans_total",
        "counter",
        "Plans in which some replicas fit nowhere.",
        m.unschedulable,
    );
    single(
        out,
        "orchestrator_restarts_total",
        "counter",
        "Instances restarted after an exit.",
        m.restarts,
    );
    single(
        out,
        "orchestrator_instance_writes_total",
        "counter",
        "Instance records written to the store.",
        m.persisted,
    );
    single(
        out,
        "orchestrator_persist_failures_total",
        "counter",
        "Store writes given up after a permanent error.",
        m.persist_failures,
    );
}

fn http_series(out: &mut String, h: &HttpSnapshot) {
    header(
        out,
        "orchestrator_http_requests_total",
        "counter",
        "HTTP requests answered, by method and status.",
    );
    for ((method, status), n) in &h.requests {
        let _ = writeln!(
            out,
            "orchestrator_http_requests_total{{method=\"{method}\",status=\"{status}\"}} {n}"
        );
    }
    let name = "orchestrator_http_request_duration_seconds";
    header(out, name, "histogram", "Time to answer HTTP requests.");
    for (i, count) in h.cumulative.iter().enumerate() {
        match LATENCY_BUCKETS.get(i) {
            Some(bound) => {
                let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
            }
            None => {
                let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
            }
        }
    }
    let _ = writeln!(out, "{name}_sum {}", h.sum.as_secs_f64());
    let _ = writeln!(out, "{name}_count {}", h.count);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::middleware::HttpMetrics;
    use axum::http::{Method, StatusCode};
    use std::time::Duration;

    #[test]
    fn exposition_has_every_series_in_text_format() {
        let summary = Summary {
            workloads: 2,
            nodes: 3,
            instances: [(InstanceStatus::Running, 4)].into_iter().collect(),
            in_flight: 0,
        };
        let core = MetricsSnapshot {
            reconciles: 4,
            reconcile_time: Duration::from_millis(2),
            ..Default::default()
        };
        let http = HttpMetrics::default();
        http.record(&Method::GET, StatusCode::OK, Duration::from_millis(3));
        let text = exposition(Some(&summary), &core, &http.snapshot());
        for line in [
            "orchestrator_loop_up 1",
            "orchestrator_workloads 2",
            "orchestrator_nodes 3",
            "orchestrator_instances{status=\"Running\"} 4",
            "orchestrator_instances{status=\"Pending\"} 0",
            "orchestrator_reconciles_total 4",
            "orchestrator_reconcile_seconds_total 0.002",
            "orchestrator_reconcile_seconds_average 0.0005",
            "orchestrator_http_requests_total{method=\"GET\",status=\"200\"} 1",
            "orchestrator_http_request_duration_seconds_bucket{le=\"0.005\"} 1",
            "orchestrator_http_request_duration_seconds_bucket{le=\"+Inf\"} 1",
            "orchestrator_http_request_duration_seconds_count 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        // Every sample line is `name{labels} value` with a numeric value.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "bad sample {line:?}");
        }
    }

    #[test]
    fn a_stopped_loop_leaves_its_gauges_out() {
        let text = exposition(None, &MetricsSnapshot::default(), &HttpSnapshot::default());
        assert!(text.contains("orchestrator_loop_up 0"));
        assert!(!text.contains("orchestrator_workloads "));
        assert!(text.contains("orchestrator_reconciles_total 0"));
    }
}
