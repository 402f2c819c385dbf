//! `orchestrator-cli`: the kubectl-like command-line client of the orchestrator.
//!
//! It talks to `orchestratord` over the REST API described in `docs/api.md` through the async
//! `orchestrator_client` (shared with the MCP server; the binary runs it on a current-thread
//! tokio runtime), with the request and response types of `orchestrator_shared_types::api`,
//! and prints tables for people or the
//! server's objects as JSON/YAML for scripts. Every failure exits non-zero with `error: ...` and
//! the server's per-field details. An answer the server marks as possibly out of date adds a
//! `warning: ...` line on stderr ([`stale_warning`]).
//!
//! ```text
//! orchestrator-cli [--server URL] [--token T] [--ca-cert PEM] [--context NAME] [-o table|wide|json|yaml]
//!   workload create|apply -f FILE|- [--wait [--timeout 2m]]
//!   workload list | get NAME | describe NAME | delete NAME
//!   workload scale NAME --replicas N [--wait [--timeout 2m]]
//!   node list | describe NAME
//!   instance list [--workload W] [--node N]
//!   instance logs ID [-f|--follow] [--tail N] [--since 10m] [-c|--container NAME]
//!   events [--workload W] [--limit N]
//!   cluster info
//!   token create --name N [--role admin|read-only] [--file TOKENS.yaml]
//!   completion SHELL
//! ```
//!
//! # Layout
//! * [`cli`] — clap definitions: global options and the command tree.
//! * [`cmd`] — one file per command group (`workload`, `node`, `instance`, `events`, `cluster`,
//!   `token`, `completion`): arguments, requests and rendering.
//! * [`config`] — which server, token and CA: flags and environment over the config file
//!   (`~/.config/orchestrator/config.yaml`, named servers) over the default.
//! * [`manifest`] — reading manifests from files or stdin (parsed by `orchestrator_client`).
//! * [`wait`] — `--wait`: polling until replicas run, with progress and a pending reason.
//! * [`output`] — output formats, kubectl-like tables, JSON/YAML.
//! * [`duration`] — `--timeout` parsing and ages (`5s`, `3m`, `2h`, `4d`).
//! * [`error`] — the CLI's error type and how errors are printed.

pub mod cli;
pub mod cmd;
pub mod config;
pub mod duration;
pub mod error;
pub mod manifest;
pub mod output;
pub mod wait;

use cli::Command;
use cmd::Ctx;
use error::CliError;
use std::io::{Read, Write};

/// The line printed on stderr when the server says its answer may be out of date (the daemon
/// that answered lost its store and answers from the last state it saw).
pub fn stale_warning(reason: &str) -> String {
    format!("warning: the answering daemon may be out of date: {reason}")
}

/// Runs one command other than `completion` (which needs no server) against `ctx`'s server,
/// printing results to `out`; `stdin` serves `-f -`. Needs a tokio runtime with time and I/O.
pub async fn execute(
    ctx: &Ctx,
    command: Command,
    out: &mut dyn Write,
    stdin: &mut dyn Read,
) -> Result<(), CliError> {
    match command {
        Command::Workload(c) => cmd::workload::run(ctx, c, out, stdin).await,
        Command::Node(c) => cmd::node::run(ctx, c, out).await,
        Command::Instance(c) => cmd::instance::run(ctx, c, out).await,
        Command::Events(args) => cmd::events::run(ctx, args, out).await,
        Command::Cluster(c) => cmd::cluster::run(ctx, c, out).await,
        Command::Token(c) => cmd::token::run(&c, out),
        Command::Completion(args) => cmd::completion::run(&args, out),
    }
}
