//! `--wait`: polls `GET /workloads/{name}` until every affected workload runs all its replicas,
//! showing progress (an indicatif bar on a terminal, plain lines otherwise so that logs of CI jobs
//! stay readable), and on timeout says what is pending and why.

use crate::duration::parse_duration;
use crate::error::CliError;
use indicatif::{ProgressBar, ProgressStyle};
use orchestrator_client::{Client, ClientError};
use orchestrator_shared_types::api::WorkloadDetail;
use orchestrator_shared_types::InstanceStatus;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How often workloads are polled: fast enough to feel live, slow enough not to load the server.
/// How often a wait asks the server again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// `--wait` and `--timeout`, shared by `create`, `apply` and `scale`.
#[derive(Clone, Debug, clap::Args)]
pub struct WaitArgs {
    /// Wait until every affected workload has all its replicas running.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits before failing, e.g. 90s, 2m, 1m30s.
    #[arg(
        long,
        value_name = "DURATION",
        value_parser = parse_duration,
        default_value = "5m",
        requires = "wait"
    )]
    pub timeout: Duration,
}

/// Replicas of the current template that are not yet the workload's: instances created from an
/// older definition that the orchestrator is replacing (their `spec_hash` differs).
pub fn outdated(detail: &WorkloadDetail) -> usize {
    let current = detail.workload.spec_hash();
    detail
        .instances
        .iter()
        .filter(|i| i.status.is_live() && !i.spec_hash.is_empty() && i.spec_hash != current)
        .count()
}

/// Whether the workload runs all its replicas, all of its current definition. Checking the hash
/// too makes `apply --wait` of a new image wait for the replacement, not just for a count that the
/// old replicas already satisfy.
pub fn is_ready(detail: &WorkloadDetail) -> bool {
    detail.replicas.running == detail.replicas.desired
        && outdated(detail) == 0
        && detail.rollout.as_ref().is_none_or(|r| r.complete)
}

/// One line on where a workload stands and, if it is stuck, why: e.g.
/// `1/3 running, 2 pending (0/1 nodes fit: 1 insufficient memory)`.
pub fn summarize(detail: &WorkloadDetail) -> String {
    let r = &detail.replicas;
    let mut parts = vec![format!("{}/{} running", r.running, r.desired)];
    for (count, what) in [
        (r.starting, "starting"),
        (r.pending, "pending"),
        (r.failed, "failed"),
        (r.stopping, "stopping"),
    ] {
        if count > 0 {
            parts.push(format!("{count} {what}"));
        }
    }
    let outdated = outdated(detail);
    if outdated > 0 {
        parts.push(format!("{outdated} outdated"));
    }
    let mut line = parts.join(", ");
    if let Some(reason) = &detail.pending_reason {
        line.push_str(&format!(" ({reason})"));
    } else if let Some(failure) = last_failure(detail) {
        line.push_str(&format!(" (last failure: {failure})"));
    }
    line
}

/// What the most recently failed instance reported.
fn last_failure(detail: &WorkloadDetail) -> Option<String> {
    detail
        .instances
        .iter()
        .filter(|i| i.status == InstanceStatus::Failed)
        .max_by_key(|i| i.updated_at)
        .map(|i| match (&i.last_error, i.last_exit_code) {
            (Some(error), _) => format!("{}: {error}", i.id),
            (None, Some(code)) => format!("{} exited with code {code}", i.id),
            (None, None) => format!("{} failed", i.id),
        })
}

/// What is known of one workload during the wait.
#[derive(Debug, Default)]
struct Watched {
    detail: Option<WorkloadDetail>,
    /// The last transient failure to read it (server restarting), shown if it lasts.
    error: Option<String>,
}

impl Watched {
    fn ready(&self) -> bool {
        self.error.is_none() && self.detail.as_ref().is_some_and(is_ready)
    }

    fn summary(&self) -> String {
        match (&self.error, &self.detail) {
            (Some(error), _) => format!("cannot read it: {error}"),
            (None, Some(detail)) => summarize(detail),
            (None, None) => "not read yet".to_owned(),
        }
    }
}

/// Where progress goes: a bar on a terminal, otherwise a line whenever a workload's state changes.
enum Reporter {
    Bar(ProgressBar),
    Lines(BTreeMap<String, String>),
}

impl Reporter {
    fn new() -> Self {
        if !std::io::stderr().is_terminal() {
            return Reporter::Lines(BTreeMap::new());
        }
        let bar = ProgressBar::new(0);
        let style = ProgressStyle::with_template(
            "{spinner} [{elapsed}] {bar:30} {pos}/{len} replicas running  {wide_msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(120));
        Reporter::Bar(bar)
    }

    fn update(&mut self, watched: &BTreeMap<String, Watched>) {
        match self {
            Reporter::Bar(bar) => {
                let (mut desired, mut running) = (0u64, 0u64);
                for detail in watched.values().filter_map(|w| w.detail.as_ref()) {
                    desired += u64::from(detail.replicas.desired);
                    let current = detail.replicas.running as usize;
                    let counted = current.saturating_sub(outdated(detail));
                    running += (counted as u64).min(u64::from(detail.replicas.desired));
                }
                bar.set_length(desired);
                bar.set_position(running);
                let message: Vec<String> = watched
                    .iter()
                    .filter(|(_, w)| !w.ready())
                    .map(|(name, w)| format!("{name}: {}", w.summary()))
                    .collect();
                bar.set_message(message.join("; "));
            }
            Reporter::Lines(last) => {
                for (name, w) in watched.iter().filter(|(_, w)| !w.ready()) {
                    let summary = w.summary();
                    if last.get(name) != Some(&summary) {
                        eprintln!("{name}: {summary}");
                        last.insert(name.clone(), summary);
                    }
                }
            }
        }
    }

    fn finish(&self, watched: &BTreeMap<String, Watched>, ready: bool) {
        if let Reporter::Bar(bar) = self {
            bar.finish_and_clear();
        }
        if ready {
            for (name, w) in watched {
                eprintln!("workload/{name} ready: {}", w.summary());
            }
        }
    }
}

/// Waits until every workload in `names` is ready, or `timeout` passes.
pub async fn wait_until_ready(
    client: &Client,
    names: &[String],
    timeout: Duration,
) -> Result<(), CliError> {
    let deadline = Instant::now() + timeout;
    let mut watched: BTreeMap<String, Watched> = names
        .iter()
        .map(|n| (n.clone(), Watched::default()))
        .collect();
    let mut reporter = Reporter::new();
    loop {
        let mut failure = None;
        for (name, w) in watched.iter_mut().filter(|(_, w)| !w.ready()) {
            match client.get_workload(name).await {
                Ok(detail) => {
                    w.detail = Some(detail);
                    w.error = None;
                }
                // Keep waiting through a daemon restart or a store hiccup: the deadline decides.
                Err(e) if e.is_transient() => w.error = Some(e.to_string()),
                Err(source) => {
                    failure = Some(waiting_failed(name, source));
                    break;
                }
            }
        }
        if let Some(err) = failure {
            reporter.finish(&watched, false);
            return Err(err);
        }
        reporter.update(&watched);
        if watched.values().all(Watched::ready) {
            reporter.finish(&watched, true);
            return Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            reporter.finish(&watched, false);
            let pending = watched
                .iter()
                .filter(|(_, w)| !w.ready())
                .map(|(name, w)| (name.clone(), w.summary()))
                .collect();
            return Err(CliError::WaitTimeout {
                after: timeout,
                pending,
            });
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
    }
}

fn waiting_failed(name: &str, source: ClientError) -> CliError {
    CliError::Workload {
        action: "waiting for",
        target: format!("workload {name}"),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_shared_types::api::ReplicaCounts;
    use orchestrator_shared_types::{
        ContainerConfig, RejectReason, Unschedulable, WorkloadDefinition, WorkloadInstance,
    };

    fn detail(running: u32, desired: u32) -> WorkloadDetail {
        let workload =
            WorkloadDefinition::new("web", desired, ContainerConfig::new("web", "nginx"));
        let mut instances = Vec::new();
        for i in 0..running {
            let mut inst =
                WorkloadInstance::new(format!("web-{i}").as_str().into(), workload.id.clone());
            inst.status = InstanceStatus::Running;
            inst.spec_hash = workload.spec_hash();
            instances.push(inst);
        }
        WorkloadDetail {
            replicas: ReplicaCounts::of(desired, &instances),
            workload,
            revision: 1,
            instances,
            events: Vec::new(),
            pending_reason: None,
            rollout: None,
        }
    }

    #[test]
    fn ready_when_all_current_replicas_run() {
        assert!(is_ready(&detail(3, 3)));
        assert!(!is_ready(&detail(1, 3)));
        assert!(is_ready(&detail(0, 0)));
        let mut d = detail(2, 2);
        d.instances[0].spec_hash = "old".into();
        assert!(!is_ready(&d));
        assert_eq!(summarize(&d), "2/2 running, 1 outdated");
    }

    #[test]
    fn summary_says_why_replicas_are_pending() {
        let mut d = detail(1, 3);
        d.replicas.pending = 2;
        d.pending_reason = Some(Unschedulable {
            nodes_total: 1,
            reasons: [(RejectReason::InsufficientMemory, 1)]
                .into_iter()
                .collect(),
            unplaced: 2,
        });
        assert_eq!(
            summarize(&d),
            "1/3 running, 2 pending (0/1 nodes fit: 1 insufficient memory)"
        );
    }

    #[test]
    fn summary_shows_the_last_failure() {
        let mut d = detail(1, 2);
        let mut failed = d.instances[0].clone();
        failed.id = "web-f".into();
        failed.status = InstanceStatus::Failed;
        failed.last_exit_code = Some(3);
        d.instances.push(failed);
        d.replicas = ReplicaCounts::of(2, &d.instances);
        assert_eq!(
            summarize(&d),
            "1/2 running, 1 failed (last failure: web-f exited with code 3)"
        );
    }
}
