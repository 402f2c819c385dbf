//! Cluster mode (`--etcd`): the store is etcd, and this daemon joins the cluster in it as a
//! member (node agent, candidate for the leadership, API server); see
//! `orchestrator_core::cluster`.

use crate::config::{ClusterConfig, Config};
use anyhow::{Context, Result};
use async_trait::async_trait;
use container_runtime_interface::{ContainerRuntime, LogChunk, LogRequest, RuntimeError};
use orchestrator_core::cluster::agent::AgentConfig;
use orchestrator_core::cluster::leader::CandidateConfig;
use orchestrator_core::cluster::member::{check_cluster, ClusterMember, MemberConfig};
use orchestrator_core::cluster::records::LeaderRecord;
use orchestrator_core::cluster::runtime::{ClusterRuntimeConfig, RemoteLogs};
use orchestrator_core::{CoreMetrics, OrchestratorConfig};
use orchestrator_shared_types::{ContainerId, Node};
use state_store_interface::EtcdStore;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// Reads logs of containers on other nodes from their agents' API, with the cluster token; one
/// client (and connection pool) per agent address.
struct AgentLogs {
    token: Option<String>,
    clients: Mutex<HashMap<String, orchestrator_client::AgentClient>>,
}

impl AgentLogs {
    fn client(&self, address: &str) -> Result<orchestrator_client::AgentClient, RuntimeError> {
        let mut clients = self.clients.lock().expect("agent clients lock");
        if let Some(c) = clients.get(address) {
            return Ok(c.clone());
        }
        let client =
            orchestrator_client::AgentClient::new(&format!("http://{address}"), self.token.clone())
                .map_err(|e| remote_failed(address, &e))?;
        clients.insert(address.to_owned(), client.clone());
        Ok(client)
    }
}

#[async_trait]
impl RemoteLogs for AgentLogs {
    async fn logs(
        &self,
        address: &str,
        id: &ContainerId,
        request: LogRequest,
    ) -> Result<LogChunk, RuntimeError> {
        self.client(address)?
            .container_logs(id, &request)
            .await
            .map_err(|e| remote_failed(address, &e))
    }
}

fn remote_failed(address: &str, e: &dyn std::fmt::Display) -> RuntimeError {
    RuntimeError::Failed {
        operation: "logs",
        message: format!("reading the logs from the agent at {address}: {e}"),
        transient: true,
    }
}

/// What a joined daemon runs.
pub struct Joined {
    /// The member.
    pub member: ClusterMember,
    /// Its store, for `cluster info`'s description.
    pub store_name: String,
    /// Its gossip, if it gossips (stopped after the member).
    pub gossip: Option<Arc<cluster_manager_interface::GossipClusterManager>>,
}

impl Joined {
    /// Stops the member, then gossip (the others then see this daemon dead).
    pub async fn shutdown(self) {
        self.member.shutdown().await;
        if let Some(gossip) = self.gossip {
            gossip.shutdown().await;
        }
    }
}

/// Connects to etcd and joins the cluster there as `node`, reachable at `local` (or the
/// advertised address).
pub async fn join(
    config: &Config,
    cluster: &ClusterConfig,
    mut node: Node,
    local: SocketAddr,
    runtime: Arc<dyn ContainerRuntime>,
    metrics: Arc<CoreMetrics>,
) -> Result<Joined> {
    let store = EtcdStore::connect(&cluster.etcd, &cluster.prefix)
        .await
        .with_context(|| format!("connecting to etcd at {}", cluster.etcd.join(",")))?;
    let store_name = store.describe();
    // Where else this etcd holds clusters: a daemon that finds none under its own prefix
    // refuses to create one while there are others (unless --new-cluster).
    let other_clusters: Vec<String> = store
        .cluster_prefixes()
        .await
        .context("listing the clusters in etcd")?
        .into_iter()
        .filter(|p| p != store.prefix())
        .collect();
    node.address = match &cluster.advertise {
        Some(a) => a.clone(),
        None if local.ip().is_unspecified() => anyhow::bail!(
            "listening on {local} (every interface): pass --advertise HOST:PORT, the address \
             other daemons reach this one at"
        ),
        None => local.to_string(),
    };
    let remote_logs: Arc<dyn RemoteLogs> = Arc::new(AgentLogs {
        token: cluster.token.clone(),
        clients: Mutex::new(HashMap::new()),
    });
    let mut member_config = MemberConfig {
        agent: AgentConfig::new(node.clone()),
        candidate: CandidateConfig {
            leader: LeaderRecord {
                node: node.id.clone(),
                address: node.address.clone(),
            },
            local_runtime: runtime.clone(),
            remote_logs,
            scheduler: Arc::new(scheduler_interface::BinPackScheduler::new()),
            // Starts wait for the node's report (a store round trip or two and the agent's
            // start): more of them in flight than on one node.
            orchestrator: OrchestratorConfig {
                max_concurrent_operations: 256,
                ..OrchestratorConfig::default()
            },
            runtime: ClusterRuntimeConfig::default(),
            metrics,
        },
        lease_ttl: cluster.lease_ttl,
        cluster_token: cluster.token.clone(),
        data_dir: Some(config.data_dir.clone()),
        store_name: store_name.clone(),
        other_clusters,
        new_cluster: cluster.new_cluster,
        gossip: None,
        stop_on_store_loss: cluster.stop_on_store_loss,
    };
    let gossip = match &cluster.gossip {
        Some(settings) => {
            // Gossip refuses peers of other clusters: it needs the cluster's id first.
            let cluster_id = check_cluster(&store, &member_config)
                .await
                .context("joining the cluster")?;
            let gossip = crate::gossip::start(settings, &node, &cluster_id, local, &store).await?;
            member_config.gossip = Some(Arc::new(crate::gossip::ChitchatGossip(gossip.clone())));
            Some(gossip)
        }
        None => None,
    };
    let member = match ClusterMember::join(Arc::new(store), runtime, member_config).await {
        Ok(member) => member,
        Err(e) => {
            if let Some(gossip) = gossip {
                gossip.shutdown().await;
            }
            return Err(e).context("joining the cluster");
        }
    };
    Ok(Joined {
        member,
        store_name,
        gossip,
    })
}
