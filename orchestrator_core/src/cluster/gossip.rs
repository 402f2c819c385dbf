//! [`Gossip`]: the fast layer of liveness, as a member uses it. The daemon implements it over
//! chitchat (`cluster_manager_interface`'s gossip manager); the core only needs these four
//! things of it, so it does not depend on the gossip crate.
//!
//! Two layers of truth (see docs/cluster.md, "Liveness"): gossip suspicion is fast (a killed
//! daemon is seen dead in about a second), the etcd lease is authoritative (a daemon is never
//! *kept* on gossip's word once its lease is gone). The leader counts a node `Down` on
//! whichever layer says so first, and fences it by deleting its assignments
//! ([`super::fence`]); a daemon cut off from the store asks gossip whether anyone could have
//! replaced its containers before it stops them.

use async_trait::async_trait;
use cluster_manager_interface::ClusterManager;
use orchestrator_shared_types::NodeId;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Another daemon as gossip sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Its node.
    pub node: NodeId,
    /// Whether gossip hears from it now.
    pub live: bool,
    /// Whether it says it reaches the store now.
    pub store_reachable: bool,
}

/// The gossip layer of one member; see the module docs.
#[async_trait]
pub trait Gossip: Send + Sync {
    /// The nodes as gossip sees them: `Ready` (or `NotReady`) while live, `Down` once dead.
    fn cluster_manager(&self) -> Arc<dyn ClusterManager>;

    /// Tells the others whether this daemon reaches the store now.
    async fn set_store_reachable(&self, reachable: bool);

    /// Every other daemon gossip knows of, live or dead.
    async fn peers(&self) -> Vec<Peer>;

    /// Where this daemon gossips (its advertised address), for the member record.
    fn address(&self) -> String;

    /// Gossips with these addresses now (members that gossip has not heard yet: they may have
    /// started after this daemon read the member records for its seeds).
    async fn meet(&self, addresses: Vec<String>);
}

/// How often a member tells gossip whether it reaches the store, and meets unheard members.
const PUBLISH_EVERY: Duration = Duration::from_millis(500);

/// Until `cancel`, every [`PUBLISH_EVERY`]: tells `gossip` whether this daemon reaches the
/// store now (`reachable`: its last probe answered and it holds its lease), which a daemon cut
/// off from the store reads in its peers' gossip ([`super::fence::cut_off_decision`]); and
/// has it meet the members (`members`: node and gossip address) it has never heard.
pub async fn tend(
    gossip: Arc<dyn Gossip>,
    reachable: impl Fn() -> bool + Send,
    members: impl Fn() -> Vec<(NodeId, String)> + Send,
    cancel: CancellationToken,
) {
    loop {
        gossip.set_store_reachable(reachable()).await;
        let heard: Vec<NodeId> = gossip.peers().await.into_iter().map(|p| p.node).collect();
        let unheard: Vec<String> = members()
            .into_iter()
            .filter(|(node, _)| !heard.contains(node))
            .map(|(_, address)| address)
            .collect();
        if !unheard.is_empty() {
            tracing::debug!(?unheard, "gossiping with members not heard yet");
            gossip.meet(unheard).await;
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(PUBLISH_EVERY) => {}
        }
    }
}
