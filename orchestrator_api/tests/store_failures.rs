//! A store that stops answering: reads and writes get 503 `store_unavailable` (or 500 for a
//! permanent failure), the store's own words never reach the client, readiness turns 503, and
//! everything recovers when the store does. Writes refused by an unreachable store say so
//! plainly, and reads keep answering.

mod common;

use async_trait::async_trait;
use axum::http::{Method, StatusCode};
use cluster_manager_interface::StaticClusterManager;
use common::workload_json;
use container_runtime_interface::SimulatedRuntime;
use orchestrator_api::{ApiState, ServerInfo};
use orchestrator_core::OrchestratorBuilder;
use orchestrator_shared_types::Event;
use state_store_interface::{
    Entry, EventFilter, InMemoryStore, Kind, Op, Revision, StateStore, StoreError, Watch,
};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

/// What the store does.
const HEALTHY: u8 = 0;
const UNREACHABLE: u8 = 1;
const BROKEN: u8 = 2;
/// Reads answer; every commit fails as unreachable (a daemon whose etcd refuses writes).
const COMMITS_UNREACHABLE: u8 = 3;

/// An in-memory store that can be made to fail every call.
struct FlakyStore {
    inner: InMemoryStore,
    mode: AtomicU8,
}

/// A message a client must never see.
const SECRET: &str = "dial tcp 10.9.8.7:2379: connection refused";

impl FlakyStore {
    fn check(&self, operation: &'static str) -> Result<(), StoreError> {
        match self.mode.load(Ordering::SeqCst) {
            UNREACHABLE => Err(StoreError::unavailable(operation, SECRET)),
            BROKEN => Err(StoreError::Backend {
                operation,
                source: SECRET.into(),
            }),
            COMMITS_UNREACHABLE if operation == "commit" => {
                Err(StoreError::unavailable(operation, SECRET))
            }
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl StateStore for FlakyStore {
    async fn get(&self, kind: Kind, key: &str) -> Result<Option<Entry>, StoreError> {
        self.check("get")?;
        self.inner.get(kind, key).await
    }
    async fn list(&self, kind: Kind, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        self.check("list")?;
        self.inner.list(kind, prefix).await
    }
    async fn commit(&self, ops: Vec<Op>) -> Result<Revision, StoreError> {
        self.check("commit")?;
        self.inner.commit(ops).await
    }
    async fn revision(&self) -> Result<Revision, StoreError> {
        self.check("revision")?;
        self.inner.revision().await
    }
    async fn watch_kinds(
        &self,
        after: Revision,
        kinds: state_store_interface::KindSet,
    ) -> Result<Watch, StoreError> {
        self.check("watch")?;
        self.inner.watch_kinds(after, kinds).await
    }
    async fn append_events(&self, events: Vec<Event>) -> Result<(), StoreError> {
        self.check("append events")?;
        self.inner.append_events(events).await
    }
    async fn list_events(&self, filter: &EventFilter) -> Result<Vec<Event>, StoreError> {
        self.check("list events")?;
        self.inner.list_events(filter).await
    }
}

/// An API over a [`FlakyStore`], healthy at first.
async fn flaky_api() -> (
    common::TestApi,
    Arc<FlakyStore>,
    orchestrator_core::Orchestrator,
) {
    let store = Arc::new(FlakyStore {
        inner: InMemoryStore::new(),
        mode: AtomicU8::new(HEALTHY),
    });
    let nodes = Arc::new(StaticClusterManager::new());
    for n in common::test_nodes() {
        nodes.upsert_node(n);
    }
    let orchestrator = OrchestratorBuilder::new()
        .store(store.clone())
        .runtime(Arc::new(SimulatedRuntime::default()))
        .cluster_manager(nodes)
        .spawn()
        .await
        .unwrap();
    let state = ApiState::new(
        orchestrator.handle(),
        orchestrator.metrics(),
        ServerInfo::new("flaky", "simulated"),
    );
    (common::TestApi::with_state(state), store, orchestrator)
}

#[tokio::test]
async fn store_failures_are_503_or_500_and_never_leak() {
    let (api, store, orchestrator) = flaky_api().await;

    api.send_json(
        Method::POST,
        "/api/v1/workloads",
        &workload_json("web", 1, 100),
    )
    .await
    .expect(StatusCode::CREATED);

    for (mode, status, code) in [
        (
            UNREACHABLE,
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
        ),
        (BROKEN, StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    ] {
        store.mode.store(mode, Ordering::SeqCst);
        for (method, uri) in [
            (Method::GET, "/api/v1/workloads"),
            (Method::GET, "/api/v1/workloads/web"),
            (Method::GET, "/api/v1/instances"),
            (Method::GET, "/api/v1/events"),
            // Pages read through `list_page` and forward event reads: the same mapping.
            (Method::GET, "/api/v1/workloads?limit=5"),
            (Method::GET, "/api/v1/instances?limit=5"),
            (Method::GET, "/api/v1/instances?limit=5&node=node-a"),
            (Method::GET, "/api/v1/events?after=0&limit=5"),
            (Method::POST, "/api/v1/workloads"),
            (Method::PUT, "/api/v1/workloads/web"),
            (Method::DELETE, "/api/v1/workloads/web"),
        ] {
            let body = match method {
                Method::POST | Method::PUT => {
                    serde_json::to_vec(&workload_json("web", 2, 100)).unwrap()
                }
                _ => Vec::new(),
            };
            let reply = api
                .call(method.clone(), uri, Some("application/json"), body)
                .await;
            assert_eq!(reply.status, status, "{method} {uri}: {}", reply.text());
            assert_eq!(reply.code(), code, "{method} {uri}");
            assert!(
                !reply.text().contains("10.9.8.7"),
                "{method} {uri} leaks: {}",
                reply.text()
            );
        }
        // Not ready, whatever the failure: it is not the request's fault.
        let ready = api
            .get("/readyz")
            .await
            .expect(StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(ready.code(), "store_unavailable");
        assert!(!ready.text().contains("10.9.8.7"));
    }

    store.mode.store(HEALTHY, Ordering::SeqCst);
    api.get("/readyz").await.expect(StatusCode::OK);
    let web = api
        .get("/api/v1/workloads/web")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        web["workload"]["replicas"], 1,
        "no failed write changed anything"
    );
    orchestrator.shutdown().await;
}

#[tokio::test]
async fn writes_to_an_unreachable_store_are_503_with_a_clear_message() {
    let (api, store, orchestrator) = flaky_api().await;
    api.send_json(
        Method::POST,
        "/api/v1/workloads",
        &workload_json("web", 1, 100),
    )
    .await
    .expect(StatusCode::CREATED);

    store.mode.store(COMMITS_UNREACHABLE, Ordering::SeqCst);
    for (method, uri, body) in [
        (
            Method::POST,
            "/api/v1/workloads",
            workload_json("api", 1, 100),
        ),
        (
            Method::PUT,
            "/api/v1/workloads/web",
            workload_json("web", 2, 100),
        ),
        (
            Method::POST,
            "/api/v1/workloads/web/scale",
            serde_json::json!({"replicas": 3}),
        ),
        (
            Method::DELETE,
            "/api/v1/workloads/web",
            serde_json::Value::Null,
        ),
    ] {
        let reply = api.send_json(method.clone(), uri, &body).await;
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{method} {uri}: {}",
            reply.text()
        );
        assert_eq!(reply.code(), "store_unavailable", "{method} {uri}");
        let message = reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            message.starts_with("the state store is unreachable: ")
                && message.ends_with("; retry later"),
            "{method} {uri}: {message}"
        );
        assert!(!reply.text().contains("10.9.8.7"), "{method} {uri} leaks");
    }
    // Reads still answer.
    let web = api
        .get("/api/v1/workloads/web")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        web["workload"]["replicas"], 1,
        "no failed write changed anything"
    );

    store.mode.store(HEALTHY, Ordering::SeqCst);
    api.send_json(
        Method::POST,
        "/api/v1/workloads/web/scale",
        &serde_json::json!({"replicas": 2}),
    )
    .await
    .expect(StatusCode::OK);
    orchestrator.shutdown().await;
}
