//! [`ClusterState`]: nodes, what is allocated on each, and the indexes used by schedulers.
//! STUB: the public API below is the contract; the implementation is being written.

use orchestrator_shared_types::{Node, NodeId, Protocol, Resources, WorkloadId};

/// What one placed replica holds on its node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    /// Its workload (for spread / one-per-node accounting).
    pub workload_id: WorkloadId,
    /// Resources it reserves.
    pub resources: Resources,
    /// Host ports it claims.
    pub host_ports: Vec<(Protocol, u16)>,
}

/// Nodes and their allocations.
#[derive(Clone, Debug, Default)]
pub struct ClusterState {}

impl ClusterState {
    /// An empty cluster.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds a node or replaces its description, keeping what is allocated on it.
    pub fn upsert_node(&mut self, _node: Node) {
        todo!()
    }
    /// Removes a node and everything allocated on it; returns it if it was known.
    pub fn remove_node(&mut self, _id: &NodeId) -> Option<Node> {
        todo!()
    }
    /// A node by id.
    pub fn node(&self, _id: &NodeId) -> Option<&Node> {
        todo!()
    }
    /// Every node, in no particular order.
    pub fn nodes(&self) -> Box<dyn Iterator<Item = &Node> + '_> {
        todo!()
    }
    /// Number of nodes.
    pub fn len(&self) -> usize {
        todo!()
    }
    /// True when there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Sum of what is allocated on a node (zero for an unknown node).
    pub fn allocated(&self, _id: &NodeId) -> Resources {
        todo!()
    }
    /// What is left on a node: allocatable minus allocated, floored at zero.
    pub fn free(&self, _id: &NodeId) -> Option<Resources> {
        todo!()
    }
    /// Number of replicas of `workload` allocated on `node`.
    pub fn replicas_on(&self, _workload: &WorkloadId, _node: &NodeId) -> u32 {
        todo!()
    }
    /// Records an allocation on a node, even if it overcommits the node (state restored from
    /// the store must be recorded as it is). Returns false, recording nothing, for an unknown node.
    pub fn allocate(&mut self, _node: &NodeId, _alloc: &Allocation) -> bool {
        todo!()
    }
    /// Releases an allocation made with [`ClusterState::allocate`] (no-op if unknown).
    pub fn release(&mut self, _node: &NodeId, _alloc: &Allocation) {
        todo!()
    }
}
