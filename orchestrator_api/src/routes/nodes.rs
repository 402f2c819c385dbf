//! `/api/v1/nodes`: the cluster's machines with what is allocated on each, as the loop sees them.

use crate::extract::ApiQuery;
use crate::page::{PageParams, PageRequest, Resource};
use crate::{ApiError, ApiState};
use axum::extract::{Path, State};
use axum::Json;
use orchestrator_shared_types::api::{ErrorBody, ListResponse, NodeView};

/// List nodes, sorted by id, with their allocations; all of them, or one page with `limit`.
#[utoipa::path(
    get,
    path = "/api/v1/nodes",
    operation_id = "list_nodes",
    tag = "nodes",
    params(PageParams),
    responses(
        (status = 200, description = "Every node, or one page of them with `continue` when more follow", body = ListResponse<NodeView>),
        (status = 400, description = "Bad `limit` or `continue`", body = ErrorBody),
        (status = 503, description = "The orchestrator is not running", body = ErrorBody)
    )
)]
pub(crate) async fn list(
    State(state): State<ApiState>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<ListResponse<NodeView>>, ApiError> {
    let page = PageRequest::new(Resource::Nodes, params.limit, params.next.as_deref())?;
    // Nodes and their allocations live in the loop's memory, which answers with all of them:
    // paging here bounds the response, not that in-memory copy.
    let mut nodes = state.handle().nodes().await?;
    // The loop answers sorted by id; sorting again (linear on sorted input) keeps pages
    // disjoint and complete even if that ever changes.
    nodes.sort_by(|a, b| a.node.id.cmp(&b.node.id));
    if let Some(after) = &page.after {
        let start = nodes.partition_point(|n| n.node.id.as_str() <= after.as_str());
        nodes.drain(..start);
    }
    nodes.truncate(page.read_limit());
    Ok(Json(page.finish(Resource::Nodes, nodes, |n| {
        n.node.id.as_str().to_owned()
    })))
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
    Ok(Json(find(&state, &key).await?))
}

/// The node with this id, or else this name.
async fn find(state: &ApiState, key: &str) -> Result<NodeView, ApiError> {
    let mut nodes = state.handle().nodes().await?;
    // Ids first: they are unique, while two machines could share a hostname.
    let i = nodes
        .iter()
        .position(|n| n.node.id.as_str() == key)
        .or_else(|| nodes.iter().position(|n| n.node.name == key))
        .ok_or_else(|| ApiError::NotFound(format!("node {key:?} not found")))?;
    Ok(nodes.swap_remove(i))
}

/// Drain a node (`kubectl drain`): cordon it, so nothing new is placed there, and move its
/// instances to other nodes. Replicas that fit nowhere else stay pending, with the reason.
#[utoipa::path(
    post,
    path = "/api/v1/nodes/{name}/drain",
    operation_id = "drain_node",
    tag = "nodes",
    params(("name" = String, Path, description = "Node id or name")),
    responses(
        (status = 200, description = "The node, now unschedulable; its instances are being moved", body = NodeView),
        (status = 404, description = "No such node", body = ErrorBody)
    )
)]
pub(crate) async fn drain(
    State(state): State<ApiState>,
    Path(key): Path<String>,
) -> Result<Json<NodeView>, ApiError> {
    cordon(&state, &key, true).await
}

/// Make a node schedulable again (after a drain or cordon). Instances that moved away stay where
/// they are.
#[utoipa::path(
    post,
    path = "/api/v1/nodes/{name}/uncordon",
    operation_id = "uncordon_node",
    tag = "nodes",
    params(("name" = String, Path, description = "Node id or name")),
    responses(
        (status = 200, description = "The node, schedulable again", body = NodeView),
        (status = 404, description = "No such node", body = ErrorBody)
    )
)]
pub(crate) async fn uncordon(
    State(state): State<ApiState>,
    Path(key): Path<String>,
) -> Result<Json<NodeView>, ApiError> {
    cordon(&state, &key, false).await
}

/// Drains (`drain`) or uncordons the node with this id or name; answers with it afterwards.
async fn cordon(state: &ApiState, key: &str, drain: bool) -> Result<Json<NodeView>, ApiError> {
    let id = find(state, key).await?.node.id;
    if drain {
        state.handle().drain(&id).await?;
    } else {
        state.handle().uncordon(&id).await?;
    }
    Ok(Json(find(state, id.as_str()).await?))
}
