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
    /// The cluster manager could not start: bad configuration, or its socket cannot be bound.
    #[error("cannot start cluster membership: {what}")]
    Start {
        /// What failed.
        what: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// This implementation cannot do that (e.g. gossip cordoning another daemon's node).
    #[error("{operation} is not supported here: {reason}")]
    Unsupported {
        /// What was asked.
        operation: &'static str,
        /// Why not, and what to do instead.
        reason: String,
    },
}

impl ClusterError {
    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, ClusterError::Unavailable { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClusterManager, MockClusterManager};

    /// The core retries what `is_transient()` says may heal and fails the rest: a mock forces
    /// both kinds through the trait the core calls.
    #[tokio::test]
    async fn unavailable_is_transient_and_not_found_is_not() {
        let mut mock = MockClusterManager::new();
        mock.expect_nodes().times(1).returning(|| {
            Err(ClusterError::Unavailable {
                operation: "nodes",
                source: "gossip socket closed".into(),
            })
        });
        mock.expect_set_unschedulable()
            .returning(|id, _| Err(ClusterError::NodeNotFound(id.clone())));
        let manager: &dyn ClusterManager = &mock;

        let err = manager.nodes().await.unwrap_err();
        assert!(err.is_transient());
        assert_eq!(
            err.to_string(),
            "cluster membership unavailable during nodes"
        );
        assert!(
            std::error::Error::source(&err).is_some(),
            "keeps its source"
        );

        let err = manager
            .set_unschedulable(&"n1".into(), true)
            .await
            .unwrap_err();
        assert!(!err.is_transient());
        assert_eq!(err.to_string(), "node n1 not found");
    }
}
