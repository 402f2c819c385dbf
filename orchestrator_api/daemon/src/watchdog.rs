//! The watchdog of a cluster member's containers: a small process of its own (this binary,
//! `orchestratord fence-watchdog ...`) that outlives the daemon and, once the daemon is gone
//! for a lease TTL without a successor, kills every container of the node.
//!
//! Why: when a member's daemon dies (or stops) and its machine lives on, the cluster finds the
//! node dead (gossip in about a second, the lease within a TTL) and runs its replicas elsewhere,
//! while youki's containers, which do not depend on the daemon, would run on until the daemon
//! is back. The watchdog bounds that to one TTL after the daemon's end, as a daemon cut off from
//! the store bounds it for a partition (docs/cluster.md, "Partitions").
//!
//! A daemon that starts again stops its predecessor's watchdog first (its pid is in the data
//! directory), adopts the containers still running, then starts its own. Killing is by cgroup
//! ([`container_runtime_interface::oci::fence`]): no youki call, no daemon state needed.

use anyhow::{bail, Context, Result};
use container_runtime_interface::oci::fence;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The first argument that makes this binary a watchdog.
pub const COMMAND: &str = "fence-watchdog";

/// The file in the data directory holding the running watchdog's pid.
const PID_FILE: &str = "watchdog.pid";

/// The file in the data directory the watchdog writes what it did to.
const LOG_FILE: &str = "watchdog.log";

/// How often the watchdog checks that the daemon still runs.
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// Stops the watchdog of this data directory, if one runs: a previous daemon's (this daemon
/// adopts the containers it guards), or this daemon's own when it leaves its containers running
/// on purpose (its store was reset: nothing can replace them).
pub fn stop_previous(data_dir: &Path) {
    let Some(pid) = std::fs::read_to_string(data_dir.join(PID_FILE))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
    else {
        return;
    };
    let is_watchdog = std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
        cmdline
            .split(|b| *b == 0)
            .any(|arg| arg == COMMAND.as_bytes())
    });
    if is_watchdog {
        if let Some(p) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
            tracing::info!(pid, "stopped the container watchdog");
        }
    }
}

/// Starts the watchdog of this daemon: it kills every process in the cgroups under
/// `cgroup_parent` once this daemon has been gone for `after`.
pub fn start(data_dir: &Path, cgroup_parent: &str, after: Duration) -> Result<()> {
    let exe = std::env::current_exe().context("finding this binary")?;
    let child = std::process::Command::new(exe)
        .arg(COMMAND)
        .arg(std::process::id().to_string())
        .arg(cgroup_parent)
        .arg(after.as_millis().to_string())
        .arg(data_dir.join(LOG_FILE))
        // Its own process group, no inherited pipes: a signal to the daemon's group, or a
        // reader waiting for the end of the daemon's output, does not involve it.
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting the container watchdog")?;
    std::fs::write(data_dir.join(PID_FILE), child.id().to_string())
        .context("writing the watchdog's pid")?;
    tracing::info!(
        pid = child.id(),
        after_ms = after.as_millis() as u64,
        "container watchdog started: the containers are killed once this daemon is gone that long"
    );
    Ok(())
}

/// The watchdog itself (`orchestratord fence-watchdog DAEMON_PID CGROUP_PARENT AFTER_MS LOG`).
pub fn run(args: &[String]) -> Result<()> {
    let [pid, parent, after_ms, log] = args else {
        bail!("usage: orchestratord {COMMAND} DAEMON_PID CGROUP_PARENT AFTER_MS LOG_FILE");
    };
    let pid: i32 = pid.parse().context("DAEMON_PID")?;
    let after = Duration::from_millis(after_ms.parse().context("AFTER_MS")?);
    let log = PathBuf::from(log);
    while fence::process_alive(pid) {
        std::thread::sleep(CHECK_EVERY);
    }
    std::thread::sleep(after);
    let killed = fence::kill_cgroup_tree(parent);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let line = format!(
        "unix time {now}: daemon {pid} gone for {after:?}: killed {killed} container processes under cgroup {parent}\n"
    );
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .with_context(|| format!("writing {}", log.display()))
}
