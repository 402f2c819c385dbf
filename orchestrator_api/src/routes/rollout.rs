//! `/api/v1/workloads/{name}/rollout`: where a rollout stands, the template revisions, and
//! `undo` (back to an earlier revision, which is rolled out like any change).

use super::workloads::writer;
use super::{instances_of, require_workload, view_after_write};
use crate::extract::JsonBody;
use crate::{ApiError, ApiState, Caller};
use axum::extract::{Path, State};
use axum::Extension;
use axum::Json;
use orchestrator_shared_types::api::{
    ErrorBody, RolloutHistory, RolloutStatus, UndoRequest, WorkloadView,
};

/// Where the workload's rollout stands: replicas updated, available and outdated, and why it
/// waits (which replica, which probe, its output).
#[utoipa::path(
    get,
    path = "/api/v1/workloads/{name}/rollout",
    operation_id = "rollout_status",
    tag = "workloads",
    params(("name" = String, Path, description = "Workload name or id")),
    responses(
        (status = 200, description = "The rollout's state", body = RolloutStatus),
        (status = 404, description = "No such workload", body = ErrorBody)
    )
)]
pub(crate) async fn status(
    State(state): State<ApiState>,
    Path(key): Path<String>,
) -> Result<Json<RolloutStatus>, ApiError> {
    let def = require_workload(&state, &key).await?.value;
    let instances = instances_of(&state, &def).await?;
    Ok(Json(RolloutStatus::current(&def, &instances)))
}

/// The workload's template revisions, oldest first, the current one last.
#[utoipa::path(
    get,
    path = "/api/v1/workloads/{name}/rollout/history",
    operation_id = "rollout_history",
    tag = "workloads",
    params(("name" = String, Path, description = "Workload name or id")),
    responses(
        (status = 200, description = "The revisions", body = RolloutHistory),
        (status = 404, description = "No such workload", body = ErrorBody)
    )
)]
pub(crate) async fn history(
    State(state): State<ApiState>,
    Path(key): Path<String>,
) -> Result<Json<RolloutHistory>, ApiError> {
    let def = require_workload(&state, &key).await?.value;
    Ok(Json(RolloutHistory::of(&def)))
}

/// Return the workload to an earlier template revision (the previous one by default); it
/// becomes the current template under a new revision number and is rolled out.
#[utoipa::path(
    post,
    path = "/api/v1/workloads/{name}/rollout/undo",
    operation_id = "rollout_undo",
    tag = "workloads",
    params(("name" = String, Path, description = "Workload name")),
    request_body = UndoRequest,
    responses(
        (status = 200, description = "Rolled back", body = WorkloadView),
        (status = 400, description = "No such revision, or no earlier one", body = ErrorBody),
        (status = 404, description = "No such workload", body = ErrorBody)
    )
)]
pub(crate) async fn undo(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    caller: Option<Extension<Caller>>,
    JsonBody(request): JsonBody<UndoRequest>,
) -> Result<Json<WorkloadView>, ApiError> {
    let done = writer(&state, caller)
        .rollback(&name, request.to_revision)
        .await?;
    Ok(Json(view_after_write(&state, done).await))
}
