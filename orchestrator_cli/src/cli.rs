//! The command line: global options and the command tree.

use crate::cmd::cluster::ClusterCommand;
use crate::cmd::completion::CompletionArgs;
use crate::cmd::events::EventsArgs;
use crate::cmd::instance::InstanceCommand;
use crate::cmd::node::NodeCommand;
use crate::cmd::token::TokenCommand;
use crate::cmd::workload::WorkloadCommand;
use crate::output::OutputFormat;
use clap::{Parser, Subcommand};

/// The server used when neither `--server`, `ORCHESTRATOR_SERVER` nor the config file says
/// otherwise.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// Command-line client of the orchestrator.
#[derive(Debug, Parser)]
#[command(name = "orchestrator-cli", version, about, propagate_version = true)]
pub struct Cli {
    /// The orchestratord API to talk to [default: the config file's current server, else http://127.0.0.1:8080]
    #[arg(long, global = true, env = "ORCHESTRATOR_SERVER")]
    pub server: Option<String>,
    /// API token (when the daemon runs with --tokens) [default: the config file's]
    #[arg(
        long,
        global = true,
        env = "ORCHESTRATOR_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// PEM certificates to trust for an https:// server (its CA, or its self-signed certificate)
    #[arg(long, global = true, env = "ORCHESTRATOR_CA_CERT")]
    pub ca_cert: Option<std::path::PathBuf>,
    /// Named server of the config file to use [default: its `current`]
    #[arg(long, global = true, env = "ORCHESTRATOR_CONTEXT")]
    pub context: Option<String>,
    /// The CLI's config file (named servers with tokens and CAs) [default: ~/.config/orchestrator/config.yaml]
    #[arg(long, global = true, env = "ORCHESTRATOR_CONFIG")]
    pub config: Option<std::path::PathBuf>,
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
    /// Make API tokens (local: needs no server).
    #[command(subcommand)]
    Token(TokenCommand),
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
        assert_eq!(cli.server.as_deref(), Some("http://h:1"));
    }
}
