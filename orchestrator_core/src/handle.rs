//! [`OrchestratorHandle`]: how the API, CLI and tests change desired state.
//!
//! Writes of desired state go straight to the store with compare-and-swap, from the caller's
//! task, so that many requests proceed concurrently and a store that batches writes can batch
//! them. The handle tells the loop nothing: the loop watches the store, so a write made by any
//! process is reconciled the same way, and records the change in the event log.
//!
//! Reads (summaries, node views, replica counts, explain, preview, instance records) come from
//! the [`ClusterView`] the loop last published: no round trip through the loop, so a busy loop
//! never slows them.

use crate::error::CoreError;
use crate::orchestrator::{ShutdownMode, Summary};
use crate::view::ClusterView;
use cluster_manager_interface::{ClusterError, ClusterManager};
use container_runtime_interface::{ContainerRuntime, LogChunk, LogRequest, RuntimeError};
use orchestrator_shared_types::api::{NodeView, PlacementPreview, ReplicaCounts};
use orchestrator_shared_types::validation::MAX_REPLICAS;
use orchestrator_shared_types::{
    ContainerId, FieldError, InstanceId, InstanceStatus, NodeId, Unschedulable, ValidationErrors,
    WorkloadDefinition, WorkloadId, WorkloadInstance,
};
use state_store_interface::typed::{delete_op, put_op, NodeCordon};
use state_store_interface::{Precondition, Revision, StateStore, StoreError, StoreExt, Versioned};
use std::sync::Arc;
use tokio::sync::{watch, Notify};

/// Longest a write waits for the loop to publish its effect (see
/// [`OrchestratorHandle::drain`]): the loop publishes within milliseconds unless it is very busy.
pub const VIEW_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// What [`OrchestratorHandle::apply`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The workload did not exist and was created.
    Created,
    /// It existed and was changed.
    Updated,
    /// It existed with exactly this definition.
    Unchanged,
}

/// The container whose output [`OrchestratorHandle::logs`] reads for an instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSource {
    /// The instance.
    pub instance: InstanceId,
    /// Its status when it was looked up.
    pub status: InstanceStatus,
    /// The node it is on.
    pub node: NodeId,
    /// The container's name in the workload.
    pub name: String,
    /// The runtime's id of the container: a restart makes a new one, so a reader following the
    /// output can tell that the container it reads has been replaced.
    pub container: ContainerId,
}

/// A cheap, cloneable handle to a running orchestrator.
#[derive(Clone)]
pub struct OrchestratorHandle {
    pub(crate) store: Arc<dyn StateStore>,
    pub(crate) cluster: Arc<dyn ClusterManager>,
    /// Read directly for logs: reading output needs neither the loop nor the store.
    pub(crate) runtime: Arc<dyn ContainerRuntime>,
    /// The views the loop publishes.
    pub(crate) view: watch::Receiver<Arc<ClusterView>>,
    /// Wakes the loop for a full re-read of the store.
    pub(crate) resync: Arc<Notify>,
    pub(crate) shutdown: Arc<watch::Sender<ShutdownMode>>,
    /// Who the writes are made for ([`OrchestratorHandle::acting_as`]).
    pub(crate) actor: Option<Arc<str>>,
}

impl std::fmt::Debug for OrchestratorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrchestratorHandle").finish_non_exhaustive()
    }
}

fn conflict_or<'a>(
    name: &'a str,
    expected: Option<Revision>,
    op: &'static str,
) -> impl FnOnce(StoreError) -> CoreError + 'a {
    move |e| match (e, expected) {
        (StoreError::Conflict { .. }, Some(expected)) => CoreError::StaleRevision {
            name: name.to_owned(),
            expected,
        },
        (StoreError::Conflict { .. }, None) => CoreError::AlreadyExists {
            name: name.to_owned(),
        },
        (source, _) => CoreError::Store {
            operation: op,
            source,
        },
    }
}

impl OrchestratorHandle {
    /// A handle of a daemon that does not run the loop itself (a cluster member that is not
    /// the leader, or any member: see [`crate::cluster`]): writes go to `store`, reads come
    /// from `views` (a [`crate::cluster::mirror::Mirror`]'s), logs from `runtime`. Shutting it
    /// down does nothing: the loop it would stop runs elsewhere.
    pub fn from_views(
        store: Arc<dyn StateStore>,
        cluster: Arc<dyn ClusterManager>,
        runtime: Arc<dyn ContainerRuntime>,
        views: watch::Receiver<Arc<ClusterView>>,
    ) -> Self {
        Self {
            store,
            cluster,
            runtime,
            view: views,
            resync: Arc::new(Notify::new()),
            shutdown: Arc::new(watch::Sender::new(ShutdownMode::Running)),
            actor: None,
        }
    }

    /// The store the orchestrator uses (for reads by the API).
    pub fn store(&self) -> &Arc<dyn StateStore> {
        &self.store
    }

    /// The view the loop published last; `Stopped` once the loop has ended.
    pub fn view(&self) -> Result<Arc<ClusterView>, CoreError> {
        if self.view.has_changed().is_err() {
            return Err(CoreError::Stopped);
        }
        Ok(self.view.borrow().clone())
    }

    /// This handle, stamping `actor` (the caller's name) on the workloads it creates, changes
    /// and deletes ([`WorkloadDefinition::changed_by`]), so that the events of those changes say
    /// who made them.
    pub fn acting_as(&self, actor: &str) -> Self {
        Self {
            actor: Some(actor.into()),
            ..self.clone()
        }
    }

    fn stamp(&self, def: &mut WorkloadDefinition) {
        def.changed_by = self.actor.as_deref().map(str::to_owned);
    }

    /// A workload by name.
    pub async fn get(
        &self,
        name: &str,
    ) -> Result<Option<Versioned<WorkloadDefinition>>, CoreError> {
        self.store
            .get_obj::<WorkloadDefinition>(name)
            .await
            .map_err(CoreError::store("get workload"))
    }

    /// Creates a workload; fails with `AlreadyExists` if the name is taken. The server assigns
    /// the id.
    pub async fn create(
        &self,
        mut def: WorkloadDefinition,
    ) -> Result<Versioned<WorkloadDefinition>, CoreError> {
        def.validate()?;
        def.id = WorkloadId::generate();
        def.revision = 1;
        def.history.clear();
        self.stamp(&mut def);
        let revision = self
            .store
            .put_obj(&def, Precondition::Absent)
            .await
            .map_err(conflict_or(&def.name, None, "create workload"))?;
        Ok(Versioned {
            value: def,
            revision,
        })
    }

    /// Replaces an existing workload's definition, keeping its id. With `expected_revision`,
    /// fails with `StaleRevision` if it changed since.
    pub async fn update(
        &self,
        mut def: WorkloadDefinition,
        expected_revision: Option<Revision>,
    ) -> Result<Versioned<WorkloadDefinition>, CoreError> {
        def.validate()?;
        let current = self
            .get(&def.name)
            .await?
            .ok_or_else(|| CoreError::NotFound {
                name: def.name.clone(),
            })?;
        if let Some(expected) = expected_revision {
            if expected != current.revision {
                return Err(CoreError::StaleRevision {
                    name: def.name,
                    expected,
                });
            }
        }
        def.id = current.value.id.clone();
        if def.same_desired_state(&current.value) {
            return Ok(current);
        }
        self.stamp(&mut def);
        def.follow(&current.value);
        let expected = expected_revision.unwrap_or(current.revision);
        let revision = self
            .store
            .put_obj(&def, Precondition::ModRevision(expected))
            .await
            .map_err(conflict_or(&def.name, Some(expected), "update workload"))?;
        Ok(Versioned {
            value: def,
            revision,
        })
    }

    /// Creates the workload or updates it to this definition (`kubectl apply`).
    pub async fn apply(
        &self,
        def: WorkloadDefinition,
    ) -> Result<(Versioned<WorkloadDefinition>, ApplyOutcome), CoreError> {
        def.validate()?;
        // Two attempts: a concurrent create or delete between our read and write is retried once.
        let mut last = None;
        for _ in 0..2 {
            let result = match self.get(&def.name).await? {
                None => self
                    .create(def.clone())
                    .await
                    .map(|v| (v, ApplyOutcome::Created)),
                Some(current) => {
                    let mut wanted = def.clone();
                    wanted.id = current.value.id.clone();
                    if wanted.same_desired_state(&current.value) {
                        return Ok((current, ApplyOutcome::Unchanged));
                    }
                    self.update(def.clone(), Some(current.revision))
                        .await
                        .map(|v| (v, ApplyOutcome::Updated))
                }
            };
            match result {
                Err(
                    e @ (CoreError::AlreadyExists { .. }
                    | CoreError::StaleRevision { .. }
                    | CoreError::NotFound { .. }),
                ) => last = Some(e),
                other => return other,
            }
        }
        Err(last.unwrap_or(CoreError::Stopped))
    }

    /// Sets a workload's replica count.
    pub async fn scale(
        &self,
        name: &str,
        replicas: u32,
    ) -> Result<Versioned<WorkloadDefinition>, CoreError> {
        if replicas > MAX_REPLICAS {
            return Err(CoreError::Invalid(ValidationErrors(vec![FieldError {
                field: "replicas".into(),
                message: format!("must be at most {MAX_REPLICAS} (got {replicas})"),
            }])));
        }
        loop {
            let current = self.get(name).await?.ok_or_else(|| CoreError::NotFound {
                name: name.to_owned(),
            })?;
            let mut def = current.value.clone();
            if def.replicas == replicas {
                return Ok(current);
            }
            def.replicas = replicas;
            match self.update(def, Some(current.revision)).await {
                // Someone else changed it in between: scale the new version.
                Err(CoreError::StaleRevision { .. }) => continue,
                other => return other,
            }
        }
    }

    /// Returns a workload to the template of an earlier revision (`None`: the previous one),
    /// as `kubectl rollout undo`: the template becomes current under a new revision number and
    /// is rolled out like any change.
    pub async fn rollback(
        &self,
        name: &str,
        to_revision: Option<u64>,
    ) -> Result<Versioned<WorkloadDefinition>, CoreError> {
        loop {
            let current = self.get(name).await?.ok_or_else(|| CoreError::NotFound {
                name: name.to_owned(),
            })?;
            let target = current.value.rolled_back(to_revision, None).map_err(|e| {
                CoreError::Invalid(ValidationErrors(vec![FieldError {
                    field: "to_revision".into(),
                    message: e.to_string(),
                }]))
            })?;
            match self.update(target, Some(current.revision)).await {
                // Someone else changed it in between: roll back from the new version.
                Err(CoreError::StaleRevision { .. }) => continue,
                other => return other,
            }
        }
    }

    /// Deletes a workload; its instances are stopped and removed by the loop.
    pub async fn delete(&self, name: &str) -> Result<WorkloadDefinition, CoreError> {
        loop {
            let mut current = self.get(name).await?.ok_or_else(|| CoreError::NotFound {
                name: name.to_owned(),
            })?;
            if self.actor.is_some() && current.value.changed_by.as_deref() != self.actor.as_deref()
            {
                // The deleter is stamped on the definition first, so that the `Deleted` event,
                // made from the last definition the loop saw, names them. (etcd takes one
                // operation per key in a transaction: two commits.) A failure between the two
                // leaves the workload as it was but for `changed_by`.
                let mut stamped = current.value.clone();
                self.stamp(&mut stamped);
                match self
                    .store
                    .put_obj(&stamped, Precondition::ModRevision(current.revision))
                    .await
                {
                    Ok(revision) => {
                        current = Versioned {
                            value: stamped,
                            revision,
                        }
                    }
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(source) => {
                        return Err(CoreError::Store {
                            operation: "delete workload",
                            source,
                        })
                    }
                }
            }
            let result = self
                .store
                .commit(vec![delete_op(
                    &current.value,
                    Precondition::ModRevision(current.revision),
                )])
                .await;
            match result {
                Ok(_) => return Ok(current.value),
                Err(StoreError::Conflict { .. }) => continue,
                Err(source) => {
                    return Err(CoreError::Store {
                        operation: "delete workload",
                        source,
                    })
                }
            }
        }
    }

    /// Counts of what the loop currently knows.
    pub async fn summary(&self) -> Result<Summary, CoreError> {
        Ok(self.view()?.summary().clone())
    }

    /// Replica counts of these workloads, in the same order, from the loop's own records (the
    /// freshest view, no store read). A workload the loop has not seen yet counts zeros.
    pub async fn replica_counts(
        &self,
        ids: Vec<WorkloadId>,
    ) -> Result<Vec<ReplicaCounts>, CoreError> {
        let view = self.view()?;
        Ok(ids.iter().map(|id| view.replica_counts(id)).collect())
    }

    /// Cordons a node (nothing new is placed on it) and moves its instances elsewhere
    /// (`kubectl drain`). Replicas that fit nowhere else stay pending, with the reason.
    /// The cordon is kept in the store, where the loop sees it and moves the instances.
    pub async fn drain(&self, node: &NodeId) -> Result<(), CoreError> {
        self.cordon(node, true).await
    }

    /// Makes a node schedulable again (ends a drain or cordon); what moved away stays where it is.
    pub async fn uncordon(&self, node: &NodeId) -> Result<(), CoreError> {
        self.cordon(node, false).await
    }

    async fn cordon(&self, node: &NodeId, unschedulable: bool) -> Result<(), CoreError> {
        self.cluster
            .set_unschedulable(node, unschedulable)
            .await
            .map_err(|source| match source {
                ClusterError::NodeNotFound(id) => CoreError::NodeNotFound { node: id.0 },
                source => CoreError::Cluster {
                    operation: "cordon node",
                    source,
                },
            })?;
        // The cluster manager forgets the flag when the daemon restarts; the store keeps it (as
        // Kubernetes keeps `spec.unschedulable` in etcd) and the loop re-applies it on start.
        let record = NodeCordon {
            node_id: node.clone(),
        };
        let op = if unschedulable {
            put_op(&record, Precondition::None)
        } else {
            delete_op(&record, Precondition::None)
        };
        self.store
            .commit(vec![op])
            .await
            .map_err(CoreError::store("persist node cordon"))?;
        // Read-your-writes for the caller, who shows the node next: wait (briefly) until the
        // loop has published a view with the new flag.
        self.wait_for_view(|view| {
            view.nodes()
                .iter()
                .find(|n| n.node.id == *node)
                .is_none_or(|n| n.node.unschedulable == unschedulable)
        })
        .await;
        Ok(())
    }

    /// Waits until the published view satisfies `ready`, the loop ends, or
    /// [`VIEW_WAIT`] passes (then the caller goes on with what is published).
    async fn wait_for_view(&self, ready: impl FnMut(&Arc<ClusterView>) -> bool) {
        let mut view = self.view.clone();
        let _ = tokio::time::timeout(VIEW_WAIT, view.wait_for(ready)).await;
    }

    /// Every node with what is allocated on it, sorted by id.
    pub async fn nodes(&self) -> Result<Vec<NodeView>, CoreError> {
        Ok(self.view()?.nodes())
    }

    /// Why a replica of workload `name` would not fit now, node by node (the scheduler's typed
    /// reasons); `NotFound` for an unknown workload.
    pub async fn explain(&self, name: &str) -> Result<Unschedulable, CoreError> {
        self.view()?
            .explain(name)
            .ok_or_else(|| CoreError::NotFound {
                name: name.to_owned(),
            })
    }

    /// Where the replicas of `def` would go and what would not fit, changing nothing (a dry run).
    pub async fn preview(&self, def: WorkloadDefinition) -> Result<PlacementPreview, CoreError> {
        def.validate()?;
        Ok(self.view()?.preview(&def))
    }

    /// The record of an instance: the loop's, or the store's when the published view does not
    /// have it yet (the store can be a moment ahead of the view); `InstanceNotFound` if
    /// neither has it.
    pub async fn instance(&self, id: &str) -> Result<WorkloadInstance, CoreError> {
        if let Some(i) = self.view()?.instance(&InstanceId::from(id)) {
            return Ok(WorkloadInstance::clone(i));
        }
        self.stored_instance(id)
            .await?
            .ok_or_else(|| CoreError::InstanceNotFound { id: id.to_owned() })
    }

    /// An instance record read from the store. Its key needs the workload's id, found through
    /// the workload's name, which the instance id starts with ([`InstanceId::workload_name`]).
    async fn stored_instance(&self, id: &str) -> Result<Option<WorkloadInstance>, CoreError> {
        let Some(name) = InstanceId::from(id).workload_name().map(str::to_owned) else {
            return Ok(None);
        };
        let Some(def) = self.get(&name).await? else {
            return Ok(None);
        };
        let key = format!("{}/{id}", def.value.id);
        Ok(self
            .store
            .get_obj::<WorkloadInstance>(&key)
            .await
            .map_err(CoreError::store("get instance"))?
            .map(|v| v.value))
    }

    /// The container of `instance` whose output [`logs`](Self::logs) reads: the one named
    /// `container`, or its first. `UnknownContainer` names the containers it has; `NoContainer`
    /// says why an instance has none yet.
    pub async fn log_source(
        &self,
        instance: &str,
        container: Option<&str>,
    ) -> Result<LogSource, CoreError> {
        let i = self.instance(instance).await?;
        let no_container = || CoreError::NoContainer {
            instance: instance.to_owned(),
            message: format!(
                "instance {instance} is {}: it has no container yet",
                i.status
            ),
        };
        let node = i.node_id.clone().ok_or_else(no_container)?;
        let named: Vec<(&str, &ContainerId)> = i
            .container_ids
            .iter()
            .map(|id| (container_name(&i.id, id), id))
            .collect();
        let found = match container {
            None => named.first().ok_or_else(no_container)?,
            Some(wanted) => named
                .iter()
                .find(|(name, _)| *name == wanted)
                .ok_or_else(|| CoreError::UnknownContainer {
                    instance: instance.to_owned(),
                    name: wanted.to_owned(),
                    names: named.iter().map(|(name, _)| (*name).to_owned()).collect(),
                })?,
        };
        Ok(LogSource {
            name: found.0.to_owned(),
            container: found.1.clone(),
            instance: i.id.clone(),
            status: i.status,
            node,
        })
    }

    /// Reads the output of `source` (see [`LogRequest`]) from the runtime of its node. A
    /// container the runtime does not know (yet) is `NoContainer`.
    pub async fn read_logs(
        &self,
        source: &LogSource,
        request: LogRequest,
    ) -> Result<LogChunk, CoreError> {
        self.runtime
            .logs(&source.node, &source.container, request)
            .await
            .map_err(|e| match e {
                RuntimeError::NotFound { .. } => CoreError::NoContainer {
                    instance: source.instance.to_string(),
                    message: format!(
                        "instance {} is {}: its container {} does not exist on node {} (yet)",
                        source.instance, source.status, source.name, source.node
                    ),
                },
                source => CoreError::Runtime {
                    operation: "read logs",
                    source: Box::new(source),
                },
            })
    }

    /// The output of container `container` (default: the first) of instance `instance`, read
    /// from the runtime of the node it is on: [`log_source`](Self::log_source) then
    /// [`read_logs`](Self::read_logs).
    pub async fn logs(
        &self,
        instance: &str,
        container: Option<&str>,
        request: LogRequest,
    ) -> Result<LogChunk, CoreError> {
        let source = self.log_source(instance, container).await?;
        self.read_logs(&source, request).await
    }

    /// Asks the loop to re-read every workload from the store and reconcile all of them.
    pub fn resync(&self) {
        self.resync.notify_one();
    }

    /// Asks the orchestrator to stop: the first call drains (no new work, in-flight operations
    /// finish, everything is persisted); a second call forces an immediate stop.
    pub fn shutdown(&self) {
        self.shutdown.send_modify(|mode| {
            *mode = match mode {
                ShutdownMode::Running => ShutdownMode::Drain,
                _ => ShutdownMode::Force,
            }
        });
    }
}

/// The name of the workload container that container `id` of `instance` runs: the inverse of
/// [`crate::plan::container_ids`] (`{instance}-{name}-{restart count}`). An id of another shape
/// is its own name.
fn container_name<'a>(instance: &InstanceId, id: &'a ContainerId) -> &'a str {
    id.as_str()
        .strip_prefix(instance.as_str())
        .and_then(|rest| rest.strip_prefix('-'))
        .and_then(|rest| rest.rsplit_once('-'))
        .map_or(id.as_str(), |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_shared_types::ContainerConfig;

    #[test]
    fn container_names_invert_container_ids() {
        let mut def = WorkloadDefinition::new("web", 1, ContainerConfig::new("app", "img"));
        def.containers.push(ContainerConfig::new("side-car", "img"));
        let mut instance = WorkloadInstance::new(InstanceId::generate("web"), def.id.clone());
        instance.restart_count = 12;
        let ids = crate::plan::container_ids(&def, &instance);
        let names: Vec<&str> = ids
            .iter()
            .map(|id| container_name(&instance.id, id))
            .collect();
        assert_eq!(names, ["app", "side-car"]);
    }
}
