//! The REST API of the orchestrator (`/api/v1`), served by `orchestratord`.
//!
//! Every route of `docs/api.md` is here: workloads (create, list, get, update, delete, scale,
//! explain), placement previews, nodes, instances, events, cluster information, health and
//! readiness probes, Prometheus metrics and the OpenAPI document. Writes go through the
//! [`OrchestratorHandle`](orchestrator_core::OrchestratorHandle) (validation, compare-and-swap,
//! waking the loop); reads go straight to the store, so a busy loop never slows a `GET`.
//!
//! Errors have one JSON shape ([`ErrorBody`](orchestrator_shared_types::api::ErrorBody)) whatever
//! produced them: a handler, an extractor, axum's routing (404, 405), the body limit (413) or the
//! timeout. A failed request changes nothing that was stored.
//!
//! ```no_run
//! # async fn run(state: orchestrator_api::ApiState) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! orchestrator_api::serve(listener, state, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await
//! # }
//! ```
//!
//! # Layout
//! * [`state`] — [`ApiState`] (handle, core metrics, static server facts, and for a cluster
//!   daemon its membership source and [`AgentApi`]) and [`ServerInfo`].
//! * [`error`] — [`ApiError`], the one `IntoResponse` mapping errors to status codes and codes.
//! * [`auth`] — bearer tokens and roles ([`Tokens`], [`Caller`]) and the audit log.
//! * `extract` — body and query extractors: JSON or YAML manifests, field paths in errors.
//! * `middleware` — the JSON error safety net, the stale-read mark and the HTTP request metrics
//!   (by route template and status class).
//! * `fuzzing` — entry points for the fuzz targets of `fuzz/` (feature `fuzzing`, hidden).
//! * `page` — paging of the list endpoints: `limit`, `continue` and its opaque token.
//! * `routes` — one file per resource: `workloads`, `nodes`, `instances`, `logs` (of an
//!   instance, plain text, optionally followed), `events`, `cluster` (counts and membership),
//!   `agent` (a cluster daemon's node agent: container logs for the other daemons, behind the
//!   cluster token), `health`, `metrics`, `openapi`.
//!
//! Reads answered while the loop's view may be behind the store (a cluster daemon cut off
//! from etcd) carry the header [`STALE_HEADER`] with the reason.
//! * [`router`] builds the axum router with its layers; [`serve`] runs it until shutdown.
//!
//! Nested packages beside this library: `daemon/` (`orchestratord`, which wires the store, the
//! runtime and the MCP endpoint around this API) and `testkit/` (`orchestrator_testkit`, which
//! starts that daemon for black-box tests).

pub mod auth;
pub mod error;
mod extract;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod middleware;
mod page;
mod routes;
pub mod state;

pub use auth::{Caller, Tokens};
pub use error::ApiError;
pub use middleware::STALE_HEADER;
pub use routes::agent::LOG_NEXT_HEADER;
pub use routes::openapi::ApiDoc;
pub use state::{AgentApi, ApiState, ServerInfo};

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use std::future::Future;
use std::time::Duration;
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// Largest request body accepted: a manifest is a few KiB; anything near this is a mistake or
/// an attack.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// How long one request may take before it is answered with 503 `unavailable`. Reads and CAS
/// writes take milliseconds; only a hung store gets near this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The API as an axum [`Router`], with tracing, request metrics, the JSON error safety net, a
/// timeout and the body limit.
pub fn router(state: ApiState) -> Router {
    let http_metrics = state.http_metrics().clone();
    let api = Router::new()
        .route(
            "/api/v1/workloads",
            get(routes::workloads::list).post(routes::workloads::create),
        )
        .route(
            "/api/v1/workloads/{name}",
            get(routes::workloads::get_one)
                .put(routes::workloads::update)
                .delete(routes::workloads::delete),
        )
        .route(
            "/api/v1/workloads/{name}/scale",
            post(routes::workloads::scale),
        )
        .route(
            "/api/v1/workloads/{name}/explain",
            get(routes::workloads::explain),
        )
        .route(
            "/api/v1/workloads/{name}/rollout",
            get(routes::rollout::status),
        )
        .route(
            "/api/v1/workloads/{name}/rollout/history",
            get(routes::rollout::history),
        )
        .route(
            "/api/v1/workloads/{name}/rollout/undo",
            post(routes::rollout::undo),
        )
        .route("/api/v1/preview", post(routes::workloads::preview))
        .route("/api/v1/nodes", get(routes::nodes::list))
        .route("/api/v1/nodes/{name}", get(routes::nodes::get_one))
        .route("/api/v1/nodes/{name}/drain", post(routes::nodes::drain))
        .route(
            "/api/v1/nodes/{name}/uncordon",
            post(routes::nodes::uncordon),
        )
        .route("/api/v1/instances", get(routes::instances::list))
        .route("/api/v1/instances/{id}/logs", get(routes::logs::logs))
        .route("/api/v1/events", get(routes::events::list))
        .route("/api/v1/cluster", get(routes::cluster::info))
        .route(
            "/api/v1/agent/containers/{container_id}/logs",
            get(routes::agent::container_logs),
        )
        .route("/api/v1/openapi.json", get(routes::openapi::document))
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .route("/metrics", get(routes::metrics::render))
        // Runs for matched routes only, after the handler: marks reads of a stale view.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::mark_stale,
        ))
        // Runs for matched routes only, after matching: tells the counters the route template.
        .route_layer(axum::middleware::from_fn(middleware::note_route))
        .fallback(routes::unknown_route)
        .method_not_allowed_fallback(routes::method_not_allowed)
        // Every request, matched or not, is authenticated first (an unknown path without a
        // token is a 401, not a 404 that would map the routes for a stranger).
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .with_state(state);

    // Listed outermost first. The safety net sits outside the limit and the timeout so that
    // their plain-text answers become JSON too; the counters sit outside everything but the
    // trace so that they see the final status.
    api.layer(
        ServiceBuilder::new()
            .layer(TraceLayer::new_for_http())
            .layer(axum::middleware::from_fn_with_state(
                http_metrics,
                middleware::count_requests,
            ))
            .layer(axum::middleware::from_fn(middleware::json_errors))
            .layer(TimeoutLayer::with_status_code(
                StatusCode::SERVICE_UNAVAILABLE,
                REQUEST_TIMEOUT,
            ))
            // Refuses a declared Content-Length over the limit before reading anything; the
            // extractors' own limit catches chunked bodies that grow past it.
            .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
    )
}

/// Serves the API on `listener` until `shutdown` completes, then stops accepting connections,
/// ends streaming responses ([`ApiState::end_streams`]) and waits for the requests in flight
/// (graceful shutdown). Handlers see the peer's address (`ConnectInfo<SocketAddr>`, which the
/// agent routes log), and the state learns the listener's address unless it was given one.
pub async fn serve(
    listener: tokio::net::TcpListener,
    mut state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "API listening");
        if state.listen_address().is_none() {
            state = state.with_listen_address(addr.to_string());
        }
    }
    let streams = state.clone();
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            streams.end_streams();
        })
        .await
}
