//! Shared harness of the API's tests: a real orchestrator on in-memory twins (store, simulated
//! runtime, static membership with two nodes) behind the API's router, and helpers to call it
//! in-process with `tower::ServiceExt::oneshot`.

#![allow(dead_code)]

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use cluster_manager_interface::StaticClusterManager;
use container_runtime_interface::{SimulatedRuntime, SimulatedRuntimeConfig};
use orchestrator_api::{ApiState, ServerInfo};
use orchestrator_core::{Orchestrator, OrchestratorBuilder, OrchestratorConfig};
use orchestrator_shared_types::{Node, Resources, WorkloadDefinition};
use serde_json::Value;
use state_store_interface::{InMemoryStore, StoreExt};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

/// CPU of `node-a` (millicores); `node-b` has half.
pub const NODE_A_CPU: u64 = 4000;

/// The API under test and what is behind it.
pub struct TestApi {
    pub router: Router,
    pub state: ApiState,
    pub store: Arc<InMemoryStore>,
    pub runtime: Arc<SimulatedRuntime>,
    pub nodes: Arc<StaticClusterManager>,
    /// `None` for an API built on a caller's state ([`TestApi::with_state`]).
    pub orchestrator: Option<Orchestrator>,
}

/// Two ready nodes: `node-a` (4 cores, 8 GB, label `zone=a`) and `node-b` (2 cores, 4 GB,
/// `zone=b`), named `alpha` and `beta`.
pub fn test_nodes() -> Vec<Node> {
    let mut a =
        Node::new("node-a", Resources::new(NODE_A_CPU, 8192, 10_000)).with_label("zone", "a");
    a.name = "alpha".into();
    let mut b =
        Node::new("node-b", Resources::new(NODE_A_CPU / 2, 4096, 10_000)).with_label("zone", "b");
    b.name = "beta".into();
    vec![a, b]
}

impl TestApi {
    /// Starts the orchestrator on fresh twins and builds the router.
    pub async fn start() -> Self {
        let store = Arc::new(InMemoryStore::new());
        let runtime = Arc::new(SimulatedRuntime::new(SimulatedRuntimeConfig {
            start_delay: Duration::from_millis(5),
            ..Default::default()
        }));
        let nodes = Arc::new(StaticClusterManager::new());
        for n in test_nodes() {
            nodes.upsert_node(n);
        }
        let orchestrator = OrchestratorBuilder::new()
            .store(store.clone())
            .runtime(runtime.clone())
            .cluster_manager(nodes.clone())
            .config(OrchestratorConfig {
                resync_interval: Duration::from_secs(1),
                ..OrchestratorConfig::default()
            })
            .spawn()
            .await
            .expect("orchestrator starts");
        let state = ApiState::new(
            orchestrator.handle(),
            orchestrator.metrics(),
            ServerInfo::new("memory", "simulated"),
        );
        Self {
            router: orchestrator_api::router(state.clone()),
            state,
            store,
            runtime,
            nodes,
            orchestrator: Some(orchestrator),
        }
    }

    /// An API on the caller's state (e.g. over a failing store); the twins of this harness are
    /// then unused placeholders.
    pub fn with_state(state: ApiState) -> Self {
        Self {
            router: orchestrator_api::router(state.clone()),
            state,
            store: Arc::new(InMemoryStore::new()),
            runtime: Arc::new(SimulatedRuntime::default()),
            nodes: Arc::new(StaticClusterManager::new()),
            orchestrator: None,
        }
    }

    /// One request through the router.
    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        content_type: Option<&str>,
        body: impl Into<Body>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let req = req.body(body.into()).expect("request builds");
        self.send(req).await
    }

    /// Sends a request built by the caller.
    pub async fn send(&self, req: Request<Body>) -> Reply {
        let response = self
            .router
            .clone()
            .oneshot(req)
            .await
            .expect("the router never fails");
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body reads");
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.call(Method::GET, uri, None, Body::empty()).await
    }

    /// POST or PUT of a JSON value.
    pub async fn send_json(&self, method: Method, uri: &str, value: &Value) -> Reply {
        self.call(
            method,
            uri,
            Some("application/json"),
            serde_json::to_vec(value).unwrap(),
        )
        .await
    }

    /// Every workload as stored, with its revision: what a failed request must not change.
    pub async fn stored_workloads(&self) -> Vec<(WorkloadDefinition, u64)> {
        self.store
            .list_obj::<WorkloadDefinition>("")
            .await
            .unwrap()
            .into_iter()
            .map(|v| (v.value, v.revision))
            .collect()
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON; panics with the body if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `error.code` of an error body.
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {}", self.text()))
            .to_owned()
    }

    /// The `field`s of an error body's details.
    pub fn fields(&self) -> Vec<String> {
        self.json()["error"]["details"]
            .as_array()
            .map(|d| {
                d.iter()
                    .map(|x| x["field"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Panics unless the status is `status`, showing the body.
    pub fn expect(self, status: StatusCode) -> Self {
        assert_eq!(self.status, status, "body: {}", self.text());
        self
    }
}

/// A valid workload as JSON: `replicas` of one container of `cpu` millicores and 64 MB.
pub fn workload_json(name: &str, replicas: u32, cpu: u64) -> Value {
    serde_json::json!({
        "name": name,
        "replicas": replicas,
        "containers": [{
            "name": "main",
            "image": "example/app:1",
            "resources": {"cpu_millicores": cpu, "memory_mb": 64}
        }]
    })
}

/// Polls `check` until it returns `Some`, for at most 10 seconds.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    for _ in 0..500 {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never happened: {what}");
}
