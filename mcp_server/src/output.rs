//! What the tools return: compact summaries of the API's objects, tool errors, and the byte cap.
//!
//! Models read every byte they are given, so results are compact by default (names, counts,
//! statuses, the one line that explains a problem) and carry the full API objects only when a
//! tool is asked for `detail: true`. Every result is capped in bytes: lists shrink their page
//! (keeping the API's `continue` token right), long lists inside one object keep their most
//! useful part, and a `note` tells the model how to get the rest.

use crate::ApiError;
use orchestrator_shared_types::api::{ErrorInfo, NodeView, ReplicaCounts, WorkloadView};
use orchestrator_shared_types::{Event, Unschedulable, WorkloadDefinition, WorkloadInstance};
use rmcp::schemars::{self, JsonSchema};
use serde::Serialize;
use std::collections::BTreeMap;
use std::error::Error as _;
use std::fmt::Write as _;

/// Size of `value` as JSON, in bytes.
pub(crate) fn json_len<T: Serialize + ?Sized>(value: &T) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |v| v.len())
}

/// A tool failure, shown to the model as an `isError` result with this text.
#[derive(Debug)]
pub(crate) struct ToolError {
    /// What went wrong and what to do about it.
    pub(crate) message: String,
    /// The API's HTTP status, when the API refused.
    pub(crate) status: Option<u16>,
}

impl ToolError {
    /// A failure with this message.
    pub(crate) fn new(message: impl Into<String>) -> Self {
        ToolError {
            message: message.into(),
            status: None,
        }
    }

    /// A bad argument: the model should call again with a corrected value.
    pub(crate) fn invalid(message: impl std::fmt::Display) -> Self {
        ToolError::new(format!("invalid arguments: {message}"))
    }
}

impl From<ApiError> for ToolError {
    fn from(e: ApiError) -> Self {
        ToolError {
            message: describe(&e),
            status: e.status(),
        }
    }
}

/// An API error as a model reads it: for an HTTP error, `the orchestrator API answered HTTP 400
/// validation_failed: invalid workload: 2 problems` and one line per field problem; otherwise
/// the error with its cause.
pub(crate) fn describe(e: &ApiError) -> String {
    match e {
        ApiError::Http { status, body } => {
            let ErrorInfo {
                code,
                message,
                details,
            } = &body.error;
            let mut text = format!("the orchestrator API answered HTTP {status} {code}: {message}");
            for d in details {
                let _ = write!(text, "\n- {}: {}", d.field, d.message);
            }
            text
        }
        other => match other.source() {
            Some(cause) => format!("{other}: {cause}"),
            None => other.to_string(),
        },
    }
}

/// Adds advice to an API error with a given status (e.g. where to find valid names on a 404).
pub(crate) trait Hint<T> {
    /// On an HTTP `status` error, appends `hint` to the message.
    fn hint(self, status: u16, hint: &str) -> Result<T, ToolError>;
}

impl<T> Hint<T> for Result<T, ApiError> {
    fn hint(self, status: u16, hint: &str) -> Result<T, ToolError> {
        self.map_err(|e| {
            if e.status() == Some(status) {
                ToolError {
                    message: format!("{}\n{hint}", describe(&e)),
                    status: Some(status),
                }
            } else {
                ToolError::from(e)
            }
        })
    }
}

/// One workload in a list.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct WorkloadSummary {
    /// Unique name.
    pub name: String,
    /// Replica counts.
    pub replicas: ReplicaCounts,
    /// Images of its containers.
    pub images: Vec<String>,
    /// Store revision it was last changed at.
    pub revision: u64,
    /// The full definition (every field of the manifest), only with `detail: true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub definition: Option<WorkloadDefinition>,
}

impl WorkloadSummary {
    /// The summary of `view`, with its full definition when `detail`.
    pub(crate) fn of(view: &WorkloadView, detail: bool) -> Self {
        WorkloadSummary {
            name: view.workload.name.clone(),
            replicas: view.replicas.clone(),
            images: view
                .workload
                .containers
                .iter()
                .map(|c| c.image.clone())
                .collect(),
            revision: view.revision,
            definition: detail.then(|| view.workload.clone()),
        }
    }
}

/// One replica of a workload.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct InstanceSummary {
    /// Instance id (the workload's name plus a random suffix); get_logs takes it.
    pub id: String,
    /// The node it is placed on; absent while pending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Pending, Scheduled, Running, Succeeded, Failed, Stopping, Stopped or Lost.
    pub status: String,
    /// Times its containers were restarted.
    pub restarts: u32,
    /// Running and passing its readiness probes (serving).
    pub ready: bool,
    /// What its probes say when one fails or has not passed yet: container, probe, output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// Exit code of the last exited container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Last error from the runtime or the scheduler.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When its containers last started (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
}

impl From<&WorkloadInstance> for InstanceSummary {
    fn from(i: &WorkloadInstance) -> Self {
        InstanceSummary {
            id: i.id.to_string(),
            node: i.node_id.as_ref().map(|n| n.to_string()),
            status: i.status.to_string(),
            restarts: i.restart_count,
            ready: i.ready,
            health: i.health.clone(),
            exit_code: i.last_exit_code,
            error: i.last_error.clone(),
            started_at: i.started_at.map(|t| t.to_rfc3339()),
        }
    }
}

/// One entry of the event log.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct EventSummary {
    /// Position in the log; pass the last one seen as `after` to list_events for newer events.
    pub seq: u64,
    /// When it happened (RFC 3339).
    pub time: String,
    /// Scheduled, Started, Failed, Restarted, Rescheduled, Unschedulable, Stopped, Updated or
    /// Deleted.
    pub kind: String,
    /// The workload concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// The instance concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The node concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// What happened, in a sentence.
    pub message: String,
    /// For Unschedulable events, the scheduler's typed reasons (only with `detail: true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unschedulable: Option<SchedulingProblem>,
}

impl EventSummary {
    /// The summary of `e`, with its typed reasons when `detail`.
    pub(crate) fn of(e: &Event, detail: bool) -> Self {
        EventSummary {
            seq: e.seq,
            time: e.time.to_rfc3339(),
            kind: format!("{:?}", e.kind),
            workload: e.workload_name.clone(),
            instance: e.instance_id.as_ref().map(|i| i.to_string()),
            node: e.node_id.as_ref().map(|n| n.to_string()),
            message: e.message.clone(),
            unschedulable: if detail {
                e.unschedulable.as_ref().map(SchedulingProblem::from)
            } else {
                None
            },
        }
    }
}

/// How many nodes rejected a replica for one reason.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct ReasonCount {
    /// The scheduler's reason: node_not_ready, node_unschedulable, selector_mismatch,
    /// insufficient_cpu, insufficient_memory, insufficient_disk, host_port_conflict,
    /// anti_affinity or host_ports_exhausted.
    pub reason: String,
    /// The same, in words.
    pub meaning: String,
    /// Nodes rejected for it (each node counts once, under the first check it failed).
    pub nodes: usize,
}

/// Why replicas could not be placed, from the scheduler's typed reasons.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct SchedulingProblem {
    /// One line, e.g. "0/5 nodes fit: 3 insufficient memory, 2 selector mismatch".
    pub summary: String,
    /// Nodes in the cluster.
    pub nodes_total: usize,
    /// Nodes that passed every check.
    pub nodes_fit: usize,
    /// Replicas that could not be placed.
    pub unplaced: usize,
    /// Rejections per reason, most frequent first.
    pub reasons: Vec<ReasonCount>,
}

impl From<&Unschedulable> for SchedulingProblem {
    fn from(u: &Unschedulable) -> Self {
        let rejected: usize = u.reasons.values().sum();
        let mut reasons: Vec<ReasonCount> = u
            .reasons
            .iter()
            .map(|(reason, nodes)| ReasonCount {
                reason: serde_json::to_value(reason)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_else(|| format!("{reason:?}")),
                meaning: reason.to_string(),
                nodes: *nodes,
            })
            .collect();
        reasons.sort_by(|a, b| b.nodes.cmp(&a.nodes).then(a.reason.cmp(&b.reason)));
        SchedulingProblem {
            summary: u.to_string(),
            nodes_total: u.nodes_total,
            nodes_fit: u.nodes_total.saturating_sub(rejected),
            unplaced: u.unplaced,
            reasons,
        }
    }
}

/// Used and free amounts of one resource.
#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct Usage {
    /// Reserved by the instances placed.
    pub allocated: u64,
    /// What workloads may use in total.
    pub allocatable: u64,
    /// allocatable - allocated.
    pub free: u64,
}

impl Usage {
    fn new(allocated: u64, allocatable: u64) -> Self {
        Usage {
            allocated,
            allocatable,
            free: allocatable.saturating_sub(allocated),
        }
    }

    /// Adds another node's usage.
    pub(crate) fn add(&mut self, other: &Usage) {
        self.allocated = self.allocated.saturating_add(other.allocated);
        self.allocatable = self.allocatable.saturating_add(other.allocatable);
        self.free = self.free.saturating_add(other.free);
    }
}

/// One node.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct NodeSummary {
    /// Stable id (what instances name as their node).
    pub id: String,
    /// Name, often the hostname.
    pub name: String,
    /// Ready, NotReady or Down.
    pub status: String,
    /// True when the node is cordoned or drained: nothing new is placed on it.
    pub cordoned: bool,
    /// Instances placed on it.
    pub instances: usize,
    /// CPU in millicores (1000 = one core).
    pub cpu_millicores: Usage,
    /// Memory in MB.
    pub memory_mb: Usage,
    /// Labels, matched by workloads' node_selector.
    pub labels: BTreeMap<String, String>,
    /// The full node record (address, capacity, disk), only with `detail: true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub definition: Option<NodeView>,
}

impl NodeSummary {
    /// The summary of `view`, with the full record when `detail`.
    pub(crate) fn of(view: &NodeView, detail: bool) -> Self {
        let n = &view.node;
        NodeSummary {
            id: n.id.to_string(),
            name: n.name.clone(),
            status: format!("{:?}", n.status),
            cordoned: n.unschedulable,
            instances: view.instances,
            cpu_millicores: Usage::new(view.allocated.cpu_millicores, n.allocatable.cpu_millicores),
            memory_mb: Usage::new(view.allocated.memory_mb, n.allocatable.memory_mb),
            labels: n.labels.clone(),
            definition: detail.then(|| view.clone()),
        }
    }
}

/// How many of `sizes` (each item's JSON size) fit in `budget` bytes, counting a comma each.
pub(crate) fn how_many_fit(sizes: impl IntoIterator<Item = usize>, budget: usize) -> usize {
    let mut used = 0usize;
    let mut n = 0;
    for size in sizes {
        used = used.saturating_add(size + 1);
        if used > budget {
            break;
        }
        n += 1;
    }
    n
}

/// Joins notes into one, skipping empty ones.
pub(crate) fn join_notes(notes: impl IntoIterator<Item = String>) -> Option<String> {
    let notes: Vec<String> = notes.into_iter().filter(|n| !n.is_empty()).collect();
    (!notes.is_empty()).then(|| notes.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_shared_types::RejectReason;

    #[test]
    fn scheduling_problems_read_like_the_scheduler() {
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
        let p = SchedulingProblem::from(&u);
        assert_eq!(
            p.summary,
            "0/5 nodes fit: 3 insufficient memory, 2 selector mismatch"
        );
        assert_eq!(p.nodes_fit, 0);
        assert_eq!(p.reasons[0].reason, "insufficient_memory");
        assert_eq!(p.reasons[0].meaning, "insufficient memory");
        assert_eq!(p.reasons[1].reason, "selector_mismatch");
    }

    #[test]
    fn http_errors_keep_every_field_problem() {
        use orchestrator_shared_types::api::ErrorBody;
        use orchestrator_shared_types::FieldError;
        let body = ErrorBody {
            error: ErrorInfo {
                code: "validation_failed".into(),
                message: "invalid workload: 2 problems".into(),
                details: vec![
                    FieldError {
                        field: "name".into(),
                        message: "must be a DNS-1123 label".into(),
                    },
                    FieldError {
                        field: "containers[0].resources.memory_mb".into(),
                        message: "must be greater than 0".into(),
                    },
                ],
            },
        };
        let e = ApiError::Http { status: 400, body };
        assert_eq!(
            describe(&e),
            "the orchestrator API answered HTTP 400 validation_failed: invalid workload: 2 problems\n\
             - name: must be a DNS-1123 label\n\
             - containers[0].resources.memory_mb: must be greater than 0"
        );
        assert_eq!(e.code(), Some("validation_failed"));
        let t = ToolError::from(e);
        assert_eq!(t.status, Some(400));
        assert!(
            t.message.ends_with("must be greater than 0"),
            "{}",
            t.message
        );
    }

    #[test]
    fn other_errors_carry_their_cause() {
        let source = serde_json::from_str::<u32>("x").unwrap_err();
        let e = ApiError::Decode {
            request: "GET /api/v1/cluster".into(),
            source,
        };
        let text = describe(&e);
        assert!(
            text.starts_with("cannot decode the server's answer to GET /api/v1/cluster: expected"),
            "{text}"
        );
    }

    #[test]
    fn fitting_counts_commas() {
        assert_eq!(how_many_fit([10, 10, 10], 22), 2);
        assert_eq!(how_many_fit([10, 10, 10], 10), 0);
        assert_eq!(how_many_fit([], 10), 0);
        assert_eq!(
            join_notes(["a".into(), String::new(), "b".into()]),
            Some("a b".into())
        );
        assert_eq!(join_notes([String::new()]), None);
    }
}
