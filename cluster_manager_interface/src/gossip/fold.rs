//! The pure part of the gossip manager: chitchat's per-generation view folded into one entry per
//! [`NodeId`], plus the changes to publish. No I/O and no clock, so the quirks are unit-tested.
//!
//! Chitchat reports one entry per *generation* (a `ChitchatId`: node id, generation id, address).
//! A node that restarts gets a new generation while the old one lingers, dead, until the dead
//! node grace period ends; a node that just joined shows dead until its second heartbeat. The
//! fold turns that into what a [`crate::ClusterManager`] promises:
//! * a node id is reported only once one of its generations has been seen live;
//! * it is live while ANY of its generations is live; its data (node, store flag, generation)
//!   come from the newest generation that has published its node;
//! * live: the node's own gossiped status (`Ready`, `NotReady`); not live: `Down`;
//! * once chitchat has forgotten every generation of it (grace period over), it is removed, and
//!   forgotten here too: a later sighting starts again from "never seen live".

use orchestrator_shared_types::{Node, NodeId, NodeStatus};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What chitchat knows about one generation of one node.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Observation {
    /// The chitchat node id, which is the orchestrator's [`NodeId`].
    pub node_id: NodeId,
    /// The chitchat generation id.
    pub generation: u64,
    /// Whether chitchat's failure detector counts this generation live.
    pub live: bool,
    /// The node this generation published, if it has (and it parsed).
    pub node: Option<Arc<Node>>,
    /// The generation's `store_reachable` key (false when absent).
    pub store_reachable: bool,
}

/// One node as this daemon sees it, all generations folded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Member {
    /// The node as published, its status replaced by `Down` when no generation is live.
    pub node: Node,
    /// Whether any generation is live.
    pub live: bool,
    /// The newest generation's store flag.
    pub store_reachable: bool,
    /// The newest generation.
    pub generation: u64,
}

/// A change to publish on the [`crate::NodeHub`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// The node joined or changed.
    Upsert(Node),
    /// Chitchat forgot every generation of the node.
    Remove(NodeId),
}

/// The folded view, kept between rounds so that it remembers which nodes were seen live.
#[derive(Debug, Default)]
pub(crate) struct Fold {
    members: BTreeMap<NodeId, Member>,
}

impl Fold {
    /// The members currently reported, by id.
    pub fn members(&self) -> &BTreeMap<NodeId, Member> {
        &self.members
    }

    /// Folds a complete observation of chitchat's state (every generation it knows) and returns
    /// the nodes that changed since the previous call, in node id order (removals last).
    pub fn apply(&mut self, observations: impl IntoIterator<Item = Observation>) -> Vec<Change> {
        let mut by_node: BTreeMap<NodeId, Vec<Observation>> = BTreeMap::new();
        for o in observations {
            by_node.entry(o.node_id.clone()).or_default().push(o);
        }
        let mut changes = Vec::new();
        for (id, generations) in &by_node {
            let known = self.members.get(id);
            let Some(member) = fold_generations(id, generations, known) else {
                continue;
            };
            if known.map(|m| &m.node) != Some(&member.node) {
                changes.push(Change::Upsert(member.node.clone()));
            }
            // Liveness, store flag and generation are not part of the node: kept, not published.
            self.members.insert(id.clone(), member);
        }
        let gone: Vec<NodeId> = self
            .members
            .keys()
            .filter(|id| !by_node.contains_key(*id))
            .cloned()
            .collect();
        for id in gone {
            self.members.remove(&id);
            changes.push(Change::Remove(id));
        }
        changes
    }
}

/// The member for one node id, or `None` while it should not be reported (never seen live).
fn fold_generations(
    id: &NodeId,
    generations: &[Observation],
    known: Option<&Member>,
) -> Option<Member> {
    let live = generations.iter().any(|g| g.live && g.node.is_some());
    if !live && known.is_none() {
        // Never seen live: chitchat lists a joining node as dead until its second heartbeat,
        // and a zombie generation may be gossiped back; neither is a node going down.
        return None;
    }
    let newest = generations
        .iter()
        .filter(|g| g.node.is_some())
        .max_by_key(|g| g.generation);
    let Some(newest) = newest else {
        // Known, but no generation carries a node any more (cannot happen with this manager's
        // peers, which publish it at start): keep the last one, down.
        let mut member = known?.clone();
        member.live = false;
        member.node.status = NodeStatus::Down;
        return Some(member);
    };
    let mut node = newest.node.as_deref()?.clone();
    // The transport identity wins over what the JSON says.
    node.id = id.clone();
    if !live {
        node.status = NodeStatus::Down;
    }
    Some(Member {
        node,
        live,
        store_reachable: newest.store_reachable,
        generation: newest.generation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_shared_types::Resources;

    fn node(id: &str) -> Node {
        Node::new(id, Resources::new(1000, 1024, 0))
    }

    fn obs(id: &str, generation: u64, live: bool) -> Observation {
        Observation {
            node_id: id.into(),
            generation,
            live,
            node: Some(Arc::new(node(id))),
            store_reachable: false,
        }
    }

    fn down(id: &str) -> Node {
        let mut n = node(id);
        n.status = NodeStatus::Down;
        n
    }

    #[test]
    fn a_node_never_seen_live_is_not_reported() {
        let mut fold = Fold::default();
        assert_eq!(fold.apply([obs("a", 1, false)]), vec![]);
        assert!(fold.members().is_empty());
        assert_eq!(
            fold.apply([obs("a", 1, true)]),
            vec![Change::Upsert(node("a"))]
        );
        // Unchanged: nothing to publish.
        assert_eq!(fold.apply([obs("a", 1, true)]), vec![]);
    }

    #[test]
    fn a_live_node_going_dead_is_down_then_removed_then_forgotten() {
        let mut fold = Fold::default();
        fold.apply([obs("a", 1, true), obs("b", 1, true)]);
        assert_eq!(
            fold.apply([obs("a", 1, false), obs("b", 1, true)]),
            vec![Change::Upsert(down("a"))]
        );
        assert!(!fold.members()[&NodeId::from("a")].live);
        // Chitchat garbage-collected it after the grace period.
        assert_eq!(
            fold.apply([obs("b", 1, true)]),
            vec![Change::Remove("a".into())]
        );
        // Seen again but dead (a peer still gossips the old generation): ignored.
        assert_eq!(fold.apply([obs("a", 1, false), obs("b", 1, true)]), vec![]);
    }

    #[test]
    fn generations_fold_by_node_id_newest_data_any_live() {
        let mut fold = Fold::default();
        fold.apply([obs("a", 1, true)]);
        // Restarted: the old generation lingers dead, the new one is not live yet. The node is
        // down (it was), and already shows the new generation's data.
        let mut restarted = obs("a", 2, false);
        restarted.node = Some(Arc::new(node("a").with_label("boot", "2")));
        let mut expected = down("a").with_label("boot", "2");
        assert_eq!(
            fold.apply([obs("a", 1, false), restarted.clone()]),
            vec![Change::Upsert(expected.clone())]
        );
        assert_eq!(fold.members()[&NodeId::from("a")].generation, 2);
        // The new generation comes live: one entry, Ready.
        restarted.live = true;
        expected.status = NodeStatus::Ready;
        assert_eq!(
            fold.apply([obs("a", 1, false), restarted.clone()]),
            vec![Change::Upsert(expected.clone())]
        );
        assert_eq!(fold.members().len(), 1);
        // The old generation is collected: nothing changes for the node.
        assert_eq!(fold.apply([restarted.clone()]), vec![]);
        // An old generation still live (not yet detected dead) keeps the node live while the
        // newest one is joining.
        let mut fold = Fold::default();
        let mut joining = obs("a", 5, false);
        joining.store_reachable = true;
        assert_eq!(
            fold.apply([obs("a", 4, true), joining]),
            vec![Change::Upsert(node("a"))]
        );
        let member = &fold.members()[&NodeId::from("a")];
        assert!(member.live && member.store_reachable);
        assert_eq!(member.generation, 5);
    }

    #[test]
    fn status_is_the_gossiped_one_while_live_and_store_flag_follows() {
        let mut fold = Fold::default();
        let mut o = obs("a", 1, true);
        let mut not_ready = node("a");
        not_ready.status = NodeStatus::NotReady;
        o.node = Some(Arc::new(not_ready.clone()));
        assert_eq!(
            fold.apply([o.clone()]),
            vec![Change::Upsert(not_ready.clone())]
        );
        assert!(!fold.members()[&NodeId::from("a")].store_reachable);
        // The store flag is not part of the Node: the member changes, no node event.
        o.store_reachable = true;
        assert_eq!(fold.apply([o.clone()]), vec![]);
        assert!(fold.members()[&NodeId::from("a")].store_reachable);
        o.live = false;
        assert_eq!(fold.apply([o]), vec![Change::Upsert(down("a"))]);
    }

    #[test]
    fn a_generation_without_node_data_is_never_live_and_the_id_comes_from_chitchat() {
        let mut fold = Fold::default();
        let mut bare = obs("a", 1, true);
        bare.node = None;
        assert_eq!(fold.apply([bare.clone()]), vec![]);
        let mut lying = obs("b", 1, true);
        lying.node = Some(Arc::new(node("not-b")));
        let mut expected = node("not-b");
        expected.id = "b".into();
        assert_eq!(fold.apply([lying]), vec![Change::Upsert(expected)]);
        // Known node whose every generation lost its data: kept, down.
        let mut fold = Fold::default();
        fold.apply([obs("a", 1, true)]);
        assert_eq!(fold.apply([bare]), vec![Change::Upsert(down("a"))]);
    }
}
