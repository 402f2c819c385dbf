//! [`ApiState`]: what every handler needs, cheap to clone (axum clones it per request).

use crate::middleware::HttpMetrics;
use orchestrator_core::{CoreMetrics, OrchestratorHandle};
use prometheus_client::registry::Registry;
use state_store_interface::StateStore;
use std::sync::Arc;
use tokio::sync::watch;

/// Facts about the server that do not change while it runs, shown by `GET /api/v1/cluster`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerInfo {
    /// Server version (defaults to this crate's version).
    pub version: String,
    /// The store in use, e.g. `redb:/var/lib/orchestrator` or `memory`.
    pub store: String,
    /// The runtime in use, e.g. `youki` or `simulated`.
    pub runtime: String,
}

impl ServerInfo {
    /// Facts for a server with this store and runtime, at this crate's version.
    pub fn new(store: impl Into<String>, runtime: impl Into<String>) -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            store: store.into(),
            runtime: runtime.into(),
        }
    }
}

/// The state shared by the API's handlers.
#[derive(Clone, Debug)]
pub struct ApiState {
    handle: OrchestratorHandle,
    metrics: Arc<CoreMetrics>,
    info: Arc<ServerInfo>,
    http: Arc<HttpMetrics>,
    /// The core's and the HTTP metrics, registered once (the registry reads their live values).
    registry: Arc<Registry>,
    /// Set once streaming responses must end (see [`ApiState::end_streams`]).
    streams_end: Arc<watch::Sender<bool>>,
}

impl ApiState {
    /// State for an API in front of the orchestrator behind `handle`, whose loop keeps `metrics`
    /// (`Orchestrator::metrics()`).
    pub fn new(handle: OrchestratorHandle, metrics: Arc<CoreMetrics>, info: ServerInfo) -> Self {
        let http = Arc::new(HttpMetrics::default());
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        http.register(&mut registry);
        Self {
            handle,
            metrics,
            info: Arc::new(info),
            http,
            registry: Arc::new(registry),
            streams_end: Arc::new(watch::Sender::new(false)),
        }
    }

    /// Ends the responses that stream (followed logs) and makes new ones end at once, so that a
    /// graceful shutdown, which waits for the responses in flight, is not held up by clients
    /// that never hang up. [`crate::serve`] calls it when its shutdown signal fires; a server
    /// run another way (e.g. with more routes) calls it from its own shutdown future.
    pub fn end_streams(&self) {
        self.streams_end.send_replace(true);
    }

    /// Becomes `true` once [`ApiState::end_streams`] was called.
    pub(crate) fn streams_ended(&self) -> watch::Receiver<bool> {
        self.streams_end.subscribe()
    }

    /// The orchestrator's handle.
    pub fn handle(&self) -> &OrchestratorHandle {
        &self.handle
    }

    /// The store, for reads.
    pub fn store(&self) -> &Arc<dyn StateStore> {
        self.handle.store()
    }

    /// The loop's counters.
    pub fn core_metrics(&self) -> &CoreMetrics {
        &self.metrics
    }

    /// The server's static facts.
    pub fn info(&self) -> &ServerInfo {
        &self.info
    }

    pub(crate) fn http_metrics(&self) -> &Arc<HttpMetrics> {
        &self.http
    }

    /// The registry of the long-lived metrics (the core's and the HTTP ones).
    pub(crate) fn metrics_registry(&self) -> &Registry {
        &self.registry
    }
}
