//! Node tools: list_nodes, describe_node, drain_node, uncordon_node.

use super::workloads::PageArgs;
use super::{
    bounded_page, page_size, paging_note, require_confirm, DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT,
};
use crate::output::{describe, join_notes, Hint, InstanceSummary, NodeSummary, ToolError};
use crate::OrchestratorMcp;
use orchestrator_client::{Instances, Nodes};
use orchestrator_shared_types::api::NodeView;
use orchestrator_shared_types::WorkloadInstance;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::schemars::{self, JsonSchema};
use rmcp::{tool, tool_router, Json};
use serde::{Deserialize, Serialize};

/// Hint added to a 404 on a node.
const UNKNOWN_NODE: &str = "Call list_nodes to see the ids and names of the nodes.";

/// Arguments of describe_node.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DescribeNodeArgs {
    /// The node's id or name.
    pub name: String,
    /// Instances listed per page (default 50, at most 500).
    #[serde(default)]
    pub limit: Option<u32>,
    /// The `continue` token returned with the previous page of instances.
    #[serde(default, rename = "continue")]
    pub cont: Option<String>,
    /// Include the node's full record (address, capacity, disk) (default false).
    #[serde(default)]
    pub detail: bool,
}

/// Arguments of drain_node and uncordon_node.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeActionArgs {
    /// The node's id or name.
    pub name: String,
    /// Must be true for drain_node: draining moves every instance off the node. Ignored by
    /// uncordon_node.
    #[serde(default)]
    pub confirm: bool,
}

/// A page of nodes.
#[derive(Debug, Serialize, JsonSchema)]
pub struct NodeList {
    /// The nodes, sorted by id.
    pub nodes: Vec<NodeSummary>,
    /// Present when more nodes follow: pass it as `continue` for the next page.
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// How to get the rest, when this is not everything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One node and a page of its instances.
#[derive(Debug, Serialize, JsonSchema)]
pub struct NodeReport {
    /// The node.
    pub node: NodeSummary,
    /// Instances placed on it (one page).
    pub instances: Vec<InstanceSummary>,
    /// Present when more instances follow: pass it as `continue` for the next page.
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// How to get the rest, when this is not everything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A node after drain_node or uncordon_node.
#[derive(Debug, Serialize, JsonSchema)]
pub struct NodeChanged {
    /// The node now.
    pub node: NodeSummary,
    /// What happens next.
    pub note: String,
}

#[tool_router(router = node_tools, vis = "pub(crate)")]
impl OrchestratorMcp {
    /// List the nodes (machines) of the cluster, sorted by id: status (Ready, NotReady, Down),
    /// whether cordoned, instance count, CPU and memory allocated / allocatable / free, and
    /// labels (what workloads' node_selector matches). Use it to see capacity or find a node.
    /// Paged: at most `limit` (default 50) per call, then call again with the returned
    /// `continue`. `detail: true` adds each full node record.
    #[tool(annotations(title = "List nodes", read_only_hint = true, open_world_hint = false))]
    async fn list_nodes(
        &self,
        Parameters(args): Parameters<PageArgs>,
    ) -> Result<Json<NodeList>, String> {
        self.finish("list_nodes", list_nodes(self, args).await)
    }

    /// Show one node (by id or name): its status, cordon, resources allocated and free,
    /// labels, and the instances placed on it (id, status, restarts, last error), paged like
    /// the lists (`limit`, `continue`). Use it before draining a node or to see what runs where.
    #[tool(annotations(
        title = "Describe a node",
        read_only_hint = true,
        open_world_hint = false
    ))]
    async fn describe_node(
        &self,
        Parameters(args): Parameters<DescribeNodeArgs>,
    ) -> Result<Json<NodeReport>, String> {
        self.finish("describe_node", describe_node(self, args).await)
    }

    /// Drain a node for maintenance: cordon it (nothing new is placed on it) and move its
    /// instances to other nodes. Replicas that fit nowhere else stay pending, with the reason
    /// (explain_pending). Needs `confirm: true`. Undo the cordon with uncordon_node.
    #[tool(annotations(
        title = "Drain a node",
        read_only_hint = false,
        destructive_hint = true,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn drain_node(
        &self,
        Parameters(args): Parameters<NodeActionArgs>,
    ) -> Result<Json<NodeChanged>, String> {
        self.finish(
            "drain_node",
            node_action(self, &args.name, "drain", args.confirm).await,
        )
    }

    /// Make a cordoned or drained node schedulable again, so new replicas may be placed on it.
    /// Instances that moved away during a drain stay where they are.
    #[tool(annotations(
        title = "Uncordon a node",
        read_only_hint = false,
        destructive_hint = false,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn uncordon_node(
        &self,
        Parameters(args): Parameters<NodeActionArgs>,
    ) -> Result<Json<NodeChanged>, String> {
        self.finish(
            "uncordon_node",
            node_action(self, &args.name, "uncordon", true).await,
        )
    }
}

pub(crate) async fn list_nodes(
    mcp: &OrchestratorMcp,
    args: PageArgs,
) -> Result<NodeList, ToolError> {
    let limit = page_size(args.limit, DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT)?;
    let page = bounded_page(
        mcp.api(),
        &Nodes,
        limit,
        args.cont.as_deref(),
        mcp.list_budget(),
        |n: &NodeView| NodeSummary::of(n, args.detail),
    )
    .await?;
    let note = paging_note("list_nodes", page.next.as_deref(), page.shrunk);
    Ok(NodeList {
        nodes: page.items,
        next: page.next,
        note: join_notes([note]),
    })
}

pub(crate) async fn describe_node(
    mcp: &OrchestratorMcp,
    args: DescribeNodeArgs,
) -> Result<NodeReport, ToolError> {
    let limit = page_size(args.limit, DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT)?;
    let view = mcp
        .api()
        .get_node(&args.name)
        .await
        .hint(404, UNKNOWN_NODE)?;
    let node = NodeSummary::of(&view, args.detail);
    let budget = mcp
        .list_budget()
        .saturating_sub(crate::output::json_len(&node));
    let on_node = Instances {
        workload: None,
        node: Some(view.node.id.to_string()),
    };
    let page = bounded_page(
        mcp.api(),
        &on_node,
        limit,
        args.cont.as_deref(),
        budget,
        |i: &WorkloadInstance| InstanceSummary::from(i),
    )
    .await?;
    let note = paging_note("describe_node", page.next.as_deref(), page.shrunk);
    Ok(NodeReport {
        node,
        instances: page.items,
        next: page.next,
        note: join_notes([note]),
    })
}

async fn node_action(
    mcp: &OrchestratorMcp,
    name: &str,
    action: &str,
    confirm: bool,
) -> Result<NodeChanged, ToolError> {
    if !confirm {
        let view = mcp.api().get_node(name).await.hint(404, UNKNOWN_NODE)?;
        require_confirm(
            false,
            &format!(
                "draining {} would cordon it and move its {} instance(s) to other nodes",
                view.node.name, view.instances
            ),
        )?;
    }
    let done = if action == "drain" {
        mcp.api().drain_node(name).await
    } else {
        mcp.api().uncordon_node(name).await
    };
    let view = done.map_err(|e| {
        // A server from before drain existed answers 404 "no route" or 405.
        let missing_route = e.status() == Some(405)
            || (e.status() == Some(404) && e.message().is_some_and(|m| m.starts_with("no route")));
        if missing_route {
            ToolError::new(format!(
                "{action} is not available: this orchestrator server has no {action} endpoint \
                     (POST /api/v1/nodes/{{name}}/{action}); upgrade orchestratord. ({})",
                describe(&e)
            ))
        } else if e.status() == Some(404) {
            ToolError::new(format!("{}\n{UNKNOWN_NODE}", describe(&e)))
        } else {
            e.into()
        }
    })?;
    let note = if action == "drain" {
        format!(
            "{} is cordoned; its instances are being moved to other nodes in the background. \
             describe_node shows what is left on it; explain_pending says why a workload's \
             replicas stay pending. uncordon_node makes it schedulable again.",
            view.node.name
        )
    } else {
        format!(
            "{} is schedulable again: new replicas may be placed on it.",
            view.node.name
        )
    };
    Ok(NodeChanged {
        node: NodeSummary::of(&view, false),
        note,
    })
}
