//! Gossip for a cluster member: chitchat over UDP (`cluster_manager_interface`'s
//! [`GossipClusterManager`]) as the core's [`Gossip`], the fast layer of liveness (see
//! `orchestrator_core::cluster::gossip` and docs/cluster.md, "Liveness").

use crate::config::GossipSettings;
use anyhow::{Context, Result};
use async_trait::async_trait;
use cluster_manager_interface::{ClusterManager, GossipClusterManager, GossipConfig};
use orchestrator_core::cluster::gossip::{Gossip, Peer};
use orchestrator_core::cluster::records::{MemberRecord, MEMBERS_PREFIX};
use orchestrator_shared_types::Node;
use state_store_interface::{StateStore, StoreExt};
use std::net::SocketAddr;
use std::sync::Arc;

/// The core's view of this daemon's chitchat.
pub struct ChitchatGossip(pub Arc<GossipClusterManager>);

#[async_trait]
impl Gossip for ChitchatGossip {
    fn cluster_manager(&self) -> Arc<dyn ClusterManager> {
        self.0.clone()
    }

    async fn set_store_reachable(&self, reachable: bool) {
        self.0.set_store_reachable(reachable).await;
    }

    async fn peers(&self) -> Vec<Peer> {
        self.0
            .peers()
            .await
            .into_iter()
            .map(|p| Peer {
                node: p.node,
                live: p.live,
                store_reachable: p.store_reachable,
            })
            .collect()
    }

    fn address(&self) -> String {
        self.0.gossip_addr().to_string()
    }

    async fn meet(&self, addresses: Vec<String>) {
        let addrs: Vec<SocketAddr> = addresses.iter().filter_map(|a| a.parse().ok()).collect();
        self.0.gossip_with(&addrs);
    }
}

/// Starts gossiping as `node` (whose `address` is the advertised API address) in cluster
/// `cluster_id`. Listens on `--gossip-listen`, else on the API's host with a port of the
/// system's choosing (the others read it in this daemon's member record). Seeds: `--join` plus
/// the gossip addresses of the members `store` holds.
pub async fn start(
    settings: &GossipSettings,
    node: &Node,
    cluster_id: &str,
    api: SocketAddr,
    store: &dyn StateStore,
) -> Result<Arc<GossipClusterManager>> {
    let listen = settings
        .listen
        .unwrap_or_else(|| SocketAddr::new(api.ip(), 0));
    // On every interface, the others reach this daemon at the host of its advertised API
    // address (on the port bound, when the port is 0).
    let advertise = if listen.ip().is_unspecified() {
        let advertised_api = tokio::net::lookup_host(&node.address)
            .await
            .ok()
            .and_then(|mut a| a.next());
        let Some(host) = advertised_api
            .map(|a| a.ip())
            .filter(|ip| !ip.is_unspecified())
        else {
            anyhow::bail!(
                "gossiping on {listen} (every interface): pass --advertise with this daemon's address, whose host the others gossip with"
            );
        };
        Some(SocketAddr::new(host, listen.port()))
    } else {
        None
    };
    let mut seeds = settings.join.clone();
    let members = store
        .list_obj::<MemberRecord>(MEMBERS_PREFIX)
        .await
        .context("listing the members to gossip with")?;
    seeds.extend(
        members
            .into_iter()
            .filter(|m| m.value.node != node.id)
            .filter_map(|m| m.value.gossip),
    );
    seeds.sort();
    seeds.dedup();
    let mut config = GossipConfig::new(node.clone(), cluster_id, listen).with_seeds(seeds);
    config.advertise = advertise;
    let gossip = GossipClusterManager::start(config)
        .await
        .with_context(|| format!("starting gossip on {listen}"))?;
    tracing::info!(gossip = %gossip.gossip_addr(), "gossiping");
    Ok(Arc::new(gossip))
}
