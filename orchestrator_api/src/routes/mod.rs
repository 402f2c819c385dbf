//! The handlers, one file per resource (in the manner of mini-redis' `cmd/`), plus the lookups
//! several of them share.

pub(crate) mod agent;
pub(crate) mod cluster;
pub(crate) mod events;
pub(crate) mod health;
pub(crate) mod instances;
pub(crate) mod logs;
pub(crate) mod metrics;
pub(crate) mod nodes;
pub(crate) mod openapi;
pub(crate) mod rollout;
pub(crate) mod workloads;

use crate::{ApiError, ApiState};
use axum::http::Uri;
use orchestrator_core::CoreError;
use orchestrator_shared_types::api::{ReplicaCounts, WorkloadView};
use orchestrator_shared_types::{WorkloadDefinition, WorkloadInstance};
use state_store_interface::typed::instance_prefix;
use state_store_interface::{StoreExt, Versioned};

/// Any path no route serves: 404 in the JSON error shape.
pub(crate) async fn unknown_route(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}

/// A known path with a method it does not serve.
pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// The workload called `key`, or else the one whose id is `key`.
pub(crate) async fn find_workload(
    state: &ApiState,
    key: &str,
) -> Result<Option<Versioned<WorkloadDefinition>>, ApiError> {
    if let Some(found) = state.store().get_obj::<WorkloadDefinition>(key).await? {
        return Ok(Some(found));
    }
    // Ids are not keys: scan. Workloads number in the thousands at most, and lookups by id
    // are rare (people use names; ids appear in events and instances).
    Ok(state
        .store()
        .list_obj::<WorkloadDefinition>("")
        .await?
        .into_iter()
        .find(|v| v.value.id.as_str() == key))
}

/// [`find_workload`], or 404.
pub(crate) async fn require_workload(
    state: &ApiState,
    key: &str,
) -> Result<Versioned<WorkloadDefinition>, ApiError> {
    find_workload(state, key)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("workload {key:?} not found")))
}

/// The instances of one workload, from the store.
pub(crate) async fn instances_of(
    state: &ApiState,
    def: &WorkloadDefinition,
) -> Result<Vec<WorkloadInstance>, ApiError> {
    Ok(state
        .store()
        .list_obj::<WorkloadInstance>(&instance_prefix(&def.id))
        .await?
        .into_iter()
        .map(|v| v.value)
        .collect())
}

/// Views of stored workloads with their replica counts. The counts come from the reconcile
/// loop, which holds every instance in memory: one round trip for a whole page, not one store
/// read per workload. Without the loop (shutting down) they are read from the store, slower.
pub(crate) async fn views(
    state: &ApiState,
    defs: Vec<Versioned<WorkloadDefinition>>,
) -> Result<Vec<WorkloadView>, ApiError> {
    let ids = defs.iter().map(|v| v.value.id.clone()).collect();
    let counts = match state.handle().replica_counts(ids).await {
        Ok(counts) => counts,
        Err(CoreError::Stopped) => {
            let mut counts = Vec::with_capacity(defs.len());
            for v in &defs {
                let instances = instances_of(state, &v.value).await?;
                counts.push(ReplicaCounts::of(v.value.replicas, &instances));
            }
            counts
        }
        Err(e) => return Err(e.into()),
    };
    Ok(defs
        .into_iter()
        .zip(counts)
        .map(|(v, mut replicas)| {
            // The definition just read is the truth for `desired`; the loop may lag it.
            replicas.desired = v.value.replicas;
            WorkloadView {
                replicas,
                workload: v.value,
                revision: v.revision,
            }
        })
        .collect())
}

/// The view returned by a write that succeeded. The write is done, so the request must not
/// fail now: if the counts cannot be read, they show only the desired replicas.
pub(crate) async fn view_after_write(
    state: &ApiState,
    v: Versioned<WorkloadDefinition>,
) -> WorkloadView {
    let name = v.value.name.clone();
    let fallback = WorkloadView {
        replicas: ReplicaCounts::of(v.value.replicas, &[]),
        workload: v.value.clone(),
        revision: v.revision,
    };
    match views(state, vec![v]).await {
        Ok(mut views) => views.pop().unwrap_or(fallback),
        Err(e) => {
            tracing::warn!(workload = %name, error = %crate::error::chain(&e), "reading replica counts after a write failed");
            fallback
        }
    }
}
