//! Rolling updates, the pure part: given a workload's replicas of its current template
//! (`updated`) and of earlier ones (`outdated`), how many new replicas may be added and which
//! outdated ones may go now, so that there are never more than `replicas + max_surge` of them
//! and never fewer than `replicas - max_unavailable` available (Kubernetes' Deployment
//! controller, computed over instances instead of ReplicaSets).
//!
//! It looks only at the state: after a restart of the daemon, or a new leader, the same state
//! gives the same decision, so a rollout interrupted anywhere continues where it stood.

use crate::plan::InstanceView;
use orchestrator_shared_types::{InstanceId, InstanceStatus, WorkloadDefinition};
use std::time::Duration;
use tokio::time::Instant;

/// Where a workload's rollout stands, for the loop's progress deadline and for people.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RolloutProgress {
    /// Replicas asked for.
    pub desired: usize,
    /// Replicas of the current template (planned ones included).
    pub updated: usize,
    /// Of those, how many are available (ready for `min_ready_seconds`).
    pub available: usize,
    /// Replicas of earlier templates left after this plan.
    pub outdated: usize,
    /// The most restarts of one replica of the current template.
    pub restarts: u32,
    /// Why the first unavailable replica of the current template is not available: the
    /// instance, and its probe's output or its last error.
    pub blocker: Option<String>,
    /// Instances of an earlier template still exist (being stopped included): a template
    /// change is being rolled out, not just a scale or a first start.
    pub replacing: bool,
}

impl RolloutProgress {
    /// Every replica runs the current template and is available.
    pub fn complete(&self) -> bool {
        self.outdated == 0 && self.updated == self.desired && self.available >= self.desired
    }
}

/// What [`roll`] decided.
#[derive(Debug, Default)]
pub(crate) struct Rolling {
    /// Outdated instances to stop now.
    pub(crate) stop: Vec<InstanceId>,
    /// At most this many new replicas may be added now.
    pub(crate) room: usize,
}

/// When `v` counts as available: ready for `min_ready`.
fn available_at(v: &InstanceView<'_>, min_ready: Duration) -> Option<Instant> {
    v.ready_since.map(|t| t + min_ready)
}

/// Whether `v` is available at `now`.
pub(crate) fn is_available(v: &InstanceView<'_>, min_ready: Duration, now: Instant) -> bool {
    available_at(v, min_ready).is_some_and(|t| t <= now)
}

/// When the next of `updated` becomes available, if one is ready but not yet for long enough.
pub(crate) fn next_available(
    updated: &[&InstanceView<'_>],
    min_ready: Duration,
    now: Instant,
) -> Option<Instant> {
    updated
        .iter()
        .filter_map(|v| available_at(v, min_ready))
        .filter(|t| *t > now)
        .min()
}

/// Order in which outdated replicas go: those not ready first (removing them costs no
/// availability), then the newest.
fn outdated_rank(
    v: &InstanceView<'_>,
) -> (bool, u8, std::cmp::Reverse<chrono::DateTime<chrono::Utc>>) {
    let i = v.instance;
    let rank = match i.status {
        InstanceStatus::Pending => 0,
        InstanceStatus::Failed | InstanceStatus::Succeeded => 1,
        InstanceStatus::Scheduled => 2,
        _ => 3,
    };
    (
        v.ready_since.is_some(),
        rank,
        std::cmp::Reverse(i.created_at),
    )
}

/// Decides one step of a rolling update; see the module docs. `updated` live replicas run the
/// current template (after a scale down), `new_available` of them available; `outdated` are
/// those of earlier templates.
pub(crate) fn roll(
    def: &WorkloadDefinition,
    updated: usize,
    new_available: usize,
    outdated: &mut Vec<&InstanceView<'_>>,
) -> Rolling {
    let replicas = def.replicas as usize;
    let (surge, unavailable) = def.strategy.limits(def.replicas);
    let (surge, unavailable) = (surge as usize, unavailable as usize);
    let total = updated + outdated.len();
    let room = (replicas + surge).saturating_sub(total);
    let min_available = replicas.saturating_sub(unavailable);
    // Outdated replicas may go while those left and the available new ones keep the minimum
    // (Kubernetes: all - minAvailable - newUnavailable).
    let budget = (outdated.len() + new_available).saturating_sub(min_available);
    outdated.sort_by_key(|v| outdated_rank(v));
    let old_ready = outdated.iter().filter(|v| v.ready_since.is_some()).count();
    let not_ready = outdated.len() - old_ready;
    let unhealthy = not_ready.min(budget);
    // Ready ones go only while enough stay available.
    let spare = (old_ready + new_available).saturating_sub(min_available);
    let ready = if unhealthy == not_ready {
        spare.min(budget - unhealthy).min(old_ready)
    } else {
        0
    };
    let stop = outdated
        .drain(..unhealthy + ready)
        .map(|v| v.instance.id.clone())
        .collect();
    Rolling { stop, room }
}
