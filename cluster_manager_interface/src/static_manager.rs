//! [`StaticClusterManager`]: membership changed only by calls, on top of a [`NodeHub`].

use crate::*;
use async_trait::async_trait;
use orchestrator_shared_types::{Node, NodeId};

/// Events a subscriber may fall behind by before it gets a [`ClusterEvent::Resync`].
const DEFAULT_EVENT_CAPACITY: usize = 1024;

/// Membership changed only by calls: the single-node daemon, tests and benchmarks.
#[derive(Debug)]
pub struct StaticClusterManager {
    hub: NodeHub,
}

impl StaticClusterManager {
    /// A manager with no nodes, whose subscribers may lag by 1,024 events before a resync.
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_EVENT_CAPACITY)
    }

    /// A manager with no nodes whose event channel holds `events` events (rounded up to a power
    /// of two); tests use a tiny one to make a subscriber lag.
    pub fn with_capacity(events: usize) -> Self {
        Self {
            hub: NodeHub::new(events),
        }
    }

    /// Adds or updates a node.
    pub fn upsert_node(&self, node: Node) {
        self.hub.upsert(node)
    }

    /// How many events a subscriber may fall behind by before it gets a resync.
    pub fn event_capacity(&self) -> usize {
        self.hub.capacity()
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

    async fn set_unschedulable(
        &self,
        id: &NodeId,
        unschedulable: bool,
    ) -> Result<(), ClusterError> {
        // One locked read-modify-write, so a concurrent status update is never overwritten.
        match self
            .hub
            .update(id, |node| node.unschedulable = unschedulable)
        {
            Some(_) => Ok(()),
            None => Err(ClusterError::NodeNotFound(id.clone())),
        }
    }

    fn subscribe(&self) -> NodeSubscription {
        self.hub.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_shared_types::Resources;
    use std::time::Duration;

    crate::cluster_manager_conformance!(|| async { StaticClusterManager::with_capacity(8) });

    async fn next(sub: &mut NodeSubscription) -> Option<ClusterEvent> {
        tokio::time::timeout(Duration::from_secs(5), sub.recv())
            .await
            .expect("an event within 5 s")
    }

    #[tokio::test]
    async fn cordon_is_exact_and_idempotent() {
        let m = StaticClusterManager::new();
        m.upsert_node(Node::new("a", Resources::new(1000, 1024, 0)));
        let mut sub = m.subscribe();
        m.set_unschedulable(&"a".into(), true).await.unwrap();
        m.set_unschedulable(&"a".into(), true).await.unwrap(); // no change, no event
        m.set_unschedulable(&"a".into(), false).await.unwrap();
        let Some(ClusterEvent::NodeUpdated(n)) = next(&mut sub).await else {
            panic!("expected an update")
        };
        assert!(n.unschedulable);
        let Some(ClusterEvent::NodeUpdated(n)) = next(&mut sub).await else {
            panic!("expected an update")
        };
        assert!(!n.unschedulable);
        let err = m.set_unschedulable(&"nope".into(), true).await.unwrap_err();
        assert!(matches!(err, ClusterError::NodeNotFound(id) if id.as_str() == "nope"));
    }

    #[tokio::test]
    async fn subscription_ends_when_the_manager_is_dropped() {
        let m = StaticClusterManager::new();
        let mut sub = m.subscribe();
        drop(m);
        assert_eq!(sub.recv().await, None);
    }
}
