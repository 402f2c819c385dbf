//! Errors of the core, as seen by callers of [`crate::OrchestratorHandle`].

use cluster_manager_interface::ClusterError;
use container_runtime_interface::RuntimeError;
use orchestrator_shared_types::ValidationErrors;
use state_store_interface::StoreError;

/// What went wrong with a request to the orchestrator.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The workload definition is invalid; every problem is listed with its field path.
    #[error("invalid workload: {0}")]
    Invalid(#[from] ValidationErrors),
    /// No workload with this name.
    #[error("workload {name:?} not found")]
    NotFound {
        /// The name asked for.
        name: String,
    },
    /// No instance with this id.
    #[error("instance {id:?} not found")]
    InstanceNotFound {
        /// The id asked for.
        id: String,
    },
    /// The instance has no container of this name.
    #[error("instance {instance:?} has no container {name:?}; its containers: {}", .names.join(", "))]
    UnknownContainer {
        /// The instance.
        instance: String,
        /// The name asked for.
        name: String,
        /// The names of its containers.
        names: Vec<String>,
    },
    /// The instance exists but has no container to read now (not placed yet, or its container
    /// is not created yet); `message` says which.
    #[error("{message}")]
    NoContainer {
        /// The instance.
        instance: String,
        /// What it is doing instead, e.g. "instance web-1 is Pending: it has no container yet".
        message: String,
    },
    /// No node with this id.
    #[error("node {node:?} not found")]
    NodeNotFound {
        /// The id asked for.
        node: String,
    },
    /// A workload with this name already exists.
    #[error("workload {name:?} already exists")]
    AlreadyExists {
        /// The name.
        name: String,
    },
    /// The workload changed since the revision the caller read.
    #[error("workload {name:?} was modified concurrently (expected revision {expected})")]
    StaleRevision {
        /// The name.
        name: String,
        /// The revision the caller expected.
        expected: u64,
    },
    /// Reading or writing the store failed.
    #[error("state store error during {operation}")]
    Store {
        /// What was being done.
        operation: &'static str,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// Listing or driving containers failed.
    #[error("container runtime error during {operation}")]
    Runtime {
        /// What was being done.
        operation: &'static str,
        /// The runtime's error (boxed: runtime errors carry their causes and are large, and
        /// every `Result` of the core would grow with them).
        #[source]
        source: Box<RuntimeError>,
    },
    /// Reading cluster membership failed.
    #[error("cluster membership error during {operation}")]
    Cluster {
        /// What was being done.
        operation: &'static str,
        /// The cluster manager's error.
        #[source]
        source: ClusterError,
    },
    /// The orchestrator is shutting down or has stopped.
    #[error("the orchestrator is not running")]
    Stopped,
    /// This daemon cannot join the cluster in the store: the reason says why and what to do.
    #[error("cannot join the cluster: {reason}")]
    Join {
        /// Why, and what to do.
        reason: String,
    },
}

impl CoreError {
    /// Whether retrying the same request later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            CoreError::Store { source, .. } => source.is_transient(),
            CoreError::Runtime { source, .. } => source.is_transient(),
            CoreError::Cluster { source, .. } => source.is_transient(),
            _ => false,
        }
    }

    pub(crate) fn store(operation: &'static str) -> impl FnOnce(StoreError) -> CoreError {
        move |source| CoreError::Store { operation, source }
    }
}
