//! [`SimulatedRuntime`]. STUB: being written.

use crate::*;
use async_trait::async_trait;
use orchestrator_shared_types::{ContainerId, NodeId};
use std::time::Duration;
use tokio::sync::broadcast;

/// Settings of the simulated runtime.
#[derive(Clone, Debug)]
pub struct SimulatedRuntimeConfig {
    /// How long a container stays `Created` before it is `Running` (tokio time).
    pub start_delay: Duration,
    /// Capacity of the event channel.
    pub event_capacity: usize,
}

impl Default for SimulatedRuntimeConfig {
    fn default() -> Self {
        Self {
            start_delay: Duration::from_millis(10),
            event_capacity: 65_536,
        }
    }
}

/// In-process containers for tests and benchmarks, never the daemon's default.
#[derive(Debug)]
pub struct SimulatedRuntime {}

impl SimulatedRuntime {
    /// A runtime with these settings.
    pub fn new(_config: SimulatedRuntimeConfig) -> Self {
        todo!()
    }
    /// Makes a running container's process exit with `code` (a crash when non-zero).
    pub fn exit_container(&self, _node: &NodeId, _id: &ContainerId, _code: i32) -> Result<(), RuntimeError> {
        todo!()
    }
    /// Makes every call for `node` fail with `NodeUnreachable` (or succeed again).
    pub fn set_node_reachable(&self, _node: &NodeId, _reachable: bool) {
        todo!()
    }
    /// Makes the next `count` creates on any node fail with `StartFailed` carrying `message`.
    pub fn fail_next_starts(&self, _count: usize, _message: &str) {
        todo!()
    }
    /// Number of containers (any state) on every node.
    pub fn container_count(&self) -> usize {
        todo!()
    }
}

#[async_trait]
impl ContainerRuntime for SimulatedRuntime {
    async fn create_and_start(&self, _node: &NodeId, _spec: &ContainerSpec) -> Result<(), RuntimeError> {
        todo!()
    }
    async fn stop(&self, _node: &NodeId, _id: &ContainerId, _grace: Duration) -> Result<(), RuntimeError> {
        todo!()
    }
    async fn remove(&self, _node: &NodeId, _id: &ContainerId) -> Result<(), RuntimeError> {
        todo!()
    }
    async fn status(&self, _node: &NodeId, _id: &ContainerId) -> Result<ContainerInfo, RuntimeError> {
        todo!()
    }
    async fn list(&self, _node: &NodeId) -> Result<Vec<ContainerInfo>, RuntimeError> {
        todo!()
    }
    fn subscribe(&self) -> broadcast::Receiver<ContainerEvent> {
        todo!()
    }
}
