//! `/metrics`: the Prometheus text exposition (format 0.0.4), written by `prometheus-client`.
//!
//! Two parts: the loop's gauges (workloads, nodes, instances per status), read from the loop's
//! summary at each scrape, and the long-lived metrics registered once in [`ApiState`] (the
//! core's counters and reconcile histogram, the HTTP counters and latency histogram).

use crate::ApiState;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use orchestrator_core::Summary;
use orchestrator_shared_types::InstanceStatus;
use prometheus_client::encoding::prometheus_text::{encode, CONTENT_TYPE as PROMETHEUS_TEXT};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

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

/// Label of `orchestrator_instances`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

/// The loop's gauges, the core's counters and histogram, the API's HTTP metrics.
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
    let text = exposition(summary.as_ref(), state.metrics_registry());
    ([(CONTENT_TYPE, PROMETHEUS_TEXT)], text)
}

/// The whole exposition: the loop's gauges from `summary`, then everything in `registry`.
pub(crate) fn exposition(summary: Option<&Summary>, registry: &Registry) -> String {
    let mut out = String::with_capacity(8192);
    // Writing to a String cannot fail, nor can encoding these metrics.
    let _ = encode(&mut out, &loop_gauges(summary));
    let _ = encode(&mut out, registry);
    out
}

/// A registry, made for one scrape, holding the loop's gauges as they are now.
fn loop_gauges(summary: Option<&Summary>) -> Registry {
    let mut registry = Registry::default();
    let up = Gauge::<i64>::default();
    up.set(i64::from(summary.is_some()));
    registry.register(
        "orchestrator_loop_up",
        "Whether the reconcile loop answered this scrape (1) or not (0)",
        up,
    );
    let Some(s) = summary else {
        return registry;
    };
    let gauge = |value: usize| {
        let g = Gauge::<i64>::default();
        g.set(i64::try_from(value).unwrap_or(i64::MAX));
        g
    };
    registry.register(
        "orchestrator_workloads",
        "Workloads known to the loop",
        gauge(s.workloads),
    );
    registry.register(
        "orchestrator_nodes",
        "Nodes known to the loop",
        gauge(s.nodes),
    );
    registry.register(
        "orchestrator_workloads_in_flight",
        "Workloads with runtime operations in flight",
        gauge(s.in_flight),
    );
    let instances = Family::<StatusLabel, Gauge>::default();
    for status in STATUSES {
        let n = s.instances.get(&status).copied().unwrap_or(0);
        instances
            .get_or_create(&StatusLabel {
                status: status.to_string(),
            })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    registry.register("orchestrator_instances", "Instances per status", instances);
    registry
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::middleware::HttpMetrics;
    use axum::http::{Method, StatusCode};
    use orchestrator_core::CoreMetrics;
    use std::time::Duration;

    /// A registry as [`ApiState`] builds it.
    fn registry(core: &CoreMetrics, http: &HttpMetrics) -> Registry {
        let mut registry = Registry::default();
        core.register(&mut registry);
        http.register(&mut registry);
        registry
    }

    #[test]
    fn exposition_has_every_series_in_text_format() {
        let summary = Summary {
            workloads: 2,
            nodes: 3,
            instances: [(InstanceStatus::Running, 4)].into_iter().collect(),
            in_flight: 0,
        };
        let http = HttpMetrics::default();
        http.record(
            &Method::GET,
            "/api/v1/workloads",
            StatusCode::OK,
            Duration::from_millis(3),
        );
        let text = exposition(Some(&summary), &registry(&CoreMetrics::default(), &http));
        let ok = "route=\"/api/v1/workloads\",status=\"2xx\"";
        for line in [
            "orchestrator_loop_up 1".to_owned(),
            "orchestrator_workloads 2".to_owned(),
            "orchestrator_nodes 3".to_owned(),
            "orchestrator_workloads_in_flight 0".to_owned(),
            "orchestrator_instances{status=\"Running\"} 4".to_owned(),
            "orchestrator_instances{status=\"Pending\"} 0".to_owned(),
            "orchestrator_reconciles_total 0".to_owned(),
            "orchestrator_reconcile_seconds_total 0.0".to_owned(),
            "orchestrator_reconcile_duration_seconds_count 0".to_owned(),
            "orchestrator_placements_total 0".to_owned(),
            "orchestrator_http_requests_total{method=\"GET\",status=\"200\"} 1".to_owned(),
            format!("orchestrator_http_request_duration_seconds_bucket{{{ok},le=\"0.0025\"}} 0"),
            format!("orchestrator_http_request_duration_seconds_bucket{{{ok},le=\"0.005\"}} 1"),
            format!("orchestrator_http_request_duration_seconds_bucket{{{ok},le=\"+Inf\"}} 1"),
            format!("orchestrator_http_request_duration_seconds_count{{{ok}}} 1"),
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        // No average gauge: the histograms replace it.
        assert!(!text.contains("average"), "{text}");
        // Every sample line is `name{labels} value` with a numeric value.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "bad sample {line:?}");
        }
        // Every series has its HELP and TYPE.
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split(' ').nth(2).unwrap();
            assert!(text.contains(&format!("# HELP {name} ")), "{name}: {text}");
        }
    }

    #[test]
    fn a_stopped_loop_leaves_its_gauges_out() {
        let text = exposition(
            None,
            &registry(&CoreMetrics::default(), &HttpMetrics::default()),
        );
        assert!(text.contains("orchestrator_loop_up 0"));
        assert!(!text.contains("orchestrator_workloads "));
        assert!(text.contains("orchestrator_reconciles_total 0"));
    }
}
