//! The cluster architecture's promises: the store (not the handle) drives the loop, reads never
//! wait for the loop, and shutdown leaves no task behind.

mod common;

use cluster_manager_interface::StaticClusterManager;
use common::*;
use container_runtime_interface::{SimulatedRuntime, SimulatedRuntimeConfig};
use orchestrator_core::OrchestratorBuilder;
use orchestrator_shared_types::*;
use scheduler_interface::{
    Allocation, BinPackScheduler, ClusterState, PlacementOutcome, PlacementPlan, PlacementRequest,
    Scheduler, SchedulerError,
};
use state_store_interface::typed::delete_op;
use state_store_interface::{InMemoryStore, Precondition, StateStore, StoreExt};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;
use Op::*;

#[tokio::test(start_paused = true)]
async fn a_workload_written_straight_into_the_store_is_reconciled() {
    let mut h = Harness::new().await;
    h.run(vec![AddNode(node("n1", 4000, 8192))]).await;
    // Another process (another daemon's API, an operator's tool) writes the store directly.
    let mut def = workload("direct", 3, 100, 64);
    def.id = WorkloadId::generate();
    h.store
        .put_obj(&def, Precondition::Absent)
        .await
        .expect("put");
    h.run(vec![expect("3 running", |w| {
        w.running("direct") == 3 && w.running_containers() == 3
    })])
    .await;
    // Its change and its deletion are reconciled, and recorded as events, the same way.
    let current = h
        .store
        .get_obj::<WorkloadDefinition>("direct")
        .await
        .unwrap()
        .unwrap();
    let mut scaled = current.value.clone();
    scaled.replicas = 1;
    h.store
        .put_obj(&scaled, Precondition::ModRevision(current.revision))
        .await
        .expect("scale");
    h.run(vec![expect("scaled to 1", |w| {
        w.instances("direct").len() == 1 && w.container_count() == 1
    })])
    .await;
    h.store
        .commit(vec![delete_op(&scaled, Precondition::None)])
        .await
        .expect("delete");
    h.run(vec![expect("gone", |w| {
        w.instances("direct").is_empty() && w.container_count() == 0
    })])
    .await;
    let said: Vec<String> = h
        .world()
        .await
        .events
        .iter()
        .filter(|e| e.workload_name.as_deref() == Some("direct"))
        .map(|e| e.message.clone())
        .collect();
    for wanted in [
        "created with 3 replicas",
        "updated: replicas 3 -> 1",
        "deleted",
    ] {
        assert!(said.iter().any(|m| m == wanted), "{wanted:?} in {said:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_drain_written_to_the_store_moves_instances() {
    let mut h = Harness::new().await;
    h.run(vec![
        AddNode(node("n1", 4000, 8192)),
        Submit(workload("web", 2, 100, 64)),
        expect("2 running", |w| w.running("web") == 2),
        AddNode(node("n2", 4000, 8192)),
    ])
    .await;
    let on = |w: &World, n: &str| {
        w.instances("web")
            .iter()
            .filter(|i| i.node_id.as_ref().is_some_and(|id| id.as_str() == n))
            .count()
    };
    let busy = if on(&h.world().await, "n1") == 2 {
        "n1"
    } else {
        "n2"
    };
    h.run(vec![Drain(busy)]).await;
    h.run(vec![expect("moved off the drained node", move |w| {
        on(w, busy) == 0 && w.running("web") == 2
    })])
    .await;
}

/// A scheduler that blocks the loop's thread inside `place` for one workload, until released.
struct StallingScheduler {
    inner: BinPackScheduler,
    stall: WorkloadId,
    entered: Mutex<mpsc::Sender<()>>,
    release: Mutex<mpsc::Receiver<()>>,
}

impl StallingScheduler {
    /// Blocks the calling thread while planning the stalled workload, until released.
    fn stall_for(&self, request: &PlacementRequest) {
        if request.workload_id == self.stall {
            let _ = self.entered.lock().unwrap().send(());
            let _ = self
                .release
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(30));
        }
    }
}

impl Scheduler for StallingScheduler {
    fn name(&self) -> &'static str {
        "stalling"
    }

    fn place(
        &self,
        state: &mut ClusterState,
        request: &PlacementRequest,
        count: usize,
    ) -> Result<PlacementOutcome, SchedulerError> {
        self.stall_for(request);
        self.inner.place(state, request, count)
    }

    fn plan_with(
        &self,
        state: &ClusterState,
        request: &PlacementRequest,
        count: usize,
        released: &[(NodeId, Allocation)],
    ) -> Result<PlacementPlan, SchedulerError> {
        self.stall_for(request);
        self.inner.plan_with(state, request, count, released)
    }

    fn explain(&self, state: &ClusterState, request: &PlacementRequest) -> Unschedulable {
        self.inner.explain(state, request)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_answer_while_the_loop_is_stalled() {
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    let store = Arc::new(InMemoryStore::new());
    let nodes = Arc::new(StaticClusterManager::new());
    nodes.upsert_node(node("n1", 4000, 8192));
    let mut stuck = workload("stuck", 1, 100, 64);
    stuck.id = WorkloadId::generate();
    let orchestrator = OrchestratorBuilder::new()
        .store(store.clone())
        .runtime(Arc::new(SimulatedRuntime::default()))
        .cluster_manager(nodes)
        .scheduler(Arc::new(StallingScheduler {
            inner: BinPackScheduler::new(),
            stall: stuck.id.clone(),
            entered: Mutex::new(entered_tx),
            release: Mutex::new(release_rx),
        }))
        .config(fast_config())
        .spawn()
        .await
        .unwrap();
    let handle = orchestrator.handle();
    let ready = handle
        .create(workload("ready", 1, 100, 64))
        .await
        .unwrap()
        .value;
    let mut running = false;
    for _ in 0..400 {
        let counts = handle.replica_counts(vec![ready.id.clone()]).await.unwrap();
        if counts[0].running == 1 {
            running = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(running, "the first workload runs");

    // Stall the loop inside the scheduler, on its own thread, and wait until it is stuck.
    store.put_obj(&stuck, Precondition::Absent).await.unwrap();
    tokio::task::spawn_blocking(move || entered.recv_timeout(Duration::from_secs(10)))
        .await
        .unwrap()
        .expect("the loop is planning the stalled workload");
    // Every read answers from the published view while the loop is blocked.
    let reads = async {
        let summary = handle.summary().await.unwrap();
        assert_eq!(summary.count(InstanceStatus::Running), 1);
        let nodes = handle.nodes().await.unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].instances, 1);
        let counts = handle.replica_counts(vec![ready.id.clone()]).await.unwrap();
        assert_eq!(counts[0].running, 1);
        let fits = handle.explain("ready").await.unwrap();
        assert_eq!(fits.unplaced, 0);
        let preview = handle.preview(workload("other", 2, 100, 64)).await.unwrap();
        assert_eq!(preview.placements.values().sum::<usize>(), 2);
        handle.instance("no-such-instance").await.unwrap_err();
    };
    tokio::time::timeout(Duration::from_secs(10), reads)
        .await
        .expect("reads do not wait for the stalled loop");
    // Released, the loop places the stalled workload too.
    release.send(()).unwrap();
    let mut placed = false;
    for _ in 0..400 {
        let counts = handle.replica_counts(vec![stuck.id.clone()]).await.unwrap();
        if counts[0].running == 1 {
            placed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(placed, "the stalled workload runs once released");
    orchestrator.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn shutdown_leaves_no_task_running() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let baseline = metrics.num_alive_tasks();
    let store = Arc::new(InMemoryStore::new());
    let runtime = Arc::new(SimulatedRuntime::new(SimulatedRuntimeConfig {
        start_delay: Duration::ZERO,
        ..Default::default()
    }));
    let nodes = Arc::new(StaticClusterManager::new());
    nodes.upsert_node(node("n1", 4000, 8192));
    let orchestrator = OrchestratorBuilder::new()
        .store(store.clone())
        .runtime(runtime)
        .cluster_manager(nodes)
        .config(fast_config())
        .spawn()
        .await
        .unwrap();
    let handle = orchestrator.handle();
    handle.create(workload("web", 3, 100, 64)).await.unwrap();
    for _ in 0..400 {
        if handle
            .summary()
            .await
            .unwrap()
            .count(InstanceStatus::Running)
            == 3
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        handle
            .summary()
            .await
            .unwrap()
            .count(InstanceStatus::Running),
        3
    );
    // A scale-down leaves stop operations in flight when shutdown begins.
    handle.scale("web", 0).await.unwrap();
    handle.resync();
    assert!(metrics.num_alive_tasks() > baseline, "the loop runs tasks");
    orchestrator.shutdown().await;
    assert_eq!(
        metrics.num_alive_tasks(),
        baseline,
        "every task the orchestrator started has ended"
    );
    // Reads after the loop ended say so.
    assert!(handle.summary().await.is_err());
    // What was acknowledged is in the store.
    let stored = store
        .get_obj::<WorkloadDefinition>("web")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.value.replicas, 0);
}

#[tokio::test(start_paused = true)]
async fn a_view_built_from_the_store_alone_answers_like_the_loop_s() {
    let mut h = Harness::new().await;
    h.run(vec![
        AddNode(node("n1", 2000, 4096)),
        AddNode(node("n2", 1000, 2048)),
        Submit(workload("web", 3, 500, 512)),
        Submit(workload("big", 2, 1500, 1024)),
        expect("placed", |w| {
            w.running("web") == 3 && w.instances("big").len() == 2
        }),
        Advance(Duration::from_secs(1)),
    ])
    .await;
    // What a daemon that does not run the loop has: the store and the membership.
    let nodes = cluster_manager_interface::ClusterManager::nodes(h.nodes.as_ref())
        .await
        .unwrap();
    let defs: Vec<WorkloadDefinition> = h
        .store
        .list_obj::<WorkloadDefinition>("")
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.value)
        .collect();
    let instances: Vec<WorkloadInstance> = h
        .store
        .list_obj::<WorkloadInstance>("")
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.value)
        .collect();
    let from_store = orchestrator_core::ClusterView::from_records(
        Arc::new(BinPackScheduler::new()),
        nodes,
        defs.clone(),
        instances,
    );
    let handle = h.handle();
    assert_eq!(from_store.nodes(), handle.nodes().await.unwrap());
    for def in &defs {
        assert_eq!(
            from_store.replica_counts(&def.id),
            handle.replica_counts(vec![def.id.clone()]).await.unwrap()[0],
            "{}",
            def.name
        );
        assert_eq!(
            from_store.explain(&def.name).unwrap(),
            handle.explain(&def.name).await.unwrap(),
            "{}",
            def.name
        );
    }
    assert_eq!(
        from_store.summary().instances,
        handle.summary().await.unwrap().instances
    );
}
