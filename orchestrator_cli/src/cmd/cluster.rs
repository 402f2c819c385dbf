//! `cluster info`.

use super::Ctx;
use crate::error::CliError;
use crate::output::{print_structured, Fields};
use clap::Subcommand;
use orchestrator_shared_types::api::ClusterInfo;
use std::io::Write;

/// `cluster ...`
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// What the cluster is made of: version, store, runtime, counts.
    Info,
}

/// Runs a `cluster` command.
pub async fn run(ctx: &Ctx, command: ClusterCommand, out: &mut dyn Write) -> Result<(), CliError> {
    let ClusterCommand::Info = command;
    let info = ctx.client.cluster_info().await?;
    if ctx.format.is_structured() {
        return print_structured(out, ctx.format, &info);
    }
    out.write_all(info_text(ctx.client.server(), &info).as_bytes())?;
    Ok(())
}

/// The text of `cluster info`.
pub fn info_text(server: &str, info: &ClusterInfo) -> String {
    let instances: Vec<String> = info
        .instances
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(status, n)| format!("{n} {status}"))
        .collect();
    Fields::new()
        .field("Server", server)
        .field("Version", &info.version)
        .field("Store", &info.store)
        .field("Runtime", &info.runtime)
        .field("Nodes", info.nodes)
        .field("Workloads", info.workloads)
        .field(
            "Instances",
            if instances.is_empty() {
                "0".to_owned()
            } else {
                instances.join(", ")
            },
        )
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_shared_types::InstanceStatus;

    #[test]
    fn info_lists_counts() {
        let info = ClusterInfo {
            version: "0.1.0".into(),
            nodes: 1,
            workloads: 2,
            instances: [(InstanceStatus::Running, 3), (InstanceStatus::Pending, 1)]
                .into_iter()
                .collect(),
            store: "redb:/var/lib/orchestrator".into(),
            runtime: "youki".into(),
            membership: Default::default(),
        };
        let text = info_text("http://127.0.0.1:8080", &info);
        assert!(
            text.contains("Instances:      1 Pending, 3 Running\n"),
            "{text}"
        );
        assert!(text.starts_with("Server:         http://127.0.0.1:8080\n"));
    }
}
