//! Placing replicas on nodes: the [`Scheduler`] trait, the [`ClusterState`] it reads (nodes, what is
//! already allocated on each, and the indexes that keep placement fast at 10,000 nodes), and the
//! default [`BinPackScheduler`].
//!
//! The default scheduler is a pipeline in the spirit of Nomad's `GenericStack` and
//! kube-scheduler's Filter/Score plugins: feasibility filters (node ready and schedulable,
//! node_selector, CPU, memory, disk, host ports, one-per-node) → scorers (best fit by default,
//! spread on request) → choice. It never scans every node for every replica: candidates come
//! from an index ordered by free resources and only a bounded number of feasible ones is scored.
//! When replicas cannot be placed, every node is evaluated once to count a typed
//! [`RejectReason`](orchestrator_shared_types::RejectReason) per node.
//!
//! Scheduling is a pure computation, so unlike the other interfaces this trait is synchronous:
//! the core calls it from its pure `plan` step, with no I/O and no `.await`.
//!
//! Placing can be split in two, as Nomad does: [`Scheduler::plan`] (or
//! [`Scheduler::plan_with`], which also treats some allocations as released) computes a
//! [`PlacementPlan`] against a shared `&ClusterState`, and [`ClusterState::commit`] applies it. A
//! plan sees its own earlier replicas through a small overlay of tentative allocations local to
//! the call, never through a copy of the cluster.
//!
//! # Layout
//! * [`state`]: [`ClusterState`], [`Allocation`] and the free-resource index.
//! * [`scheduler`]: the [`Scheduler`] trait, [`PlacementRequest`], [`PlacementPlan`],
//!   [`PlacementOutcome`].
//! * [`binpack`]: [`BinPackScheduler`] and its filters and scorers.
//! * `overlay` (internal): what a plan reads, the state alone or the state under the plan's
//!   tentative allocations and releases, with index walks that merge the two.
//! * [`error`]: the crate's error, [`SchedulerError`].

pub mod binpack;
pub mod error;
mod overlay;
pub mod scheduler;
pub mod state;

pub use binpack::BinPackScheduler;
pub use error::SchedulerError;
pub use scheduler::{Placement, PlacementOutcome, PlacementPlan, PlacementRequest, Scheduler};
pub use state::{Allocation, ClusterState};

#[cfg(any(test, feature = "mock"))]
pub use scheduler::MockScheduler;
