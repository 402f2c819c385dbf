//! [`StaticClusterManager`]. STUB: being written.

use crate::*;
use async_trait::async_trait;
use orchestrator_shared_types::{Node, NodeId};

/// Membership changed only by calls: the single-node daemon, tests and benchmarks.
#[derive(Debug)]
pub struct StaticClusterManager {
    hub: NodeHub,
}

impl StaticClusterManager {
    /// A manager with no nodes.
    pub fn new() -> Self {
        Self { hub: NodeHub::new(1024) }
    }
    /// Adds or updates a node.
    pub fn upsert_node(&self, node: Node) {
        self.hub.upsert(node)
    }
    /// Removes a node.
    pub fn remove_node(&self, id: &NodeId) -> Option<Node> {
        self.hub.remove(id)
    }
}

impl Default for StaticClusterManager {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl ClusterManager for StaticClusterManager {
    async fn nodes(&self) -> Result<Vec<Node>, ClusterError> {
        Ok(self.hub.nodes())
    }
    async fn node(&self, id: &NodeId) -> Result<Option<Node>, ClusterError> {
        Ok(self.hub.node(id))
    }
    async fn set_unschedulable(&self, _id: &NodeId, _unschedulable: bool) -> Result<(), ClusterError> {
        todo!()
    }
    fn subscribe(&self) -> NodeSubscription {
        self.hub.subscribe()
    }
}
