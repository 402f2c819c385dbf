//! The conformance suite: what every [`ContainerRuntime`] must do, checked through the trait
//! alone so that the simulated runtime and a real one (youki, against real containers) run the
//! very same checks.
//!
//! Each check is a `pub async fn` taking a [`ConformanceTarget`]; it panics with a message
//! saying what was expected when the runtime misbehaves. Checks create containers under fresh
//! random ids and remove them when they pass, so they can share a node and run concurrently.
//!
//! [`runtime_conformance!`](crate::runtime_conformance) turns them into one `#[tokio::test]` per
//! check:
//!
//! ```ignore
//! // tests/conformance.rs of an implementation; needs the `conformance` feature of this crate
//! // and tokio (features `macros` and `rt`) as a dev-dependency.
//! fn target() -> ConformanceTarget {
//!     ConformanceTarget::new(Arc::new(MyRuntime::new()), NodeId::from("local"), busybox_sleep())
//!         .with_exit(busybox_exit_3(), 3)
//! }
//! container_runtime_interface::runtime_conformance!(target());
//! ```
//!
//! The argument is an expression evaluated at the start of every test, inside its async body
//! (so it may `.await`). The macro defines functions named after the checks: invoke it once per
//! module, in a module of its own to run several targets.

use crate::{
    container_id_for, ContainerEvent, ContainerRuntime, ContainerSpec, ContainerState, LogChunk,
    LogRequest, RuntimeError,
};
use orchestrator_shared_types::{ContainerConfig, ContainerId, InstanceId, NodeId, WorkloadId};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

/// How long a check waits for an event unless the target says otherwise: long enough for a real
/// runtime to start a small container from a local image.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The grace period the checks give `stop`; a container that ignores SIGTERM (e.g. `sleep` as
/// PID 1) is killed after it.
pub const STOP_GRACE: Duration = Duration::from_secs(1);

/// What the suite runs against.
#[derive(Clone)]
pub struct ConformanceTarget {
    /// The runtime under test.
    pub runtime: Arc<dyn ContainerRuntime>,
    /// The node to create containers on.
    pub node: NodeId,
    /// A container that runs until it is stopped (e.g. busybox `sleep 3600`).
    pub long_running: ContainerConfig,
    /// A container that exits on its own, and its exit code, if the implementation can express
    /// one (e.g. busybox `sh -c "exit 3"`). `None` skips the check that needs it.
    pub exits_with: Option<(ContainerConfig, i32)>,
    /// A container that writes lines containing these texts, in this order, to its output and
    /// then exits on its own (e.g. busybox `sh -c "echo one; echo two"`). `None` skips the
    /// check that needs it.
    pub output: Option<(ContainerConfig, Vec<String>)>,
    /// How long to wait for an event before failing.
    pub timeout: Duration,
}

impl ConformanceTarget {
    /// A target without a self-exiting container and with [`DEFAULT_TIMEOUT`].
    pub fn new(
        runtime: Arc<dyn ContainerRuntime>,
        node: NodeId,
        long_running: ContainerConfig,
    ) -> Self {
        Self {
            runtime,
            node,
            long_running,
            exits_with: None,
            output: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Adds a container that exits on its own with `code`.
    pub fn with_exit(mut self, config: ContainerConfig, code: i32) -> Self {
        self.exits_with = Some((config, code));
        self
    }

    /// Adds a container that writes lines containing `texts` and exits.
    pub fn with_output(mut self, config: ContainerConfig, texts: &[&str]) -> Self {
        self.output = Some((config, texts.iter().map(|t| (*t).to_owned()).collect()));
        self
    }

    /// Sets how long to wait for events.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// A spec for `config` under a fresh instance, so no two checks share an id.
    pub fn spec(&self, config: &ContainerConfig) -> ContainerSpec {
        let instance_id = InstanceId::generate("conformance");
        ContainerSpec {
            id: container_id_for(&instance_id, &config.name),
            instance_id,
            workload_id: WorkloadId::generate(),
            config: config.clone(),
        }
    }

    /// Waits for an event of container `id` on the target's node whose state satisfies `wanted`.
    /// Panics after [`timeout`](Self::timeout), listing the states seen for that container.
    pub async fn wait_for(
        &self,
        events: &mut broadcast::Receiver<ContainerEvent>,
        id: &ContainerId,
        what: &str,
        wanted: impl Fn(&ContainerState) -> bool,
    ) -> ContainerEvent {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut seen = Vec::new();
        let mut lagged = 0;
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Err(_) => panic!(
                    "no {what} event for {id} within {:?}; its events: {seen:?}; \
                     events lost to lag: {lagged}",
                    self.timeout
                ),
                Ok(Ok(ev)) if ev.container_id == *id && ev.node_id == self.node => {
                    if wanted(&ev.state) {
                        return ev;
                    }
                    seen.push(ev.state);
                }
                Ok(Ok(_)) => {}
                Ok(Err(RecvError::Lagged(n))) => lagged += n,
                Ok(Err(RecvError::Closed)) => panic!("event channel closed waiting for {what}"),
            }
        }
    }

    /// Creates a container from `config` and waits until it runs; returns its spec.
    /// Creates and starts a container of `config` (subscribe first to see its events).
    async fn start(&self, config: &ContainerConfig) -> ContainerSpec {
        let spec = self.spec(config);
        self.runtime
            .create_and_start(&self.node, &spec)
            .await
            .unwrap_or_else(|e| panic!("create_and_start {}: {e}", spec.id));
        spec
    }

    async fn start_running(
        &self,
        events: &mut broadcast::Receiver<ContainerEvent>,
        config: &ContainerConfig,
    ) -> ContainerSpec {
        let spec = self.start(config).await;
        self.wait_for(events, &spec.id, "Running", is_running).await;
        spec
    }

    async fn remove(&self, id: &ContainerId) {
        self.runtime
            .remove(&self.node, id)
            .await
            .unwrap_or_else(|e| panic!("remove {id}: {e}"));
    }

    async fn state_of(&self, id: &ContainerId) -> ContainerState {
        self.runtime
            .status(&self.node, id)
            .await
            .unwrap_or_else(|e| panic!("status {id}: {e}"))
            .state
    }

    async fn logs(&self, id: &ContainerId, request: LogRequest) -> LogChunk {
        self.runtime
            .logs(&self.node, id, request.clone())
            .await
            .unwrap_or_else(|e| panic!("logs {id} {request:?}: {e}"))
    }

    /// The whole log of `id` once it contains `needle` (output may reach a real runtime's log
    /// a little after the event that announces it). Panics after the timeout.
    async fn log_containing(&self, id: &ContainerId, needle: &str) -> LogChunk {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let chunk = self.logs(id, LogRequest::default()).await;
            if String::from_utf8_lossy(&chunk.data).contains(needle) {
                return chunk;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "the log of {id} lacks {needle:?} after {:?}: {:?}",
                    self.timeout,
                    String::from_utf8_lossy(&chunk.data)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn listed(&self, id: &ContainerId) -> bool {
        self.runtime
            .list(&self.node)
            .await
            .unwrap_or_else(|e| panic!("list: {e}"))
            .iter()
            .any(|c| c.id == *id)
    }
}

impl std::fmt::Debug for ConformanceTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConformanceTarget")
            .field("node", &self.node)
            .field("long_running", &self.long_running.image)
            .field(
                "exits_with",
                &self.exits_with.as_ref().map(|(c, code)| (&c.image, code)),
            )
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

fn is_running(s: &ContainerState) -> bool {
    *s == ContainerState::Running
}

fn is_exited(s: &ContainerState) -> bool {
    matches!(s, ContainerState::Exited { .. })
}

fn assert_not_found(result: Result<impl std::fmt::Debug, RuntimeError>, what: &str) {
    match result {
        Err(RuntimeError::NotFound { .. }) => {}
        other => panic!("{what}: expected NotFound, got {other:?}"),
    }
}

/// After `create_and_start`, a `Running` event for that container arrives (carrying its node and
/// instance) and `status` says `Running`. The subscription is taken before creating, so a runtime
/// that sends the event before `create_and_start` returns passes too.
pub async fn start_emits_running(t: &ConformanceTarget) {
    let mut events = t.runtime.subscribe();
    let spec = t.start(&t.long_running).await;
    let ev = t
        .wait_for(&mut events, &spec.id, "Running", is_running)
        .await;
    assert_eq!(
        ev.instance_id, spec.instance_id,
        "event carries the instance"
    );
    let info = t.runtime.status(&t.node, &spec.id).await.unwrap();
    assert_eq!(
        info.state,
        ContainerState::Running,
        "status after the Running event"
    );
    assert_eq!(info.id, spec.id);
    assert_eq!(info.node_id, t.node);
    t.remove(&spec.id).await;
}

/// `list` reports a created container with the instance and workload of its spec, which is how
/// a restarted daemon tells its containers apart.
pub async fn list_reports_ownership(t: &ConformanceTarget) {
    let mut events = t.runtime.subscribe();
    let spec = t.start_running(&mut events, &t.long_running).await;
    let all = t.runtime.list(&t.node).await.unwrap();
    let info = all
        .iter()
        .find(|c| c.id == spec.id)
        .unwrap_or_else(|| panic!("{} missing from list: {all:?}", spec.id));
    assert_eq!(info.node_id, t.node);
    assert_eq!(info.instance_id, spec.instance_id);
    assert_eq!(info.workload_id, spec.workload_id);
    assert_eq!(info.state, ContainerState::Running);
    t.remove(&spec.id).await;
}

/// Creating an id that exists fails with `AlreadyExists` and leaves the first container running:
/// this is what makes a retried create safe.
pub async fn create_existing_id_fails(t: &ConformanceTarget) {
    let mut events = t.runtime.subscribe();
    let spec = t.start_running(&mut events, &t.long_running).await;
    match t.runtime.create_and_start(&t.node, &spec).await {
        Err(RuntimeError::AlreadyExists { id, .. }) => assert_eq!(id, spec.id),
        other => panic!(
            "second create of {}: expected AlreadyExists, got {other:?}",
            spec.id
        ),
    }
    assert_eq!(
        t.state_of(&spec.id).await,
        ContainerState::Running,
        "first one untouched"
    );
    t.remove(&spec.id).await;
}

/// `stop` makes a running container `Exited` (event and status, any code) and stopping it again
/// is not an error.
pub async fn stop_exits_and_is_idempotent(t: &ConformanceTarget) {
    let mut events = t.runtime.subscribe();
    let spec = t.start_running(&mut events, &t.long_running).await;
    t.runtime
        .stop(&t.node, &spec.id, STOP_GRACE)
        .await
        .unwrap_or_else(|e| panic!("stop {}: {e}", spec.id));
    let ev = t.wait_for(&mut events, &spec.id, "Exited", is_exited).await;
    assert_eq!(
        t.state_of(&spec.id).await,
        ev.state,
        "status agrees with the event"
    );
    t.runtime
        .stop(&t.node, &spec.id, STOP_GRACE)
        .await
        .unwrap_or_else(|e| panic!("stopping {} again: {e}", spec.id));
    assert!(is_exited(&t.state_of(&spec.id).await));
    t.remove(&spec.id).await;
}

/// Stopping one container changes nothing for another: events and state are per container.
pub async fn stop_affects_only_that_container(t: &ConformanceTarget) {
    let mut events = t.runtime.subscribe();
    let a = t.start_running(&mut events, &t.long_running).await;
    let b = t.start_running(&mut events, &t.long_running).await;
    t.runtime.stop(&t.node, &a.id, STOP_GRACE).await.unwrap();
    t.wait_for(&mut events, &a.id, "Exited", is_exited).await;
    assert_eq!(
        t.state_of(&b.id).await,
        ContainerState::Running,
        "the other one still runs"
    );
    // No event for `b` may be pending: it did not change.
    while let Ok(ev) = events.try_recv() {
        assert!(
            ev.container_id != b.id,
            "unexpected event for {}: {ev:?}",
            b.id
        );
    }
    t.remove(&a.id).await;
    t.remove(&b.id).await;
}

/// `remove` of an exited container makes it disappear from `list` and `status` (`NotFound`);
/// removing it again is not an error.
pub async fn remove_is_idempotent(t: &ConformanceTarget) {
    let mut events = t.runtime.subscribe();
    let spec = t.start_running(&mut events, &t.long_running).await;
    t.runtime.stop(&t.node, &spec.id, STOP_GRACE).await.unwrap();
    t.wait_for(&mut events, &spec.id, "Exited", is_exited).await;
    t.remove(&spec.id).await;
    assert!(
        !t.listed(&spec.id).await,
        "{} still listed after remove",
        spec.id
    );
    assert_not_found(
        t.runtime.status(&t.node, &spec.id).await,
        "status after remove",
    );
    t.runtime
        .remove(&t.node, &spec.id)
        .await
        .unwrap_or_else(|e| panic!("removing {} again: {e}", spec.id));
}

/// `remove` of a running container kills it first (`youki delete --force`).
pub async fn remove_kills_running(t: &ConformanceTarget) {
    let mut events = t.runtime.subscribe();
    let spec = t.start_running(&mut events, &t.long_running).await;
    t.remove(&spec.id).await;
    assert!(
        !t.listed(&spec.id).await,
        "{} still listed after remove",
        spec.id
    );
    assert_not_found(
        t.runtime.status(&t.node, &spec.id).await,
        "status after remove",
    );
}

/// An id can be created again once removed: a restarted instance reuses its container ids.
pub async fn id_reusable_after_remove(t: &ConformanceTarget) {
    let mut events = t.runtime.subscribe();
    let spec = t.start_running(&mut events, &t.long_running).await;
    t.remove(&spec.id).await;
    t.runtime
        .create_and_start(&t.node, &spec)
        .await
        .unwrap_or_else(|e| panic!("create {} again after remove: {e}", spec.id));
    t.wait_for(&mut events, &spec.id, "Running", is_running)
        .await;
    assert_eq!(t.state_of(&spec.id).await, ContainerState::Running);
    t.remove(&spec.id).await;
}

/// `status` and `stop` of an id that was never created fail with `NotFound`; `remove` of it
/// succeeds (idempotent).
pub async fn unknown_container(t: &ConformanceTarget) {
    let id = t.spec(&t.long_running).id;
    assert_not_found(
        t.runtime.status(&t.node, &id).await,
        "status of an unknown id",
    );
    assert_not_found(
        t.runtime.stop(&t.node, &id, STOP_GRACE).await,
        "stop of an unknown id",
    );
    assert_not_found(
        t.runtime.logs(&t.node, &id, LogRequest::default()).await,
        "logs of an unknown id",
    );
    t.runtime
        .remove(&t.node, &id)
        .await
        .unwrap_or_else(|e| panic!("remove of an unknown id: {e}"));
}

/// A container's output is readable, in order: whole, its last lines (`tail`), and in pieces
/// by following cursors (each piece exactly what follows the previous one). Skipped (passes)
/// when the target has no [`ConformanceTarget::output`].
pub async fn logs_hold_output(t: &ConformanceTarget) {
    let Some((config, texts)) = &t.output else {
        eprintln!("logs_hold_output skipped: the target has no container with known output");
        return;
    };
    let mut events = t.runtime.subscribe();
    let spec = t.start(config).await;
    t.wait_for(&mut events, &spec.id, "Exited", is_exited).await;
    let last = texts.last().map_or("", String::as_str);
    let full = t.log_containing(&spec.id, last).await;
    let text = String::from_utf8_lossy(&full.data).into_owned();
    let mut at = 0;
    for wanted in texts {
        match text[at..].find(wanted.as_str()) {
            Some(i) => at += i + wanted.len(),
            None => panic!("{wanted:?} missing (or out of order) in the log {text:?}"),
        }
    }
    assert!(
        text.ends_with('\n'),
        "the output ends with a newline: {text:?}"
    );

    let lines: Vec<&str> = text.lines().collect();
    for n in [1, 2] {
        let tail = t
            .logs(
                &spec.id,
                LogRequest {
                    tail: Some(n),
                    ..LogRequest::default()
                },
            )
            .await;
        let wanted: String = lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            String::from_utf8_lossy(&tail.data),
            wanted,
            "tail {n} of {text:?}"
        );
        assert_eq!(tail.next, full.next, "tail {n} ends where the log ends");
    }

    let first_line = text.find('\n').map_or(text.len(), |i| i + 1);
    let first = t
        .logs(
            &spec.id,
            LogRequest {
                from: Some(0),
                limit_bytes: Some(first_line),
                ..LogRequest::default()
            },
        )
        .await;
    assert_eq!(
        String::from_utf8_lossy(&first.data),
        &text[..first_line],
        "the first line, by a cursor at 0 and a limit"
    );
    let rest = t
        .logs(
            &spec.id,
            LogRequest {
                from: Some(first.next),
                ..LogRequest::default()
            },
        )
        .await;
    assert_eq!(
        String::from_utf8_lossy(&rest.data),
        &text[first_line..],
        "what follows the first line's cursor"
    );
    assert_eq!(rest.next, full.next);
    let nothing = t
        .logs(
            &spec.id,
            LogRequest {
                from: Some(full.next),
                ..LogRequest::default()
            },
        )
        .await;
    assert!(
        nothing.data.is_empty(),
        "nothing follows the end: {nothing:?}"
    );
    assert_eq!(nothing.next, full.next, "the end's cursor stays");
    t.remove(&spec.id).await;
}

/// `since` leaves out what was written before it and keeps what was written at or after it:
/// read since a time after a container's output, none of that output; since a time before its
/// creation, all of it; a container created after the time, all of its output. Skipped (passes)
/// when the target has no [`ConformanceTarget::output`].
///
/// Approximate by design: a runtime may date output coarsely (the OCI runtime dates its log
/// files about once a second), so the check waits 2.2 s between the output and the time it
/// reads since.
pub async fn logs_since_leaves_out_earlier_output(t: &ConformanceTarget) {
    let Some((config, texts)) = &t.output else {
        eprintln!("logs_since_leaves_out_earlier_output skipped: no container with known output");
        return;
    };
    let last = texts.last().map_or("", String::as_str);
    let run = async |events: &mut broadcast::Receiver<ContainerEvent>| {
        let spec = t.start(config).await;
        t.wait_for(events, &spec.id, "Exited", is_exited).await;
        let full = t.log_containing(&spec.id, last).await;
        (spec, full)
    };
    let since = |time| LogRequest {
        since: Some(time),
        ..LogRequest::default()
    };
    let mut events = t.runtime.subscribe();
    let before = SystemTime::now();
    let (early, full) = run(&mut events).await;
    // Approximate: long enough for a runtime that dates output every second to have done so.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let time = SystemTime::now();

    let none = t.logs(&early.id, since(time)).await;
    let text = String::from_utf8_lossy(&none.data);
    for wanted in texts {
        assert!(
            !text.contains(wanted.as_str()),
            "{wanted:?} was written 2.2 s before `since`, yet read since then: {text:?}"
        );
    }
    assert_eq!(none.next, full.next, "the cursor is the end's");
    let all = t.logs(&early.id, since(before)).await;
    assert_eq!(all.data, full.data, "since before its creation: everything");

    let (late, _) = run(&mut events).await;
    let read = t.logs(&late.id, since(time)).await;
    let text = String::from_utf8_lossy(&read.data);
    for wanted in texts {
        assert!(
            text.contains(wanted.as_str()),
            "{wanted:?} was written after `since` but is missing: {text:?}"
        );
    }
    t.remove(&early.id).await;
    t.remove(&late.id).await;
}

/// A cursor read while a container runs returns, later, exactly what was written after it:
/// the log then is the log before plus that (whatever the container's stop writes, if anything).
pub async fn logs_cursor_returns_what_follows(t: &ConformanceTarget) {
    let mut events = t.runtime.subscribe();
    let spec = t.start_running(&mut events, &t.long_running).await;
    let before = t.logs(&spec.id, LogRequest::default()).await;
    t.runtime.stop(&t.node, &spec.id, STOP_GRACE).await.unwrap();
    t.wait_for(&mut events, &spec.id, "Exited", is_exited).await;
    let after = t
        .logs(
            &spec.id,
            LogRequest {
                from: Some(before.next),
                ..LogRequest::default()
            },
        )
        .await;
    let full = t.logs(&spec.id, LogRequest::default()).await;
    let mut joined = before.data.clone();
    joined.extend_from_slice(&after.data);
    assert_eq!(
        String::from_utf8_lossy(&full.data),
        String::from_utf8_lossy(&joined),
        "the log is what was read before the cursor plus what followed it"
    );
    assert_eq!(after.next, full.next);
    t.remove(&spec.id).await;
}

/// A container that exits on its own yields an `Exited` event with its exit code, and `status`
/// agrees. Skipped (passes) when the target has no [`ConformanceTarget::exits_with`].
pub async fn exit_reports_code(t: &ConformanceTarget) {
    let Some((config, code)) = &t.exits_with else {
        eprintln!("exit_reports_code skipped: the target has no self-exiting container");
        return;
    };
    let mut events = t.runtime.subscribe();
    let spec = t.start(config).await;
    let ev = t.wait_for(&mut events, &spec.id, "Exited", is_exited).await;
    assert_eq!(
        ev.state,
        ContainerState::Exited { code: *code },
        "exit code in the event"
    );
    assert_eq!(ev.instance_id, spec.instance_id);
    assert_eq!(
        t.state_of(&spec.id).await,
        ev.state,
        "status agrees with the event"
    );
    t.remove(&spec.id).await;
}

/// Expands to one `#[tokio::test]` per check of [`crate::conformance`], each running it against
/// the target the given expression evaluates to (a
/// [`ConformanceTarget`](crate::conformance::ConformanceTarget)).
///
/// ```ignore
/// container_runtime_interface::runtime_conformance!(my_target());
/// container_runtime_interface::runtime_conformance!(my_async_target().await);
/// ```
///
/// The expression is evaluated inside each test's async body. The caller needs the `conformance`
/// feature of this crate and tokio with the `macros` and `rt` features; the functions are named
/// after the checks, so invoke the macro at most once per module.
#[macro_export]
macro_rules! runtime_conformance {
    ($target:expr) => {
        $crate::runtime_conformance!(@checks $target;
            start_emits_running,
            list_reports_ownership,
            create_existing_id_fails,
            stop_exits_and_is_idempotent,
            stop_affects_only_that_container,
            remove_is_idempotent,
            remove_kills_running,
            id_reusable_after_remove,
            unknown_container,
            exit_reports_code,
            logs_hold_output,
            logs_cursor_returns_what_follows,
            logs_since_leaves_out_earlier_output,
        );
    };
    (@checks $target:expr; $($check:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $check() {
                let target: $crate::conformance::ConformanceTarget = $target;
                $crate::conformance::$check(&target).await;
            }
        )+
    };
}
