//! `/healthz` and `/readyz`: the probes of a process supervisor or load balancer.

use crate::{ApiError, ApiState};
use axum::extract::State;
use orchestrator_core::CoreError;
use orchestrator_shared_types::api::ErrorBody;
use std::time::Duration;

/// How long readiness waits for the loop and the store. A probe must answer quickly even when
/// they hang; a loop busy for longer than this is not ready for more work anyway.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The process is up and serving HTTP.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "health",
    responses((status = 200, description = "Always `ok`", body = String, content_type = "text/plain"))
)]
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// The loop answers and the store answers, each within 2 seconds.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "health",
    responses(
        (status = 200, description = "`ready`", body = String, content_type = "text/plain"),
        (status = 503, description = "The loop or the store does not answer", body = ErrorBody)
    )
)]
pub(crate) async fn readyz(State(state): State<ApiState>) -> Result<&'static str, ApiError> {
    let not_in_time = || ApiError::Unavailable(None);
    tokio::time::timeout(READY_TIMEOUT, state.handle().summary())
        .await
        .map_err(|_| not_in_time())?
        .map_err(|e| ApiError::Unavailable(Some(Box::new(e))))?;
    tokio::time::timeout(READY_TIMEOUT, state.store().revision())
        .await
        .map_err(|_| not_in_time())?
        // Any store failure makes the server unready, transient or not: it is not a bug in
        // the request, so never a 500 here.
        .map_err(|source| {
            ApiError::StoreUnavailable(Box::new(CoreError::Store {
                operation: "readiness check",
                source,
            }))
        })?;
    Ok("ready")
}
