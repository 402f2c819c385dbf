//! Calls of the OCI runtime's command line (`youki`, `runc`: same CLI).
//!
//! [`Cli`] is public so that tests and tools that look at the runtime's containers from outside
//! (`list`, `state`, `delete --force`) go through the same wrapper, and so the same retry of
//! youki's occasional seal failure, as [`OciRuntime`](super::OciRuntime).

use super::INSTALL_HINT;
use crate::RuntimeError;
use serde::Deserialize;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use tokio::process::Command;

/// youki re-executes itself from a sealed copy of its binary, and sealing now and then fails
/// with EBUSY ("failed to seal /proc/self/exe: Device or resource busy") before it does
/// anything: such a run can simply be repeated.
pub(super) const SEAL_FLAKE: &str = "failed to seal";

/// The subset of `youki state ID` the runtime uses.
#[derive(Debug, Deserialize)]
pub struct RuntimeState {
    /// `creating`, `created`, `running`, `stopped`, `paused`.
    pub status: String,
    /// Pid of the container's init process (0 or absent once stopped).
    #[serde(default)]
    pub pid: Option<i32>,
}

/// The runtime binary and its state directory.
#[derive(Debug)]
pub struct Cli {
    /// The runtime binary (`youki` or `runc`).
    pub binary: PathBuf,
    /// Its state directory (`--root`).
    pub root: PathBuf,
}

impl Cli {
    /// The runtime `binary` with its state in `root`.
    pub fn new(binary: impl Into<PathBuf>, root: impl Into<PathBuf>) -> Self {
        Self {
            binary: binary.into(),
            root: root.into(),
        }
    }

    /// `BINARY --root ROOT [--log LOG --log-format json]`, stdin from /dev/null.
    pub(crate) fn command(&self, log: Option<&Path>) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root").arg(&self.root);
        if let Some(log) = log {
            cmd.arg("--log").arg(log).arg("--log-format").arg("json");
        }
        // youki prints anyhow backtraces on failure, into the container's log otherwise.
        cmd.env("RUST_BACKTRACE", "0")
            .env("RUST_LIB_BACKTRACE", "0");
        cmd.stdin(Stdio::null());
        cmd
    }

    /// The error for a runtime binary that could not be run.
    pub(crate) fn spawn_error(&self, operation: &'static str, e: io::Error) -> RuntimeError {
        let message = if e.kind() == io::ErrorKind::NotFound {
            format!(
                "OCI runtime binary {} not found; install youki with `{INSTALL_HINT}`",
                self.binary.display()
            )
        } else {
            format!("cannot run {}: {e}", self.binary.display())
        };
        RuntimeError::Failed {
            operation,
            message,
            transient: false,
        }
    }

    /// Runs `args` and captures its output (a non-zero exit is returned, not an error). A run
    /// that hit [`SEAL_FLAKE`] did nothing and is retried (three tries in all).
    pub async fn output(
        &self,
        operation: &'static str,
        args: &[&str],
    ) -> Result<Output, RuntimeError> {
        let mut tries = 0;
        loop {
            tries += 1;
            let out = self
                .command(None)
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .output()
                .await
                .map_err(|e| self.spawn_error(operation, e))?;
            if out.status.success()
                || tries == 3
                || !String::from_utf8_lossy(&out.stderr).contains(SEAL_FLAKE)
            {
                return Ok(out);
            }
        }
    }

    /// Whether the runtime has state for `id`.
    pub fn knows(&self, id: &str) -> bool {
        self.root.join(id).exists()
    }

    /// `state ID`, or `None` when the runtime does not know the container.
    pub async fn state(&self, id: &str) -> Result<Option<RuntimeState>, RuntimeError> {
        if !self.knows(id) {
            return Ok(None);
        }
        let out = self.output("state", &["state", id]).await?;
        if !out.status.success() {
            if !self.knows(id) {
                return Ok(None);
            }
            return Err(RuntimeError::Failed {
                operation: "state",
                message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                transient: true,
            });
        }
        serde_json::from_slice(&out.stdout)
            .map(Some)
            .map_err(|e| RuntimeError::Failed {
                operation: "state",
                message: format!("unreadable state of {id}: {e}"),
                transient: true,
            })
    }

    /// `kill ID SIGNAL`; whether the runtime accepted it (it refuses stopped containers).
    pub async fn kill(&self, id: &str, signal: &str) -> Result<bool, RuntimeError> {
        Ok(self
            .output("kill", &["kill", id, signal])
            .await?
            .status
            .success())
    }

    /// `--version`: the first line the runtime prints (e.g. `youki version: 0.7.0`). A binary
    /// that cannot run, or fails, is an error with its stderr.
    pub async fn version(&self) -> Result<String, RuntimeError> {
        let out = self.output("version", &["--version"]).await?;
        if !out.status.success() {
            return Err(RuntimeError::Failed {
                operation: "version",
                message: format!(
                    "{} --version failed ({}): {}",
                    self.binary.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                transient: false,
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned())
    }

    /// `list`: the ids of every container the runtime has state for, sorted. A failed run is
    /// an error with the runtime's stderr.
    pub async fn list(&self) -> Result<Vec<String>, RuntimeError> {
        let out = self.output("list", &["list"]).await?;
        if !out.status.success() {
            return Err(RuntimeError::Failed {
                operation: "list",
                message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                transient: true,
            });
        }
        Ok(list_ids(&String::from_utf8_lossy(&out.stdout)))
    }

    /// `delete --force ID`; succeeds when the runtime no longer knows the container.
    pub async fn delete_force(&self, id: &str) -> Result<(), RuntimeError> {
        if !self.knows(id) {
            return Ok(());
        }
        let out = self.output("delete", &["delete", "--force", id]).await?;
        if self.knows(id) {
            return Err(RuntimeError::Failed {
                operation: "delete",
                message: format!(
                    "{} delete --force {id}: {}",
                    self.binary.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                transient: true,
            });
        }
        Ok(())
    }
}

/// The ids of `list`'s table: the first column after the header (youki 0.7 ignores `-q`, and
/// its `--format` knows no JSON; runc prints the same table).
fn list_ids(table: &str) -> Vec<String> {
    let mut ids: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    ids.sort();
    ids
}

/// The runtime's own message from a `--log-format json` log: the `msg`/`message` of its last
/// error line (youki's last one carries the whole error chain), or the last lines verbatim when
/// none parse.
pub(super) fn runtime_messages(log: &str) -> String {
    let mut errors = Vec::new();
    for line in log.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let level = v
            .get("level")
            .and_then(|l| l.as_str())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if level != "error" {
            continue;
        }
        let msg = v
            .get("msg")
            .or_else(|| v.get("message"))
            .or_else(|| v.get("fields").and_then(|f| f.get("message")))
            .and_then(|m| m.as_str());
        if let Some(msg) = msg {
            errors.push(msg.to_owned());
        }
    }
    match errors.pop() {
        Some(last) => last,
        None => {
            let lines: Vec<&str> = log.lines().collect();
            lines[lines.len().saturating_sub(5)..].join("\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines_are_extracted() {
        let log = r#"{"level":"INFO","message":"hi"}
{"level":"ERROR","fields":{"message":"failed to exec"}}
{"level":"error","msg":"runc says no"}"#;
        assert_eq!(runtime_messages(log), "runc says no");
        assert_eq!(runtime_messages("plain\ntext"), "plain\ntext");
    }

    #[test]
    fn list_reads_the_first_column_after_the_header() {
        let table = "ID      PID    STATUS   BUNDLE  CREATED  CREATOR\n\
                     b-2     4242   running  /b/b-2  now      root\n\
                     a-1     0      stopped  /b/a-1  now      root\n";
        assert_eq!(list_ids(table), ["a-1", "b-2"]);
        assert!(list_ids("ID  PID  STATUS  BUNDLE  CREATED  CREATOR").is_empty());
        assert!(list_ids("").is_empty());
    }
}
