//! `/api/v1/instances`: replicas from the store, optionally of one workload and/or on one node.

use super::find_workload;
use crate::extract::ApiQuery;
use crate::{ApiError, ApiState};
use axum::extract::State;
use axum::Json;
use orchestrator_shared_types::api::{ErrorBody, ListResponse};
use orchestrator_shared_types::{NodeId, WorkloadId, WorkloadInstance};
use serde::Deserialize;
use state_store_interface::typed::instance_prefix;
use state_store_interface::StoreExt;

/// Filters of `GET /api/v1/instances`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct InstanceFilter {
    /// Only instances of this workload (name or id).
    workload: Option<String>,
    /// Only instances on this node (id or name).
    node: Option<String>,
}

/// List instances, sorted by workload id then instance id.
#[utoipa::path(
    get,
    path = "/api/v1/instances",
    operation_id = "list_instances",
    tag = "instances",
    params(InstanceFilter),
    responses(
        (status = 200, description = "Matching instances", body = ListResponse<WorkloadInstance>),
        (status = 400, description = "Bad query string", body = ErrorBody)
    )
)]
pub(crate) async fn list(
    State(state): State<ApiState>,
    ApiQuery(filter): ApiQuery<InstanceFilter>,
) -> Result<Json<ListResponse<WorkloadInstance>>, ApiError> {
    let prefix = match &filter.workload {
        // A name that is not (or no longer) a workload may still be the id of one whose
        // instances are being cleaned up: look it up as an id.
        Some(key) => match find_workload(&state, key).await? {
            Some(v) => instance_prefix(&v.value.id),
            None => instance_prefix(&WorkloadId::from(key.as_str())),
        },
        None => String::new(),
    };
    let mut items: Vec<WorkloadInstance> = state
        .store()
        .list_obj::<WorkloadInstance>(&prefix)
        .await?
        .into_iter()
        .map(|v| v.value)
        .collect();
    if let Some(node) = &filter.node {
        let ids = node_ids(&state, node).await;
        items.retain(|i| i.node_id.as_ref().is_some_and(|n| ids.contains(n)));
    }
    Ok(Json(ListResponse { items }))
}

/// The ids `key` may designate: itself, and the ids of nodes named `key`. The filter still
/// works by id when the loop cannot be asked for names.
async fn node_ids(state: &ApiState, key: &str) -> Vec<NodeId> {
    let mut ids = vec![NodeId::from(key)];
    if let Ok(nodes) = state.handle().nodes().await {
        ids.extend(
            nodes
                .into_iter()
                .filter(|n| n.node.name == key)
                .map(|n| n.node.id),
        );
    }
    ids
}
