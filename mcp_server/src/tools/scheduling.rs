//! Scheduling tools: explain_pending (why replicas are not placed) and plan_deployment (where
//! they would go, as a dry run).

use super::workloads::{parse_manifest, WorkloadFields};
use crate::output::{Hint, SchedulingProblem, ToolError};
use crate::OrchestratorMcp;
use orchestrator_client::{Nodes, PageRequest};
use orchestrator_shared_types::{Resources, WorkloadDefinition};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::schemars::{self, JsonSchema};
use rmcp::{tool, tool_router, Json};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Nodes read to find the largest free room.
const ROOM_NODES: u32 = 1000;

/// Arguments of explain_pending.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExplainArgs {
    /// The workload's name (or id).
    pub name: String,
}

/// Arguments of plan_deployment: a manifest or fields, not both.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanArgs {
    /// YAML of one workload definition, as apply_manifest takes.
    #[serde(default)]
    pub manifest: Option<String>,
    /// Or the workload as deploy_workload takes it (name, image, replicas, cpu_millicores,
    /// memory_mb, node_selector, placement, ...).
    #[serde(default)]
    pub workload: Option<WorkloadFields>,
}

/// Why a workload's replicas are (or would be) not placed.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PendingExplanation {
    /// The workload.
    pub workload: String,
    /// The answer in a sentence.
    pub summary: String,
    /// Replicas asked for.
    pub desired: u32,
    /// Replicas not placed.
    pub pending: u32,
    /// What one replica asks for (the sum over its containers).
    pub per_replica: Resources,
    /// The scheduler's verdict now, node by node, for a replica of this workload.
    pub reasons: SchedulingProblem,
    /// The reasons recorded when its pending replicas last failed to be placed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_attempt: Option<SchedulingProblem>,
    /// What could be done about it.
    pub hints: Vec<String>,
    /// When a rollout is under way and waits: what for (which replica, which probe and its
    /// output, or its last error). Placement is not the only thing a rollout waits on.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rollout_waiting_for: Vec<String>,
}

/// Replicas on one node.
#[derive(Debug, Serialize, JsonSchema)]
pub struct NodePlacement {
    /// Node id.
    pub node: String,
    /// Replicas that would go there.
    pub replicas: usize,
}

/// Where a workload's replicas would go.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DeploymentPlan {
    /// The workload.
    pub workload: String,
    /// Replicas asked for.
    pub replicas: u32,
    /// True when every replica would be placed.
    pub fits: bool,
    /// The answer in a sentence.
    pub summary: String,
    /// What one replica asks for (the sum over its containers).
    pub per_replica: Resources,
    /// Replicas per node.
    pub placements: Vec<NodePlacement>,
    /// Replicas that would stay pending.
    pub unplaced: usize,
    /// Why those would not fit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<SchedulingProblem>,
    /// What could be done about it.
    pub hints: Vec<String>,
    /// Reminder that nothing changed.
    pub note: String,
}

#[tool_router(router = scheduling_tools, vis = "pub(crate)")]
impl OrchestratorMcp {
    /// Explain why a workload's replicas are pending (not placed on any node), from the
    /// scheduler's typed reasons counted per node, e.g. "0/5 nodes fit: 3 insufficient
    /// memory, 2 selector mismatch". Returns the reasons now and at the last attempt, what one
    /// replica asks for, and hints (e.g. the most free memory on any node, cordoned nodes,
    /// selector labels); when a rollout waits, on what (replica, failing probe, its output).
    /// Use it whenever get_workload shows pending replicas or a rollout that does not finish.
    #[tool(annotations(
        title = "Explain pending replicas",
        read_only_hint = true,
        open_world_hint = false
    ))]
    async fn explain_pending(
        &self,
        Parameters(args): Parameters<ExplainArgs>,
    ) -> Result<Json<PendingExplanation>, String> {
        self.finish("explain_pending", explain_pending(self, &args.name).await)
    }

    /// Dry run of a deployment: where the replicas of a workload would be placed now and what
    /// would not fit (with the scheduler's reasons and hints), changing nothing. Give either
    /// `manifest` (YAML of one workload) or `workload` (the fields of deploy_workload). For a
    /// workload that exists, its current replicas count as moved out of the way, as an update
    /// would replace them. Use it before deploy_workload, apply_manifest or scale_workload to
    /// plan capacity.
    #[tool(annotations(
        title = "Plan a deployment (dry run)",
        read_only_hint = true,
        open_world_hint = false
    ))]
    async fn plan_deployment(
        &self,
        Parameters(args): Parameters<PlanArgs>,
    ) -> Result<Json<DeploymentPlan>, String> {
        self.finish("plan_deployment", plan_deployment(self, args).await)
    }
}

/// The most free CPU, memory and disk on any schedulable node, each with its node.
#[derive(Debug, Default)]
struct Room {
    cpu: Option<(String, u64)>,
    memory: Option<(String, u64)>,
    disk: Option<(String, u64)>,
    cordoned: usize,
    labels: Vec<BTreeMap<String, String>>,
}

async fn room(mcp: &OrchestratorMcp) -> Room {
    // Hints are a bonus: without the node list they are only vaguer.
    let Ok(nodes) = mcp
        .api()
        .list(&Nodes, &PageRequest::first(ROOM_NODES))
        .await
    else {
        return Room::default();
    };
    let mut room = Room::default();
    let better = |slot: &mut Option<(String, u64)>, name: &str, free: u64| {
        if slot.as_ref().is_none_or(|(_, best)| free > *best) {
            *slot = Some((name.to_owned(), free));
        }
    };
    for v in &nodes.items {
        room.labels.push(v.node.labels.clone());
        if v.node.unschedulable {
            room.cordoned += 1;
        }
        if !v.node.is_schedulable() {
            continue;
        }
        let free = v.node.allocatable.saturating_sub(&v.allocated);
        better(&mut room.cpu, &v.node.name, free.cpu_millicores);
        better(&mut room.memory, &v.node.name, free.memory_mb);
        better(&mut room.disk, &v.node.name, free.disk_mb);
    }
    room
}

/// Advice for each reason of `problem`.
fn hints(
    problem: &SchedulingProblem,
    request: &Resources,
    selector: &BTreeMap<String, String>,
    room: &Room,
) -> Vec<String> {
    let mut hints = Vec::new();
    if problem.nodes_total == 0 {
        hints.push("The cluster has no nodes: start orchestratord on a machine.".to_owned());
    }
    let most = |slot: &Option<(String, u64)>, unit: &str| match slot {
        Some((node, free)) => {
            format!("the most free on a schedulable node is {free} {unit} ({node})")
        }
        None => "no node is schedulable".to_owned(),
    };
    for r in &problem.reasons {
        let hint = match r.reason.as_str() {
            "insufficient_memory" => format!(
                "Each replica asks for {} MB of memory and {}: lower memory_mb, scale down or delete other workloads, or add nodes.",
                request.memory_mb,
                most(&room.memory, "MB")
            ),
            "insufficient_cpu" => format!(
                "Each replica asks for {} millicores of CPU and {}: lower cpu_millicores, scale down or delete other workloads, or add nodes.",
                request.cpu_millicores,
                most(&room.cpu, "millicores")
            ),
            "insufficient_disk" => format!(
                "Each replica asks for {} MB of disk and {}: lower disk_mb or free disk on the nodes.",
                request.disk_mb,
                most(&room.disk, "MB")
            ),
            "selector_mismatch" => {
                let matching = room
                    .labels
                    .iter()
                    .filter(|l| selector.iter().all(|(k, v)| l.get(k) == Some(v)))
                    .count();
                format!(
                    "node_selector {selector:?} matches {matching} node(s): change the selector, or give nodes those labels (list_nodes shows node labels)."
                )
            }
            "node_unschedulable" => format!(
                "{} node(s) are cordoned or drained: uncordon_node lets them take replicas again once maintenance is over.",
                room.cordoned.max(r.nodes)
            ),
            "node_not_ready" => "Some nodes are not Ready (NotReady or Down): describe_node shows them; replicas go there once they recover.".to_owned(),
            "host_port_conflict" => "A host port the replicas claim is already taken on those nodes (two replicas cannot claim one host port on a node): drop host_port, set host_port 0 (a free port per replica, passed as $PORT), choose another, or add nodes.".to_owned(),
            "host_ports_exhausted" => "Every dynamic host port (20000-32767) is taken on the chosen node: remove replicas holding them, or add nodes.".to_owned(),
            "anti_affinity" => "placement one_per_node allows one replica per node and the eligible nodes each have one: add nodes, lower replicas, or use placement spread.".to_owned(),
            _ => continue,
        };
        hints.push(hint);
    }
    hints
}

pub(crate) async fn explain_pending(
    mcp: &OrchestratorMcp,
    name: &str,
) -> Result<PendingExplanation, ToolError> {
    let detail = mcp
        .api()
        .get_workload(name)
        .await
        .hint(404, super::workloads::UNKNOWN_WORKLOAD)?;
    let now = mcp
        .api()
        .explain_workload(name)
        .await
        .hint(404, super::workloads::UNKNOWN_WORKLOAD)?;
    let reasons = SchedulingProblem::from(&now);
    let last_attempt = detail.pending_reason.as_ref().map(SchedulingProblem::from);
    let request = detail.workload.replica_resources();
    let room = room(mcp).await;
    let (desired, pending) = (detail.replicas.desired, detail.replicas.pending);
    let name = detail.workload.name.clone();
    // The reasons that explain the pending replicas: the recorded ones, else today's.
    let shown = match (&last_attempt, pending) {
        (Some(last), p) if p > 0 && reasons.reasons.is_empty() => last,
        _ => &reasons,
    };
    let summary = if pending > 0 {
        format!(
            "{pending} of {desired} replicas of {name} are pending: {}.",
            shown.summary
        )
    } else if reasons.reasons.is_empty() || reasons.nodes_fit > 0 {
        format!(
            "No replica of {name} is pending ({desired} asked for); one more would fit: {}.",
            reasons.summary
        )
    } else {
        format!(
            "No replica of {name} is pending ({desired} asked for), but one more would not fit: {}.",
            reasons.summary
        )
    };
    let mut hints = hints(shown, &request, &detail.workload.node_selector, &room);
    let rollout_waiting_for = detail
        .rollout
        .as_ref()
        .filter(|r| !r.complete)
        .map(|r| r.waiting_for.clone())
        .unwrap_or_default();
    if !rollout_waiting_for.is_empty() {
        hints.push(
            "A rollout is under way and waits on replicas of the new template (see \
             rollout_waiting_for; rollout_status has the details, rollback_workload returns to \
             an earlier revision)."
                .to_owned(),
        );
    }
    Ok(PendingExplanation {
        workload: name,
        summary,
        desired,
        pending,
        per_replica: request,
        reasons,
        last_attempt,
        hints,
        rollout_waiting_for,
    })
}

/// The definition to preview, from a manifest or fields.
fn definition(args: PlanArgs) -> Result<serde_json::Value, ToolError> {
    match (args.manifest, args.workload) {
        (Some(_), Some(_)) => Err(ToolError::invalid(
            "give either `manifest` or `workload`, not both",
        )),
        (None, None) => Err(ToolError::invalid(
            "give `manifest` (YAML of one workload) or `workload` (the fields of deploy_workload)",
        )),
        (None, Some(fields)) => Ok(fields.to_definition()),
        (Some(text), None) => {
            let mut docs = parse_manifest(&text)?;
            match docs.len() {
                1 => Ok(docs.remove(0)),
                n => Err(ToolError::invalid(format!(
                    "plan_deployment takes one workload; the manifest holds {n} (call it once per workload)"
                ))),
            }
        }
    }
}

pub(crate) async fn plan_deployment(
    mcp: &OrchestratorMcp,
    args: PlanArgs,
) -> Result<DeploymentPlan, ToolError> {
    let def = definition(args)?;
    let preview = mcp.api().preview(&def).await?;
    // The API accepted it, so it reads as a definition.
    let parsed: Option<WorkloadDefinition> = serde_json::from_value(def).ok();
    let (name, replicas, request, selector) = match &parsed {
        Some(d) => (
            d.name.clone(),
            d.replicas,
            d.replica_resources(),
            d.node_selector.clone(),
        ),
        None => (String::new(), 0, Resources::ZERO, BTreeMap::new()),
    };
    let placements: Vec<NodePlacement> = preview
        .placements
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(node, n)| NodePlacement {
            node: node.to_string(),
            replicas: *n,
        })
        .collect();
    let placed: usize = placements.iter().map(|p| p.replicas).sum();
    let problem = preview
        .unschedulable
        .as_ref()
        .filter(|u| u.unplaced > 0)
        .map(SchedulingProblem::from);
    let unplaced = problem.as_ref().map_or_else(
        || (replicas as usize).saturating_sub(placed),
        |p| p.unplaced,
    );
    let spread: Vec<String> = placements
        .iter()
        .map(|p| format!("{} x{}", p.node, p.replicas))
        .collect();
    let where_ = if spread.is_empty() {
        String::new()
    } else {
        format!(" ({})", spread.join(", "))
    };
    let summary = match &problem {
        None if unplaced == 0 => format!("All {replicas} replicas of {name} would be placed{where_}."),
        None => format!("{placed} of {replicas} replicas of {name} would be placed{where_}; {unplaced} would stay pending."),
        Some(p) => format!(
            "{placed} of {replicas} replicas of {name} would be placed{where_}; {unplaced} would stay pending: {}.",
            p.summary
        ),
    };
    let hints = match &problem {
        Some(p) => hints(p, &request, &selector, &room(mcp).await),
        None => Vec::new(),
    };
    Ok(DeploymentPlan {
        workload: name,
        replicas,
        fits: unplaced == 0,
        summary,
        per_replica: request,
        placements,
        unplaced,
        problem,
        hints,
        note: "Dry run: nothing was changed. deploy_workload or apply_manifest with the same definition would do it.".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_shared_types::{RejectReason, Unschedulable};

    #[test]
    fn hints_name_the_numbers() {
        let u = Unschedulable {
            nodes_total: 2,
            reasons: [
                (RejectReason::InsufficientMemory, 1),
                (RejectReason::SelectorMismatch, 1),
            ]
            .into_iter()
            .collect(),
            unplaced: 1,
        };
        let room = Room {
            memory: Some(("node-1".into(), 512)),
            labels: vec![BTreeMap::new()],
            ..Default::default()
        };
        let request = Resources {
            memory_mb: 4096,
            ..Default::default()
        };
        let selector: BTreeMap<String, String> = [("disk".to_owned(), "ssd".to_owned())].into();
        let h = hints(&SchedulingProblem::from(&u), &request, &selector, &room);
        assert_eq!(h.len(), 2, "{h:?}");
        assert!(
            h[0].contains("4096 MB") && h[0].contains("512 MB (node-1)"),
            "{h:?}"
        );
        assert!(h[1].contains("matches 0 node(s)"), "{h:?}");
    }

    #[test]
    fn plans_take_a_manifest_or_fields() {
        let both = PlanArgs {
            manifest: Some("name: a".into()),
            workload: serde_json::from_value(serde_json::json!({"name": "a", "image": "x"})).ok(),
        };
        assert!(definition(both).is_err());
        let none = PlanArgs {
            manifest: None,
            workload: None,
        };
        assert!(definition(none).is_err());
        let two = PlanArgs {
            manifest: Some("name: a\n---\nname: b\n".into()),
            workload: None,
        };
        assert!(definition(two).unwrap_err().message.contains("holds 2"));
        let one = PlanArgs {
            manifest: Some("name: a\nreplicas: 2\n".into()),
            workload: None,
        };
        assert_eq!(definition(one).unwrap()["replicas"], 2);
    }
}
