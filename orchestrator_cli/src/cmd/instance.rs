//! `instance list [--workload W] [--node N]` and
//! `instance logs ID [-f] [--tail N] [--since 10m] [-c NAME]`.

use super::{Ctx, Names};
use crate::duration::format_age;
use crate::error::CliError;
use crate::output::{print_structured, table};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use orchestrator_client::{Instances, LogsQuery, PageRequest};
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
    /// Print what an instance's container wrote (stdout and stderr), as the bytes come; `-o`
    /// does not apply.
    Logs {
        /// The instance id (`instance list` shows them).
        id: String,
        /// Keep printing new output until the container is replaced or removed (or Ctrl-C).
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines (0: none; with `-f`, only new output).
        #[arg(long, value_name = "N")]
        tail: Option<usize>,
        /// Only what was written in this last span: a number and a unit, s, m, h or d (`30s`,
        /// `10m`, `2h`, `1d`); dated about once a second, so a little older output may show.
        #[arg(long, value_name = "DURATION", value_parser = since_arg)]
        since: Option<String>,
        /// The container, by its name in the workload (default: the instance's first).
        #[arg(short, long, value_name = "NAME")]
        container: Option<String>,
    },
}

/// Runs an `instance` command.
pub async fn run(ctx: &Ctx, command: InstanceCommand, out: &mut dyn Write) -> Result<(), CliError> {
    match command {
        InstanceCommand::List { workload, node } => list(ctx, workload, node, out).await,
        InstanceCommand::Logs {
            id,
            follow,
            tail,
            since,
            container,
        } => {
            let query = LogsQuery {
                container,
                tail,
                since,
                follow,
            };
            let mut logs = ctx.client.logs(&id, &query).await?;
            while let Some(piece) = logs.next_chunk().await? {
                out.write_all(&piece)?;
                // As it comes: a followed log must not wait in a buffer for a newline.
                out.flush()?;
            }
            Ok(())
        }
    }
}

/// `--since`, checked here so that a typo fails before any request.
fn since_arg(text: &str) -> Result<String, String> {
    orchestrator_shared_types::api::parse_log_since(text).map(|_| text.to_owned())
}

async fn list(
    ctx: &Ctx,
    workload: Option<String>,
    node: Option<String>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let list = ctx
        .client
        .list(&Instances { workload, node }, &PageRequest::default())
        .await?;
    if ctx.format.is_structured() {
        return print_structured(out, ctx.format, &list);
    }
    if list.items.is_empty() {
        eprintln!("No instances found.");
        return Ok(());
    }
    let names = Names::fetch(&ctx.client, true, true).await;
    out.write_all(
        instances_table(&list.items, &names, ctx.format.is_wide(), Utc::now()).as_bytes(),
    )?;
    Ok(())
}

/// The host ports an instance holds, as `20000->8080/tcp,9090->9090/tcp`, or `-`.
pub fn ports_text(i: &WorkloadInstance) -> String {
    if i.ports.is_empty() {
        return "-".to_owned();
    }
    i.ports
        .iter()
        .map(|p| {
            format!(
                "{}->{}/{}",
                p.host_port,
                p.container_port,
                super::api_name(&p.protocol)
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// NAME, WORKLOAD, NODE, STATUS, READY, RESTARTS, AGE; wide adds PORTS, EXIT CODE and LAST
/// ERROR (or, for a running instance that is not ready, what its probes say).
pub fn instances_table(
    instances: &[WorkloadInstance],
    names: &Names,
    wide: bool,
    now: DateTime<Utc>,
) -> String {
    let mut header = vec![
        "NAME", "WORKLOAD", "NODE", "STATUS", "READY", "RESTARTS", "AGE",
    ];
    if wide {
        header.extend(["PORTS", "EXIT CODE", "LAST ERROR"]);
    }
    let rows = instances.iter().map(|i| {
        let mut cells = vec![
            i.id.0.clone(),
            names.workload(&i.workload_id),
            names.node(i.node_id.as_ref()),
            i.status.to_string(),
            ready_text(i).to_owned(),
            i.restart_count.to_string(),
            format_age(i.created_at, now),
        ];
        if wide {
            cells.extend([
                ports_text(i),
                i.last_exit_code
                    .map_or_else(|| "-".to_owned(), |c| c.to_string()),
                problem_text(i).unwrap_or_else(|| "-".to_owned()),
            ]);
        }
        cells
    });
    table(&header, rows)
}

/// `yes` or `no` for a running instance; `-` otherwise (readiness applies to running ones).
pub fn ready_text(i: &WorkloadInstance) -> &'static str {
    match (i.status, i.ready) {
        (orchestrator_shared_types::InstanceStatus::Running, true) => "yes",
        (orchestrator_shared_types::InstanceStatus::Running, false) => "no",
        _ => "-",
    }
}

/// What is wrong with an instance: what its probes say, else its last error.
pub fn problem_text(i: &WorkloadInstance) -> Option<String> {
    i.health.clone().or_else(|| i.last_error.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_shared_types::{AssignedPort, InstanceStatus, Protocol};

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
        assert_eq!(
            row,
            ["web-1", "wid", "n1", "Failed", "-", "0", "2h", "-", "1", "-"]
        );
    }

    #[test]
    fn wide_rows_show_ports() {
        let mut i = WorkloadInstance::new("web-1".into(), "wid".into());
        i.ports = vec![
            AssignedPort {
                container: "web".into(),
                container_port: 8080,
                host_port: 20000,
                protocol: Protocol::Tcp,
            },
            AssignedPort {
                container: "web".into(),
                container_port: 53,
                host_port: 53,
                protocol: Protocol::Udp,
            },
        ];
        let text = instances_table(&[i], &Names::default(), true, Utc::now());
        let row: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(row[7], "20000->8080/tcp,53->53/udp");
    }
}
