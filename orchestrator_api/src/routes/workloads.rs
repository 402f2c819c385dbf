//! `/api/v1/workloads` and `/api/v1/preview`: create, list, get, update, delete, scale, explain,
//! and the dry-run placement preview.

use super::{instances_of, require_workload, view_after_write, views};
use crate::extract::{ApiQuery, JsonBody, Manifest};
use crate::page::{store_page, PageParams, PageRequest, Resource};
use crate::{ApiError, ApiState, Caller};
use axum::extract::{Path, State};
use axum::http::header::LOCATION;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use orchestrator_core::OrchestratorHandle;
use orchestrator_shared_types::api::{
    ErrorBody, ListResponse, PlacementPreview, ReplicaCounts, RolloutStatus, ScaleRequest,
    WorkloadDetail, WorkloadView,
};
use orchestrator_shared_types::{EventKind, Unschedulable, WorkloadDefinition};
use serde::Deserialize;
use state_store_interface::{EventFilter, Versioned};

/// Events shown with one workload.
const DETAIL_EVENTS: usize = 20;

/// The handle writes go through: stamping the caller's name on what they change, when the API
/// checks tokens.
pub(crate) fn writer(state: &ApiState, caller: Option<Extension<Caller>>) -> OrchestratorHandle {
    match caller {
        Some(Extension(caller)) => state.handle().acting_as(&caller.name),
        None => state.handle().clone(),
    }
}

/// List workloads, sorted by name, with replica counts; all of them, or one page with `limit`.
#[utoipa::path(
    get,
    path = "/api/v1/workloads",
    operation_id = "list_workloads",
    tag = "workloads",
    params(PageParams),
    responses(
        (status = 200, description = "Every workload, or one page of them with `continue` when more follow", body = ListResponse<WorkloadView>),
        (status = 400, description = "Bad `limit` or `continue`", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody)
    )
)]
pub(crate) async fn list(
    State(state): State<ApiState>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<ListResponse<WorkloadView>>, ApiError> {
    let page = PageRequest::new(Resource::Workloads, params.limit, params.next.as_deref())?;
    // The store lists by key, and the key of a workload is its name: already sorted.
    let ListResponse { items, next } =
        store_page::<WorkloadDefinition>(&**state.store(), Resource::Workloads, "", &page).await?;
    let items = views(&state, items).await?;
    Ok(Json(ListResponse { items, next }))
}

/// Create a workload. The server assigns its id.
#[utoipa::path(
    post,
    path = "/api/v1/workloads",
    operation_id = "create_workload",
    tag = "workloads",
    request_body(
        description = "The workload (any `id` is ignored)",
        content(
            (WorkloadDefinition = "application/json"),
            (WorkloadDefinition = "application/yaml")
        )
    ),
    responses(
        (status = 201, description = "Created", body = WorkloadView),
        (status = 400, description = "Malformed or invalid definition", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 415, description = "Body neither JSON nor YAML", body = ErrorBody)
    )
)]
pub(crate) async fn create(
    State(state): State<ApiState>,
    caller: Option<Extension<Caller>>,
    Manifest(def): Manifest,
) -> Result<Response, ApiError> {
    let created = writer(&state, caller).create(def).await?;
    let location = format!("/api/v1/workloads/{}", created.value.name);
    let view = view_after_write(&state, created).await;
    Ok((StatusCode::CREATED, [(LOCATION, location)], Json(view)).into_response())
}

/// Everything about one workload: definition, counts, instances, recent events, and why
/// replicas are pending if some are.
#[utoipa::path(
    get,
    path = "/api/v1/workloads/{name}",
    operation_id = "get_workload",
    tag = "workloads",
    params(("name" = String, Path, description = "Workload name or id")),
    responses(
        (status = 200, description = "The workload", body = WorkloadDetail),
        (status = 404, description = "No such workload", body = ErrorBody)
    )
)]
pub(crate) async fn get_one(
    State(state): State<ApiState>,
    Path(key): Path<String>,
) -> Result<Json<WorkloadDetail>, ApiError> {
    let Versioned { value, revision } = require_workload(&state, &key).await?;
    let instances = instances_of(&state, &value).await?;
    let replicas = ReplicaCounts::of(value.replicas, &instances);
    let events = state
        .store()
        .list_events(&EventFilter {
            workload_id: Some(value.id.clone()),
            limit: Some(DETAIL_EVENTS),
            ..Default::default()
        })
        .await?;
    let pending_reason = if replicas.pending > 0 {
        pending_reason(&state, &value.name, &events).await
    } else {
        None
    };
    let rollout = Some(RolloutStatus::current(&value, &instances));
    Ok(Json(WorkloadDetail {
        workload: value,
        revision,
        replicas,
        instances,
        events,
        pending_reason,
        rollout,
    }))
}

/// Why replicas are pending: the scheduler's answer now, or else the last `Unschedulable`
/// event (the loop may not know a workload created an instant ago).
async fn pending_reason(
    state: &ApiState,
    name: &str,
    events: &[orchestrator_shared_types::Event],
) -> Option<Unschedulable> {
    match state.handle().explain(name).await {
        Ok(now) => Some(now),
        Err(_) => events
            .iter()
            .rev()
            .find(|e| e.kind == EventKind::Unschedulable)
            .and_then(|e| e.unschedulable.clone()),
    }
}

/// Query of `PUT /api/v1/workloads/{name}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct UpdateParams {
    /// Only update if the workload is still at this revision (409 `stale_revision` otherwise).
    revision: Option<u64>,
}

/// Replace a workload's definition (it keeps its id).
#[utoipa::path(
    put,
    path = "/api/v1/workloads/{name}",
    operation_id = "update_workload",
    tag = "workloads",
    params(("name" = String, Path, description = "Workload name"), UpdateParams),
    request_body(
        description = "The new definition; its `name` must be the path's",
        content(
            (WorkloadDefinition = "application/json"),
            (WorkloadDefinition = "application/yaml")
        )
    ),
    responses(
        (status = 200, description = "Updated (or already so)", body = WorkloadView),
        (status = 400, description = "Malformed or invalid definition, or name mismatch", body = ErrorBody),
        (status = 404, description = "No such workload", body = ErrorBody),
        (status = 409, description = "Changed since `revision`", body = ErrorBody)
    )
)]
pub(crate) async fn update(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    caller: Option<Extension<Caller>>,
    ApiQuery(params): ApiQuery<UpdateParams>,
    Manifest(def): Manifest,
) -> Result<Json<WorkloadView>, ApiError> {
    if def.name != name {
        return Err(ApiError::bad_field(
            "name",
            format!(
                "the body names {:?} but the path names {name:?}; renaming is not supported",
                def.name
            ),
        ));
    }
    let updated = writer(&state, caller).update(def, params.revision).await?;
    Ok(Json(view_after_write(&state, updated).await))
}

/// Delete a workload; its instances are stopped and removed.
#[utoipa::path(
    delete,
    path = "/api/v1/workloads/{name}",
    operation_id = "delete_workload",
    tag = "workloads",
    params(("name" = String, Path, description = "Workload name")),
    responses(
        (status = 200, description = "The deleted definition; `revision` is the store's just after the deletion", body = WorkloadView),
        (status = 404, description = "No such workload", body = ErrorBody)
    )
)]
pub(crate) async fn delete(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    caller: Option<Extension<Caller>>,
) -> Result<Json<WorkloadView>, ApiError> {
    let value = writer(&state, caller).delete(&name).await?;
    // The deletion is done: a failing read now must not turn it into an error (0 then).
    let revision = state.store().revision().await.unwrap_or_default();
    Ok(Json(
        view_after_write(&state, Versioned { value, revision }).await,
    ))
}

/// Set a workload's replica count.
#[utoipa::path(
    post,
    path = "/api/v1/workloads/{name}/scale",
    operation_id = "scale_workload",
    tag = "workloads",
    params(("name" = String, Path, description = "Workload name")),
    request_body = ScaleRequest,
    responses(
        (status = 200, description = "Scaled (or already so)", body = WorkloadView),
        (status = 400, description = "Malformed body or too many replicas", body = ErrorBody),
        (status = 404, description = "No such workload", body = ErrorBody)
    )
)]
pub(crate) async fn scale(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    caller: Option<Extension<Caller>>,
    JsonBody(request): JsonBody<ScaleRequest>,
) -> Result<Json<WorkloadView>, ApiError> {
    let scaled = writer(&state, caller)
        .scale(&name, request.replicas)
        .await?;
    Ok(Json(view_after_write(&state, scaled).await))
}

/// Why a replica of the workload would not fit now, node by node.
#[utoipa::path(
    get,
    path = "/api/v1/workloads/{name}/explain",
    operation_id = "explain_workload",
    tag = "workloads",
    params(("name" = String, Path, description = "Workload name or id")),
    responses(
        (status = 200, description = "Nodes rejected, per reason", body = Unschedulable),
        (status = 404, description = "No such workload", body = ErrorBody)
    )
)]
pub(crate) async fn explain(
    State(state): State<ApiState>,
    Path(key): Path<String>,
) -> Result<Json<Unschedulable>, ApiError> {
    let def = require_workload(&state, &key).await?;
    Ok(Json(state.handle().explain(&def.value.name).await?))
}

/// Where the replicas of a definition would go, changing nothing (a dry run).
#[utoipa::path(
    post,
    path = "/api/v1/preview",
    operation_id = "preview_workload",
    tag = "workloads",
    request_body(
        content(
            (WorkloadDefinition = "application/json"),
            (WorkloadDefinition = "application/yaml")
        )
    ),
    responses(
        (status = 200, description = "Replicas per node, and why the others would not fit", body = PlacementPreview),
        (status = 400, description = "Malformed or invalid definition", body = ErrorBody)
    )
)]
pub(crate) async fn preview(
    State(state): State<ApiState>,
    Manifest(def): Manifest,
) -> Result<Json<PlacementPreview>, ApiError> {
    Ok(Json(state.handle().preview(def).await?))
}
