//! `exec`: a command run in a running container (`youki exec`), for `exec` health checks.
//!
//! `youki exec ID -- CMD...` (not detached) waits for the command and exits with its exit
//! code. When youki itself fails (no such container, an executable not in the container's
//! `PATH`), it exits 255 and writes `ERROR` lines to its `--log`: that is how a failed run
//! is told from a command that exited 255.
//!
//! Its stdout and stderr are read through pipes, keeping only the first
//! [`EXEC_OUTPUT_MAX`] bytes (the rest is drained, so a chatty command does not block on a
//! full pipe). A command still running at the timeout is killed: the process in the container
//! by the pid youki wrote to `--pid-file` (killing `youki exec` alone would leave it running
//! there), and `youki exec` itself by `kill_on_drop`.

use super::{cli, Inner};
use crate::{ExecOutput, RuntimeError};
use orchestrator_shared_types::ContainerId;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Most bytes kept of what an exec'd command writes (stdout, then stderr).
pub const EXEC_OUTPUT_MAX: usize = 4096;

/// The first `limit` bytes `r` gives until its end; the rest is read and dropped.
async fn read_bounded(mut r: impl AsyncRead + Unpin, limit: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = limit.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

/// [`read_bounded`] of a pipe, if there is one.
async fn read_pipe(pipe: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    match pipe {
        Some(p) => read_bounded(p, EXEC_OUTPUT_MAX).await,
        None => Vec::new(),
    }
}

/// Whether a `--log-format json` log of the runtime holds an `ERROR` line.
fn has_errors(log: &str) -> bool {
    log.lines().any(|line| {
        serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| {
            v.get("level")
                .and_then(|l| l.as_str())
                .is_some_and(|l| l.eq_ignore_ascii_case("error"))
        })
    })
}

/// SIGKILLs the process whose pid youki wrote to `pid_file`, if it wrote one; its pid.
fn kill_from_pid_file(pid_file: &Path) -> Option<rustix::process::Pid> {
    let pid = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .and_then(rustix::process::Pid::from_raw)?;
    // Already gone is fine: it finished between the timeout and now.
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    Some(pid)
}

/// How long to wait for a killed exec'd process to be gone.
const KILLED_WAIT: Duration = Duration::from_secs(2);

/// Waits until the killed process `pid` is gone, reaping it if it became this process's
/// zombie. It does when `youki exec` dies first: the process is reparented to this subreaper,
/// and while its zombie stays unreaped the container's pid namespace cannot end, so its init
/// would never finish exiting (a later `stop` would wait forever).
async fn reap_killed(pid: rustix::process::Pid) {
    let me = rustix::process::getpid().as_raw_nonzero().get();
    let stat_path = format!("/proc/{}/stat", pid.as_raw_nonzero());
    let deadline = tokio::time::Instant::now() + KILLED_WAIT;
    loop {
        let Ok(stat) = std::fs::read_to_string(&stat_path) else {
            return;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let mut rest = stat
            .rfind(')')
            .map(|close| stat[close + 1..].split_whitespace())
            .into_iter()
            .flatten();
        let (state, ppid) = (rest.next(), rest.next().and_then(|p| p.parse::<i32>().ok()));
        if state == Some("Z") && ppid == Some(me) {
            let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG);
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                pid = pid.as_raw_nonzero().get(),
                "a timed-out exec'd process is still there"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Inner {
    /// Runs `command` in container `id` (see the module docs).
    pub(super) async fn exec(
        &self,
        id: &ContainerId,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        let failed = |message: String, transient: bool| RuntimeError::Failed {
            operation: "exec",
            message,
            transient,
        };
        if command.is_empty() {
            return Err(failed("no command to run".into(), false));
        }
        let state = self.table().get(id).map(|e| e.state.clone());
        match state {
            Some(crate::ContainerState::Running) => {}
            Some(state) => {
                return Err(failed(
                    format!("container {id} is not running ({state:?})"),
                    false,
                ))
            }
            // Not created by this process (nor adopted yet): the runtime decides below.
            None if self.cli.knows(id.as_str()) => {}
            None => return Err(self.not_found(id)),
        }
        // In the bundle, so that they go with the container whatever happens to this call.
        let n = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let bundle = self.bundle_path(id);
        let pid_file = bundle.join(format!("exec-{n}.pid"));
        let log = bundle.join(format!("exec-{n}.log"));
        let mut child = self
            .cli
            .command(Some(&log))
            .arg("exec")
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(id.as_str())
            .arg("--")
            .args(command)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| self.cli.spawn_error("exec", e))?;
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let run = async { tokio::join!(child.wait(), read_pipe(stdout), read_pipe(stderr)) };
        let result = tokio::time::timeout(timeout, run).await;
        let outcome = match result {
            Err(_) => {
                let killed = kill_from_pid_file(&pid_file);
                // Kills `youki exec` (kill_on_drop); tokio reaps it.
                drop(child);
                if let Some(pid) = killed {
                    reap_killed(pid).await;
                }
                Err(failed(
                    format!(
                        "`{}` did not finish within {timeout:?}; killed",
                        command.join(" ")
                    ),
                    true,
                ))
            }
            Ok((Err(e), _, _)) => Err(RuntimeError::io(
                "exec",
                format!("waiting for {} exec", self.cli.binary.display()),
                e,
            )),
            Ok((Ok(status), out, err)) => {
                let log_text = std::fs::read_to_string(&log).unwrap_or_default();
                if has_errors(&log_text) {
                    Err(failed(
                        format!(
                            "{} exec {id}: {status}: {}",
                            self.cli.binary.display(),
                            cli::runtime_messages(&log_text)
                        ),
                        // A container that exited meanwhile, or a bad command: retrying the
                        // same call fails the same way.
                        false,
                    ))
                } else {
                    let mut output = out;
                    output.extend_from_slice(&err);
                    output.truncate(EXEC_OUTPUT_MAX);
                    Ok(ExecOutput {
                        // A signal: 128 + its number, as a shell reports it.
                        code: status.code().unwrap_or_else(|| {
                            128 + std::os::unix::process::ExitStatusExt::signal(&status)
                                .unwrap_or(0)
                        }),
                        output: String::from_utf8_lossy(&output).into_owned(),
                    })
                }
            }
        };
        let _ = std::fs::remove_file(&pid_file);
        let _ = std::fs::remove_file(&log);
        // youki's intermediate processes are reparented to this subreaper.
        self.reap_orphans();
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn output_is_bounded_and_drained() {
        let data = vec![b'x'; 3 * EXEC_OUTPUT_MAX + 17];
        let kept = read_bounded(&data[..], EXEC_OUTPUT_MAX).await;
        assert_eq!(kept.len(), EXEC_OUTPUT_MAX);
        assert_eq!(read_bounded(&b"ok\n"[..], EXEC_OUTPUT_MAX).await, b"ok\n");
    }

    #[test]
    fn runtime_failures_are_told_from_exit_codes() {
        let failed = r#"{"timestamp":"t","level":"ERROR","message":"container dir does not exist","target":"x"}"#;
        assert!(has_errors(failed));
        assert!(!has_errors(
            r#"{"timestamp":"t","level":"INFO","message":"fine","target":"x"}"#
        ));
        assert!(!has_errors(""));
        assert!(!has_errors("not json ERROR"));
    }
}
