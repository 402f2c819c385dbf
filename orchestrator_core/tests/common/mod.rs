//! The scenario harness: a cluster of in-memory twins (store, simulated runtime, static
//! membership) under a real orchestrator, driven by a list of operations. Tests run on tokio's
//! paused clock, so backoffs of minutes take no wall time and results do not depend on load.

#![allow(dead_code)]

use cluster_manager_interface::{ClusterManager, StaticClusterManager};
use container_runtime_interface::{
    ContainerEvent, ContainerInfo, ContainerRuntime, ContainerSpec, RuntimeError, SimulatedRuntime,
    SimulatedRuntimeConfig,
};
use orchestrator_core::{
    BackoffPolicy, Orchestrator, OrchestratorBuilder, OrchestratorConfig, OrchestratorHandle,
};
use orchestrator_shared_types::*;
use state_store_interface::{EventFilter, InMemoryStore, StateStore, StoreExt};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A workload of `replicas` with one container of `cpu` millicores and `mem` MB.
pub fn workload(name: &str, replicas: u32, cpu: u64, mem: u64) -> WorkloadDefinition {
    let mut c = ContainerConfig::new("main", "example/app:1");
    c.resources = Resources::new(cpu, mem, 0);
    let mut w = WorkloadDefinition::new(name, replicas, c);
    w.id = WorkloadId::default();
    w
}

/// A ready node with `cpu` millicores and `mem` MB.
pub fn node(id: &str, cpu: u64, mem: u64) -> Node {
    Node::new(id, Resources::new(cpu, mem, 10_000))
}

/// What a scenario can do.
pub enum Op {
    AddNode(Node),
    RemoveNode(&'static str),
    /// Marks a node Down (unreachable) without removing it.
    NodeDown(&'static str),
    Submit(WorkloadDefinition),
    Update(WorkloadDefinition),
    Scale(&'static str, u32),
    Delete(&'static str),
    /// Makes the container of one running instance of the workload exit with this code.
    Crash(&'static str, i32),
    /// Lets virtual time pass.
    Advance(Duration),
    /// Shuts the orchestrator down (draining) and starts a new one on the same store and runtime.
    RestartOrchestrator,
    /// Like `RestartOrchestrator`, but with a fresh cluster manager that knows the same nodes, all
    /// schedulable (what a restarted daemon's membership looks like: cordons are forgotten).
    RestartWithFreshMembership,
    /// Cordons a node and moves its instances elsewhere (`drain`).
    Drain(&'static str),
    /// Makes a drained or cordoned node schedulable again.
    Uncordon(&'static str),
    /// Waits (virtual time) until the check holds; fails the test with the description otherwise.
    Expect(&'static str, Box<dyn Fn(&World) -> bool>),
}

/// What the cluster looks like: the store's records and the runtime's containers.
#[derive(Debug)]
pub struct World {
    pub workloads: BTreeMap<String, WorkloadDefinition>,
    /// Instances per workload name (instances of deleted workloads under their id).
    pub instances: BTreeMap<String, Vec<WorkloadInstance>>,
    /// Containers per node.
    pub containers: BTreeMap<NodeId, Vec<container_runtime_interface::ContainerInfo>>,
    pub events: Vec<Event>,
}

impl World {
    pub fn instances(&self, workload: &str) -> &[WorkloadInstance] {
        self.instances.get(workload).map_or(&[], |v| v.as_slice())
    }
    pub fn count(&self, workload: &str, status: InstanceStatus) -> usize {
        self.instances(workload)
            .iter()
            .filter(|i| i.status == status)
            .count()
    }
    pub fn running(&self, workload: &str) -> usize {
        self.count(workload, InstanceStatus::Running)
    }
    pub fn total_instances(&self) -> usize {
        self.instances.values().map(Vec::len).sum()
    }
    pub fn container_count(&self) -> usize {
        self.containers.values().map(Vec::len).sum()
    }
    pub fn running_containers(&self) -> usize {
        self.containers
            .values()
            .flatten()
            .filter(|c| c.state == container_runtime_interface::ContainerState::Running)
            .count()
    }
    pub fn on_node(&self, workload: &str, node: &str) -> usize {
        self.instances(workload)
            .iter()
            .filter(|i| i.node_id.as_ref().map(|n| n.as_str()) == Some(node))
            .count()
    }
    pub fn events_of(&self, kind: EventKind) -> Vec<&Event> {
        self.events.iter().filter(|e| e.kind == kind).collect()
    }
}

/// The simulated runtime, keeping every spec it was asked to start (what the orchestrator
/// hands a real runtime: environment included).
pub struct RecordingRuntime {
    pub inner: Arc<SimulatedRuntime>,
    pub started: Mutex<Vec<(NodeId, ContainerSpec)>>,
}

#[async_trait::async_trait]
impl ContainerRuntime for RecordingRuntime {
    async fn create_and_start(
        &self,
        node: &NodeId,
        spec: &ContainerSpec,
    ) -> Result<(), RuntimeError> {
        self.started
            .lock()
            .unwrap()
            .push((node.clone(), spec.clone()));
        self.inner.create_and_start(node, spec).await
    }
    async fn stop(
        &self,
        node: &NodeId,
        id: &ContainerId,
        grace: Duration,
    ) -> Result<(), RuntimeError> {
        self.inner.stop(node, id, grace).await
    }
    async fn remove(&self, node: &NodeId, id: &ContainerId) -> Result<(), RuntimeError> {
        self.inner.remove(node, id).await
    }
    async fn status(&self, node: &NodeId, id: &ContainerId) -> Result<ContainerInfo, RuntimeError> {
        self.inner.status(node, id).await
    }
    async fn list(&self, node: &NodeId) -> Result<Vec<ContainerInfo>, RuntimeError> {
        self.inner.list(node).await
    }
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<ContainerEvent> {
        self.inner.subscribe()
    }
    async fn logs(
        &self,
        node: &NodeId,
        id: &ContainerId,
        request: container_runtime_interface::LogRequest,
    ) -> Result<container_runtime_interface::LogChunk, RuntimeError> {
        self.inner.logs(node, id, request).await
    }
}

/// The cluster under test.
pub struct Harness {
    pub store: Arc<InMemoryStore>,
    pub runtime: Arc<SimulatedRuntime>,
    /// The same runtime as the orchestrator sees it, recording the specs it starts.
    pub recorder: Arc<RecordingRuntime>,
    pub nodes: Arc<StaticClusterManager>,
    pub orchestrator: Option<Orchestrator>,
    pub config: OrchestratorConfig,
}

/// Backoffs short enough for scenarios, with the same shape as the defaults.
pub fn fast_config() -> OrchestratorConfig {
    OrchestratorConfig {
        resync_interval: Duration::from_secs(5),
        crash_backoff: BackoffPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(16),
            reset_after: Duration::from_secs(60),
            jitter: 0.0,
        },
        error_backoff: BackoffPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
            reset_after: Duration::from_secs(10),
            jitter: 0.0,
        },
        stop_grace: Duration::from_secs(1),
        ..OrchestratorConfig::default()
    }
}

impl Harness {
    pub async fn new() -> Self {
        let runtime = Arc::new(SimulatedRuntime::new(SimulatedRuntimeConfig {
            start_delay: Duration::from_millis(200),
            ..Default::default()
        }));
        let mut h = Self {
            store: Arc::new(InMemoryStore::new()),
            recorder: Arc::new(RecordingRuntime {
                inner: runtime.clone(),
                started: Mutex::default(),
            }),
            runtime,
            nodes: Arc::new(StaticClusterManager::new()),
            orchestrator: None,
            config: fast_config(),
        };
        h.start().await;
        h
    }

    pub async fn start(&mut self) {
        let orchestrator = OrchestratorBuilder::new()
            .store(self.store.clone())
            .runtime(self.recorder.clone())
            .cluster_manager(self.nodes.clone())
            .config(self.config.clone())
            .spawn()
            .await
            .expect("orchestrator starts");
        self.orchestrator = Some(orchestrator);
    }

    pub fn handle(&self) -> OrchestratorHandle {
        self.orchestrator.as_ref().expect("running").handle()
    }

    pub async fn world(&self) -> World {
        let workloads: BTreeMap<String, WorkloadDefinition> = self
            .store
            .list_obj::<WorkloadDefinition>("")
            .await
            .unwrap()
            .into_iter()
            .map(|v| (v.value.name.clone(), v.value))
            .collect();
        let names: BTreeMap<WorkloadId, String> = workloads
            .values()
            .map(|w| (w.id.clone(), w.name.clone()))
            .collect();
        let mut instances: BTreeMap<String, Vec<WorkloadInstance>> = BTreeMap::new();
        for v in self.store.list_obj::<WorkloadInstance>("").await.unwrap() {
            let key = names
                .get(&v.value.workload_id)
                .cloned()
                .unwrap_or_else(|| v.value.workload_id.to_string());
            instances.entry(key).or_default().push(v.value);
        }
        let mut containers = BTreeMap::new();
        for n in ClusterManager::nodes(self.nodes.as_ref()).await.unwrap() {
            if let Ok(list) = self.runtime.list(&n.id).await {
                containers.insert(n.id.clone(), list);
            }
        }
        let events = self
            .store
            .list_events(&EventFilter::default())
            .await
            .unwrap();
        World {
            workloads,
            instances,
            containers,
            events,
        }
    }

    /// Waits until `check` holds, letting virtual time pass; panics after 10 virtual minutes.
    pub async fn expect(&self, what: &str, check: impl Fn(&World) -> bool) {
        for _ in 0..6000 {
            let world = self.world().await;
            if check(&world) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let world = self.world().await;
        panic!("expectation never held: {what}\nworld: {world:#?}");
    }

    pub async fn run(&mut self, ops: Vec<Op>) {
        for op in ops {
            self.step(op).await;
        }
    }

    pub async fn step(&mut self, op: Op) {
        match op {
            Op::AddNode(n) => self.nodes.upsert_node(n),
            Op::RemoveNode(id) => {
                self.nodes.remove_node(&NodeId::from(id));
            }
            Op::NodeDown(id) => {
                let id = NodeId::from(id);
                self.runtime.set_node_reachable(&id, false);
                let mut n = ClusterManager::node(self.nodes.as_ref(), &id)
                    .await
                    .unwrap()
                    .expect("known node");
                n.status = NodeStatus::Down;
                self.nodes.upsert_node(n);
            }
            Op::Submit(w) => {
                self.handle().create(w).await.expect("create");
            }
            Op::Update(w) => {
                self.handle().update(w, None).await.expect("update");
            }
            Op::Scale(name, n) => {
                self.handle().scale(name, n).await.expect("scale");
            }
            Op::Delete(name) => {
                self.handle().delete(name).await.expect("delete");
            }
            Op::Crash(name, code) => {
                let world = self.world().await;
                let victim = world
                    .instances(name)
                    .iter()
                    .find(|i| i.status == InstanceStatus::Running)
                    .expect("a running instance to crash")
                    .clone();
                self.runtime
                    .exit_container(
                        victim.node_id.as_ref().unwrap(),
                        &victim.container_ids[0],
                        code,
                    )
                    .expect("crash");
            }
            Op::Advance(d) => tokio::time::sleep(d).await,
            Op::RestartOrchestrator => {
                if let Some(o) = self.orchestrator.take() {
                    o.shutdown().await;
                }
                self.start().await;
            }
            Op::RestartWithFreshMembership => {
                if let Some(o) = self.orchestrator.take() {
                    o.shutdown().await;
                }
                let known = ClusterManager::nodes(self.nodes.as_ref()).await.unwrap();
                self.nodes = Arc::new(StaticClusterManager::new());
                for mut n in known {
                    n.unschedulable = false;
                    self.nodes.upsert_node(n);
                }
                self.start().await;
            }
            Op::Drain(id) => {
                self.handle().drain(&NodeId::from(id)).await.expect("drain");
            }
            Op::Uncordon(id) => {
                self.handle()
                    .uncordon(&NodeId::from(id))
                    .await
                    .expect("uncordon");
            }
            Op::Expect(what, check) => self.expect(what, check).await,
        }
    }
}

impl Harness {
    /// The last spec the orchestrator started under `container` on `node`.
    pub fn started_spec(&self, node: &NodeId, container: &ContainerId) -> Option<ContainerSpec> {
        let started = self.recorder.started.lock().unwrap();
        started
            .iter()
            .rev()
            .find(|(n, s)| n == node && s.id == *container)
            .map(|(_, s)| s.clone())
    }
}

/// A container spec for creating containers behind the orchestrator's back.
pub fn foreign_spec(id: &str) -> ContainerSpec {
    ContainerSpec {
        id: ContainerId::from(id),
        instance_id: InstanceId::from("stranger-000000000000"),
        workload_id: WorkloadId::from("not-a-workload"),
        config: ContainerConfig::new("x", "example/app:1"),
    }
}

pub fn expect(what: &'static str, check: impl Fn(&World) -> bool + 'static) -> Op {
    Op::Expect(what, Box::new(check))
}
