//! [`OciRuntime`]: containers on **this node** through an OCI runtime's command line (youki by
//! default; runc speaks the same CLI).
//!
//! It drives only the node it was created for: a call naming another node fails with
//! [`RuntimeError::NodeUnreachable`] (a dispatching runtime routes those to the node's agent).
//!
//! # On disk
//! * `data_dir/bundles/{id}/` — the bundle: `rootfs/` (a copy of the image's root filesystem),
//!   `config.json` (youki's default spec with the process, limits, cgroup path and annotations
//!   carrying the instance and workload ids) and `exit_code` once the process has exited;
//!   `exec-N.pid` and `exec-N.log` while a command runs in it (`exec`, see `exec.rs`).
//! * `data_dir/logs/{id}.log` — the container's stdout and stderr, written by the container itself
//!   through an inherited `O_APPEND` descriptor (so they survive a daemon restart), and
//!   `{id}.log.1`, the part before the last rotation (past [`OciConfig::log_max_bytes`]; see
//!   `logs.rs`), with `{id}.log.idx` and `{id}.log.1.idx`, which date the logs about once a
//!   second (for `since`). All are kept on remove, so a crashed container's output outlives it,
//!   and `logs` still serves them, until an hour after the last write (then a sweep deletes
//!   them).
//!   `data_dir/logs/{id}.runtime.log` — the runtime's own
//!   JSON log for that container, removed with it.
//! * cgroups at `/{cgroup_parent}/{id}` in every hierarchy, removed with the container (the
//!   parent is left in place: it is shared).
//!
//! # Exit codes
//! `youki state` has no exit code, so [`OciRuntime::new`] makes the process a child subreaper:
//! the container's init process is reparented to it when `youki create` exits, and a thread
//! per container waits for it through a pidfd (see `exit.rs`).
//!
//! # Images
//! Root filesystems come from an [`ImageSource`] (the image subsystem, [`crate::image`]):
//! [`RegistryImages`] pulls them from registries (anonymously: no credentials yet), and
//! [`LocalImages`] serves directories already on this machine. Its [`ImageError`] reaches
//! callers as [`RuntimeError::Image`] when retrying may help (a registry down), and as the
//! source of a [`RuntimeError::StartFailed`] when it will not (an unknown image).
//!
//! # Not yet
//! * Containers left by a previous daemon process are adopted by `list` (from their bundles
//!   and the runtime's state): their exits are watched, but as they are no longer this
//!   process's children their exit codes are unknown (reported as `Failed`). One it created
//!   but was killed before starting is removed by `list` (nobody will start it; `status`
//!   reports it `Failed`), and so is a bundle it was killed while preparing (no
//!   `config.json`, unknown to the runtime): a kill -9 at any moment leaves nothing that is
//!   never cleaned up.
//! * No `/etc/hosts` or `/etc/resolv.conf` is written into the rootfs; no port mapping (host
//!   network).

pub mod cli;
mod exec;
mod exit;
pub mod fence;
mod logs;
mod security;
mod spec;

pub use exec::EXEC_OUTPUT_MAX;

// The image subsystem lives in `crate::image`; these keep the paths callers already use.
pub use crate::image::{
    parse_docker_config, Credentials, ImageConfig, ImageError, ImageReference, ImageSource,
    LocalImages, Platform, PreparedImage, PruneReport, RegistryConfig, RegistryImages,
    RegistryStats,
};

use crate::RuntimeError;
use crate::{
    ContainerEvent, ContainerInfo, ContainerRuntime, ContainerSpec, ContainerState, ExecOutput,
};
use crate::{LogChunk, LogRequest};
use async_trait::async_trait;
use cli::Cli;
use orchestrator_shared_types::{ContainerId, InstanceId, NodeId, WorkloadId};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// How to install the runtime this module was verified with.
pub const INSTALL_HINT: &str =
    "cargo install youki --version 0.7.0 --locked --features v1,v2,systemd,seccomp";

/// Where cgroup hierarchies are mounted.
const CGROUP_MOUNT: &str = "/sys/fs/cgroup";
/// File of the bundle holding the exit code.
const EXIT_FILE: &str = "exit_code";

/// What the runtime's state says of the init process of a container found on disk (one this
/// process does not track).
enum Init {
    /// Running with this pid: to adopt.
    Runs(i32),
    /// `created` by an earlier process killed before `start`: nobody will start it.
    NeverStarted,
    /// Exited, or no pid to watch.
    Other,
}

/// The `operation` of errors of [`OciRuntime::new`].
const OPERATION_NEW: &str = "start the OCI runtime";
/// How long to wait for a SIGKILLed container to be reaped.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// Settings of an [`OciRuntime`].
#[derive(Clone)]
pub struct OciConfig {
    /// The runtime binary (`youki` or `runc`).
    pub binary: PathBuf,
    /// The runtime's state directory (`--root`).
    pub root: PathBuf,
    /// Where bundles and logs live.
    pub data_dir: PathBuf,
    /// Cgroup (in every hierarchy) under which containers get theirs, e.g. `orchestrator`.
    pub cgroup_parent: String,
    /// This node.
    pub node: NodeId,
    /// Where root filesystems come from.
    pub images: Arc<dyn ImageSource>,
    /// Size past which a container's log is rotated (see the module docs); at most about twice
    /// this is kept per container.
    pub log_max_bytes: u64,
}

impl OciConfig {
    /// Default of [`log_max_bytes`](Self::log_max_bytes): 10 MiB.
    pub const DEFAULT_LOG_MAX_BYTES: u64 = 10 * 1024 * 1024;

    /// Settings to complete with struct update syntax
    /// (`OciConfig { binary, ..OciConfig::defaults() }`): binary `youki` (a relative path: set
    /// the real one), state in `/run/orchestrator/youki`, data in `/var/lib/orchestrator/oci`,
    /// cgroup parent `orchestrator`, node `local`, no images and
    /// [`DEFAULT_LOG_MAX_BYTES`](Self::DEFAULT_LOG_MAX_BYTES).
    pub fn defaults() -> Self {
        Self {
            binary: PathBuf::from("youki"),
            root: PathBuf::from("/run/orchestrator/youki"),
            data_dir: PathBuf::from("/var/lib/orchestrator/oci"),
            cgroup_parent: "orchestrator".into(),
            node: NodeId::from("local"),
            images: Arc::new(LocalImages::new()),
            log_max_bytes: Self::DEFAULT_LOG_MAX_BYTES,
        }
    }
}

impl Default for OciConfig {
    fn default() -> Self {
        Self::defaults()
    }
}

impl std::fmt::Debug for OciConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OciConfig")
            .field("binary", &self.binary)
            .field("root", &self.root)
            .field("data_dir", &self.data_dir)
            .field("cgroup_parent", &self.cgroup_parent)
            .field("node", &self.node)
            .field("log_max_bytes", &self.log_max_bytes)
            .finish_non_exhaustive()
    }
}

/// Containers on this node through an OCI runtime CLI. See the [module docs](self).
pub struct OciRuntime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for OciRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OciRuntime")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: OciConfig,
    cli: Cli,
    table: Mutex<HashMap<ContainerId, Entry>>,
    events: broadcast::Sender<ContainerEvent>,
    next_generation: AtomicU64,
    /// Init pids whose exit a watcher thread waits for (never reaped by the orphan sweep).
    watched_pids: Mutex<HashSet<i32>>,
    /// Container logs, rotated by a thread started by `new`.
    logs: Arc<logs::Logs>,
}

/// A container created by this process.
struct Entry {
    instance_id: InstanceId,
    workload_id: WorkloadId,
    state: ContainerState,
    /// Tells a late exit watcher of a removed container from the one of its successor.
    generation: u64,
    /// Set by `remove`: no more events.
    removing: bool,
    /// The exit code once the process has been reaped.
    exit: watch::Sender<Option<i32>>,
}

impl OciRuntime {
    /// Checks the binary, creates the directories and makes this process a child subreaper (so
    /// exit codes can be collected; this affects the whole process).
    pub fn new(config: OciConfig) -> Result<Self, RuntimeError> {
        let failed = |message: String| RuntimeError::Failed {
            operation: OPERATION_NEW,
            message,
            transient: false,
        };
        if !config.binary.is_file() {
            return Err(failed(format!(
                "OCI runtime binary {} not found; install youki with `{INSTALL_HINT}`",
                config.binary.display()
            )));
        }
        if config.cgroup_parent.is_empty() || config.cgroup_parent.contains("..") {
            return Err(failed(format!(
                "bad cgroup parent {:?}",
                config.cgroup_parent
            )));
        }
        for dir in [
            config.root.clone(),
            config.data_dir.join("bundles"),
            config.data_dir.join("logs"),
        ] {
            std::fs::create_dir_all(&dir).map_err(|e| {
                RuntimeError::io(OPERATION_NEW, format!("cannot create {}", dir.display()), e)
            })?;
        }
        exit::become_subreaper()
            .map_err(|e| RuntimeError::io(OPERATION_NEW, "cannot become a child subreaper", e))?;
        let (events, _) = broadcast::channel(4096);
        let inner = Arc::new(Inner {
            cli: Cli {
                binary: config.binary.clone(),
                root: config.root.clone(),
            },
            logs: Arc::new(logs::Logs::new(
                config.data_dir.join("logs"),
                config.log_max_bytes,
            )),
            config,
            table: Mutex::new(HashMap::new()),
            events,
            next_generation: AtomicU64::new(1),
            watched_pids: Mutex::new(HashSet::new()),
        });
        // Rotates the logs of the containers in the table; stops once the runtime is dropped.
        let weak = Arc::downgrade(&inner);
        inner
            .logs
            .spawn_rotator(move || weak.upgrade().map(|i| i.table().keys().cloned().collect()))
            .map_err(|e| {
                RuntimeError::io(OPERATION_NEW, "cannot start the log rotation thread", e)
            })?;
        Ok(Self { inner })
    }

    /// The file holding the stdout and stderr of container `id`.
    pub fn log_path(&self, id: &ContainerId) -> PathBuf {
        self.inner.log_path(id)
    }

    /// The bundle directory of container `id`.
    pub fn bundle_path(&self, id: &ContainerId) -> PathBuf {
        self.inner.bundle_path(id)
    }

    /// The cgroup directories container `id` has (or would have), one per hierarchy mounted
    /// under `/sys/fs/cgroup`.
    pub fn cgroup_dirs(&self, id: &ContainerId) -> Vec<PathBuf> {
        self.inner.cgroup_dirs(id)
    }
}

impl Inner {
    fn table(&self) -> MutexGuard<'_, HashMap<ContainerId, Entry>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn watched_pids(&self) -> MutexGuard<'_, HashSet<i32>> {
        self.watched_pids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Reaps the runtime's own zombies, which this subreaper inherits.
    fn reap_orphans(&self) {
        let watched = self.watched_pids().clone();
        exit::reap_runtime_orphans(&watched);
    }

    fn bundle_path(&self, id: &ContainerId) -> PathBuf {
        self.config.data_dir.join("bundles").join(id.as_str())
    }

    fn log_path(&self, id: &ContainerId) -> PathBuf {
        self.logs.live(id)
    }

    fn runtime_log_path(&self, id: &ContainerId) -> PathBuf {
        self.config
            .data_dir
            .join("logs")
            .join(format!("{id}.runtime.log"))
    }

    fn cgroup_dirs(&self, id: &ContainerId) -> Vec<PathBuf> {
        let Ok(hierarchies) = std::fs::read_dir(CGROUP_MOUNT) else {
            return Vec::new();
        };
        let mut dirs: Vec<PathBuf> = hierarchies
            .flatten()
            .map(|h| h.path().join(&self.config.cgroup_parent).join(id.as_str()))
            .collect();
        // cgroup v2 alone: the mount point is the hierarchy.
        dirs.push(
            Path::new(CGROUP_MOUNT)
                .join(&self.config.cgroup_parent)
                .join(id.as_str()),
        );
        dirs
    }

    fn check_node(&self, node: &NodeId, operation: &'static str) -> Result<(), RuntimeError> {
        if *node == self.config.node {
            Ok(())
        } else {
            Err(RuntimeError::NodeUnreachable {
                node: node.clone(),
                operation,
            })
        }
    }

    fn not_found(&self, id: &ContainerId) -> RuntimeError {
        RuntimeError::NotFound {
            node: self.config.node.clone(),
            id: id.clone(),
        }
    }

    fn send(&self, id: &ContainerId, instance_id: &InstanceId, state: ContainerState) {
        // No receiver is not an error.
        let _ = self.events.send(ContainerEvent {
            node_id: self.config.node.clone(),
            container_id: id.clone(),
            instance_id: instance_id.clone(),
            state,
            health: None,
        });
    }

    /// Called by the exit watcher of generation `generation` of `id`.
    fn record_exit(&self, id: &ContainerId, generation: u64, code: Option<i32>) {
        // Read before the cgroup can go away (removal waits for this exit).
        let oom = code
            .filter(|c| *c == 128 + 9)
            .and_then(|_| self.oom_killed(id));
        let mut table = self.table();
        let Some(entry) = table.get_mut(id).filter(|e| e.generation == generation) else {
            return;
        };
        let state = match (code, oom) {
            (Some(code), Some(reason)) => ContainerState::Killed { code, reason },
            (Some(code), None) => ContainerState::Exited { code },
            (None, _) => ContainerState::Failed {
                message: "the container exited; its exit code could not be collected".into(),
            },
        };
        if let Some(code) = code {
            // Lets `status` and `list` of a later daemon process report it.
            let _ = std::fs::write(self.bundle_path(id).join(EXIT_FILE), code.to_string());
        }
        entry.state = state.clone();
        entry.exit.send_replace(Some(code.unwrap_or(-1)));
        if !entry.removing {
            let instance = entry.instance_id.clone();
            drop(table);
            self.send(id, &instance, state);
        }
    }

    /// Why the kernel's OOM killer killed `id`, if it did: its memory cgroup counts OOM kills
    /// (`memory.oom_control` in cgroup v1, `memory.events` in v2).
    fn oom_killed(&self, id: &ContainerId) -> Option<String> {
        let dir = |root: &str| {
            Path::new(root)
                .join(&self.config.cgroup_parent)
                .join(id.as_str())
        };
        let (v1, v2) = (dir("/sys/fs/cgroup/memory"), dir(CGROUP_MOUNT));
        let (counters, limit) = if v1.is_dir() {
            (
                v1.join("memory.oom_control"),
                v1.join("memory.limit_in_bytes"),
            )
        } else {
            (v2.join("memory.events"), v2.join("memory.max"))
        };
        let kills: u64 = std::fs::read_to_string(counters)
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))?
            .trim()
            .parse()
            .ok()?;
        if kills == 0 {
            return None;
        }
        let limit = std::fs::read_to_string(limit)
            .ok()
            .and_then(|l| l.trim().parse::<u64>().ok())
            .map_or_else(String::new, |b| format!(" of {} MB", b / (1024 * 1024)));
        Some(format!(
            "OOM-killed: the container used all of its memory limit{limit} (raise resources.memory_mb)"
        ))
    }

    fn remove_entry(&self, id: &ContainerId, generation: u64) {
        let mut table = self.table();
        if table.get(id).is_some_and(|e| e.generation == generation) {
            table.remove(id);
        }
    }

    /// Deletes everything of `id` but its table entry and its container log.
    async fn clean_up(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        self.cli.delete_force(id.as_str()).await?;
        let bundle = self.bundle_path(id);
        match tokio::fs::remove_dir_all(&bundle).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(RuntimeError::io(
                    "remove",
                    format!("cannot remove bundle {}", bundle.display()),
                    e,
                ))
            }
        }
        let _ = tokio::fs::remove_file(self.runtime_log_path(id)).await;
        for dir in self.cgroup_dirs(id) {
            match std::fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "cannot remove cgroup"),
            }
        }
        Ok(())
    }

    /// Removes the bundle of `id` if it is a create cut short by the death of an earlier
    /// process: no `config.json` it could be listed from, not in this process's table and
    /// unknown to the runtime. Nothing would ever name it otherwise, so it would stay forever.
    /// (This process's creates enter the table before their bundle is made, and leave it only
    /// after it is removed, so one in progress is never taken for such a leftover.)
    async fn remove_cut_short(&self, id: &ContainerId) {
        if self.table().contains_key(id) || self.cli.knows(id.as_str()) {
            return;
        }
        let bundle = self.bundle_path(id);
        match tokio::fs::remove_dir_all(&bundle).await {
            Ok(()) => {
                tracing::info!(container = %id, "removed the bundle of a create cut short");
                let _ = tokio::fs::remove_file(self.runtime_log_path(id)).await;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(bundle = %bundle.display(), error = %e, "cannot remove the bundle of a create cut short")
            }
        }
    }

    /// Info about a container this process did not create (or no longer tracks): from its
    /// bundle's annotations, the runtime's state and the recorded exit code.
    async fn info_from_disk(
        &self,
        id: &ContainerId,
    ) -> Result<Option<ContainerInfo>, RuntimeError> {
        Ok(self.disk_state(id).await?.map(|(info, _)| info))
    }

    /// [`Self::info_from_disk`] with what the runtime says of its init process.
    async fn disk_state(
        &self,
        id: &ContainerId,
    ) -> Result<Option<(ContainerInfo, Init)>, RuntimeError> {
        let bundle = self.bundle_path(id);
        let Ok(oci) = oci_spec::runtime::Spec::load(bundle.join("config.json")) else {
            return Ok(None);
        };
        let annotations = oci.annotations().clone().unwrap_or_default();
        let exit_code = std::fs::read_to_string(bundle.join(EXIT_FILE))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        let (state, init) = match self.cli.state(id.as_str()).await? {
            Some(s) => match s.status.as_str() {
                "running" | "paused" => (
                    ContainerState::Running,
                    s.pid.filter(|p| *p > 0).map_or(Init::Other, Init::Runs),
                ),
                // Not in this process's table, so an earlier process ran `create` and was
                // killed before `start`: nobody will start it (`list` removes it).
                "creating" | "created" => (
                    ContainerState::Failed {
                        message: "created by an earlier daemon process but never started".into(),
                    },
                    Init::NeverStarted,
                ),
                _ => (exit_or_unknown(exit_code), Init::Other),
            },
            None => (exit_or_unknown(exit_code), Init::Other),
        };
        let info = ContainerInfo {
            id: id.clone(),
            node_id: self.config.node.clone(),
            instance_id: annotations
                .get(spec::ANNOTATION_INSTANCE)
                .cloned()
                .unwrap_or_default()
                .into(),
            workload_id: annotations
                .get(spec::ANNOTATION_WORKLOAD)
                .cloned()
                .unwrap_or_default()
                .into(),
            state,
            health: None,
        };
        Ok(Some((info, init)))
    }

    /// Takes a running container of an earlier daemon process into the table and watches its
    /// exit. Its exit code will be unknown: it is not this process's child.
    fn adopt(self: &Arc<Self>, info: &ContainerInfo, pid: i32) -> Result<(), RuntimeError> {
        let pidfd = match exit::open_pidfd(pid) {
            Ok(fd) => fd,
            // Gone since `state`: the next `list` reports it stopped.
            Err(_) => return Ok(()),
        };
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        {
            let mut table = self.table();
            if table.contains_key(&info.id) {
                return Ok(());
            }
            table.insert(
                info.id.clone(),
                Entry {
                    instance_id: info.instance_id.clone(),
                    workload_id: info.workload_id.clone(),
                    state: ContainerState::Running,
                    generation,
                    removing: false,
                    exit: watch::Sender::new(None),
                },
            );
        }
        tracing::info!(container = %info.id, pid, "adopted a running container");
        self.spawn_exit_watcher(info.id.clone(), generation, pid, pidfd)
    }

    /// A thread that waits for `pid` to exit and records it for generation `generation` of `id`.
    fn spawn_exit_watcher(
        self: &Arc<Self>,
        id: ContainerId,
        generation: u64,
        pid: i32,
        pidfd: rustix::fd::OwnedFd,
    ) -> Result<(), RuntimeError> {
        let watcher = Arc::clone(self);
        std::thread::Builder::new()
            .name(format!("exit-{id}"))
            .spawn(move || {
                let code = exit::wait_exit(&pidfd, pid);
                watcher.watched_pids().remove(&pid);
                watcher.record_exit(&id, generation, code);
            })
            .map(|_| ())
            .map_err(|e| RuntimeError::io("watch a container", "cannot spawn the exit watcher", e))
    }

    /// Prepares the bundle, creates and starts the container; returns its init pid and a pidfd.
    async fn create_container(
        &self,
        spec: &ContainerSpec,
    ) -> Result<(i32, rustix::fd::OwnedFd), RuntimeError> {
        let id = spec.id.as_str();
        let failed_because =
            |message: String, source: Option<crate::error::BoxedCause>| RuntimeError::StartFailed {
                node: self.config.node.clone(),
                id: spec.id.clone(),
                message,
                source,
            };
        let start_failed = |message: String| failed_because(message, None);
        let image = match self
            .config
            .images
            .prepare(&spec.config.image, spec.config.image_pull_policy)
            .await
        {
            Ok(image) => image,
            Err(source) => {
                let e = RuntimeError::Image {
                    reference: spec.config.image.clone(),
                    source,
                };
                // A registry that is down now may answer later; a missing image will not
                // appear by retrying the same spec: the restart policy decides.
                if e.is_transient() {
                    return Err(e);
                }
                return Err(failed_because(e.to_string(), Some(Box::new(e))));
            }
        };
        let oci = spec::build(spec, &image, &self.config.cgroup_parent).map_err(start_failed)?;

        let bundle = self.bundle_path(&spec.id);
        let rootfs = bundle.join("rootfs");
        let io_failed =
            |what: &str, e: std::io::Error| RuntimeError::io("create_and_start", what, e);
        tokio::fs::create_dir_all(&rootfs)
            .await
            .map_err(|e| io_failed("create bundle", e))?;
        let mut source = image.rootfs.clone().into_os_string();
        source.push("/.");
        let copy = tokio::process::Command::new("cp")
            .arg("-a")
            .arg(&source)
            .arg(&rootfs)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| io_failed("run cp", e))?;
        if !copy.status.success() {
            return Err(start_failed(format!(
                "cannot copy the rootfs of {} from {}: {}",
                spec.config.image,
                image.rootfs.display(),
                String::from_utf8_lossy(&copy.stderr).trim()
            )));
        }
        oci.save(bundle.join("config.json")).map_err(|e| {
            failed_because(
                format!(
                    "cannot write config.json: {}",
                    crate::image::spec_error_message(&e)
                ),
                Some(Box::new(e)),
            )
        })?;

        // With terminal false the container inherits the stdio of `create`.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(&spec.id))
            .map_err(|e| io_failed("open log", e))?;
        let log_err = log.try_clone().map_err(|e| io_failed("open log", e))?;
        let runtime_log = self.runtime_log_path(&spec.id);
        let status = self
            .cli
            .command(Some(&runtime_log))
            .arg("create")
            .arg("--bundle")
            .arg(&bundle)
            .arg(id)
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .status()
            .await
            .map_err(|e| self.cli.spawn_error("create", e))?;
        if !status.success() {
            let log = std::fs::read_to_string(&runtime_log).unwrap_or_default();
            let mut message = cli::runtime_messages(&log);
            if message.is_empty() {
                // It failed before opening its log: its stderr went to the container's log.
                let output = std::fs::read_to_string(self.log_path(&spec.id)).unwrap_or_default();
                message = cli::runtime_messages(&output);
            }
            let message = format!("{} create: {status}: {message}", self.cli.binary.display());
            // Nothing was created: retrying (after the error backoff) is right.
            if message.contains(cli::SEAL_FLAKE) {
                return Err(RuntimeError::Failed {
                    operation: "create_and_start",
                    message,
                    transient: true,
                });
            }
            return Err(start_failed(message));
        }
        let pid = self
            .cli
            .state(id)
            .await?
            .and_then(|s| s.pid)
            .filter(|p| *p > 0)
            .ok_or_else(|| start_failed("the runtime reports no pid after create".into()))?;
        let pidfd = exit::open_pidfd(pid).map_err(|e| {
            failed_because(
                format!("cannot open a pidfd for pid {pid}: {e}"),
                Some(Box::new(e)),
            )
        })?;
        self.watched_pids().insert(pid);
        let out = self
            .cli
            .command(Some(&runtime_log))
            .args(["start", id])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .await
            .map_err(|e| self.cli.spawn_error("start", e))?;
        if !out.status.success() {
            // Nobody will wait for it: the orphan sweep may reap it.
            self.watched_pids().remove(&pid);
            let log = std::fs::read_to_string(&runtime_log).unwrap_or_default();
            return Err(start_failed(format!(
                "{} start: {}: {} {}",
                self.cli.binary.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                cli::runtime_messages(&log)
            )));
        }
        Ok((pid, pidfd))
    }

    /// Waits until generation `rx` reports an exit, up to `timeout`; whether it did.
    async fn wait_exit(rx: &mut watch::Receiver<Option<i32>>, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, rx.wait_for(|code| code.is_some()))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Waits until the runtime no longer reports `id` running, polling (for containers whose
    /// exit this process does not watch).
    async fn poll_stopped(
        &self,
        id: &ContainerId,
        timeout: Duration,
    ) -> Result<bool, RuntimeError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let running = matches!(
                self.cli.state(id.as_str()).await?,
                Some(s) if s.status == "running" || s.status == "paused" || s.status == "created"
            );
            if !running {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn exit_or_unknown(code: Option<i32>) -> ContainerState {
    match code {
        Some(code) => ContainerState::Exited { code },
        None => ContainerState::Failed {
            message: "stopped while not watched by this daemon; exit code unknown".into(),
        },
    }
}

/// Container ids become directory and cgroup names.
fn valid_id(id: &ContainerId) -> bool {
    !id.as_str().is_empty()
        && id.as_str().len() <= 200
        && !id.as_str().starts_with('.')
        && id
            .as_str()
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[async_trait]
impl ContainerRuntime for OciRuntime {
    async fn create_and_start(
        &self,
        node: &NodeId,
        spec: &ContainerSpec,
    ) -> Result<(), RuntimeError> {
        let inner = &self.inner;
        inner.check_node(node, "create_and_start")?;
        let id = &spec.id;
        if !valid_id(id) {
            return Err(RuntimeError::StartFailed {
                node: node.clone(),
                id: id.clone(),
                message: "container ids may only hold ASCII letters, digits, '-', '_' and '.'"
                    .into(),
                source: None,
            });
        }
        let generation = inner.next_generation.fetch_add(1, Ordering::Relaxed);
        {
            let mut table = inner.table();
            if table.contains_key(id)
                || inner.bundle_path(id).exists()
                || inner.cli.knows(id.as_str())
            {
                return Err(RuntimeError::AlreadyExists {
                    node: node.clone(),
                    id: id.clone(),
                });
            }
            table.insert(
                id.clone(),
                Entry {
                    instance_id: spec.instance_id.clone(),
                    workload_id: spec.workload_id.clone(),
                    state: ContainerState::Created,
                    generation,
                    removing: false,
                    exit: watch::Sender::new(None),
                },
            );
        }
        let created = inner.create_container(spec).await;
        if created.is_err() {
            if let Err(cleanup) = inner.clean_up(id).await {
                tracing::warn!(%id, error = %cleanup, "cleaning up a failed start");
            }
            inner.remove_entry(id, generation);
        }
        inner.reap_orphans();
        let (pid, pidfd) = created?;
        {
            let mut table = inner.table();
            if let Some(entry) = table.get_mut(id).filter(|e| e.generation == generation) {
                entry.state = ContainerState::Running;
            }
        }
        inner.send(id, &spec.instance_id, ContainerState::Running);
        inner.spawn_exit_watcher(id.clone(), generation, pid, pidfd)
    }

    async fn stop(
        &self,
        node: &NodeId,
        id: &ContainerId,
        grace: Duration,
    ) -> Result<(), RuntimeError> {
        let inner = &self.inner;
        inner.check_node(node, "stop")?;
        let watched = {
            let table = inner.table();
            match table.get(id) {
                Some(e) if e.state.has_exited() => return Ok(()),
                Some(e) => Some(e.exit.subscribe()),
                None => None,
            }
        };
        let Some(mut rx) = watched else {
            // Not created by this process: stop it through the runtime alone.
            if inner.info_from_disk(id).await?.is_none() {
                return Err(inner.not_found(id));
            }
            inner.cli.kill(id.as_str(), "SIGTERM").await?;
            if !inner.poll_stopped(id, grace).await? {
                inner.cli.kill(id.as_str(), "SIGKILL").await?;
                inner.poll_stopped(id, KILL_WAIT).await?;
            }
            return Ok(());
        };
        inner.cli.kill(id.as_str(), "SIGTERM").await?;
        if Inner::wait_exit(&mut rx, grace).await {
            return Ok(());
        }
        inner.cli.kill(id.as_str(), "SIGKILL").await?;
        if Inner::wait_exit(&mut rx, KILL_WAIT).await {
            Ok(())
        } else {
            Err(RuntimeError::Failed {
                operation: "stop",
                message: format!("{id} still runs {KILL_WAIT:?} after SIGKILL"),
                transient: true,
            })
        }
    }

    async fn remove(&self, node: &NodeId, id: &ContainerId) -> Result<(), RuntimeError> {
        let inner = &self.inner;
        inner.check_node(node, "remove")?;
        let watched = {
            let mut table = inner.table();
            table.get_mut(id).map(|e| {
                e.removing = true;
                (e.generation, e.exit.subscribe())
            })
        };
        if let Some((_, mut rx)) = watched.clone() {
            if rx.borrow().is_none() {
                // Kill it ourselves and let the watcher reap it, so its cgroups empty out.
                inner.cli.kill(id.as_str(), "SIGKILL").await?;
                Inner::wait_exit(&mut rx, KILL_WAIT).await;
            }
        }
        inner.clean_up(id).await?;
        inner.reap_orphans();
        if let Some((generation, _)) = watched {
            inner.remove_entry(id, generation);
        }
        Ok(())
    }

    async fn status(&self, node: &NodeId, id: &ContainerId) -> Result<ContainerInfo, RuntimeError> {
        let inner = &self.inner;
        inner.check_node(node, "status")?;
        let known = inner.table().get(id).map(|e| ContainerInfo {
            id: id.clone(),
            node_id: node.clone(),
            instance_id: e.instance_id.clone(),
            workload_id: e.workload_id.clone(),
            state: e.state.clone(),
            health: None,
        });
        match known {
            Some(info) => Ok(info),
            None => inner
                .info_from_disk(id)
                .await?
                .ok_or_else(|| inner.not_found(id)),
        }
    }

    async fn list(&self, node: &NodeId) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let inner = &self.inner;
        inner.check_node(node, "list")?;
        let mut all: Vec<ContainerInfo> = inner
            .table()
            .iter()
            .map(|(id, e)| ContainerInfo {
                id: id.clone(),
                node_id: node.clone(),
                instance_id: e.instance_id.clone(),
                workload_id: e.workload_id.clone(),
                state: e.state.clone(),
                health: None,
            })
            .collect();
        let bundles = std::fs::read_dir(inner.config.data_dir.join("bundles"))
            .map_err(|e| RuntimeError::io("list", "cannot read bundles", e))?;
        for bundle in bundles.flatten() {
            let id = ContainerId::from(bundle.file_name().to_string_lossy().into_owned());
            if all.iter().any(|c| c.id == id) {
                continue;
            }
            match inner.disk_state(&id).await? {
                Some((info, Init::NeverStarted)) => {
                    // Nobody will start it, and it never ran: removed (its waiting init
                    // killed) and left out, so the core finds the instance's container gone
                    // and starts it again after its short error backoff, not the crash-loop
                    // delay of a container that ran and failed. If the removal fails it is
                    // listed as Failed, and the core replaces and removes it.
                    match self.remove(node, &id).await {
                        Ok(()) => {
                            tracing::info!(container = %id, "removed a container an earlier daemon process created but never started");
                            continue;
                        }
                        Err(e) => {
                            tracing::warn!(container = %id, error = %e, "cannot remove a container an earlier daemon process never started");
                            all.push(info);
                        }
                    }
                }
                Some((info, init)) => {
                    if let Init::Runs(pid) = init {
                        inner.adopt(&info, pid)?;
                    }
                    all.push(info);
                }
                None => inner.remove_cut_short(&id).await,
            }
        }
        all.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(all)
    }

    fn subscribe(&self) -> broadcast::Receiver<ContainerEvent> {
        self.inner.events.subscribe()
    }

    async fn logs(
        &self,
        node: &NodeId,
        id: &ContainerId,
        request: LogRequest,
    ) -> Result<LogChunk, RuntimeError> {
        let inner = &self.inner;
        inner.check_node(node, "logs")?;
        if !valid_id(id) {
            return Err(inner.not_found(id));
        }
        let (logs, key) = (Arc::clone(&inner.logs), id.clone());
        let read = tokio::task::spawn_blocking(move || logs.read(&key, &request))
            .await
            .unwrap_or_else(|panicked| Err(std::io::Error::other(panicked)))
            .map_err(|e| RuntimeError::io("logs", format!("cannot read the log of {id}"), e))?;
        match read {
            Some(chunk) => Ok(chunk),
            // Being created: its log is not open yet.
            None if inner.table().contains_key(id) => Ok(LogChunk::default()),
            None => Err(inner.not_found(id)),
        }
    }

    async fn exec(
        &self,
        node: &NodeId,
        id: &ContainerId,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        let inner = &self.inner;
        inner.check_node(node, "exec")?;
        if !valid_id(id) {
            return Err(inner.not_found(id));
        }
        inner.exec(id, command, timeout).await
    }
}
