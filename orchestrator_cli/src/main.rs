//! `orchestrator-cli`: parses the command line, runs the command, and turns any failure into
//! `error: ...` on stderr with a non-zero exit status.

use anyhow::Context as _;
use clap::Parser;
use orchestrator_cli::cli::{Cli, Command};
use orchestrator_cli::cmd::{self, Ctx};
use orchestrator_cli::config::Overrides;
use orchestrator_cli::error::{is_broken_pipe, render_chain};
use orchestrator_client::Client;
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // `orchestrator-cli workload list | head` closing the pipe is not a failure to report.
        Err(err) if is_broken_pipe(err.chain()) => ExitCode::SUCCESS,
        Err(err) => {
            eprint!("{}", render_chain(err.chain()));
            ExitCode::FAILURE
        }
    }
}

/// The stale hook of the client: warns on stderr, once per run (a command may make several
/// requests, all answered by the same daemon).
fn warn_stale() -> impl Fn(&str) + Send + Sync + 'static {
    let warned = AtomicBool::new(false);
    move |reason| {
        if !warned.swap(true, Ordering::Relaxed) {
            eprintln!("{}", orchestrator_cli::stale_warning(reason));
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    // Completions and tokens need no server: a bad --server or config must not prevent them.
    match &cli.command {
        Command::Completion(args) => {
            cmd::completion::run(args, &mut out)?;
            return out.flush().context("writing the completion script");
        }
        Command::Token(command) => {
            cmd::token::run(command, &mut out)?;
            return out.flush().context("writing the token");
        }
        _ => {}
    }
    let target = orchestrator_cli::config::resolve(Overrides {
        server: cli.server,
        token: cli.token,
        ca_cert: cli.ca_cert,
        context: cli.context,
        config: cli.config,
    })?;
    let client = Client::with_options(&target.server, target.options)
        .with_context(|| format!("server {}", target.server))?
        .on_stale(warn_stale());
    let ctx = Ctx {
        client,
        format: cli.output,
    };
    // One command is a short sequence of requests: a current-thread runtime is all it needs.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // No context added: the command's own error already says what failed, and the server's
    // message must stay the first thing the user reads.
    runtime.block_on(orchestrator_cli::execute(
        &ctx,
        cli.command,
        &mut out,
        &mut std::io::stdin().lock(),
    ))?;
    out.flush().context("writing the output")
}
