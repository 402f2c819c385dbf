//! `/api/v1/events`: the event log, oldest first, optionally of one workload.

use super::find_workload;
use crate::extract::ApiQuery;
use crate::page::{checked_limit, PageRequest, Resource};
use crate::{ApiError, ApiState};
use axum::extract::State;
use axum::Json;
use orchestrator_shared_types::api::{ErrorBody, ListResponse};
use orchestrator_shared_types::Event;
use serde::Deserialize;
use state_store_interface::{EventFilter, LimitFrom};

/// Events returned when the client does not say how many.
pub(crate) const DEFAULT_LIMIT: usize = 100;

/// Query of `GET /api/v1/events`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventQuery {
    /// Only events of this workload (name or id; names of deleted workloads work too).
    workload: Option<String>,
    /// How many events, 1 to 1000 (default 100; larger values are lowered to 1000): the most
    /// recent ones, or with `after`/`continue` the next ones.
    limit: Option<usize>,
    /// Page forward: the oldest `limit` events with a `seq` greater than this.
    after: Option<u64>,
    /// The `continue` of the previous page (an opaque token): the next page, from where that
    /// one ended (it overrides `after`).
    #[serde(rename = "continue")]
    next: Option<String>,
}

/// List events, oldest first: the most recent `limit`, or with `after` (or `continue`) the
/// next `limit` after a `seq`.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    operation_id = "list_events",
    tag = "events",
    params(EventQuery),
    responses(
        (status = 200, description = "Events, oldest first; `continue` when paging forward and more follow", body = ListResponse<Event>),
        (status = 400, description = "Bad query string", body = ErrorBody)
    )
)]
pub(crate) async fn list(
    State(state): State<ApiState>,
    ApiQuery(query): ApiQuery<EventQuery>,
) -> Result<Json<ListResponse<Event>>, ApiError> {
    let limit = checked_limit(query.limit)?.unwrap_or(DEFAULT_LIMIT);
    // The token says where the previous page ended, so it wins over the `after` that started
    // the walk: a client pages by repeating its request with `continue` added.
    let after = match &query.next {
        Some(token) => {
            let key = Resource::Events.key_of_token(token)?;
            // Our own tokens always hold a seq; anything else was not made here.
            Some(
                key.parse::<u64>()
                    .map_err(|_| Resource::Events.bad_token())?,
            )
        }
        None => query.after,
    };
    // Paging forward reads one event more than the page, to know whether `continue` is due.
    // The tail of the log (no `after`) has nothing after it: it never has a `continue`.
    let (read, limit_from, page) = match after {
        Some(_) => (
            limit + 1,
            LimitFrom::Oldest,
            PageRequest {
                limit: Some(limit),
                after: None,
            },
        ),
        None => (limit, LimitFrom::Newest, PageRequest::default()),
    };
    let finish = |items| page.finish(Resource::Events, items, |e: &Event| e.seq.to_string());

    let Some(key) = &query.workload else {
        let filter = EventFilter {
            after_seq: after,
            limit: Some(read),
            limit_from,
            ..Default::default()
        };
        return Ok(Json(finish(state.store().list_events(&filter).await?)));
    };
    if let Some(v) = find_workload(&state, key).await? {
        let filter = EventFilter {
            workload_id: Some(v.value.id),
            after_seq: after,
            limit: Some(read),
            limit_from,
        };
        return Ok(Json(finish(state.store().list_events(&filter).await?)));
    }
    // Not a current workload: a deleted one, by the name or id its events kept. The log is
    // bounded, so reading it whole is bounded too.
    let mut items = state
        .store()
        .list_events(&EventFilter {
            after_seq: after,
            ..Default::default()
        })
        .await?;
    items.retain(|e| {
        e.workload_name.as_deref() == Some(key.as_str())
            || e.workload_id.as_ref().is_some_and(|id| id.as_str() == key)
    });
    match limit_from {
        LimitFrom::Oldest => items.truncate(read),
        LimitFrom::Newest => {
            let skip = items.len().saturating_sub(read);
            items.drain(..skip);
        }
    }
    Ok(Json(finish(items)))
}
