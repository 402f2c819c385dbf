//! What the orchestrator did and why: a log shown by `events`, `describe` and the MCP server.

use crate::{InstanceId, NodeId, WorkloadId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Why the scheduler rejected a node for a replica. One per filter of the pipeline, so callers can
/// count them: "0/5 nodes fit: 3 insufficient memory, 2 selector mismatch".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RejectReason {
    /// The node is not Ready.
    NodeNotReady,
    /// The node is cordoned or draining.
    NodeUnschedulable,
    /// The node lacks a label of the workload's `node_selector`.
    SelectorMismatch,
    /// Not enough CPU left.
    InsufficientCpu,
    /// Not enough memory left.
    InsufficientMemory,
    /// Not enough disk left.
    InsufficientDisk,
    /// A host port the replica needs is taken.
    HostPortConflict,
    /// The workload allows one replica per node and this node has one.
    AntiAffinity,
    /// The replica was placed on the node, but every port of the dynamic host port range
    /// (`DYNAMIC_PORT_RANGE`) is taken there.
    HostPortsExhausted,
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RejectReason::NodeNotReady => "node not ready",
            RejectReason::NodeUnschedulable => "node unschedulable",
            RejectReason::SelectorMismatch => "selector mismatch",
            RejectReason::InsufficientCpu => "insufficient cpu",
            RejectReason::InsufficientMemory => "insufficient memory",
            RejectReason::InsufficientDisk => "insufficient disk",
            RejectReason::HostPortConflict => "host port conflict",
            RejectReason::AntiAffinity => "one replica per node",
            RejectReason::HostPortsExhausted => "no free dynamic host port",
        })
    }
}

/// Why replicas could not be placed: how many nodes were looked at and, per reason, how many were
/// rejected for it (each node counted once, under the first filter it failed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Unschedulable {
    /// Nodes in the cluster.
    pub nodes_total: usize,
    /// Nodes rejected, per reason.
    pub reasons: BTreeMap<RejectReason, usize>,
    /// Replicas that could not be placed.
    pub unplaced: usize,
}

impl fmt::Display for Unschedulable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rejected: usize = self.reasons.values().sum();
        write!(
            f,
            "{}/{} nodes fit",
            self.nodes_total.saturating_sub(rejected),
            self.nodes_total
        )?;
        let mut sorted: Vec<_> = self.reasons.iter().collect();
        sorted.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (i, (reason, count)) in sorted.into_iter().enumerate() {
            write!(f, "{}{count} {reason}", if i == 0 { ": " } else { ", " })?;
        }
        if self.nodes_total == 0 {
            f.write_str(": no nodes in the cluster")?;
        }
        Ok(())
    }
}

/// The kind of an [`Event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum EventKind {
    /// A replica was placed on a node.
    Scheduled,
    /// A replica's containers run.
    Started,
    /// A replica failed (exit or runtime error).
    Failed,
    /// A replica's containers were started again after an exit.
    Restarted,
    /// A replica was replaced on another node (its node went down or away).
    Rescheduled,
    /// Replicas could not be placed; the event carries the reasons.
    Unschedulable,
    /// A replica was stopped on purpose (scale down, delete).
    Stopped,
    /// The workload was created or changed.
    Updated,
    /// The workload was deleted.
    Deleted,
    /// A replica stopped being ready (a readiness probe failing).
    Unhealthy,
    /// A rollout completed, failed or was rolled back.
    Rollout,
}

/// One entry of the event log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    /// Position in the log, assigned by the store when appended (0 before).
    #[serde(default)]
    pub seq: u64,
    /// When it happened.
    pub time: DateTime<Utc>,
    /// What happened.
    pub kind: EventKind,
    /// The workload concerned.
    pub workload_id: Option<WorkloadId>,
    /// Its name, kept so events stay readable after the workload is deleted.
    pub workload_name: Option<String>,
    /// The replica concerned, if any.
    pub instance_id: Option<InstanceId>,
    /// The node concerned, if any.
    pub node_id: Option<NodeId>,
    /// A sentence for people.
    pub message: String,
    /// For `Unschedulable`: the typed reasons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unschedulable: Option<Unschedulable>,
    /// Who asked for the change (`Updated`, `Deleted`): the name of the API token used, when
    /// the API checks tokens. The audit trail of the workloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

impl Event {
    /// An event happening now.
    pub fn new(kind: EventKind, message: impl Into<String>) -> Self {
        Self {
            seq: 0,
            time: Utc::now(),
            kind,
            workload_id: None,
            workload_name: None,
            instance_id: None,
            node_id: None,
            message: message.into(),
            unschedulable: None,
            actor: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unschedulable_reads_like_kubectl() {
        let u = Unschedulable {
            nodes_total: 5,
            reasons: [
                (RejectReason::SelectorMismatch, 2),
                (RejectReason::InsufficientMemory, 3),
            ]
            .into_iter()
            .collect(),
            unplaced: 1,
        };
        assert_eq!(
            u.to_string(),
            "0/5 nodes fit: 3 insufficient memory, 2 selector mismatch"
        );
    }
}
