//! `orchestrator-mcp`: the orchestrator's MCP server over stdio, for AI assistants.
//!
//! An MCP client (Claude Desktop, Claude Code, ...) starts it and speaks JSON-RPC on its stdin
//! and stdout; every tool call becomes REST calls to orchestratord. Stdout carries the protocol
//! and nothing else: logs go to stderr.

use anyhow::{Context, Result};
use clap::Parser;
use mcp_server::{ApiClient, Options, OrchestratorMcp, DEFAULT_MAX_OUTPUT_BYTES};

/// Command-line flags.
#[derive(Debug, Parser)]
#[command(
    name = "orchestrator-mcp",
    version,
    about = "MCP server (stdio) of the orchestrator: lets an AI assistant run the cluster through orchestratord's REST API"
)]
struct Cli {
    /// Base URL of orchestratord's REST API
    #[arg(
        long,
        env = "ORCHESTRATOR_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,
    /// Bearer token sent to the API (Authorization: Bearer TOKEN)
    #[arg(long, env = "ORCHESTRATOR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// PEM certificates to trust for an https:// server (its CA, or its self-signed certificate)
    #[arg(long, env = "ORCHESTRATOR_CA_CERT")]
    ca_cert: Option<std::path::PathBuf>,
    /// Expose only the tools that read: nothing that changes the cluster is listed or callable
    #[arg(long, env = "ORCHESTRATOR_MCP_READ_ONLY")]
    read_only: bool,
    /// Cap on the JSON of one tool result, in bytes (at least 4096)
    #[arg(long, env = "ORCHESTRATOR_MCP_MAX_OUTPUT_BYTES", default_value_t = DEFAULT_MAX_OUTPUT_BYTES)]
    max_output_bytes: usize,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // Stdout is the protocol channel: every log line goes to stderr, without colours (clients
    // show stderr as plain text).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();

    let ca_pem = cli
        .ca_cert
        .as_ref()
        .map(|path| {
            std::fs::read(path)
                .with_context(|| format!("reading the CA certificate {}", path.display()))
        })
        .transpose()?;
    let api = ApiClient::with_options(
        &cli.server,
        mcp_server::ApiClientOptions {
            token: cli.token,
            ca_pem,
        },
    )
    .context("configuring the API client")?;
    let options = Options {
        read_only: cli.read_only,
        max_output_bytes: cli.max_output_bytes,
    };
    tracing::info!(
        server = api.server(),
        read_only = options.read_only,
        "orchestrator-mcp starting on stdio"
    );
    let server = OrchestratorMcp::new(api, options);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime
        .block_on(server.serve_stdio())
        .context("serving MCP on stdio")
}
