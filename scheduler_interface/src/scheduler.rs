//! The [`Scheduler`] trait and its request, plan and outcome.
//!
//! Placing is two steps, as in Nomad (compute a plan, then submit it):
//! [`Scheduler::plan_with`] computes where replicas would go against a shared
//! [`ClusterState`] without changing it, and [`ClusterState::commit`] applies the resulting
//! [`PlacementPlan`]. A dry run (a preview) is a plan that is never committed, so it costs no
//! copy of the cluster. [`Scheduler::place`] does both steps at once.

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

/// One replica in a [`PlacementPlan`]: the node it goes to and what it holds there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The chosen node.
    pub node: NodeId,
    /// What the replica allocates on it (committing records exactly this).
    pub allocation: Allocation,
}

/// Where up to `count` replicas would go, computed against a [`ClusterState`] without changing
/// it. [`ClusterState::commit`] applies it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlacementPlan {
    /// Allocations the plan treated as released before placing (for instance the replicas an
    /// update replaces), as given to [`Scheduler::plan_with`]; committing releases them first.
    pub released: Vec<(NodeId, Allocation)>,
    /// One entry per placed replica, in placement order. Later replicas of the same plan saw
    /// the earlier ones.
    pub placements: Vec<Placement>,
    /// When fewer than `count` were placed: why, per node, as [`PlacementOutcome`] says.
    pub unschedulable: Option<Unschedulable>,
}

impl PlacementPlan {
    /// The chosen nodes, one per placed replica, in placement order.
    pub fn placed(&self) -> impl Iterator<Item = &NodeId> + '_ {
        self.placements.iter().map(|p| &p.node)
    }

    /// The outcome [`Scheduler::place`] reports for this plan once committed.
    pub fn into_outcome(self) -> PlacementOutcome {
        PlacementOutcome {
            placed: self.placements.into_iter().map(|p| p.node).collect(),
            unschedulable: self.unschedulable,
        }
    }
}

/// Chooses nodes for replicas.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
pub trait Scheduler: Send + Sync {
    /// A short name for logs and metrics.
    fn name(&self) -> &'static str;

    /// Places up to `count` replicas described by `request`, allocating each placement in
    /// `state` (so the next replica, and the next call, see it). Replicas that fit nowhere are
    /// reported in [`PlacementOutcome::unschedulable`] with a reason per rejected node.
    ///
    /// The same as [`Scheduler::plan`] followed by [`ClusterState::commit`], which is what the
    /// provided implementation does; an implementation may allocate as it goes instead, as long
    /// as the result is the same.
    fn place(
        &self,
        state: &mut ClusterState,
        request: &PlacementRequest,
        count: usize,
    ) -> Result<PlacementOutcome, SchedulerError> {
        let plan = self.plan(state, request, count)?;
        state.commit(&plan);
        Ok(plan.into_outcome())
    }

    /// Where up to `count` replicas described by `request` would go, without changing `state`:
    /// later replicas of the plan see the earlier ones, as with [`Scheduler::place`], whose
    /// placements and reasons a committed plan matches exactly.
    fn plan(
        &self,
        state: &ClusterState,
        request: &PlacementRequest,
        count: usize,
    ) -> Result<PlacementPlan, SchedulerError> {
        self.plan_with(state, request, count, &[])
    }

    /// [`Scheduler::plan`] as if every allocation in `released` had first been released from
    /// `state` with [`ClusterState::release`], in order (unknown nodes are ignored, as there).
    /// For a preview of an update, whose new replicas replace the existing ones. The plan
    /// carries `released`, so committing it releases them too.
    fn plan_with(
        &self,
        state: &ClusterState,
        request: &PlacementRequest,
        count: usize,
        released: &[(NodeId, Allocation)],
    ) -> Result<PlacementPlan, SchedulerError>;

    /// Why a replica of `request` would not fit, node by node, without placing anything
    /// (for `explain_pending` and `describe`).
    fn explain(&self, state: &ClusterState, request: &PlacementRequest) -> Unschedulable;
}
