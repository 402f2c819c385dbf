//! The command line: global options and the command tree.

use crate::cmd::cluster::ClusterCommand;
use crate::cmd::completion::CompletionArgs;
use crate::cmd::events::EventsArgs;
use crate::cmd::instance::InstanceCommand;
use crate::cmd::node::NodeCommand;
use crate::cmd::workload::WorkloadCommand;
use crate::output::OutputFormat;
use clap::{Parser, Subcommand};

/// The server used when neither `--server` nor `ORCHESTRATOR_SERVER` says otherwise.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// Command-line client of the orchestrator.
#[derive(Debug, Parser)]
#[command(name = "orchestrator-cli", version, about, propagate_version = true)]
pub struct Cli {
    /// The orchestratord API to talk to.
    #[arg(long, global = true, env = "ORCHESTRATOR_SERVER", default_value = DEFAULT_SERVER)]
    pub server: String,
    /// Output format: tables for people, or the server's objects as JSON or YAML.
    #[arg(short, long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The command tree.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, update, inspect, scale and delete workloads.
    #[command(subcommand, visible_alias = "workloads")]
    Workload(WorkloadCommand),
    /// Inspect nodes.
    #[command(subcommand, visible_alias = "nodes")]
    Node(NodeCommand),
    /// Inspect instances (the replicas of workloads).
    #[command(subcommand, visible_alias = "instances")]
    Instance(InstanceCommand),
    /// Show what the orchestrator did and why, oldest first.
    Events(EventsArgs),
    /// Inspect the cluster.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Print a shell completion script.
    Completion(CompletionArgs),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn timeout_requires_wait_and_parses_durations() {
        let parse = |args: &[&str]| Cli::try_parse_from(args.iter().copied());
        assert!(parse(&[
            "o",
            "workload",
            "scale",
            "web",
            "--replicas",
            "2",
            "--timeout",
            "5s"
        ])
        .is_err());
        let cli = parse(&[
            "o",
            "workload",
            "scale",
            "web",
            "--replicas",
            "2",
            "--wait",
            "--timeout",
            "2m",
        ])
        .unwrap();
        let Command::Workload(WorkloadCommand::Scale { wait, .. }) = cli.command else {
            panic!("{cli:?}")
        };
        assert!(wait.wait);
        assert_eq!(wait.timeout, std::time::Duration::from_secs(120));
        assert!(parse(&[
            "o",
            "workload",
            "create",
            "-f",
            "x",
            "--wait",
            "--timeout",
            "soon"
        ])
        .is_err());
    }

    #[test]
    fn global_options_go_anywhere() {
        let cli =
            Cli::try_parse_from(["o", "node", "list", "-o", "json", "--server", "http://h:1"])
                .unwrap();
        assert_eq!(cli.output, OutputFormat::Json);
        assert_eq!(cli.server, "http://h:1");
    }
}
