//! Resources: read-only JSON documents a client can attach to a conversation.
//!
//! * `orchestrator://cluster` — the cluster's status (what cluster_status returns).
//! * `orchestrator://workloads` and `orchestrator://nodes` — the first page of each list.
//! * `orchestrator://workloads/{name}` — one workload in detail (what get_workload returns
//!   with `detail: true`); `orchestrator://nodes/{name}` — one node and its instances.
//!
//! `resources/list` names the three fixed documents and then every workload and node, paged
//! with the protocol's cursor (which carries the API's `continue` token).

use crate::output::{describe, json_len, ToolError};
use crate::tools::nodes::DescribeNodeArgs;
use crate::tools::workloads::PageArgs;
use crate::tools::{nodes, observe, workloads};
use crate::{ApiError, OrchestratorMcp};
use orchestrator_client::{Nodes, PageRequest, Workloads};
use rmcp::model::{
    ListResourcesResult, ReadResourceResult, Resource, ResourceContents, ResourceTemplate,
};
use rmcp::ErrorData;
use serde::Serialize;

const CLUSTER: &str = "orchestrator://cluster";
const WORKLOADS: &str = "orchestrator://workloads";
const NODES: &str = "orchestrator://nodes";
const JSON: &str = "application/json";
/// Workloads or nodes named per `resources/list` page.
const PER_PAGE: u32 = 100;

/// The templates of the per-item resources.
pub(crate) fn templates() -> Vec<ResourceTemplate> {
    vec![
        ResourceTemplate::new(format!("{WORKLOADS}/{{name}}"), "workload")
            .with_title("A workload")
            .with_description(
                "One workload as JSON: status, replica counts, full definition, instances, recent events, pending reasons.",
            )
            .with_mime_type(JSON),
        ResourceTemplate::new(format!("{NODES}/{{name}}"), "node")
            .with_title("A node")
            .with_description(
                "One node as JSON (by id or name): status, cordon, resources, labels and its instances.",
            )
            .with_mime_type(JSON),
    ]
}

fn api_error(e: ApiError) -> ErrorData {
    ErrorData::internal_error(describe(&e), None)
}

/// One page of `resources/list`. Cursors: none (fixed documents and the first workloads),
/// `w:<token>` (more workloads), `n:` or `n:<token>` (nodes).
pub(crate) async fn list(
    mcp: &OrchestratorMcp,
    cursor: Option<String>,
) -> Result<ListResourcesResult, ErrorData> {
    let mut resources = Vec::new();
    let (kind, token) = match cursor.as_deref() {
        None => ("w", None),
        Some(c) => match c.split_once(':') {
            Some(("w", t)) if !t.is_empty() => ("w", Some(t.to_owned())),
            Some(("n", t)) => ("n", (!t.is_empty()).then(|| t.to_owned())),
            _ => return Err(ErrorData::invalid_params("unknown cursor", None)),
        },
    };
    if cursor.is_none() {
        resources.push(
            Resource::new(CLUSTER, "cluster")
                .with_title("Cluster status")
                .with_description("Nodes, workloads, instances per status, capacity, and the workloads that need attention.")
                .with_mime_type(JSON),
        );
        resources.push(
            Resource::new(WORKLOADS, "workloads")
                .with_title("Workloads")
                .with_description("The first page of workloads with their replica counts.")
                .with_mime_type(JSON),
        );
        resources.push(
            Resource::new(NODES, "nodes")
                .with_title("Nodes")
                .with_description("The first page of nodes with their resources and labels.")
                .with_mime_type(JSON),
        );
    }
    let request = PageRequest::after(Some(PER_PAGE), token);
    let next = if kind == "w" {
        let page = mcp
            .api()
            .list(&Workloads, &request)
            .await
            .map_err(api_error)?;
        for w in &page.items {
            let name = &w.workload.name;
            resources.push(
                Resource::new(format!("{WORKLOADS}/{name}"), format!("workload {name}"))
                    .with_description(format!(
                        "Workload {name}: {}/{} replicas running.",
                        w.replicas.running, w.replicas.desired
                    ))
                    .with_mime_type(JSON),
            );
        }
        Some(match page.next {
            Some(t) => format!("w:{t}"),
            None => "n:".to_owned(),
        })
    } else {
        let page = mcp.api().list(&Nodes, &request).await.map_err(api_error)?;
        for n in &page.items {
            let id = &n.node.id;
            resources.push(
                Resource::new(format!("{NODES}/{id}"), format!("node {}", n.node.name))
                    .with_description(format!(
                        "Node {} ({:?}, {} instances).",
                        n.node.name, n.node.status, n.instances
                    ))
                    .with_mime_type(JSON),
            );
        }
        page.next.map(|t| format!("n:{t}"))
    };
    let mut result = ListResourcesResult::with_all_items(resources);
    result.next_cursor = next;
    Ok(result)
}

/// The JSON of one resource.
pub(crate) async fn read(
    mcp: &OrchestratorMcp,
    uri: &str,
) -> Result<ReadResourceResult, ErrorData> {
    let text = match uri {
        CLUSTER => render(mcp, observe::cluster_status(mcp).await)?,
        WORKLOADS => render(
            mcp,
            workloads::list_workloads(mcp, PageArgs::default()).await,
        )?,
        NODES => render(mcp, nodes::list_nodes(mcp, PageArgs::default()).await)?,
        _ => {
            if let Some(name) = item(uri, WORKLOADS) {
                render(mcp, workloads::get_workload(mcp, name, true).await)?
            } else if let Some(name) = item(uri, NODES) {
                let args = DescribeNodeArgs {
                    name: name.to_owned(),
                    limit: None,
                    cont: None,
                    detail: true,
                };
                render(mcp, nodes::describe_node(mcp, args).await)?
            } else {
                return Err(ErrorData::resource_not_found(
                    format!("no resource {uri}: resources are {CLUSTER}, {WORKLOADS}, {WORKLOADS}/NAME, {NODES} and {NODES}/NAME"),
                    None,
                ));
            }
        }
    };
    Ok(ReadResourceResult::new(vec![ResourceContents::text(
        text, uri,
    )
    .with_mime_type(JSON)]))
}

/// `NAME` of `<base>/NAME`.
fn item<'a>(uri: &'a str, base: &str) -> Option<&'a str> {
    uri.strip_prefix(base)?
        .strip_prefix('/')
        .filter(|n| !n.is_empty() && !n.contains('/'))
}

/// A tool output as the resource's JSON, within the byte cap.
fn render<T: Serialize>(
    mcp: &OrchestratorMcp,
    out: Result<T, ToolError>,
) -> Result<String, ErrorData> {
    let out = out.map_err(|e| {
        if e.status == Some(404) {
            ErrorData::resource_not_found(e.message, None)
        } else {
            ErrorData::internal_error(e.message, None)
        }
    })?;
    let cap = mcp.options.max_output_bytes;
    let len = json_len(&out);
    if len > cap {
        return Err(ErrorData::internal_error(
            format!("this resource would be {len} bytes, over the cap of {cap}; use the tools, which page and summarise"),
            None,
        ));
    }
    serde_json::to_string(&out).map_err(|e| ErrorData::internal_error(e.to_string(), None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_uris() {
        assert_eq!(item("orchestrator://workloads/web", WORKLOADS), Some("web"));
        assert_eq!(item("orchestrator://workloads/", WORKLOADS), None);
        assert_eq!(item("orchestrator://workloads/a/b", WORKLOADS), None);
        assert_eq!(item("orchestrator://workloadsx", WORKLOADS), None);
        assert_eq!(item("orchestrator://nodes/node-1", NODES), Some("node-1"));
    }
}
