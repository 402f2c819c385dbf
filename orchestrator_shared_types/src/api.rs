//! Shapes of the REST API's requests and responses, shared by the server (`orchestrator_api`),
//! the CLI and the MCP server so that all three agree on the JSON.

use crate::{
    Event, FieldError, InstanceStatus, Node, NodeId, Resources, StrategyKind, TemplateRevision,
    Unschedulable, WorkloadDefinition, WorkloadInstance,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The body of every error response: `{"error": {"code", "message", "details"}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorInfo,
}

impl ErrorBody {
    /// Most characters of a non-API error body kept in the message.
    pub const MAX_RAW_BODY: usize = 200;

    /// The error of an HTTP response with this status (code and canonical reason) and body: the
    /// server's own `ErrorBody` when the body is one, else one made from the status and the start
    /// of the body (a proxy's HTML page, a plain-text 404 from something that is not
    /// orchestratord), with the code `http_<status>`.
    pub fn from_response(status: u16, reason: &str, body: &str) -> ErrorBody {
        if let Ok(parsed) = serde_json::from_str::<ErrorBody>(body) {
            return parsed;
        }
        let snippet: String = body.trim().chars().take(Self::MAX_RAW_BODY).collect();
        let message = if snippet.is_empty() {
            format!("HTTP {status} {reason}")
        } else {
            format!("HTTP {status} {reason}: {snippet}")
        };
        ErrorBody {
            error: ErrorInfo {
                code: format!("http_{status}"),
                message,
                details: Vec::new(),
            },
        }
    }
}

/// One error: a stable machine-readable code, a sentence for people, and per-field details.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorInfo {
    /// Stable code, e.g. `validation_failed`, `not_found`, `conflict`, `store_unavailable`.
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
    /// Every problem with a field, for validation errors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<FieldError>,
}

/// How many replicas of a workload are in each state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct ReplicaCounts {
    /// Replicas asked for.
    pub desired: u32,
    /// Running.
    pub running: u32,
    /// Placed, starting.
    pub starting: u32,
    /// Not placed yet.
    pub pending: u32,
    /// Exited with a failure (possibly waiting for a restart).
    pub failed: u32,
    /// Exited successfully.
    pub succeeded: u32,
    /// Being stopped.
    pub stopping: u32,
    /// Running and ready (their readiness probes pass); among `running`.
    #[serde(default)]
    pub ready: u32,
}

impl ReplicaCounts {
    /// Counts of `instances` for a workload that wants `desired` replicas.
    pub fn of(desired: u32, instances: &[WorkloadInstance]) -> Self {
        let mut c = ReplicaCounts {
            desired,
            ..Default::default()
        };
        for i in instances {
            c.count(i.status);
            c.ready += u32::from(i.ready);
        }
        c
    }

    /// Counts one more instance with this status.
    pub fn count(&mut self, status: InstanceStatus) {
        {
            let c = self;
            let slot = match status {
                InstanceStatus::Running => &mut c.running,
                InstanceStatus::Scheduled => &mut c.starting,
                InstanceStatus::Pending => &mut c.pending,
                InstanceStatus::Failed => &mut c.failed,
                InstanceStatus::Succeeded => &mut c.succeeded,
                InstanceStatus::Stopping | InstanceStatus::Stopped | InstanceStatus::Lost => {
                    &mut c.stopping
                }
            };
            *slot += 1;
        }
    }
}

/// Where a workload's rollout stands (`rollout status`): how many replicas run its current
/// template, how many of those are available, how many of earlier templates are left, and why
/// the rollout waits when it does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct RolloutStatus {
    /// The workload.
    pub name: String,
    /// Its current template revision.
    pub revision: u64,
    /// How template changes are rolled out.
    pub strategy: StrategyKind,
    /// Replicas asked for.
    pub desired: u32,
    /// Live replicas of the current template.
    pub updated: u32,
    /// Of those, ready.
    pub ready: u32,
    /// Of those, ready for at least `min_ready_seconds`.
    pub available: u32,
    /// Live replicas of earlier templates, still to be replaced.
    pub outdated: u32,
    /// Every replica runs the current template and is available.
    pub complete: bool,
    /// Why replicas of the current template are not available (at most 10): the instance,
    /// the failing probe and its output, or the last error.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting_for: Vec<String>,
    /// The newest revision that failed (and was rolled back from), and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
    /// One line for people.
    pub message: String,
}

impl RolloutStatus {
    /// The status of `def` with these instances now.
    pub fn current(
        def: &WorkloadDefinition,
        instances: &[impl std::borrow::Borrow<WorkloadInstance>],
    ) -> Self {
        Self::of(def, instances, chrono::Utc::now())
    }

    /// The status of `def` with these instances at `now` (wall clock).
    pub fn of(
        def: &WorkloadDefinition,
        instances: &[impl std::borrow::Borrow<WorkloadInstance>],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        let hash = def.spec_hash();
        let min_ready = chrono::Duration::seconds(def.strategy.min_ready_seconds.into());
        let live = instances
            .iter()
            .map(std::borrow::Borrow::borrow)
            .filter(|i: &&WorkloadInstance| i.status.is_live());
        let (mut updated, mut ready, mut available, mut outdated) = (0, 0, 0, 0);
        let mut waiting_for = Vec::new();
        for i in live {
            if i.spec_hash != hash {
                outdated += 1;
                continue;
            }
            updated += 1;
            ready += u32::from(i.ready);
            let is_available = i.ready && i.ready_since.is_some_and(|t| t + min_ready <= now);
            if is_available {
                available += 1;
            } else if waiting_for.len() < 10 {
                waiting_for.push(i.why_unavailable());
            }
        }
        let complete = outdated == 0 && updated == def.replicas && available >= def.replicas;
        let last_failure = def.history.iter().rev().find_map(|h| {
            h.failed
                .as_ref()
                .map(|f| format!("revision {}: {f}", h.revision))
        });
        let message = if complete {
            format!(
                "revision {}: {available} of {} replicas updated and available",
                def.revision, def.replicas
            )
        } else {
            format!(
                "revision {}: {updated} of {} replicas updated, {available} available, {outdated} outdated left",
                def.revision, def.replicas
            )
        };
        Self {
            name: def.name.clone(),
            revision: def.revision,
            strategy: def.strategy.kind,
            desired: def.replicas,
            updated,
            ready,
            available,
            outdated,
            complete,
            waiting_for,
            last_failure,
            message,
        }
    }
}

/// A workload's template revisions, oldest first, the current one last (`rollout history`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct RolloutHistory {
    /// The workload.
    pub name: String,
    /// The current revision.
    pub current: u64,
    /// Every remembered revision, the current one last.
    pub revisions: Vec<TemplateRevision>,
}

impl RolloutHistory {
    /// The history of `def`.
    pub fn of(def: &WorkloadDefinition) -> Self {
        let mut revisions = def.history.clone();
        revisions.push(def.template());
        Self {
            name: def.name.clone(),
            current: def.revision,
            revisions,
        }
    }
}

/// Body of `POST /api/v1/workloads/{name}/rollout/undo`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct UndoRequest {
    /// The revision to return to; the previous one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_revision: Option<u64>,
}

/// A workload with its store revision and replica counts (list and get responses).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkloadView {
    /// The definition.
    pub workload: WorkloadDefinition,
    /// Store revision it was last modified at (pass it back to update without losing changes).
    pub revision: u64,
    /// Replica counts.
    pub replicas: ReplicaCounts,
}

/// Everything about one workload (`describe`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkloadDetail {
    /// The definition.
    pub workload: WorkloadDefinition,
    /// Store revision.
    pub revision: u64,
    /// Replica counts.
    pub replicas: ReplicaCounts,
    /// Its instances.
    pub instances: Vec<WorkloadInstance>,
    /// Its most recent events, oldest first.
    pub events: Vec<Event>,
    /// Why replicas are pending, if some are.
    pub pending_reason: Option<Unschedulable>,
    /// Where its rollout stands, and why it waits when it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
}

/// A node with what is allocated on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct NodeView {
    /// The node.
    pub node: Node,
    /// Resources reserved by the instances placed on it.
    pub allocated: Resources,
    /// Instances placed on it.
    pub instances: usize,
}

/// A list response: the items, or one page of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ListResponse<T> {
    /// The items.
    pub items: Vec<T>,
    /// Present when more items may follow: pass it back unchanged as `?continue=` (with the
    /// same filters) for the next page. An opaque token; its absence means this was the last
    /// page. Absent from responses that were not paged, so older clients see the same JSON.
    #[serde(rename = "continue", default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

impl<T> ListResponse<T> {
    /// A response holding every item (no next page).
    pub fn new(items: Vec<T>) -> Self {
        Self { items, next: None }
    }
}

/// Body of `POST /workloads/{name}/scale`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScaleRequest {
    /// The new replica count (at most 10,000).
    #[cfg_attr(feature = "openapi", schema(maximum = 10000))]
    pub replicas: u32,
}

/// Where the replicas of a workload would go, computed without changing anything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlacementPreview {
    /// Replicas per node.
    pub placements: BTreeMap<NodeId, usize>,
    /// Why the others would not fit.
    pub unschedulable: Option<Unschedulable>,
}

/// `GET /api/v1/cluster`: what the cluster is made of.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterInfo {
    /// Server version.
    pub version: String,
    /// Nodes.
    pub nodes: usize,
    /// Workloads.
    pub workloads: usize,
    /// Instances per status.
    pub instances: BTreeMap<InstanceStatus, usize>,
    /// The store in use (e.g. `redb:/var/lib/orchestrator`).
    pub store: String,
    /// The runtime in use (e.g. `youki`, `simulated`).
    pub runtime: String,
    /// Who is in the cluster and who leads it (absent from servers before clusters existed).
    #[serde(default)]
    pub membership: Membership,
}

/// The members of a cluster, its leader and the health of its store, as the answering daemon
/// sees them (part of [`ClusterInfo`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Membership {
    /// `single-node` (embedded store, one daemon) or `etcd` (a cluster sharing an etcd store).
    pub mode: String,
    /// The cluster's identity, made when its first daemon created it (none in single-node mode).
    #[serde(default)]
    pub cluster_id: Option<String>,
    /// The node of the daemon that answered.
    pub this_node: NodeId,
    /// The daemon running the reconcile loop, if one is elected.
    #[serde(default)]
    pub leader: Option<LeaderInfo>,
    /// Every registered node with its liveness.
    #[serde(default)]
    pub members: Vec<MemberInfo>,
    /// Whether the answering daemon reaches the store.
    #[serde(default)]
    pub store_health: StoreHealth,
}

/// The elected leader (see [`Membership`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeaderInfo {
    /// Its node.
    pub node: NodeId,
    /// Where its daemon's API is reached.
    pub address: String,
    /// The store revision at which it was elected (its fence).
    pub since_revision: u64,
}

/// One member of a cluster (see [`Membership`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberInfo {
    /// Its node.
    pub node: NodeId,
    /// Where its daemon's API is reached.
    pub address: String,
    /// `Ready` while its liveness lease is held and gossip (if it gossips) hears it, `Down` once
    /// either says it is gone.
    pub status: crate::NodeStatus,
    /// Whether it is the leader.
    pub leader: bool,
}

/// Whether a daemon reaches its store (see [`Membership`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoreHealth {
    /// The last call to the store succeeded.
    pub reachable: bool,
    /// The store's revision when last read.
    #[serde(default)]
    pub revision: Option<u64>,
    /// What failed, when it is not reachable; or why reads may be stale.
    #[serde(default)]
    pub message: Option<String>,
}

/// Parses the `since` of logs (`GET .../logs?since=`, the CLI's `--since`, MCP `get_logs`): a
/// number and a unit, `s`, `m`, `h` or `d` (`30s`, `10m`, `2h`, `1d`), into how long ago. The
/// error says what is expected.
pub fn parse_log_since(text: &str) -> Result<std::time::Duration, String> {
    let invalid =
        || format!("must be a number and a unit (s, m, h or d), e.g. \"10m\"; got {text:?}");
    let unit = text.chars().last().ok_or_else(invalid)?;
    let digits = &text[..text.len() - unit.len_utf8()];
    let seconds_per = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(invalid()),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let n: u64 = digits.parse().map_err(|_| invalid())?;
    n.checked_mul(seconds_per)
        .map(std::time::Duration::from_secs)
        .ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn log_since_durations() {
        for (text, secs) in [
            ("30s", 30),
            ("10m", 600),
            ("2h", 7200),
            ("1d", 86_400),
            ("0s", 0),
        ] {
            assert_eq!(
                parse_log_since(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
        for bad in [
            "",
            "m",
            "10",
            "10 m",
            "-1m",
            "1w",
            "1.5h",
            "1m30s",
            "99999999999999999999s",
        ] {
            let e = parse_log_since(bad).unwrap_err();
            assert!(e.contains("a number and a unit"), "{bad}: {e}");
        }
    }
}
