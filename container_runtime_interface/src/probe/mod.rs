//! [`ProbingRuntime`]: a [`ContainerRuntime`] that wraps another one and runs the health
//! checks (liveness, readiness and startup probes, see `orchestrator_shared_types::health`) of
//! the containers it starts, on the node that runs them.
//!
//! # Shape
//! Pure logic under a thin I/O loop:
//! * `machine.rs` — [`ContainerProbes`], the probes of one container as a state machine
//!   (thresholds, schedule, the container's [`Health`], kill decisions), no I/O;
//! * `check.rs` — [`Check`]s: an HTTP GET or a TCP connect to `127.0.0.1` (the host port the
//!   probe's container port maps to), or a command run through the inner runtime's `exec`,
//!   each cut at the probe's timeout;
//! * this file — the registry of probed containers, one timer task that starts the due checks
//!   (one short task per check, at most [`ProbingConfig::max_concurrent`] at once), and one
//!   task that forwards the inner runtime's events with the health attached.
//!
//! # What callers see
//! * Events and listings of a probed container carry `health: Some(..)`; a change of health
//!   alone is a `Running` event. A container nothing probes keeps the inner runtime's health.
//! * A container whose liveness or startup probe failed too often is stopped (`inner.stop`
//!   with [`ProbingConfig::kill_grace`]); its exit is reported as [`ContainerState::Killed`]
//!   with the probe's reason, so the core treats it as a crash (restart policy, backoff).
//!
//! # Restarts
//! Each registration (node and spec) is written to `state_dir/<container-id>.json` (removed by
//! `remove`). A new process loads them, and probes a container again as soon as `list` or
//! `status` shows it running: containers adopted after a daemon restart are probed too (their
//! readiness starts over, as a restarted kubelet's does).
//!
//! # Cost
//! Nothing is polled: the timer task sleeps until the earliest due check (a `BTreeMap` of due
//! times), and every check is one connect (or one `exec`). The checks of containers started
//! together are spread over half a period (see `machine.rs`).
//!
//! Probes connect to `127.0.0.1`: wrap only the runtime of the containers of this machine.

mod check;
mod machine;

pub use check::{host_port, Check, Checker, MAX_MESSAGE_CHARS};
pub use machine::{CheckOutcome, ContainerProbes, Decision};

use crate::{
    ContainerEvent, ContainerInfo, ContainerRuntime, ContainerSpec, ContainerState, ExecOutput,
    Health, LogChunk, LogRequest, RuntimeError,
};
use async_trait::async_trait;
use orchestrator_shared_types::{ContainerId, NodeId, ProbeKind};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::{broadcast, Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Settings of a [`ProbingRuntime`].
#[derive(Clone, Debug)]
pub struct ProbingConfig {
    /// Where registrations are kept across restarts (see the module docs); `None` keeps them
    /// in memory only.
    pub state_dir: Option<PathBuf>,
    /// Most checks running at once (default 32).
    pub max_concurrent: usize,
    /// The grace period of the stop that kills a container whose liveness or startup probe
    /// failed (default 10 s).
    pub kill_grace: Duration,
    /// Capacity of the event channel (default 4096); subscribers that fall further behind get
    /// `Lagged` and must resync with `list`.
    pub event_capacity: usize,
}

impl Default for ProbingConfig {
    fn default() -> Self {
        Self {
            state_dir: None,
            max_concurrent: 32,
            kill_grace: Duration::from_secs(10),
            event_capacity: 4096,
        }
    }
}

/// A [`ContainerRuntime`] that runs the probes of the containers it starts. See the
/// [module docs](self).
pub struct ProbingRuntime {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ProbingRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbingRuntime")
            .field("config", &self.shared.config)
            .field("probed", &self.shared.lock().entries.len())
            .finish_non_exhaustive()
    }
}

struct Shared {
    inner: Arc<dyn ContainerRuntime>,
    config: ProbingConfig,
    checker: Checker,
    events: broadcast::Sender<ContainerEvent>,
    state: Mutex<State>,
    /// Wakes the timer task when a check became due earlier than it sleeps for.
    wake: Notify,
    permits: Semaphore,
    tasks: TaskTracker,
    cancel: CancellationToken,
}

#[derive(Default)]
struct State {
    entries: HashMap<ContainerId, Entry>,
    /// Due time and generation of each entry with a check to come, to its id.
    timers: BTreeMap<(Instant, u64), ContainerId>,
    /// Registrations an earlier process persisted, not picked up yet.
    orphans: HashMap<ContainerId, Registration>,
    next_generation: u64,
}

/// A probed container.
struct Entry {
    node: NodeId,
    spec: ContainerSpec,
    /// Tells this registration from an earlier one of the same id (late check results).
    generation: u64,
    probes: ContainerProbes,
    /// Seen running and not exited since: health changes are sent as `Running` events, and
    /// checks run only then.
    running: bool,
    /// Its key in [`State::timers`].
    timer: Option<Instant>,
}

/// What is persisted of a registration.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Registration {
    node: NodeId,
    spec: ContainerSpec,
}

/// One check to run.
struct Job {
    id: ContainerId,
    generation: u64,
    node: NodeId,
    kind: ProbeKind,
    check: Check,
    timeout: Duration,
}

/// A value in `[0, 1)` from a container id: where in the period its checks fall.
fn phase_of(id: &ContainerId) -> f64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    (h.finish() % 10_000) as f64 / 10_000.0
}

impl State {
    /// Puts `id`'s next check in the timer map; whether it is now the earliest.
    fn reschedule(&mut self, id: &ContainerId) -> bool {
        let Some(e) = self.entries.get_mut(id) else {
            return false;
        };
        if let Some(old) = e.timer.take() {
            self.timers.remove(&(old, e.generation));
        }
        let next = e.probes.next_due().filter(|_| e.running);
        let Some(due) = next else {
            return false;
        };
        e.timer = Some(due);
        self.timers.insert((due, e.generation), id.clone());
        self.timers
            .first_key_value()
            .is_some_and(|(k, _)| k.0 == due)
    }

    /// Registers `spec` on `node`: whether it has probes (nothing happens otherwise), and the
    /// entry it replaced, if any.
    fn register(&mut self, node: &NodeId, spec: &ContainerSpec) -> (bool, Option<Entry>) {
        let Some(probes) = ContainerProbes::new(&spec.config, phase_of(&spec.id), Instant::now())
        else {
            return (false, None);
        };
        self.orphans.remove(&spec.id);
        let previous = self.unregister(&spec.id);
        self.next_generation += 1;
        self.entries.insert(
            spec.id.clone(),
            Entry {
                node: node.clone(),
                spec: spec.clone(),
                generation: self.next_generation,
                probes,
                running: false,
                timer: None,
            },
        );
        (true, previous)
    }

    fn unregister(&mut self, id: &ContainerId) -> Option<Entry> {
        let e = self.entries.remove(id)?;
        if let Some(due) = e.timer {
            self.timers.remove(&(due, e.generation));
        }
        Some(e)
    }

    /// Puts an entry taken out by [`register`](Self::register) back.
    fn restore(&mut self, entry: Entry) {
        let id = entry.spec.id.clone();
        self.unregister(&id);
        self.entries.insert(id.clone(), entry);
        self.reschedule(&id);
    }

    /// The container runs (an event or a listing said so): its probes start. Whether its
    /// next check is now the earliest.
    fn mark_running(&mut self, id: &ContainerId) -> bool {
        let Some(e) = self.entries.get_mut(id) else {
            return false;
        };
        e.running = true;
        e.probes.start(Instant::now());
        self.reschedule(id)
    }

    /// The container's process ended: no more checks or health events.
    fn mark_exited(&mut self, id: &ContainerId) {
        if let Some(e) = self.entries.get_mut(id) {
            e.running = false;
        }
        self.reschedule(id);
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state consistent before anything can panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn send(&self, event: ContainerEvent) {
        // No subscriber is not an error.
        let _ = self.events.send(event);
    }

    /// An event of the inner runtime, as subscribers see it. Sent under the state lock, as
    /// health events are, so that a health event never follows the exit of its container.
    fn forward(&self, mut event: ContainerEvent) {
        let mut st = self.lock();
        let wake = match st
            .entries
            .get(&event.container_id)
            .filter(|e| e.node == event.node_id)
        {
            None => false,
            Some(_) => match &event.state {
                ContainerState::Running => {
                    let wake = st.mark_running(&event.container_id);
                    event.health = st
                        .entries
                        .get(&event.container_id)
                        .map(|e| e.probes.health());
                    wake
                }
                ContainerState::Created => {
                    event.health = st
                        .entries
                        .get(&event.container_id)
                        .map(|e| e.probes.health());
                    false
                }
                _ => {
                    st.mark_exited(&event.container_id);
                    if let Some(reason) = st
                        .entries
                        .get(&event.container_id)
                        .and_then(|e| e.probes.killed())
                    {
                        event.state = killed_state(event.state, reason);
                    }
                    event.health = None;
                    false
                }
            },
        };
        self.send(event);
        drop(st);
        if wake {
            self.wake.notify_one();
        }
    }

    /// `info` with the health of its probes attached (and the reason of a probe's kill): what
    /// `status` and `list` answer. A running container registered by an earlier process is
    /// picked up here.
    fn annotate(&self, mut info: ContainerInfo) -> ContainerInfo {
        let mut st = self.lock();
        let running = info.state == ContainerState::Running;
        if running && !st.entries.contains_key(&info.id) {
            if let Some(reg) = st
                .orphans
                .get(&info.id)
                .filter(|r| r.node == info.node_id)
                .cloned()
            {
                tracing::info!(container = %info.id, "probing a container registered by an earlier process");
                st.register(&reg.node, &reg.spec);
            }
        }
        let mut wake = false;
        if let Some(e) = st.entries.get(&info.id).filter(|e| e.node == info.node_id) {
            let killed = e.probes.killed().map(str::to_owned);
            let was_running = e.running;
            match &info.state {
                ContainerState::Running => {
                    if !was_running {
                        wake = st.mark_running(&info.id);
                    }
                }
                ContainerState::Created => {}
                _ => {
                    if was_running {
                        st.mark_exited(&info.id);
                    }
                    if let Some(reason) = killed {
                        info.state = killed_state(info.state, &reason);
                    }
                }
            }
            if matches!(
                info.state,
                ContainerState::Running | ContainerState::Created
            ) {
                info.health = st.entries.get(&info.id).map(|e| e.probes.health());
            }
        }
        drop(st);
        if wake {
            self.wake.notify_one();
        }
        info
    }

    /// Takes the checks due at `now` off the timer map.
    fn take_due(&self, now: Instant) -> Vec<Job> {
        let mut st = self.lock();
        let mut jobs = Vec::new();
        while let Some(((due, generation), _)) = st.timers.first_key_value() {
            if *due > now {
                break;
            }
            let key = (*due, *generation);
            let Some(id) = st.timers.remove(&key) else {
                break;
            };
            let Some(e) = st.entries.get_mut(&id).filter(|e| e.generation == key.1) else {
                continue;
            };
            e.timer = None;
            if e.running {
                for kind in e.probes.take_due(now) {
                    let Some(probe) = e.probes.probe(kind) else {
                        continue;
                    };
                    jobs.push(Job {
                        id: id.clone(),
                        generation: e.generation,
                        node: e.node.clone(),
                        kind,
                        check: Check::resolve(probe, &e.spec.config),
                        timeout: Duration::from_secs(u64::from(probe.timeout_seconds.max(1))),
                    });
                }
            }
            st.reschedule(&id);
        }
        jobs
    }

    /// Records the outcome of `job`: a health event when the health changed, a kill when a
    /// liveness or startup probe failed too often.
    fn record(self: &Arc<Self>, job: &Job, outcome: CheckOutcome) {
        let mut st = self.lock();
        let Some(e) = st
            .entries
            .get_mut(&job.id)
            .filter(|e| e.generation == job.generation)
        else {
            return;
        };
        let before = e.probes.health();
        let decision = e.probes.record(job.kind, outcome);
        let after = e.probes.health();
        if before != after && e.running {
            self.send(ContainerEvent {
                node_id: e.node.clone(),
                container_id: job.id.clone(),
                instance_id: e.spec.instance_id.clone(),
                state: ContainerState::Running,
                health: Some(after),
            });
        }
        let wake = st.reschedule(&job.id);
        drop(st);
        if wake {
            self.wake.notify_one();
        }
        if let Decision::Kill(reason) = decision {
            tracing::info!(container = %job.id, node = %job.node, %reason, "killing a container whose probe failed");
            let shared = Arc::clone(self);
            let (node, id) = (job.node.clone(), job.id.clone());
            self.tasks.spawn(async move {
                let stop = shared.inner.stop(&node, &id, shared.config.kill_grace);
                tokio::select! {
                    _ = shared.cancel.cancelled() => {}
                    result = stop => {
                        if let Err(e) = result {
                            tracing::warn!(container = %id, error = %e, "cannot kill a container whose probe failed");
                        }
                    }
                }
            });
        }
    }

    fn state_file(&self, id: &ContainerId) -> Option<PathBuf> {
        let dir = self.config.state_dir.as_ref()?;
        // Ids become file names: only those that are safe as one are persisted.
        let safe = !id.as_str().is_empty()
            && id.as_str().len() <= 200
            && !id.as_str().starts_with('.')
            && id
                .as_str()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        safe.then(|| dir.join(format!("{id}.json")))
    }

    /// Writes the registration of `spec` (a temporary file renamed, so a crash leaves the old
    /// file or the new one).
    async fn persist(&self, node: &NodeId, spec: &ContainerSpec) -> Result<(), RuntimeError> {
        let Some(path) = self.state_file(&spec.id) else {
            return Ok(());
        };
        let json = serde_json::to_vec(&Registration {
            node: node.clone(),
            spec: spec.clone(),
        })
        .map_err(|e| RuntimeError::Failed {
            operation: "create_and_start",
            message: format!("cannot encode the probes of {}: {e}", spec.id),
            transient: false,
        })?;
        let tmp = path.with_extension("json.tmp");
        let io = |what: &str, e| {
            RuntimeError::io("create_and_start", format!("{what} {}", path.display()), e)
        };
        tokio::fs::write(&tmp, json)
            .await
            .map_err(|e| io("cannot write", e))?;
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(|e| io("cannot rename into", e))
    }

    async fn forget(&self, id: &ContainerId) {
        let Some(path) = self.state_file(id) else {
            return;
        };
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot remove a probe registration")
            }
        }
    }
}

/// The exit of a container a probe killed: `Killed` with the probe's reason.
fn killed_state(state: ContainerState, reason: &str) -> ContainerState {
    match state {
        ContainerState::Exited { code } | ContainerState::Killed { code, .. } => {
            ContainerState::Killed {
                code,
                reason: reason.to_owned(),
            }
        }
        ContainerState::Failed { message } => ContainerState::Failed {
            message: format!("{reason}; {message}"),
        },
        other => other,
    }
}

/// The registrations persisted in `dir` by an earlier process. Unreadable ones are skipped
/// (and logged): they only cost the probing of one adopted container.
fn load_registrations(dir: &Path) -> Result<HashMap<ContainerId, Registration>, RuntimeError> {
    std::fs::create_dir_all(dir).map_err(|e| {
        RuntimeError::io(
            "start probing",
            format!("cannot create {}", dir.display()),
            e,
        )
    })?;
    let entries = std::fs::read_dir(dir).map_err(|e| {
        RuntimeError::io("start probing", format!("cannot read {}", dir.display()), e)
    })?;
    let mut found = HashMap::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let parsed = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Registration>(&b).map_err(|e| e.to_string()));
        match parsed {
            Ok(reg) => {
                found.insert(reg.spec.id.clone(), reg);
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "skipping an unreadable probe registration")
            }
        }
    }
    Ok(found)
}

/// How early a check may start so that it shares a wake-up with others (see `run_timer`).
const COALESCE: Duration = Duration::from_millis(20);

/// Sleeps until the earliest due check, starts what is due, repeats.
async fn run_timer(shared: Arc<Shared>) {
    loop {
        let next = shared.lock().timers.first_key_value().map(|(k, _)| k.0);
        let sleep = async {
            match next {
                Some(due) => tokio::time::sleep_until(due).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shared.cancel.cancelled() => return,
            // A `notify_one` sent while not waiting is kept as a permit: nothing is missed.
            _ = shared.wake.notified() => continue,
            _ = sleep => {}
        }
        // Checks due within the next few milliseconds start now, with these: one wake-up (of
        // this task and of a worker thread) per batch, not per check.
        for job in shared.take_due(Instant::now() + COALESCE) {
            let shared2 = Arc::clone(&shared);
            shared.tasks.spawn(run_job(shared2, job));
        }
    }
}

/// Runs one check within the concurrency bound and records its outcome.
async fn run_job(shared: Arc<Shared>, job: Job) {
    let work = async {
        // The timeout starts once a permit is held: a queue of checks must not fail them.
        let Ok(_permit) = shared.permits.acquire().await else {
            return None;
        };
        Some(
            shared
                .checker
                .run(&job.check, job.timeout, &*shared.inner, &job.node, &job.id)
                .await,
        )
    };
    let outcome = tokio::select! {
        _ = shared.cancel.cancelled() => return,
        outcome = work => outcome,
    };
    if let Some(outcome) = outcome {
        shared.record(&job, outcome);
    }
}

/// Forwards the inner runtime's events (see [`Shared::forward`]).
async fn run_forwarder(shared: Arc<Shared>, mut rx: broadcast::Receiver<ContainerEvent>) {
    loop {
        let received = tokio::select! {
            _ = shared.cancel.cancelled() => return,
            r = rx.recv() => r,
        };
        match received {
            Ok(event) => shared.forward(event),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                // Subscribers resync with `list` (the core does periodically), which also
                // starts the probes of containers whose `Running` event was lost here.
                tracing::warn!(
                    missed = n,
                    "the probing runtime fell behind the inner runtime's events"
                );
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

impl ProbingRuntime {
    /// Wraps `inner`. Must be called within a tokio runtime (it starts its tasks); loads the
    /// registrations of an earlier process from [`ProbingConfig::state_dir`].
    pub fn new(
        inner: Arc<dyn ContainerRuntime>,
        config: ProbingConfig,
    ) -> Result<Self, RuntimeError> {
        let checker = Checker::new();
        let orphans = match &config.state_dir {
            Some(dir) => load_registrations(dir)?,
            None => HashMap::new(),
        };
        let (events, _) = broadcast::channel(config.event_capacity.max(1));
        let rx = inner.subscribe();
        let shared = Arc::new(Shared {
            permits: Semaphore::new(config.max_concurrent.max(1)),
            inner,
            config,
            checker,
            events,
            state: Mutex::new(State {
                orphans,
                ..State::default()
            }),
            wake: Notify::new(),
            tasks: TaskTracker::new(),
            cancel: CancellationToken::new(),
        });
        shared.tasks.spawn(run_forwarder(Arc::clone(&shared), rx));
        shared.tasks.spawn(run_timer(Arc::clone(&shared)));
        Ok(Self { shared })
    }

    /// The wrapped runtime.
    pub fn inner(&self) -> &Arc<dyn ContainerRuntime> {
        &self.shared.inner
    }

    /// What the probes of container `id` say now; `None` when nothing probes it.
    pub fn health(&self, id: &ContainerId) -> Option<Health> {
        self.shared
            .lock()
            .entries
            .get(id)
            .map(|e| e.probes.health())
    }

    /// Stops probing: ends every task (checks in flight are dropped, kills in flight
    /// abandoned) and waits for them. Containers are left as they run.
    pub async fn shutdown(&self) {
        self.shared.cancel.cancel();
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
    }
}

impl Drop for ProbingRuntime {
    fn drop(&mut self) {
        // The tasks hold the state alive; they end with their owner.
        self.shared.cancel.cancel();
        self.shared.tasks.close();
    }
}

#[async_trait]
impl ContainerRuntime for ProbingRuntime {
    async fn create_and_start(
        &self,
        node: &NodeId,
        spec: &ContainerSpec,
    ) -> Result<(), RuntimeError> {
        // Registered first: the `Running` event the inner runtime sends during the call is
        // forwarded with the container's initial health ("waiting for ...").
        let (registered, previous) = self.shared.lock().register(node, spec);
        if registered {
            if let Err(e) = self.shared.persist(node, spec).await {
                // Probing works without it; only a restarted daemon would not probe it.
                tracing::warn!(container = %spec.id, error = %e, "cannot persist the probes of a container");
            }
        }
        let result = self.shared.inner.create_and_start(node, spec).await;
        if let Err(e) = &result {
            if registered {
                {
                    let mut st = self.shared.lock();
                    st.unregister(&spec.id);
                    match previous {
                        // The container that exists is the one registered before.
                        Some(old) if matches!(e, RuntimeError::AlreadyExists { .. }) => {
                            st.restore(old)
                        }
                        _ => {}
                    }
                }
                if !matches!(e, RuntimeError::AlreadyExists { .. }) {
                    self.shared.forget(&spec.id).await;
                }
            }
        }
        result
    }

    async fn stop(
        &self,
        node: &NodeId,
        id: &ContainerId,
        grace: Duration,
    ) -> Result<(), RuntimeError> {
        // A container being stopped must not fail its probes into a kill meanwhile.
        self.shared.lock().unregister(id);
        self.shared.inner.stop(node, id, grace).await
    }

    async fn remove(&self, node: &NodeId, id: &ContainerId) -> Result<(), RuntimeError> {
        {
            let mut st = self.shared.lock();
            st.unregister(id);
            st.orphans.remove(id);
        }
        self.shared.inner.remove(node, id).await?;
        self.shared.forget(id).await;
        Ok(())
    }

    async fn status(&self, node: &NodeId, id: &ContainerId) -> Result<ContainerInfo, RuntimeError> {
        let info = self.shared.inner.status(node, id).await?;
        Ok(self.shared.annotate(info))
    }

    async fn list(&self, node: &NodeId) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let listed = self.shared.inner.list(node).await?;
        // Registrations of an earlier process whose container is gone are forgotten.
        let gone: Vec<ContainerId> = {
            let mut st = self.shared.lock();
            let gone: Vec<ContainerId> = st
                .orphans
                .iter()
                .filter(|(id, r)| r.node == *node && !listed.iter().any(|c| c.id == **id))
                .map(|(id, _)| id.clone())
                .collect();
            for id in &gone {
                st.orphans.remove(id);
            }
            gone
        };
        for id in &gone {
            self.shared.forget(id).await;
        }
        Ok(listed
            .into_iter()
            .map(|info| self.shared.annotate(info))
            .collect())
    }

    fn subscribe(&self) -> broadcast::Receiver<ContainerEvent> {
        self.shared.events.subscribe()
    }

    async fn logs(
        &self,
        node: &NodeId,
        id: &ContainerId,
        request: LogRequest,
    ) -> Result<LogChunk, RuntimeError> {
        self.shared.inner.logs(node, id, request).await
    }

    async fn exec(
        &self,
        node: &NodeId,
        id: &ContainerId,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        self.shared.inner.exec(node, id, command, timeout).await
    }
}
