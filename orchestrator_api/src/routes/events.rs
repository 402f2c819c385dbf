//! `/api/v1/events`: the event log, oldest first, optionally of one workload.

use super::find_workload;
use crate::extract::ApiQuery;
use crate::{ApiError, ApiState};
use axum::extract::State;
use axum::Json;
use orchestrator_shared_types::api::{ErrorBody, ListResponse};
use orchestrator_shared_types::Event;
use serde::Deserialize;
use state_store_interface::EventFilter;

/// Events returned when the client does not say how many.
pub(crate) const DEFAULT_LIMIT: usize = 100;
/// Most events one request returns.
pub(crate) const MAX_LIMIT: usize = 1000;

/// Query of `GET /api/v1/events`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventQuery {
    /// Only events of this workload (name or id; names of deleted workloads work too).
    workload: Option<String>,
    /// The most recent this many (default 100, at most 1000).
    limit: Option<usize>,
}

/// List events, oldest first: the most recent `limit`.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    operation_id = "list_events",
    tag = "events",
    params(EventQuery),
    responses(
        (status = 200, description = "Events, oldest first", body = ListResponse<Event>),
        (status = 400, description = "Bad query string", body = ErrorBody)
    )
)]
pub(crate) async fn list(
    State(state): State<ApiState>,
    ApiQuery(query): ApiQuery<EventQuery>,
) -> Result<Json<ListResponse<Event>>, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    let Some(key) = &query.workload else {
        let filter = EventFilter {
            limit: Some(limit),
            ..Default::default()
        };
        let items = state.store().list_events(&filter).await?;
        return Ok(Json(ListResponse { items }));
    };
    if let Some(v) = find_workload(&state, key).await? {
        let filter = EventFilter {
            workload_id: Some(v.value.id),
            limit: Some(limit),
            ..Default::default()
        };
        let items = state.store().list_events(&filter).await?;
        return Ok(Json(ListResponse { items }));
    }
    // Not a current workload: a deleted one, by the name or id its events kept. The log is
    // bounded, so reading it whole is bounded too.
    let mut items = state.store().list_events(&EventFilter::default()).await?;
    items.retain(|e| {
        e.workload_name.as_deref() == Some(key.as_str())
            || e.workload_id.as_ref().is_some_and(|id| id.as_str() == key)
    });
    let skip = items.len().saturating_sub(limit);
    items.drain(..skip);
    Ok(Json(ListResponse { items }))
}
