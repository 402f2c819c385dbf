//! One replica of a workload and its lifecycle.

use crate::{ContainerId, InstanceId, NodeId, Protocol, WorkloadId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where a replica is in its life. Transitions are guarded by [`InstanceStatus::can_transition_to`],
/// in the manner of youki's `ContainerStatus`.
///
/// ```text
/// Pending ──> Scheduled ──> Running ──> Succeeded / Failed ──(restart policy)──> Scheduled
///    │            │            │               │
///    └────────────┴────────────┴───────────────┴──> Stopping ──> Stopped        (any) ──> Lost
/// ```
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum InstanceStatus {
    /// Wanted but not placed: no node fits yet.
    #[default]
    Pending,
    /// Placed on a node; its containers are being created and started.
    Scheduled,
    /// All its containers run.
    Running,
    /// Its containers exited with status 0.
    Succeeded,
    /// A container exited non-zero, or the runtime failed to start it.
    Failed,
    /// Being stopped (scale down, delete).
    Stopping,
    /// Stopped on purpose; about to be removed.
    Stopped,
    /// Its node went down or away: a replacement is placed elsewhere.
    Lost,
}

impl InstanceStatus {
    /// Whether moving from `self` to `next` is allowed.
    pub fn can_transition_to(self, next: InstanceStatus) -> bool {
        use InstanceStatus::*;
        if self == next {
            return true;
        }
        match (self, next) {
            (Stopped | Lost, _) => false,
            (_, Lost) => true,
            (Pending, Scheduled | Stopped) => true,
            (Scheduled, Running | Succeeded | Failed | Stopping) => true,
            (Running, Succeeded | Failed | Stopping) => true,
            (Succeeded | Failed, Scheduled | Stopping | Stopped) => true,
            (Stopping, Stopped | Failed | Succeeded) => true,
            _ => false,
        }
    }

    /// Whether the instance may have containers to stop.
    pub fn can_stop(self) -> bool {
        matches!(self, InstanceStatus::Scheduled | InstanceStatus::Running)
    }

    /// Whether the instance has reached an end from which it never moves again.
    pub fn is_terminal(self) -> bool {
        matches!(self, InstanceStatus::Stopped | InstanceStatus::Lost)
    }

    /// Whether the instance counts toward the desired replicas (placed or waiting to be, and
    /// not on its way out).
    pub fn is_live(self) -> bool {
        !matches!(
            self,
            InstanceStatus::Stopping | InstanceStatus::Stopped | InstanceStatus::Lost
        )
    }
}

impl std::fmt::Display for InstanceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// A host port an instance holds: a static one of its workload's manifest, or a dynamic one
/// picked when it was placed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AssignedPort {
    /// Name of the container the mapping belongs to.
    pub container: String,
    /// The mapping's `container_port`.
    pub container_port: u16,
    /// The port on the node.
    pub host_port: u16,
    /// `tcp` or `udp`.
    pub protocol: Protocol,
}

/// One replica of a workload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkloadInstance {
    /// Identity.
    pub id: InstanceId,
    /// The workload it belongs to.
    pub workload_id: WorkloadId,
    /// Its node, once placed.
    pub node_id: Option<NodeId>,
    /// Runtime ids of its containers, in the order of the workload's containers.
    pub container_ids: Vec<ContainerId>,
    /// Fingerprint of the workload template (containers, selector, placement) it was created
    /// from: when the workload's differs, the instance is outdated and gets replaced.
    #[serde(default)]
    pub spec_hash: String,
    /// Where it is in its life.
    pub status: InstanceStatus,
    /// How many times its containers were restarted.
    pub restart_count: u32,
    /// Exit code of the last exited container, if any.
    pub last_exit_code: Option<i32>,
    /// Last error from the runtime or scheduler, if any.
    pub last_error: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its status last changed.
    pub updated_at: DateTime<Utc>,
    /// When its containers last started running.
    pub started_at: Option<DateTime<Utc>>,
    /// The host ports it holds on its node (static and dynamic), set when it is placed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<AssignedPort>,
    /// Whether it serves: Running, and the readiness (and startup) probes of its containers
    /// passing (an instance without probes is ready while running). A replica being stopped is
    /// not ready.
    #[serde(default)]
    pub ready: bool,
    /// Since when it has been ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_since: Option<DateTime<Utc>>,
    /// What its probes last said when one is failing or not yet passed: the container, the
    /// probe and its output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
}

impl WorkloadInstance {
    /// A new pending instance of `workload_id`.
    pub fn new(id: InstanceId, workload_id: WorkloadId) -> Self {
        let now = Utc::now();
        Self {
            id,
            workload_id,
            node_id: None,
            container_ids: Vec::new(),
            spec_hash: String::new(),
            status: InstanceStatus::Pending,
            restart_count: 0,
            last_exit_code: None,
            last_error: None,
            created_at: now,
            updated_at: now,
            started_at: None,
            ports: Vec::new(),
            ready: false,
            ready_since: None,
            health: None,
        }
    }

    /// The host ports it holds, as the scheduler's state counts them.
    pub fn host_ports(&self) -> Vec<(Protocol, u16)> {
        self.ports
            .iter()
            .map(|p| (p.protocol, p.host_port))
            .collect()
    }

    /// Why it does not count as available, for people: `instance ID (STATUS): ` and its
    /// probes' message, its last error, or its state.
    pub fn why_unavailable(&self) -> String {
        let why = self
            .health
            .as_deref()
            .or(self.last_error.as_deref())
            .map(str::to_owned)
            .unwrap_or_else(|| match (self.status, self.ready) {
                (InstanceStatus::Running, true) => "ready, not yet for min_ready_seconds".into(),
                (InstanceStatus::Running, false) => "not ready".into(),
                (status, _) => status.to_string(),
            });
        format!("instance {} ({}): {why}", self.id, self.status)
    }

    /// Marks it ready or not; `ready_since` follows.
    pub fn set_ready(&mut self, ready: bool) {
        if ready != self.ready {
            self.ready = ready;
            self.ready_since = ready.then(Utc::now);
        }
    }

    /// Moves to `next` if the transition is allowed; returns whether it moved. Leaving
    /// Running makes it not ready.
    pub fn transition(&mut self, next: InstanceStatus) -> bool {
        if !self.status.can_transition_to(next) {
            return false;
        }
        if self.status != next {
            self.status = next;
            self.updated_at = Utc::now();
            if next == InstanceStatus::Running {
                self.started_at = Some(self.updated_at);
            } else {
                self.set_ready(false);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::InstanceStatus::*;
    use super::*;

    #[test]
    fn guarded_transitions() {
        assert!(Pending.can_transition_to(Scheduled));
        assert!(!Pending.can_transition_to(Running));
        assert!(Running.can_transition_to(Failed));
        assert!(Failed.can_transition_to(Scheduled));
        assert!(!Stopped.can_transition_to(Running));
        assert!(!Lost.can_transition_to(Scheduled));
        assert!(Running.can_transition_to(Lost));
        assert!(Running.can_stop() && !Pending.can_stop());
    }

    #[test]
    fn transition_refuses_and_stamps() {
        let mut i = WorkloadInstance::new("a".into(), "w".into());
        assert!(!i.transition(Running));
        assert!(i.transition(Scheduled));
        assert!(i.transition(Running));
        assert!(i.started_at.is_some());
    }
}
