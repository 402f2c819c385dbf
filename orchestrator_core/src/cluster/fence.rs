//! Fencing a node whose replicas are replaced, from both sides, so that a replica does not run
//! in two places for longer than a stated bound (docs/cluster.md, "Partitions").
//!
//! * **The leader's side** ([`fence_down_nodes`]): when a node goes `Down` (gossip saw it dead,
//!   or its lease ended), the leader replaces its instances and deletes its assignments. An
//!   agent that still reaches the store (gossip lost it, but etcd did not) then stops those
//!   containers at once, instead of when the node comes back.
//! * **The node's side** ([`self_fence`]): a daemon that cannot reach the store for a whole
//!   lease TTL ([`super::lease::LeaseKeeper`] counts its lease lost) may have been replaced.
//!   It stops its containers unless gossip shows that nobody could have replaced them
//!   ([`cut_off_decision`]: every other member is heard and none of them reaches the store
//!   either: the store is down for everyone, and a leader cannot write without it).

use super::gossip::{Gossip, Peer};
use super::records::node_prefix;
use cluster_manager_interface::{ClusterEvent, ClusterManager};
use orchestrator_shared_types::{Node, NodeId, NodeStatus};
use state_store_interface::{Kind, LeaseId, Op, Precondition, StateStore};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Most deletions in one transaction (etcd refuses more than 128 operations by default).
const DELETE_BATCH: usize = 100;

/// While leading: deletes the assignments of every node that goes `Down` in `cluster`, through
/// the leader's fenced `store`, until `cancel`. A failed deletion is retried at the node's next
/// change and at the next term.
pub async fn fence_down_nodes(
    store: Arc<dyn StateStore>,
    cluster: Arc<dyn ClusterManager>,
    on_fenced: impl Fn(&NodeId) + Send + 'static,
    cancel: CancellationToken,
) {
    let mut events = cluster.subscribe();
    let mut fenced: BTreeSet<NodeId> = BTreeSet::new();
    let seen = |nodes: Vec<Node>, fenced: &mut BTreeSet<NodeId>| -> Vec<NodeId> {
        let mut to_fence = Vec::new();
        for node in nodes {
            if node.status == NodeStatus::Down {
                if fenced.insert(node.id.clone()) {
                    to_fence.push(node.id);
                }
            } else {
                fenced.remove(&node.id);
            }
        }
        to_fence
    };
    let mut pending = seen(cluster.nodes().await.unwrap_or_default(), &mut fenced);
    loop {
        for node in pending.drain(..) {
            match delete_assignments(store.as_ref(), &node).await {
                Ok(()) => on_fenced(&node),
                Err(e) => {
                    tracing::warn!(node = %node, error = %e, "deleting a down node's assignments failed");
                    fenced.remove(&node);
                }
            }
        }
        let event = tokio::select! {
            () = cancel.cancelled() => return,
            event = events.recv() => event,
        };
        pending = match event {
            None => return,
            Some(ClusterEvent::NodeAdded(n) | ClusterEvent::NodeUpdated(n)) => {
                seen(vec![n], &mut fenced)
            }
            Some(ClusterEvent::NodeRemoved(id)) => {
                fenced.remove(&id);
                Vec::new()
            }
            Some(ClusterEvent::Resync(nodes)) => seen(nodes, &mut fenced),
        };
    }
}

/// Deletes every assignment of `node`.
async fn delete_assignments(
    store: &dyn StateStore,
    node: &NodeId,
) -> Result<(), state_store_interface::StoreError> {
    let assignments = store.list(Kind::Assignment, &node_prefix(node)).await?;
    if assignments.is_empty() {
        return Ok(());
    }
    tracing::warn!(node = %node, containers = assignments.len(), "node down: deleting its assignments, so its agent stops them if it still reaches the store");
    for chunk in assignments.chunks(DELETE_BATCH) {
        let ops = chunk
            .iter()
            .map(|e| Op::Delete {
                kind: Kind::Assignment,
                key: e.key.clone(),
                precondition: Precondition::None,
            })
            .collect();
        store.commit(ops).await?;
    }
    Ok(())
}

/// What a daemon cut off from the store does with its containers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CutOff {
    /// Keep them: nobody can have replaced them. Says why.
    Keep(String),
    /// Stop them: they may run elsewhere too. Says why.
    Stop(String),
}

/// Decides, for a daemon whose lease is lost, whether its containers may run elsewhere too.
/// `members` are the other members it knew when it last reached the store; `peers` what gossip
/// says of every other daemon; `reachable_for` how long the live peers that say they reach the
/// store have said so without a break (`None` when none says so).
///
/// Containers are kept only when every member is heard by gossip and none of them reaches the
/// store (the store is down for everyone: no leader can write, so nothing is replaced). A
/// member gossip does not hear may be on the other side of a partition, with the store and a
/// leader. A peer may still say it reaches the store for a moment after the store went away
/// for everyone (its own probe has not failed yet), so that counts only after `confirm`.
pub fn cut_off_decision(
    members: &[NodeId],
    peers: &[Peer],
    reachable_for: Option<Duration>,
    confirm: Duration,
) -> CutOff {
    let live: BTreeSet<&NodeId> = peers.iter().filter(|p| p.live).map(|p| &p.node).collect();
    let unheard: Vec<&str> = members
        .iter()
        .filter(|m| !live.contains(m))
        .map(|m| m.as_str())
        .collect();
    if !unheard.is_empty() {
        return CutOff::Stop(format!(
            "gossip does not hear {}: they may reach the store and have replaced them",
            unheard.join(", ")
        ));
    }
    match reachable_for {
        Some(d) if d >= confirm => {
            let with_store: Vec<&str> = peers
                .iter()
                .filter(|p| p.live && p.store_reachable)
                .map(|p| p.node.as_str())
                .collect();
            CutOff::Stop(format!(
                "{} still reach the store: this node is cut off from it alone",
                with_store.join(", ")
            ))
        }
        _ => CutOff::Keep(
            "every member is heard by gossip and none reaches the store: the store is down \
             for everyone, so nothing can replace them"
                .into(),
        ),
    }
}

/// How long a peer's word that it reaches the store must last before it counts (see
/// [`cut_off_decision`]): longer than a peer takes to notice the store is gone (its probe
/// runs every second and waits at most two) and to gossip it.
pub const CONFIRM_REACHABLE: Duration = Duration::from_secs(4);

/// How often a cut-off daemon looks at gossip again.
const CHECK_EVERY: Duration = Duration::from_millis(200);

/// What [`self_fence`] acts on: this node's containers (its agent).
#[async_trait::async_trait]
pub trait StopAll: Send + Sync {
    /// Stops every container of this node now (they stay, stopped, until the store says what
    /// to do with them).
    async fn stop_all(&self, reason: &str);

    /// Reports every container's state again (once the store is back: reports written while
    /// it was not were lost).
    async fn report_all(&self);
}

/// Watches this daemon's lease until `cancel`: once it is lost (the store could not be reached
/// for a whole TTL), looks at gossip every [`CHECK_EVERY`] until the lease is back, and stops
/// every container once [`cut_off_decision`] says so (once per loss). `members` gives the
/// other members known when the store was last reached.
pub async fn self_fence(
    mut lease: watch::Receiver<Option<LeaseId>>,
    gossip: Option<Arc<dyn Gossip>>,
    members: impl Fn() -> Vec<NodeId> + Send,
    agent: Arc<dyn StopAll>,
    cancel: CancellationToken,
) {
    let mut held = lease.borrow_and_update().is_some();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            changed = lease.changed() => if changed.is_err() { return },
        }
        let now = lease.borrow_and_update().is_some();
        if held && !now && !cancel.is_cancelled() {
            let members = members();
            tracing::warn!(
                "the store was unreachable for a whole lease TTL: checking whether this node's containers may run elsewhere"
            );
            let regained = async {
                let _ = lease.wait_for(Option::is_some).await;
            };
            tokio::select! {
                () = cancel.cancelled() => return,
                () = regained => {}
                () = watch_cut_off(gossip.as_deref(), &members, agent.as_ref()) => {
                    let _ = lease.wait_for(Option::is_some).await;
                }
            }
            tracing::info!("the store is reachable again: reporting every container");
            agent.report_all().await;
        }
        held = lease.borrow().is_some();
    }
}

/// Looks at gossip until the decision is to stop; stops, then returns.
async fn watch_cut_off(gossip: Option<&dyn Gossip>, members: &[NodeId], agent: &dyn StopAll) {
    let mut reachable_since: Option<Instant> = None;
    let mut logged_keep = false;
    loop {
        let peers = match gossip {
            Some(g) => g.peers().await,
            None => Vec::new(),
        };
        if peers.iter().any(|p| p.live && p.store_reachable) {
            reachable_since.get_or_insert_with(Instant::now);
        } else {
            reachable_since = None;
        }
        let reachable_for = reachable_since.map(|t| t.elapsed());
        match cut_off_decision(members, &peers, reachable_for, CONFIRM_REACHABLE) {
            CutOff::Stop(reason) => {
                tracing::warn!(%reason, "cut off from the store: stopping every container of this node");
                agent.stop_all(&reason).await;
                return;
            }
            CutOff::Keep(reason) => {
                if !logged_keep {
                    tracing::warn!(%reason, "cut off from the store: keeping the containers for now");
                    logged_keep = true;
                }
            }
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(node: &str, live: bool, store_reachable: bool) -> Peer {
        Peer {
            node: NodeId::from(node),
            live,
            store_reachable,
        }
    }

    fn ids(names: &[&str]) -> Vec<NodeId> {
        names.iter().map(|n| NodeId::from(*n)).collect()
    }

    const CONFIRM: Duration = Duration::from_secs(4);

    #[test]
    fn a_lone_member_keeps_its_containers() {
        let d = cut_off_decision(&[], &[], None, CONFIRM);
        assert!(matches!(d, CutOff::Keep(_)), "{d:?}");
    }

    #[test]
    fn an_isolated_member_stops_them() {
        // Gossip hears nobody (the node's link is down), or has never heard the others.
        let members = ids(&["n2", "n3"]);
        let peers = [peer("n2", false, false), peer("n3", false, true)];
        for peers in [&peers[..], &[]] {
            let d = cut_off_decision(&members, peers, None, CONFIRM);
            let CutOff::Stop(why) = d else {
                panic!("{d:?}")
            };
            assert!(why.contains("n2, n3"), "{why}");
        }
    }

    #[test]
    fn one_unheard_member_is_enough_to_stop() {
        let members = ids(&["n2", "n3"]);
        let peers = [peer("n2", true, false), peer("n3", false, false)];
        let d = cut_off_decision(&members, &peers, None, CONFIRM);
        assert!(
            matches!(&d, CutOff::Stop(why) if why.contains("n3") && !why.contains("n2")),
            "{d:?}"
        );
    }

    #[test]
    fn store_down_for_everyone_keeps_them() {
        let members = ids(&["n2", "n3"]);
        let peers = [peer("n2", true, false), peer("n3", true, false)];
        let d = cut_off_decision(&members, &peers, None, CONFIRM);
        assert!(matches!(d, CutOff::Keep(_)), "{d:?}");
    }

    #[test]
    fn a_peer_with_the_store_counts_once_confirmed() {
        let members = ids(&["n2", "n3"]);
        let peers = [peer("n2", true, true), peer("n3", true, false)];
        let early = cut_off_decision(&members, &peers, Some(Duration::from_secs(1)), CONFIRM);
        assert!(matches!(early, CutOff::Keep(_)), "{early:?}");
        let d = cut_off_decision(&members, &peers, Some(CONFIRM), CONFIRM);
        assert!(
            matches!(&d, CutOff::Stop(why) if why.contains("n2")),
            "{d:?}"
        );
    }

    #[test]
    fn peers_that_are_not_members_do_not_matter() {
        // A daemon that joined after the last contact, or a dead one of long ago.
        let members = ids(&["n2"]);
        let peers = [peer("n2", true, false), peer("old", false, false)];
        let d = cut_off_decision(&members, &peers, None, CONFIRM);
        assert!(matches!(d, CutOff::Keep(_)), "{d:?}");
    }

    /// Records what [`self_fence`] did.
    #[derive(Default)]
    struct Agent {
        log: std::sync::Mutex<Vec<&'static str>>,
    }

    #[async_trait::async_trait]
    impl StopAll for Agent {
        async fn stop_all(&self, _reason: &str) {
            self.log.lock().unwrap().push("stop");
        }
        async fn report_all(&self) {
            self.log.lock().unwrap().push("report");
        }
    }

    /// A gossip layer whose peers the test sets.
    struct Peers(std::sync::Mutex<Vec<Peer>>);

    #[async_trait::async_trait]
    impl Gossip for Peers {
        fn cluster_manager(&self) -> Arc<dyn ClusterManager> {
            Arc::new(cluster_manager_interface::StaticClusterManager::new())
        }
        async fn set_store_reachable(&self, _reachable: bool) {}
        async fn peers(&self) -> Vec<Peer> {
            self.0.lock().unwrap().clone()
        }
        fn address(&self) -> String {
            "test".into()
        }
        async fn meet(&self, _addresses: Vec<String>) {}
    }

    /// Runs [`self_fence`] through one loss of the lease and its return, `during` apart;
    /// returns what the agent was told.
    async fn lose_the_lease(
        gossip: Option<Arc<dyn Gossip>>,
        during: Duration,
    ) -> Vec<&'static str> {
        let (lease, rx) = watch::channel(Some(1));
        let agent = Arc::new(Agent::default());
        let cancel = CancellationToken::new();
        let task = tokio::spawn(self_fence(
            rx,
            gossip,
            || ids(&["n2", "n3"]),
            agent.clone(),
            cancel.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(50)).await;
        lease.send_replace(None);
        tokio::time::sleep(during).await;
        lease.send_replace(Some(2));
        tokio::time::sleep(Duration::from_millis(50)).await;
        cancel.cancel();
        task.await.unwrap();
        let log = agent.log.lock().unwrap().clone();
        log
    }

    #[tokio::test(start_paused = true)]
    async fn a_daemon_that_hears_nobody_stops_its_containers_then_reports_them() {
        let log = lose_the_lease(None, Duration::from_secs(1)).await;
        assert_eq!(log, ["stop", "report"]);
    }

    #[tokio::test(start_paused = true)]
    async fn store_down_for_everyone_keeps_the_containers() {
        let peers = vec![peer("n2", true, false), peer("n3", true, false)];
        let gossip: Arc<dyn Gossip> = Arc::new(Peers(std::sync::Mutex::new(peers)));
        let log = lose_the_lease(Some(gossip), Duration::from_secs(10)).await;
        assert_eq!(log, ["report"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_keeps_the_store_makes_it_stop_once_confirmed() {
        let peers = vec![peer("n2", true, true), peer("n3", true, false)];
        let gossip: Arc<dyn Gossip> = Arc::new(Peers(std::sync::Mutex::new(peers)));
        // Back before the peer's word is confirmed: kept.
        let early = lose_the_lease(Some(gossip.clone()), CONFIRM / 2).await;
        assert_eq!(early, ["report"]);
        let late = lose_the_lease(Some(gossip), CONFIRM + Duration::from_secs(1)).await;
        assert_eq!(late, ["stop", "report"]);
    }

    /// The leader deletes every assignment of a node going `Down` (more than one batch of
    /// them), and none of the others'.
    #[tokio::test]
    async fn a_node_going_down_loses_its_assignments() {
        use orchestrator_shared_types::Resources;
        let store = Arc::new(state_store_interface::InMemoryStore::new());
        let put = |node: &str, i: usize| Op::Put {
            kind: Kind::Assignment,
            key: format!("{node}/c{i}"),
            value: b"{}".to_vec(),
            precondition: Precondition::None,
        };
        let ops: Vec<Op> = (0..DELETE_BATCH + 20).map(|i| put("n1", i)).collect();
        store.commit(ops).await.unwrap();
        store
            .commit(vec![put("n2", 0), put("n10", 0)])
            .await
            .unwrap();
        let cluster = Arc::new(cluster_manager_interface::StaticClusterManager::new());
        for id in ["n1", "n2", "n10"] {
            cluster.upsert_node(Node::new(id, Resources::new(1000, 1024, 0)));
        }
        let cancel = CancellationToken::new();
        let told = Arc::new(std::sync::Mutex::new(Vec::<NodeId>::new()));
        let told_to = told.clone();
        let task = tokio::spawn(fence_down_nodes(
            store.clone(),
            cluster.clone(),
            move |node: &NodeId| told_to.lock().unwrap().push(node.clone()),
            cancel.clone(),
        ));
        let count = |node: &'static str| {
            let store = store.clone();
            async move {
                store
                    .list(Kind::Assignment, &format!("{node}/"))
                    .await
                    .unwrap()
                    .len()
            }
        };
        let mut down = Node::new("n1", Resources::new(1000, 1024, 0));
        down.status = NodeStatus::Down;
        cluster.upsert_node(down);
        let deadline = Instant::now() + Duration::from_secs(5);
        while count("n1").await > 0 {
            assert!(
                Instant::now() < deadline,
                "n1's assignments were never deleted"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(count("n2").await, 1);
        assert_eq!(count("n10").await, 1);
        let deadline = Instant::now() + Duration::from_secs(5);
        while told.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "the fencing was never told");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(*told.lock().unwrap(), [NodeId::from("n1")]);
        cancel.cancel();
        task.await.unwrap();
    }
}
