//! [`NodeHub`]. STUB: being written.

use crate::NodeSubscription;
use orchestrator_shared_types::{Node, NodeId};

/// The node table, event broadcast and snapshot shared by implementations. It updates the
/// snapshot before broadcasting each event, which [`NodeSubscription`] relies on.
#[derive(Debug)]
pub struct NodeHub {}

impl NodeHub {
    /// A hub whose event channel holds `capacity` events.
    pub fn new(_capacity: usize) -> Self {
        todo!()
    }
    /// Adds or updates a node; broadcasts `NodeAdded` or `NodeUpdated` (nothing if unchanged).
    pub fn upsert(&self, _node: Node) {
        todo!()
    }
    /// Removes a node; broadcasts `NodeRemoved`. Returns it if it was known.
    pub fn remove(&self, _id: &NodeId) -> Option<Node> {
        todo!()
    }
    /// Every node, sorted by id.
    pub fn nodes(&self) -> Vec<Node> {
        todo!()
    }
    /// One node.
    pub fn node(&self, _id: &NodeId) -> Option<Node> {
        todo!()
    }
    /// A new subscription.
    pub fn subscribe(&self) -> NodeSubscription {
        todo!()
    }
}
