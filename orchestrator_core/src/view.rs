//! [`ClusterView`]: the immutable snapshot readers use, published by the loop (kube-runtime's
//! reflector: one writer, many cheap readers).
//!
//! The loop publishes a new view after its iterations (see `crate::driver` for how often); a
//! reader takes the latest with one atomic reference-count increment and never waits for the
//! loop, however busy it is. Lists, replica counts, node views, summaries, explain and preview
//! all answer from a view; explain and preview run the same pure scheduler code the loop runs,
//! on the view's copy of the cluster state.
//!
//! A view is plain data: [`ClusterView::from_records`] builds one from what the store holds
//! (nodes, workload definitions, instance records) the way the loop builds its own at start-up,
//! so a daemon that does not run the loop can serve the same reads.

use crate::model::allocation_of;
use crate::orchestrator::Summary;
use orchestrator_shared_types::api::{NodeView, PlacementPreview, ReplicaCounts};
use orchestrator_shared_types::{
    InstanceId, InstanceStatus, Node, NodeId, Unschedulable, WorkloadDefinition, WorkloadId,
    WorkloadInstance,
};
use scheduler_interface::{Allocation, ClusterState, PlacementRequest, Scheduler};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// What a view knows of one workload: rebuilt only when the workload or one of its instances
/// changed, shared between views otherwise.
#[derive(Clone, Debug, Default)]
pub(crate) struct WorkloadSlice {
    /// Its definition, unless it was deleted and its instances are still being stopped.
    pub(crate) def: Option<Arc<WorkloadDefinition>>,
    /// Its replica counts.
    pub(crate) counts: ReplicaCounts,
    /// Its instances per status (for the summary, which adds these up).
    pub(crate) statuses: BTreeMap<InstanceStatus, usize>,
    /// Its instances.
    pub(crate) instances: Vec<Arc<WorkloadInstance>>,
}

impl WorkloadSlice {
    /// The slice of a workload with these instances.
    pub(crate) fn new(
        def: Option<Arc<WorkloadDefinition>>,
        instances: Vec<Arc<WorkloadInstance>>,
    ) -> Self {
        let mut counts = ReplicaCounts {
            desired: def.as_ref().map_or(0, |d| d.replicas),
            ..Default::default()
        };
        let mut statuses = BTreeMap::new();
        for i in &instances {
            counts.count(i.status);
            counts.ready += u32::from(i.ready);
            *statuses.entry(i.status).or_default() += 1;
        }
        Self {
            def,
            counts,
            statuses,
            instances,
        }
    }
}

/// An immutable snapshot of the loop's state; see the module docs.
#[derive(Clone)]
pub struct ClusterView {
    scheduler: Arc<dyn Scheduler>,
    summary: Summary,
    workloads: HashMap<WorkloadId, Arc<WorkloadSlice>>,
    names: HashMap<String, WorkloadId>,
    state: ClusterState,
    /// Why the view may be behind the store (a daemon that lost its store keeps answering from
    /// the last view it built); `None` while it follows the store.
    stale: Option<Arc<str>>,
}

impl std::fmt::Debug for ClusterView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterView")
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

impl ClusterView {
    /// A view of these workloads on this cluster state; `in_flight` counts the workloads with
    /// operations in flight.
    pub(crate) fn new(
        scheduler: Arc<dyn Scheduler>,
        in_flight: usize,
        workloads: HashMap<WorkloadId, Arc<WorkloadSlice>>,
        state: ClusterState,
    ) -> Self {
        let mut names = HashMap::with_capacity(workloads.len());
        let mut summary = Summary {
            nodes: state.len(),
            in_flight,
            ..Default::default()
        };
        for (id, slice) in &workloads {
            if let Some(def) = &slice.def {
                names.insert(def.name.clone(), id.clone());
            }
            for (status, n) in &slice.statuses {
                *summary.instances.entry(*status).or_default() += n;
            }
        }
        summary.workloads = names.len();
        Self {
            scheduler,
            summary,
            workloads,
            names,
            state,
            stale: None,
        }
    }

    /// Why this view may be out of date (e.g. "the store is unreachable since 12:00:03"), or
    /// `None` when it follows the store. Readers say so to their clients.
    pub fn stale(&self) -> Option<&str> {
        self.stale.as_deref()
    }

    /// This view, marked as possibly out of date for `reason`.
    pub fn marked_stale(&self, reason: impl Into<Arc<str>>) -> Self {
        Self {
            stale: Some(reason.into()),
            ..self.clone()
        }
    }

    /// An empty view (before the loop published its first).
    pub fn empty(scheduler: Arc<dyn Scheduler>) -> Self {
        Self::new(scheduler, 0, HashMap::new(), ClusterState::new())
    }

    /// A view built from stored records, as the loop builds its state at start-up: every
    /// placed, non-terminal instance holds its workload's request on its node. Nothing is
    /// known to be in flight.
    pub fn from_records(
        scheduler: Arc<dyn Scheduler>,
        nodes: Vec<Node>,
        defs: Vec<WorkloadDefinition>,
        instances: Vec<WorkloadInstance>,
    ) -> Self {
        let mut state = ClusterState::new();
        for node in nodes {
            state.upsert_node(node);
        }
        let mut members: HashMap<WorkloadId, (Option<Arc<WorkloadDefinition>>, Vec<_>)> = defs
            .into_iter()
            .map(|d| (d.id.clone(), (Some(Arc::new(d)), Vec::new())))
            .collect();
        for i in instances.into_iter().filter(|i| !i.status.is_terminal()) {
            let (def, list) = members.entry(i.workload_id.clone()).or_default();
            if let Some(node) = placed_on(&i) {
                state.allocate(node, &allocation_of(def.as_deref(), &i));
            }
            list.push(Arc::new(i));
        }
        let workloads = members
            .into_iter()
            .map(|(id, (def, list))| (id, Arc::new(WorkloadSlice::new(def, list))))
            .collect();
        Self::new(scheduler, 0, workloads, state)
    }

    /// Counts of what the loop knows.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// Every node with what is allocated on it, sorted by id.
    pub fn nodes(&self) -> Vec<NodeView> {
        let mut views: Vec<NodeView> = self
            .state
            .nodes()
            .map(|n| NodeView {
                node: n.clone(),
                allocated: self.state.allocated(&n.id),
                instances: self.state.instances_on(&n.id),
            })
            .collect();
        views.sort_by(|a, b| a.node.id.cmp(&b.node.id));
        views
    }

    /// Replica counts of a workload (zeros if the view does not know it).
    pub fn replica_counts(&self, id: &WorkloadId) -> ReplicaCounts {
        self.workloads
            .get(id)
            .map(|s| s.counts.clone())
            .unwrap_or_default()
    }

    /// The loop's record of an instance. Instance ids start with their workload's name
    /// ([`InstanceId::generate`]), which finds the workload; other ids are searched for.
    pub fn instance(&self, id: &InstanceId) -> Option<&Arc<WorkloadInstance>> {
        fn find<'a>(
            slice: &'a Arc<WorkloadSlice>,
            id: &InstanceId,
        ) -> Option<&'a Arc<WorkloadInstance>> {
            slice.instances.iter().find(|i| i.id == *id)
        }
        id.workload_name()
            .and_then(|name| self.names.get(name))
            .and_then(|w| self.workloads.get(w))
            .and_then(|slice| find(slice, id))
            .or_else(|| self.workloads.values().find_map(|slice| find(slice, id)))
    }

    /// The loop's records of a workload's instances (none if the view does not know it).
    pub fn instances_of(&self, id: &WorkloadId) -> &[Arc<WorkloadInstance>] {
        self.workloads
            .get(id)
            .map_or(&[], |s| s.instances.as_slice())
    }

    /// The definition of workload `name`, as the loop knows it.
    pub fn workload(&self, name: &str) -> Option<&Arc<WorkloadDefinition>> {
        self.names
            .get(name)
            .and_then(|id| self.workloads.get(id))
            .and_then(|s| s.def.as_ref())
    }

    /// Why a replica of workload `name` would not fit now, node by node (`None`: unknown).
    pub fn explain(&self, name: &str) -> Option<Unschedulable> {
        let def = self.workload(name)?;
        Some(
            self.scheduler
                .explain(&self.state, &PlacementRequest::for_workload(def)),
        )
    }

    /// Where the replicas of `def` would go and what would not fit, changing nothing. The
    /// replicas its workload already has free their room first, as an update would replace
    /// them. The scheduler plans against the view's state without copying it.
    pub fn preview(&self, def: &WorkloadDefinition) -> PlacementPreview {
        let released: Vec<(NodeId, Allocation)> = self
            .names
            .get(&def.name)
            .and_then(|id| self.workloads.get(id))
            .map(|slice| {
                slice
                    .instances
                    .iter()
                    .filter_map(|i| {
                        placed_on(i)
                            .map(|node| (node.clone(), allocation_of(slice.def.as_deref(), i)))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let request = PlacementRequest::for_workload(def);
        let mut preview = PlacementPreview::default();
        match self
            .scheduler
            .plan_with(&self.state, &request, def.replicas as usize, &released)
        {
            Ok(plan) => {
                for node in plan.placed() {
                    *preview.placements.entry(node.clone()).or_default() += 1;
                }
                preview.unschedulable = plan.unschedulable;
            }
            Err(e) => tracing::warn!(error = %e, "preview refused by the scheduler"),
        }
        preview
    }
}

/// The node an instance holds resources on: placed and not pending (the loop allocates the
/// same way when it adopts records at start-up).
fn placed_on(i: &WorkloadInstance) -> Option<&NodeId> {
    i.node_id
        .as_ref()
        .filter(|_| i.status != InstanceStatus::Pending)
}
