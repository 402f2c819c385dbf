//! Errors of a [`crate::ClusterManager`].

use orchestrator_shared_types::NodeId;

/// What went wrong with a membership operation.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No such node.
    #[error("node {0} not found")]
    NodeNotFound(NodeId),
    /// The membership layer cannot be reached right now (gossip socket, etcd, ...).
    #[error("cluster membership unavailable during {operation}")]
    Unavailable {
        /// What was being done.
        operation: &'static str,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl ClusterError {
    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, ClusterError::Unavailable { .. })
    }
}
