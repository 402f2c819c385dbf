//! The driver: the one `tokio::select!` loop that feeds facts to the [`Model`] and runs the
//! effects it records.
//!
//! Sources, in the biased order they are polled: shutdown requests; membership events;
//! container status changes; reports of runtime operations; results of background reads
//! (container listings, re-lists of the store); the store's watch; resync requests; timers.
//! After each, dirty workloads are planned (by the model) and the recorded effects are run:
//! store writes go to the persister, runtime operations to the executor, listings to tracked
//! tasks. Nothing here awaits the store or the runtime inside the loop.
//!
//! **The store drives the loop.** Desired state is learnt only from the store: at start-up from
//! a listing at a revision, then from `StateStore::watch` after that revision. When the watch
//! ends (the store dropped a slow watcher, a compaction, an error), a tracked task re-lists
//! everything and opens a new watch from the listed revision, after a backoff if it keeps
//! failing. So any process that writes the store (this daemon's API, another daemon, a test)
//! gets its change reconciled, and a periodic resync re-lists anyway as a safety net.
//!
//! **Publishing.** After an iteration that changed something, the driver publishes a new
//! [`ClusterView`] for readers. Building one costs a pass over the instances and a copy of the
//! cluster state, so when the loop is busy it publishes at most once per twenty times the last
//! publication's cost (at most ~5 % of the loop's time): at a few hundred instances that is
//! every iteration; at 100,000 instances on 5,000 nodes (5–9 ms each) every 100–200 ms. A trailing publication always follows. The
//! model's store writes wait for the publication that shows them, so the store is never ahead
//! of the view for what the loop writes.
//!
//! **Tasks.** Everything the loop starts (operations, listings, re-lists, the persister) is
//! spawned on one [`TaskTracker`]; shutdown closes it, cancels what is left on a forced stop,
//! and waits until every task has ended.

use crate::backoff::Backoff;
use crate::execute::{spawn_tracked, Done, Executor};
use crate::metrics::CoreMetrics;
use crate::model::{Effect, Listed, Model};
use crate::orchestrator::{OrchestratorConfig, ShutdownMode};
use crate::persist::{PersistMsg, Persister};
use crate::view::ClusterView;
use crate::CoreError;
use cluster_manager_interface::{ClusterError, ClusterManager, NodeSubscription};
use container_runtime_interface::{ContainerEvent, ContainerRuntime};
use orchestrator_shared_types::{NodeId, WorkloadDefinition, WorkloadInstance};
use state_store_interface::{
    decode_event, Kind, KindSet, NodeCordon, Revision, StateStore, StoreError, StoreExt, Watch,
    WatchEvent, CORDON_PREFIX,
};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What the loop watches: desired state (workloads; cordons among the nodes). Instance records
/// are its own writes, which it does not need to hear back.
const WATCHED: KindSet = KindSet::of(&[Kind::Workload, Kind::Node]);

/// A publication may cost at most this fraction of the loop's time (1/20 = 5 %).
const PUBLISH_COST_RATIO: u32 = 20;

/// Results of background reads, folded in by the loop.
enum Feedback {
    /// A node's containers.
    Listed(Listed),
    /// Every workload and cordon, read at a revision; with a new watch from that revision when
    /// the old one ended.
    Relisted(Result<Relisted, StoreError>),
}

/// A read of the desired state at a revision, and/or a watch from it.
struct Relisted {
    revision: Revision,
    /// Every workload and cordon; `None` for the first watch, opened at the revision the state
    /// was loaded at.
    listing: Option<Listing>,
    watch: Option<Watch>,
}

/// Every workload (with its revision) and every cordoned node.
struct Listing {
    defs: Vec<(WorkloadDefinition, Revision)>,
    cordons: HashSet<NodeId>,
}

/// Everything the loop listens to.
pub(crate) struct Sources {
    pub(crate) node_events: NodeSubscription,
    pub(crate) container_events: broadcast::Receiver<ContainerEvent>,
    pub(crate) shutdown: watch::Receiver<ShutdownMode>,
    pub(crate) resync: Arc<Notify>,
}

/// When to publish the next view, and the store writes waiting for it.
struct Publisher {
    view: watch::Sender<Arc<ClusterView>>,
    /// Not before this time, unless nothing was published for a while.
    next_allowed: Instant,
    /// A publication is owed at this time.
    due: Option<Instant>,
    /// The model's store writes since the last publication. They go to the persister right
    /// after the view that shows them is published, so a reader never finds in the store a
    /// record of the loop's that is newer than the published view.
    held: Vec<PersistMsg>,
}

/// The I/O half of the loop: the model, the components and the tasks.
pub(crate) struct Driver {
    model: Model,
    store: Arc<dyn StateStore>,
    runtime: Arc<dyn ContainerRuntime>,
    cluster: Arc<dyn ClusterManager>,
    config: OrchestratorConfig,
    persister: Persister,
    executor: Executor,
    tasks: TaskTracker,
    cancel: CancellationToken,
    done: mpsc::UnboundedReceiver<Done>,
    feedback_tx: mpsc::UnboundedSender<Feedback>,
    feedback: mpsc::UnboundedReceiver<Feedback>,
    /// The store's watch, while one is open.
    changes: Option<Watch>,
    /// The revision up to which the model has seen the store's changes.
    revision: Revision,
    /// Backs off re-opening a watch that keeps ending.
    watch_backoff: Backoff,
    watch_opened: Instant,
    /// A re-list is in flight.
    relisting: bool,
    publisher: Publisher,
}

impl Driver {
    /// Loads the cluster's state (nodes, the store at one revision, every node's containers)
    /// into a new model, adopting what is its own, and publishes the first view.
    pub(crate) async fn load(
        model: Model,
        store: Arc<dyn StateStore>,
        runtime: Arc<dyn ContainerRuntime>,
        cluster: Arc<dyn ClusterManager>,
        config: OrchestratorConfig,
        metrics: Arc<CoreMetrics>,
        view: watch::Sender<Arc<ClusterView>>,
    ) -> Result<Self, CoreError> {
        let tasks = TaskTracker::new();
        let cancel = CancellationToken::new();
        let (done_tx, done) = mpsc::unbounded_channel();
        let (feedback_tx, feedback) = mpsc::unbounded_channel();
        let persister = Persister::spawn(store.clone(), metrics, &tasks, cancel.clone());
        let executor = Executor::new(
            runtime.clone(),
            config.max_concurrent_operations,
            config.stop_grace,
            done_tx,
            tasks.clone(),
            cancel.clone(),
        );
        let mut driver = Self {
            model,
            store,
            runtime,
            cluster,
            persister,
            executor,
            tasks,
            cancel,
            done,
            feedback_tx,
            feedback,
            changes: None,
            revision: 0,
            watch_backoff: Backoff::new(config.error_backoff),
            watch_opened: Instant::now(),
            relisting: false,
            publisher: Publisher {
                view,
                next_allowed: Instant::now(),
                due: None,
                held: Vec::new(),
            },
            config,
        };
        if let Err(e) = driver.load_state().await {
            driver.stop_tasks().await;
            return Err(e);
        }
        driver.publish();
        Ok(driver)
    }

    async fn load_state(&mut self) -> Result<(), CoreError> {
        let nodes = self
            .cluster
            .nodes()
            .await
            .map_err(|source| CoreError::Cluster {
                operation: "list nodes",
                source,
            })?;
        for node in nodes {
            self.model.add_node(node);
        }
        // The revision first: anything the lists miss is newer, and the watch replays it.
        self.revision = self
            .store
            .revision()
            .await
            .map_err(CoreError::store("read the store revision"))?;
        for v in self
            .store
            .list_obj::<WorkloadDefinition>("")
            .await
            .map_err(CoreError::store("list workloads"))?
        {
            self.model.load_workload(v.value, v.revision);
        }
        for v in self
            .store
            .list_obj::<WorkloadInstance>("")
            .await
            .map_err(CoreError::store("list instances"))?
        {
            self.model.adopt_record(v.value);
        }
        self.restore_cordons().await?;
        // List every node's containers, a bounded number at a time, to adopt or remove them.
        let node_ids = self.model.node_ids();
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
                    Ok(listed) => self.model.on_listed(listed, Instant::now()),
                    Err(e) => tracing::error!(error = %e, "a container listing task failed"),
                }
            }
        }
        self.model.mark_all_dirty();
        let summary = self.model.summary();
        tracing::info!(
            workloads = summary.workloads,
            instances = summary.instances.values().sum::<usize>(),
            nodes = summary.nodes,
            revision = self.revision,
            "state loaded"
        );
        Ok(())
    }

    /// Re-applies the cordons recorded in the store (see [`NodeCordon`]) to the cluster manager,
    /// which does not keep them across restarts, and to the model, before anything is planned:
    /// the first reconcile places nothing on a cordoned node. The cordon of a node the cluster
    /// manager does not know is kept in the store and left alone.
    async fn restore_cordons(&mut self) -> Result<(), CoreError> {
        let cordons = self
            .store
            .list_obj::<NodeCordon>(CORDON_PREFIX)
            .await
            .map_err(CoreError::store("list node cordons"))?;
        for v in cordons {
            let node = v.value.node_id;
            if self.model.cluster_state().node(&node).is_none() {
                tracing::debug!(%node, "cordoned node not known; cordon kept");
                continue;
            }
            match self.cluster.set_unschedulable(&node, true).await {
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
            tracing::info!(%node, "restored the node's cordon");
            self.model.restore_cordon(&node);
            self.model.on_cordon(&node, true);
        }
        Ok(())
    }

    /// Runs the loop until shutdown, then stops every task it started.
    pub(crate) async fn run(mut self, mut src: Sources) {
        let mut resync = tokio::time::interval(self.config.resync_interval);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        resync.tick().await; // the first tick is immediate; we just loaded everything
        self.open_watch();
        let mut nodes_open = true;
        let mut forced = false;
        self.after_iteration();
        loop {
            self.model.tick();
            let timer = self.model.next_deadline();
            let publish_at = self.publisher.due;
            // Biased, in this order: stop requests first; then facts about the world
            // (membership, container states, operation reports) before new desired state, so a
            // workload submitted right after a node joined is planned with that node.
            tokio::select! {
                biased;
                changed = src.shutdown.changed() => {
                    let mode = if changed.is_ok() { *src.shutdown.borrow() } else { ShutdownMode::Force };
                    match mode {
                        ShutdownMode::Force => { forced = true; break }
                        ShutdownMode::Drain => {
                            tracing::info!("draining: no new work; waiting for operations in flight");
                            self.model.begin_drain();
                        }
                        ShutdownMode::Running => {}
                    }
                }
                event = src.node_events.recv(), if nodes_open => match event {
                    Some(event) => self.model.on_cluster_event(event),
                    None => {
                        tracing::error!("the cluster manager closed its subscription");
                        nodes_open = false;
                    }
                },
                event = src.container_events.recv() => match event {
                    Ok(event) => self.model.on_container_event(event, Instant::now()),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "container events lagged; re-listing containers");
                        self.model.relist_all();
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        tracing::error!("the runtime closed its event channel; relying on resync");
                        src.container_events = self.runtime.subscribe();
                    }
                },
                Some(done) = self.done.recv() => self.model.on_done(done, Instant::now()),
                Some(feedback) = self.feedback.recv() => match feedback {
                    Feedback::Listed(listed) => self.model.on_listed(listed, Instant::now()),
                    Feedback::Relisted(result) => self.on_relisted(result),
                },
                change = next_change(&mut self.changes) => self.on_change(change),
                () = src.resync.notified() => self.relist(None),
                () = sleep_until(timer) => self.model.on_timers(Instant::now()),
                () = sleep_until(publish_at) => self.publish(),
                _ = resync.tick() => self.relist(None),
            }
            if self.model.drained() {
                break;
            }
            self.after_iteration();
        }
        // What the model recorded last is published and goes to the persister, then
        // everything ends.
        self.run_effects();
        self.publish();
        if !forced {
            self.persister.flush().await;
        }
        self.stop_tasks().await;
        tracing::info!("orchestrator stopped");
    }

    /// Closes the tracker, cancels what is left (nothing, after a drain) and waits for every
    /// task.
    async fn stop_tasks(&mut self) {
        self.tasks.close();
        self.cancel.cancel();
        // The persister's task ends when its last sender is gone.
        self.persister = Persister::closed();
        self.changes = None;
        self.tasks.wait().await;
    }

    fn after_iteration(&mut self) {
        self.model.reconcile_dirty(Instant::now());
        self.run_effects();
        if self.model.changed() || !self.publisher.held.is_empty() {
            let now = Instant::now();
            if now >= self.publisher.next_allowed {
                self.publish();
            } else if self.publisher.due.is_none() {
                self.publisher.due = Some(self.publisher.next_allowed);
            }
        }
    }

    /// Publishes a new view (if anything changed), decides when the next may be, and hands
    /// the writes it shows to the persister.
    fn publish(&mut self) {
        if self.model.changed() {
            let started = Instant::now();
            let view = Arc::new(self.model.publish());
            // The old view is dropped here unless a reader still holds it: part of the cost.
            drop(self.publisher.view.send_replace(view));
            let cost = started.elapsed();
            self.publisher.next_allowed = Instant::now() + cost * PUBLISH_COST_RATIO;
        }
        self.publisher.due = None;
        for msg in self.publisher.held.drain(..) {
            self.persister.send(msg);
        }
    }

    fn run_effects(&mut self) {
        for effect in self.model.take_effects() {
            match effect {
                Effect::Persist(msg) => self.publisher.held.push(msg),
                Effect::Run {
                    workload,
                    instance,
                    node,
                    op,
                } => self.executor.spawn(workload, instance, node, op),
                Effect::RemoveOrphan { node, container } => {
                    self.executor.remove_orphan(node, container);
                }
                Effect::Relist { node, requested_at } => self.list_containers(node, requested_at),
            }
        }
    }

    /// Lists a node's containers in a tracked task.
    fn list_containers(&self, node: NodeId, requested_at: u64) {
        let runtime = self.runtime.clone();
        let feedback = self.feedback_tx.clone();
        self.spawn(async move {
            let result = runtime.list(&node).await;
            let _ = feedback.send(Feedback::Listed(Listed {
                node,
                requested_at,
                result,
            }));
        });
    }

    /// Runs `work` in a tracked task that a forced stop abandons.
    fn spawn(&self, work: impl std::future::Future<Output = ()> + Send + 'static) {
        spawn_tracked(&self.tasks, &self.cancel, work);
    }

    // ----- the store's watch ----------------------------------------------------------------

    /// Re-lists the desired state in a tracked task, after `delay`; with `Some(delay)` it also
    /// opens a new watch from the listed revision. One re-list at a time.
    fn relist(&mut self, reopen_after: Option<Duration>) {
        if self.relisting {
            return;
        }
        self.relisting = true;
        let store = self.store.clone();
        let feedback = self.feedback_tx.clone();
        self.spawn(async move {
            if let Some(delay) = reopen_after {
                tokio::time::sleep(delay).await;
            }
            let result = read_desired(store.as_ref(), reopen_after.is_some()).await;
            let _ = feedback.send(Feedback::Relisted(result));
        });
    }

    /// Opens the first watch, from the revision the state was loaded at.
    fn open_watch(&mut self) {
        let store = self.store.clone();
        let feedback = self.feedback_tx.clone();
        let after = self.revision;
        self.relisting = true;
        self.spawn(async move {
            let result = store
                .watch_kinds(after, WATCHED)
                .await
                .map(|watch| Relisted {
                    revision: after,
                    listing: None,
                    watch: Some(watch),
                });
            let _ = feedback.send(Feedback::Relisted(result));
        });
    }

    fn on_relisted(&mut self, result: Result<Relisted, StoreError>) {
        self.relisting = false;
        let failed = result.is_err();
        match result {
            Ok(read) => {
                if let Some(watch) = read.watch {
                    self.changes = Some(watch);
                    self.watch_opened = Instant::now();
                    self.revision = read.revision;
                }
                if let Some(listing) = read.listing {
                    self.model.on_relisted(read.revision, listing.defs);
                    self.model.on_cordons(&listing.cordons);
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading the store failed; keeping what we know"),
        }
        // A watch that ended (or never opened) while this read was in flight.
        if self.changes.is_none() {
            let healthy_for = if failed {
                Duration::ZERO
            } else {
                self.watch_opened.elapsed()
            };
            let delay = self.watch_backoff.fail(healthy_for);
            self.relist(Some(delay));
        }
    }

    fn on_change(&mut self, change: Option<Result<WatchEvent, StoreError>>) {
        let event = match change {
            Some(Ok(event)) => event,
            ended => {
                match ended {
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "the store's watch failed; re-listing")
                    }
                    _ => tracing::warn!("the store ended its watch; re-listing"),
                }
                self.changes = None;
                if !self.relisting {
                    let delay = self.watch_backoff.fail(self.watch_opened.elapsed());
                    self.relist(Some(delay));
                }
                return;
            }
        };
        self.revision = self.revision.max(event.revision);
        match event.kind {
            Kind::Workload => match decode_event::<WorkloadDefinition>(&event) {
                Ok(Some(def)) => self.model.on_workload_put(def, event.revision),
                Ok(None) => self.model.on_workload_deleted(&event.key, event.revision),
                Err(e) => tracing::error!(error = %e, "a stored workload does not decode; ignored"),
            },
            Kind::Node => {
                if let Some(node) = event.key.strip_prefix(CORDON_PREFIX) {
                    self.model
                        .on_cordon(&NodeId::from(node), event.value.is_some());
                }
            }
            // Not watched (see WATCHED).
            Kind::Instance | Kind::Assignment | Kind::ContainerStatus | Kind::Cluster => {}
        }
    }
}

/// Reads every workload and cordon at one revision; with `watch`, opens a watch after it.
async fn read_desired(store: &dyn StateStore, watch: bool) -> Result<Relisted, StoreError> {
    // The revision first: anything the lists miss is newer, and the watch replays it.
    let revision = store.revision().await?;
    let defs = store
        .list_obj::<WorkloadDefinition>("")
        .await?
        .into_iter()
        .map(|v| (v.value, v.revision))
        .collect();
    let cordons = store
        .list_obj::<NodeCordon>(CORDON_PREFIX)
        .await?
        .into_iter()
        .map(|v| v.value.node_id)
        .collect();
    let watch = if watch {
        Some(store.watch_kinds(revision, WATCHED).await?)
    } else {
        None
    };
    Ok(Relisted {
        revision,
        listing: Some(Listing { defs, cordons }),
        watch,
    })
}

async fn next_change(watch: &mut Option<Watch>) -> Option<Result<WatchEvent, StoreError>> {
    match watch {
        Some(w) => w.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
