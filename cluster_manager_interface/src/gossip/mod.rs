//! [`GossipClusterManager`]: membership and failure detection gossiped with chitchat (Scuttlebutt
//! reconciliation + phi accrual failure detector) over UDP.
//!
//! Every daemon publishes its own [`Node`] (as JSON, key `node`) and a `store_reachable` flag
//! (key `store_reachable`, `"false"` until [`GossipClusterManager::set_store_reachable`]). The
//! chitchat node id is the [`NodeId`]; the generation id is the start time in microseconds, so a
//! restart is a new generation.
//!
//! # How chitchat's quirks are handled (the pure logic is in the private `fold` module)
//! * A new node shows dead until its second heartbeat: a node id is reported only once one of
//!   its generations has been seen live, so nobody sees it `Down` before `Ready`.
//! * A restart is a new generation while the old one lingers dead until the grace period: the
//!   generations of one node id fold into one entry, live if any generation is live, with the
//!   newest generation's node, flag and generation number.
//! * Dead: `NodeStatus::Down` (a `NodeUpdated`), kept until chitchat forgets every generation of
//!   the node after [`GossipConfig::dead_node_grace`], then `NodeRemoved`.
//! * Failure detection: chitchat's `initial_interval` (the prior of the heartbeat interval mean)
//!   is set to the gossip interval, so detection takes about `phi_threshold` mean heartbeat
//!   intervals from the start, not the 5 s default prior's 40 s.
//! * Peers of another cluster id are refused by chitchat (`BadCluster`) and never appear.
//! * Chitchat has no graceful leave: [`GossipClusterManager::shutdown`] stops gossiping and the
//!   others see the node `Down` once their failure detector says so, as after a `kill -9`.
//!
//! # Tasks
//! Chitchat's server task (ended by its handle's shutdown) and this manager's refresh task
//! (tracked, cancelled) are the only tasks: seeds are resolved here, at start, so chitchat never
//! spawns its untracked DNS refresh loop; seeds given as host names are resolved again by the
//! refresh task while no peer is live.

mod fold;
mod transport;

pub use transport::Traffic;

use crate::{ClusterError, ClusterManager, NodeHub, NodeSubscription};
use async_trait::async_trait;
use chitchat::transport::{Transport, UdpTransport};
use chitchat::{
    spawn_chitchat, Chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig,
    ProtocolVersion,
};
use fold::{Change, Fold, Observation};
use orchestrator_shared_types::{Node, NodeId};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use transport::{Counters, PreOpened};

/// The chitchat key holding this node's [`Node`] as JSON.
const NODE_KEY: &str = "node";
/// The chitchat key holding `"true"` once the daemon reaches the shared store.
const STORE_REACHABLE_KEY: &str = "store_reachable";
/// How often seeds given as host names are resolved again while no peer is live.
const SEED_RESOLVE_INTERVAL: Duration = Duration::from_secs(10);

/// How a [`GossipClusterManager`] joins and watches its cluster.
#[derive(Clone, Debug)]
pub struct GossipConfig {
    /// This daemon's node (id, capacity, allocatable, labels, status, address), gossiped as JSON.
    pub node: Node,
    /// The chitchat cluster id: peers of another cluster are refused.
    pub cluster_id: String,
    /// UDP bind address; port 0 picks a free port ([`GossipClusterManager::gossip_addr`] tells
    /// which).
    pub listen: SocketAddr,
    /// The address the others reach this daemon at; `None`: the bound listen address, which
    /// must then not be unspecified (`0.0.0.0`, `::`). Port 0: the port bound.
    pub advertise: Option<SocketAddr>,
    /// `HOST:PORT` of other daemons (IP or host name).
    pub seeds: Vec<String>,
    /// How often this daemon gossips with up to 3 peers (and heartbeats). Default 200 ms.
    pub gossip_interval: Duration,
    /// Phi accrual threshold above which a peer is dead. Default 8.
    pub phi_threshold: f64,
    /// How long a dead node is kept (as `Down`) before it is forgotten (`NodeRemoved`); also the
    /// grace period of deleted keys. Default 1 h.
    pub dead_node_grace: Duration,
    /// Events a subscriber may lag by before it gets a resync. Default 4,096.
    pub event_capacity: usize,
    /// Compress the digest too (chitchat protocol V1; deltas are always compressed). Default
    /// true; false speaks V0 (uncompressed digest), for a cluster with older chitchat peers.
    pub compress: bool,
}

impl GossipConfig {
    /// A configuration with the defaults: no seeds, advertise the bound address, 200 ms gossip,
    /// phi 8, 1 h dead node grace, 4,096 events, compression on.
    pub fn new(node: Node, cluster_id: impl Into<String>, listen: SocketAddr) -> Self {
        Self {
            node,
            cluster_id: cluster_id.into(),
            listen,
            advertise: None,
            seeds: Vec::new(),
            gossip_interval: Duration::from_millis(200),
            phi_threshold: 8.0,
            dead_node_grace: Duration::from_secs(3600),
            event_capacity: 4096,
            compress: true,
        }
    }

    /// The same configuration with these seeds.
    pub fn with_seeds(mut self, seeds: Vec<String>) -> Self {
        self.seeds = seeds;
        self
    }
}

/// Another node as seen by this daemon (see [`GossipClusterManager::peers`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Its id.
    pub node: NodeId,
    /// Whether any of its generations is live now.
    pub live: bool,
    /// What its newest generation last gossiped with [`GossipClusterManager::set_store_reachable`].
    pub store_reachable: bool,
    /// Its newest chitchat generation (start time in µs): it changes when the node restarts.
    pub generation: u64,
}

/// Membership over chitchat gossip. See the [module documentation](self).
pub struct GossipClusterManager {
    inner: Arc<Inner>,
    /// Addresses to gossip with at once ([`GossipClusterManager::gossip_with`]).
    meet: tokio::sync::mpsc::UnboundedSender<SocketAddr>,
    tasks: TaskTracker,
    cancel: CancellationToken,
    gossip_addr: SocketAddr,
}

impl std::fmt::Debug for GossipClusterManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GossipClusterManager")
            .field("node", &self.inner.self_id)
            .field("gossip_addr", &self.gossip_addr)
            .finish_non_exhaustive()
    }
}

/// What the manager and its refresh task share.
struct Inner {
    self_id: NodeId,
    chitchat: Arc<tokio::sync::Mutex<Chitchat>>,
    /// This daemon's node as last published (what `set_unschedulable` changes).
    own: Mutex<Node>,
    view: Mutex<View>,
    hub: NodeHub,
    counters: Arc<Counters>,
}

/// The fold and a cache of parsed nodes, so an unchanged node is not parsed every round.
#[derive(Default)]
struct View {
    fold: Fold,
    parsed: HashMap<ChitchatId, (u64, Option<Arc<Node>>)>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while these locks are held (parsing errors are values): a poisoned lock
    // still guards consistent data.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn start_error(what: impl Into<String>) -> ClusterError {
    ClusterError::Start {
        what: what.into(),
        source: None,
    }
}

fn start_error_from(
    what: impl Into<String>,
    source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> ClusterError {
    ClusterError::Start {
        what: what.into(),
        source: Some(source.into()),
    }
}

/// A generation id: the start time in microseconds, strictly increasing within the process (two
/// managers started in the same microsecond, or a restart in a test, still differ).
fn new_generation() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    let previous = LAST
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(now.max(last + 1))
        })
        .unwrap_or(0);
    now.max(previous + 1)
}

/// Seeds as socket addresses: IP literals as they are, host names resolved now. Returns the
/// addresses and the host names (to resolve again later).
async fn resolve_seeds(seeds: &[String]) -> (Vec<SocketAddr>, Vec<String>) {
    let mut addrs = Vec::new();
    let mut names = Vec::new();
    for seed in seeds {
        if let Ok(addr) = seed.parse::<SocketAddr>() {
            addrs.push(addr);
            continue;
        }
        names.push(seed.clone());
        match tokio::net::lookup_host(seed.as_str()).await {
            Ok(resolved) => addrs.extend(resolved),
            Err(error) => tracing::warn!(seed = %seed, %error, "cannot resolve gossip seed yet"),
        }
    }
    (addrs, names)
}

impl GossipClusterManager {
    /// Starts gossiping over real UDP on [`GossipConfig::listen`].
    pub async fn start(config: GossipConfig) -> Result<Self, ClusterError> {
        Self::start_with_transport(config, &UdpTransport).await
    }

    /// Starts gossiping over `transport` (e.g. chitchat's `ChannelTransport`, to run many nodes
    /// in one process). The socket is opened here, before chitchat starts.
    pub async fn start_with_transport(
        config: GossipConfig,
        transport: &dyn Transport,
    ) -> Result<Self, ClusterError> {
        if config.gossip_interval.is_zero() {
            return Err(start_error("the gossip interval must be positive"));
        }
        if !(config.phi_threshold.is_finite() && config.phi_threshold > 0.0) {
            return Err(start_error(format!(
                "the phi threshold must be positive, not {}",
                config.phi_threshold
            )));
        }
        if config.node.id.as_str().is_empty() {
            return Err(start_error("the node id is empty"));
        }
        let node_json = serde_json::to_string(&config.node)
            .map_err(|e| start_error_from("cannot encode the node", e))?;
        let socket = transport
            .open(config.listen)
            .await
            .map_err(|e| start_error_from(format!("cannot bind {}", config.listen), e))?;
        let bound = socket
            .local_addr()
            .map_err(|e| start_error_from("cannot read the bound address", e))?;
        let advertise = match config.advertise {
            Some(addr) if addr.ip().is_unspecified() => {
                return Err(start_error(format!(
                    "the advertised address {addr} is not one peers can reach"
                )))
            }
            // Port 0: the port bound (listening on every interface, a port of the system's
            // choosing).
            Some(addr) if addr.port() == 0 => SocketAddr::new(addr.ip(), bound.port()),
            Some(addr) => addr,
            None if bound.ip().is_unspecified() => {
                return Err(start_error(format!(
                    "listening on {bound}: set the advertised address peers reach this node at"
                )))
            }
            None => bound,
        };
        let (seed_addrs, seed_names) = resolve_seeds(&config.seeds).await;

        let self_id = config.node.id.clone();
        let chitchat_config = ChitchatConfig {
            chitchat_id: ChitchatId::new(self_id.as_str(), new_generation(), advertise),
            cluster_id: config.cluster_id.clone(),
            gossip_interval: config.gossip_interval,
            listen_addr: bound,
            // Socket addresses only: chitchat resolves nothing, so it spawns no DNS task.
            seed_nodes: seed_addrs.iter().map(SocketAddr::to_string).collect(),
            failure_detector_config: FailureDetectorConfig {
                phi_threshold: config.phi_threshold,
                sampling_window_size: 1_000,
                max_interval: Duration::from_secs(10).max(config.gossip_interval * 10),
                // The prior of the mean heartbeat interval: the gossip interval, not 5 s.
                initial_interval: config.gossip_interval,
                dead_node_grace_period: config.dead_node_grace,
            },
            marked_for_deletion_grace_period: config.dead_node_grace,
            catchup_callback: None,
            // Live only once its node is published (chitchat's live-nodes watch).
            extra_liveness_predicate: Some(Box::new(|state| state.contains_key(NODE_KEY))),
            protocol_version: if config.compress {
                ProtocolVersion::V1
            } else {
                ProtocolVersion::V0
            },
        };
        let counters = Arc::new(Counters::default());
        let pre_opened = PreOpened::new(socket, counters.clone());
        let handle = spawn_chitchat(
            chitchat_config,
            vec![
                (NODE_KEY.to_owned(), node_json),
                (STORE_REACHABLE_KEY.to_owned(), "false".to_owned()),
            ],
            &pre_opened,
        )
        .await
        .map_err(|e| start_error_from("cannot start chitchat", e))?;

        let inner = Arc::new(Inner {
            self_id,
            chitchat: handle.chitchat(),
            own: Mutex::new(config.node),
            view: Mutex::new(View::default()),
            hub: NodeHub::new(config.event_capacity),
            counters,
        });
        inner.refresh().await;
        let tasks = TaskTracker::new();
        let cancel = CancellationToken::new();
        let (meet, to_meet) = tokio::sync::mpsc::unbounded_channel();
        tasks.spawn(refresh_loop(
            inner.clone(),
            handle,
            cancel.clone(),
            config.gossip_interval,
            seed_names,
            to_meet,
        ));
        tasks.close();
        Ok(Self {
            inner,
            meet,
            tasks,
            cancel,
            gossip_addr: advertise,
        })
    }

    /// The address peers gossip with this daemon at (the real port when `listen` had port 0).
    pub fn gossip_addr(&self) -> SocketAddr {
        self.gossip_addr
    }

    /// This daemon's node id.
    pub fn node_id(&self) -> &NodeId {
        &self.inner.self_id
    }

    /// Publishes this daemon's node anew (labels, status, allocatable, `unschedulable`: the node
    /// replaces the previous one entirely). Its id is always this daemon's, whatever `node.id`
    /// says. Local subscribers see the change at once, peers within a few gossip rounds.
    pub async fn set_node(&self, mut node: Node) {
        if node.id != self.inner.self_id {
            tracing::warn!(given = %node.id, own = %self.inner.self_id, "set_node keeps this daemon's id");
            node.id = self.inner.self_id.clone();
        }
        self.inner.publish(|own| *own = node).await;
    }

    /// Gossips whether this daemon reaches the shared store (false until first called).
    pub async fn set_store_reachable(&self, reachable: bool) {
        let mut chitchat = self.inner.chitchat.lock().await;
        chitchat.self_node_state().set(
            STORE_REACHABLE_KEY,
            if reachable { "true" } else { "false" },
        );
        self.inner.refresh_locked(&chitchat);
    }

    /// Every other node seen live at least once and not yet forgotten, live or dead now, sorted
    /// by id. (Async for the API's shape; it does not wait on anything.)
    pub async fn peers(&self) -> Vec<Peer> {
        let view = lock(&self.inner.view);
        view.fold
            .members()
            .iter()
            .filter(|(id, _)| **id != self.inner.self_id)
            .map(|(id, m)| Peer {
                node: id.clone(),
                live: m.live,
                store_reachable: m.store_reachable,
                generation: m.generation,
            })
            .collect()
    }

    /// Gossips with `addrs` at once, whether or not they were seeds: how a daemon meets peers
    /// it learned of after it started (two daemons that started together found no seed in
    /// each other's member record yet). Chitchat then keeps gossiping with them by itself.
    pub fn gossip_with(&self, addrs: &[SocketAddr]) {
        for addr in addrs {
            // Fails only once the refresh loop ended (shut down): nothing to meet then.
            let _ = self.meet.send(*addr);
        }
    }

    /// The gossip traffic of this daemon so far.
    pub fn traffic(&self) -> Traffic {
        self.inner.counters.snapshot()
    }

    /// Stops gossiping (no leave message: peers see this node `Down` once their failure detector
    /// says so) and waits until every task this manager spawned has ended. Subscriptions end
    /// once the manager is gone.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        // The refresh task owns chitchat's handle and shuts chitchat's server down on its way
        // out, so this waits for both.
        self.tasks.wait().await;
    }
}

impl Drop for GossipClusterManager {
    fn drop(&mut self) {
        // Dropped without `shutdown`: the refresh task stops at its next poll and shuts
        // chitchat's server down (no-op after `shutdown`).
        self.cancel.cancel();
    }
}

impl Inner {
    /// Changes this daemon's node with `change`, gossips it and refreshes the view, in one
    /// critical section of the chitchat lock so concurrent publishers cannot interleave.
    async fn publish(&self, change: impl FnOnce(&mut Node)) {
        let mut chitchat = self.chitchat.lock().await;
        let json = {
            let mut own = lock(&self.own);
            change(&mut own);
            serde_json::to_string(&*own)
        };
        match json {
            Ok(json) => chitchat.self_node_state().set(NODE_KEY, json),
            // A Node is plain data; this cannot fail, but never gossip half a change.
            Err(error) => tracing::error!(%error, "cannot encode this node"),
        }
        self.refresh_locked(&chitchat);
    }

    async fn refresh(&self) {
        let chitchat = self.chitchat.lock().await;
        self.refresh_locked(&chitchat);
    }

    /// Folds chitchat's current state and publishes what changed. Runs under the chitchat lock
    /// (held by the caller), so two refreshes never publish out of order; it awaits nothing.
    fn refresh_locked(&self, chitchat: &Chitchat) {
        let live: HashSet<&ChitchatId> = chitchat.live_nodes().collect();
        let mut view = lock(&self.view);
        let View { fold, parsed } = &mut *view;
        parsed.retain(|id, _| chitchat.node_state(id).is_some());
        let mut observations = Vec::with_capacity(chitchat.node_states().len());
        for (id, state) in chitchat.node_states() {
            let node = match state.get_versioned(NODE_KEY) {
                Some(value) if !value.is_deleted() => {
                    let entry = parsed.entry(id.clone()).or_insert((u64::MAX, None));
                    if entry.0 != value.version {
                        *entry = (value.version, parse_node(id, &value.value));
                    }
                    entry.1.clone()
                }
                _ => None,
            };
            observations.push(Observation {
                node_id: NodeId::from(&*id.node_id),
                generation: id.generation_id,
                live: live.contains(id),
                node,
                store_reachable: state.get(STORE_REACHABLE_KEY) == Some("true"),
            });
        }
        for change in fold.apply(observations) {
            match change {
                Change::Upsert(node) => self.hub.upsert(node),
                Change::Remove(id) => {
                    self.hub.remove(&id);
                }
            }
        }
    }

    fn any_peer_live(&self) -> bool {
        lock(&self.view)
            .fold
            .members()
            .iter()
            .any(|(id, m)| *id != self.self_id && m.live)
    }
}

fn parse_node(id: &ChitchatId, json: &str) -> Option<Arc<Node>> {
    match serde_json::from_str::<Node>(json) {
        Ok(node) => Some(Arc::new(node)),
        Err(error) => {
            tracing::warn!(peer = ?id, %error, "ignoring a node that does not parse");
            None
        }
    }
}

/// Refreshes the view when chitchat's live set changes and every gossip interval (a dead node
/// being forgotten changes no live set); while no peer is live, resolves seeds given as host
/// names again and gossips with them. Owns chitchat's handle: when cancelled, shuts its server
/// down.
async fn refresh_loop(
    inner: Arc<Inner>,
    handle: ChitchatHandle,
    cancel: CancellationToken,
    every: Duration,
    seed_names: Vec<String>,
    mut to_meet: tokio::sync::mpsc::UnboundedReceiver<SocketAddr>,
) {
    let mut live_nodes = inner.chitchat.lock().await.live_nodes_watcher();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut resolve = tokio::time::interval(SEED_RESOLVE_INTERVAL);
    resolve.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    resolve.tick().await; // resolved at start already
    let mut watching = true;
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            changed = live_nodes.changed(), if watching => {
                // The sender lives in chitchat, which outlives this loop; if it ever went, the
                // tick alone would keep the view fresh.
                watching = changed.is_ok();
            }
            _ = tick.tick() => {}
            Some(addr) = to_meet.recv() => {
                let _ = handle.gossip(addr);
                continue;
            }
            _ = resolve.tick(), if !seed_names.is_empty() => {
                if !inner.any_peer_live() {
                    let (addrs, _) = resolve_seeds(&seed_names).await;
                    for addr in addrs {
                        let _ = handle.gossip(addr);
                    }
                }
                continue;
            }
        }
        inner.refresh().await;
    }
    if let Err(error) = handle.shutdown().await {
        tracing::warn!(%error, "chitchat's server ended with an error");
    }
}

#[async_trait]
impl ClusterManager for GossipClusterManager {
    async fn nodes(&self) -> Result<Vec<Node>, ClusterError> {
        Ok(self.inner.hub.nodes())
    }

    async fn node(&self, id: &NodeId) -> Result<Option<Node>, ClusterError> {
        Ok(self.inner.hub.node(id))
    }

    /// Cordons this daemon's own node by gossiping it with `unschedulable` set. Another node
    /// cannot be cordoned through gossip (only a node publishes itself): that is
    /// [`ClusterError::Unsupported`]; an unknown node is [`ClusterError::NodeNotFound`].
    async fn set_unschedulable(
        &self,
        id: &NodeId,
        unschedulable: bool,
    ) -> Result<(), ClusterError> {
        if *id == self.inner.self_id {
            self.inner
                .publish(|own| own.unschedulable = unschedulable)
                .await;
            return Ok(());
        }
        if self.inner.hub.node(id).is_none() {
            return Err(ClusterError::NodeNotFound(id.clone()));
        }
        Err(ClusterError::Unsupported {
            operation: "set_unschedulable",
            reason: format!(
                "gossip publishes each node from its own daemon: cordon {id} on its daemon or in the store"
            ),
        })
    }

    fn subscribe(&self) -> NodeSubscription {
        self.inner.hub.subscribe()
    }
}

/// The crate's conformance suite against real gossip: an observer daemon is the manager under
/// test; `add` starts (or re-publishes) a daemon for the node, `remove` shuts it down and waits
/// until the observer has forgotten it. `set_unschedulable_cordons_and_uncordons` is left out:
/// gossip cannot cordon another daemon's node (see `set_unschedulable`; tested in
/// `tests/gossip.rs`).
#[cfg(test)]
mod conformance_tests {
    use super::*;
    use crate::conformance::ClusterDriver;
    use orchestrator_shared_types::Resources;
    use std::collections::BTreeMap;

    const TIMEOUT: Duration = Duration::from_secs(60);

    struct GossipDriver {
        observer: GossipClusterManager,
        members: tokio::sync::Mutex<BTreeMap<NodeId, GossipClusterManager>>,
    }

    fn config(node: Node) -> GossipConfig {
        let mut config = GossipConfig::new(node, "conformance", "127.0.0.1:0".parse().unwrap());
        config.event_capacity = 8;
        // Short, so a removal is published within seconds.
        config.dead_node_grace = Duration::from_secs(2);
        config
    }

    async fn driver() -> GossipDriver {
        let observer = GossipClusterManager::start(config(Node::new(
            "observer",
            Resources::new(1000, 1000, 0),
        )))
        .await
        .unwrap();
        GossipDriver {
            observer,
            members: Default::default(),
        }
    }

    impl GossipDriver {
        async fn wait_until(&self, what: &str, done: impl Fn(Option<Node>) -> bool, id: &NodeId) {
            let deadline = tokio::time::Instant::now() + TIMEOUT;
            while !done(self.observer.inner.hub.node(id)) {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the observer did not see {what} within {TIMEOUT:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    #[async_trait]
    impl ClusterDriver for GossipDriver {
        fn manager(&self) -> &dyn ClusterManager {
            &self.observer
        }

        async fn add(&self, node: Node) {
            {
                let mut members = self.members.lock().await;
                match members.get(&node.id) {
                    Some(member) => member.set_node(node.clone()).await,
                    None => {
                        let seeds = vec![self.observer.gossip_addr().to_string()];
                        let member =
                            GossipClusterManager::start(config(node.clone()).with_seeds(seeds))
                                .await
                                .unwrap();
                        members.insert(node.id.clone(), member);
                    }
                }
            }
            let want = node.clone();
            self.wait_until(
                &format!("{want:?}"),
                |n| n.as_ref() == Some(&want),
                &node.id,
            )
            .await;
        }

        async fn remove(&self, id: &NodeId) {
            let member = self.members.lock().await.remove(id);
            if let Some(member) = member {
                member.shutdown().await;
            }
            self.wait_until(&format!("{id} removed"), |n| n.is_none(), id)
                .await;
        }

        fn events_to_overflow(&self) -> usize {
            self.observer.inner.hub.capacity() * 2 + 1
        }

        fn event_timeout(&self) -> Duration {
            TIMEOUT
        }
    }

    crate::cluster_manager_conformance!(@tests driver;
        nodes_sorted_and_complete,
        add_delivers_node_added,
        update_delivers_node_updated,
        identical_add_is_silent,
        remove_delivers_node_removed,
        events_arrive_in_order_to_every_subscriber,
        lagging_subscriber_resyncs_then_follows,
    );
}
