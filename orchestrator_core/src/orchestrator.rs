//! The orchestrator: its builder, the state the loop owns, and the one `tokio::select!` loop.
//!
//! The loop owns every piece of mutable state (no locks): the desired workloads, the instance
//! records (the loop is their only writer, the store their durable mirror, see
//! [`crate::persist`]), and the scheduler's [`ClusterState`]. It reacts to five sources:
//! commands from handles, membership events, container status changes, timers (backoffs) plus a
//! periodic resync, and shutdown. Each reaction only marks workloads dirty or records an
//! observation; after each, dirty workloads that have no operation in flight are planned
//! ([`crate::plan`]) and their steps handed to the [`crate::execute`] tasks, whose reports come
//! back as one more source. So a workload is never reconciled twice at once, and nothing awaits
//! the runtime or the store while holding state.

use crate::backoff::{Backoff, BackoffPolicy};
use crate::error::CoreError;
use crate::execute::{Done, Executor, Operation};
use crate::handle::OrchestratorHandle;
use crate::metrics::CoreMetrics;
use crate::persist::Persister;
use crate::plan::{self, InstanceView, Plan, Step, StopReason};
use cluster_manager_interface::{ClusterError, ClusterEvent, ClusterManager, NodeSubscription};
use container_runtime_interface::{
    ContainerEvent, ContainerInfo, ContainerRuntime, ContainerSpec, ContainerState, RuntimeError,
};
use orchestrator_shared_types::api::{NodeView, PlacementPreview, ReplicaCounts};
use orchestrator_shared_types::Unschedulable;
use orchestrator_shared_types::{
    ContainerId, Event, EventKind, InstanceId, InstanceStatus, Node, NodeId, NodeStatus,
    WorkloadDefinition, WorkloadId, WorkloadInstance,
};
use scheduler_interface::{Allocation, ClusterState, PlacementRequest, Scheduler};
use state_store_interface::{
    NodeCordon, Revision, StateStore, StoreError, StoreExt, Versioned, CORDON_PREFIX,
};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Settings of the loop.
#[derive(Clone, Debug)]
pub struct OrchestratorConfig {
    /// How often every workload is re-read from the store and reconciled, whatever happened.
    pub resync_interval: Duration,
    /// Most runtime operations (start or stop of one instance) in flight at once.
    pub max_concurrent_operations: usize,
    /// Backoff of instances whose containers keep exiting.
    pub crash_backoff: BackoffPolicy,
    /// Backoff of failed runtime operations (start errors, unreachable nodes).
    pub error_backoff: BackoffPolicy,
    /// How long a container gets to exit after being asked to stop.
    pub stop_grace: Duration,
}

impl Default for OrchestratorConfig {
    fn default() -> Self {
        Self {
            resync_interval: Duration::from_secs(30),
            max_concurrent_operations: 64,
            crash_backoff: BackoffPolicy::crash_loop(),
            error_backoff: BackoffPolicy::errors(),
            stop_grace: Duration::from_secs(10),
        }
    }
}

/// How far shutdown has gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ShutdownMode {
    Running,
    /// Start nothing new, let in-flight operations finish, persist, stop.
    Drain,
    /// Stop now.
    Force,
}

/// What handles tell the loop.
#[derive(Debug)]
pub(crate) enum Command {
    /// A workload was created or changed in the store at `revision`.
    Upserted {
        def: WorkloadDefinition,
        revision: Revision,
    },
    /// A workload was deleted from the store at `revision`.
    Deleted { id: WorkloadId, revision: Revision },
    /// Persist an event recorded by a handle (in order with the loop's own).
    Record(Box<Event>),
    /// Move every instance off this node (it is already cordoned).
    Drain(NodeId),
    /// Re-read everything.
    Resync,
    /// Report counts.
    Summary(oneshot::Sender<Summary>),
    /// Report every node with its allocations.
    Nodes(oneshot::Sender<Vec<NodeView>>),
    /// Replica counts of these workloads (`desired` from the loop's copy; zero if unknown).
    Counts {
        ids: Vec<WorkloadId>,
        reply: oneshot::Sender<Vec<ReplicaCounts>>,
    },
    /// Why a replica of this workload would not fit now (`None`: unknown workload).
    Explain {
        name: String,
        reply: oneshot::Sender<Option<Unschedulable>>,
    },
    /// The loop's record of this instance (`None`: unknown).
    Instance {
        id: InstanceId,
        reply: oneshot::Sender<Option<WorkloadInstance>>,
    },
    /// Where the replicas of this definition would go, without changing anything.
    Preview {
        def: Box<WorkloadDefinition>,
        reply: oneshot::Sender<PlacementPreview>,
    },
}

/// Counts of what the loop knows, for status displays, tests and benchmarks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Workloads.
    pub workloads: usize,
    /// Nodes.
    pub nodes: usize,
    /// Instances per status.
    pub instances: BTreeMap<InstanceStatus, usize>,
    /// Workloads with an operation in flight.
    pub in_flight: usize,
}

impl Summary {
    /// Instances with this status.
    pub fn count(&self, status: InstanceStatus) -> usize {
        self.instances.get(&status).copied().unwrap_or(0)
    }
}

/// Builds an orchestrator from its four components.
pub struct OrchestratorBuilder {
    store: Option<Arc<dyn StateStore>>,
    runtime: Option<Arc<dyn ContainerRuntime>>,
    cluster: Option<Arc<dyn ClusterManager>>,
    scheduler: Option<Arc<dyn Scheduler>>,
    config: OrchestratorConfig,
}

impl Default for OrchestratorBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl OrchestratorBuilder {
    /// A builder with the default configuration and no components.
    pub fn new() -> Self {
        Self {
            store: None,
            runtime: None,
            cluster: None,
            scheduler: None,
            config: OrchestratorConfig::default(),
        }
    }

    /// The state store (required).
    pub fn store(mut self, store: Arc<dyn StateStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// The container runtime (required).
    pub fn runtime(mut self, runtime: Arc<dyn ContainerRuntime>) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// The cluster manager (required).
    pub fn cluster_manager(mut self, cluster: Arc<dyn ClusterManager>) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// The scheduler (default: [`scheduler_interface::BinPackScheduler`]).
    pub fn scheduler(mut self, scheduler: Arc<dyn Scheduler>) -> Self {
        self.scheduler = Some(scheduler);
        self
    }

    /// Loop settings.
    pub fn config(mut self, config: OrchestratorConfig) -> Self {
        self.config = config;
        self
    }

    /// Loads the cluster's state (nodes, store, the runtime's containers), adopts what is its own,
    /// and starts the loop. Errors if a component is missing or the initial load fails.
    ///
    /// # Panics
    /// If a required component (store, runtime, cluster manager) was not given.
    pub async fn spawn(self) -> Result<Orchestrator, CoreError> {
        let store = self.store.expect("OrchestratorBuilder: store is required");
        let runtime = self
            .runtime
            .expect("OrchestratorBuilder: runtime is required");
        let cluster = self
            .cluster
            .expect("OrchestratorBuilder: cluster manager is required");
        let scheduler = self
            .scheduler
            .unwrap_or_else(|| Arc::new(scheduler_interface::BinPackScheduler::new()));
        let metrics = Arc::new(CoreMetrics::default());

        // Subscribe before reading, so nothing that happens in between is missed.
        let node_events = cluster.subscribe();
        let container_events = runtime.subscribe();
        let (commands_tx, commands) = mpsc::unbounded_channel();
        let (done_tx, done) = mpsc::unbounded_channel();
        let (feedback_tx, feedback) = mpsc::unbounded_channel();
        let (shutdown_tx, shutdown) = watch::channel(ShutdownMode::Running);
        let (persister, persist_task) = Persister::spawn(store.clone(), metrics.clone());
        let executor = Executor::new(
            runtime.clone(),
            self.config.max_concurrent_operations,
            self.config.stop_grace,
            done_tx,
        );

        let cluster_for_handle = cluster.clone();
        let runtime_for_handle = runtime.clone();
        let mut core = Core {
            store: store.clone(),
            runtime,
            cluster,
            scheduler,
            config: self.config,
            metrics: metrics.clone(),
            persister,
            executor,
            feedback: feedback_tx,
            workloads: HashMap::new(),
            deleted: HashMap::new(),
            instances: HashMap::new(),
            by_workload: HashMap::new(),
            state: ClusterState::new(),
            dirty: VecDeque::new(),
            dirty_set: HashSet::new(),
            in_flight: HashMap::new(),
            rerun: HashSet::new(),
            timers: BinaryHeap::new(),
            waiting_for_room: HashSet::new(),
            last_unschedulable: HashMap::new(),
            draining: false,
            draining_nodes: HashSet::new(),
            seq: 1,
        };
        core.load().await?;
        let handle = OrchestratorHandle {
            commands: commands_tx,
            store,
            cluster: cluster_for_handle,
            runtime: runtime_for_handle,
            shutdown: Arc::new(shutdown_tx),
        };
        let sources = Sources {
            commands,
            done,
            feedback,
            node_events,
            container_events,
            shutdown,
        };
        let task = tokio::spawn(async move {
            core.run(sources).await;
            drop(core);
            let _ = persist_task.await;
        });
        Ok(Orchestrator {
            handle,
            task,
            metrics,
        })
    }
}

/// A running orchestrator: its handle and its task.
pub struct Orchestrator {
    handle: OrchestratorHandle,
    task: JoinHandle<()>,
    metrics: Arc<CoreMetrics>,
}

impl Orchestrator {
    /// A handle for commands (cheap to clone).
    pub fn handle(&self) -> OrchestratorHandle {
        self.handle.clone()
    }

    /// The loop's counters.
    pub fn metrics(&self) -> Arc<CoreMetrics> {
        self.metrics.clone()
    }

    /// Drains and stops the loop, and waits until everything is persisted.
    pub async fn shutdown(self) {
        self.handle.shutdown();
        let _ = self.task.await;
    }

    /// Waits until the loop stops (after a shutdown requested through a handle).
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

/// Everything the loop listens to.
struct Sources {
    commands: mpsc::UnboundedReceiver<Command>,
    done: mpsc::UnboundedReceiver<Done>,
    feedback: mpsc::UnboundedReceiver<Feedback>,
    node_events: NodeSubscription,
    container_events: broadcast::Receiver<ContainerEvent>,
    shutdown: watch::Receiver<ShutdownMode>,
}

/// Results of background reads, folded in by the loop.
enum Feedback {
    /// A node's containers.
    Listed(Listed),
    /// Every workload, read at a store revision.
    Workloads(Result<(Revision, Vec<Versioned<WorkloadDefinition>>), StoreError>),
}

/// A node's containers, listed by a background task.
struct Listed {
    node: NodeId,
    /// The loop's sequence number when the listing was requested.
    requested_at: u64,
    result: Result<Vec<ContainerInfo>, RuntimeError>,
}

/// The loop's record of one instance.
struct Entry {
    instance: WorkloadInstance,
    /// Where it holds resources, and what.
    allocation: Option<(NodeId, Allocation)>,
    /// Latest observed state of each of its current containers.
    containers: HashMap<ContainerId, ContainerState>,
    /// Do not act on it before this time (restart or retry backoff).
    not_before: Option<Instant>,
    crash_backoff: Backoff,
    error_backoff: Backoff,
    running_since: Option<Instant>,
    stop_reason: Option<StopReason>,
    /// The loop's sequence number when its last start operation finished (`None` while one is
    /// in flight). A container listing requested before that cannot show its containers.
    settled_at: Option<u64>,
}

struct Core {
    store: Arc<dyn StateStore>,
    runtime: Arc<dyn ContainerRuntime>,
    cluster: Arc<dyn ClusterManager>,
    scheduler: Arc<dyn Scheduler>,
    config: OrchestratorConfig,
    metrics: Arc<CoreMetrics>,
    persister: Persister,
    executor: Executor,
    feedback: mpsc::UnboundedSender<Feedback>,

    /// Desired workloads with the store revision they were read at.
    workloads: HashMap<WorkloadId, (WorkloadDefinition, Revision)>,
    /// Revisions of deletions, so a late "upserted" message cannot resurrect a workload.
    deleted: HashMap<WorkloadId, Revision>,
    instances: HashMap<InstanceId, Entry>,
    by_workload: HashMap<WorkloadId, BTreeSet<InstanceId>>,
    state: ClusterState,

    dirty: VecDeque<WorkloadId>,
    dirty_set: HashSet<WorkloadId>,
    /// Operations in flight per workload.
    in_flight: HashMap<WorkloadId, usize>,
    /// Workloads made dirty while in flight: planned again when their operations finish.
    rerun: HashSet<WorkloadId>,
    timers: BinaryHeap<Reverse<(Instant, WorkloadId)>>,
    /// Workloads with replicas that fit nowhere: planned again when room appears.
    waiting_for_room: HashSet<WorkloadId>,
    last_unschedulable: HashMap<WorkloadId, String>,
    draining: bool,
    /// Nodes being drained: their instances are moved elsewhere.
    draining_nodes: HashSet<NodeId>,
    /// Counts the loop's iterations; orders listings against operations.
    seq: u64,
}

impl Core {
    // ----- start-up -------------------------------------------------------------------------

    /// Reads nodes, workloads and instances, then lists every node's containers to adopt its own
    /// and remove orphans. Marks everything dirty.
    async fn load(&mut self) -> Result<(), CoreError> {
        let nodes = self
            .cluster
            .nodes()
            .await
            .map_err(|source| CoreError::Cluster {
                operation: "list nodes",
                source,
            })?;
        for node in nodes {
            self.state.upsert_node(node);
        }
        for v in self
            .store
            .list_obj::<WorkloadDefinition>("")
            .await
            .map_err(CoreError::store("list workloads"))?
        {
            self.workloads
                .insert(v.value.id.clone(), (v.value, v.revision));
        }
        for v in self
            .store
            .list_obj::<WorkloadInstance>("")
            .await
            .map_err(CoreError::store("list instances"))?
        {
            self.adopt_record(v.value);
        }
        self.restore_cordons().await?;
        // List every node's containers, a bounded number at a time, to adopt or remove them.
        let node_ids: Vec<NodeId> = self.state.nodes().map(|n| n.id.clone()).collect();
        for chunk in node_ids.chunks(self.config.max_concurrent_operations.max(1)) {
            let mut lists = tokio::task::JoinSet::new();
            for node in chunk {
                let runtime = self.runtime.clone();
                let node = node.clone();
                lists.spawn(async move {
                    let result = runtime.list(&node).await;
                    Listed {
                        node,
                        requested_at: 1,
                        result,
                    }
                });
            }
            while let Some(listed) = lists.join_next().await {
                match listed {
                    Ok(listed) => self.on_listed(listed),
                    Err(e) => tracing::error!(error = %e, "a container listing task failed"),
                }
            }
        }
        let all: Vec<WorkloadId> = self
            .workloads
            .keys()
            .chain(self.by_workload.keys())
            .cloned()
            .collect();
        for w in all {
            self.mark_dirty(w);
        }
        tracing::info!(
            workloads = self.workloads.len(),
            instances = self.instances.len(),
            nodes = self.state.len(),
            "state loaded"
        );
        Ok(())
    }

    /// Re-applies the cordons recorded in the store (see [`NodeCordon`]) to the cluster manager,
    /// which does not keep them across restarts, and to the loop's view of the nodes, before
    /// anything is planned: the first reconcile places nothing on a cordoned node. The cordon of
    /// a node the cluster manager does not know is kept in the store and left alone.
    async fn restore_cordons(&mut self) -> Result<(), CoreError> {
        let cordons = self
            .store
            .list_obj::<NodeCordon>(CORDON_PREFIX)
            .await
            .map_err(CoreError::store("list node cordons"))?;
        for v in cordons {
            let Some(node) = self.state.node(&v.value.node_id) else {
                tracing::debug!(node = %v.value.node_id, "cordoned node not known; cordon kept");
                continue;
            };
            let mut node = node.clone();
            match self.cluster.set_unschedulable(&node.id, true).await {
                Ok(()) => {}
                // Gone since it was listed: nothing to place on it anyway.
                Err(ClusterError::NodeNotFound(_)) => continue,
                Err(source) => {
                    return Err(CoreError::Cluster {
                        operation: "restore node cordon",
                        source,
                    })
                }
            }
            tracing::info!(node = %node.id, "restored the node's cordon");
            node.unschedulable = true;
            self.state.upsert_node(node);
        }
        Ok(())
    }

    /// Takes an instance record read from the store into the loop's state.
    fn adopt_record(&mut self, instance: WorkloadInstance) {
        if instance.status.is_terminal() {
            self.persister.delete(&instance);
            return;
        }
        let allocation = match (&instance.node_id, instance.status) {
            (Some(node), s) if s != InstanceStatus::Pending => {
                let mut alloc = match self.workloads.get(&instance.workload_id) {
                    Some((def, _)) => PlacementRequest::for_workload(def).allocation(),
                    None => Allocation {
                        workload_id: instance.workload_id.clone(),
                        resources: Default::default(),
                        host_ports: Vec::new(),
                    },
                };
                // The ports it was given (dynamic ones included) stay claimed. Records written
                // before instances kept their ports fall back on the manifest's static ones.
                if !instance.ports.is_empty() {
                    alloc.host_ports = instance.host_ports();
                }
                self.state.allocate(node, &alloc);
                Some((node.clone(), alloc))
            }
            _ => None,
        };
        let running = instance.status == InstanceStatus::Running;
        self.insert_entry(Entry {
            instance,
            allocation,
            containers: HashMap::new(),
            not_before: None,
            crash_backoff: Backoff::new(self.config.crash_backoff),
            error_backoff: Backoff::new(self.config.error_backoff),
            running_since: running.then(Instant::now),
            stop_reason: None,
            settled_at: Some(0),
        });
    }

    fn insert_entry(&mut self, entry: Entry) {
        self.by_workload
            .entry(entry.instance.workload_id.clone())
            .or_default()
            .insert(entry.instance.id.clone());
        self.instances.insert(entry.instance.id.clone(), entry);
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
            self.wake_waiting();
        }
        self.persister.delete(&entry.instance);
        Some(entry)
    }

    // ----- the loop -------------------------------------------------------------------------

    async fn run(&mut self, mut src: Sources) {
        let mut resync = tokio::time::interval(self.config.resync_interval);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        resync.tick().await; // the first tick is immediate; we just loaded everything
        let mut nodes_open = true;
        self.reconcile_dirty();
        loop {
            let next_timer = self.timers.peek().map(|Reverse((at, _))| *at);
            self.seq += 1;
            // Biased, in this order: stop requests first; then facts about the world
            // (membership, container states, operation reports) before new desired state, so a
            // workload submitted right after a node joined is planned with that node.
            tokio::select! {
                biased;
                changed = src.shutdown.changed() => {
                    let mode = if changed.is_ok() { *src.shutdown.borrow() } else { ShutdownMode::Force };
                    match mode {
                        ShutdownMode::Force => break,
                        ShutdownMode::Drain => {
                            tracing::info!("draining: no new work; waiting for operations in flight");
                            self.draining = true;
                        }
                        ShutdownMode::Running => {}
                    }
                }
                event = src.node_events.recv(), if nodes_open => match event {
                    Some(event) => self.on_cluster_event(event),
                    None => {
                        tracing::error!("the cluster manager closed its subscription");
                        nodes_open = false;
                    }
                },
                event = src.container_events.recv() => match event {
                    Ok(event) => self.on_container_event(event),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "container events lagged; re-listing containers");
                        self.relist_all();
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        tracing::error!("the runtime closed its event channel; relying on resync");
                        src.container_events = self.runtime.subscribe();
                    }
                },
                Some(done) = src.done.recv() => self.on_done(done),
                Some(feedback) = src.feedback.recv() => match feedback {
                    Feedback::Listed(listed) => self.on_listed(listed),
                    Feedback::Workloads(result) => self.on_resync(result),
                },
                Some(command) = src.commands.recv() => self.on_command(command),
                _ = sleep_until(next_timer) => self.on_timers(),
                _ = resync.tick() => self.start_resync(),
            }
            if self.draining && self.in_flight.is_empty() {
                break;
            }
            self.reconcile_dirty();
        }
        self.persister.flush().await;
        tracing::info!("orchestrator stopped");
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Upserted { def, revision } => self.upsert_workload(def, revision),
            Command::Deleted { id, revision } => {
                if self.workloads.get(&id).is_some_and(|(_, r)| *r < revision) {
                    self.workloads.remove(&id);
                }
                self.deleted.insert(id.clone(), revision);
                self.mark_dirty(id);
            }
            Command::Record(event) => self.persister.event(*event),
            Command::Drain(node) => {
                // Forgotten when the node is made schedulable again (see upsert_node).
                self.draining_nodes.insert(node.clone());
                self.touch_node(&node);
            }
            Command::Resync => self.start_resync(),
            Command::Summary(reply) => {
                let mut summary = Summary {
                    workloads: self.workloads.len(),
                    nodes: self.state.len(),
                    in_flight: self.in_flight.len(),
                    ..Default::default()
                };
                for e in self.instances.values() {
                    *summary.instances.entry(e.instance.status).or_default() += 1;
                }
                let _ = reply.send(summary);
            }
            Command::Nodes(reply) => {
                let mut counts: HashMap<&NodeId, usize> = HashMap::new();
                for e in self.instances.values() {
                    if let Some((node, _)) = &e.allocation {
                        *counts.entry(node).or_default() += 1;
                    }
                }
                let mut views: Vec<NodeView> = self
                    .state
                    .nodes()
                    .map(|n| NodeView {
                        node: n.clone(),
                        allocated: self.state.allocated(&n.id),
                        instances: counts.get(&n.id).copied().unwrap_or(0),
                    })
                    .collect();
                views.sort_by(|a, b| a.node.id.cmp(&b.node.id));
                let _ = reply.send(views);
            }
            Command::Counts { ids, reply } => {
                let counts = ids
                    .iter()
                    .map(|id| {
                        let mut c = ReplicaCounts {
                            desired: self.workloads.get(id).map_or(0, |(d, _)| d.replicas),
                            ..Default::default()
                        };
                        for i in self.by_workload.get(id).into_iter().flatten() {
                            if let Some(e) = self.instances.get(i) {
                                c.count(e.instance.status);
                            }
                        }
                        c
                    })
                    .collect();
                let _ = reply.send(counts);
            }
            Command::Explain { name, reply } => {
                let explanation =
                    self.workloads
                        .values()
                        .find(|(d, _)| d.name == name)
                        .map(|(d, _)| {
                            self.scheduler
                                .explain(&self.state, &PlacementRequest::for_workload(d))
                        });
                let _ = reply.send(explanation);
            }
            Command::Instance { id, reply } => {
                let _ = reply.send(self.instances.get(&id).map(|e| e.instance.clone()));
            }
            Command::Preview { def, reply } => {
                // A copy of the cluster: the real one must not see these placements.
                let mut scratch = self.state.clone();
                let request = PlacementRequest::for_workload(&def);
                let existing = self
                    .workloads
                    .values()
                    .find(|(d, _)| d.name == def.name)
                    .map(|(d, _)| d.id.clone());
                // Replicas the workload already has free their room in the preview, as an
                // update would replace them.
                if let Some(id) = existing {
                    for e in self
                        .instances
                        .values()
                        .filter(|e| e.instance.workload_id == id)
                    {
                        if let Some((node, alloc)) = &e.allocation {
                            scratch.release(node, alloc);
                        }
                    }
                }
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
                let _ = reply.send(preview);
            }
        }
    }

    fn upsert_workload(&mut self, def: WorkloadDefinition, revision: Revision) {
        if self.deleted.get(&def.id).is_some_and(|r| *r >= revision) {
            return;
        }
        match self.workloads.get(&def.id) {
            Some((_, known)) if *known >= revision => {}
            _ => {
                let id = def.id.clone();
                self.workloads.insert(id.clone(), (def, revision));
                self.mark_dirty(id);
            }
        }
    }

    /// Re-reads every workload from the store in the background; see [`Core::on_resync`].
    fn start_resync(&mut self) {
        let store = self.store.clone();
        let feedback = self.feedback.clone();
        tokio::spawn(async move {
            let result = async {
                // The revision first: anything the list misses is newer than it.
                let revision = store.revision().await?;
                let defs = store.list_obj::<WorkloadDefinition>("").await?;
                Ok((revision, defs))
            }
            .await;
            let _ = feedback.send(Feedback::Workloads(result));
        });
    }

    /// Folds a full read of the workloads in: new or newer ones replace ours, ones missing from
    /// the store (and not newer than the read) are deleted, and every workload is reconciled.
    fn on_resync(
        &mut self,
        result: Result<(Revision, Vec<Versioned<WorkloadDefinition>>), StoreError>,
    ) {
        let (revision, defs) = match result {
            Ok(read) => read,
            Err(e) => {
                tracing::warn!(error = %e, "resync could not read workloads; keeping what we know");
                return;
            }
        };
        let seen: HashSet<WorkloadId> = defs.iter().map(|v| v.value.id.clone()).collect();
        for v in defs {
            self.upsert_workload(v.value, v.revision);
        }
        self.workloads
            .retain(|id, (_, r)| seen.contains(id) || *r > revision);
        self.deleted.retain(|_, r| *r > revision);
        let all: Vec<WorkloadId> = self
            .workloads
            .keys()
            .chain(self.by_workload.keys())
            .cloned()
            .collect();
        for w in all {
            self.mark_dirty(w);
        }
    }

    // ----- scheduling reconciles ------------------------------------------------------------

    fn mark_dirty(&mut self, workload: WorkloadId) {
        if self.in_flight.contains_key(&workload) {
            self.rerun.insert(workload);
        } else if self.dirty_set.insert(workload.clone()) {
            self.dirty.push_back(workload);
        }
    }

    fn wake_waiting(&mut self) {
        for w in std::mem::take(&mut self.waiting_for_room) {
            self.mark_dirty(w);
        }
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            if let Some(Reverse((_, w))) = self.timers.pop() {
                self.mark_dirty(w);
            }
        }
    }

    fn reconcile_dirty(&mut self) {
        if self.draining {
            return;
        }
        while let Some(w) = self.dirty.pop_front() {
            self.dirty_set.remove(&w);
            if self.in_flight.contains_key(&w) {
                self.rerun.insert(w);
            } else {
                self.reconcile(w);
            }
        }
    }

    /// Plans one workload and starts executing the plan.
    fn reconcile(&mut self, workload: WorkloadId) {
        let started = std::time::Instant::now();
        let now = Instant::now();
        let def = self.workloads.get(&workload).map(|(d, _)| d.clone());
        let plan = {
            let views: Vec<InstanceView<'_>> = self
                .by_workload
                .get(&workload)
                .into_iter()
                .flatten()
                .filter_map(|id| self.instances.get(id))
                .map(|e| InstanceView {
                    instance: &e.instance,
                    not_before: e.not_before,
                    evict: e
                        .instance
                        .node_id
                        .as_ref()
                        .is_some_and(|n| self.draining_nodes.contains(n)),
                })
                .collect();
            plan::plan(
                def.as_ref(),
                &views,
                &mut self.state,
                self.scheduler.as_ref(),
                now,
            )
        };
        let placements = plan
            .steps
            .iter()
            .filter(|s| matches!(s, Step::Place { .. }))
            .count();
        self.metrics
            .record_reconcile(started.elapsed(), placements, plan.unschedulable.is_some());
        self.apply(&workload, def.as_ref(), plan);
    }

    /// Applies a plan: records go to the loop's state and the persister at once (the loop's
    /// state is authoritative); runtime operations are spawned.
    fn apply(&mut self, workload: &WorkloadId, def: Option<&WorkloadDefinition>, plan: Plan) {
        for step in plan.steps {
            match step {
                Step::Place {
                    instance,
                    allocation,
                    replaces,
                } => {
                    let Some(def) = def else { continue };
                    let node = instance.node_id.clone().unwrap_or_default();
                    let (kind, message) = match &replaces {
                        Some((old, old_node)) => (
                            EventKind::Rescheduled,
                            format!(
                                "replaces {old} lost with node {old_node}; placed on node {node}"
                            ),
                        ),
                        None => (EventKind::Scheduled, format!("placed on node {node}")),
                    };
                    self.event(kind, def, Some(&instance), message);
                    let specs = container_specs(def, &instance);
                    self.persister.put(&instance);
                    let previous = self.instances.remove(&instance.id);
                    self.insert_entry(Entry {
                        instance,
                        allocation: Some((node.clone(), allocation)),
                        containers: HashMap::new(),
                        not_before: None,
                        crash_backoff: previous
                            .as_ref()
                            .map_or(Backoff::new(self.config.crash_backoff), |p| p.crash_backoff),
                        error_backoff: Backoff::new(self.config.error_backoff),
                        running_since: None,
                        stop_reason: None,
                        settled_at: None,
                    });
                    let id = specs.first().map(|s| s.instance_id.clone());
                    if let Some(id) = id {
                        self.spawn_op(
                            workload,
                            id,
                            node,
                            Operation::Start {
                                stale: Vec::new(),
                                specs,
                            },
                        );
                    }
                }
                Step::Pending { instance } => {
                    self.persister.put(&instance);
                    self.insert_entry(Entry {
                        instance,
                        allocation: None,
                        containers: HashMap::new(),
                        not_before: None,
                        crash_backoff: Backoff::new(self.config.crash_backoff),
                        error_backoff: Backoff::new(self.config.error_backoff),
                        running_since: None,
                        stop_reason: None,
                        settled_at: Some(self.seq),
                    });
                }
                Step::Restart { instance_id } => {
                    let Some(def) = def else { continue };
                    let Some(entry) = self.instances.get_mut(&instance_id) else {
                        continue;
                    };
                    let stale = std::mem::take(&mut entry.instance.container_ids);
                    entry.instance.restart_count += 1;
                    entry.instance.container_ids = plan::container_ids(def, &entry.instance);
                    entry.instance.transition(InstanceStatus::Scheduled);
                    entry.containers.clear();
                    entry.not_before = None;
                    entry.settled_at = None;
                    let node = entry.instance.node_id.clone().unwrap_or_default();
                    let specs = container_specs(def, &entry.instance);
                    let message = format!(
                        "restart #{} on node {node} (last exit code {})",
                        entry.instance.restart_count,
                        entry
                            .instance
                            .last_exit_code
                            .map_or_else(|| "none".to_owned(), |c| c.to_string())
                    );
                    self.persister.put(&entry.instance);
                    let instance = entry.instance.clone();
                    self.metrics.add_restart();
                    self.event(EventKind::Restarted, def, Some(&instance), message);
                    self.spawn_op(
                        workload,
                        instance_id,
                        node,
                        Operation::Start { stale, specs },
                    );
                }
                Step::Stop {
                    instance_id,
                    reason,
                } => {
                    let Some(entry) = self.instances.get_mut(&instance_id) else {
                        continue;
                    };
                    let Some(node) = entry.instance.node_id.clone() else {
                        // Never placed: nothing to stop.
                        self.remove_entry(&instance_id);
                        continue;
                    };
                    entry.instance.transition(InstanceStatus::Stopping);
                    entry.not_before = None;
                    if reason != StopReason::Retry {
                        entry.stop_reason = Some(reason);
                    }
                    self.persister.put(&entry.instance);
                    let containers = entry.instance.container_ids.clone();
                    self.spawn_op(workload, instance_id, node, Operation::Stop { containers });
                }
                Step::Forget { instance_id } => {
                    if let Some(entry) = self.remove_entry(&instance_id) {
                        if let (Some(def), Some(node)) = (def, &entry.instance.node_id) {
                            if entry.instance.status.is_live() {
                                let message =
                                    format!("node {node} is down or gone; the instance is lost");
                                self.event(EventKind::Failed, def, Some(&entry.instance), message);
                            }
                        }
                    }
                }
            }
        }
        match (plan.unschedulable, def) {
            (Some(u), Some(def)) => {
                self.waiting_for_room.insert(workload.clone());
                let message = format!("{} replica(s) pending: {u}", u.unplaced);
                if self.last_unschedulable.get(workload) != Some(&message) {
                    self.last_unschedulable
                        .insert(workload.clone(), message.clone());
                    let mut event = new_event(EventKind::Unschedulable, def, None, message);
                    event.unschedulable = Some(u);
                    self.persister.event(event);
                }
            }
            _ => {
                self.waiting_for_room.remove(workload);
                self.last_unschedulable.remove(workload);
            }
        }
        if let Some(at) = plan.requeue_at {
            self.timers.push(Reverse((at, workload.clone())));
        }
        if def.is_none() && !self.by_workload.contains_key(workload) {
            self.deleted.remove(workload);
        }
    }

    fn spawn_op(
        &mut self,
        workload: &WorkloadId,
        instance: InstanceId,
        node: NodeId,
        op: Operation,
    ) {
        *self.in_flight.entry(workload.clone()).or_default() += 1;
        self.executor.spawn(workload.clone(), instance, node, op);
    }

    fn event(
        &self,
        kind: EventKind,
        def: &WorkloadDefinition,
        instance: Option<&WorkloadInstance>,
        message: String,
    ) {
        self.persister
            .event(new_event(kind, def, instance, message));
    }

    // ----- reports from operations ----------------------------------------------------------

    fn on_done(&mut self, done: Done) {
        if let Some(n) = self.in_flight.get_mut(&done.workload) {
            *n -= 1;
            if *n == 0 {
                self.in_flight.remove(&done.workload);
                if self.rerun.remove(&done.workload) {
                    self.mark_dirty(done.workload.clone());
                }
            }
        }
        let now = Instant::now();
        if done.started {
            if let Some(entry) = self.instances.get_mut(&done.instance) {
                entry.settled_at = Some(self.seq);
            }
        }
        let def = self.workloads.get(&done.workload).map(|(d, _)| d.clone());
        match (done.started, done.result) {
            (true, Ok(())) => {}
            (true, Err(error)) => {
                let Some(entry) = self.instances.get_mut(&done.instance) else {
                    return;
                };
                if entry.instance.status != InstanceStatus::Scheduled {
                    return;
                }
                entry.instance.transition(InstanceStatus::Failed);
                entry.instance.last_error = Some(error.to_string());
                entry.instance.last_exit_code = None;
                let delay = if error.is_transient() {
                    entry.error_backoff.fail(Duration::ZERO)
                } else {
                    entry.crash_backoff.fail(Duration::ZERO)
                };
                entry.not_before = Some(now + delay);
                self.persister.put(&entry.instance);
                let instance = entry.instance.clone();
                if let Some(def) = &def {
                    let retry = if def.restart_policy.restarts(None) {
                        format!("; retrying in {:.1}s", delay.as_secs_f64())
                    } else {
                        String::new()
                    };
                    self.event(
                        EventKind::Failed,
                        def,
                        Some(&instance),
                        format!("{error}{retry}"),
                    );
                }
                self.timers
                    .push(Reverse((now + delay, done.workload.clone())));
                self.mark_dirty(done.workload);
            }
            (false, Ok(())) => {
                if let Some(entry) = self.remove_entry(&done.instance) {
                    if let (Some(def), Some(node)) = (&def, &entry.instance.node_id) {
                        let why = match entry.stop_reason {
                            Some(StopReason::ScaledDown) => "scaled down",
                            Some(StopReason::SpecChanged) => "template changed",
                            Some(StopReason::Drained) => "node drained",
                            _ => "stopped",
                        };
                        self.event(
                            EventKind::Stopped,
                            def,
                            Some(&entry.instance),
                            format!("stopped and removed from node {node} ({why})"),
                        );
                    }
                }
                self.mark_dirty(done.workload);
            }
            (false, Err(error)) => {
                let Some(entry) = self.instances.get_mut(&done.instance) else {
                    return;
                };
                let delay = entry.error_backoff.fail(Duration::ZERO);
                entry.not_before = Some(now + delay);
                entry.instance.last_error = Some(error.to_string());
                self.persister.put(&entry.instance);
                tracing::warn!(instance = %done.instance, %error, ?delay, "stopping failed; will retry");
                self.timers.push(Reverse((now + delay, done.workload)));
            }
        }
    }

    // ----- container observations -----------------------------------------------------------

    fn on_container_event(&mut self, event: ContainerEvent) {
        self.observe(
            &event.instance_id,
            &event.node_id,
            event.container_id,
            event.state,
        );
    }

    /// Folds one observed container state into its instance.
    fn observe(
        &mut self,
        instance: &InstanceId,
        node: &NodeId,
        container: ContainerId,
        state: ContainerState,
    ) {
        let Some(entry) = self.instances.get_mut(instance) else {
            return;
        };
        if entry.instance.node_id.as_ref() != Some(node)
            || !entry.instance.container_ids.contains(&container)
        {
            // A previous incarnation's container or another node's: not this instance's now.
            return;
        }
        entry.containers.insert(container, state);
        if !matches!(
            entry.instance.status,
            InstanceStatus::Scheduled | InstanceStatus::Running
        ) {
            return;
        }
        let all_running = entry.instance.container_ids.len() == entry.containers.len()
            && entry
                .containers
                .values()
                .all(|s| *s == ContainerState::Running);
        // An instance ends when a container fails, or when all of them have exited; one that
        // exits 0 while its siblings run is simply done (Kubernetes' pods behave the same).
        let failed = entry
            .containers
            .values()
            .find(|s| {
                matches!(
                    s,
                    ContainerState::Failed { .. } | ContainerState::Killed { .. }
                ) || matches!(s, ContainerState::Exited { code } if *code != 0)
            })
            .cloned();
        let all_exited = entry.instance.container_ids.len() == entry.containers.len()
            && entry
                .containers
                .values()
                .all(|s| matches!(s, ContainerState::Exited { .. }));
        let ended = failed.or_else(|| all_exited.then_some(ContainerState::Exited { code: 0 }));
        if let Some(ended) = ended {
            let (code, message) = match ended {
                ContainerState::Exited { code } => (Some(code), None),
                ContainerState::Killed { code, reason } => (Some(code), Some(reason)),
                ContainerState::Failed { message } => (None, Some(message)),
                _ => (None, None),
            };
            self.on_exit(instance, code, message, false);
        } else if all_running && entry.instance.status == InstanceStatus::Scheduled {
            entry.instance.transition(InstanceStatus::Running);
            entry.running_since = Some(Instant::now());
            entry.instance.last_error = None;
            self.persister.put(&entry.instance);
            let instance = entry.instance.clone();
            if let Some((def, _)) = self.workloads.get(&instance.workload_id) {
                let node = instance.node_id.clone().unwrap_or_default();
                self.event(
                    EventKind::Started,
                    def,
                    Some(&instance),
                    format!("running on node {node}"),
                );
            }
        }
    }

    /// An instance's containers ended: an exit or a runtime failure, or they `vanished` from the
    /// runtime (a reboot, a restarted runtime). Vanishing is not the application's crash, so it
    /// backs off like an operation error, not like a crash loop.
    fn on_exit(
        &mut self,
        instance: &InstanceId,
        code: Option<i32>,
        message: Option<String>,
        vanished: bool,
    ) {
        let now = Instant::now();
        let Some(entry) = self.instances.get_mut(instance) else {
            return;
        };
        let succeeded = code == Some(0)
            && entry
                .containers
                .values()
                .all(|s| *s == ContainerState::Exited { code: 0 });
        let status = if succeeded {
            InstanceStatus::Succeeded
        } else {
            InstanceStatus::Failed
        };
        if !entry.instance.transition(status) {
            return;
        }
        entry.instance.last_exit_code = code;
        entry.instance.last_error = message.clone();
        let healthy_for = entry
            .running_since
            .take()
            .map_or(Duration::ZERO, |t| now - t);
        let workload = entry.instance.workload_id.clone();
        let def = self.workloads.get(&workload).map(|(d, _)| d);
        let restarts = def.is_some_and(|d| d.restart_policy.restarts(code));
        let mut detail = match (code, &message) {
            (Some(code), Some(reason)) => format!("exited with code {code}: {reason}"),
            (Some(code), None) => format!("exited with code {code}"),
            (None, Some(m)) => m.clone(),
            (None, None) => "ended".to_owned(),
        };
        if restarts {
            let delay = if vanished {
                entry.error_backoff.fail(healthy_for)
            } else {
                entry.crash_backoff.fail(healthy_for)
            };
            entry.not_before = Some(now + delay);
            self.timers.push(Reverse((now + delay, workload.clone())));
            detail.push_str(&format!("; restarting in {:.1}s", delay.as_secs_f64()));
        } else if let Some(def) = def {
            detail.push_str(&format!(
                "; not restarted (restart policy {:?})",
                def.restart_policy
            ));
        }
        self.persister.put(&entry.instance);
        if let Some(def) = def {
            let kind = if succeeded {
                EventKind::Stopped
            } else {
                EventKind::Failed
            };
            let event = new_event(kind, def, Some(&entry.instance), detail);
            self.persister.event(event);
        }
        self.mark_dirty(workload);
    }

    /// Folds a node's container listing in: its own containers update their instances, others are
    /// orphans and are removed, and running instances whose containers are gone have ended.
    fn on_listed(&mut self, listed: Listed) {
        let containers = match listed.result {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(node = %listed.node, error = %e, "listing containers failed");
                return;
            }
        };
        let mut present: HashSet<ContainerId> = HashSet::new();
        for info in containers {
            present.insert(info.id.clone());
            let ours = self.instances.get(&info.instance_id).is_some_and(|e| {
                e.instance.node_id.as_ref() == Some(&listed.node)
                    && (e.instance.container_ids.contains(&info.id)
                        || e.instance.status == InstanceStatus::Stopping)
            });
            if ours {
                self.observe(&info.instance_id, &listed.node, info.id, info.state);
            } else {
                // Not a current container of a known instance: an unknown instance's, or an
                // earlier incarnation's left by a crash mid-restart. Removing is idempotent, so
                // racing a stop or restart that removes it too is harmless.
                self.executor.remove_orphan(listed.node.clone(), info.id);
            }
        }
        let vanished: Vec<InstanceId> = self
            .instances
            .values()
            .filter(|e| {
                e.instance.node_id.as_ref() == Some(&listed.node)
                    && matches!(
                        e.instance.status,
                        InstanceStatus::Scheduled | InstanceStatus::Running
                    )
                    && e.settled_at.is_some_and(|at| at < listed.requested_at)
                    && e.instance
                        .container_ids
                        .iter()
                        .any(|c| !present.contains(c))
            })
            .map(|e| e.instance.id.clone())
            .collect();
        for id in vanished {
            self.on_exit(
                &id,
                None,
                Some("its containers are gone from the runtime".to_owned()),
                true,
            );
        }
    }

    /// Lists every node's containers in the background (after missed container events).
    fn relist_all(&mut self) {
        let nodes: Vec<NodeId> = self.state.nodes().map(|n| n.id.clone()).collect();
        for node in nodes {
            self.relist(node);
        }
    }

    fn relist(&self, node: NodeId) {
        let runtime = self.runtime.clone();
        let feedback = self.feedback.clone();
        let requested_at = self.seq;
        tokio::spawn(async move {
            let result = runtime.list(&node).await;
            let _ = feedback.send(Feedback::Listed(Listed {
                node,
                requested_at,
                result,
            }));
        });
    }

    // ----- membership -----------------------------------------------------------------------

    fn on_cluster_event(&mut self, event: ClusterEvent) {
        match event {
            ClusterEvent::NodeAdded(node) => {
                let id = node.id.clone();
                self.upsert_node(node);
                // A node coming back may still run containers we replaced meanwhile.
                self.relist(id);
            }
            ClusterEvent::NodeUpdated(node) => self.upsert_node(node),
            ClusterEvent::NodeRemoved(id) => {
                self.state.remove_node(&id);
                self.touch_node(&id);
            }
            ClusterEvent::Resync(nodes) => {
                let known: HashSet<NodeId> = nodes.iter().map(|n| n.id.clone()).collect();
                let gone: Vec<NodeId> = self
                    .state
                    .nodes()
                    .map(|n| n.id.clone())
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
            self.wake_waiting();
        }
    }

    /// Marks dirty every workload with an instance on `node`.
    fn touch_node(&mut self, node: &NodeId) {
        let affected: HashSet<WorkloadId> = self
            .instances
            .values()
            .filter(|e| e.instance.node_id.as_ref() == Some(node))
            .map(|e| e.instance.workload_id.clone())
            .collect();
        for w in affected {
            self.mark_dirty(w);
        }
    }
}

fn new_event(
    kind: EventKind,
    def: &WorkloadDefinition,
    instance: Option<&WorkloadInstance>,
    message: String,
) -> Event {
    let mut event = Event::new(kind, message);
    event.workload_id = Some(def.id.clone());
    event.workload_name = Some(def.name.clone());
    if let Some(i) = instance {
        event.instance_id = Some(i.id.clone());
        event.node_id.clone_from(&i.node_id);
    }
    event
}

/// The runtime specs of an instance's containers, ids matching its record, with the variables
/// of [`plan::port_env`] in their environments.
fn container_specs(def: &WorkloadDefinition, instance: &WorkloadInstance) -> Vec<ContainerSpec> {
    def.containers
        .iter()
        .zip(&instance.container_ids)
        .map(|(config, id)| {
            let mut config = config.clone();
            config.env.extend(plan::port_env(def, instance, &config));
            ContainerSpec {
                id: id.clone(),
                instance_id: instance.id.clone(),
                workload_id: def.id.clone(),
                config,
            }
        })
        .collect()
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
