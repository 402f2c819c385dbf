//! [`ApiState`]: what every handler needs, cheap to clone (axum clones it per request), and
//! [`AgentApi`], what a cluster daemon's node agent serves to the other daemons.

use crate::auth::Tokens;
use crate::middleware::HttpMetrics;
use container_runtime_interface::ContainerRuntime;
use orchestrator_core::cluster::MembershipSource;
use orchestrator_core::{CoreMetrics, OrchestratorHandle};
use orchestrator_shared_types::NodeId;
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

/// What a daemon that is its node's agent serves to the other daemons of its cluster
/// (`/api/v1/agent/...`): the output of the containers its local runtime runs, so that any
/// daemon can answer `logs` for an instance on any node. Set with [`ApiState::with_agent`].
#[derive(Clone)]
pub struct AgentApi {
    /// This daemon's node: the one whose containers `runtime` reads.
    pub node: NodeId,
    /// The local runtime (youki), not the cluster-wide one the leader drives.
    pub runtime: Arc<dyn ContainerRuntime>,
    /// The secret the daemons of the cluster share: when set, agent requests must carry
    /// `Authorization: Bearer <token>`. `None` (or empty) accepts any request, for a cluster
    /// on a trusted network.
    pub cluster_token: Option<String>,
}

impl std::fmt::Debug for AgentApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself: states end up in logs.
        f.debug_struct("AgentApi")
            .field("node", &self.node)
            .field(
                "cluster_token",
                &self.cluster_token.as_ref().map(|_| "<set>"),
            )
            .finish_non_exhaustive()
    }
}

/// The state shared by the API's handlers.
#[derive(Clone)]
pub struct ApiState {
    handle: OrchestratorHandle,
    metrics: Arc<CoreMetrics>,
    info: Arc<ServerInfo>,
    http: Arc<HttpMetrics>,
    /// The core's and the HTTP metrics, registered once (the registry reads their live values).
    registry: Arc<Registry>,
    /// Set once streaming responses must end (see [`ApiState::end_streams`]).
    streams_end: Arc<watch::Sender<bool>>,
    /// Who is in the cluster (a cluster daemon); `None` in single-node mode.
    membership: Option<Arc<dyn MembershipSource>>,
    /// The agent routes' runtime and token (a cluster daemon); `None` answers them 404.
    agent: Option<Arc<AgentApi>>,
    /// Where this server listens, when known (the leader's address in single-node mode).
    listen_address: Option<String>,
    /// The API tokens; `None`: the API is open (loopback quick start).
    tokens: Option<Arc<Tokens>>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("info", &self.info)
            .field("membership", &self.membership.is_some())
            .field("agent", &self.agent)
            .field("listen_address", &self.listen_address)
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
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
            membership: None,
            agent: None,
            listen_address: None,
            tokens: None,
        }
    }

    /// This state, answering `GET /api/v1/cluster` with the membership `source` reports (a
    /// cluster daemon). Without one, the membership shown is that of a single node.
    pub fn with_membership(mut self, source: Arc<dyn MembershipSource>) -> Self {
        self.membership = Some(source);
        self
    }

    /// This state, serving the agent routes (`/api/v1/agent/...`) from `agent`'s local
    /// runtime. Without it they answer 404 "this daemon is not a cluster agent".
    pub fn with_agent(mut self, agent: AgentApi) -> Self {
        self.agent = Some(Arc::new(agent));
        self
    }

    /// This state, knowing that the server listens at `address` (e.g. `10.0.0.5:8080`): the
    /// leader's address shown by `GET /api/v1/cluster` in single-node mode. [`crate::serve`]
    /// sets it from its listener when it was not set.
    pub fn with_listen_address(mut self, address: impl Into<String>) -> Self {
        self.listen_address = Some(address.into());
        self
    }

    /// This state, asking every request for a bearer token of `tokens` (see [`crate::auth`]).
    /// The daemon keeps the `Arc` to reload them.
    pub fn with_tokens(mut self, tokens: Arc<Tokens>) -> Self {
        self.tokens = Some(tokens);
        self
    }

    /// The API tokens, if requests must carry one.
    pub fn tokens(&self) -> Option<&Arc<Tokens>> {
        self.tokens.as_ref()
    }

    /// The membership source, if this is a cluster daemon.
    pub fn membership(&self) -> Option<&Arc<dyn MembershipSource>> {
        self.membership.as_ref()
    }

    /// The agent API, if this daemon serves it.
    pub fn agent(&self) -> Option<&AgentApi> {
        self.agent.as_deref()
    }

    /// Where this server listens, when known.
    pub fn listen_address(&self) -> Option<&str> {
        self.listen_address.as_deref()
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
