//! [`ClusterMember`]: one daemon of a cluster, put together: it checks that the store holds
//! the cluster it belongs to, keeps its lease, is its node's agent, campaigns for the
//! leadership (running the loop while it leads), and answers the API from a [`Mirror`].

use super::agent::{AgentConfig, NodeAgent};
use super::fence::self_fence;
use super::gossip::{tend, Gossip};
use super::guard::{GuardedStore, StoreFailure};
use super::leader::{campaign, CandidateConfig};
use super::lease::LeaseKeeper;
use super::mirror::Mirror;
use super::nodes::StoreClusterManager;
use super::records::ClusterRecord;
use super::runtime::ClusterRuntime;
use super::MembershipSource;
use crate::error::CoreError;
use crate::handle::OrchestratorHandle;
use async_trait::async_trait;
use cluster_manager_interface::ClusterManager;
use container_runtime_interface::ContainerRuntime;
use orchestrator_shared_types::api::{Membership, StoreHealth};
use orchestrator_shared_types::{NodeId, NodeStatus};
use sha2::{Digest, Sha256};
use state_store_interface::{Coordination, Precondition, StateStore, StoreError, StoreExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Everything a member needs besides its store and runtime.
#[derive(Clone)]
pub struct MemberConfig {
    /// The agent's settings, with this machine as a node (its `address` is the advertised
    /// address of this daemon's API).
    pub agent: AgentConfig,
    /// What runs while this daemon leads.
    pub candidate: CandidateConfig,
    /// Time-to-live of this daemon's lease: a dead daemon is noticed (and a dead leader
    /// replaced) within it.
    pub lease_ttl: Duration,
    /// The secret the cluster's daemons share; a daemon with another one is refused.
    pub cluster_token: Option<String>,
    /// Where this daemon remembers the id of the cluster it joined (its data directory), so an
    /// emptied store is noticed rather than silently started over.
    pub data_dir: Option<PathBuf>,
    /// How the store is named in `cluster info` (e.g. its endpoints and prefix).
    pub store_name: String,
    /// Other places of the same store that hold a cluster (etcd: the other key prefixes with a
    /// cluster id). A daemon that finds no cluster at its own place while others exist refuses
    /// to create one, unless `new_cluster`: a wrong prefix must not split a cluster in two.
    pub other_clusters: Vec<String>,
    /// Create a new cluster even though `other_clusters` is not empty.
    pub new_cluster: bool,
    /// The gossip layer, if this daemon gossips: nodes it sees dead are `Down` at once (see
    /// [`super::gossip`]).
    pub gossip: Option<Arc<dyn Gossip>>,
    /// Stop this node's containers once the store was unreachable for a whole lease TTL and
    /// they may have been replaced elsewhere ([`super::fence::self_fence`]).
    pub stop_on_store_loss: bool,
}

/// One running member; see the module docs.
pub struct ClusterMember {
    handle: OrchestratorHandle,
    status: Arc<Status>,
    agent: NodeAgent,
    campaign: JoinHandle<()>,
    /// The fencing and gossip tasks (see [`super::fence`]), ended by `cancel`.
    tasks: Vec<JoinHandle<()>>,
    cancel: CancellationToken,
    failure: StoreFailure,
    _lease: LeaseKeeper,
}

struct Status {
    mirror: Mirror,
    /// The nodes as the API reports them (the lease, and gossip when it gossips).
    nodes: Arc<dyn ClusterManager>,
    store: Arc<dyn StateStore>,
    this_node: NodeId,
    cluster_id: String,
    leading: watch::Receiver<bool>,
}

/// The file in the data directory that remembers the cluster's id.
const CLUSTER_ID_FILE: &str = "cluster-id";

impl ClusterMember {
    /// Joins (or, in an empty store, creates) the cluster in `store` and starts every part.
    pub async fn join(
        store: Arc<dyn Coordination>,
        local_runtime: Arc<dyn ContainerRuntime>,
        config: MemberConfig,
    ) -> Result<Self, CoreError> {
        let guarded = GuardedStore::new(store);
        let failure = guarded.failure();
        let store: Arc<dyn Coordination> = guarded;
        let plain: Arc<dyn StateStore> = store.clone();
        let cluster_id = check_cluster(plain.as_ref(), &config).await?;
        let this_node = config.agent.node.id.clone();
        tracing::info!(cluster = %cluster_id, node = %this_node, store = %config.store_name, "joining the cluster");
        let mirror = Mirror::start(plain.clone(), config.candidate.scheduler.clone())
            .await
            .map_err(CoreError::store("load the cluster's state"))?;
        let lease = LeaseKeeper::start(store.clone(), config.lease_ttl);
        let mut agent_config = config.agent.clone();
        agent_config.gossip_address = config.gossip.as_ref().map(|g| g.address());
        let gossip_nodes = config.gossip.as_ref().map(|g| g.cluster_manager());
        let agent = NodeAgent::start(
            agent_config,
            store.clone(),
            local_runtime.clone(),
            lease.subscribe(),
        )
        .await
        .map_err(CoreError::store("register this node"))?;
        // The API's runtime: logs from any node (it writes nothing).
        let logs_runtime = ClusterRuntime::reader(
            plain.clone(),
            Some((this_node.clone(), local_runtime)),
            config.candidate.remote_logs.clone(),
        );
        // The API's nodes: what the store holds, at once, and what gossip found dead.
        let cluster: Arc<dyn ClusterManager> = Arc::new(
            StoreClusterManager::start(plain.clone(), Duration::ZERO, gossip_nodes.clone())
                .await
                .map_err(CoreError::store("load the nodes"))?,
        );
        let handle = OrchestratorHandle::from_views(
            mirror.reads(plain.clone()),
            cluster.clone(),
            Arc::new(logs_runtime),
            mirror.views(),
        );
        let (leading_tx, leading) = watch::channel(false);
        let cancel = CancellationToken::new();
        let campaign = tokio::spawn(campaign(
            store,
            lease.subscribe(),
            config.candidate.clone(),
            down_grace(config.lease_ttl),
            gossip_nodes,
            leading_tx,
            cancel.clone(),
        ));
        let status = Arc::new(Status {
            mirror,
            nodes: cluster,
            store: plain,
            this_node,
            cluster_id,
            leading,
        });
        let mut tasks = Vec::new();
        if let Some(gossip) = &config.gossip {
            let lease = lease.subscribe();
            let (reachable, members) = (status.clone(), status.clone());
            tasks.push(tokio::spawn(tend(
                gossip.clone(),
                move || reachable.mirror.status().error.is_none() && lease.borrow().is_some(),
                move || {
                    let mut gossip = members.mirror.status().gossip;
                    gossip.retain(|(node, _)| *node != members.this_node);
                    gossip
                },
                cancel.clone(),
            )));
        }
        if config.stop_on_store_loss {
            let status = status.clone();
            let members = move || {
                status
                    .mirror
                    .status()
                    .members
                    .into_iter()
                    .filter(|m| m.node != status.this_node && m.status != NodeStatus::Down)
                    .map(|m| m.node)
                    .collect()
            };
            tasks.push(tokio::spawn(self_fence(
                lease.subscribe(),
                config.gossip.clone(),
                members,
                agent.fencing(),
                cancel.clone(),
            )));
        }
        Ok(Self {
            handle,
            status,
            agent,
            campaign,
            tasks,
            cancel,
            failure,
            _lease: lease,
        })
    }

    /// The handle the API uses.
    pub fn handle(&self) -> OrchestratorHandle {
        self.handle.clone()
    }

    /// Whether this daemon leads now, and its changes.
    pub fn leading(&self) -> watch::Receiver<bool> {
        self.status.leading.clone()
    }

    /// Completes (with the reason) once any part of this member found the store reset or
    /// replaced ([`StoreError::Reset`]: etcd restarted empty, or another etcd answers). From
    /// then on nothing reaches the store (see [`super::guard`]); the daemon must stop without
    /// touching its containers, and an operator decide: restore the store from a backup, or
    /// start a new cluster. Never completes otherwise.
    pub async fn failed(&self) -> String {
        self.failure.failed().await
    }

    /// What [`ClusterMember::failed`] waits on, to hold without borrowing the member.
    pub fn failure(&self) -> StoreFailure {
        self.failure.clone()
    }

    /// What `cluster info` shows.
    pub fn membership(&self) -> Arc<dyn MembershipSource> {
        self.status.clone()
    }

    /// Drains the loop if this daemon leads and resigns, then stops the agent. Containers keep
    /// running; the member record lives until the lease ends.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = self.campaign.await;
        for task in self.tasks {
            let _ = task.await;
        }
        self.agent.shutdown().await;
    }
}

#[async_trait]
impl MembershipSource for Status {
    async fn membership(&self) -> Membership {
        let status = self.mirror.status();
        let store_health = match self.store.revision().await {
            Ok(revision) => StoreHealth {
                reachable: true,
                revision: Some(revision),
                message: status.error.map(|(e, since)| {
                    format!("the view may be stale: the store failed at {since}: {e}")
                }),
            },
            Err(e) => StoreHealth {
                reachable: false,
                revision: Some(status.revision),
                message: Some(e.to_string()),
            },
        };
        // A member gossip found dead is Down before its lease ends.
        let nodes = self.nodes.nodes().await.unwrap_or_default();
        let mut members = status.members;
        for m in &mut members {
            if nodes
                .iter()
                .any(|n| n.id == m.node && n.status == NodeStatus::Down)
            {
                m.status = NodeStatus::Down;
            }
        }
        Membership {
            mode: "etcd".into(),
            cluster_id: Some(self.cluster_id.clone()),
            this_node: self.this_node.clone(),
            leader: status.leader,
            members,
            store_health,
        }
    }
}

/// How long a new leader takes a registered node without a member record for `NotReady`
/// rather than `Down` (see [`super::nodes`]): a lease's TTL (a member whose lease ended in an
/// outage counts it lost within it) plus the time to get a new lease once the store answers
/// (retried at least every second: [`super::lease::GRANT_RETRY`]) and register.
pub fn down_grace(lease_ttl: Duration) -> Duration {
    lease_ttl + Duration::from_secs(2)
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Makes sure `store` holds this daemon's cluster: creates it in an empty store (unless this
/// daemon remembers another), refuses another cluster's or a mismatching token. Returns the
/// cluster's id. [`ClusterMember::join`] calls it; a daemon may call it first, for parts it
/// starts before joining that need the id (gossip refuses peers of other clusters): it is
/// idempotent.
pub async fn check_cluster(
    store: &dyn StateStore,
    config: &MemberConfig,
) -> Result<String, CoreError> {
    let refuse = |reason: String| CoreError::Join { reason };
    let remembered = match &config.data_dir {
        Some(dir) => std::fs::read_to_string(dir.join(CLUSTER_ID_FILE))
            .ok()
            .map(|s| s.trim().to_owned()),
        None => None,
    };
    let token_sha256 = config.cluster_token.as_deref().map(sha256_hex);
    let stored = store
        .get_obj::<ClusterRecord>(super::records::CLUSTER_ID_KEY)
        .await
        .map_err(CoreError::store("read the cluster's identity"))?;
    let record = match stored {
        Some(r) => r.value,
        None => {
            if let Some(id) = &remembered {
                return Err(refuse(format!(
                    "this daemon belongs to cluster {id}, but {} holds no cluster: the store was \
                     emptied or replaced, or the prefix is wrong. Restore the store, fix \
                     --etcd/--etcd-prefix, or remove {} to start a new cluster",
                    config.store_name,
                    config
                        .data_dir
                        .as_ref()
                        .map(|d| d.join(CLUSTER_ID_FILE).display().to_string())
                        .unwrap_or_default()
                )));
            }
            if !config.other_clusters.is_empty() && !config.new_cluster {
                return Err(refuse(format!(
                    "{} holds no cluster, but the same store holds clusters under {}: pass \
                     --etcd-prefix with one of them to join it, or --new-cluster to really \
                     start another cluster here",
                    config.store_name,
                    config
                        .other_clusters
                        .iter()
                        .map(|p| format!("prefix {p:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            let record = ClusterRecord {
                id: uuid::Uuid::new_v4().to_string(),
                token_sha256: token_sha256.clone(),
            };
            match store.put_obj(&record, Precondition::Absent).await {
                Ok(_) => {
                    tracing::info!(cluster = %record.id, "created a new cluster");
                    record
                }
                // Another daemon created it first: join that one.
                Err(StoreError::Conflict { .. }) => {
                    store
                        .get_obj::<ClusterRecord>(super::records::CLUSTER_ID_KEY)
                        .await
                        .map_err(CoreError::store("read the cluster's identity"))?
                        .ok_or_else(|| {
                            refuse("the cluster's identity vanished while joining".into())
                        })?
                        .value
                }
                Err(e) => return Err(CoreError::store("create the cluster")(e)),
            }
        }
    };
    if record.token_sha256 != token_sha256 {
        return Err(refuse(match (&record.token_sha256, &token_sha256) {
            (Some(_), None) => "the cluster requires a cluster token: pass --cluster-token".into(),
            (None, Some(_)) => {
                "the cluster was created without a cluster token, but this daemon has one".into()
            }
            _ => "the cluster token does not match the cluster's (wrong --cluster-token)".into(),
        }));
    }
    if let Some(id) = remembered.filter(|id| *id != record.id) {
        return Err(refuse(format!(
            "this daemon belongs to cluster {id}, but {} holds cluster {}: wrong --etcd or \
             --etcd-prefix, or the store was replaced",
            config.store_name, record.id
        )));
    }
    if let Some(dir) = &config.data_dir {
        std::fs::write(dir.join(CLUSTER_ID_FILE), &record.id).map_err(|e| CoreError::Join {
            reason: format!("cannot remember the cluster's id in {}: {e}", dir.display()),
        })?;
    }
    Ok(record.id)
}
