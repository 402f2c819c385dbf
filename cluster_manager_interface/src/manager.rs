//! The [`ClusterManager`] trait and its subscription.

use crate::ClusterError;
use async_trait::async_trait;
use orchestrator_shared_types::{Node, NodeId};
use std::sync::Arc;
use tokio::sync::{broadcast, watch};

/// A change of membership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterEvent {
    /// A node joined.
    NodeAdded(Node),
    /// A node changed (status, labels, resources, cordon).
    NodeUpdated(Node),
    /// A node left the cluster for good.
    NodeRemoved(NodeId),
    /// The subscriber fell behind and missed events: this is the full current node list, which
    /// replaces whatever the subscriber knew.
    Resync(Vec<Node>),
}

/// A subscription to membership changes that never silently loses events: when the subscriber
/// lags behind the bounded channel, it receives one [`ClusterEvent::Resync`] snapshot instead.
#[derive(Debug)]
pub struct NodeSubscription {
    events: broadcast::Receiver<ClusterEvent>,
    snapshot: watch::Receiver<Arc<Vec<Node>>>,
}

impl NodeSubscription {
    /// A subscription over an event channel and the snapshot that backs it up.
    pub fn new(
        events: broadcast::Receiver<ClusterEvent>,
        snapshot: watch::Receiver<Arc<Vec<Node>>>,
    ) -> Self {
        Self { events, snapshot }
    }

    /// The next event; `None` once the cluster manager is gone.
    pub async fn recv(&mut self) -> Option<ClusterEvent> {
        match self.events.recv().await {
            Ok(event) => Some(event),
            Err(broadcast::error::RecvError::Lagged(_)) => {
                // Skip what is left of the backlog too: the snapshot taken after re-subscribing
                // contains it (publishers update the snapshot before they broadcast), and every
                // later event arrives on the new receiver.
                self.events = self.events.resubscribe();
                let nodes = self.snapshot.borrow().as_ref().clone();
                Some(ClusterEvent::Resync(nodes))
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

/// Node membership and capacity.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait ClusterManager: Send + Sync {
    /// Every node currently known, sorted by id.
    async fn nodes(&self) -> Result<Vec<Node>, ClusterError>;

    /// One node.
    async fn node(&self, id: &NodeId) -> Result<Option<Node>, ClusterError>;

    /// Marks a node (un)schedulable: cordon / uncordon. Its running instances stay.
    async fn set_unschedulable(&self, id: &NodeId, unschedulable: bool)
        -> Result<(), ClusterError>;

    /// Membership changes from now on. Subscribe before calling [`ClusterManager::nodes`] to
    /// miss nothing in between.
    fn subscribe(&self) -> NodeSubscription;
}
