//! `/api/v1/nodes`: the cluster's machines with what is allocated on each, as the loop sees them.

use crate::{ApiError, ApiState};
use axum::extract::{Path, State};
use axum::Json;
use orchestrator_shared_types::api::{ErrorBody, ListResponse, NodeView};

/// List nodes, sorted by id, with their allocations.
#[utoipa::path(
    get,
    path = "/api/v1/nodes",
    operation_id = "list_nodes",
    tag = "nodes",
    responses(
        (status = 200, description = "Every node", body = ListResponse<NodeView>),
        (status = 503, description = "The orchestrator is not running", body = ErrorBody)
    )
)]
pub(crate) async fn list(
    State(state): State<ApiState>,
) -> Result<Json<ListResponse<NodeView>>, ApiError> {
    let items = state.handle().nodes().await?;
    Ok(Json(ListResponse { items }))
}

/// One node, by id or name.
#[utoipa::path(
    get,
    path = "/api/v1/nodes/{name}",
    operation_id = "get_node",
    tag = "nodes",
    params(("name" = String, Path, description = "Node id or name")),
    responses(
        (status = 200, description = "The node", body = NodeView),
        (status = 404, description = "No such node", body = ErrorBody)
    )
)]
pub(crate) async fn get_one(
    State(state): State<ApiState>,
    Path(key): Path<String>,
) -> Result<Json<NodeView>, ApiError> {
    let mut nodes = state.handle().nodes().await?;
    // Ids first: they are unique, while two machines could share a hostname.
    let i = nodes
        .iter()
        .position(|n| n.node.id.as_str() == key)
        .or_else(|| nodes.iter().position(|n| n.node.name == key))
        .ok_or_else(|| ApiError::NotFound(format!("node {key:?} not found")))?;
    Ok(Json(nodes.swap_remove(i)))
}
