//! The nodes of a cluster as its store holds them, and [`StoreClusterManager`], the
//! [`ClusterManager`] the leader's core uses in a cluster.
//!
//! A node is its registration (`Node/{id}`, written by its agent) plus its liveness (the
//! member record `Cluster/members/{id}`, bound to the agent's lease): `Ready` while the member
//! record exists, `Down` once it is gone. The etcd lease is the authoritative liveness: a node
//! is never declared down while its lease is held.
//!
//! # Missing members after the store comes back
//! When the store was unreachable for longer than a lease's TTL, every lease may end at once
//! (etcd expires them, or each daemon counts its own lost), and every member record vanishes
//! together, although every daemon and its containers are fine. A leader that took that for
//! the death of every node would replace every instance. So the leader's manager holds a
//! *grace* (`down_grace`, one lease TTL plus the time a member needs to get a new lease and
//! register again): for that long after it (re)loaded the nodes from the store (the start of a
//! term, which after such an outage always comes after the store is back, or a re-listing), a
//! registered node without a member record is reported `NotReady` (keep what runs, place
//! nothing new) rather than `Down`; once the grace is over, the nodes still missing are
//! reported `Down` and their instances replaced. We rely on re-registration rather than on
//! the member records the store happens to hold right after it came back. The price: a node
//! that really died together with the leader is replaced one grace later.
//!
//! # Gossip, the fast layer
//! With a gossip layer ([`super::gossip`]), a node that gossip sees dead is `Down` at once,
//! whatever its member record says: gossip notices a dead daemon in about a second, its lease
//! only after its TTL. Gossip never keeps a node alive: without a member record it is `Down`
//! (after the grace) even while gossip still hears from it, because a daemon that lost the
//! store stops its containers ([`super::fence`]). A node gossip does not know (it does not
//! gossip, or has not been heard yet) follows its member record alone, and so does a daemon that
//! registers again after gossip found it dead (a restart: its new run may not be heard yet)
//! until gossip finds it dead again.

use super::records::{MemberRecord, MEMBERS_PREFIX};
use super::RECONNECT;
use crate::backoff::Backoff;
use async_trait::async_trait;
use cluster_manager_interface::{
    ClusterError, ClusterEvent, ClusterManager, NodeHub, NodeSubscription,
};
use orchestrator_shared_types::{Node, NodeId, NodeStatus};
use state_store_interface::{
    decode_event, Kind, StateStore, StoreError, StoreExt, WatchEvent, CORDON_PREFIX,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::{CancellationToken, DropGuard};

/// Registrations, live members and cordons, folded into nodes (pure; fed by listings and watch
/// events).
#[derive(Clone, Debug, Default)]
pub struct NodeTable {
    records: BTreeMap<NodeId, Node>,
    members: BTreeMap<NodeId, MemberRecord>,
    cordoned: BTreeSet<NodeId>,
}

/// What a [`NodeTable`] follows: the registrations (and cordons), and the members.
pub const NODE_SCOPES: [(Kind, &str); 2] = [(Kind::Node, ""), (Kind::Cluster, MEMBERS_PREFIX)];

impl NodeTable {
    /// Reads every registration, member and cordon.
    pub async fn load(store: &dyn StateStore) -> Result<Self, StoreError> {
        let mut table = Self::default();
        for n in store.list_obj::<Node>("").await? {
            table.records.insert(n.value.id.clone(), n.value);
        }
        for e in store.list(Kind::Node, CORDON_PREFIX).await? {
            table
                .cordoned
                .insert(NodeId::from(&e.key[CORDON_PREFIX.len()..]));
        }
        for m in store.list_obj::<MemberRecord>(MEMBERS_PREFIX).await? {
            table.members.insert(m.value.node.clone(), m.value);
        }
        Ok(table)
    }

    /// Applies a watch event of [`NODE_SCOPES`]; returns the node it changed, if any.
    pub fn apply(&mut self, event: &WatchEvent) -> Option<NodeId> {
        match event.kind {
            Kind::Node => {
                if let Some(id) = event.key.strip_prefix(CORDON_PREFIX) {
                    let id = NodeId::from(id);
                    if event.value.is_some() {
                        self.cordoned.insert(id.clone());
                    } else {
                        self.cordoned.remove(&id);
                    }
                    return Some(id);
                }
                let id = NodeId::from(event.key.as_str());
                match decode_event::<Node>(event) {
                    Ok(Some(node)) => {
                        self.records.insert(id.clone(), node);
                    }
                    Ok(None) => {
                        self.records.remove(&id);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "a node record does not decode");
                        return None;
                    }
                }
                Some(id)
            }
            Kind::Cluster => {
                let id = NodeId::from(event.key.strip_prefix(MEMBERS_PREFIX)?);
                match decode_event::<MemberRecord>(event) {
                    Ok(Some(m)) => {
                        self.members.insert(id.clone(), m);
                    }
                    Ok(None) => {
                        self.members.remove(&id);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "a member record does not decode");
                        return None;
                    }
                }
                Some(id)
            }
            _ => None,
        }
    }

    /// Node `id` as the cluster sees it: `Down` without a live member record, unschedulable
    /// when cordoned.
    pub fn node(&self, id: &NodeId) -> Option<Node> {
        let mut node = self.records.get(id)?.clone();
        if let Some(m) = self.members.get(id) {
            node.address.clone_from(&m.address);
        } else {
            node.status = NodeStatus::Down;
        }
        node.unschedulable |= self.cordoned.contains(id);
        Some(node)
    }

    /// Every registered node, sorted by id.
    pub fn nodes(&self) -> Vec<Node> {
        self.records.keys().filter_map(|id| self.node(id)).collect()
    }

    /// The live members, sorted by node id.
    pub fn members(&self) -> impl Iterator<Item = &MemberRecord> {
        self.members.values()
    }
}

/// The leader's [`ClusterManager`] in a cluster: nodes from the store (see the module docs),
/// followed through its watch. Cordons are left out here: the core reads them from the store
/// itself.
pub struct StoreClusterManager {
    hub: Arc<NodeHub>,
    _stop: DropGuard,
}

impl StoreClusterManager {
    /// Loads the nodes and follows their changes until dropped. For `down_grace` after each
    /// (re)load, a node without a member record is `NotReady`, not `Down` (see the module
    /// docs); `Duration::ZERO` reports what the store holds at once. With `gossip`, a node it
    /// sees dead is `Down` at once.
    pub async fn start(
        store: Arc<dyn StateStore>,
        down_grace: Duration,
        gossip: Option<Arc<dyn ClusterManager>>,
    ) -> Result<Self, StoreError> {
        let hub = Arc::new(NodeHub::new(4096));
        let mut dead = GossipDead::default();
        let subscription = match &gossip {
            Some(gossip) => {
                let subscription = gossip.subscribe();
                if let Ok(nodes) = gossip.nodes().await {
                    dead.apply(ClusterEvent::Resync(nodes));
                }
                Some(subscription)
            }
            None => None,
        };
        let revision = store.revision().await?;
        let mut table = NodeTable::load(store.as_ref()).await?;
        table.cordoned.clear();
        let grace = Grace::new(down_grace);
        let mut folded = Folded::new(table, grace, dead);
        let ids = folded.table.records.keys().cloned().collect();
        folded.publish(&hub, ids);
        let cancel = CancellationToken::new();
        tokio::spawn(follow(
            store,
            hub.clone(),
            folded,
            subscription,
            revision,
            cancel.clone(),
        ));
        Ok(Self {
            hub,
            _stop: cancel.drop_guard(),
        })
    }
}

/// The nodes gossip sees dead, as far as they count (see [`GossipDead::forget`]).
#[derive(Debug, Default)]
struct GossipDead {
    /// What gossip last said of each node: dead or not.
    said: BTreeMap<NodeId, bool>,
    /// The nodes taken down by gossip.
    dead: BTreeSet<NodeId>,
}

impl GossipDead {
    /// Follows one gossip event; returns the nodes whose verdict changed. Only a node gossip
    /// finds dead anew (it was live, or unknown) is taken down.
    fn apply(&mut self, event: ClusterEvent) -> Vec<NodeId> {
        let mut changed = Vec::new();
        match event {
            ClusterEvent::NodeAdded(n) | ClusterEvent::NodeUpdated(n) => {
                let dead = n.status == NodeStatus::Down;
                changed.extend(self.says(n.id, dead));
            }
            ClusterEvent::NodeRemoved(id) => {
                self.said.remove(&id);
                if self.dead.remove(&id) {
                    changed.push(id);
                }
            }
            ClusterEvent::Resync(nodes) => {
                let known: BTreeSet<NodeId> = nodes.iter().map(|n| n.id.clone()).collect();
                let gone: Vec<NodeId> = self
                    .said
                    .keys()
                    .filter(|id| !known.contains(*id))
                    .cloned()
                    .collect();
                for id in gone {
                    self.said.remove(&id);
                    if self.dead.remove(&id) {
                        changed.push(id);
                    }
                }
                for n in nodes {
                    let dead = n.status == NodeStatus::Down;
                    changed.extend(self.says(n.id, dead));
                }
            }
        }
        changed
    }

    /// Gossip says node `id` is dead or not; returns it if its verdict changed.
    fn says(&mut self, id: NodeId, dead: bool) -> Option<NodeId> {
        let was = self.said.insert(id.clone(), dead);
        let changed = if dead {
            was != Some(true) && self.dead.insert(id.clone())
        } else {
            self.dead.remove(&id)
        };
        changed.then_some(id)
    }

    /// The daemon of node `id` registered again: gossip's verdict on its earlier run no longer
    /// counts (its new run may not be heard yet), until gossip finds it dead anew.
    fn forget(&mut self, id: &NodeId) {
        self.dead.remove(id);
    }

    /// `node` with gossip's verdict: `Down` if gossip sees it dead.
    fn apply_to(&self, mut node: Node) -> Node {
        if self.dead.contains(&node.id) {
            node.status = NodeStatus::Down;
        }
        node
    }
}

/// What the follower folds: the store's records, the grace, and gossip's dead nodes.
struct Folded {
    table: NodeTable,
    grace: Grace,
    dead: GossipDead,
    /// Whether gossip's verdicts count now (see [`Folded::gossip_trusted`]).
    trusted: bool,
}

impl Folded {
    fn new(table: NodeTable, grace: Grace, dead: GossipDead) -> Self {
        let mut folded = Self {
            table,
            grace,
            dead,
            trusted: true,
        };
        folded.trusted = folded.gossip_trusted();
        folded
    }

    /// Whether gossip may take nodes down now: only while it calls at most half of the members
    /// (daemons holding a lease) dead. When it calls most of them dead while their leases live,
    /// it is this daemon that is cut off from their gossip (a partition that leaves it the
    /// store), and believing it would fence every other node; the leases decide alone then.
    fn gossip_trusted(&self) -> bool {
        let members = &self.table.members;
        let disputed = members
            .keys()
            .filter(|id| self.dead.dead.contains(*id))
            .count();
        disputed * 2 <= members.len()
    }

    /// Node `id` as reported now, if registered.
    fn node(&self, id: &NodeId) -> Option<Node> {
        let node = self.grace.apply(self.table.node(id)?);
        Some(if self.trusted {
            self.dead.apply_to(node)
        } else {
            node
        })
    }

    /// Publishes nodes `ids` as they are now (or their removal); every node when gossip's
    /// trust changed with them.
    fn publish(&mut self, hub: &NodeHub, ids: Vec<NodeId>) {
        let trusted = self.gossip_trusted();
        let ids = if trusted == self.trusted {
            ids
        } else {
            self.trusted = trusted;
            if !trusted {
                tracing::warn!("gossip calls most members dead while their leases live: ignoring it until that changes (this daemon is likely cut off from their gossip)");
            }
            self.table.records.keys().cloned().chain(ids).collect()
        };
        for id in ids {
            match self.node(&id) {
                Some(node) => hub.upsert(node),
                None => {
                    hub.remove(&id);
                }
            }
        }
    }
}

/// The window after a (re)load during which missing members are `NotReady`, not `Down`.
struct Grace {
    length: Duration,
    until: Option<Instant>,
}

impl Grace {
    /// A window of `length` starting now (none if `length` is zero).
    fn new(length: Duration) -> Self {
        let mut grace = Self {
            length,
            until: None,
        };
        grace.restart();
        grace
    }

    fn restart(&mut self) {
        self.until = (!self.length.is_zero()).then(|| Instant::now() + self.length);
    }

    /// `node` as reported now: `NotReady` instead of `Down` within the window.
    fn apply(&self, mut node: Node) -> Node {
        if node.status == NodeStatus::Down && self.until.is_some_and(|t| Instant::now() < t) {
            node.status = NodeStatus::NotReady;
        }
        node
    }

    /// Sleeps until the window ends (forever when there is none).
    async fn ended(&self) {
        match self.until {
            Some(t) => tokio::time::sleep_until(t.into()).await,
            None => std::future::pending().await,
        }
    }
}

async fn follow(
    store: Arc<dyn StateStore>,
    hub: Arc<NodeHub>,
    mut folded: Folded,
    mut gossip: Option<NodeSubscription>,
    mut revision: u64,
    cancel: CancellationToken,
) {
    let mut backoff = Backoff::new(RECONNECT);
    loop {
        let opened = Instant::now();
        if let Ok(mut watch) = super::watch_scopes(store.as_ref(), revision, &NODE_SCOPES).await {
            loop {
                let next = tokio::select! {
                    () = cancel.cancelled() => return,
                    () = folded.grace.ended() => {
                        folded.grace.until = None;
                        let missing: Vec<NodeId> = folded
                            .table
                            .nodes()
                            .into_iter()
                            .filter(|n| n.status == NodeStatus::Down)
                            .map(|n| n.id)
                            .collect();
                        if !missing.is_empty() {
                            let ids: Vec<&str> = missing.iter().map(|id| id.as_str()).collect();
                            tracing::warn!(nodes = %ids.join(","), "members still missing after the grace: down");
                        }
                        folded.publish(&hub, missing);
                        continue;
                    }
                    event = next_gossip(&mut gossip) => {
                        match event {
                            Some(event) => {
                                let changed = folded.dead.apply(event);
                                folded.publish(&hub, changed);
                            }
                            None => gossip = None,
                        }
                        continue;
                    }
                    next = watch.next() => next,
                };
                let Some(Ok(event)) = next else { break };
                if event.key.starts_with(CORDON_PREFIX) {
                    continue;
                }
                if let Some(id) = folded.table.apply(&event) {
                    if event.kind == Kind::Cluster && event.value.is_some() {
                        // The daemon (re)registered: gossip's verdict on its earlier run is
                        // stale until gossip finds this one dead.
                        folded.dead.forget(&id);
                    }
                    folded.publish(&hub, vec![id]);
                }
            }
        }
        // Re-list, then watch again from the listing.
        let mut healthy_for = opened.elapsed();
        loop {
            if !super::retry_after(&mut backoff, healthy_for, &cancel).await {
                return;
            }
            healthy_for = Duration::ZERO;
            let listed = async {
                let revision = store.revision().await?;
                Ok::<_, StoreError>((revision, NodeTable::load(store.as_ref()).await?))
            };
            match listed.await {
                Ok((r, mut t)) => {
                    t.cordoned.clear();
                    let now: BTreeSet<NodeId> = t.records.keys().cloned().collect();
                    for gone in folded.table.records.keys().filter(|id| !now.contains(*id)) {
                        hub.remove(gone);
                    }
                    folded.grace.restart();
                    (revision, folded.table) = (r, t);
                    folded.publish(&hub, now.into_iter().collect());
                    break;
                }
                Err(e) => tracing::warn!(error = %e, "re-listing nodes failed"),
            }
        }
    }
}

/// The next gossip event; never, without gossip.
async fn next_gossip(gossip: &mut Option<NodeSubscription>) -> Option<ClusterEvent> {
    match gossip {
        Some(subscription) => subscription.recv().await,
        None => std::future::pending().await,
    }
}

#[async_trait]
impl ClusterManager for StoreClusterManager {
    async fn nodes(&self) -> Result<Vec<Node>, ClusterError> {
        Ok(self.hub.nodes())
    }

    async fn node(&self, id: &NodeId) -> Result<Option<Node>, ClusterError> {
        Ok(self.hub.node(id))
    }

    /// The cordon itself is the store's record (the caller writes it); this only checks that
    /// the node exists.
    async fn set_unschedulable(
        &self,
        id: &NodeId,
        _unschedulable: bool,
    ) -> Result<(), ClusterError> {
        match self.hub.node(id) {
            Some(_) => Ok(()),
            None => Err(ClusterError::NodeNotFound(id.clone())),
        }
    }

    fn subscribe(&self) -> NodeSubscription {
        self.hub.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_shared_types::Resources;
    use state_store_interface::{InMemoryStore, Precondition};

    async fn status(manager: &StoreClusterManager, id: &str) -> NodeStatus {
        manager
            .node(&NodeId::from(id))
            .await
            .unwrap()
            .expect("the node is known")
            .status
    }

    /// A registered node without a member record (its lease ended in an outage) is `NotReady`
    /// during the grace and `Down` after it; one that registers again in time stays `Ready`.
    /// Without a grace it is `Down` at once.
    #[tokio::test]
    async fn missing_members_are_not_ready_during_the_grace_then_down() {
        let store = Arc::new(InMemoryStore::new());
        for id in ["n1", "n2"] {
            let node = Node::new(id, Resources::new(1000, 1024, 1000));
            store.put_obj(&node, Precondition::None).await.unwrap();
        }
        let grace = Duration::from_millis(400);
        let manager = StoreClusterManager::start(store.clone(), grace, None)
            .await
            .unwrap();
        let at_once = StoreClusterManager::start(store.clone(), Duration::ZERO, None)
            .await
            .unwrap();
        assert_eq!(status(&manager, "n1").await, NodeStatus::NotReady);
        assert_eq!(status(&at_once, "n1").await, NodeStatus::Down);

        // n2 registers again within the grace.
        let member = MemberRecord {
            node: NodeId::from("n2"),
            address: "n2:1".into(),
            gossip: None,
        };
        store.put_obj(&member, Precondition::None).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while status(&manager, "n2").await != NodeStatus::Ready {
            assert!(Instant::now() < deadline, "n2 never became Ready");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(status(&manager, "n1").await, NodeStatus::NotReady);

        tokio::time::sleep(grace + Duration::from_millis(200)).await;
        assert_eq!(status(&manager, "n1").await, NodeStatus::Down);
        assert_eq!(status(&manager, "n2").await, NodeStatus::Ready);
    }

    async fn wait_status(manager: &StoreClusterManager, id: &str, want: NodeStatus) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while status(manager, id).await != want {
            assert!(Instant::now() < deadline, "{id} never became {want:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Gossip takes a member `Down` at once and back when it hears it again, but is ignored
    /// while it calls most members dead (this daemon is the one cut off from their gossip).
    #[tokio::test]
    async fn gossip_takes_a_minority_of_members_down_at_once() {
        let store = Arc::new(InMemoryStore::new());
        let gossip = Arc::new(cluster_manager_interface::StaticClusterManager::new());
        for id in ["n1", "n2", "n3"] {
            let node = Node::new(id, Resources::new(1000, 1024, 1000));
            store.put_obj(&node, Precondition::None).await.unwrap();
            let member = MemberRecord {
                node: NodeId::from(id),
                address: format!("{id}:1"),
                gossip: Some(format!("{id}:2")),
            };
            store.put_obj(&member, Precondition::None).await.unwrap();
            gossip.upsert_node(node);
        }
        let manager =
            StoreClusterManager::start(store.clone(), Duration::ZERO, Some(gossip.clone()))
                .await
                .unwrap();
        for id in ["n1", "n2", "n3"] {
            assert_eq!(status(&manager, id).await, NodeStatus::Ready);
        }
        let with = |id: &str, status: NodeStatus| {
            let mut node = Node::new(id, Resources::new(1000, 1024, 1000));
            node.status = status;
            node
        };
        gossip.upsert_node(with("n1", NodeStatus::Down));
        wait_status(&manager, "n1", NodeStatus::Down).await;
        // Two of three called dead while their leases live: gossip is ignored.
        gossip.upsert_node(with("n2", NodeStatus::Down));
        wait_status(&manager, "n1", NodeStatus::Ready).await;
        assert_eq!(status(&manager, "n2").await, NodeStatus::Ready);
        // n2's lease ends: one disputed member of two; gossip counts again.
        let n2 = MemberRecord {
            node: NodeId::from("n2"),
            address: "n2:1".into(),
            gossip: None,
        };
        store
            .commit(vec![state_store_interface::typed::delete_op(
                &n2,
                Precondition::None,
            )])
            .await
            .unwrap();
        wait_status(&manager, "n1", NodeStatus::Down).await;
        wait_status(&manager, "n2", NodeStatus::Down).await;
        gossip.upsert_node(with("n1", NodeStatus::Ready));
        wait_status(&manager, "n1", NodeStatus::Ready).await;
        assert_eq!(status(&manager, "n3").await, NodeStatus::Ready);

        // n3 dies and restarts: gossip still calls it dead (its new run is not heard yet, and
        // its node changes), but it registered again: Ready, until gossip finds it dead anew.
        gossip.upsert_node(with("n3", NodeStatus::Down));
        wait_status(&manager, "n3", NodeStatus::Down).await;
        let again = MemberRecord {
            node: NodeId::from("n3"),
            address: "n3:10".into(),
            gossip: Some("n3:20".into()),
        };
        store.put_obj(&again, Precondition::None).await.unwrap();
        wait_status(&manager, "n3", NodeStatus::Ready).await;
        gossip.upsert_node(with("n3", NodeStatus::Down).with_label("run", "2"));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(status(&manager, "n3").await, NodeStatus::Ready);
        gossip.upsert_node(with("n3", NodeStatus::Ready));
        gossip.upsert_node(with("n3", NodeStatus::Down));
        wait_status(&manager, "n3", NodeStatus::Down).await;
    }
}
