//! [`SimulatedRuntime`]: in-process containers with programmable failures, for tests and
//! benchmarks only. It is never a daemon default.
//!
//! A simulated container is a map entry that goes `Created` → `Running` after
//! [`SimulatedRuntimeConfig::start_delay`] and `Running` → `Exited` when stopped, removed or told
//! to exit ([`SimulatedRuntime::exit_container`]). Everything runs on tokio time, so tests with
//! `#[tokio::test(start_paused = true)]` and `tokio::time::advance` control it exactly.
//!
//! # Logs
//! Each container has an in-memory log of what its life did, so that log readers have real
//! lines: `started: image IMAGE, command COMMAND` on create, `received SIGTERM` on stop and
//! `exited with code N` when it exits, plus whatever a test writes with
//! [`SimulatedRuntime::write_output`]. Every write is dated (wall-clock time, for
//! [`LogRequest::since`]). A log keeps its last [`LOG_MAX_BYTES`] (older lines are dropped) and
//! outlives its container, as the OCI runtime's log files do: the logs of the last
//! [`REMOVED_LOGS_KEPT`] removed containers stay readable.
//!
//! # Readiness
//! A container whose spec has a `readiness_probe` runs not ready (`health: Some(Health { ready:
//! false, .. })` on its `Running` event and in listings) for
//! [`SimulatedRuntimeConfig::ready_after`], then becomes ready with a `Running` event of its
//! own; with no delay (the default) it is ready as soon as it runs. Images scripted with
//! [`SimulatedRuntime::never_ready`] never become ready, and
//! [`SimulatedRuntime::set_ready`] flips a container's readiness at any time. Nothing checks
//! anything: this is the twin of a node that runs probes, so rollouts can be driven without
//! youki. Containers without a readiness probe have no health, as on a real node.
//!
//! # Cost
//! One create is a few hash-map operations under a mutex. The delayed `Created` → `Running`
//! transitions are not one task per container: since every container waits the same delay,
//! their deadlines arrive in creation order, so a FIFO queue served by one timer task is enough
//! (100,000 containers on 5,000 nodes are created in a fraction of a second). Becoming ready
//! after `ready_after` works the same way, with a second queue served by the same task.

use crate::*;
use async_trait::async_trait;
use orchestrator_shared_types::{ContainerId, InstanceId, NodeId, WorkloadId};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};
use tokio::sync::{broadcast, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Exit code of a container stopped by [`ContainerRuntime::stop`]: 128 + SIGTERM, as a process
/// that honours SIGTERM reports it.
pub const STOPPED_EXIT_CODE: i32 = 143;

/// Most bytes kept of a simulated container's log; the oldest lines are dropped first.
pub const LOG_MAX_BYTES: usize = 64 * 1024;

/// How many removed containers' logs stay readable (the oldest are forgotten first).
pub const REMOVED_LOGS_KEPT: usize = 256;

/// Settings of the simulated runtime.
#[derive(Clone, Debug)]
pub struct SimulatedRuntimeConfig {
    /// How long a container stays `Created` before it is `Running` (tokio time). Zero makes
    /// `create_and_start` return with the container already `Running`.
    pub start_delay: Duration,
    /// Capacity of the event channel; subscribers that fall further behind get `Lagged` and must
    /// resync with `list`, as with any runtime.
    pub event_capacity: usize,
    /// How long a container with a readiness probe runs not ready before it is ready (tokio
    /// time; see the module docs). Zero (the default) makes it ready as soon as it runs.
    pub ready_after: Duration,
}

impl Default for SimulatedRuntimeConfig {
    fn default() -> Self {
        Self {
            start_delay: Duration::from_millis(10),
            event_capacity: 65_536,
            ready_after: Duration::ZERO,
        }
    }
}

/// In-process containers for tests and benchmarks, never the daemon's default.
///
/// Besides the [`ContainerRuntime`] trait it has knobs for scenarios: containers that exit
/// ([`exit_container`](Self::exit_container), [`exit_after_start`](Self::exit_after_start)),
/// partitioned nodes ([`set_node_reachable`](Self::set_node_reachable)) and failing starts
/// ([`fail_next_starts`](Self::fail_next_starts)).
///
/// While a node is unreachable its containers keep their state (a partitioned node keeps running
/// them) but their events are dropped, as a watcher on the other side of a partition would miss
/// them; subscribers see the changes through `list` once the node is back.
///
/// Delayed starts are served by one timer task, spawned on the tokio runtime of the first
/// `create_and_start` that needs it (and spawned again if that runtime has shut down).
pub struct SimulatedRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    config: SimulatedRuntimeConfig,
    state: Mutex<State>,
    events: broadcast::Sender<ContainerEvent>,
    /// Wakes the timer task when the pending queue stops being empty.
    wake: Notify,
}

#[derive(Default)]
struct State {
    nodes: HashMap<NodeId, HashMap<ContainerId, SimContainer>>,
    unreachable: HashSet<NodeId>,
    failures_left: usize,
    failure_message: String,
    /// Image → exit code for containers scripted to exit as soon as they run.
    exit_after_start: HashMap<String, i32>,
    /// Images whose containers never become ready (see [`SimulatedRuntime::never_ready`]).
    never_ready: HashSet<String>,
    /// Containers waiting to become `Running`, in deadline order (see the module docs).
    pending: VecDeque<PendingStart>,
    /// Running containers waiting to become ready, in deadline order (all wait
    /// [`SimulatedRuntimeConfig::ready_after`]).
    pending_ready: VecDeque<PendingStart>,
    /// Logs of removed containers, oldest first, at most [`REMOVED_LOGS_KEPT`].
    removed_logs: VecDeque<(NodeId, ContainerId, SimLog)>,
    /// Distinguishes a container from an earlier one with the same id, so that a pending start of
    /// a removed container never starts its re-created successor early.
    next_serial: u64,
    timer: Option<JoinHandle<()>>,
}

struct SimContainer {
    instance_id: InstanceId,
    workload_id: WorkloadId,
    state: ContainerState,
    serial: u64,
    exit_after_start: Option<i32>,
    log: SimLog,
    /// Its name, for health messages.
    name: String,
    /// Whether it has a readiness probe, and if it is scripted never to pass.
    readiness: Readiness,
    /// What its (simulated) probes say while it runs.
    health: Option<Health>,
}

/// The simulated readiness probe of a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Readiness {
    /// No readiness probe: no health.
    None,
    /// Ready [`SimulatedRuntimeConfig::ready_after`] after it runs.
    After,
    /// Never ready ([`SimulatedRuntime::never_ready`]).
    Never,
}

impl SimContainer {
    fn not_ready(&self) -> Health {
        Health {
            ready: false,
            message: Some(format!(
                "{}: waiting for the readiness probe (simulated)",
                self.name
            )),
        }
    }
}

const READY: Health = Health {
    ready: true,
    message: None,
};

/// A container's output: the last [`LOG_MAX_BYTES`] of it; cursors count every byte ever
/// written, so one that points before what is kept restarts at the oldest kept byte.
#[derive(Default)]
struct SimLog {
    data: Vec<u8>,
    /// Bytes dropped from the front: the cursor of `data[0]`.
    dropped: u64,
    /// The cursor of the first byte of each write and when it was written, oldest first (the
    /// first may start before `dropped`).
    writes: VecDeque<(u64, SystemTime)>,
}

impl SimLog {
    fn write(&mut self, bytes: &[u8]) {
        let end = self.dropped + self.data.len() as u64;
        self.writes.push_back((end, SystemTime::now()));
        self.data.extend_from_slice(bytes);
        if self.data.len() > LOG_MAX_BYTES {
            // Whole lines, when the excess ends inside one.
            let excess = self.data.len() - LOG_MAX_BYTES;
            let cut = self.data[excess..]
                .iter()
                .position(|b| *b == b'\n')
                .map_or(excess, |i| excess + i + 1);
            self.data.drain(..cut);
            self.dropped += cut as u64;
            while self.writes.get(1).is_some_and(|w| w.0 <= self.dropped) {
                self.writes.pop_front();
            }
        }
    }

    /// What `request` selects, `since` included.
    fn select(&self, request: &LogRequest) -> LogChunk {
        let end = self.dropped + self.data.len() as u64;
        let start = match (request.from, request.since) {
            (None, Some(since)) => self
                .writes
                .iter()
                .find(|(_, at)| *at >= since)
                .map_or(end, |(cursor, _)| (*cursor).max(self.dropped)),
            _ => self.dropped,
        };
        let skip = usize::try_from(start - self.dropped).unwrap_or(self.data.len());
        request.select(&self.data[skip..], start)
    }
}

struct PendingStart {
    due: Instant,
    node: NodeId,
    id: ContainerId,
    serial: u64,
}

impl State {
    fn check_reachable(&self, node: &NodeId, operation: &'static str) -> Result<(), RuntimeError> {
        if self.unreachable.contains(node) {
            return Err(RuntimeError::NodeUnreachable {
                node: node.clone(),
                operation,
            });
        }
        Ok(())
    }

    /// Sets a container's state and tells subscribers, unless its node is partitioned away.
    /// Called with the state lock held so that events leave in the order the states changed.
    fn transition(
        &mut self,
        events: &broadcast::Sender<ContainerEvent>,
        node: &NodeId,
        id: &ContainerId,
        state: ContainerState,
    ) {
        let quiet = self.unreachable.contains(node);
        let Some(c) = self.nodes.get_mut(node).and_then(|m| m.get_mut(id)) else {
            return;
        };
        if let ContainerState::Exited { code } = state {
            c.log.write(format!("exited with code {code}\n").as_bytes());
        }
        if state.has_exited() {
            // Nothing probes a container that does not run.
            c.health = None;
        }
        c.state = state.clone();
        if !quiet {
            // No subscriber is not an error: nobody listens in many tests.
            let _ = events.send(ContainerEvent {
                node_id: node.clone(),
                container_id: id.clone(),
                instance_id: c.instance_id.clone(),
                state,
                health: c.health.clone(),
            });
        }
    }

    /// `Created` → `Running` (then `Exited` for images scripted to exit), if the container is
    /// still there, still `Created` and, when `serial` is given, still the same container.
    fn promote(
        &mut self,
        events: &broadcast::Sender<ContainerEvent>,
        node: &NodeId,
        id: &ContainerId,
        serial: Option<u64>,
        ready_after: Duration,
    ) {
        let Some(c) = self.nodes.get_mut(node).and_then(|m| m.get_mut(id)) else {
            return;
        };
        if c.state != ContainerState::Created || serial.is_some_and(|s| s != c.serial) {
            return;
        }
        let exit = c.exit_after_start;
        let wait_ready = match c.readiness {
            Readiness::None => false,
            Readiness::Never => {
                c.health = Some(c.not_ready());
                false
            }
            Readiness::After if ready_after.is_zero() => {
                c.health = Some(READY);
                false
            }
            Readiness::After => {
                c.health = Some(c.not_ready());
                true
            }
        };
        if wait_ready {
            let serial = c.serial;
            self.pending_ready.push_back(PendingStart {
                due: Instant::now() + ready_after,
                node: node.clone(),
                id: id.clone(),
                serial,
            });
        }
        self.transition(events, node, id, ContainerState::Running);
        if let Some(code) = exit {
            self.transition(events, node, id, ContainerState::Exited { code });
        }
    }

    /// The earliest deadline of both queues.
    fn earliest(&self) -> Option<Instant> {
        let start = self.pending.front().map(|p| p.due);
        let ready = self.pending_ready.front().map(|p| p.due);
        start.into_iter().chain(ready).min()
    }

    /// Sets the health of a running container (the same one when `serial` is given) and
    /// sends a `Running` event when it changed.
    fn set_health(
        &mut self,
        events: &broadcast::Sender<ContainerEvent>,
        node: &NodeId,
        id: &ContainerId,
        serial: Option<u64>,
        health: Health,
    ) {
        let Some(c) = self.nodes.get_mut(node).and_then(|m| m.get_mut(id)) else {
            return;
        };
        if c.state != ContainerState::Running
            || serial.is_some_and(|s| s != c.serial)
            || c.health.as_ref() == Some(&health)
        {
            return;
        }
        c.health = Some(health);
        self.transition(events, node, id, ContainerState::Running);
    }

    fn info(&self, node: &NodeId, id: &ContainerId) -> Option<ContainerInfo> {
        let c = self.nodes.get(node)?.get(id)?;
        Some(container_info(node, id, c))
    }
}

fn container_info(node: &NodeId, id: &ContainerId, c: &SimContainer) -> ContainerInfo {
    ContainerInfo {
        id: id.clone(),
        node_id: node.clone(),
        instance_id: c.instance_id.clone(),
        workload_id: c.workload_id.clone(),
        state: c.state.clone(),
        health: c.health.clone(),
    }
}

fn not_found(node: &NodeId, id: &ContainerId) -> RuntimeError {
    RuntimeError::NotFound {
        node: node.clone(),
        id: id.clone(),
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state consistent before anything can panic, so a poisoned lock
        // still holds usable state; a panicking test thread must not cascade into others.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Promotes every pending container whose delay has passed, and makes ready those whose
    /// `ready_after` has.
    fn start_due(&self, now: Instant) {
        let mut st = self.lock();
        let ready_after = self.config.ready_after;
        while st.pending.front().is_some_and(|p| p.due <= now) {
            if let Some(p) = st.pending.pop_front() {
                st.promote(&self.events, &p.node, &p.id, Some(p.serial), ready_after);
            }
        }
        while st.pending_ready.front().is_some_and(|p| p.due <= now) {
            if let Some(p) = st.pending_ready.pop_front() {
                st.set_health(&self.events, &p.node, &p.id, Some(p.serial), READY);
            }
        }
    }
}

/// Serves the pending queue: sleeps until the oldest deadline, promotes what is due, repeats.
async fn run_timer(inner: Arc<Inner>) {
    loop {
        let next = inner.lock().earliest();
        match next {
            // A `notify_one` sent between the check and this await is kept as a permit.
            None => inner.wake.notified().await,
            Some(due) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => inner.start_due(Instant::now()),
                    // Something became due before `due` (the other queue): look again.
                    _ = inner.wake.notified() => {}
                }
            }
        }
    }
}

impl SimulatedRuntime {
    /// A runtime with these settings. Needs no tokio runtime until the first create.
    pub fn new(config: SimulatedRuntimeConfig) -> Self {
        let (events, _) = broadcast::channel(config.event_capacity.max(1));
        Self {
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(State::default()),
                events,
                wake: Notify::new(),
            }),
        }
    }

    /// Makes a `Running` (or still `Created`) container's process exit with `code` (a crash when
    /// non-zero) and sends the `Exited` event. A container that already exited is left as it is
    /// (`Ok`, no event). `NotFound` if there is no such container; works on unreachable nodes
    /// too (the process exits there, the event is lost).
    pub fn exit_container(
        &self,
        node: &NodeId,
        id: &ContainerId,
        code: i32,
    ) -> Result<(), RuntimeError> {
        let mut st = self.inner.lock();
        let c = st
            .nodes
            .get(node)
            .and_then(|m| m.get(id))
            .ok_or_else(|| not_found(node, id))?;
        if matches!(c.state, ContainerState::Created | ContainerState::Running) {
            st.transition(
                &self.inner.events,
                node,
                id,
                ContainerState::Exited { code },
            );
        }
        Ok(())
    }

    /// Appends `bytes` to a container's log, as if its process had written them. `NotFound` if
    /// there is no such container (removed ones included: their process is gone).
    pub fn write_output(
        &self,
        node: &NodeId,
        id: &ContainerId,
        bytes: &[u8],
    ) -> Result<(), RuntimeError> {
        let mut st = self.inner.lock();
        let c = st
            .nodes
            .get_mut(node)
            .and_then(|m| m.get_mut(id))
            .ok_or_else(|| not_found(node, id))?;
        c.log.write(bytes);
        Ok(())
    }

    /// Makes every call for `node` fail with `NodeUnreachable` (`reachable == false`) or succeed
    /// again. Its containers keep their state meanwhile.
    pub fn set_node_reachable(&self, node: &NodeId, reachable: bool) {
        let mut st = self.inner.lock();
        if reachable {
            st.unreachable.remove(node);
        } else {
            st.unreachable.insert(node.clone());
        }
    }

    /// Makes the next `count` creates on any node fail with `StartFailed` carrying `message`
    /// (replacing any budget left from an earlier call). A failed create leaves nothing behind.
    pub fn fail_next_starts(&self, count: usize, message: &str) {
        let mut st = self.inner.lock();
        st.failures_left = count;
        st.failure_message = message.to_owned();
    }

    /// Makes containers created from now on with image `image` exit with `code` as soon as they
    /// are `Running` (a `Running` then an `Exited` event): a crash loop when `code` is non-zero,
    /// a job when it is zero.
    pub fn exit_after_start(&self, image: &str, code: i32) {
        self.inner
            .lock()
            .exit_after_start
            .insert(image.to_owned(), code);
    }

    /// Makes containers created from now on with image `image` never become ready: their
    /// readiness probe (they need one to have health at all) never passes.
    pub fn never_ready(&self, image: &str) {
        self.inner.lock().never_ready.insert(image.to_owned());
    }

    /// Makes a running container with a readiness probe ready or not ready now, with a
    /// `Running` event when that changes its health (a readiness probe that starts or stops
    /// passing). `NotFound` if there is no such container; a container without a readiness
    /// probe, or not running, is left as it is. A container still waiting for its
    /// `ready_after` becomes ready when it passes, whatever this said.
    pub fn set_ready(
        &self,
        node: &NodeId,
        id: &ContainerId,
        ready: bool,
    ) -> Result<(), RuntimeError> {
        let mut st = self.inner.lock();
        let c = st
            .nodes
            .get(node)
            .and_then(|m| m.get(id))
            .ok_or_else(|| not_found(node, id))?;
        if c.readiness == Readiness::None {
            return Ok(());
        }
        let health = if ready { READY } else { c.not_ready() };
        st.set_health(&self.inner.events, node, id, None, health);
        Ok(())
    }

    /// Number of containers (any state) on every node.
    pub fn container_count(&self) -> usize {
        self.inner.lock().nodes.values().map(HashMap::len).sum()
    }

    /// Number of containers (any state) on `node`.
    pub fn containers_on(&self, node: &NodeId) -> usize {
        self.inner.lock().nodes.get(node).map_or(0, HashMap::len)
    }

    /// Number of `Running` containers on every node. Walks every container: meant for asserting,
    /// not for polling in a tight loop.
    pub fn running_count(&self) -> usize {
        self.inner
            .lock()
            .nodes
            .values()
            .flat_map(HashMap::values)
            .filter(|c| c.state == ContainerState::Running)
            .count()
    }

    /// Makes sure the timer task serves the pending queue. Called under the lock.
    fn ensure_timer(&self, st: &mut State) {
        if st.timer.as_ref().is_none_or(JoinHandle::is_finished) {
            st.timer = Some(tokio::spawn(run_timer(Arc::clone(&self.inner))));
        }
    }
}

impl Default for SimulatedRuntime {
    /// A runtime with [`SimulatedRuntimeConfig::default`].
    fn default() -> Self {
        Self::new(SimulatedRuntimeConfig::default())
    }
}

impl Drop for SimulatedRuntime {
    fn drop(&mut self) {
        // The timer task holds the state alive; stop it with its owner.
        if let Some(timer) = self.inner.lock().timer.take() {
            timer.abort();
        }
    }
}

impl fmt::Debug for SimulatedRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the containers themselves: a benchmark has 100,000 of them.
        f.debug_struct("SimulatedRuntime")
            .field("config", &self.inner.config)
            .field("containers", &self.container_count())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl ContainerRuntime for SimulatedRuntime {
    async fn create_and_start(
        &self,
        node: &NodeId,
        spec: &ContainerSpec,
    ) -> Result<(), RuntimeError> {
        let mut st = self.inner.lock();
        st.check_reachable(node, "create_and_start")?;
        if st.nodes.get(node).is_some_and(|m| m.contains_key(&spec.id)) {
            return Err(RuntimeError::AlreadyExists {
                node: node.clone(),
                id: spec.id.clone(),
            });
        }
        if st.failures_left > 0 {
            st.failures_left -= 1;
            return Err(RuntimeError::StartFailed {
                node: node.clone(),
                id: spec.id.clone(),
                message: st.failure_message.clone(),
                source: None,
            });
        }
        let serial = st.next_serial;
        st.next_serial += 1;
        let exit_after_start = st.exit_after_start.get(&spec.config.image).copied();
        let readiness = match &spec.config.readiness_probe {
            None => Readiness::None,
            Some(_) if st.never_ready.contains(&spec.config.image) => Readiness::Never,
            Some(_) => Readiness::After,
        };
        let mut log = SimLog::default();
        log.write(start_line(&spec.config).as_bytes());
        let container = SimContainer {
            instance_id: spec.instance_id.clone(),
            workload_id: spec.workload_id.clone(),
            state: ContainerState::Created,
            serial,
            exit_after_start,
            log,
            name: spec.config.name.clone(),
            readiness,
            health: None,
        };
        // `entry` would clone the node id on every create; most creates land on a known node.
        match st.nodes.get_mut(node) {
            Some(m) => {
                m.insert(spec.id.clone(), container);
            }
            None => {
                st.nodes
                    .insert(node.clone(), HashMap::from([(spec.id.clone(), container)]));
            }
        }
        let delay = self.inner.config.start_delay;
        let before = st.earliest();
        if delay.is_zero() {
            let ready_after = self.inner.config.ready_after;
            st.promote(&self.inner.events, node, &spec.id, None, ready_after);
        } else {
            // `now` is read under the lock so that the queue stays sorted by deadline.
            st.pending.push_back(PendingStart {
                due: Instant::now() + delay,
                node: node.clone(),
                id: spec.id.clone(),
                serial,
            });
        }
        // The timer task sleeps until the earliest deadline it knew: wake it only when this
        // create brought an earlier one (not at every create of a burst).
        let after = st.earliest();
        if let Some(after) = after {
            self.ensure_timer(&mut st);
            if before.is_none_or(|b| after < b) {
                self.inner.wake.notify_one();
            }
        }
        Ok(())
    }

    async fn stop(
        &self,
        node: &NodeId,
        id: &ContainerId,
        _grace: Duration,
    ) -> Result<(), RuntimeError> {
        // A simulated process honours SIGTERM at once, so the grace period never runs out.
        let mut st = self.inner.lock();
        st.check_reachable(node, "stop")?;
        let c = st
            .nodes
            .get(node)
            .and_then(|m| m.get(id))
            .ok_or_else(|| not_found(node, id))?;
        if matches!(c.state, ContainerState::Created | ContainerState::Running) {
            if let Some(c) = st.nodes.get_mut(node).and_then(|m| m.get_mut(id)) {
                c.log.write(b"received SIGTERM\n");
            }
            let state = ContainerState::Exited {
                code: STOPPED_EXIT_CODE,
            };
            st.transition(&self.inner.events, node, id, state);
        }
        Ok(())
    }

    async fn remove(&self, node: &NodeId, id: &ContainerId) -> Result<(), RuntimeError> {
        let mut st = self.inner.lock();
        st.check_reachable(node, "remove")?;
        // Killing and removing are one step here: nothing can observe the container in between.
        let Some(m) = st.nodes.get_mut(node) else {
            return Ok(());
        };
        let removed = m.remove(id);
        if m.is_empty() {
            st.nodes.remove(node);
        }
        if let Some(c) = removed {
            if st.removed_logs.len() == REMOVED_LOGS_KEPT {
                st.removed_logs.pop_front();
            }
            st.removed_logs.push_back((node.clone(), id.clone(), c.log));
        }
        Ok(())
    }

    async fn status(&self, node: &NodeId, id: &ContainerId) -> Result<ContainerInfo, RuntimeError> {
        let st = self.inner.lock();
        st.check_reachable(node, "status")?;
        st.info(node, id).ok_or_else(|| not_found(node, id))
    }

    async fn list(&self, node: &NodeId) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let st = self.inner.lock();
        st.check_reachable(node, "list")?;
        Ok(st.nodes.get(node).map_or_else(Vec::new, |m| {
            m.iter()
                .map(|(id, c)| container_info(node, id, c))
                .collect()
        }))
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
        let st = self.inner.lock();
        st.check_reachable(node, "logs")?;
        let log = match st.nodes.get(node).and_then(|m| m.get(id)) {
            Some(c) => &c.log,
            None => st
                .removed_logs
                .iter()
                .rev()
                .find(|(n, i, _)| n == node && i == id)
                .map(|(_, _, log)| log)
                .ok_or_else(|| not_found(node, id))?,
        };
        Ok(log.select(&request))
    }
}

/// The first line of a simulated container's log.
fn start_line(config: &orchestrator_shared_types::ContainerConfig) -> String {
    let command: Vec<&str> = config
        .command
        .iter()
        .chain(&config.args)
        .map(String::as_str)
        .collect();
    if command.is_empty() {
        format!("started: image {}, its default command\n", config.image)
    } else {
        format!(
            "started: image {}, command {}\n",
            config.image,
            command.join(" ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::ConformanceTarget;
    use orchestrator_shared_types::ContainerConfig;

    fn target(start_delay: Duration) -> ConformanceTarget {
        let rt = Arc::new(SimulatedRuntime::new(SimulatedRuntimeConfig {
            start_delay,
            ..SimulatedRuntimeConfig::default()
        }));
        rt.exit_after_start("exits-3", 3);
        rt.exit_after_start("talks", 0);
        let mut talker = ContainerConfig::new("talker", "talks");
        talker.command = vec!["echo".into(), "hello".into()];
        ConformanceTarget::new(
            rt,
            NodeId::from("node-1"),
            ContainerConfig::new("app", "sleeps"),
        )
        .with_exit(ContainerConfig::new("job", "exits-3"), 3)
        .with_output(
            talker,
            &[
                "started: image talks, command echo hello",
                "exited with code 0",
            ],
        )
    }

    /// The suite against a delayed start (the usual case) ...
    mod delayed {
        crate::runtime_conformance!(super::target(std::time::Duration::from_millis(5)));
    }

    /// ... and against an immediate one, where the `Running` event is sent before
    /// `create_and_start` returns: subscribers must still see it.
    mod immediate {
        crate::runtime_conformance!(super::target(std::time::Duration::ZERO));
    }

    fn spec(id: &str) -> ContainerSpec {
        ContainerSpec {
            id: ContainerId::from(id),
            instance_id: InstanceId::from("inst-1"),
            workload_id: WorkloadId::from("wl-1"),
            config: ContainerConfig::new("app", "img"),
        }
    }

    /// A re-created container must wait its own delay, not inherit the pending start of the
    /// removed container that had the same id.
    #[tokio::test(start_paused = true)]
    async fn recreated_container_waits_its_own_delay() {
        let rt = SimulatedRuntime::new(SimulatedRuntimeConfig {
            start_delay: Duration::from_millis(100),
            ..SimulatedRuntimeConfig::default()
        });
        let node = NodeId::from("n");
        let s = spec("c");
        rt.create_and_start(&node, &s).await.unwrap();
        // Sleeping under paused time lets every task due before the wake-up run first.
        tokio::time::sleep(Duration::from_millis(60)).await;
        rt.remove(&node, &s.id).await.unwrap();
        rt.create_and_start(&node, &s).await.unwrap();
        // The old deadline (t = 100 ms) passes, the new one (t = 160 ms) has not.
        tokio::time::sleep(Duration::from_millis(90)).await;
        assert_eq!(
            rt.status(&node, &s.id).await.unwrap().state,
            ContainerState::Created
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            rt.status(&node, &s.id).await.unwrap().state,
            ContainerState::Running
        );
    }

    fn with_readiness(id: &str, image: &str) -> ContainerSpec {
        let mut s = spec(id);
        s.config.image = image.into();
        s.config.readiness_probe = Some(orchestrator_shared_types::Probe::http("/", 80));
        s
    }

    async fn next_event(rx: &mut broadcast::Receiver<ContainerEvent>) -> ContainerEvent {
        tokio::time::timeout(Duration::from_secs(3600), rx.recv())
            .await
            .expect("no event")
            .expect("channel closed")
    }

    /// Containers with a readiness probe run not ready for `ready_after`, then become ready
    /// with an event; scripted ones never do; others have no health; `set_ready` flips it.
    #[tokio::test(start_paused = true)]
    async fn readiness_follows_ready_after() {
        let rt = SimulatedRuntime::new(SimulatedRuntimeConfig {
            start_delay: Duration::from_millis(10),
            ready_after: Duration::from_secs(5),
            ..SimulatedRuntimeConfig::default()
        });
        rt.never_ready("stuck");
        let node = NodeId::from("n");
        let mut rx = rt.subscribe();
        let (web, stuck, plain) = (
            with_readiness("web", "img"),
            with_readiness("stuck", "stuck"),
            spec("plain"),
        );
        for s in [&web, &stuck, &plain] {
            rt.create_and_start(&node, s).await.unwrap();
        }
        let mut running = HashMap::new();
        for _ in 0..3 {
            let e = next_event(&mut rx).await;
            assert_eq!(e.state, ContainerState::Running);
            running.insert(e.container_id.to_string(), e.health);
        }
        let not_ready = Some(Health {
            ready: false,
            message: Some("app: waiting for the readiness probe (simulated)".into()),
        });
        assert_eq!(running["web"], not_ready);
        assert_eq!(running["stuck"], not_ready);
        assert_eq!(running["plain"], None);
        let status = rt.status(&node, &web.id).await.unwrap();
        assert_eq!(status.health, not_ready);

        // After 5 s: one event, for `web` alone.
        let e = next_event(&mut rx).await;
        assert_eq!((e.container_id.as_str(), e.health), ("web", Some(READY)));
        let listed: HashMap<String, Option<Health>> = rt
            .list(&node)
            .await
            .unwrap()
            .into_iter()
            .map(|c| (c.id.to_string(), c.health))
            .collect();
        assert_eq!(listed["web"], Some(READY));
        assert_eq!(listed["stuck"], not_ready);
        assert_eq!(listed["plain"], None);

        // Flipping: an event per change, none when nothing changes.
        rt.set_ready(&node, &web.id, false).unwrap();
        rt.set_ready(&node, &web.id, false).unwrap();
        rt.set_ready(&node, &web.id, true).unwrap();
        assert_eq!(next_event(&mut rx).await.health, not_ready);
        assert_eq!(next_event(&mut rx).await.health, Some(READY));
        // An exit carries no health.
        rt.stop(&node, &web.id, Duration::ZERO).await.unwrap();
        let e = next_event(&mut rx).await;
        assert!(e.state.has_exited() && e.health.is_none(), "{e:?}");
        assert!(rx.try_recv().is_err(), "no other event");
    }

    /// With no `ready_after` (the default), a container is ready as soon as it runs; a slow
    /// `ready_after` does not hold up the starts queued behind it.
    #[tokio::test(start_paused = true)]
    async fn ready_at_once_by_default_and_starts_are_not_held_up() {
        let rt = SimulatedRuntime::new(SimulatedRuntimeConfig {
            start_delay: Duration::ZERO,
            ..SimulatedRuntimeConfig::default()
        });
        let node = NodeId::from("n");
        rt.create_and_start(&node, &with_readiness("web", "img"))
            .await
            .unwrap();
        assert_eq!(
            rt.status(&node, &ContainerId::from("web"))
                .await
                .unwrap()
                .health,
            Some(READY)
        );

        let rt = SimulatedRuntime::new(SimulatedRuntimeConfig {
            start_delay: Duration::from_millis(10),
            ready_after: Duration::from_secs(60),
            ..SimulatedRuntimeConfig::default()
        });
        rt.create_and_start(&node, &with_readiness("a", "img"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        // The timer now sleeps until `a` is ready (60 s); `b` must still start after 10 ms.
        rt.create_and_start(&node, &spec("b")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            rt.status(&node, &ContainerId::from("b"))
                .await
                .unwrap()
                .state,
            ContainerState::Running
        );
    }

    /// A container stopped while still `Created` must not come back to life when its delay
    /// passes.
    #[tokio::test(start_paused = true)]
    async fn stopped_before_running_stays_exited() {
        let rt = SimulatedRuntime::new(SimulatedRuntimeConfig {
            start_delay: Duration::from_millis(100),
            ..SimulatedRuntimeConfig::default()
        });
        let node = NodeId::from("n");
        let s = spec("c");
        rt.create_and_start(&node, &s).await.unwrap();
        rt.stop(&node, &s.id, Duration::ZERO).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            rt.status(&node, &s.id).await.unwrap().state,
            ContainerState::Exited {
                code: STOPPED_EXIT_CODE
            }
        );
    }

    fn text(chunk: &LogChunk) -> String {
        String::from_utf8_lossy(&chunk.data).into_owned()
    }

    /// The log tells the container's life, outlives its removal, and a test can write to it.
    #[tokio::test]
    async fn logs_tell_the_lifecycle() {
        let rt = SimulatedRuntime::new(SimulatedRuntimeConfig {
            start_delay: Duration::ZERO,
            ..SimulatedRuntimeConfig::default()
        });
        let node = NodeId::from("n");
        let mut s = spec("c");
        s.config.command = vec!["sleep".into()];
        s.config.args = vec!["60".into()];
        rt.create_and_start(&node, &s).await.unwrap();
        rt.write_output(&node, &s.id, b"hello\n").unwrap();
        rt.stop(&node, &s.id, Duration::ZERO).await.unwrap();
        let all = rt.logs(&node, &s.id, LogRequest::default()).await.unwrap();
        assert_eq!(
            text(&all),
            "started: image img, command sleep 60\nhello\nreceived SIGTERM\nexited with code 143\n"
        );
        rt.remove(&node, &s.id).await.unwrap();
        let kept = rt.logs(&node, &s.id, LogRequest::default()).await.unwrap();
        assert_eq!(kept, all, "kept after remove");
        assert!(matches!(
            rt.write_output(&node, &s.id, b"x"),
            Err(RuntimeError::NotFound { .. })
        ));
        assert!(matches!(
            rt.logs(&NodeId::from("other"), &s.id, LogRequest::default())
                .await,
            Err(RuntimeError::NotFound { .. })
        ));
    }

    /// A log keeps its newest lines; a cursor into what was dropped restarts at the oldest kept.
    #[tokio::test]
    async fn logs_are_capped() {
        let rt = SimulatedRuntime::default();
        let node = NodeId::from("n");
        let s = spec("c");
        rt.create_and_start(&node, &s).await.unwrap();
        let line = format!("{}\n", "x".repeat(99));
        for _ in 0..(2 * LOG_MAX_BYTES / line.len()) {
            rt.write_output(&node, &s.id, line.as_bytes()).unwrap();
        }
        rt.write_output(&node, &s.id, b"last\n").unwrap();
        let all = rt.logs(&node, &s.id, LogRequest::default()).await.unwrap();
        assert!(all.data.len() <= LOG_MAX_BYTES, "{}", all.data.len());
        assert!(text(&all).starts_with('x') && text(&all).ends_with("x\nlast\n"));
        let from_start = LogRequest {
            from: Some(0),
            ..LogRequest::default()
        };
        assert_eq!(rt.logs(&node, &s.id, from_start).await.unwrap(), all);
    }

    /// `since` leaves out what was written before it, with `tail` and `limit_bytes` on top; a
    /// cursor wins over it.
    #[tokio::test]
    async fn logs_since_a_time() {
        let rt = SimulatedRuntime::default();
        let node = NodeId::from("n");
        let s = spec("c");
        rt.create_and_start(&node, &s).await.unwrap();
        rt.write_output(&node, &s.id, b"old\n").unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let t = SystemTime::now();
        std::thread::sleep(Duration::from_millis(5));
        rt.write_output(&node, &s.id, b"new\nnewer\n").unwrap();
        let since = |since, tail, from| LogRequest {
            since: Some(since),
            tail,
            from,
            ..LogRequest::default()
        };
        let all = rt.logs(&node, &s.id, LogRequest::default()).await.unwrap();
        let read = |r| rt.logs(&node, &s.id, r);
        let got = read(since(t, None, None)).await.unwrap();
        assert_eq!((text(&got).as_str(), got.next), ("new\nnewer\n", all.next));
        let got = read(since(t, Some(1), None)).await.unwrap();
        assert_eq!(text(&got), "newer\n");
        let later = SystemTime::now() + Duration::from_secs(1);
        let got = read(since(later, None, None)).await.unwrap();
        assert_eq!((text(&got).as_str(), got.next), ("", all.next));
        let got = read(since(SystemTime::UNIX_EPOCH, None, None))
            .await
            .unwrap();
        assert_eq!(got, all);
        let got = read(since(later, None, Some(0))).await.unwrap();
        assert_eq!(got, all, "a cursor wins over `since`");
    }

    /// Dropping the runtime stops its timer task instead of leaking it with the state.
    #[tokio::test]
    async fn drop_stops_the_timer() {
        let rt = SimulatedRuntime::default();
        rt.create_and_start(&NodeId::from("n"), &spec("c"))
            .await
            .unwrap();
        let weak = Arc::downgrade(&rt.inner);
        drop(rt);
        tokio::time::timeout(Duration::from_secs(5), async {
            while weak.strong_count() > 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the timer task kept the state alive");
    }

    /// How callers force runtime errors without a simulated runtime: the mockall twin. Here a
    /// retry helper must retry a transient error and give up on a permanent one.
    #[tokio::test]
    async fn mock_forces_errors() {
        async fn start_with_retry(
            rt: &dyn ContainerRuntime,
            node: &NodeId,
            spec: &ContainerSpec,
        ) -> Result<u32, RuntimeError> {
            let mut attempts = 0;
            loop {
                attempts += 1;
                match rt.create_and_start(node, spec).await {
                    Ok(()) => return Ok(attempts),
                    Err(e) if e.is_transient() && attempts < 3 => continue,
                    Err(e) => return Err(e),
                }
            }
        }

        let mut mock = MockContainerRuntime::new();
        let mut calls = 0;
        mock.expect_create_and_start()
            .times(2)
            .returning(move |node, _| {
                calls += 1;
                if calls == 1 {
                    Err(RuntimeError::NodeUnreachable {
                        node: node.clone(),
                        operation: "create_and_start",
                    })
                } else {
                    Ok(())
                }
            });
        assert_eq!(
            start_with_retry(&mock, &NodeId::from("n"), &spec("c"))
                .await
                .unwrap(),
            2
        );

        let mut mock = MockContainerRuntime::new();
        mock.expect_create_and_start()
            .times(1)
            .returning(|node, spec| {
                Err(RuntimeError::StartFailed {
                    node: node.clone(),
                    id: spec.id.clone(),
                    message: "image not found".into(),
                    source: None,
                })
            });
        let err = start_with_retry(&mock, &NodeId::from("n"), &spec("c"))
            .await
            .unwrap_err();
        assert!(matches!(err, RuntimeError::StartFailed { .. }), "{err}");
    }
}
