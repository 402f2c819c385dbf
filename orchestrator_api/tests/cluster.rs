//! `GET /api/v1/cluster`'s membership: a single-node daemon describes itself; a cluster
//! daemon answers what its membership source says.

mod common;

use async_trait::async_trait;
use axum::http::StatusCode;
use common::TestApi;
use orchestrator_core::cluster::MembershipSource;
use orchestrator_shared_types::api::{
    ClusterInfo, LeaderInfo, MemberInfo, Membership, StoreHealth,
};
use orchestrator_shared_types::NodeStatus;
use std::sync::Arc;

#[tokio::test]
async fn a_single_node_daemon_leads_itself() {
    let harness = TestApi::start().await;
    // The harness's second node goes down: members keep their status.
    let mut b = common::test_nodes().pop().unwrap();
    b.status = NodeStatus::Down;
    harness.nodes.upsert_node(b);
    let api = TestApi::with_state(harness.state.clone().with_listen_address("127.0.0.1:8080"));
    let info: ClusterInfo = common::eventually("node-b is seen down", || {
        let api = &api;
        async move {
            let info: ClusterInfo = serde_json::from_slice(
                &api.get("/api/v1/cluster").await.expect(StatusCode::OK).body,
            )
            .unwrap();
            info.membership
                .members
                .iter()
                .any(|m| m.node.as_str() == "node-b" && m.status == NodeStatus::Down)
                .then_some(info)
        }
    })
    .await;
    let m = info.membership;
    assert_eq!(m.mode, "single-node");
    assert_eq!(m.cluster_id, None);
    assert_eq!(m.this_node.as_str(), "node-a");
    assert_eq!(
        m.leader,
        Some(LeaderInfo {
            node: "node-a".into(),
            address: "127.0.0.1:8080".into(),
            since_revision: 0,
        })
    );
    let members: Vec<(&str, &str, NodeStatus, bool)> = m
        .members
        .iter()
        .map(|m| (m.node.as_str(), m.address.as_str(), m.status, m.leader))
        .collect();
    assert_eq!(
        members,
        [
            ("node-a", "127.0.0.1:8080", NodeStatus::Ready, true),
            ("node-b", "", NodeStatus::Down, false),
        ]
    );
    assert!(m.store_health.reachable, "{:?}", m.store_health);
    assert!(m.store_health.revision.is_some());
    assert_eq!(m.store_health.message, None);
}

/// A fixed membership, as a cluster daemon's source would report it.
struct Fixed(Membership);

#[async_trait]
impl MembershipSource for Fixed {
    async fn membership(&self) -> Membership {
        self.0.clone()
    }
}

#[tokio::test]
async fn a_cluster_daemon_answers_its_sources_membership() {
    let api = TestApi::start().await;
    let membership = Membership {
        mode: "etcd".into(),
        cluster_id: Some("c-1".into()),
        this_node: "node-b".into(),
        leader: Some(LeaderInfo {
            node: "node-a".into(),
            address: "10.0.0.1:8080".into(),
            since_revision: 42,
        }),
        members: vec![
            MemberInfo {
                node: "node-a".into(),
                address: "10.0.0.1:8080".into(),
                status: NodeStatus::Ready,
                leader: true,
            },
            MemberInfo {
                node: "node-b".into(),
                address: "10.0.0.2:8080".into(),
                status: NodeStatus::Ready,
                leader: false,
            },
        ],
        store_health: StoreHealth {
            reachable: true,
            revision: Some(50),
            message: None,
        },
    };
    let api = TestApi::with_state(
        api.state
            .clone()
            .with_membership(Arc::new(Fixed(membership.clone()))),
    );
    let reply = api.get("/api/v1/cluster").await.expect(StatusCode::OK);
    let info: ClusterInfo = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(info.membership, membership);
    assert_eq!(info.nodes, 2, "the counts are still the view's");
    assert!(
        reply.headers.get(orchestrator_api::STALE_HEADER).is_none(),
        "a view that follows its store is not marked"
    );
}
