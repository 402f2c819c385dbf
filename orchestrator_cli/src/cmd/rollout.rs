//! `workload rollout status|history|undo`: follow a template change as it rolls out, list the
//! revisions, go back to one (`kubectl rollout`).

use super::Ctx;
use crate::error::CliError;
use crate::output::{print_structured, table};
use crate::wait::POLL_INTERVAL;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use orchestrator_shared_types::api::RolloutStatus;
use std::io::{IsTerminal, Write};
use std::time::Duration;
use tokio::time::Instant;

/// `workload rollout ...`
#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Wait until the workload's rollout completes, with a progress bar; fails if it fails
    /// (and says why, and whether it was rolled back) or `--timeout` passes.
    Status {
        /// Name or id.
        name: String,
        /// How long to wait, e.g. 90s or 5m.
        #[arg(long, default_value = "5m", value_parser = crate::duration::parse_duration)]
        timeout: Duration,
        /// Print the status once and return, without waiting.
        #[arg(long)]
        no_wait: bool,
    },
    /// List the workload's template revisions, the current one last.
    History {
        /// Name or id.
        name: String,
    },
    /// Return the workload to an earlier template (the previous one by default); the change
    /// is rolled out like any other.
    Undo {
        /// Name.
        name: String,
        /// The revision to return to.
        #[arg(long)]
        to_revision: Option<u64>,
    },
}

/// Runs a `workload rollout` command.
pub async fn run(ctx: &Ctx, command: RolloutCommand, out: &mut dyn Write) -> Result<(), CliError> {
    match command {
        RolloutCommand::Status {
            name,
            timeout,
            no_wait,
        } => status(ctx, &name, timeout, no_wait, out).await,
        RolloutCommand::History { name } => {
            let history = ctx.client.rollout_history(&name).await?;
            if ctx.format.is_structured() {
                return print_structured(out, ctx.format, &history);
            }
            let rows = history.revisions.iter().map(|r| {
                let images: Vec<String> = r
                    .containers
                    .iter()
                    .map(|c| format!("{}={}", c.name, c.image))
                    .collect();
                let mut note = r
                    .failed
                    .clone()
                    .map(|f| format!("failed: {f}"))
                    .unwrap_or_default();
                if r.revision == history.current {
                    note = "current".to_owned();
                }
                vec![
                    r.revision.to_string(),
                    r.changed_by.clone().unwrap_or_else(|| "-".into()),
                    images.join(","),
                    note,
                ]
            });
            write!(
                out,
                "{}",
                table(&["REVISION", "CHANGED BY", "IMAGES", "NOTE"], rows)
            )?;
            Ok(())
        }
        RolloutCommand::Undo { name, to_revision } => {
            let view = ctx.client.rollout_undo(&name, to_revision).await?;
            if ctx.format.is_structured() {
                return print_structured(out, ctx.format, &view);
            }
            writeln!(
                out,
                "workload/{} rolled back: now at revision {}",
                view.workload.name, view.workload.revision
            )?;
            Ok(())
        }
    }
}

/// Polls the rollout until it completes, fails or `timeout` passes.
async fn status(
    ctx: &Ctx,
    name: &str,
    timeout: Duration,
    no_wait: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let first = ctx.client.rollout_status(name).await?;
    if no_wait || ctx.format.is_structured() {
        return if ctx.format.is_structured() {
            print_structured(out, ctx.format, &first)
        } else {
            print_status(out, &first)
        };
    }
    let deadline = Instant::now() + timeout;
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(u64::from(first.desired));
        let style = ProgressStyle::with_template(
            "{spinner} [{elapsed}] {bar:30} {pos}/{len} updated and available  {wide_msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let mut last_line = String::new();
    let mut current = first.clone();
    loop {
        // A rollback while we watch: the revision moves on and the history says why.
        if current.revision != first.revision && current.last_failure != first.last_failure {
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            return Err(CliError::RolloutFailed {
                name: name.to_owned(),
                reason: current
                    .last_failure
                    .clone()
                    .unwrap_or_else(|| "rolled back".to_owned()),
            });
        }
        if current.complete {
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            return print_status(out, &current);
        }
        let line = progress_line(&current);
        match &bar {
            Some(bar) => {
                bar.set_length(u64::from(current.desired));
                bar.set_position(u64::from(current.available.min(current.desired)));
                bar.set_message(line);
            }
            None if line != last_line => {
                eprintln!("{name}: {line}");
                last_line = line;
            }
            None => {}
        }
        let now = Instant::now();
        if now >= deadline {
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            return Err(CliError::WaitTimeout {
                after: timeout,
                pending: vec![(name.to_owned(), progress_line(&current))],
            });
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
        match ctx.client.rollout_status(name).await {
            Ok(status) => current = status,
            // A daemon restart or a store hiccup: keep waiting, the deadline decides.
            Err(e) if e.is_transient() => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Where the rollout stands and what it waits for, in one line.
fn progress_line(s: &RolloutStatus) -> String {
    match s.waiting_for.first() {
        Some(why) => format!("{}; waiting for {why}", s.message),
        None => s.message.clone(),
    }
}

fn print_status(out: &mut dyn Write, s: &RolloutStatus) -> Result<(), CliError> {
    let state = if s.complete {
        "complete"
    } else {
        "in progress"
    };
    writeln!(out, "workload/{} rollout {state}: {}", s.name, s.message)?;
    for why in &s.waiting_for {
        writeln!(out, "  waiting for {why}")?;
    }
    if let Some(failure) = &s.last_failure {
        writeln!(out, "  last failed revision: {failure}")?;
    }
    Ok(())
}
