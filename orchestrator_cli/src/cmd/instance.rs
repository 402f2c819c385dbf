//! `instance list [--workload W] [--node N]`.

use super::{Ctx, Names};
use crate::duration::format_age;
use crate::error::CliError;
use crate::output::{print_structured, table};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use orchestrator_shared_types::WorkloadInstance;
use std::io::Write;

/// `instance ...`
#[derive(Debug, Subcommand)]
pub enum InstanceCommand {
    /// List instances (replicas), optionally of one workload or on one node.
    #[command(visible_alias = "ls")]
    List {
        /// Only this workload's (name or id).
        #[arg(long)]
        workload: Option<String>,
        /// Only those on this node.
        #[arg(long)]
        node: Option<String>,
    },
}

/// Runs an `instance` command.
pub fn run(ctx: &Ctx, command: InstanceCommand, out: &mut dyn Write) -> Result<(), CliError> {
    let InstanceCommand::List { workload, node } = command;
    let list = ctx
        .client
        .list_instances(workload.as_deref(), node.as_deref())?;
    if ctx.format.is_structured() {
        return print_structured(out, ctx.format, &list);
    }
    if list.items.is_empty() {
        eprintln!("No instances found.");
        return Ok(());
    }
    let names = Names::fetch(&ctx.client, true, true);
    out.write_all(
        instances_table(&list.items, &names, ctx.format.is_wide(), Utc::now()).as_bytes(),
    )?;
    Ok(())
}

/// NAME, WORKLOAD, NODE, STATUS, RESTARTS, AGE; wide adds EXIT CODE and LAST ERROR.
pub fn instances_table(
    instances: &[WorkloadInstance],
    names: &Names,
    wide: bool,
    now: DateTime<Utc>,
) -> String {
    let mut header = vec!["NAME", "WORKLOAD", "NODE", "STATUS", "RESTARTS", "AGE"];
    if wide {
        header.extend(["EXIT CODE", "LAST ERROR"]);
    }
    let rows = instances.iter().map(|i| {
        let mut cells = vec![
            i.id.0.clone(),
            names.workload(&i.workload_id),
            names.node(i.node_id.as_ref()),
            i.status.to_string(),
            i.restart_count.to_string(),
            format_age(i.created_at, now),
        ];
        if wide {
            cells.extend([
                i.last_exit_code
                    .map_or_else(|| "-".to_owned(), |c| c.to_string()),
                i.last_error.clone().unwrap_or_else(|| "-".to_owned()),
            ]);
        }
        cells
    });
    table(&header, rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_shared_types::InstanceStatus;

    #[test]
    fn rows_show_node_status_and_age() {
        let now = Utc::now();
        let mut i = WorkloadInstance::new("web-1".into(), "wid".into());
        i.status = InstanceStatus::Failed;
        i.node_id = Some("n1".into());
        i.last_exit_code = Some(1);
        i.created_at = now - chrono::Duration::hours(2);
        let text = instances_table(&[i], &Names::default(), true, now);
        let row: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(row, ["web-1", "wid", "n1", "Failed", "0", "2h", "1", "-"]);
    }
}
