//! Tools that observe: cluster_status, list_events, list_instances, get_logs.

use super::{bounded_page, page_size, paging_note, DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT};
use crate::output::{
    join_notes, json_len, EventSummary, Hint, InstanceSummary, NodeSummary, ToolError, Usage,
    WorkloadSummary,
};
use crate::tools::workloads::status_line;
use crate::OrchestratorMcp;
use orchestrator_client::{Events, Instances, LogsQuery, Nodes, PageRequest, Workloads};
use orchestrator_shared_types::api::{parse_log_since, Membership};
use orchestrator_shared_types::{Event, WorkloadInstance};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::schemars::{self, JsonSchema};
use rmcp::{tool, tool_router, Json};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Default number of events listed.
const DEFAULT_EVENTS: u32 = 20;
/// Most events listed per call.
const MAX_EVENTS: u32 = 200;
/// Default number of log lines.
const DEFAULT_TAIL: u32 = 100;
/// Most log lines per call.
const MAX_TAIL: u32 = 1000;
/// Nodes read for the cluster's capacity totals.
const STATUS_NODES: u32 = 1000;
/// Workloads read for the cluster's "needs attention" list.
const STATUS_WORKLOADS: u32 = 500;
/// Workloads named in "needs attention".
const STATUS_ATTENTION: usize = 20;

/// Arguments of list_events.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventsArgs {
    /// Only the events of this workload (name or id; deleted workloads' names work too).
    #[serde(default)]
    pub workload: Option<String>,
    /// Events per call (default 20, at most 200).
    #[serde(default)]
    pub limit: Option<u32>,
    /// Only events after this `seq` (oldest first, paged with `continue`). Without it, the most
    /// recent events are returned.
    #[serde(default)]
    pub after: Option<u64>,
    /// The `continue` token returned by the previous call, for the next page.
    #[serde(default, rename = "continue")]
    pub cont: Option<String>,
    /// Include the scheduler's typed reasons of Unschedulable events (default false).
    #[serde(default)]
    pub detail: bool,
}

/// Arguments of list_instances.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstancesArgs {
    /// Only the instances of this workload (name or id).
    #[serde(default)]
    pub workload: Option<String>,
    /// Only the instances placed on this node (id or name).
    #[serde(default)]
    pub node: Option<String>,
    /// Instances per page (default 50, at most 500).
    #[serde(default)]
    pub limit: Option<u32>,
    /// The `continue` token returned with the previous page.
    #[serde(default, rename = "continue")]
    pub cont: Option<String>,
}

/// Arguments of get_logs.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogsArgs {
    /// The instance id, e.g. "web-3f9a0c1d2e4b" (get_workload lists them).
    pub instance: String,
    /// Last lines to return (default 100, at most 1000).
    #[serde(default)]
    pub tail: Option<u32>,
    /// Only lines written in this last span of time: a number and a unit, s, m, h or d, e.g.
    /// "30s", "10m", "2h" (about a second of older output may be included).
    #[serde(default)]
    pub since: Option<String>,
    /// The container, by its name in the workload (default: the instance's first).
    #[serde(default)]
    pub container: Option<String>,
}

/// Nodes per state.
#[derive(Debug, Default, Serialize, JsonSchema)]
pub struct NodeCounts {
    /// Nodes counted.
    pub total: usize,
    /// Ready.
    pub ready: usize,
    /// NotReady (reachable, unhealthy).
    pub not_ready: usize,
    /// Down (unreachable).
    pub down: usize,
    /// Cordoned or drained: nothing new placed on them.
    pub cordoned: usize,
}

/// A workload that is not fully running.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Attention {
    /// The workload.
    pub name: String,
    /// Its replicas, e.g. "1/3 running, 2 pending".
    pub status: String,
}

/// The state of the whole cluster.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ClusterStatus {
    /// One paragraph: nodes, workloads, instances, capacity, problems.
    pub summary: String,
    /// Server version.
    pub version: String,
    /// The store in use, e.g. "redb:/var/lib/orchestrator".
    pub store: String,
    /// The container runtime, e.g. "youki" or "simulated".
    pub runtime: String,
    /// Nodes per state.
    pub nodes: NodeCounts,
    /// Workloads.
    pub workloads: usize,
    /// Instances per status (Running, Pending, Failed, ...).
    pub instances: BTreeMap<String, usize>,
    /// CPU of all nodes, in millicores.
    pub cpu_millicores: Usage,
    /// Memory of all nodes, in MB.
    pub memory_mb: Usage,
    /// Workloads whose replicas are not all running (get_workload and explain_pending say why).
    pub attention: Vec<Attention>,
    /// Who is in the cluster, who leads it, and whether the store answers (absent from servers
    /// that predate clusters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub membership: Option<MembershipSummary>,
    /// What the figures cover, when not everything was read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The members of the cluster, its leader and its store's health, as the answering daemon sees
/// them.
#[derive(Debug, Serialize, JsonSchema)]
pub struct MembershipSummary {
    /// "single-node" (one daemon, embedded store) or "etcd" (daemons sharing an etcd store).
    pub mode: String,
    /// The node of the daemon that answered.
    pub this_node: String,
    /// The node of the daemon running the reconcile loop; absent while none is elected (then
    /// changes are stored but not carried out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// Where the leader's API is reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader_address: Option<String>,
    /// Every member: node, address, status (Ready while its liveness lease is held, Down once
    /// it expired), whether it leads.
    pub members: Vec<MemberSummary>,
    /// Whether the answering daemon reaches the store.
    pub store_reachable: bool,
    /// What failed when the store is unreachable, or why reads may be out of date.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_message: Option<String>,
}

/// One member of the cluster.
#[derive(Debug, Serialize, JsonSchema)]
pub struct MemberSummary {
    /// Its node.
    pub node: String,
    /// Where its daemon's API is reached.
    pub address: String,
    /// Ready, NotReady or Down.
    pub status: String,
    /// Whether it is the leader.
    pub leader: bool,
}

impl MembershipSummary {
    /// The summary of `m`; `None` for a server that sent no membership.
    fn of(m: &Membership) -> Option<Self> {
        if m.mode.is_empty() {
            return None;
        }
        Some(Self {
            mode: m.mode.clone(),
            this_node: m.this_node.to_string(),
            leader: m.leader.as_ref().map(|l| l.node.to_string()),
            leader_address: m
                .leader
                .as_ref()
                .map(|l| l.address.clone())
                .filter(|a| !a.is_empty()),
            members: m
                .members
                .iter()
                .map(|member| MemberSummary {
                    node: member.node.to_string(),
                    address: member.address.clone(),
                    status: format!("{:?}", member.status),
                    leader: member.leader,
                })
                .collect(),
            store_reachable: m.store_health.reachable,
            store_message: m.store_health.message.clone(),
        })
    }
}

/// A page of events.
#[derive(Debug, Serialize, JsonSchema)]
pub struct EventList {
    /// Events, oldest first.
    pub events: Vec<EventSummary>,
    /// Present when more events follow: pass it as `continue`.
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// The highest seq returned: pass it as `after` later to see only newer events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<u64>,
    /// How to get more.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A page of instances.
#[derive(Debug, Serialize, JsonSchema)]
pub struct InstanceList {
    /// The instances, sorted by workload then id.
    pub instances: Vec<InstanceSummary>,
    /// Present when more instances follow: pass it as `continue`.
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// How to get the rest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The last lines of an instance's output.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Logs {
    /// The instance.
    pub instance: String,
    /// Lines, oldest first.
    pub lines: Vec<String>,
    /// What was left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[tool_router(router = observe_tools, vis = "pub(crate)")]
impl OrchestratorMcp {
    /// The state of the whole cluster in one call: a summary line, server version, store and
    /// runtime, nodes per state, workload count, instances per status, total CPU and memory
    /// (allocated, allocatable, free), and the workloads whose replicas are not all running.
    /// Start here to answer "how is the cluster doing?".
    #[tool(annotations(
        title = "Cluster status",
        read_only_hint = true,
        open_world_hint = false
    ))]
    async fn cluster_status(&self) -> Result<Json<ClusterStatus>, String> {
        self.finish("cluster_status", cluster_status(self).await)
    }

    /// Read the event log: what the orchestrator did and why (Scheduled, Started, Failed,
    /// Restarted, Rescheduled, Unschedulable, Stopped, Updated, Deleted), with times, the
    /// workload, instance and node concerned, and a sentence. Without `after`, the most recent
    /// `limit` events (default 20); with `after: SEQ`, the events after it, oldest first, paged
    /// with `continue`. Filter with `workload`. Returns `last_seq` to poll for newer events.
    #[tool(annotations(title = "List events", read_only_hint = true, open_world_hint = false))]
    async fn list_events(
        &self,
        Parameters(args): Parameters<EventsArgs>,
    ) -> Result<Json<EventList>, String> {
        self.finish("list_events", list_events(self, args).await)
    }

    /// List instances (replicas), optionally of one workload and/or on one node: id, node,
    /// status, restarts, exit code, last error. Use it to page through a large workload's
    /// replicas or to find an instance id for get_logs. Paged: `limit` (default 50) and
    /// `continue`.
    #[tool(annotations(
        title = "List instances",
        read_only_hint = true,
        open_world_hint = false
    ))]
    async fn list_instances(
        &self,
        Parameters(args): Parameters<InstancesArgs>,
    ) -> Result<Json<InstanceList>, String> {
        self.finish("list_instances", list_instances(self, args).await)
    }

    /// The last lines written by an instance's container (stdout and stderr interleaved, as
    /// written; lines carry no timestamps), to see why it fails. Bounded: `tail` lines (default
    /// 100, at most 1000), optionally only those of the last `since` (e.g. "10m"; dated to about
    /// a second), cut to the size cap keeping the newest lines. `container` picks one
    /// container of a multi-container instance (default: its first). Instance ids come from
    /// get_workload or list_instances; an instance with no container yet (Pending) has no logs.
    #[tool(annotations(title = "Get logs", read_only_hint = true, open_world_hint = false))]
    async fn get_logs(&self, Parameters(args): Parameters<LogsArgs>) -> Result<Json<Logs>, String> {
        self.finish("get_logs", get_logs(self, args).await)
    }
}

pub(crate) async fn cluster_status(mcp: &OrchestratorMcp) -> Result<ClusterStatus, ToolError> {
    let api = mcp.api();
    let info = api.cluster_info().await?;
    let nodes = api.list(&Nodes, &PageRequest::first(STATUS_NODES)).await?;
    let workloads = api
        .list(&Workloads, &PageRequest::first(STATUS_WORKLOADS))
        .await?;

    let mut counts = NodeCounts::default();
    let (mut cpu, mut memory) = (Usage::default(), Usage::default());
    for view in &nodes.items {
        let n = NodeSummary::of(view, false);
        counts.total += 1;
        match n.status.as_str() {
            "Ready" => counts.ready += 1,
            "NotReady" => counts.not_ready += 1,
            _ => counts.down += 1,
        }
        if n.cordoned {
            counts.cordoned += 1;
        }
        cpu.add(&n.cpu_millicores);
        memory.add(&n.memory_mb);
    }
    let troubled: Vec<Attention> = workloads
        .items
        .iter()
        .map(|w| WorkloadSummary::of(w, false))
        .filter(|w| w.replicas.running < w.replicas.desired || w.replicas.failed > 0)
        .map(|w| Attention {
            status: status_line(&w.replicas, None),
            name: w.name,
        })
        .collect();
    let troubled_total = troubled.len();
    let attention: Vec<Attention> = troubled.into_iter().take(STATUS_ATTENTION).collect();
    let instances: BTreeMap<String, usize> = info
        .instances
        .iter()
        .map(|(status, n)| (status.to_string(), *n))
        .collect();

    let mut notes = Vec::new();
    if nodes.next.is_some() {
        notes.push(format!(
            "Node counts and capacity cover the first {STATUS_NODES} nodes (list_nodes pages through all)."
        ));
    }
    if workloads.next.is_some() {
        notes.push(format!(
            "Workloads needing attention were looked for among the first {STATUS_WORKLOADS} (list_workloads pages through all)."
        ));
    }
    if troubled_total > attention.len() {
        notes.push(format!(
            "{troubled_total} workloads need attention; the first {} are named.",
            attention.len()
        ));
    }

    let instance_text = if instances.is_empty() {
        "no instances".to_owned()
    } else {
        let total: usize = instances.values().sum();
        let parts: Vec<String> = instances.iter().map(|(s, n)| format!("{n} {s}")).collect();
        format!("{total} instances ({})", parts.join(", "))
    };
    let mut summary = format!(
        "{} node(s) ({} ready{}{}), {} workload(s), {instance_text}; CPU {}/{} millicores and memory {}/{} MB allocated.",
        counts.total,
        counts.ready,
        if counts.cordoned > 0 { format!(", {} cordoned", counts.cordoned) } else { String::new() },
        if counts.total > counts.ready { format!(", {} not ready or down", counts.total - counts.ready) } else { String::new() },
        info.workloads,
        cpu.allocated,
        cpu.allocatable,
        memory.allocated,
        memory.allocatable,
    );
    let membership = MembershipSummary::of(&info.membership);
    if let Some(m) = &membership {
        match &m.leader {
            Some(leader) => summary.push_str(&format!(" Leader: {leader}.")),
            None => summary.push_str(
                " No leader is elected: changes are stored but not carried out until one is.",
            ),
        }
        if !m.store_reachable {
            summary.push_str(
                " The answering daemon cannot reach the store: what it shows may be out of date.",
            );
        }
    }
    if troubled_total == 0 {
        summary.push_str(" Every workload runs all its replicas.");
    } else {
        summary.push_str(&format!(
            " {troubled_total} workload(s) do not run all their replicas."
        ));
    }
    Ok(ClusterStatus {
        summary,
        version: info.version,
        store: info.store,
        runtime: info.runtime,
        nodes: counts,
        workloads: info.workloads,
        instances,
        cpu_millicores: cpu,
        memory_mb: memory,
        attention,
        membership,
        note: join_notes(notes),
    })
}

pub(crate) async fn list_events(
    mcp: &OrchestratorMcp,
    args: EventsArgs,
) -> Result<EventList, ToolError> {
    let limit = page_size(args.limit, DEFAULT_EVENTS, MAX_EVENTS)?;
    let events = Events {
        workload: args.workload.clone(),
        after: args.after,
    };
    let page = bounded_page(
        mcp.api(),
        &events,
        limit,
        args.cont.as_deref(),
        mcp.list_budget(),
        |e: &Event| EventSummary::of(e, args.detail),
    )
    .await?;
    let last_seq = page.items.iter().map(|e| e.seq).max();
    let mut notes = vec![paging_note(
        "list_events",
        page.next.as_deref(),
        page.shrunk,
    )];
    if args.after.is_none() && args.cont.is_none() {
        if let Some(seq) = last_seq {
            notes.push(format!(
                "These are the most recent events; call again with after: {seq} to see only newer ones."
            ));
        }
    }
    Ok(EventList {
        events: page.items,
        next: page.next,
        last_seq,
        note: join_notes(notes),
    })
}

pub(crate) async fn list_instances(
    mcp: &OrchestratorMcp,
    args: InstancesArgs,
) -> Result<InstanceList, ToolError> {
    let limit = page_size(args.limit, DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT)?;
    let instances = Instances {
        workload: args.workload.clone(),
        node: args.node.clone(),
    };
    let page = bounded_page(
        mcp.api(),
        &instances,
        limit,
        args.cont.as_deref(),
        mcp.list_budget(),
        |i: &WorkloadInstance| InstanceSummary::from(i),
    )
    .await?;
    let note = paging_note("list_instances", page.next.as_deref(), page.shrunk);
    Ok(InstanceList {
        instances: page.items,
        next: page.next,
        note: join_notes([note]),
    })
}

pub(crate) async fn get_logs(mcp: &OrchestratorMcp, args: LogsArgs) -> Result<Logs, ToolError> {
    let tail = page_size(args.tail, DEFAULT_TAIL, MAX_TAIL)
        .map_err(|_| ToolError::invalid("`tail` must be at least 1"))?;
    if let Some(since) = &args.since {
        parse_log_since(since).map_err(|e| ToolError::invalid(format!("`since` {e}")))?;
    }
    let query = LogsQuery {
        container: args.container.clone(),
        tail: Some(tail as usize),
        since: args.since.clone(),
        follow: false,
    };
    // The answer is plain text: the bytes the container wrote.
    let body = mcp.api().logs_text(&args.instance, &query).await.hint(
        404,
        "No instance has this id: instance ids come from get_workload or list_instances.",
    )?;
    let mut lines: Vec<String> = body.lines().map(str::to_owned).collect();
    let total = lines.len();
    // Never more than asked, whatever the server sent.
    if lines.len() > tail as usize {
        lines.drain(..lines.len() - tail as usize);
    }
    // Keep the newest lines that fit the cap.
    let budget = mcp.list_budget();
    let mut used = 0usize;
    let mut keep = 0;
    for line in lines.iter().rev() {
        used = used.saturating_add(json_len(line) + 1);
        if used > budget {
            break;
        }
        keep += 1;
    }
    let cut = lines.len() - keep;
    lines.drain(..cut);
    let note = if cut > 0 {
        Some(format!(
            "{cut} older line(s) left out to fit the size cap ({total} received); ask with a smaller `tail` or a shorter `since` to read fewer."
        ))
    } else if lines.is_empty() && args.since.is_some() {
        Some("No lines in that span.".to_owned())
    } else if lines.is_empty() {
        Some("The container has written nothing yet.".to_owned())
    } else {
        None
    };
    Ok(Logs {
        instance: args.instance,
        lines,
        note,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_shared_types::api::{LeaderInfo, MemberInfo, StoreHealth};
    use orchestrator_shared_types::NodeStatus;

    #[test]
    fn membership_is_summarized_for_models() {
        assert!(
            MembershipSummary::of(&Membership::default()).is_none(),
            "a server from before clusters"
        );
        let m = Membership {
            mode: "etcd".into(),
            cluster_id: Some("c-1".into()),
            this_node: "node-b".into(),
            leader: Some(LeaderInfo {
                node: "node-a".into(),
                address: "10.0.0.1:8080".into(),
                since_revision: 42,
            }),
            members: vec![MemberInfo {
                node: "node-b".into(),
                address: "10.0.0.2:8080".into(),
                status: NodeStatus::Down,
                leader: false,
            }],
            store_health: StoreHealth {
                reachable: false,
                revision: None,
                message: Some("store unavailable during revision".into()),
            },
        };
        let s = serde_json::to_value(MembershipSummary::of(&m).unwrap()).unwrap();
        assert_eq!(
            s,
            serde_json::json!({
                "mode": "etcd",
                "this_node": "node-b",
                "leader": "node-a",
                "leader_address": "10.0.0.1:8080",
                "members": [{"node": "node-b", "address": "10.0.0.2:8080", "status": "Down", "leader": false}],
                "store_reachable": false,
                "store_message": "store unavailable during revision",
            })
        );
    }
}
