//! Calls of the OCI runtime's command line (`youki`, `runc`: same CLI).
//!
//! [`Cli`] is public so that tests and tools that look at the runtime's containers from outside
//! (`list`, `state`, `delete --force`) go through the same wrapper as
//! [`OciRuntime`](super::OciRuntime), and so run the runtime the same way (below).
//!
//! # A sealed copy of the runtime binary
//! Against CVE-2019-5736 (a container overwriting the host's runtime binary through
//! `/proc/<pid>/exe` of a runtime process that joined it), youki 0.7.0 starts every run by
//! copying its own binary (11 MB) into a memfd, sealing it (pentacle 1.1: `F_ADD_SEALS` with
//! `F_SEAL_EXEC`, then with `F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE`) and
//! re-executing itself from it, unless `/proc/self/exe` already is such a sealed file. Since
//! Linux 6.3 `F_SEAL_EXEC` on an executable memfd implies `F_SEAL_WRITE`, and adding
//! `F_SEAL_WRITE` makes the kernel wait for every page of the file to lose any reference beyond
//! the page cache's: it drains this CPU's LRU batches, then every CPU's (through a kworker per
//! CPU, waiting for all), then re-checks after sleeping 8, 20, 40 and 80 ms (HZ 250), and
//! fails with EBUSY if a page is still referenced. Freshly written pages do carry such
//! references now and then: LRU batches on the other CPU when the copying process migrated
//! mid-copy, whose drain waits for a kworker behind CPU-bound tasks, and the VM's DAMON pageout
//! scheme (kdamond), which isolates pages of physical regions it considers cold, new page
//! cache included, and holds them while it reclaims, being preempted meanwhile on a busy
//! machine. When such a reference outlives the wait, youki exits with "failed to seal
//! /proc/self/exe: Device or resource busy" having done nothing else.
//!
//! [`Cli::command`] therefore runs the runtime from a sealed copy this process makes once per
//! binary (`sealed_copy`): youki finds `/proc/self/exe` sealed and neither copies nor seals
//! anything, so the race is gone from every call, and each call is cheaper (no 11 MB copy, one
//! `execve` instead of two). The protection is the same: the runtime still runs from a memfd
//! sealed against writes, resizing and further seals (and `F_SEAL_EXEC` where the kernel has
//! it), which nobody can modify, whichever process holds it. This process's one sealing retries
//! EBUSY in place (the references are transient); if no copy can be made, the binary runs from
//! its file as before and seals itself, and [`Cli::output`] repeats a run that failed with
//! [`SEAL_FLAKE`].

use super::INSTALL_HINT;
use crate::RuntimeError;
use rustix::fs::{fcntl_add_seals, fcntl_get_seals, memfd_create, MemfdFlags, SealFlags};
use rustix::io::Errno;
use serde::Deserialize;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use tokio::process::Command;

/// youki re-executes itself from a sealed copy of its binary, and sealing now and then fails
/// with EBUSY ("failed to seal /proc/self/exe: Device or resource busy") before it does
/// anything: such a run can simply be repeated. It happens only when youki runs from its file
/// (no sealed copy could be made, see the module docs).
pub(super) const SEAL_FLAKE: &str = "failed to seal";

/// youki (libcontainer 0.7 `State::save`) rewrites a container's `state.json` in place
/// (truncate, then write), so another youki process loading it at that moment reads an empty
/// or partial file and fails with this before doing anything ("failed to parse container state
/// file ... EOF while parsing"). Such a run can be repeated, whatever its command.
pub(super) const TORN_STATE: &str = "failed to parse container state file";

/// How long to wait before repeating a run that hit a [`TORN_STATE`] read: the writer's
/// truncate-and-write takes microseconds.
const TORN_STATE_PAUSE: Duration = Duration::from_millis(5);

/// The seals youki (pentacle 1.1) requires of `/proc/self/exe` to run from it as it is.
const REQUIRED_SEALS: SealFlags = SealFlags::SEAL
    .union(SealFlags::SHRINK)
    .union(SealFlags::GROW)
    .union(SealFlags::WRITE);

/// Tries of one `F_ADD_SEALS` that fails with EBUSY (each already waited about 150 ms in the
/// kernel for the page references to go), and the pause between them. Only the first command
/// for a binary can sleep here: the copy is made once.
const SEAL_TRIES: u32 = 5;
const SEAL_RETRY_PAUSE: Duration = Duration::from_millis(50);

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

    /// `BINARY --root ROOT [--log LOG --log-format json]`, stdin from /dev/null; the binary runs
    /// from its sealed copy when there is one (see the module docs), named by its path in
    /// `argv[0]`.
    pub(crate) fn command(&self, log: Option<&Path>) -> Command {
        let mut cmd = match sealed_copy(&self.binary) {
            Some(copy) => {
                let mut cmd = Command::new(copy);
                cmd.arg0(&self.binary);
                cmd
            }
            None => Command::new(&self.binary),
        };
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
        RuntimeError::Spawn {
            operation,
            binary: self.binary.clone(),
            install_hint: INSTALL_HINT,
            source: e,
        }
    }

    /// Runs `args` and captures its output (a non-zero exit is returned, not an error). A run
    /// that hit [`SEAL_FLAKE`] or [`TORN_STATE`] did nothing and is retried (three tries in
    /// all).
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
            if out.status.success() || tries == 3 {
                return Ok(out);
            }
            match retry_after(&String::from_utf8_lossy(&out.stderr)) {
                Some(pause) => tokio::time::sleep(pause).await,
                None => return Ok(out),
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

/// What a binary file was when it was copied: if any of it changes, it is copied again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
}

impl Identity {
    fn of(path: &Path) -> io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        Ok(Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        })
    }
}

/// A sealed copy of one version of a binary; `None` when it could not be made.
struct SealedCopy {
    path: PathBuf,
    identity: Identity,
    memfd: Option<OwnedFd>,
}

/// Every copy this process made. Never shrinks: a command built with `/proc/self/fd/N` may
/// still be on its way to `execve`, so N must never be closed and reused (a binary replaced on
/// disk costs one more copy for the life of the process).
static COPIES: Mutex<Vec<SealedCopy>> = Mutex::new(Vec::new());

/// `/proc/self/fd/N` of a sealed copy of `binary` as it is now, made on first use; `None` if
/// the binary cannot be read or copied (then it runs from its file; a failure is logged once
/// per version of the binary).
///
/// The copy is close-on-exec: a child sees it at `execve` time, which is when the kernel opens
/// the path, and keeps only the mapping (youki's own re-execution works the same way).
fn sealed_copy(binary: &Path) -> Option<PathBuf> {
    let identity = Identity::of(binary).ok()?;
    // Held while copying (a few milliseconds, once per binary) so that concurrent first calls
    // make one copy, not several; nothing here awaits.
    let mut copies = COPIES.lock().unwrap_or_else(PoisonError::into_inner);
    let index = match copies
        .iter()
        .position(|c| c.path == binary && c.identity == identity)
    {
        Some(index) => index,
        None => {
            let memfd = seal_copy(binary)
                .map_err(|e| {
                    tracing::warn!(
                        binary = %binary.display(),
                        error = %e,
                        "cannot make a sealed copy of the runtime binary; it runs from its \
                         file and seals itself at every call"
                    )
                })
                .ok();
            copies.push(SealedCopy {
                path: binary.to_owned(),
                identity,
                memfd,
            });
            copies.len() - 1
        }
    };
    let fd = copies[index].memfd.as_ref()?.as_raw_fd();
    Some(PathBuf::from(format!("/proc/self/fd/{fd}")))
}

/// Copies `binary` into a new memfd and seals it as youki requires (see [`REQUIRED_SEALS`]).
fn seal_copy(binary: &Path) -> io::Result<OwnedFd> {
    let mut source = File::open(binary)?;
    let name = "orchestrator-sealed-runtime";
    let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    // MFD_EXEC keeps it executable where `vm.memfd_noexec` = 1; kernels before 6.3 do not know
    // the flag (EINVAL) and make every memfd executable anyway.
    let memfd = match memfd_create(name, flags | MemfdFlags::EXEC) {
        Err(Errno::INVAL) => memfd_create(name, flags)?,
        other => other?,
    };
    let mut memfd = File::from(memfd);
    io::copy(&mut source, &mut memfd)?;
    // F_SEAL_EXEC (Linux 6.3) first, as pentacle does: nobody can make it non-executable or
    // executable again; older kernels refuse the flag (EINVAL), which costs nothing here.
    match add_seals(&memfd, SealFlags::EXEC) {
        Ok(()) | Err(Errno::INVAL) => {}
        Err(e) => return Err(e.into()),
    }
    add_seals(&memfd, REQUIRED_SEALS)?;
    let seals = fcntl_get_seals(&memfd)?;
    if !seals.contains(REQUIRED_SEALS) {
        return Err(io::Error::other(format!(
            "the sealed copy has seals {seals:?}, missing {:?}",
            REQUIRED_SEALS.difference(seals)
        )));
    }
    Ok(memfd.into())
}

/// `F_ADD_SEALS`, tried again while the kernel answers EBUSY (some page of the file still has
/// an extra reference after its own wait of about 150 ms).
fn add_seals(memfd: &File, seals: SealFlags) -> Result<(), Errno> {
    let mut tries = 0;
    loop {
        tries += 1;
        match fcntl_add_seals(memfd, seals) {
            Err(Errno::BUSY) if tries < SEAL_TRIES => std::thread::sleep(SEAL_RETRY_PAUSE),
            other => return other,
        }
    }
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

/// Whether a failed run may be repeated, given its stderr, and after how long: the failures
/// that happen before the runtime does anything ([`SEAL_FLAKE`], [`TORN_STATE`]).
fn retry_after(stderr: &str) -> Option<Duration> {
    if stderr.contains(TORN_STATE) {
        Some(TORN_STATE_PAUSE)
    } else if stderr.contains(SEAL_FLAKE) {
        Some(Duration::ZERO)
    } else {
        None
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
    fn only_failures_before_the_runtime_acts_are_repeated() {
        let torn = "ERROR libcontainer::container::state: failed to parse container state file \
            state_file_path=\"/run/youki/c/state.json\" err=EOF while parsing a value at line 1 \
            column 0\nError: could not load state for container c";
        assert_eq!(retry_after(torn), Some(TORN_STATE_PAUSE));
        let seal = "Error: failed to seal /proc/self/exe: Device or resource busy (os error 16)";
        assert_eq!(retry_after(seal), Some(Duration::ZERO));
        assert_eq!(retry_after("container c does not exist"), None);
        assert_eq!(retry_after(""), None);
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

    fn run(program: &Path, arg0: &str, args: &[&str]) -> std::process::Output {
        use std::os::unix::process::CommandExt;
        std::process::Command::new(program)
            .arg0(arg0)
            .args(args)
            .output()
            .unwrap()
    }

    /// The copy runs as the binary would, carries the seals youki requires (so youki runs from
    /// it without copying itself) and refuses writes, which is the CVE-2019-5736 protection.
    #[test]
    fn a_sealed_copy_runs_and_cannot_be_written() {
        let echo = Path::new("/bin/echo");
        let copy = sealed_copy(echo).expect("a sealed copy of /bin/echo");
        assert!(copy.starts_with("/proc/self/fd/"), "{}", copy.display());
        let out = run(&copy, "echo", &["sealed", "copy"]);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(out.stdout, b"sealed copy\n");

        let file = File::open(&copy).unwrap();
        let seals = fcntl_get_seals(&file).unwrap();
        assert!(seals.contains(REQUIRED_SEALS), "{seals:?}");
        // Reopening it for writing works (it is a memfd), writing into it does not. While
        // another test runs a binary through the same copy, the kernel already refuses the
        // open (ETXTBSY): refused too.
        match std::fs::OpenOptions::new().write(true).open(&copy) {
            Ok(mut writable) => {
                let err = io::Write::write_all(&mut writable, b"evil").unwrap_err();
                assert_eq!(
                    err.raw_os_error(),
                    Some(Errno::PERM.raw_os_error()),
                    "{err}"
                );
                assert!(writable.set_len(1).is_err(), "cannot shrink");
            }
            Err(e) => assert_eq!(e.raw_os_error(), Some(Errno::TXTBSY.raw_os_error()), "{e}"),
        }

        assert_eq!(sealed_copy(echo), Some(copy), "one copy per binary");
    }

    /// A binary replaced on disk is copied again; the old copy stays open for commands that may
    /// still be starting from it.
    #[test]
    fn a_changed_binary_is_copied_again() {
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("echo");
        std::fs::copy("/bin/echo", &binary).unwrap();
        let first = sealed_copy(&binary).unwrap();
        assert_eq!(sealed_copy(&binary).as_ref(), Some(&first));

        let mut bytes = std::fs::read(&binary).unwrap();
        bytes.extend_from_slice(b"trailing bytes change the size");
        std::fs::remove_file(&binary).unwrap();
        std::fs::write(&binary, bytes).unwrap();
        let second = sealed_copy(&binary).unwrap();
        assert_ne!(first, second);
        assert_eq!(run(&first, "echo", &["old"]).stdout, b"old\n");
        assert_eq!(run(&second, "echo", &["new"]).stdout, b"new\n");
    }

    #[test]
    fn a_missing_binary_runs_from_its_path() {
        let cli = Cli {
            binary: PathBuf::from("/nonexistent/youki"),
            root: PathBuf::from("/tmp"),
        };
        assert_eq!(sealed_copy(&cli.binary), None);
        let cmd = cli.command(None);
        assert_eq!(cmd.as_std().get_program(), "/nonexistent/youki");
    }

    /// Through [`Cli::command`]: the program is the copy.
    #[tokio::test]
    async fn commands_run_the_sealed_copy() {
        let cli = Cli {
            binary: PathBuf::from("/bin/echo"),
            root: PathBuf::from("/some/root"),
        };
        let cmd = cli.command(None);
        let program = PathBuf::from(cmd.as_std().get_program());
        assert_eq!(Some(program), sealed_copy(&cli.binary));
        let mut cmd = cmd;
        let out = cmd.output().await.unwrap();
        assert_eq!(out.stdout, b"--root /some/root\n");
    }
}
