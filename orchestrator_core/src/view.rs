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
use scheduler_interface::{ClusterState, PlacementRequest, Scheduler};
use std::collections::HashMap;
use std::sync::Arc;

/// What a view knows of one workload.
#[derive(Clone, Debug, Default)]
pub(crate) struct WorkloadSlice {
    /// Its definition, unless it was deleted and its instances are still being stopped.
    pub(crate) def: Option<Arc<WorkloadDefinition>>,
    /// Its replica counts.
    pub(crate) counts: ReplicaCounts,
    /// Its instances.
    pub(crate) instances: Vec<InstanceId>,
}

/// An immutable snapshot of the loop's state; see the module docs.
#[derive(Clone)]
pub struct ClusterView {
    scheduler: Arc<dyn Scheduler>,
    summary: Summary,
    workloads: HashMap<WorkloadId, WorkloadSlice>,
    names: HashMap<String, WorkloadId>,
    instances: HashMap<InstanceId, Arc<WorkloadInstance>>,
    nodes: Vec<NodeView>,
    state: ClusterState,
}

impl std::fmt::Debug for ClusterView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterView")
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

impl ClusterView {
    pub(crate) fn new(
        scheduler: Arc<dyn Scheduler>,
        summary: Summary,
        workloads: HashMap<WorkloadId, WorkloadSlice>,
        instances: HashMap<InstanceId, Arc<WorkloadInstance>>,
        nodes: Vec<NodeView>,
        state: ClusterState,
    ) -> Self {
        let names = workloads
            .iter()
            .filter_map(|(id, s)| s.def.as_ref().map(|d| (d.name.clone(), id.clone())))
            .collect();
        Self {
            scheduler,
            summary,
            workloads,
            names,
            instances,
            nodes,
            state,
        }
    }

    /// An empty view (before the loop published its first).
    pub fn empty(scheduler: Arc<dyn Scheduler>) -> Self {
        Self::new(
            scheduler,
            Summary::default(),
            HashMap::new(),
            HashMap::new(),
            Vec::new(),
            ClusterState::new(),
        )
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
        let mut workloads: HashMap<WorkloadId, WorkloadSlice> = defs
            .into_iter()
            .map(|d| {
                let slice = WorkloadSlice {
                    counts: ReplicaCounts {
                        desired: d.replicas,
                        ..Default::default()
                    },
                    def: Some(Arc::new(d)),
                    instances: Vec::new(),
                };
                (
                    slice.def.as_ref().map(|d| d.id.clone()).unwrap_or_default(),
                    slice,
                )
            })
            .collect();
        let mut summary = Summary {
            workloads: workloads.len(),
            nodes: state.len(),
            ..Default::default()
        };
        let mut per_node: HashMap<NodeId, usize> = HashMap::new();
        let mut by_id = HashMap::with_capacity(instances.len());
        for i in instances.into_iter().filter(|i| !i.status.is_terminal()) {
            let slice = workloads.entry(i.workload_id.clone()).or_default();
            if let (Some(node), true) = (&i.node_id, i.status != InstanceStatus::Pending) {
                state.allocate(node, &allocation_of(slice.def.as_deref(), &i));
                *per_node.entry(node.clone()).or_default() += 1;
            }
            slice.counts.count(i.status);
            slice.instances.push(i.id.clone());
            *summary.instances.entry(i.status).or_default() += 1;
            by_id.insert(i.id.clone(), Arc::new(i));
        }
        let mut views: Vec<NodeView> = state
            .nodes()
            .map(|n| NodeView {
                node: n.clone(),
                allocated: state.allocated(&n.id),
                instances: per_node.get(&n.id).copied().unwrap_or(0),
            })
            .collect();
        views.sort_by(|a, b| a.node.id.cmp(&b.node.id));
        Self::new(scheduler, summary, workloads, by_id, views, state)
    }

    /// Counts of what the loop knows.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// Every node with what is allocated on it, sorted by id.
    pub fn nodes(&self) -> &[NodeView] {
        &self.nodes
    }

    /// Replica counts of a workload (zeros if the view does not know it).
    pub fn replica_counts(&self, id: &WorkloadId) -> ReplicaCounts {
        self.workloads
            .get(id)
            .map(|s| s.counts.clone())
            .unwrap_or_default()
    }

    /// The loop's record of an instance.
    pub fn instance(&self, id: &InstanceId) -> Option<&Arc<WorkloadInstance>> {
        self.instances.get(id)
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
    /// them.
    pub fn preview(&self, def: &WorkloadDefinition) -> PlacementPreview {
        let mut scratch = self.state.clone();
        if let Some(id) = self.names.get(&def.name) {
            let slice = &self.workloads[id];
            for i in slice.instances.iter().filter_map(|i| self.instances.get(i)) {
                if let (Some(node), true) = (&i.node_id, i.status != InstanceStatus::Pending) {
                    scratch.release(node, &allocation_of(slice.def.as_deref(), i));
                }
            }
        }
        let request = PlacementRequest::for_workload(def);
        let mut preview = PlacementPreview::default();
        match self
            .scheduler
            .place(&mut scratch, &request, def.replicas as usize)
        {
            Ok(outcome) => {
                for node in outcome.placed {
                    *preview.placements.entry(node).or_default() += 1;
                }
                preview.unschedulable = outcome.unschedulable;
            }
            Err(e) => tracing::warn!(error = %e, "preview refused by the scheduler"),
        }
        preview
    }
}
