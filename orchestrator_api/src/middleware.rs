//! The middlewares around every route.
//!
//! * [`json_errors`]: the safety net that gives every error response the JSON shape of
//!   `docs/api.md`, even those produced outside the handlers (tower-http's 413 for a declared
//!   `Content-Length` over the limit, the timeout's 503, any axum rejection not mapped by the
//!   extractors).
//! * [`mark_stale`]: the `x-orchestrator-stale` header on the reads answered while the view
//!   says it may be behind the store.
//! * [`count_requests`] (outermost but for the trace, so it sees the final status) and
//!   [`note_route`] (a route layer, so it runs once the router has matched a route): request
//!   counters and a latency histogram by route template and status class, in [`HttpMetrics`].

use crate::{ApiError, ApiState};
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use orchestrator_core::ClusterView;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Upper bounds of the latency histogram's buckets, in seconds: most answers take well under a
/// millisecond; a hung store takes up to the request timeout (30 s, past the last bucket).
pub(crate) const LATENCY_BUCKETS: [f64; 15] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0,
];

/// The `route` label of a request no route matched (404s of unknown paths): one value for all
/// of them, so that scanning made-up paths cannot grow the label set.
pub(crate) const UNMATCHED_ROUTE: &str = "unmatched";

/// Labels of `orchestrator_http_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    status: u16,
}

/// Labels of `orchestrator_http_request_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    /// The route template (`/api/v1/workloads/{name}`), not the path: bounded.
    route: String,
    /// `1xx` to `5xx`.
    status: &'static str,
}

/// A histogram with [`LATENCY_BUCKETS`] (a `fn`, as [`Family`] wants a constructor).
fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// HTTP request metrics (prometheus-client families: a read lock on the hot path, a write lock
/// only for a label set's first request; never held across an `.await`).
#[derive(Debug)]
pub(crate) struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    durations: Family<DurationLabels, Histogram, fn() -> Histogram>,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            durations: Family::new_with_constructor(latency_histogram),
        }
    }
}

/// Known methods keep their name; anything else is `OTHER`, so that a client sending made-up
/// methods cannot grow the label set without bound.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// `2xx` for 200 to 299, and so on.
fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

impl HttpMetrics {
    /// Records one request answered with `status` after `took`, for `route` (a template).
    pub(crate) fn record(&self, method: &Method, route: &str, status: StatusCode, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method_label(method),
                status: status.as_u16(),
            })
            .inc();
        self.durations
            .get_or_create(&DurationLabels {
                route: route.to_owned(),
                status: status_class(status),
            })
            .observe(took.as_secs_f64());
    }

    /// Registers the metrics (shared, live) in `registry`.
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "orchestrator_http_requests",
            "HTTP requests answered, by method and status",
            self.requests.clone(),
        );
        registry.register(
            "orchestrator_http_request_duration_seconds",
            "Time to answer HTTP requests, by route template and status class",
            self.durations.clone(),
        );
    }
}

/// The route the router matched, passed from [`note_route`] (inside the router) back out to
/// [`count_requests`] (outside it), which cannot see the router's `MatchedPath` itself.
#[derive(Clone, Debug, Default)]
pub(crate) struct RouteSlot(Arc<OnceLock<String>>);

/// Notes the matched route template in the request's [`RouteSlot`]. A route layer: it runs only
/// for requests a route matched, after matching.
pub(crate) async fn note_route(req: Request, next: Next) -> Response {
    if let (Some(slot), Some(path)) = (
        req.extensions().get::<RouteSlot>(),
        req.extensions().get::<MatchedPath>(),
    ) {
        let _ = slot.0.set(path.as_str().to_owned());
    }
    next.run(req).await
}

/// Counts every request by method and final status, and times it by route and status class.
pub(crate) async fn count_requests(
    State(metrics): State<Arc<HttpMetrics>>,
    mut req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    let slot = RouteSlot::default();
    req.extensions_mut().insert(slot.clone());
    let start = Instant::now();
    let response = next.run(req).await;
    let route = slot.0.get().map_or(UNMATCHED_ROUTE, String::as_str);
    metrics.record(&method, route, response.status(), start.elapsed());
    response
}

/// The header that says a read may be out of date, and why (see [`mark_stale`]).
pub const STALE_HEADER: &str = "x-orchestrator-stale";

/// Marks the answers to `GET` requests with [`STALE_HEADER`] when the view the API reads says
/// it may be behind the store (a daemon cut off from its store keeps answering from the last
/// view it built). Checked after the handler ran, so the mark covers what it answered from. The
/// agent routes read the local runtime, not the view, and are left alone.
pub(crate) async fn mark_stale(
    State(state): State<ApiState>,
    req: Request,
    next: Next,
) -> Response {
    let marks = req.method() == Method::GET && !req.uri().path().starts_with(AGENT_PREFIX);
    let mut response = next.run(req).await;
    if marks {
        // No view (the loop stopped): nothing says the answer is stale, and a read that needed
        // the view already failed with 503.
        if let Ok(view) = state.handle().view() {
            mark(&mut response, &view);
        }
    }
    response
}

/// Adds [`STALE_HEADER`] to `response` if `view` may be out of date.
fn mark(response: &mut Response, view: &ClusterView) {
    if let Some(reason) = view.stale() {
        response
            .headers_mut()
            .insert(STALE_HEADER, header_text(reason));
    }
}

/// The agent routes' common prefix.
pub(crate) const AGENT_PREFIX: &str = "/api/v1/agent/";

/// `text` as a header value: characters a header cannot carry (controls, non-ASCII) become `?`.
fn header_text(text: &str) -> HeaderValue {
    let visible: String = text
        .chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .collect();
    HeaderValue::from_str(&visible).unwrap_or_else(|_| HeaderValue::from_static("stale"))
}

/// Most of a plain-text error body kept as the JSON message (axum's and tower-http's are short
/// sentences).
const MAX_PLAIN_MESSAGE: usize = 1024;

/// Rewrites error responses that are not JSON into the JSON error shape, keeping the status and
/// the headers (e.g. `Allow` on a 405).
pub(crate) async fn json_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_PLAIN_MESSAGE)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    let error = error_for(status, text);
    let rewritten = error.into_response();
    // The status stays what it was (e.g. 408 or 429 from a future layer), and so do headers
    // such as `Allow`; only the body and its type change.
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.insert(
        CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    let (_, body) = rewritten.into_parts();
    Response::from_parts(parts, Body::new(body))
}

/// The [`ApiError`] that describes a bare `status`, with the plain-text body as the message for
/// client errors (it is the client's own mistake; server errors keep their fixed sentences).
fn error_for(status: StatusCode, text: Option<String>) -> ApiError {
    let message = text.unwrap_or_else(|| {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_owned()
    });
    match status {
        StatusCode::NOT_FOUND => ApiError::NotFound(message),
        StatusCode::UNAUTHORIZED => ApiError::Unauthorized(message),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType {
            got: message,
            expected: "application/json",
        },
        StatusCode::UNPROCESSABLE_ENTITY => ApiError::Unprocessable(message),
        StatusCode::SERVICE_UNAVAILABLE => ApiError::Unavailable(None),
        s if s.is_client_error() => ApiError::bad_request(message),
        _ => ApiError::internal(format!("{status} without a JSON body: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;
    use tower_http::timeout::TimeoutLayer;

    /// Status, content type and JSON body of `uri` on a router behind the safety net.
    async fn through_net(uri: &str) -> (StatusCode, String, serde_json::Value) {
        let app = Router::new()
            .route(
                "/teapot",
                get(|| async { (StatusCode::IM_A_TEAPOT, "short and stout") }),
            )
            .route(
                "/bug",
                get(|| async {
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "db at /var/secret failed",
                    )
                }),
            )
            .route("/empty", get(|| async { StatusCode::BAD_GATEWAY }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    "late"
                }),
            )
            .route("/fine", get(|| async { "fine" }))
            // As in the real router: the net outside the timeout (a later layer wraps).
            .layer(TimeoutLayer::with_status_code(
                StatusCode::SERVICE_UNAVAILABLE,
                Duration::from_millis(20),
            ))
            .layer(axum::middleware::from_fn(json_errors));
        let response = app
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let content_type = response.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        (status, content_type, json)
    }

    #[tokio::test]
    async fn plain_errors_become_json_and_server_errors_keep_their_secrets() {
        let (status, ct, body) = through_net("/teapot").await;
        assert_eq!(
            (status, ct.as_str()),
            (StatusCode::IM_A_TEAPOT, "application/json")
        );
        assert_eq!(body["error"]["code"], "bad_request");
        assert_eq!(body["error"]["message"], "short and stout");

        let (status, _, body) = through_net("/bug").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"]["code"], "internal");
        assert!(!body.to_string().contains("secret"), "{body}");

        let (status, _, body) = through_net("/empty").await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert_eq!(body["error"]["code"], "internal");

        let (status, _, body) = through_net("/slow").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "unavailable");

        let (status, ct, _) = through_net("/fine").await;
        assert_eq!(status, StatusCode::OK);
        assert!(ct.starts_with("text/plain"), "successes are left alone");
    }

    /// The exposition of `m` alone.
    fn exposition(m: &HttpMetrics) -> String {
        let mut registry = Registry::default();
        m.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn histogram_is_cumulative_and_methods_are_bounded() {
        let m = HttpMetrics::default();
        m.record(
            &Method::GET,
            "/api/v1/workloads",
            StatusCode::OK,
            Duration::from_micros(200),
        );
        m.record(
            &Method::GET,
            "/api/v1/workloads",
            StatusCode::OK,
            Duration::from_millis(20),
        );
        m.record(
            &Method::GET,
            "/api/v1/workloads",
            StatusCode::OK,
            Duration::from_secs(60),
        );
        m.record(
            &Method::from_bytes(b"BREW").unwrap(),
            UNMATCHED_ROUTE,
            StatusCode::NOT_FOUND,
            Duration::from_secs(60),
        );
        let text = exposition(&m);
        let series = "orchestrator_http_request_duration_seconds";
        let ok = "route=\"/api/v1/workloads\",status=\"2xx\"";
        for line in [
            "orchestrator_http_requests_total{method=\"GET\",status=\"200\"} 3".to_owned(),
            "orchestrator_http_requests_total{method=\"OTHER\",status=\"404\"} 1".to_owned(),
            format!("# TYPE {series} histogram"),
            // 0.2 ms is under the first bound.
            format!("{series}_bucket{{{ok},le=\"0.00025\"}} 1"),
            format!("{series}_bucket{{{ok},le=\"0.025\"}} 2"),
            format!("{series}_bucket{{{ok},le=\"10\"}} 2"),
            // +Inf counts everything, 60 s too.
            format!("{series}_bucket{{{ok},le=\"+Inf\"}} 3"),
            format!("{series}_count{{{ok}}} 3"),
            format!("{series}_count{{route=\"unmatched\",status=\"4xx\"}} 1"),
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn stale_views_mark_the_answer() {
        let view = ClusterView::empty(Arc::new(scheduler_interface::BinPackScheduler::new()));
        let mut fresh = "ok".into_response();
        mark(&mut fresh, &view);
        assert!(fresh.headers().get(STALE_HEADER).is_none());
        let mut stale = "ok".into_response();
        mark(
            &mut stale,
            &view.marked_stale("the store is unreachable since 12:00:03"),
        );
        assert_eq!(
            stale.headers()[STALE_HEADER],
            "the store is unreachable since 12:00:03"
        );
    }

    #[test]
    fn stale_reasons_become_header_values() {
        assert_eq!(
            header_text("the store is unreachable since 12:00:03"),
            "the store is unreachable since 12:00:03"
        );
        assert_eq!(header_text("line\nbreak é"), "line?break ?");
    }

    #[test]
    fn status_classes() {
        assert_eq!(status_class(StatusCode::CONTINUE), "1xx");
        assert_eq!(status_class(StatusCode::NO_CONTENT), "2xx");
        assert_eq!(status_class(StatusCode::NOT_MODIFIED), "3xx");
        assert_eq!(status_class(StatusCode::IM_A_TEAPOT), "4xx");
        assert_eq!(status_class(StatusCode::GATEWAY_TIMEOUT), "5xx");
    }
}
