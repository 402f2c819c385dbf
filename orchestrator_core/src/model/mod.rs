//! The model: everything the reconcile loop knows and decides, with no I/O.
//!
//! [`Model`] holds the desired workloads (fed by the store's watch), the instance table with
//! each instance's allocation, the scheduler's [`ClusterState`], the work queue and the folding
//! of observed container states into instance status. Its methods take facts (a workload
//! changed, a node left, a container exited, an operation finished, time passed) and record
//! what must be done as [`Effect`]s in an outbox; the driver (`crate::driver`) takes them with
//! [`Model::take_effects`] and runs them: runtime operations, store writes, listings. This is
//! chitchat's shape: a pure state machine under a thin I/O loop. The model's unit tests drive
//! it with made-up facts and explicit times, without a runtime, a store or a clock.
//!
//! # Layout
//! * this file: [`Model`], its records, intake of desired state and membership, publishing.
//! * `queue`: [`queue::WorkQueue`], what needs planning and when.
//! * `reconcile`: planning dirty workloads and turning plans into records and effects.
//! * `status`: folding container observations and operation reports into instance status.
//! * `wording`: the text of events.

pub(crate) mod queue;
mod reconcile;
mod status;
pub(crate) mod wording;

#[cfg(test)]
mod tests;

use crate::backoff::Backoff;
use crate::execute::Operation;
use crate::metrics::CoreMetrics;
use crate::orchestrator::{OrchestratorConfig, Summary};
use crate::persist::PersistMsg;
use crate::plan::StopReason;
use crate::view::{ClusterView, WorkloadSlice};
use cluster_manager_interface::ClusterEvent;
use container_runtime_interface::{ContainerInfo, ContainerState, Health, RuntimeError};
use orchestrator_shared_types::{
    ContainerId, Event, EventKind, InstanceId, InstanceStatus, Node, NodeId, NodeStatus,
    WorkloadDefinition, WorkloadId, WorkloadInstance,
};
use queue::WorkQueue;
use scheduler_interface::{Allocation, ClusterState, PlacementRequest, Scheduler};
use state_store_interface::Revision;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use wording::new_event;

/// Something the driver must do for the model.
#[derive(Debug)]
pub(crate) enum Effect {
    /// Write to the store through the persister.
    Persist(PersistMsg),
    /// Run a runtime operation for an instance; its report comes back to
    /// [`Model::on_done`].
    Run {
        workload: WorkloadId,
        instance: InstanceId,
        node: NodeId,
        op: Operation,
    },
    /// Remove a container that belongs to no current instance.
    RemoveOrphan {
        node: NodeId,
        container: ContainerId,
    },
    /// List a node's containers; the result comes back to [`Model::on_listed`].
    Relist { node: NodeId, requested_at: u64 },
}

/// A node's containers, listed for the model.
#[derive(Debug)]
pub(crate) struct Listed {
    pub(crate) node: NodeId,
    /// The model's sequence number when the listing was requested ([`Model::seq`]).
    pub(crate) requested_at: u64,
    pub(crate) result: Result<Vec<ContainerInfo>, RuntimeError>,
}

/// The model's outbox: a separate field so that code holding a record can still send.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    effects: Vec<Effect>,
    /// Workloads whose definition or instances changed since the last publication. Every
    /// change of an instance record is written to the store, so the writes mark them.
    touched: HashSet<WorkloadId>,
}

impl Outbox {
    /// The record is shared, not copied: the next change copies it if the persister (or a
    /// view) still holds it.
    fn put(&mut self, instance: &Arc<WorkloadInstance>) {
        self.touched.insert(instance.workload_id.clone());
        self.effects
            .push(Effect::Persist(PersistMsg::Put(instance.clone())));
    }

    fn delete(&mut self, instance: &Arc<WorkloadInstance>) {
        self.touched.insert(instance.workload_id.clone());
        self.effects
            .push(Effect::Persist(PersistMsg::Delete(instance.clone())));
    }

    fn touch(&mut self, workload: &WorkloadId) {
        self.touched.insert(workload.clone());
    }

    fn event(&mut self, event: Event) {
        self.effects
            .push(Effect::Persist(PersistMsg::Event(Box::new(event))));
    }

    fn push(&mut self, effect: Effect) {
        self.effects.push(effect);
    }
}

/// The model's record of one instance.
#[derive(Debug)]
struct Entry {
    /// Shared with published views: changed through [`Entry::instance_mut`], which copies it
    /// only while a view still holds the old version.
    instance: Arc<WorkloadInstance>,
    /// Where it holds resources, and what.
    allocation: Option<(NodeId, Allocation)>,
    /// Latest observed state of each of its current containers.
    containers: HashMap<ContainerId, ContainerState>,
    /// What the probes of its containers last said (containers nothing probes are absent).
    health: HashMap<ContainerId, Health>,
    /// Since when it has been ready, on the loop's clock.
    ready_at: Option<Instant>,
    /// Do not act on it before this time (restart or retry backoff).
    not_before: Option<Instant>,
    crash_backoff: Backoff,
    error_backoff: Backoff,
    running_since: Option<Instant>,
    stop_reason: Option<StopReason>,
    /// The workload's termination grace when the instance was placed or adopted: a stop after
    /// the workload is deleted (its definition gone) still honours it.
    stop_grace: Option<Duration>,
    /// The workload's pre-stop delay when the instance was placed or adopted (as `stop_grace`).
    pre_stop: Duration,
    /// The model's sequence number when its last start operation finished (`None` while one
    /// is in flight). A container listing requested before that cannot show its containers.
    settled_at: Option<u64>,
}

impl Entry {
    fn instance_mut(&mut self) -> &mut WorkloadInstance {
        Arc::make_mut(&mut self.instance)
    }

    /// Moves the instance to `next`; a refused transition is logged, never silently ignored.
    /// Leaving Running makes it not ready.
    fn transition(&mut self, next: InstanceStatus) -> bool {
        let from = self.instance.status;
        let moved = self.instance_mut().transition(next);
        if !self.instance.ready {
            self.ready_at = None;
        }
        if !moved {
            tracing::warn!(
                instance = %self.instance.id,
                %from,
                to = %next,
                "refused instance status transition"
            );
        }
        moved
    }
}

/// Everything the loop knows; see the module docs.
pub(crate) struct Model {
    config: OrchestratorConfig,
    scheduler: Arc<dyn Scheduler>,
    metrics: Arc<CoreMetrics>,
    out: Outbox,

    /// Desired workloads with the store revision they were read at.
    workloads: HashMap<WorkloadId, (Arc<WorkloadDefinition>, Revision)>,
    /// Workload ids by name (store keys are names).
    names: HashMap<String, WorkloadId>,
    /// Revisions of deletions, so a late or replayed write cannot resurrect a workload.
    deleted: HashMap<WorkloadId, Revision>,
    instances: HashMap<InstanceId, Entry>,
    by_workload: HashMap<WorkloadId, BTreeSet<InstanceId>>,
    state: ClusterState,
    queue: WorkQueue,
    last_unschedulable: HashMap<WorkloadId, String>,
    draining: bool,
    /// Nodes being drained: their instances are moved elsewhere.
    draining_nodes: HashSet<NodeId>,
    /// Counts the loop's iterations; orders listings against operations.
    seq: u64,
    /// Something a view shows changed since the last [`Model::publish`].
    changed: bool,
    /// The workloads' parts of the last published view, rebuilt when touched.
    slices: HashMap<WorkloadId, Arc<WorkloadSlice>>,
    /// Rollouts under way, for their progress deadlines.
    rollouts: HashMap<WorkloadId, RolloutClock>,
}

/// What the loop remembers of a rollout under way: when it last made progress. Kept in memory
/// only: after a restart (or on a new leader) the deadline counts again from the first plan,
/// which delays a rollback by at most one deadline and never causes a wrong one.
#[derive(Debug)]
struct RolloutClock {
    /// The template revision being rolled out.
    revision: u64,
    /// Available new replicas and outdated ones left when progress was last seen.
    seen: (usize, usize),
    last_progress: Instant,
    /// Already failed (and rolled back, or reported): nothing more to do for this revision.
    failed: bool,
}

impl Model {
    /// An empty model.
    pub(crate) fn new(
        config: OrchestratorConfig,
        scheduler: Arc<dyn Scheduler>,
        metrics: Arc<CoreMetrics>,
    ) -> Self {
        Self {
            config,
            scheduler,
            metrics,
            out: Outbox::default(),
            workloads: HashMap::new(),
            names: HashMap::new(),
            deleted: HashMap::new(),
            instances: HashMap::new(),
            by_workload: HashMap::new(),
            state: ClusterState::new(),
            queue: WorkQueue::default(),
            last_unschedulable: HashMap::new(),
            draining: false,
            draining_nodes: HashSet::new(),
            seq: 1,
            changed: true,
            slices: HashMap::new(),
            rollouts: HashMap::new(),
        }
    }

    /// The effects recorded since the last call, in order.
    pub(crate) fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.out.effects)
    }

    /// Starts a new iteration of the loop.
    pub(crate) fn tick(&mut self) {
        self.seq += 1;
    }

    /// The scheduler's view of the nodes.
    pub(crate) fn cluster_state(&self) -> &ClusterState {
        &self.state
    }

    // ----- desired state --------------------------------------------------------------------

    /// Takes a workload read at start-up: no event, nothing planned yet.
    pub(crate) fn load_workload(&mut self, def: WorkloadDefinition, revision: Revision) {
        self.out.touch(&def.id);
        self.names.insert(def.name.clone(), def.id.clone());
        self.workloads
            .insert(def.id.clone(), (Arc::new(def), revision));
        self.changed = true;
    }

    /// A workload was created or changed in the store at `revision` (the watch, or a re-list).
    /// Older news than what the model has is ignored; a change is recorded as an event and the
    /// workload is reconciled.
    pub(crate) fn on_workload_put(&mut self, def: WorkloadDefinition, revision: Revision) {
        if self.deleted.get(&def.id).is_some_and(|r| *r >= revision) {
            return;
        }
        let message = match self.workloads.get(&def.id) {
            Some((_, known)) if *known >= revision => return,
            Some((old, _)) if old.same_desired_state(&def) => None,
            Some((old, _)) => Some(wording::describe_change(old, &def)),
            None => Some(wording::created(&def)),
        };
        if let Some(message) = message {
            let mut event = new_event(EventKind::Updated, &def, None, message);
            event.actor.clone_from(&def.changed_by);
            self.out.event(event);
        }
        let id = def.id.clone();
        self.out.touch(&id);
        self.names.insert(def.name.clone(), id.clone());
        self.workloads.insert(id.clone(), (Arc::new(def), revision));
        self.changed = true;
        self.queue.mark_dirty(id);
    }

    /// The workload stored under `name` was deleted at `revision`.
    pub(crate) fn on_workload_deleted(&mut self, name: &str, revision: Revision) {
        let Some(id) = self.names.get(name).cloned() else {
            return;
        };
        let Some((def, known)) = self.workloads.get(&id) else {
            return;
        };
        if *known >= revision {
            return;
        }
        // The handle stamps the deleter on the definition just before deleting it.
        let mut event = new_event(EventKind::Deleted, def, None, "deleted".to_owned());
        event.actor.clone_from(&def.changed_by);
        self.out.event(event);
        self.out.touch(&id);
        self.workloads.remove(&id);
        self.names.remove(name);
        self.deleted.insert(id.clone(), revision);
        self.changed = true;
        self.queue.mark_dirty(id);
    }

    /// Folds a full read of the workloads at `revision` in: new or newer ones replace ours,
    /// ones missing from the store (and not newer than the read) are deleted, and every
    /// workload is reconciled.
    pub(crate) fn on_relisted(
        &mut self,
        revision: Revision,
        defs: Vec<(WorkloadDefinition, Revision)>,
    ) {
        let seen: HashSet<WorkloadId> = defs.iter().map(|(d, _)| d.id.clone()).collect();
        for (def, rev) in defs {
            self.on_workload_put(def, rev);
        }
        let gone: Vec<String> = self
            .workloads
            .iter()
            .filter(|(id, (_, r))| !seen.contains(*id) && *r <= revision)
            .map(|(_, (d, _))| d.name.clone())
            .collect();
        for name in gone {
            // Deleted at some revision after ours and at most `revision`.
            self.on_workload_deleted(&name, revision);
        }
        self.deleted.retain(|_, r| *r > revision);
        self.mark_all_dirty();
    }

    /// Queues every workload, known or with instances.
    pub(crate) fn mark_all_dirty(&mut self) {
        let all: Vec<WorkloadId> = self
            .workloads
            .keys()
            .chain(self.by_workload.keys())
            .cloned()
            .collect();
        for w in all {
            self.queue.mark_dirty(w);
        }
    }

    /// A node was cordoned for a drain (`true`) or uncordoned (`false`) in the store. A drain
    /// moves the node's instances elsewhere.
    pub(crate) fn on_cordon(&mut self, node: &NodeId, drain: bool) {
        if drain {
            if self.draining_nodes.insert(node.clone()) {
                self.touch_node(node);
            }
        } else {
            self.draining_nodes.remove(node);
        }
    }

    /// The cordoned nodes listed from the store: these are drained, no others.
    pub(crate) fn on_cordons(&mut self, cordoned: &HashSet<NodeId>) {
        let lifted: Vec<NodeId> = self.draining_nodes.difference(cordoned).cloned().collect();
        for node in lifted {
            self.on_cordon(&node, false);
        }
        for node in cordoned {
            self.on_cordon(node, true);
        }
    }

    // ----- instance records -----------------------------------------------------------------

    /// Takes an instance record read from the store at start-up.
    pub(crate) fn adopt_record(&mut self, instance: WorkloadInstance) {
        if instance.status.is_terminal() {
            self.out.delete(&Arc::new(instance));
            return;
        }
        let allocation = match (&instance.node_id, instance.status) {
            (Some(node), s) if s != InstanceStatus::Pending => {
                let def = self.workloads.get(&instance.workload_id).map(|(d, _)| &**d);
                let alloc = allocation_of(def, &instance);
                self.state.allocate(node, &alloc);
                Some((node.clone(), alloc))
            }
            _ => None,
        };
        let running = instance.status == InstanceStatus::Running;
        let def = self.workloads.get(&instance.workload_id).map(|(d, _)| d);
        let stop_grace = def.and_then(|d| d.termination_grace());
        let pre_stop = def.map_or(Duration::ZERO, |d| d.pre_stop());
        // Ready as recorded, for as long as recorded (min_ready_seconds counts across a
        // restart of the daemon).
        let ready_at = instance
            .ready_since
            .filter(|_| instance.ready)
            .map(|since| {
                let now = Instant::now();
                let ready_for = (chrono::Utc::now() - since).to_std().unwrap_or_default();
                now.checked_sub(ready_for).unwrap_or(now)
            });
        self.insert_entry(Entry {
            instance: Arc::new(instance),
            allocation,
            containers: HashMap::new(),
            health: HashMap::new(),
            ready_at,
            not_before: None,
            crash_backoff: Backoff::new(self.config.crash_backoff),
            error_backoff: Backoff::new(self.config.error_backoff),
            running_since: running.then(Instant::now),
            stop_reason: None,
            stop_grace,
            pre_stop,
            settled_at: Some(0),
        });
    }

    fn insert_entry(&mut self, entry: Entry) {
        self.out.touch(&entry.instance.workload_id);
        self.by_workload
            .entry(entry.instance.workload_id.clone())
            .or_default()
            .insert(entry.instance.id.clone());
        self.instances.insert(entry.instance.id.clone(), entry);
        self.changed = true;
    }

    fn remove_entry(&mut self, id: &InstanceId) -> Option<Entry> {
        let entry = self.instances.remove(id)?;
        if let Some(set) = self.by_workload.get_mut(&entry.instance.workload_id) {
            set.remove(id);
            if set.is_empty() {
                self.by_workload.remove(&entry.instance.workload_id);
            }
        }
        if let Some((node, alloc)) = &entry.allocation {
            self.state.release(node, alloc);
            // Room appeared: workloads waiting for it get another chance.
            self.queue.wake_waiting();
        }
        self.out.delete(&entry.instance);
        self.changed = true;
        Some(entry)
    }

    // ----- membership -----------------------------------------------------------------------

    /// A node known at start-up.
    pub(crate) fn add_node(&mut self, node: Node) {
        self.state.upsert_node(node);
        self.changed = true;
    }

    /// Marks a node unschedulable at start-up (its cordon was kept in the store).
    pub(crate) fn restore_cordon(&mut self, node: &NodeId) {
        if let Some(n) = self.state.node(node) {
            let mut n = n.clone();
            n.unschedulable = true;
            self.state.upsert_node(n);
            self.changed = true;
        }
    }

    /// Every known node's id.
    pub(crate) fn node_ids(&self) -> Vec<NodeId> {
        self.state.nodes().map(|n| n.id.clone()).collect()
    }

    /// A membership change.
    pub(crate) fn on_cluster_event(&mut self, event: ClusterEvent) {
        self.changed = true;
        match event {
            ClusterEvent::NodeAdded(node) => {
                let id = node.id.clone();
                self.upsert_node(node);
                // A node coming back may still run containers we replaced meanwhile.
                self.relist(id);
            }
            ClusterEvent::NodeUpdated(node) => {
                let was_down = self
                    .state
                    .node(&node.id)
                    .is_some_and(|n| n.status == NodeStatus::Down);
                let back = was_down && node.status != NodeStatus::Down;
                let id = node.id.clone();
                self.upsert_node(node);
                // Back from the dead: it may still run containers replaced meanwhile.
                if back {
                    self.relist(id);
                }
            }
            ClusterEvent::NodeRemoved(id) => {
                self.state.remove_node(&id);
                self.touch_node(&id);
            }
            ClusterEvent::Resync(nodes) => {
                let known: HashSet<NodeId> = nodes.iter().map(|n| n.id.clone()).collect();
                let gone: Vec<NodeId> = self
                    .node_ids()
                    .into_iter()
                    .filter(|id| !known.contains(id))
                    .collect();
                for id in gone {
                    self.state.remove_node(&id);
                    self.touch_node(&id);
                }
                for node in nodes {
                    self.upsert_node(node);
                }
            }
        }
    }

    fn upsert_node(&mut self, node: Node) {
        let id = node.id.clone();
        let usable = node.is_schedulable();
        if !node.unschedulable {
            self.draining_nodes.remove(&id);
        }
        let down = node.status == NodeStatus::Down;
        self.state.upsert_node(node);
        if down {
            self.touch_node(&id);
        }
        if usable {
            self.queue.wake_waiting();
        }
    }

    /// Queues every workload with an instance on `node`.
    fn touch_node(&mut self, node: &NodeId) {
        let affected: HashSet<WorkloadId> = self
            .instances
            .values()
            .filter(|e| e.instance.node_id.as_ref() == Some(node))
            .map(|e| e.instance.workload_id.clone())
            .collect();
        for w in affected {
            self.queue.mark_dirty(w);
        }
    }

    /// Asks for a listing of every node's containers (after missed container events).
    pub(crate) fn relist_all(&mut self) {
        for node in self.node_ids() {
            self.relist(node);
        }
    }

    fn relist(&mut self, node: NodeId) {
        self.out.push(Effect::Relist {
            node,
            requested_at: self.seq,
        });
    }

    // ----- time and shutdown ----------------------------------------------------------------

    /// When the model next needs [`Model::on_timers`].
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.queue.next_deadline()
    }

    /// Time passed: workloads whose backoff or requeue is due are queued.
    pub(crate) fn on_timers(&mut self, now: Instant) {
        self.queue.fire_timers(now);
    }

    /// Drain: plan nothing new from now on.
    pub(crate) fn begin_drain(&mut self) {
        self.draining = true;
    }

    /// Draining, and no operation is in flight any more.
    pub(crate) fn drained(&self) -> bool {
        self.draining && self.queue.in_flight() == 0
    }

    // ----- views ----------------------------------------------------------------------------

    /// Whether anything a view shows changed since the last [`Model::publish`].
    pub(crate) fn changed(&self) -> bool {
        self.changed
    }

    /// Counts of what the model knows.
    pub(crate) fn summary(&self) -> Summary {
        let mut summary = Summary {
            workloads: self.workloads.len(),
            nodes: self.state.len(),
            in_flight: self.queue.in_flight(),
            ..Default::default()
        };
        for e in self.instances.values() {
            *summary.instances.entry(e.instance.status).or_default() += 1;
        }
        summary
    }

    /// An immutable snapshot for readers. Only the workloads touched since the last
    /// publication are rebuilt; the rest, the instance records and the nodes' entries in the
    /// cluster state are shared with the previous view, so a publication costs about the
    /// changes plus a pointer per workload and per node.
    pub(crate) fn publish(&mut self) -> ClusterView {
        self.changed = false;
        for id in std::mem::take(&mut self.out.touched) {
            let def = self.workloads.get(&id).map(|(d, _)| d.clone());
            let instances: Vec<Arc<WorkloadInstance>> = self
                .by_workload
                .get(&id)
                .into_iter()
                .flatten()
                .filter_map(|i| self.instances.get(i))
                .map(|e| e.instance.clone())
                .collect();
            if def.is_none() && instances.is_empty() {
                self.slices.remove(&id);
            } else {
                self.slices
                    .insert(id, Arc::new(WorkloadSlice::new(def, instances)));
            }
        }
        ClusterView::new(
            self.scheduler.clone(),
            self.queue.in_flight(),
            self.slices.clone(),
            self.state.clone(),
        )
    }
}

/// What a placed instance holds on its node: its workload's request (nothing if the workload
/// is unknown), with the host ports it was given (dynamic ones included). Records written
/// before instances kept their ports fall back on the manifest's static ones.
pub(crate) fn allocation_of(
    def: Option<&WorkloadDefinition>,
    instance: &WorkloadInstance,
) -> Allocation {
    let mut alloc = match def {
        Some(def) => PlacementRequest::for_workload(def).allocation(),
        None => Allocation {
            workload_id: instance.workload_id.clone(),
            resources: Default::default(),
            host_ports: Vec::new(),
        },
    };
    if !instance.ports.is_empty() {
        alloc.host_ports = instance.host_ports();
    }
    alloc
}
