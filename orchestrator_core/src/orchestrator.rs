//! The orchestrator's public face: its settings, its builder, and the running [`Orchestrator`].
//!
//! [`OrchestratorBuilder::spawn`] loads the cluster's state into a [`Model`](crate::model) through
//! the [`Driver`](crate::driver), publishes the first [`ClusterView`], and starts the loop in one
//! task. Handles write desired state to the store (which the loop watches) and read the
//! published views; they never wait in the loop's queue.

use crate::backoff::BackoffPolicy;
use crate::driver::{Driver, Sources};
use crate::error::CoreError;
use crate::handle::OrchestratorHandle;
use crate::metrics::CoreMetrics;
use crate::model::Model;
use crate::view::ClusterView;
use cluster_manager_interface::ClusterManager;
use container_runtime_interface::ContainerRuntime;
use orchestrator_shared_types::InstanceStatus;
use scheduler_interface::Scheduler;
use state_store_interface::StateStore;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

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
    metrics: Option<Arc<CoreMetrics>>,
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
            metrics: None,
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

    /// The counters to keep (default: new ones). A daemon that runs a loop for each term of
    /// its leadership keeps one set across them.
    pub fn metrics(mut self, metrics: Arc<CoreMetrics>) -> Self {
        self.metrics = Some(metrics);
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
        let metrics = self.metrics.unwrap_or_default();

        // Subscribe before reading, so nothing that happens in between is missed.
        let node_events = cluster.subscribe();
        let container_events = runtime.subscribe();
        let (shutdown_tx, shutdown) = watch::channel(ShutdownMode::Running);
        let (view_tx, view_rx) = watch::channel(Arc::new(ClusterView::empty(scheduler.clone())));
        let resync = Arc::new(Notify::new());
        let model = Model::new(self.config.clone(), scheduler, metrics.clone());
        let driver = Driver::load(
            model,
            store.clone(),
            runtime.clone(),
            cluster.clone(),
            self.config,
            metrics.clone(),
            view_tx,
        )
        .await?;
        let handle = OrchestratorHandle {
            store,
            cluster,
            runtime,
            view: view_rx,
            resync: resync.clone(),
            shutdown: Arc::new(shutdown_tx),
            actor: None,
        };
        let sources = Sources {
            node_events,
            container_events,
            shutdown,
            resync,
        };
        let task = tokio::spawn(driver.run(sources));
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

    /// Stops the loop now: nothing more is started or written (a leader that lost its lease);
    /// operations in flight are abandoned.
    pub async fn abort(self) {
        self.handle.shutdown.send_replace(ShutdownMode::Force);
        let _ = self.task.await;
    }

    /// Waits until the loop stops (after a shutdown requested through a handle).
    pub async fn join(self) {
        let _ = self.task.await;
    }
}
