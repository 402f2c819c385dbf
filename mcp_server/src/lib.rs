//! The MCP server of the orchestrator: lets an AI assistant run the cluster through tools,
//! resources and prompts, speaking the Model Context Protocol with the official `rmcp` SDK.
//!
//! It is a client of the REST API (`docs/api.md`) through `orchestrator_client`, the async
//! client `orchestrator-cli` uses too: every tool is one or a few API calls, so it sees and
//! changes exactly what the CLI does. The tools' argument and result schemas are derived
//! (schemars) from the shared types where a tool takes or returns them. Two ways in:
//! * `orchestrator-mcp` (the binary) speaks MCP over stdio; an MCP client such as Claude Desktop
//!   starts it. `--server URL` names the API, `--token` is sent as `Authorization: Bearer`.
//! * `orchestratord --mcp` mounts `streamable_http_service` (feature `http`) at `/mcp` on the
//!   daemon's own listener, calling the API on the same address.
//!
//! What a model gets is bounded: lists are paged (the API's `limit`/`continue`, with the
//! `continue` token handed back), logs are tailed, every result has a byte cap
//! ([`Options::max_output_bytes`]) with a note saying how to get the rest, and results are
//! compact unless a tool is asked for `detail: true`.
//!
//! Safety: with [`Options::read_only`] the mutating tools are neither listed nor callable;
//! destructive calls (delete, drain, scale to 0) need an explicit `confirm: true`; bad arguments
//! and API errors come back as `isError` results carrying the API's message and field details.
//! Nothing but the protocol is written to stdout.
//!
//! # Layout
//! * [`ApiClient`] and [`ApiError`] — `orchestrator_client`'s `Client` and `ClientError`, under
//!   the names this crate has always exported.
//! * `output` — compact summaries of the API's objects, tool errors, the byte cap.
//! * `tools` — one file per group of tools: `workloads` (list, get, deploy, apply, scale,
//!   delete), `nodes` (list, describe, drain, uncordon), `observe` (cluster status, events,
//!   instances, logs), `scheduling` (explain_pending, plan_deployment).
//! * `resources` — `orchestrator://` resources: the cluster, each workload and node, and lists.
//! * `prompts` — diagnose a failing workload; plan capacity for a new one.
//! * `server` — the `ServerHandler`: server info, the read-only gate, resources.

mod output;
mod prompts;
mod resources;
mod server;
mod tools;

/// The REST API's client (`orchestrator_client::Client`).
pub use orchestrator_client::Client as ApiClient;
/// Why a call to the REST API failed (`orchestrator_client::ClientError`).
pub use orchestrator_client::ClientError as ApiError;
/// Token and trusted certificates of the [`ApiClient`] (`orchestrator_client::ClientOptions`).
pub use orchestrator_client::ClientOptions as ApiClientOptions;

use rmcp::handler::server::router::prompt::PromptRouter;
use rmcp::handler::server::router::tool::ToolRouter;
#[cfg(feature = "http")]
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
#[cfg(feature = "http")]
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::ServiceExt;
use std::sync::Arc;

/// Default cap on the JSON of one result: 32 KiB, a few thousand tokens.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 32 * 1024;

/// Smallest cap accepted: below this a single workload may not fit.
pub const MIN_MAX_OUTPUT_BYTES: usize = 4 * 1024;

/// Tools that change the cluster: hidden and refused in read-only mode.
pub const MUTATING_TOOLS: &[&str] = &[
    "deploy_workload",
    "apply_manifest",
    "scale_workload",
    "delete_workload",
    "drain_node",
    "uncordon_node",
    "rollback_workload",
];

/// How the server behaves.
#[derive(Clone, Debug)]
pub struct Options {
    /// Expose only the tools that read: the mutating ones are not listed and are refused.
    pub read_only: bool,
    /// Cap on the JSON of one tool result or resource, in bytes (at least
    /// [`MIN_MAX_OUTPUT_BYTES`]).
    pub max_output_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            read_only: false,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
        }
    }
}

/// Why serving MCP stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The MCP session could not start (the client never completed the handshake).
    #[error("starting the MCP session")]
    Start(#[source] Box<rmcp::service::ServerInitializeError>),
    /// The task running the session failed.
    #[error("running the MCP session")]
    Run(#[source] tokio::task::JoinError),
}

/// The MCP server: tools, resources and prompts over one orchestrator's REST API.
///
/// Cheap to clone: the API client and the routers are shared or reference-counted, so the
/// streamable HTTP transport can make one per request.
#[derive(Clone)]
pub struct OrchestratorMcp {
    api: ApiClient,
    options: Arc<Options>,
    tool_router: ToolRouter<OrchestratorMcp>,
    prompt_router: PromptRouter<OrchestratorMcp>,
}

impl std::fmt::Debug for OrchestratorMcp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrchestratorMcp")
            .field("server", &self.api.server())
            .field("options", &self.options)
            .finish()
    }
}

impl OrchestratorMcp {
    /// A server calling the API through `api`.
    pub fn new(api: ApiClient, mut options: Options) -> Self {
        options.max_output_bytes = options.max_output_bytes.max(MIN_MAX_OUTPUT_BYTES);
        let mut tool_router = Self::workload_tools()
            + Self::node_tools()
            + Self::observe_tools()
            + Self::rollout_tools()
            + Self::scheduling_tools();
        if options.read_only {
            for name in MUTATING_TOOLS {
                tool_router.remove_route(name);
            }
        }
        OrchestratorMcp {
            api,
            options: Arc::new(options),
            tool_router,
            prompt_router: Self::prompt_router(),
        }
    }

    /// The names of the tools this server lists, sorted.
    pub fn tool_names(&self) -> Vec<String> {
        self.tool_router
            .list_all()
            .into_iter()
            .map(|t| t.name.into_owned())
            .collect()
    }

    /// Serves MCP over stdin/stdout until the client closes the connection.
    pub async fn serve_stdio(self) -> Result<(), ServeError> {
        let running = self
            .serve(rmcp::transport::stdio())
            .await
            .map_err(|e| ServeError::Start(Box::new(e)))?;
        let reason = running.waiting().await.map_err(ServeError::Run)?;
        tracing::info!(?reason, "MCP session ended");
        Ok(())
    }
}

/// The streamable HTTP transport of an [`OrchestratorMcp`], an axum-compatible tower service.
#[cfg(feature = "http")]
pub type McpHttpService = StreamableHttpService<OrchestratorMcp, LocalSessionManager>;

/// The streamable HTTP transport serving `server`, to mount in an axum router with
/// `nest_service("/mcp", ...)`. `allowed_hosts` are the `Host` headers accepted besides
/// `localhost`, `127.0.0.1` and `::1` (a guard against DNS rebinding). When `shutdown`
/// completes, open sessions and streams end, so a graceful HTTP shutdown is not held up.
/// Needs the `http` feature.
#[cfg(feature = "http")]
pub fn streamable_http_service(
    server: OrchestratorMcp,
    allowed_hosts: impl IntoIterator<Item = String>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> McpHttpService {
    let mut config = StreamableHttpServerConfig::default();
    config.allowed_hosts.extend(allowed_hosts);
    let cancel = config.cancellation_token.clone();
    tokio::spawn(async move {
        shutdown.await;
        cancel.cancel();
    });
    StreamableHttpService::new(
        // Per request on protocol 2026-07-28, per session on older ones: a clone is cheap.
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    )
}
