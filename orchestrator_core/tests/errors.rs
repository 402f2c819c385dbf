//! Forced failures of the store and the runtime (mockall mocks and a fault-injecting wrapper):
//! transient errors are retried, permanent ones are reported, and nothing panics.

mod common;

use async_trait::async_trait;
use cluster_manager_interface::StaticClusterManager;
use common::{fast_config, node, workload};
use container_runtime_interface::{
    ContainerEvent, ContainerState, MockContainerRuntime, RuntimeError,
};
use orchestrator_core::{CoreError, OrchestratorBuilder};
use orchestrator_shared_types::*;
use state_store_interface::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

fn unavailable() -> StoreError {
    StoreError::unavailable("commit", std::io::Error::other("connection reset"))
}

fn empty_mock_store() -> MockStateStore {
    let mut store = MockStateStore::new();
    store.expect_list().returning(|_, _| Ok(Vec::new()));
    store.expect_get().returning(|_, _| Ok(None));
    store.expect_append_events().returning(|_| Ok(()));
    store.expect_revision().returning(|| Ok(0));
    // A watch that stays open and quiet (its sender is never dropped).
    store.expect_watch_kinds().returning(|_, _| {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        std::mem::forget(tx);
        Ok(Watch::new(rx))
    });
    store
}

async fn spawn_with_store(store: MockStateStore) -> orchestrator_core::Orchestrator {
    let nodes = Arc::new(StaticClusterManager::new());
    OrchestratorBuilder::new()
        .store(Arc::new(store))
        .runtime(Arc::new(
            container_runtime_interface::SimulatedRuntime::default(),
        ))
        .cluster_manager(nodes)
        .config(fast_config())
        .spawn()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_transient_store_error_is_reported_as_transient() {
    let mut store = empty_mock_store();
    store.expect_commit().returning(|_| Err(unavailable()));
    let o = spawn_with_store(store).await;
    let err = o
        .handle()
        .create(workload("web", 1, 100, 64))
        .await
        .unwrap_err();
    assert!(matches!(err, CoreError::Store { .. }), "{err:?}");
    assert!(err.is_transient());
    o.shutdown().await;
}

#[tokio::test]
async fn a_conflict_is_a_permanent_already_exists() {
    let mut store = empty_mock_store();
    store.expect_commit().returning(|_| {
        Err(StoreError::Conflict {
            kind: Kind::Workload,
            key: "web".into(),
            reason: "exists".into(),
        })
    });
    let o = spawn_with_store(store).await;
    let err = o
        .handle()
        .create(workload("web", 1, 100, 64))
        .await
        .unwrap_err();
    assert!(
        matches!(err, CoreError::AlreadyExists { ref name } if name == "web"),
        "{err:?}"
    );
    assert!(!err.is_transient());
    o.shutdown().await;
}

#[tokio::test]
async fn a_store_that_fails_at_start_up_fails_the_spawn() {
    let mut store = MockStateStore::new();
    store.expect_revision().returning(|| Ok(0));
    store.expect_list().returning(|_, _| {
        Err(StoreError::Backend {
            operation: "list",
            source: "disk on fire".into(),
        })
    });
    let result = OrchestratorBuilder::new()
        .store(Arc::new(store))
        .runtime(Arc::new(
            container_runtime_interface::SimulatedRuntime::default(),
        ))
        .cluster_manager(Arc::new(StaticClusterManager::new()))
        .spawn()
        .await;
    let err = result.err().expect("spawn fails");
    assert!(!err.is_transient());
    assert!(err.to_string().contains("list workloads"), "{err}");
}

/// An in-memory store whose next `n` commits fail with a transient error.
struct FlakyStore {
    inner: InMemoryStore,
    failing_commits: AtomicUsize,
    failed: AtomicUsize,
}

#[async_trait]
impl StateStore for FlakyStore {
    async fn get(&self, kind: Kind, key: &str) -> Result<Option<Entry>, StoreError> {
        self.inner.get(kind, key).await
    }
    async fn list(&self, kind: Kind, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        self.inner.list(kind, prefix).await
    }
    async fn commit(&self, ops: Vec<Op>) -> Result<Revision, StoreError> {
        let instance_write = ops.iter().any(|op| op.target().0 == Kind::Instance);
        if instance_write
            && self
                .failing_commits
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Err(unavailable());
        }
        self.inner.commit(ops).await
    }
    async fn revision(&self) -> Result<Revision, StoreError> {
        self.inner.revision().await
    }
    async fn watch_kinds(
        &self,
        after: Revision,
        kinds: state_store_interface::KindSet,
    ) -> Result<Watch, StoreError> {
        self.inner.watch_kinds(after, kinds).await
    }
    async fn append_events(&self, events: Vec<Event>) -> Result<(), StoreError> {
        self.inner.append_events(events).await
    }
    async fn list_events(&self, filter: &EventFilter) -> Result<Vec<Event>, StoreError> {
        self.inner.list_events(filter).await
    }
}

#[tokio::test(start_paused = true)]
async fn instance_writes_are_retried_through_transient_store_errors() {
    let store = Arc::new(FlakyStore {
        inner: InMemoryStore::new(),
        failing_commits: AtomicUsize::new(3),
        failed: AtomicUsize::new(0),
    });
    let nodes = Arc::new(StaticClusterManager::new());
    nodes.upsert_node(node("n1", 4000, 8192));
    let o = OrchestratorBuilder::new()
        .store(store.clone())
        .runtime(Arc::new(
            container_runtime_interface::SimulatedRuntime::default(),
        ))
        .cluster_manager(nodes)
        .config(fast_config())
        .spawn()
        .await
        .unwrap();
    o.handle()
        .create(workload("web", 2, 100, 64))
        .await
        .unwrap();
    let mut running = 0;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        running = store
            .list_obj::<WorkloadInstance>("")
            .await
            .unwrap()
            .iter()
            .filter(|v| v.value.status == InstanceStatus::Running)
            .count();
        if running == 2 {
            break;
        }
    }
    assert_eq!(
        store.failed.load(Ordering::SeqCst),
        3,
        "the failures happened"
    );
    assert_eq!(running, 2, "and the records still reached the store");
    o.shutdown().await;
}

/// A mock runtime whose creates answer from `script` in order (Ok once it runs out) and whose
/// events come from the returned sender.
fn scripted_runtime(
    script: Vec<Result<(), RuntimeError>>,
) -> (
    MockContainerRuntime,
    broadcast::Sender<ContainerEvent>,
    Arc<AtomicUsize>,
) {
    let (events, _) = broadcast::channel(64);
    let mut runtime = MockContainerRuntime::new();
    let tx = events.clone();
    runtime.expect_subscribe().returning(move || tx.subscribe());
    runtime.expect_list().returning(|_| Ok(Vec::new()));
    runtime.expect_remove().returning(|_, _| Ok(()));
    runtime.expect_stop().returning(|_, _, _| Ok(()));
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let script = Mutex::new(script.into_iter());
    runtime.expect_create_and_start().returning(move |_, _| {
        counter.fetch_add(1, Ordering::SeqCst);
        script.lock().unwrap().next().unwrap_or(Ok(()))
    });
    (runtime, events, calls)
}

async fn instance_of(store: &InMemoryStore) -> WorkloadInstance {
    store
        .list_obj::<WorkloadInstance>("")
        .await
        .unwrap()
        .remove(0)
        .value
}

#[tokio::test(start_paused = true)]
async fn a_transient_runtime_error_is_retried_quickly() {
    let (runtime, events, calls) = scripted_runtime(vec![Err(RuntimeError::NodeUnreachable {
        node: "n1".into(),
        operation: "create",
    })]);
    let store = Arc::new(InMemoryStore::new());
    let nodes = Arc::new(StaticClusterManager::new());
    nodes.upsert_node(node("n1", 4000, 8192));
    let o = OrchestratorBuilder::new()
        .store(store.clone())
        .runtime(Arc::new(runtime))
        .cluster_manager(nodes)
        .config(fast_config())
        .spawn()
        .await
        .unwrap();
    o.handle()
        .create(workload("web", 1, 100, 64))
        .await
        .unwrap();
    // The error backoff (100 ms here) is far shorter than the crash backoff (1 s).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2, "retried once");
    let i = instance_of(&store).await;
    assert_eq!(i.status, InstanceStatus::Scheduled);
    let failed = store
        .list_events(&EventFilter::default())
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.kind == EventKind::Failed)
        .expect("a Failed event");
    assert!(failed.message.contains("unreachable"), "{}", failed.message);
    // The runtime reports the container running: the instance follows.
    events
        .send(ContainerEvent {
            node_id: "n1".into(),
            container_id: i.container_ids[0].clone(),
            instance_id: i.id.clone(),
            state: ContainerState::Running,
            health: None,
        })
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(instance_of(&store).await.status, InstanceStatus::Running);
    o.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_permanent_runtime_error_fails_the_instance_and_never_policy_keeps_it() {
    let (runtime, _events, calls) = scripted_runtime(vec![Err(RuntimeError::StartFailed {
        node: "n1".into(),
        id: "x".into(),
        message: "exec: \"nope\": executable file not found".into(),
        source: None,
    })]);
    let store = Arc::new(InMemoryStore::new());
    let nodes = Arc::new(StaticClusterManager::new());
    nodes.upsert_node(node("n1", 4000, 8192));
    let o = OrchestratorBuilder::new()
        .store(store.clone())
        .runtime(Arc::new(runtime))
        .cluster_manager(nodes)
        .config(fast_config())
        .spawn()
        .await
        .unwrap();
    let mut w = workload("job", 1, 100, 64);
    w.restart_policy = RestartPolicy::Never;
    o.handle().create(w).await.unwrap();
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "never retried");
    let i = instance_of(&store).await;
    assert_eq!(i.status, InstanceStatus::Failed);
    assert!(i.last_error.unwrap().contains("executable file not found"));
    o.shutdown().await;
}
