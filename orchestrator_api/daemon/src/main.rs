//! `orchestratord`: the orchestrator daemon. By default one process with the embedded store
//! (redb, in the data directory), this machine as the cluster's one node, the reconcile loop and
//! the REST API. With `--etcd`, a member of a cluster whose state is in etcd: this machine's node
//! agent, a candidate for the leadership (the leader runs the loop), and an API server.
//!
//! Shutdown: the first SIGINT/SIGTERM stops accepting requests and drains the loop (operations in
//! flight finish, everything is persisted); a second one exits at once. Containers keep running
//! across a restart and are adopted by the next daemon.
//!
//! This package holds the wiring only: the API is the `orchestrator_api` library, the store,
//! runtime and membership implementations live in their interface crates behind features.
//!
//! # Layout
//! * `main.rs` — start-up (logging, store, node, runtime, loop, listener), the optional MCP
//!   endpoint, signal handling and the graceful drain.
//! * `cluster` — cluster mode (`--etcd`): joining the cluster in etcd as a member.
//! * `gossip` — chitchat gossip, the fast layer of a member's liveness.
//! * `watchdog` — kills a member's containers once its daemon is gone for a lease TTL.
//! * `config` — flags, environment variables and the TOML/YAML config file, merged.
//! * `auth` — the API token file (`--tokens`): read, checked, reloaded on SIGHUP.
//! * `tls` — HTTPS (`--tls-cert`, `--tls-key`) with rustls.
//! * `node` — this machine as the cluster's node: name and resources read from the OS.
//! * `runtime` — the container runtime: youki (or runc) through `OciRuntime`, or the simulated
//!   one.
//! * `benches/` — `rest_load` (open-loop REST load against a running daemon, driven by
//!   `bench/rest-load.sh`) and `containers` (real containers against a raw youki loop).
//! * `tests/` — black-box tests of the binary through `orchestrator_testkit`.

mod auth;
mod cluster;
mod config;
mod gossip;
mod node;
mod runtime;
mod tls;
mod watchdog;

use anyhow::{Context, Result};
use clap::Parser;
use cluster_manager_interface::StaticClusterManager;
use config::{Config, LogFormat, RuntimeKind};
use orchestrator_api::{ApiState, ServerInfo, Tokens};
use orchestrator_core::{CoreMetrics, OrchestratorBuilder};
use state_store_interface::RedbStore;
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(watchdog::COMMAND) {
        return watchdog::run(&args[2..]);
    }
    let config = Config::load(config::Cli::parse())?;
    init_logging(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(config))
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(config: Config) -> Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    // This daemon adopts the containers a previous one's watchdog guards.
    watchdog::stop_previous(&config.data_dir);
    let this_node = node::this_machine(&config)?;
    tracing::info!(node = %this_node.id, capacity = %this_node.capacity, allocatable = %this_node.allocatable, "this machine is a node");
    let node_runtime = runtime::build(&config, &this_node.id).await?;
    let runtime = node_runtime.runtime.clone();
    let listener =
        listen(config.listen).with_context(|| format!("listening on {}", config.listen))?;
    let local = listener.local_addr()?;
    let (state, running) = match &config.cluster {
        None => {
            let store =
                Arc::new(RedbStore::open(&config.data_dir).with_context(|| {
                    format!("opening the store in {}", config.data_dir.display())
                })?);
            let cluster = Arc::new(StaticClusterManager::new());
            cluster.upsert_node(this_node);
            let orchestrator = OrchestratorBuilder::new()
                .store(store.clone())
                .runtime(runtime)
                .cluster_manager(cluster)
                .spawn()
                .await
                .context("starting the reconcile loop")?;
            let state = ApiState::new(
                orchestrator.handle(),
                orchestrator.metrics(),
                ServerInfo::new(store.describe(), config.runtime.to_string()),
            );
            (state, Running::Single(orchestrator))
        }
        Some(cluster_config) => {
            let metrics = Arc::new(CoreMetrics::default());
            let node_id = this_node.id.clone();
            let joined = cluster::join(
                &config,
                cluster_config,
                this_node,
                local,
                runtime.clone(),
                metrics.clone(),
            )
            .await?;
            if config.runtime == RuntimeKind::Youki && cluster_config.stop_on_store_loss {
                watchdog::start(
                    &config.data_dir,
                    &config.cgroup_parent,
                    cluster_config.lease_ttl,
                )?;
            }
            let state = ApiState::new(
                joined.member.handle(),
                metrics,
                ServerInfo::new(joined.store_name.clone(), config.runtime.to_string()),
            )
            .with_membership(joined.member.membership())
            .with_agent(orchestrator_api::AgentApi {
                node: node_id.clone(),
                runtime: runtime.clone(),
                cluster_token: cluster_config.token.clone(),
            });
            (state, Running::Cluster(joined, runtime, node_id))
        }
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if let Running::Cluster(joined, ..) = &running {
        // The store was reset or replaced: stop serving and exit non-zero (below), leaving the
        // containers alone.
        let failure = joined.member.failure();
        let stop = stop_tx.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = failure.failed() => { let _ = stop.send(true); }
                () = stop.closed() => {}
            }
        });
    }
    tokio::spawn(watch_signals(stop_tx));
    let first_signal = |mut stop: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stop.wait_for(|stop| *stop).await;
    };
    let mut state = state.with_listen_address(local.to_string());
    if let Some(path) = &config.tokens {
        let tokens = Arc::new(Tokens::new(&auth::read_tokens(path)?));
        tracing::info!(file = %path.display(), tokens = tokens.len(), "API tokens loaded: every request needs one");
        tokio::spawn(auth::reload_on_sighup(
            path.clone(),
            tokens.clone(),
            first_signal(stop_rx.clone()),
        ));
        state = state.with_tokens(tokens);
    }
    let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
    let mut app = orchestrator_api::router(state.clone());
    if config.mcp {
        // With TLS, the MCP tools call the API over a plain listener of their own on loopback
        // (the certificate may not name 127.0.0.1); it checks tokens like the main one.
        let api_addr = match &tls {
            None => local,
            Some(_) => {
                let internal = listen(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
                    .context("listening on loopback for the MCP endpoint's API calls")?;
                let addr = internal.local_addr()?;
                tokio::spawn(orchestrator_api::serve(
                    internal,
                    state.clone(),
                    first_signal(stop_rx.clone()),
                ));
                addr
            }
        };
        let mcp = mcp_endpoint(
            local,
            api_addr,
            config.mcp_read_only,
            first_signal(stop_rx.clone()),
        )?;
        app = app.merge(orchestrator_api::auth::protect(
            axum::Router::new().nest_service("/mcp", mcp),
            &state,
        ));
    }
    tracing::info!(
        listen = %local,
        data_dir = %config.data_dir.display(),
        mcp = config.mcp.then_some("/mcp"),
        mcp_read_only = config.mcp_read_only,
        tls = tls.is_some(),
        tokens = config.tokens.is_some(),
        "orchestratord ready"
    );
    let shutdown = {
        let signal = first_signal(stop_rx.clone());
        let streams = state.clone();
        // Followed logs would hold the graceful shutdown up forever.
        async move {
            signal.await;
            streams.end_streams();
        }
    };
    match tls {
        None => {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .with_graceful_shutdown(shutdown)
            .await
        }
        Some(acceptor) => {
            tls::serve(tls::TlsListener::new(listener, acceptor)?, app, shutdown).await
        }
    }
    .context("serving the API")?;
    if let Running::Cluster(joined, ..) = &running {
        if let Some(reason) = joined.member.failure().reason() {
            // Nothing is drained or resigned: every store call would fail, and the containers
            // are left as they run for whoever restores the store (no leader can replace them:
            // the watchdog must not kill them either).
            watchdog::stop_previous(&config.data_dir);
            tracing::error!(
                %reason,
                "the store was reset or replaced ({reason}): this daemon stops: restore etcd \
                 from a backup, or start a new cluster with an empty data dir"
            );
            std::process::exit(EXIT_STORE_RESET);
        }
    }
    tracing::info!("API stopped; draining the reconcile loop");
    match running {
        Running::Single(orchestrator) => orchestrator.shutdown().await,
        Running::Cluster(joined, runtime, node) => {
            joined.shutdown().await;
            // Nothing of this node runs (a cluster taken down): the watchdog has nothing to
            // guard, and must not kill what a new daemon with the same cgroup parent starts.
            let running = runtime
                .list(&node)
                .await
                .map(|list| list.iter().filter(|c| !c.state.has_exited()).count());
            if running.is_ok_and(|n| n == 0) {
                watchdog::stop_previous(&config.data_dir);
            }
        }
    }
    // After the loop or the agent: their last calls may still go through the probes.
    node_runtime.shutdown().await;
    tracing::info!("bye");
    Ok(())
}

/// Exit status of a cluster daemon whose store was reset or replaced.
const EXIT_STORE_RESET: i32 = 3;

/// What runs behind the API.
enum Running {
    /// The loop of a single-node daemon.
    Single(orchestrator_core::Orchestrator),
    /// A cluster member (agent, candidate, mirror) and its gossip; the local runtime and node.
    Cluster(
        cluster::Joined,
        Arc<dyn container_runtime_interface::ContainerRuntime>,
        orchestrator_shared_types::NodeId,
    ),
}

/// The MCP endpoint (`--mcp`): the tools of `orchestrator-mcp` over streamable HTTP, calling
/// the REST API at `api_addr` (loopback when it listens on every interface) with each caller's
/// own token. Its sessions end when `shutdown` completes, so a graceful stop is not held up by
/// them.
fn mcp_endpoint(
    local: std::net::SocketAddr,
    mut api_addr: std::net::SocketAddr,
    read_only: bool,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<mcp_server::McpHttpService> {
    if api_addr.ip().is_unspecified() {
        api_addr.set_ip(if api_addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let api = mcp_server::ApiClient::new(&format!("http://{api_addr}"), None)
        .context("configuring the MCP endpoint's API client")?;
    let server = mcp_server::OrchestratorMcp::new(
        api,
        mcp_server::Options {
            read_only,
            ..mcp_server::Options::default()
        },
    );
    // Host headers accepted besides localhost: the address it listens on, when specific.
    let hosts = (!local.ip().is_unspecified()).then(|| local.ip().to_string());
    Ok(mcp_server::streamable_http_service(server, hosts, shutdown))
}

/// Binds the API socket with a listen backlog of 1024 (the kernel caps it at `somaxconn`):
/// tokio's default of 128 drops the SYNs of a burst of new clients, which then wait a
/// retransmission (~1 s) before they are even accepted.
fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// First SIGINT/SIGTERM: ask for a graceful stop. Second: exit now.
async fn watch_signals(stop: tokio::sync::watch::Sender<bool>) {
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return;
    };
    for n in 0.. {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        if n == 0 {
            tracing::info!("signal received: shutting down gracefully (again to force)");
            let _ = stop.send(true);
        } else {
            tracing::warn!("second signal: exiting now");
            std::process::exit(130);
        }
    }
}
