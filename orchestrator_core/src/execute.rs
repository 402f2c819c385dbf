//! The effectful half of reconciliation: runtime calls for the steps of a plan. Each step runs
//! in its own task, at most `max_concurrent_operations` at once across all workloads, and
//! reports back to the loop, which alone updates the records.

use container_runtime_interface::{ContainerRuntime, ContainerSpec, RuntimeError};
use orchestrator_shared_types::{ContainerId, InstanceId, NodeId, WorkloadId};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A runtime operation for one instance.
#[derive(Debug)]
pub(crate) enum Operation {
    /// Remove `stale` containers (a previous incarnation), then create and start `specs`.
    Start {
        stale: Vec<ContainerId>,
        specs: Vec<ContainerSpec>,
    },
    /// After `delay` (the workload's pre-stop delay, while the replica is already out of
    /// service), stop (SIGTERM, then SIGKILL after `grace`; `None`: the loop's default) then
    /// remove these containers.
    Stop {
        containers: Vec<ContainerId>,
        grace: Option<Duration>,
        delay: Duration,
    },
}

/// The report of an operation.
#[derive(Debug)]
pub(crate) struct Done {
    pub workload: WorkloadId,
    pub instance: InstanceId,
    pub started: bool,
    pub result: Result<(), RuntimeError>,
}

/// Spawns operations with a global bound on how many run at once.
#[derive(Clone)]
pub(crate) struct Executor {
    runtime: Arc<dyn ContainerRuntime>,
    permits: Arc<Semaphore>,
    done: mpsc::UnboundedSender<Done>,
    stop_grace: Duration,
    tasks: TaskTracker,
    /// Fires on a forced stop: operations in flight are abandoned.
    cancel: CancellationToken,
}

impl Executor {
    pub(crate) fn new(
        runtime: Arc<dyn ContainerRuntime>,
        max_concurrent: usize,
        stop_grace: Duration,
        done: mpsc::UnboundedSender<Done>,
        tasks: TaskTracker,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            runtime,
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            done,
            stop_grace,
            tasks,
            cancel,
        }
    }

    /// Runs `work` in a task that is tracked and abandoned on a forced stop.
    fn spawn_tracked(&self, work: impl std::future::Future<Output = ()> + Send + 'static) {
        spawn_tracked(&self.tasks, &self.cancel, work);
    }

    pub(crate) fn spawn(
        &self,
        workload: WorkloadId,
        instance: InstanceId,
        node: NodeId,
        op: Operation,
    ) {
        let this = self.clone();
        self.spawn_tracked(async move {
            if let Operation::Stop { delay, .. } = &op {
                if !delay.is_zero() {
                    // Waiting holds no permit: other operations go on meanwhile.
                    tokio::time::sleep(*delay).await;
                }
            }
            // The semaphore is never closed.
            let _permit = this.permits.acquire().await;
            let started = matches!(op, Operation::Start { .. });
            let result = match op {
                Operation::Start { stale, specs } => this.start(&node, &stale, &specs).await,
                Operation::Stop {
                    containers, grace, ..
                } => {
                    let grace = grace.unwrap_or(this.stop_grace);
                    this.stop(&node, &containers, grace).await
                }
            };
            let _ = this.done.send(Done {
                workload,
                instance,
                started,
                result,
            });
        });
    }

    async fn start(
        &self,
        node: &NodeId,
        stale: &[ContainerId],
        specs: &[ContainerSpec],
    ) -> Result<(), RuntimeError> {
        for id in stale {
            self.runtime.remove(node, id).await?;
        }
        for (n, spec) in specs.iter().enumerate() {
            let result = match self.runtime.create_and_start(node, spec).await {
                // Idempotent: a retry after a crash finds the container it made before.
                Err(RuntimeError::AlreadyExists { .. }) => Ok(()),
                other => other,
            };
            if let Err(e) = result {
                // Leave nothing half-started: the instance is retried as a whole.
                for earlier in &specs[..n] {
                    let _ = self.runtime.remove(node, &earlier.id).await;
                }
                return Err(e);
            }
        }
        Ok(())
    }

    async fn stop(
        &self,
        node: &NodeId,
        containers: &[ContainerId],
        grace: Duration,
    ) -> Result<(), RuntimeError> {
        for id in containers {
            match self.runtime.stop(node, id, grace).await {
                Ok(()) | Err(RuntimeError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            self.runtime.remove(node, id).await?;
        }
        Ok(())
    }

    /// Removes a container that belongs to no known instance (after a restart or a partition).
    pub(crate) fn remove_orphan(&self, node: NodeId, id: ContainerId) {
        let this = self.clone();
        self.spawn_tracked(async move {
            let _permit = this.permits.acquire().await;
            if let Err(e) = this.runtime.remove(&node, &id).await {
                tracing::warn!(%node, container = %id, error = %e, "removing an orphaned container failed");
            } else {
                tracing::info!(%node, container = %id, "removed an orphaned container");
            }
        });
    }
}

/// Runs `work` in a task on `tasks` (so shutdown waits for it) that ends early when `cancel`
/// fires (a forced stop). Every task of the loop is started this way.
pub(crate) fn spawn_tracked(
    tasks: &TaskTracker,
    cancel: &CancellationToken,
    work: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let cancel = cancel.clone();
    tasks.spawn(async move {
        tokio::select! {
            biased;
            () = cancel.cancelled() => {}
            () = work => {}
        }
    });
}
