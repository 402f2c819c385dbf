//! Two middlewares around every route.
//!
//! * [`json_errors`]: the safety net that gives every error response the JSON shape of
//!   `docs/api.md`, even those produced outside the handlers (tower-http's 413 for a declared
//!   `Content-Length` over the limit, the timeout's 503, any axum rejection not mapped by the
//!   extractors).
//! * [`count_requests`]: counters and a latency histogram for `/metrics`, in [`HttpMetrics`].

use crate::ApiError;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Upper bounds of the latency histogram's buckets, in seconds.
pub(crate) const LATENCY_BUCKETS: [f64; 8] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

/// HTTP request counters.
#[derive(Debug, Default)]
pub(crate) struct HttpMetrics {
    /// Requests per (method, status). A mutex over a small map: touched once per request and
    /// never held across an `.await`.
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// Requests per latency bucket (not cumulative; the exposition sums them); the last slot is
    /// `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

/// A copy of [`HttpMetrics`] at one moment.
#[derive(Debug, Default)]
pub(crate) struct HttpSnapshot {
    pub requests: BTreeMap<(&'static str, u16), u64>,
    /// Cumulative counts per bucket of [`LATENCY_BUCKETS`], then `+Inf`.
    pub cumulative: Vec<u64>,
    pub count: u64,
    pub sum: Duration,
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

impl HttpMetrics {
    /// Records one request.
    pub(crate) fn record(&self, method: &Method, status: StatusCode, took: Duration) {
        {
            let mut requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
            *requests
                .entry((method_label(method), status.as_u16()))
                .or_default() += 1;
        }
        let secs = took.as_secs_f64();
        let slot = LATENCY_BUCKETS
            .iter()
            .position(|bound| secs <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[slot].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum_nanos
            .fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    /// The counters now.
    pub(crate) fn snapshot(&self) -> HttpSnapshot {
        let requests = self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut running = 0;
        let cumulative = self
            .buckets
            .iter()
            .map(|b| {
                running += b.load(Relaxed);
                running
            })
            .collect();
        HttpSnapshot {
            requests,
            cumulative,
            count: self.count.load(Relaxed),
            sum: Duration::from_nanos(self.sum_nanos.load(Relaxed)),
        }
    }
}

/// Counts every request by method and final status, and its latency.
pub(crate) async fn count_requests(
    State(metrics): State<Arc<HttpMetrics>>,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    let start = Instant::now();
    let response = next.run(req).await;
    metrics.record(&method, response.status(), start.elapsed());
    response
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

    #[test]
    fn histogram_is_cumulative_and_methods_are_bounded() {
        let m = HttpMetrics::default();
        m.record(&Method::GET, StatusCode::OK, Duration::from_micros(500));
        m.record(&Method::GET, StatusCode::OK, Duration::from_millis(20));
        m.record(
            &Method::from_bytes(b"BREW").unwrap(),
            StatusCode::NOT_FOUND,
            Duration::from_secs(60),
        );
        let s = m.snapshot();
        assert_eq!(s.requests[&("GET", 200)], 2);
        assert_eq!(s.requests[&("OTHER", 404)], 1);
        assert_eq!(s.count, 3);
        assert_eq!(s.cumulative[0], 1, "0.5 ms is under the first bound");
        assert_eq!(s.cumulative[LATENCY_BUCKETS.len() - 1], 2);
        assert_eq!(*s.cumulative.last().unwrap(), 3, "+Inf counts everything");
    }
}
