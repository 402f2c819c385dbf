//! Errors of a [`crate::ContainerRuntime`].

use orchestrator_shared_types::{ContainerId, NodeId};

/// What went wrong with a runtime operation.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No container with this id on this node.
    #[error("container {id} not found on node {node}")]
    NotFound {
        /// Node.
        node: NodeId,
        /// Container.
        id: ContainerId,
    },
    /// A container with this id already exists on this node.
    #[error("container {id} already exists on node {node}")]
    AlreadyExists {
        /// Node.
        node: NodeId,
        /// Container.
        id: ContainerId,
    },
    /// The container could not be created or started (bad image, bad command, limits, ...).
    /// Retrying the same spec is expected to fail the same way, so the instance fails and the
    /// restart policy decides.
    #[error("starting container {id} on node {node} failed: {message}")]
    StartFailed {
        /// Node.
        node: NodeId,
        /// Container.
        id: ContainerId,
        /// The runtime's own message, shown to users.
        message: String,
    },
    /// The node or its runtime cannot be reached right now.
    #[error("node {node} unreachable during {operation}")]
    NodeUnreachable {
        /// Node.
        node: NodeId,
        /// What was being done.
        operation: &'static str,
    },
    /// Any other failure of the runtime while doing `operation`.
    #[error("runtime failed during {operation}: {message}")]
    Failed {
        /// What was being done.
        operation: &'static str,
        /// The runtime's message.
        message: String,
        /// Whether retrying may help.
        transient: bool,
    },
}

impl RuntimeError {
    /// Whether retrying the same operation later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            RuntimeError::NodeUnreachable { .. } => true,
            RuntimeError::Failed { transient, .. } => *transient,
            _ => false,
        }
    }
}
