//! [`ClusterState`]: nodes, what is allocated on each, and the indexes used by schedulers.
//!
//! Nodes live in a slot vector (freed slots are reused) with a map from [`NodeId`] to slot, so
//! schedulers work on small integers and only hash an id at the API boundary. Per node the state
//! keeps the sum of its allocations, the host ports they claim (a multiset: state restored from
//! the store may hold conflicting claims, and releasing one must not free the other) and how many
//! replicas of each workload it runs.
//!
//! Three indexes keep placement from scanning every node for every replica:
//! * `by_mem`: schedulable nodes ordered by (free memory, free CPU, slot);
//! * `by_cpu`: the same nodes ordered by (free CPU, free memory, slot);
//! * `labels`: label key → value → slots carrying it, for `node_selector` requests that match
//!   few nodes.
//!
//! A best-fit scheduler starts both free indexes at the smallest amount that could fit; a
//! spreading one walks them from the top. Every mutation updates the indexes in O(log N). The
//! state also sums allocatable and free resources over schedulable nodes, so a scorer can tell
//! which resource the cluster is running out of without a scan.

use crate::PlacementPlan;
use orchestrator_shared_types::{Labels, Node, NodeId, Protocol, Resources, WorkloadId};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// What one placed replica holds on its node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    /// Its workload (for spread / one-per-node accounting).
    pub workload_id: WorkloadId,
    /// Resources it reserves.
    pub resources: Resources,
    /// Host ports it claims.
    pub host_ports: Vec<(Protocol, u16)>,
}

/// A free-index entry: (primary free amount, secondary free amount, slot).
pub(crate) type IndexKey = (u64, u64, usize);

/// A node's claimed host ports with how many allocations claim each (a multiset: state restored
/// from the store may hold conflicting claims, and releasing one must not free the other). A Vec
/// because a node rarely has more than a handful, where a linear scan beats hashing.
pub(crate) type PortClaims = Vec<((Protocol, u16), u32)>;

/// Adds one claim on each of `ports`.
pub(crate) fn claim_ports(claims: &mut PortClaims, ports: &[(Protocol, u16)]) {
    for &port in ports {
        match claims.iter_mut().find(|(p, _)| *p == port) {
            Some((_, count)) => *count += 1,
            None => claims.push((port, 1)),
        }
    }
}

/// Removes one claim on each of `ports` (ports nobody claims are ignored).
pub(crate) fn unclaim_ports(claims: &mut PortClaims, ports: &[(Protocol, u16)]) {
    for port in ports {
        if let Some(i) = claims.iter().position(|(p, _)| p == port) {
            claims[i].1 -= 1;
            if claims[i].1 == 0 {
                claims.swap_remove(i);
            }
        }
    }
}

/// A schedulable node's contribution to the free indexes and the cluster totals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Indexed {
    free: (u64, u64),
    allocatable: (u64, u64),
}

/// Sums over schedulable nodes, as (CPU, memory). Wide so that no node description can
/// overflow them.
#[derive(Clone, Copy, Debug, Default)]
struct Totals {
    free: (u128, u128),
    allocatable: (u128, u128),
}

/// One node and everything allocated on it.
#[derive(Clone, Debug)]
pub(crate) struct NodeEntry {
    pub(crate) node: Node,
    pub(crate) allocated: Resources,
    /// Claimed host ports with how many allocations claim each.
    pub(crate) ports: PortClaims,
    replicas: HashMap<WorkloadId, u32>,
    /// How the node is counted in the free indexes and totals; `None` while it is not
    /// schedulable. Kept so the old entries can be removed after the node or its allocations
    /// changed.
    indexed: Option<Indexed>,
}

impl NodeEntry {
    fn new(node: Node) -> Self {
        Self {
            node,
            allocated: Resources::ZERO,
            ports: Vec::new(),
            replicas: HashMap::new(),
            indexed: None,
        }
    }

    /// Allocatable minus allocated, floored at zero (restored state may overcommit).
    pub(crate) fn free(&self) -> Resources {
        self.node.allocatable.saturating_sub(&self.allocated)
    }

    /// Whether an allocation on this node claims `port`.
    pub(crate) fn port_claimed(&self, port: (Protocol, u16)) -> bool {
        self.ports.iter().any(|(p, _)| *p == port)
    }

    /// Replicas of `workload` on this node.
    pub(crate) fn replicas_of(&self, workload: &WorkloadId) -> u32 {
        self.replicas.get(workload).copied().unwrap_or(0)
    }

    /// The node's key in the free indexes, as (free CPU, free memory); `None` while it is not
    /// schedulable (and so in neither index).
    pub(crate) fn indexed_free(&self) -> Option<(u64, u64)> {
        self.indexed.map(|i| i.free)
    }
}

/// Nodes and their allocations.
#[derive(Clone, Debug, Default)]
pub struct ClusterState {
    /// Shared, so that a copy of the state (a published view of the cluster) costs a pointer
    /// per node; a node's entry is copied only when it changes while a copy holds it.
    slots: Vec<Option<Arc<NodeEntry>>>,
    ids: HashMap<NodeId, usize>,
    vacant: Vec<usize>,
    by_mem: BTreeSet<IndexKey>,
    by_cpu: BTreeSet<IndexKey>,
    totals: Totals,
    labels: HashMap<String, HashMap<String, BTreeSet<usize>>>,
}

impl ClusterState {
    /// An empty cluster.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a node or replaces its description, keeping what is allocated on it.
    pub fn upsert_node(&mut self, node: Node) {
        let slot = match self.ids.get(&node.id) {
            Some(&slot) => {
                let old_labels = std::mem::take(&mut self.entry_mut(slot).node.labels);
                self.unindex_labels(slot, &old_labels);
                self.entry_mut(slot).node = node;
                slot
            }
            None => {
                let entry = Some(Arc::new(NodeEntry::new(node)));
                let slot = match self.vacant.pop() {
                    Some(slot) => {
                        self.slots[slot] = entry;
                        slot
                    }
                    None => {
                        self.slots.push(entry);
                        self.slots.len() - 1
                    }
                };
                self.ids.insert(self.entry(slot).node.id.clone(), slot);
                slot
            }
        };
        let labels = self.entry(slot).node.labels.clone();
        self.index_labels(slot, &labels);
        self.reindex(slot);
    }

    /// Removes a node and everything allocated on it; returns it if it was known.
    pub fn remove_node(&mut self, id: &NodeId) -> Option<Node> {
        let slot = self.ids.remove(id)?;
        self.unindex_free(slot);
        let entry = self.slots[slot]
            .take()
            .expect("the id map only points at occupied slots");
        self.unindex_labels(slot, &entry.node.labels);
        self.vacant.push(slot);
        Some(Arc::unwrap_or_clone(entry).node)
    }

    /// A node by id.
    pub fn node(&self, id: &NodeId) -> Option<&Node> {
        self.slot_of(id).map(|slot| &self.entry(slot).node)
    }

    /// Every node, in no particular order.
    pub fn nodes(&self) -> Box<dyn Iterator<Item = &Node> + '_> {
        Box::new(self.slots.iter().flatten().map(|e| &e.node))
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of nodes new replicas may be placed on (ready and not cordoned).
    pub fn schedulable_len(&self) -> usize {
        self.by_mem.len()
    }

    /// Sum of what is allocated on a node (zero for an unknown node).
    pub fn allocated(&self, id: &NodeId) -> Resources {
        self.slot_of(id)
            .map_or(Resources::ZERO, |slot| self.entry(slot).allocated)
    }

    /// What is left on a node: allocatable minus allocated, floored at zero.
    pub fn free(&self, id: &NodeId) -> Option<Resources> {
        self.slot_of(id).map(|slot| self.entry(slot).free())
    }

    /// Number of replicas (of any workload) allocated on `node`.
    pub fn instances_on(&self, node: &NodeId) -> usize {
        self.slot_of(node).map_or(0, |slot| {
            self.entry(slot)
                .replicas
                .values()
                .map(|n| *n as usize)
                .sum()
        })
    }

    /// Number of replicas of `workload` allocated on `node`.
    pub fn replicas_on(&self, workload: &WorkloadId, node: &NodeId) -> u32 {
        self.slot_of(node)
            .map_or(0, |slot| self.entry(slot).replicas_of(workload))
    }

    /// Whether an allocation on `node` claims host `port` (false for an unknown node).
    pub fn host_port_claimed(&self, node: &NodeId, port: (Protocol, u16)) -> bool {
        self.slot_of(node)
            .is_some_and(|slot| self.entry(slot).port_claimed(port))
    }

    /// `count` host ports of `protocol` in `range` that no allocation on `node` claims, lowest
    /// first; `None` when fewer are free or the node is unknown. Claims nothing: the caller puts
    /// them in the replica's [`Allocation`] and allocates it, so they are freed with it. Costs
    /// O(p log p) in the node's claimed ports p, whatever the size of the range.
    pub fn free_host_ports(
        &self,
        node: &NodeId,
        protocol: Protocol,
        count: usize,
        range: std::ops::RangeInclusive<u16>,
    ) -> Option<Vec<u16>> {
        let entry = self.entry(self.slot_of(node)?);
        let mut claimed: Vec<u16> = entry
            .ports
            .iter()
            .filter(|((p, port), _)| *p == protocol && range.contains(port))
            .map(|((_, port), _)| *port)
            .collect();
        claimed.sort_unstable();
        // Walk the range and the claimed ports together: each step either yields a free port
        // or skips a claimed one, so the walk is bounded by count + claimed.
        let mut free = Vec::with_capacity(count);
        let mut claimed = claimed.into_iter().peekable();
        let mut next = u32::from(*range.start());
        let end = u32::from(*range.end());
        while free.len() < count && next <= end {
            match claimed.peek().map(|&c| u32::from(c)) {
                Some(c) if c == next => {
                    claimed.next();
                    next += 1;
                }
                Some(c) if c < next => {
                    claimed.next();
                }
                _ => {
                    free.push(next as u16);
                    next += 1;
                }
            }
        }
        (free.len() == count).then_some(free)
    }

    /// Records an allocation on a node, even if it overcommits the node (state restored from
    /// the store must be recorded as it is). Returns false, recording nothing, for an unknown node.
    pub fn allocate(&mut self, node: &NodeId, alloc: &Allocation) -> bool {
        match self.slot_of(node) {
            Some(slot) => {
                self.allocate_slot(slot, alloc);
                true
            }
            None => false,
        }
    }

    /// Releases an allocation made with [`ClusterState::allocate`] (no-op if unknown).
    pub fn release(&mut self, node: &NodeId, alloc: &Allocation) {
        let Some(slot) = self.slot_of(node) else {
            return;
        };
        let entry = self.entry_mut(slot);
        entry.allocated = entry.allocated.saturating_sub(&alloc.resources);
        unclaim_ports(&mut entry.ports, &alloc.host_ports);
        if let Some(count) = entry.replicas.get_mut(&alloc.workload_id) {
            *count -= 1;
            if *count == 0 {
                entry.replicas.remove(&alloc.workload_id);
            }
        }
        self.reindex(slot);
    }

    /// Applies a [`PlacementPlan`] computed against this state: first releases what the plan
    /// treated as released ([`PlacementPlan::released`], in order), then allocates every
    /// placement, in order. The result is the state the plan's computation saw, provided the
    /// state has not changed since the plan was computed. Returns how many placements were
    /// recorded: fewer than planned only when their nodes were removed in between.
    pub fn commit(&mut self, plan: &PlacementPlan) -> usize {
        for (node, alloc) in &plan.released {
            self.release(node, alloc);
        }
        plan.placements
            .iter()
            .filter(|p| self.allocate(&p.node, &p.allocation))
            .count()
    }

    // ---- crate-internal access for schedulers -------------------------------------------

    /// One more than the largest slot in use (slots are below this).
    pub(crate) fn slot_count(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn slot_of(&self, id: &NodeId) -> Option<usize> {
        self.ids.get(id).copied()
    }

    pub(crate) fn entry(&self, slot: usize) -> &NodeEntry {
        self.slots[slot]
            .as_ref()
            .expect("slots handed out by the state's own indexes are occupied")
    }

    fn entry_mut(&mut self, slot: usize) -> &mut NodeEntry {
        Arc::make_mut(
            self.slots[slot]
                .as_mut()
                .expect("slots handed out by the state's own indexes are occupied"),
        )
    }

    /// Every node with its slot, in slot order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (usize, &NodeEntry)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(slot, e)| e.as_deref().map(|e| (slot, e)))
    }

    /// The free index by (free memory, free CPU, slot), for walks that start elsewhere than
    /// [`ClusterState::by_free_memory`] does.
    pub(crate) fn memory_index(&self) -> &BTreeSet<IndexKey> {
        &self.by_mem
    }

    /// The free index by (free CPU, free memory, slot), likewise.
    pub(crate) fn cpu_index(&self) -> &BTreeSet<IndexKey> {
        &self.by_cpu
    }

    /// Schedulable nodes with at least `mem` free memory, as (free memory, free CPU, slot),
    /// ascending; those at exactly `mem` start at `cpu` free CPU.
    pub(crate) fn by_free_memory(
        &self,
        mem: u64,
        cpu: u64,
    ) -> std::collections::btree_set::Range<'_, IndexKey> {
        self.by_mem.range((mem, cpu, 0)..)
    }

    /// Schedulable nodes with at least `cpu` free CPU, as (free CPU, free memory, slot),
    /// ascending; those at exactly `cpu` start at `mem` free memory.
    pub(crate) fn by_free_cpu(
        &self,
        cpu: u64,
        mem: u64,
    ) -> std::collections::btree_set::Range<'_, IndexKey> {
        self.by_cpu.range((cpu, mem, 0)..)
    }

    /// The smallest set of slots carrying one of the `selector`'s labels, or an empty one when a
    /// label is carried by no node. `None` for an empty selector.
    pub(crate) fn smallest_label_set(&self, selector: &Labels) -> Option<LabelSet<'_>> {
        let mut smallest: Option<LabelSet<'_>> = None;
        for (key, value) in selector {
            let Some(set) = self.labels.get(key).and_then(|values| values.get(value)) else {
                return Some(LabelSet::Empty);
            };
            if smallest.as_ref().is_none_or(|s| set.len() < s.len()) {
                smallest = Some(LabelSet::Set(set));
            }
        }
        smallest
    }

    /// Fractions of the schedulable nodes' allocatable CPU and memory that are allocated
    /// (0 for a dimension no schedulable node offers).
    pub(crate) fn utilization(&self) -> (f64, f64) {
        self.utilization_after((0, 0))
    }

    /// [`ClusterState::utilization`] once the schedulable nodes' free (CPU, memory) totals have
    /// changed by `free_change`, for a plan's tentative allocations. Exact integer sums first, so
    /// a plan computes the very same fractions as the state it would commit to.
    pub(crate) fn utilization_after(&self, free_change: (i128, i128)) -> (f64, f64) {
        let used = |free: u128, total: u128| {
            if total == 0 {
                0.0
            } else {
                1.0 - free as f64 / total as f64
            }
        };
        let t = &self.totals;
        (
            used(
                t.free.0.saturating_add_signed(free_change.0),
                t.allocatable.0,
            ),
            used(
                t.free.1.saturating_add_signed(free_change.1),
                t.allocatable.1,
            ),
        )
    }

    /// Records `alloc` on the node in `slot` (see [`ClusterState::allocate`]).
    pub(crate) fn allocate_slot(&mut self, slot: usize, alloc: &Allocation) {
        let entry = self.entry_mut(slot);
        entry.allocated += alloc.resources;
        claim_ports(&mut entry.ports, &alloc.host_ports);
        // get_mut first: cloning the id for every replica would allocate on the hot path.
        match entry.replicas.get_mut(&alloc.workload_id) {
            Some(count) => *count += 1,
            None => {
                entry.replicas.insert(alloc.workload_id.clone(), 1);
            }
        }
        self.reindex(slot);
    }

    fn unindex_free(&mut self, slot: usize) {
        if let Some(Indexed {
            free: (cpu, mem),
            allocatable: (total_cpu, total_mem),
        }) = self.entry_mut(slot).indexed.take()
        {
            self.by_mem.remove(&(mem, cpu, slot));
            self.by_cpu.remove(&(cpu, mem, slot));
            let t = &mut self.totals;
            t.free.0 -= u128::from(cpu);
            t.free.1 -= u128::from(mem);
            t.allocatable.0 -= u128::from(total_cpu);
            t.allocatable.1 -= u128::from(total_mem);
        }
    }

    /// Puts the node back in the free indexes under its current free resources.
    fn reindex(&mut self, slot: usize) {
        let entry = self.entry(slot);
        let free = entry.free();
        let total = entry.node.allocatable;
        let key = entry.node.is_schedulable().then_some(Indexed {
            free: (free.cpu_millicores, free.memory_mb),
            allocatable: (total.cpu_millicores, total.memory_mb),
        });
        if key == entry.indexed {
            return;
        }
        self.unindex_free(slot);
        if let Some(Indexed {
            free: (cpu, mem),
            allocatable: (total_cpu, total_mem),
        }) = key
        {
            self.by_mem.insert((mem, cpu, slot));
            self.by_cpu.insert((cpu, mem, slot));
            let t = &mut self.totals;
            t.free.0 += u128::from(cpu);
            t.free.1 += u128::from(mem);
            t.allocatable.0 += u128::from(total_cpu);
            t.allocatable.1 += u128::from(total_mem);
        }
        self.entry_mut(slot).indexed = key;
    }

    fn index_labels(&mut self, slot: usize, labels: &Labels) {
        for (key, value) in labels {
            self.labels
                .entry(key.clone())
                .or_default()
                .entry(value.clone())
                .or_default()
                .insert(slot);
        }
    }

    fn unindex_labels(&mut self, slot: usize, labels: &Labels) {
        for (key, value) in labels {
            if let Some(values) = self.labels.get_mut(key) {
                if let Some(set) = values.get_mut(value) {
                    set.remove(&slot);
                    if set.is_empty() {
                        values.remove(value);
                    }
                }
                if values.is_empty() {
                    self.labels.remove(key);
                }
            }
        }
    }
}

#[cfg(test)]
impl ClusterState {
    /// Everything a caller or a scheduler can observe, in a comparable form: per slot the node,
    /// what is allocated, the claimed ports and replica counts (sorted), and the index entry;
    /// then both free indexes, the totals and the label index. Two states built from the same
    /// clone compare slot by slot.
    pub(crate) fn observable(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        for (slot, e) in self.entries() {
            let mut ports = e.ports.clone();
            ports.sort();
            let mut replicas: Vec<_> = e.replicas.iter().collect();
            replicas.sort();
            writeln!(
                out,
                "{slot} {:?} allocated={:?} free={:?} ports={ports:?} replicas={replicas:?} indexed={:?}",
                e.node, e.allocated, e.free(), e.indexed
            )
            .expect("writing to a String");
        }
        let mut labels: Vec<_> = self
            .labels
            .iter()
            .flat_map(|(k, values)| values.iter().map(move |(v, slots)| (k, v, slots)))
            .collect();
        labels.sort();
        writeln!(
            out,
            "by_mem={:?}\nby_cpu={:?}\ntotals={:?}\nlabels={labels:?}\nvacant={:?}",
            self.by_mem, self.by_cpu, self.totals, self.vacant
        )
        .expect("writing to a String");
        out
    }
}

/// The nodes carrying one label, from [`ClusterState::smallest_label_set`].
pub(crate) enum LabelSet<'a> {
    /// No node carries the label.
    Empty,
    /// Slots of the nodes carrying it.
    Set(&'a BTreeSet<usize>),
}

impl<'a> LabelSet<'a> {
    pub(crate) fn len(&self) -> usize {
        match self {
            LabelSet::Empty => 0,
            LabelSet::Set(set) => set.len(),
        }
    }

    pub(crate) fn slots(&self) -> impl Iterator<Item = usize> + 'a {
        let set = match self {
            LabelSet::Empty => None,
            LabelSet::Set(set) => Some(*set),
        };
        set.into_iter().flatten().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_shared_types::NodeStatus;

    fn alloc(workload: &str, cpu: u64, mem: u64, ports: &[(Protocol, u16)]) -> Allocation {
        Allocation {
            workload_id: WorkloadId::from(workload),
            resources: Resources::new(cpu, mem, 0),
            host_ports: ports.to_vec(),
        }
    }

    fn index_is_consistent(state: &ClusterState) {
        let mut expected = BTreeSet::new();
        for (slot, e) in state.entries() {
            if e.node.is_schedulable() {
                let free = e.free();
                expected.insert((free.memory_mb, free.cpu_millicores, slot));
            }
        }
        assert_eq!(state.by_mem, expected);
        let by_cpu: BTreeSet<_> = expected.iter().map(|&(m, c, s)| (c, m, s)).collect();
        assert_eq!(state.by_cpu, by_cpu);
    }

    #[test]
    fn allocate_release_and_indexes() {
        let mut s = ClusterState::new();
        assert!(s.is_empty());
        s.upsert_node(Node::new("a", Resources::new(1000, 1000, 0)));
        s.upsert_node(Node::new("b", Resources::new(2000, 2000, 0)));
        let a = NodeId::from("a");
        let x = alloc("w", 300, 400, &[(Protocol::Tcp, 80)]);
        assert!(s.allocate(&a, &x));
        assert!(s.allocate(&a, &x));
        assert_eq!(s.allocated(&a), Resources::new(600, 800, 0));
        assert_eq!(s.free(&a), Some(Resources::new(400, 200, 0)));
        assert_eq!(s.replicas_on(&WorkloadId::from("w"), &a), 2);
        assert!(s.host_port_claimed(&a, (Protocol::Tcp, 80)));
        index_is_consistent(&s);

        // Overcommit is recorded; free floors at zero.
        assert!(s.allocate(&a, &alloc("v", 900, 0, &[])));
        assert_eq!(s.free(&a), Some(Resources::new(0, 200, 0)));
        index_is_consistent(&s);

        s.release(&a, &x);
        assert!(
            s.host_port_claimed(&a, (Protocol::Tcp, 80)),
            "one claim is left"
        );
        s.release(&a, &x);
        assert!(!s.host_port_claimed(&a, (Protocol::Tcp, 80)));
        assert_eq!(s.replicas_on(&WorkloadId::from("w"), &a), 0);
        assert_eq!(s.allocated(&a), Resources::new(900, 0, 0));
        index_is_consistent(&s);

        assert!(!s.allocate(&NodeId::from("nope"), &x));
        s.release(&NodeId::from("nope"), &x);
        assert_eq!(s.allocated(&NodeId::from("nope")), Resources::ZERO);
    }

    #[test]
    fn free_host_ports_skip_claims_reuse_releases_and_run_out() {
        let mut s = ClusterState::new();
        s.upsert_node(Node::new("a", Resources::new(1000, 1000, 0)));
        let a = NodeId::from("a");
        let tcp = Protocol::Tcp;
        assert_eq!(
            s.free_host_ports(&a, tcp, 2, 100..=109),
            Some(vec![100, 101])
        );
        // Claimed ports are skipped, per protocol; ports outside the range do not matter.
        let x = alloc("w", 1, 1, &[(tcp, 100), (tcp, 102), (tcp, 50)]);
        s.allocate(&a, &x);
        s.allocate(&a, &alloc("w", 1, 1, &[(Protocol::Udp, 101)]));
        assert_eq!(
            s.free_host_ports(&a, tcp, 3, 100..=109),
            Some(vec![101, 103, 104])
        );
        assert_eq!(
            s.free_host_ports(&a, Protocol::Udp, 2, 100..=109),
            Some(vec![100, 102])
        );
        // Released ports can be picked again.
        s.release(&a, &x);
        assert_eq!(s.free_host_ports(&a, tcp, 1, 100..=109), Some(vec![100]));
        // Exhaustion: 10 ports, all claimed.
        let all: Vec<_> = (100..=109).map(|p| (tcp, p)).collect();
        s.allocate(&a, &alloc("w", 1, 1, &all[..9]));
        assert_eq!(s.free_host_ports(&a, tcp, 1, 100..=109), Some(vec![109]));
        assert_eq!(s.free_host_ports(&a, tcp, 2, 100..=109), None);
        s.allocate(&a, &alloc("w", 1, 1, &all[9..]));
        assert_eq!(s.free_host_ports(&a, tcp, 1, 100..=109), None);
        assert_eq!(s.free_host_ports(&a, tcp, 0, 100..=109), Some(vec![]));
        // The top of the port space does not overflow; unknown nodes have none.
        assert_eq!(
            s.free_host_ports(&a, tcp, 2, 65534..=65535),
            Some(vec![65534, 65535])
        );
        assert_eq!(s.free_host_ports(&"b".into(), tcp, 1, 100..=109), None);
    }

    #[test]
    fn upsert_keeps_allocations_and_follows_schedulability() {
        let mut s = ClusterState::new();
        s.upsert_node(Node::new("a", Resources::new(1000, 1000, 0)).with_label("zone", "x"));
        let a = NodeId::from("a");
        s.allocate(&a, &alloc("w", 100, 100, &[]));

        let mut cordoned = s.node(&a).unwrap().clone();
        cordoned.unschedulable = true;
        cordoned.labels.clear();
        s.upsert_node(cordoned);
        assert_eq!(s.allocated(&a), Resources::new(100, 100, 0));
        assert_eq!(s.schedulable_len(), 0);
        assert!(s.labels.is_empty());
        index_is_consistent(&s);

        let mut down = s.node(&a).unwrap().clone();
        down.unschedulable = false;
        down.status = NodeStatus::Down;
        s.upsert_node(down);
        assert_eq!(s.schedulable_len(), 0);

        let mut ready = s.node(&a).unwrap().clone();
        ready.status = NodeStatus::Ready;
        ready.allocatable = Resources::new(500, 500, 0);
        s.upsert_node(ready);
        assert_eq!(s.schedulable_len(), 1);
        assert_eq!(s.free(&a), Some(Resources::new(400, 400, 0)));
        index_is_consistent(&s);
    }

    #[test]
    fn remove_reuses_slots() {
        let mut s = ClusterState::new();
        for name in ["a", "b", "c"] {
            s.upsert_node(Node::new(name, Resources::new(1000, 1000, 0)).with_label("k", "v"));
        }
        s.allocate(&NodeId::from("b"), &alloc("w", 1, 1, &[]));
        let removed = s.remove_node(&NodeId::from("b")).unwrap();
        assert_eq!(removed.id, NodeId::from("b"));
        assert!(s.remove_node(&NodeId::from("b")).is_none());
        assert_eq!(s.len(), 2);
        s.upsert_node(Node::new("d", Resources::new(1000, 1000, 0)));
        assert_eq!(s.slots.len(), 3, "the freed slot is reused");
        assert_eq!(s.allocated(&NodeId::from("d")), Resources::ZERO);
        let mut names: Vec<_> = s.nodes().map(|n| n.id.to_string()).collect();
        names.sort();
        assert_eq!(names, ["a", "c", "d"]);
        assert_eq!(s.labels["k"]["v"].len(), 2);
        index_is_consistent(&s);
    }
}
