//! Exit codes of container processes.
//!
//! `youki state` reports "stopped" but no exit code, so the daemon becomes a child subreaper:
//! the container's init process, forked by `youki create` and orphaned when it exits, is
//! reparented to this process. A pidfd opened on it (from the pid in `youki state`) lets a thread
//! `waitid` for it, which reaps it and yields its status.

use rustix::fd::{AsFd, OwnedFd};
use rustix::io::Errno;
use rustix::process::{self, Pid, PidfdFlags, WaitId, WaitIdOptions};
use std::io;
use std::time::Duration;

/// Makes this process the subreaper of its descendants (process-wide and idempotent).
pub(super) fn become_subreaper() -> io::Result<()> {
    process::set_child_subreaper(Some(process::getpid()))?;
    Ok(())
}

/// A pidfd for `pid`, so that a later recycling of the pid cannot fool the waiter.
pub(super) fn open_pidfd(pid: i32) -> io::Result<OwnedFd> {
    let pid = Pid::from_raw(pid)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("bad pid {pid}")))?;
    Ok(process::pidfd_open(pid, PidfdFlags::empty())?)
}

/// Blocks until the process of `pidfd` exits and returns its exit code (128 + signal when a
/// signal killed it).
///
/// If the process is not our child (the subreaper could not take it), `waitid` fails with
/// `ECHILD`: then this polls the pid until it is gone and returns `None` (code unknown).
pub(super) fn wait_exit(pidfd: &OwnedFd, pid: i32) -> Option<i32> {
    loop {
        match process::waitid(WaitId::PidFd(pidfd.as_fd()), WaitIdOptions::EXITED) {
            Ok(Some(status)) => {
                if let Some(code) = status.exit_status() {
                    return Some(code);
                }
                if let Some(signal) = status.terminating_signal() {
                    return Some(128 + signal);
                }
                return Some(128);
            }
            Ok(None) | Err(Errno::INTR) => continue,
            Err(e) => {
                tracing::warn!(pid, error = %e, "cannot wait for the container process; polling it, exit code unknown");
                let pid = Pid::from_raw(pid)?;
                while process::test_kill_process(pid).is_ok() {
                    std::thread::sleep(Duration::from_millis(200));
                }
                return None;
            }
        }
    }
}

/// Reaps zombie children left by the runtime itself: its helper processes (`youki:[1:INTER]`,
/// `runc:[1:CHILD]`) and init processes that never exec'd (failed creates), all reparented to
/// this subreaper. A started container's process carries the name of what it exec'd, so this
/// never steals an exit its watcher waits for; `watched` pids are skipped all the same.
pub(super) fn reap_runtime_orphans(watched: &std::collections::HashSet<i32>) {
    let me = process::getpid().as_raw_nonzero().get();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if watched.contains(&pid) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let mut rest = stat[close + 1..].split_whitespace();
        let (Some(state), Some(ppid)) = (rest.next(), rest.next()) else {
            continue;
        };
        if state == "Z" && ppid.parse::<i32>() == Ok(me) && comm.contains(":[") {
            if let Some(pid) = Pid::from_raw(pid) {
                let _ = process::waitpid(Some(pid), process::WaitOptions::NOHANG);
            }
        }
    }
}
