//! The [`ContainerRuntime`] trait and the types it speaks.

use crate::RuntimeError;
use async_trait::async_trait;
use orchestrator_shared_types::{ContainerConfig, ContainerId, InstanceId, NodeId, WorkloadId};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::sync::broadcast;

/// The id of container `container_name` of instance `instance`: deterministic, so creating is
/// idempotent and a restarted daemon can tell which containers are its own.
pub fn container_id_for(instance: &InstanceId, container_name: &str) -> ContainerId {
    ContainerId(format!("{instance}-{container_name}"))
}

/// Everything a runtime needs to create one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerSpec {
    /// The id to create it under (see [`container_id_for`]).
    pub id: ContainerId,
    /// The instance it belongs to (recorded by the runtime, returned by `list`).
    pub instance_id: InstanceId,
    /// The workload it belongs to (recorded by the runtime, returned by `list`).
    pub workload_id: WorkloadId,
    /// What to run.
    pub config: ContainerConfig,
}

/// Where a container is in its life, as the runtime sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    /// Created, not yet running.
    Created,
    /// Running.
    Running,
    /// Its process ended with this exit code.
    Exited {
        /// Exit code (128 + signal for a killed process).
        code: i32,
    },
    /// The runtime gave up on it (e.g. it could not start after creation).
    Failed {
        /// The runtime's message.
        message: String,
    },
}

/// What a runtime knows about one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerInfo {
    /// Id.
    pub id: ContainerId,
    /// Node it lives on.
    pub node_id: NodeId,
    /// Instance it belongs to.
    pub instance_id: InstanceId,
    /// Workload it belongs to.
    pub workload_id: WorkloadId,
    /// State.
    pub state: ContainerState,
}

/// A change of a container's state, pushed by the runtime as it happens (an exit, most
/// importantly). Subscribers that lag may miss some: they must resync with `list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerEvent {
    /// Node.
    pub node_id: NodeId,
    /// Container.
    pub container_id: ContainerId,
    /// Its instance.
    pub instance_id: InstanceId,
    /// The new state.
    pub state: ContainerState,
}

/// Node-aware container lifecycle. Implementations must pass [`crate::conformance`].
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait ContainerRuntime: Send + Sync {
    /// Creates and starts a container on `node`. Returns once it is started (its state may still
    /// be `Created` for a while; a `Running` event follows). Fails with `AlreadyExists` if a
    /// container with `spec.id` exists on the node.
    async fn create_and_start(
        &self,
        node: &NodeId,
        spec: &ContainerSpec,
    ) -> Result<(), RuntimeError>;

    /// Stops a container: asks it to exit, and kills it after `grace`. Stopping a container that
    /// already exited is not an error.
    async fn stop(
        &self,
        node: &NodeId,
        id: &ContainerId,
        grace: Duration,
    ) -> Result<(), RuntimeError>;

    /// Removes a container and everything it used (bundle, rootfs, cgroups), killing it first if
    /// it still runs (like `youki delete --force`). Removing a container that does not exist is
    /// not an error (idempotent).
    async fn remove(&self, node: &NodeId, id: &ContainerId) -> Result<(), RuntimeError>;

    /// The container's current state.
    async fn status(&self, node: &NodeId, id: &ContainerId) -> Result<ContainerInfo, RuntimeError>;

    /// Every container this runtime manages on `node`.
    async fn list(&self, node: &NodeId) -> Result<Vec<ContainerInfo>, RuntimeError>;

    /// A subscription to state changes of all containers on all nodes: at least a `Running` event
    /// once a container runs and an `Exited` event when its process ends (on its own, stopped or
    /// killed). Removal sends none. Events sent before `create_and_start` returns reach
    /// receivers subscribed before the call, so subscribe first, then create.
    fn subscribe(&self) -> broadcast::Receiver<ContainerEvent>;
}
