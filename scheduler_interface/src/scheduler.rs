//! The [`Scheduler`] trait and its request and outcome.

use crate::{Allocation, ClusterState, SchedulerError};
use orchestrator_shared_types::{
    Labels, NodeId, PlacementStrategy, Protocol, Resources, Unschedulable, WorkloadDefinition,
    WorkloadId,
};

/// What one replica needs, and how replicas of its workload like to be spread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacementRequest {
    /// The workload (for spread and one-per-node accounting).
    pub workload_id: WorkloadId,
    /// Resources of one replica.
    pub resources: Resources,
    /// Host ports one replica claims.
    pub host_ports: Vec<(Protocol, u16)>,
    /// Labels a node must carry.
    pub node_selector: Labels,
    /// Best fit, spread or one per node.
    pub strategy: PlacementStrategy,
}

impl PlacementRequest {
    /// The request for one replica of `workload`.
    pub fn for_workload(workload: &WorkloadDefinition) -> Self {
        Self {
            workload_id: workload.id.clone(),
            resources: workload.replica_resources(),
            host_ports: workload.host_ports(),
            node_selector: workload.node_selector.clone(),
            strategy: workload.placement,
        }
    }

    /// What one replica placed for this request holds on its node.
    pub fn allocation(&self) -> Allocation {
        Allocation {
            workload_id: self.workload_id.clone(),
            resources: self.resources,
            host_ports: self.host_ports.clone(),
        }
    }
}

/// The result of placing `count` replicas.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlacementOutcome {
    /// One node per placed replica, in placement order. Already allocated in the state.
    pub placed: Vec<NodeId>,
    /// When fewer than `count` were placed: why, per node.
    pub unschedulable: Option<Unschedulable>,
}

/// Chooses nodes for replicas.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
pub trait Scheduler: Send + Sync {
    /// A short name for logs and metrics.
    fn name(&self) -> &'static str;

    /// Places up to `count` replicas described by `request`, allocating each placement in
    /// `state` (so the next replica, and the next call, see it). Replicas that fit nowhere are
    /// reported in [`PlacementOutcome::unschedulable`] with a reason per rejected node.
    fn place(
        &self,
        state: &mut ClusterState,
        request: &PlacementRequest,
        count: usize,
    ) -> Result<PlacementOutcome, SchedulerError>;

    /// Why a replica of `request` would not fit, node by node, without placing anything
    /// (for `explain_pending` and `describe`).
    fn explain(&self, state: &ClusterState, request: &PlacementRequest) -> Unschedulable;
}
