//! `/api/v1/cluster`: what the cluster is made of, from the loop's counts and the server's facts.

use crate::{ApiError, ApiState};
use axum::extract::State;
use axum::Json;
use orchestrator_shared_types::api::{ClusterInfo, ErrorBody};

/// Version, counts of nodes, workloads and instances per status, store and runtime in use.
#[utoipa::path(
    get,
    path = "/api/v1/cluster",
    operation_id = "cluster_info",
    tag = "cluster",
    responses(
        (status = 200, description = "The cluster", body = ClusterInfo),
        (status = 503, description = "The orchestrator is not running", body = ErrorBody)
    )
)]
pub(crate) async fn info(State(state): State<ApiState>) -> Result<Json<ClusterInfo>, ApiError> {
    let summary = state.handle().summary().await?;
    let info = state.info();
    Ok(Json(ClusterInfo {
        version: info.version.clone(),
        nodes: summary.nodes,
        workloads: summary.workloads,
        instances: summary.instances,
        store: info.store.clone(),
        runtime: info.runtime.clone(),
        membership: Default::default(),
    }))
}
