//! [`NodeHub`]: the node table, its event broadcast and its snapshot, in one place so that every
//! [`crate::ClusterManager`] implementation publishes changes the same, lossless way.
//!
//! Three views of one truth are kept in step under one lock:
//! * the table (`BTreeMap<NodeId, Node>`), which answers `nodes()` and `node(id)`;
//! * the snapshot (a `watch` channel of the sorted node list), which a lagging
//!   [`NodeSubscription`] reads to build its [`ClusterEvent::Resync`];
//! * the event broadcast.
//!
//! Every change updates the table, then the snapshot, then broadcasts, all while holding the
//! table lock. Snapshot-before-broadcast is what makes a resync lossless: a subscriber that lags
//! re-subscribes and then reads the snapshot, so any event it skipped was already in the snapshot.
//! Holding the lock across the broadcast keeps concurrent writers from broadcasting in a different
//! order than they changed the table (a subscriber would otherwise end on a stale state). The lock
//! is a `std` mutex and is never held across an `.await`: nothing here awaits.

use crate::{ClusterEvent, NodeSubscription};
use orchestrator_shared_types::{Node, NodeId};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::{broadcast, watch};

/// The node table, event broadcast and snapshot shared by implementations. It updates the
/// snapshot before broadcasting each event, which [`NodeSubscription`] relies on.
#[derive(Debug)]
pub struct NodeHub {
    nodes: Mutex<BTreeMap<NodeId, Node>>,
    events: broadcast::Sender<ClusterEvent>,
    snapshot: watch::Sender<Arc<Vec<Node>>>,
    capacity: usize,
}

impl NodeHub {
    /// A hub whose event channel holds `capacity` events (at least 1; tokio rounds it up to a
    /// power of two). A subscriber that falls further behind gets a [`ClusterEvent::Resync`].
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, 1 << 30).next_power_of_two();
        let (events, _) = broadcast::channel(capacity);
        let (snapshot, _) = watch::channel(Arc::new(Vec::new()));
        Self {
            nodes: Mutex::new(BTreeMap::new()),
            events,
            snapshot,
            capacity,
        }
    }

    /// How many events the channel holds (the requested capacity rounded up to a power of two):
    /// a subscriber that falls further behind gets a resync.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn table(&self) -> MutexGuard<'_, BTreeMap<NodeId, Node>> {
        // Nothing panics while the lock is held except allocation failure, which aborts: a
        // poisoned lock still guards a consistent table.
        self.nodes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds or updates a node; broadcasts `NodeAdded` or `NodeUpdated` (nothing if unchanged).
    pub fn upsert(&self, node: Node) {
        let table = self.table();
        if table.get(&node.id) == Some(&node) {
            return;
        }
        self.upsert_locked(table, node);
    }

    /// Removes a node; broadcasts `NodeRemoved`. Returns it if it was known.
    pub fn remove(&self, id: &NodeId) -> Option<Node> {
        let mut table = self.table();
        let removed = table.remove(id)?;
        self.snapshot.send_modify(|snapshot| {
            let list = Arc::make_mut(snapshot);
            if let Ok(i) = list.binary_search_by(|n| n.id.cmp(id)) {
                list.remove(i);
            }
        });
        let _ = self.events.send(ClusterEvent::NodeRemoved(id.clone()));
        Some(removed)
    }

    /// Changes one node with `change` and broadcasts `NodeUpdated` if it changed anything.
    /// Returns `None` for an unknown node, else whether the node changed. Atomic, unlike a
    /// `node()` followed by an `upsert()` that could overwrite a concurrent change.
    pub fn update(&self, id: &NodeId, change: impl FnOnce(&mut Node)) -> Option<bool> {
        let table = self.table();
        let mut node = table.get(id)?.clone();
        change(&mut node);
        if table.get(id) == Some(&node) {
            return Some(false);
        }
        // Same lock guard: no other writer can slip in between the read and the write.
        self.upsert_locked(table, node);
        Some(true)
    }

    /// Publishes `node` (known to differ from the table's) while the caller holds the lock.
    fn upsert_locked(&self, mut table: MutexGuard<'_, BTreeMap<NodeId, Node>>, node: Node) {
        let event = if table.contains_key(&node.id) {
            ClusterEvent::NodeUpdated(node.clone())
        } else {
            ClusterEvent::NodeAdded(node.clone())
        };
        table.insert(node.id.clone(), node.clone());
        self.snapshot.send_modify(|snapshot| {
            // Subscriptions copy the list out of the snapshot and never keep the `Arc`, so this
            // updates in place (O(log n) search plus a memmove) instead of rebuilding the list.
            let list = Arc::make_mut(snapshot);
            match list.binary_search_by(|n| n.id.cmp(&node.id)) {
                Ok(i) => list[i] = node,
                Err(i) => list.insert(i, node),
            }
        });
        let _ = self.events.send(event);
    }

    /// Every node, sorted by id.
    pub fn nodes(&self) -> Vec<Node> {
        self.table().values().cloned().collect()
    }

    /// One node.
    pub fn node(&self, id: &NodeId) -> Option<Node> {
        self.table().get(id).cloned()
    }

    /// A new subscription: every change made after this call, or a resync if it lags.
    pub fn subscribe(&self) -> NodeSubscription {
        // Taken under the lock so no change is half-published (table updated, event not yet
        // sent) at the moment the receiver is created.
        let _table = self.table();
        NodeSubscription::new(self.events.subscribe(), self.snapshot.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_shared_types::{NodeStatus, Resources};

    fn node(id: &str) -> Node {
        Node::new(id, Resources::new(1000, 1024, 0))
    }

    async fn next(sub: &mut NodeSubscription) -> ClusterEvent {
        tokio::time::timeout(std::time::Duration::from_secs(5), sub.recv())
            .await
            .expect("an event within 5 s")
            .expect("the hub is alive")
    }

    #[tokio::test]
    async fn upsert_emits_added_updated_and_nothing_when_identical() {
        let hub = NodeHub::new(16);
        let mut sub = hub.subscribe();
        hub.upsert(node("b"));
        hub.upsert(node("a"));
        hub.upsert(node("a")); // identical: no event
        let mut down = node("a");
        down.status = NodeStatus::Down;
        hub.upsert(down.clone());
        assert_eq!(hub.remove(&"b".into()), Some(node("b")));
        assert_eq!(hub.remove(&"b".into()), None); // unknown: no event
        hub.upsert(node("c"));

        assert_eq!(next(&mut sub).await, ClusterEvent::NodeAdded(node("b")));
        assert_eq!(next(&mut sub).await, ClusterEvent::NodeAdded(node("a")));
        assert_eq!(
            next(&mut sub).await,
            ClusterEvent::NodeUpdated(down.clone())
        );
        assert_eq!(next(&mut sub).await, ClusterEvent::NodeRemoved("b".into()));
        assert_eq!(next(&mut sub).await, ClusterEvent::NodeAdded(node("c")));
        assert_eq!(hub.nodes(), vec![down.clone(), node("c")]);
        assert_eq!(hub.node(&"a".into()), Some(down));
        assert_eq!(hub.node(&"zz".into()), None);
    }

    #[tokio::test]
    async fn snapshot_tracks_the_table() {
        let hub = NodeHub::new(4);
        for id in ["m", "c", "x", "a"] {
            hub.upsert(node(id));
        }
        hub.remove(&"x".into());
        hub.upsert(node("c").with_label("zone", "z1"));
        let snapshot = hub.snapshot.borrow().as_ref().clone();
        assert_eq!(snapshot, hub.nodes());
        let ids: Vec<&str> = snapshot.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["a", "c", "m"]);
    }

    #[tokio::test]
    async fn update_changes_atomically_and_reports_no_change() {
        let hub = NodeHub::new(8);
        hub.upsert(node("a"));
        let mut sub = hub.subscribe();
        assert_eq!(hub.update(&"zz".into(), |n| n.unschedulable = true), None);
        assert_eq!(
            hub.update(&"a".into(), |n| n.unschedulable = false),
            Some(false)
        );
        assert_eq!(
            hub.update(&"a".into(), |n| n.unschedulable = true),
            Some(true)
        );
        let mut cordoned = node("a");
        cordoned.unschedulable = true;
        assert_eq!(
            next(&mut sub).await,
            ClusterEvent::NodeUpdated(cordoned.clone())
        );
        assert_eq!(hub.nodes(), vec![cordoned]);
    }

    #[tokio::test]
    async fn lagging_subscriber_resyncs_then_follows() {
        let hub = NodeHub::new(2);
        let mut sub = hub.subscribe();
        for i in 0..10 {
            hub.upsert(node(&format!("n{i}")));
        }
        match next(&mut sub).await {
            ClusterEvent::Resync(nodes) => assert_eq!(nodes, hub.nodes()),
            other => panic!("expected a resync, got {other:?}"),
        }
        hub.remove(&"n3".into());
        assert_eq!(next(&mut sub).await, ClusterEvent::NodeRemoved("n3".into()));
    }

    /// Writers race on real threads while a subscriber with a tiny buffer keeps lagging: applying
    /// what it receives (resyncs replace, events patch) must end on exactly the hub's table.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lagging_view_converges_under_concurrent_writers() {
        let hub = Arc::new(NodeHub::new(4));
        let mut sub = hub.subscribe();
        let done = NodeId::from("zz-done");
        let reader = tokio::spawn({
            let done = done.clone();
            async move {
                let mut view: BTreeMap<NodeId, Node> = BTreeMap::new();
                let mut resyncs = 0;
                loop {
                    match sub.recv().await.expect("hub alive") {
                        ClusterEvent::NodeAdded(n) | ClusterEvent::NodeUpdated(n) => {
                            if n.id == done {
                                return (view, resyncs);
                            }
                            view.insert(n.id.clone(), n);
                        }
                        ClusterEvent::NodeRemoved(id) => {
                            view.remove(&id);
                        }
                        ClusterEvent::Resync(nodes) => {
                            resyncs += 1;
                            view = nodes.into_iter().map(|n| (n.id.clone(), n)).collect();
                            if view.remove(&done).is_some() {
                                return (view, resyncs);
                            }
                        }
                    }
                }
            }
        });
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let hub = hub.clone();
                std::thread::spawn(move || {
                    for i in 0..3000 {
                        let id = NodeId::from(format!("n{}", (i * 7 + w) % 16));
                        if i % 5 == 0 {
                            hub.remove(&id);
                        } else {
                            let mut n = node(id.as_str());
                            n.labels.insert("gen".into(), format!("{w}-{i}"));
                            hub.upsert(n);
                        }
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        hub.upsert(node(done.as_str()));
        let (view, resyncs) = tokio::time::timeout(std::time::Duration::from_secs(10), reader)
            .await
            .expect("the reader sees the end marker")
            .unwrap();
        let mut expected = hub.nodes();
        expected.retain(|n| n.id != done);
        assert_eq!(
            view.into_values().collect::<Vec<_>>(),
            expected,
            "after {resyncs} resyncs"
        );
    }

    /// What a resync relies on: once an event can be received, the snapshot already holds it.
    /// A writer thread bumps one node's generation while the reader checks every event it gets
    /// against the snapshot.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_event_is_never_ahead_of_the_snapshot() {
        const GENERATIONS: u64 = 20_000;
        let hub = Arc::new(NodeHub::new(GENERATIONS as usize));
        let generation = |n: &Node| n.labels["gen"].parse::<u64>().unwrap();
        let mut sub = hub.events.subscribe();
        let snapshot = hub.snapshot.subscribe();
        let writer = std::thread::spawn({
            let hub = hub.clone();
            move || {
                for g in 0..GENERATIONS {
                    hub.upsert(node("a").with_label("gen", &g.to_string()));
                }
            }
        });
        for _ in 0..GENERATIONS {
            let event = sub
                .recv()
                .await
                .expect("no lag: the channel holds every event");
            let (ClusterEvent::NodeAdded(n) | ClusterEvent::NodeUpdated(n)) = event else {
                panic!("unexpected {event:?}")
            };
            let in_snapshot = generation(&snapshot.borrow()[0]);
            assert!(
                in_snapshot >= generation(&n),
                "event of generation {} seen while the snapshot has {in_snapshot}",
                generation(&n)
            );
        }
        writer.join().unwrap();
    }

    #[test]
    fn capacity_is_clamped_and_rounded() {
        assert_eq!(NodeHub::new(5).capacity(), 8);
        let hub = NodeHub::new(0);
        assert_eq!(hub.capacity(), 1);
        hub.upsert(node("a"));
        assert_eq!(hub.nodes().len(), 1);
    }
}
