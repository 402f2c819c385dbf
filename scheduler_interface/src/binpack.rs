//! The default scheduler. STUB: being written.

use crate::{ClusterState, PlacementOutcome, PlacementRequest, Scheduler, SchedulerError};
use orchestrator_shared_types::Unschedulable;

/// Resource-aware bin-packing scheduler (best fit; spread and one-per-node on request).
#[derive(Clone, Debug, Default)]
pub struct BinPackScheduler {}

impl BinPackScheduler {
    /// A scheduler with default settings.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Scheduler for BinPackScheduler {
    fn name(&self) -> &'static str {
        "binpack"
    }
    fn place(
        &self,
        _state: &mut ClusterState,
        _request: &PlacementRequest,
        _count: usize,
    ) -> Result<PlacementOutcome, SchedulerError> {
        todo!()
    }
    fn explain(&self, _state: &ClusterState, _request: &PlacementRequest) -> Unschedulable {
        todo!()
    }
}
