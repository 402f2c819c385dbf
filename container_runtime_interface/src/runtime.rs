//! The [`ContainerRuntime`] trait and the types it speaks.

use crate::RuntimeError;
use async_trait::async_trait;
use orchestrator_shared_types::{ContainerConfig, ContainerId, InstanceId, NodeId, WorkloadId};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};
use tokio::sync::broadcast;

/// The id of container `container_name` of instance `instance`: deterministic, so creating is
/// idempotent and a restarted daemon can tell which containers are its own.
pub fn container_id_for(instance: &InstanceId, container_name: &str) -> ContainerId {
    ContainerId(format!("{instance}-{container_name}"))
}

/// Everything a runtime needs to create one container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// The id to create it under (see [`container_id_for`]).
    pub id: ContainerId,
    /// The instance it belongs to (recorded by the runtime, returned by `list`).
    pub instance_id: InstanceId,
    /// The workload it belongs to (recorded by the runtime, returned by `list`).
    pub workload_id: WorkloadId,
    /// What to run.
    pub config: ContainerConfig,
}

/// Where a container is in its life, as the runtime sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    /// Created, not yet running.
    Created,
    /// Running.
    Running,
    /// Its process ended with this exit code.
    Exited {
        /// Exit code (128 + signal for a killed process).
        code: i32,
    },
    /// The system killed its process (the kernel's OOM killer, for one): an exit with a reason.
    Killed {
        /// Exit code (128 + signal).
        code: i32,
        /// Why, for users (e.g. "OOM-killed: ...").
        reason: String,
    },
    /// The runtime gave up on it (e.g. it could not start after creation).
    Failed {
        /// The runtime's message.
        message: String,
    },
}

impl ContainerState {
    /// Whether its process has ended (with a code, or killed with a reason).
    pub fn has_exited(&self) -> bool {
        matches!(self, Self::Exited { .. } | Self::Killed { .. })
    }
}

/// What a container's probes say, from the node that runs it (see
/// `orchestrator_shared_types::health`). A container nothing probes has no health: it is
/// ready while it runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Its startup probe (if any) passed and its readiness probe (if any) passes.
    pub ready: bool,
    /// When a probe is failing or has not passed yet: which, and its last output (e.g.
    /// "readiness probe failed 2 times: HTTP 503 from GET /ready").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What a command run in a container returned ([`ContainerRuntime::exec`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecOutput {
    /// Its exit code.
    pub code: i32,
    /// The start of what it wrote to stdout and stderr (bounded).
    pub output: String,
}

/// What a runtime knows about one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerInfo {
    /// Id.
    pub id: ContainerId,
    /// Node it lives on.
    pub node_id: NodeId,
    /// Instance it belongs to.
    pub instance_id: InstanceId,
    /// Workload it belongs to.
    pub workload_id: WorkloadId,
    /// State.
    pub state: ContainerState,
    /// What its probes say, if anything probes it.
    pub health: Option<Health>,
}

/// A change of a container's state, pushed by the runtime as it happens (an exit, most
/// importantly). Subscribers that lag may miss some: they must resync with `list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerEvent {
    /// Node.
    pub node_id: NodeId,
    /// Container.
    pub container_id: ContainerId,
    /// Its instance.
    pub instance_id: InstanceId,
    /// The new state.
    pub state: ContainerState,
    /// What its probes say, if anything probes it (a change of health alone is an event too).
    pub health: Option<Health>,
}

/// What to read of a container's output (stdout and stderr, interleaved as written).
///
/// A log is a stream of bytes; a *cursor* ([`LogChunk::next`]) is an opaque position in it,
/// meaningful only for the same container on the same runtime. Passing it back as `from` returns
/// what was written after it. A cursor that no longer points into the log (the log was rotated or
/// trimmed past it, or the container was re-created) restarts at cursor 0 (see `from`): output
/// written between such a cursor and the rotation is then missed.
///
/// Without a cursor, `since`, `tail` and `limit_bytes` each keep only the newest part of the log
/// (what was written since a time, the last lines, the last bytes): the answer is the shortest
/// of the three, i.e. all of them hold. With a cursor, `since` is ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogRequest {
    /// Start after this cursor (from an earlier [`LogChunk::next`]); `None` reads the end of
    /// the log (with `tail` and `limit_bytes`). `Some(0)` is the start of the log, or of its
    /// newest part once it was rotated.
    pub from: Option<u64>,
    /// Only the last N lines of what is selected (a last line without its newline counts);
    /// `Some(0)` returns nothing but the cursor of the end, to follow only new output.
    pub tail: Option<usize>,
    /// At most this many bytes: the first ones after `from` when a cursor is given (so that
    /// following the cursors reads everything in order), else the last ones of the log.
    pub limit_bytes: Option<usize>,
    /// Only what was written at or after this time; ignored when `from` is given (a cursor
    /// already says where to start). Runtimes date output as precisely as they can: the
    /// simulated runtime dates every write; the OCI runtime's containers write straight to a
    /// file, which it dates about once a second, so up to about a second of older output may
    /// be included (newer output is never left out).
    pub since: Option<SystemTime>,
}

/// A piece of a container's output, see [`LogRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogChunk {
    /// The bytes, as the container wrote them (not necessarily UTF-8, not necessarily whole
    /// lines when a limit cut them).
    pub data: Vec<u8>,
    /// The cursor to pass as [`LogRequest::from`] to read what follows `data`.
    pub next: u64,
}

impl LogRequest {
    /// The chunk this request selects from `log`, a log whose first byte is at cursor `base`:
    /// for implementations that hold the log (or the part of it after the cursor) in memory.
    /// It ignores [`since`](Self::since): without a cursor, callers pass only the part of the
    /// log written since then (and its cursor as `base`).
    pub fn select(&self, log: &[u8], base: u64) -> LogChunk {
        let len = log.len();
        let (mut lo, hi) = match self.from {
            Some(from) => {
                // Outside the log: restart at its oldest byte (see the type's docs).
                let lo = from
                    .checked_sub(base)
                    .and_then(|off| usize::try_from(off).ok())
                    .filter(|off| *off <= len)
                    .unwrap_or(0);
                let hi = self
                    .limit_bytes
                    .map_or(len, |l| len.min(lo.saturating_add(l)));
                (lo, hi)
            }
            None => (self.limit_bytes.map_or(0, |l| len.saturating_sub(l)), len),
        };
        if let Some(n) = self.tail {
            lo += last_lines_start(&log[lo..hi], n);
        }
        LogChunk {
            data: log[lo..hi].to_vec(),
            next: base + hi as u64,
        }
    }
}

/// Where the last `n` lines of `data` start; a last line without its newline counts as one.
pub fn last_lines_start(data: &[u8], n: usize) -> usize {
    if n == 0 {
        return data.len();
    }
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    body.iter()
        .enumerate()
        .rev()
        .filter(|(_, b)| **b == b'\n')
        .nth(n - 1)
        .map_or(0, |(i, _)| i + 1)
}

/// Node-aware container lifecycle. Implementations must pass [`crate::conformance`].
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait ContainerRuntime: Send + Sync {
    /// Creates and starts a container on `node`. Returns once it is started (its state may still
    /// be `Created` for a while; a `Running` event follows). Fails with `AlreadyExists` if a
    /// container with `spec.id` exists on the node.
    async fn create_and_start(
        &self,
        node: &NodeId,
        spec: &ContainerSpec,
    ) -> Result<(), RuntimeError>;

    /// Stops a container: asks it to exit, and kills it after `grace`. Stopping a container that
    /// already exited is not an error.
    async fn stop(
        &self,
        node: &NodeId,
        id: &ContainerId,
        grace: Duration,
    ) -> Result<(), RuntimeError>;

    /// Removes a container and everything it used (bundle, rootfs, cgroups), killing it first if
    /// it still runs (like `youki delete --force`). Removing a container that does not exist is
    /// not an error (idempotent).
    async fn remove(&self, node: &NodeId, id: &ContainerId) -> Result<(), RuntimeError>;

    /// The container's current state.
    async fn status(&self, node: &NodeId, id: &ContainerId) -> Result<ContainerInfo, RuntimeError>;

    /// Every container this runtime manages on `node`.
    async fn list(&self, node: &NodeId) -> Result<Vec<ContainerInfo>, RuntimeError>;

    /// A subscription to state changes of all containers on all nodes: at least a `Running` event
    /// once a container runs and an `Exited` event when its process ends (on its own, stopped or
    /// killed). Removal sends none. Events sent before `create_and_start` returns reach
    /// receivers subscribed before the call, so subscribe first, then create.
    fn subscribe(&self) -> broadcast::Receiver<ContainerEvent>;

    /// Reads the output of a container, see [`LogRequest`] for what is selected and what a
    /// cursor means. A container that was removed may still have its log (the OCI runtime keeps
    /// the file); `NotFound` when there is neither a container nor a log under `id`.
    async fn logs(
        &self,
        node: &NodeId,
        id: &ContainerId,
        request: LogRequest,
    ) -> Result<LogChunk, RuntimeError>;

    /// Runs `command` inside the running container `id` (`youki exec`) and waits for it at most
    /// `timeout`: a command still running then is killed and the call fails. Used by `exec`
    /// health checks. Runtimes that cannot run commands in containers keep this default, which
    /// refuses.
    async fn exec(
        &self,
        node: &NodeId,
        id: &ContainerId,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        let _ = (node, id, command, timeout);
        Err(RuntimeError::Failed {
            operation: "exec",
            message: "this runtime cannot run commands in containers".to_owned(),
            transient: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(from: Option<u64>, tail: Option<usize>, limit_bytes: Option<usize>) -> LogRequest {
        LogRequest {
            from,
            tail,
            limit_bytes,
            since: None,
        }
    }

    #[test]
    fn last_lines() {
        assert_eq!(last_lines_start(b"a\nb\nc\n", 1), 4);
        assert_eq!(last_lines_start(b"a\nb\nc\n", 2), 2);
        assert_eq!(last_lines_start(b"a\nb\nc\n", 5), 0);
        assert_eq!(last_lines_start(b"a\nb\npartial", 1), 4);
        assert_eq!(last_lines_start(b"a\nb\n", 0), 4);
        assert_eq!(last_lines_start(b"", 3), 0);
    }

    #[test]
    fn selecting() {
        let log = b"one\ntwo\nthree\n";
        let all = req(None, None, None).select(log, 10);
        assert_eq!((all.data.as_slice(), all.next), (&log[..], 24));
        let tail = req(None, Some(1), None).select(log, 10);
        assert_eq!((tail.data.as_slice(), tail.next), (&b"three\n"[..], 24));
        let last = req(None, None, Some(3)).select(log, 10);
        assert_eq!(last.data, b"ee\n");
        // Paging forward with a limit reads everything once, in order.
        let first = req(Some(10), None, Some(4)).select(log, 10);
        assert_eq!((first.data.as_slice(), first.next), (&b"one\n"[..], 14));
        let rest = req(Some(first.next), None, None).select(log, 10);
        assert_eq!(
            (rest.data.as_slice(), rest.next),
            (&b"two\nthree\n"[..], 24)
        );
        assert!(req(Some(24), None, None).select(log, 10).data.is_empty());
        // Before the oldest byte kept, or past the end: from the start.
        assert_eq!(req(Some(3), None, None).select(log, 10).data, log);
        assert_eq!(req(Some(99), None, None).select(log, 10).data, log);
        // Tail of what follows a cursor; tail 0 gives only the cursor.
        assert_eq!(
            req(Some(14), Some(1), None).select(log, 10).data,
            b"three\n"
        );
        let none = req(None, Some(0), None).select(log, 10);
        assert_eq!((none.data.len(), none.next), (0, 24));
    }
}
