//! `/api/v1/cluster`: what the cluster is made of, from the loop's counts, the server's facts and
//! the membership (a cluster daemon's [`MembershipSource`](orchestrator_core::cluster::MembershipSource),
//! or this single node).

use crate::{ApiError, ApiState};
use axum::extract::State;
use axum::Json;
use orchestrator_core::ClusterView;
use orchestrator_shared_types::api::{
    ClusterInfo, ErrorBody, LeaderInfo, MemberInfo, Membership, StoreHealth,
};

/// The `mode` of a daemon with its own embedded store and no other member.
pub(crate) const SINGLE_NODE: &str = "single-node";

/// Version, counts of nodes, workloads and instances per status, store and runtime in use, and
/// the membership: members, leader, store health.
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
    let membership = match state.membership() {
        Some(source) => source.membership().await,
        None => {
            let view = state.handle().view()?;
            single_node(&state, &view).await
        }
    };
    let info = state.info();
    Ok(Json(ClusterInfo {
        version: info.version.clone(),
        nodes: summary.nodes,
        workloads: summary.workloads,
        instances: summary.instances,
        store: info.store.clone(),
        runtime: info.runtime.clone(),
        membership,
    }))
}

/// The membership of a daemon alone with its store: its node (the view's only one, or its
/// first) leads from the start, every node of the view is a member, and the store is healthy
/// when its revision can be read.
async fn single_node(state: &ApiState, view: &ClusterView) -> Membership {
    let nodes = view.nodes();
    let this_node = nodes.first().map(|n| n.node.id.clone()).unwrap_or_default();
    let leader = nodes.first().map(|n| LeaderInfo {
        node: n.node.id.clone(),
        address: state.listen_address().unwrap_or_default().to_owned(),
        since_revision: 0,
    });
    let members = nodes
        .iter()
        .map(|n| MemberInfo {
            node: n.node.id.clone(),
            address: if n.node.id == this_node {
                state
                    .listen_address()
                    .map_or_else(|| n.node.address.clone(), str::to_owned)
            } else {
                n.node.address.clone()
            },
            status: n.node.status,
            leader: n.node.id == this_node,
        })
        .collect();
    let store_health = match state.store().revision().await {
        Ok(revision) => StoreHealth {
            reachable: true,
            revision: Some(revision),
            message: view.stale().map(str::to_owned),
        },
        // The store's error says which operation failed, never its backend's words.
        Err(e) => StoreHealth {
            reachable: false,
            revision: None,
            message: Some(e.to_string()),
        },
    };
    Membership {
        mode: SINGLE_NODE.to_owned(),
        cluster_id: None,
        this_node,
        leader,
        members,
        store_health,
    }
}
