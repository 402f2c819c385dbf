//! `node list|describe|drain|uncordon`.

use super::{labels, Ctx, Names};
use crate::duration::format_age;
use crate::error::CliError;
use crate::output::{print_structured, table, Fields};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use orchestrator_client::{Instances, Nodes, PageRequest};
use orchestrator_shared_types::api::{ListResponse, NodeView};
use orchestrator_shared_types::{Node, NodeStatus, Resources, WorkloadInstance};
use std::io::Write;

/// `node ...`
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List nodes with what is allocated on them.
    #[command(visible_alias = "ls")]
    List,
    /// Show one node: capacity, allocatable, allocated, and the instances on it.
    Describe {
        /// Name or id.
        name: String,
    },
    /// Cordon a node and move its instances to other nodes (like `kubectl drain`).
    Drain {
        /// Name or id.
        name: String,
    },
    /// Make a drained or cordoned node schedulable again.
    Uncordon {
        /// Name or id.
        name: String,
    },
}

/// Runs a `node` command.
pub async fn run(ctx: &Ctx, command: NodeCommand, out: &mut dyn Write) -> Result<(), CliError> {
    match command {
        NodeCommand::List => {
            // Every node, whatever the server's page size: follows `continue` to the end.
            let list = ListResponse::new(ctx.client.list_all(&Nodes, None).await?);
            if ctx.format.is_structured() {
                return print_structured(out, ctx.format, &list);
            }
            if list.items.is_empty() {
                eprintln!("No nodes found.");
                return Ok(());
            }
            out.write_all(nodes_table(&list.items, ctx.format.is_wide()).as_bytes())?;
        }
        NodeCommand::Describe { name } => {
            let view = ctx.client.get_node(&name).await?;
            if ctx.format.is_structured() {
                // The server's object only; `instance list --node N -o json` has the instances.
                return print_structured(out, ctx.format, &view);
            }
            // Filter by id, not by what the user typed (which may be a name): ids are what
            // instances record.
            let on_node = Instances {
                workload: None,
                node: Some(view.node.id.to_string()),
            };
            let instances = ctx
                .client
                .list(&on_node, &PageRequest::default())
                .await?
                .items;
            let names = Names::fetch(&ctx.client, true, false).await;
            out.write_all(describe_text(&view, &instances, &names, Utc::now()).as_bytes())?;
        }
        NodeCommand::Drain { name } => cordon(ctx, &name, true, out).await?,
        NodeCommand::Uncordon { name } => cordon(ctx, &name, false, out).await?,
    }
    Ok(())
}

/// Drains or uncordons a node and says so (or prints the server's node with `-o json|yaml`).
async fn cordon(ctx: &Ctx, name: &str, drain: bool, out: &mut dyn Write) -> Result<(), CliError> {
    let view = if drain {
        ctx.client.drain_node(name).await?
    } else {
        ctx.client.uncordon_node(name).await?
    };
    if ctx.format.is_structured() {
        return print_structured(out, ctx.format, &view);
    }
    let what = if drain {
        "drained: nothing new is placed on it and its instances are moving to other nodes"
    } else {
        "uncordoned: schedulable again"
    };
    writeln!(out, "node/{} {what}", view.node.id)?;
    Ok(())
}

/// `Ready`, `NotReady` or `Down`.
pub fn status_name(status: NodeStatus) -> &'static str {
    match status {
        NodeStatus::Ready => "Ready",
        NodeStatus::NotReady => "NotReady",
        NodeStatus::Down => "Down",
    }
}

/// `Ready`, `NotReady`, `Down`, with `,SchedulingDisabled` when cordoned (as kubectl shows it).
pub fn status(node: &Node) -> String {
    let status = status_name(node.status);
    if node.unschedulable {
        format!("{status},SchedulingDisabled")
    } else {
        status.to_owned()
    }
}

/// NAME, STATUS, CPU and MEMORY (allocated/allocatable), INSTANCES; wide adds DISK, ID, ADDRESS,
/// LABELS.
pub fn nodes_table(nodes: &[NodeView], wide: bool) -> String {
    let mut header = vec!["NAME", "STATUS", "CPU", "MEMORY", "INSTANCES"];
    if wide {
        header.extend(["DISK", "ID", "ADDRESS", "LABELS"]);
    }
    let rows = nodes.iter().map(|v| {
        let (a, t) = (&v.allocated, &v.node.allocatable);
        let mut cells = vec![
            v.node.name.clone(),
            status(&v.node),
            format!("{}m/{}m", a.cpu_millicores, t.cpu_millicores),
            format!("{}MB/{}MB", a.memory_mb, t.memory_mb),
            v.instances.to_string(),
        ];
        if wide {
            cells.extend([
                format!("{}MB/{}MB", a.disk_mb, t.disk_mb),
                v.node.id.0.clone(),
                v.node.address.clone(),
                labels(&v.node.labels),
            ]);
        }
        cells
    });
    table(&header, rows)
}

/// `cpu=1200m (30%) memory=512MB (6%) disk=0MB`: what is allocated and its share of allocatable.
fn allocated(allocated: &Resources, allocatable: &Resources) -> String {
    let part = |used: u64, total: u64, unit: &str| match used.saturating_mul(100).checked_div(total)
    {
        Some(percent) => format!("{used}{unit} ({percent}%)"),
        // Nothing allocatable: a percentage would be meaningless.
        None => format!("{used}{unit}"),
    };
    format!(
        "cpu={} memory={} disk={}",
        part(allocated.cpu_millicores, allocatable.cpu_millicores, "m"),
        part(allocated.memory_mb, allocatable.memory_mb, "MB"),
        part(allocated.disk_mb, allocatable.disk_mb, "MB"),
    )
}

/// The text of `node describe`.
pub fn describe_text(
    view: &NodeView,
    instances: &[WorkloadInstance],
    names: &Names,
    now: DateTime<Utc>,
) -> String {
    let n = &view.node;
    let mut f = Fields::new();
    f.field("Name", &n.name)
        .field("ID", &n.id)
        .field("Address", &n.address)
        .field("Status", status(n))
        .field("Schedulable", if n.is_schedulable() { "yes" } else { "no" })
        .field("Labels", labels(&n.labels))
        .field("Capacity", n.capacity)
        .field("Allocatable", n.allocatable)
        .field("Allocated", allocated(&view.allocated, &n.allocatable));
    let body = if instances.is_empty() {
        "<none>\n".to_owned()
    } else {
        table(
            &["NAME", "WORKLOAD", "STATUS", "RESTARTS", "AGE"],
            instances.iter().map(|i| {
                vec![
                    i.id.0.clone(),
                    names.workload(&i.workload_id),
                    i.status.to_string(),
                    i.restart_count.to_string(),
                    format_age(i.created_at, now),
                ]
            }),
        )
    };
    f.section(&format!("Instances ({})", instances.len()), &body);
    f.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> NodeView {
        let mut node = Node::new("node-1", Resources::new(4000, 8192, 0)).with_label("zone", "a");
        node.address = "127.0.0.1:8080".into();
        NodeView {
            node,
            allocated: Resources::new(1200, 512, 0),
            instances: 3,
        }
    }

    #[test]
    fn table_shows_allocated_over_allocatable() {
        assert_eq!(
            nodes_table(&[view()], false),
            "NAME     STATUS   CPU           MEMORY         INSTANCES\n\
             node-1   Ready    1200m/4000m   512MB/8192MB   3\n"
        );
    }

    #[test]
    fn describe_shows_resources_and_instances() {
        let mut v = view();
        v.node.unschedulable = true;
        let mut i = WorkloadInstance::new("web-1".into(), "wid".into());
        i.created_at = Utc::now();
        let text = describe_text(&v, &[i], &Names::default(), Utc::now());
        for expected in [
            "Status:         Ready,SchedulingDisabled\n",
            "Schedulable:    no\n",
            "Capacity:       cpu=4000m memory=8192MB disk=0MB\n",
            "Allocated:      cpu=1200m (30%) memory=512MB (6%) disk=0MB\n",
            "Instances (1):\n  NAME    WORKLOAD   STATUS    RESTARTS   AGE\n",
            "  web-1   wid        Pending   0          0s\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
    }
}
