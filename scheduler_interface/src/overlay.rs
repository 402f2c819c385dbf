//! What a placement reads: the [`ClusterState`] alone (placing, which allocates into it as it
//! goes), or the state seen through an [`Overlay`] of one plan's tentative allocations and
//! releases (planning, which must not change it).
//!
//! Both implement [`Nodes`], so the scheduler's selection code is written once and, being
//! generic, costs the direct path nothing.
//!
//! # Why the indexes need care
//! The state's free indexes key each node by its free amounts. A node the plan has touched has
//! less room than its key says (or more, after a release), so walking the state's indexes alone
//! would offer it in the wrong place, or not at all. The overlay keeps its own small indexes of
//! the touched nodes under their adjusted keys; a walk skips touched nodes in the state's index
//! and merges the rest with the overlay's, which yields exactly the order the state's index would
//! have once the plan is committed. Each replica of a plan is therefore chosen exactly as it
//! would be by placing into a state that already holds the plan's earlier replicas.
//!
//! Whether a slot is touched is one bit test in a bitmap of the state's slots (N/8 bytes per
//! plan, 1.25 KB at 10,000 nodes: hashing for every index entry walked cost more than the rest
//! of the plan). The old keys of the nodes a plan has filled pile up where its walks start, so
//! each kind of walk resumes where the previous one found its first entry ([`Resume`]) instead
//! of stepping over them again for every replica. Touched nodes whose old keys lie further
//! along a walk are still stepped over.

use crate::state::{claim_ports, unclaim_ports, IndexKey, NodeEntry, PortClaims};
use crate::{Allocation, ClusterState};
use orchestrator_shared_types::{Node, Protocol, Resources, WorkloadId};
use std::cell::Cell;
use std::collections::btree_set::Range;
use std::collections::{BTreeSet, HashMap};

/// One node as a placement sees it: the state's entry, adjusted by a plan's overlay if the plan
/// has touched it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NodeView<'a> {
    entry: &'a NodeEntry,
    delta: Option<&'a Delta>,
}

impl<'a> NodeView<'a> {
    /// The node's description (never changed by a plan).
    pub(crate) fn node(&self) -> &'a Node {
        &self.entry.node
    }

    /// Allocatable minus allocated, floored at zero.
    pub(crate) fn free(&self) -> Resources {
        match self.delta {
            Some(delta) => self.entry.node.allocatable.saturating_sub(&delta.allocated),
            None => self.entry.free(),
        }
    }

    /// Whether an allocation on this node claims `port`.
    pub(crate) fn port_claimed(&self, port: (Protocol, u16)) -> bool {
        match self.delta {
            Some(delta) => delta.ports.iter().any(|(p, _)| *p == port),
            None => self.entry.port_claimed(port),
        }
    }

    /// Replicas of `workload` on this node. `workload` must be the workload being placed: an
    /// overlay only tracks that one (the only one a placement asks about).
    pub(crate) fn replicas_of(&self, workload: &WorkloadId) -> u32 {
        match self.delta {
            Some(delta) => delta.replicas,
            None => self.entry.replicas_of(workload),
        }
    }
}

/// What placement reads, and how it records a replica. Implemented by the state itself and by
/// an [`Overlay`] on it.
pub(crate) trait Nodes {
    /// The underlying state (node descriptions, slots, labels and sizes, which a plan never
    /// changes).
    fn state(&self) -> &ClusterState;

    /// The node in `slot`, which must be occupied.
    fn view(&self, slot: usize) -> NodeView<'_>;

    /// See [`ClusterState::utilization`].
    fn utilization(&self) -> (f64, f64);

    /// Records one replica's `alloc` on the node in `slot`.
    fn allocate(&mut self, slot: usize, alloc: &Allocation);

    /// Schedulable nodes with at least `cpu` free CPU and `mem` free memory, by (free memory,
    /// free CPU, slot) ascending.
    fn fitting_by_mem(&self, cpu: u64, mem: u64) -> impl Iterator<Item = usize> + '_;

    /// The same nodes by (free CPU, free memory, slot) ascending.
    fn fitting_by_cpu(&self, cpu: u64, mem: u64) -> impl Iterator<Item = usize> + '_;

    /// [`Nodes::fitting_by_mem`], descending.
    fn fitting_by_mem_rev(&self, cpu: u64, mem: u64) -> impl Iterator<Item = usize> + '_;

    /// [`Nodes::fitting_by_cpu`], descending.
    fn fitting_by_cpu_rev(&self, cpu: u64, mem: u64) -> impl Iterator<Item = usize> + '_;

    /// The largest (free memory, free CPU, slot) key at or above (`mem`, `cpu`), whatever its
    /// CPU.
    fn top_by_mem(&self, cpu: u64, mem: u64) -> Option<IndexKey>;

    /// The largest (free CPU, free memory, slot) key at or above (`cpu`, `mem`), whatever its
    /// memory.
    fn top_by_cpu(&self, cpu: u64, mem: u64) -> Option<IndexKey>;
}

/// Keeps the keys whose second amount is at least `min`, as slots. The key already tells
/// whether the other dimension fits, so nodes are skipped without a lookup.
fn fitting<'a>(
    keys: impl Iterator<Item = &'a IndexKey> + 'a,
    min: u64,
) -> impl Iterator<Item = usize> + 'a {
    keys.filter(move |&&(_, second, _)| second >= min)
        .map(|&(_, _, slot)| slot)
}

impl Nodes for ClusterState {
    fn state(&self) -> &ClusterState {
        self
    }

    fn view(&self, slot: usize) -> NodeView<'_> {
        NodeView {
            entry: self.entry(slot),
            delta: None,
        }
    }

    fn utilization(&self) -> (f64, f64) {
        ClusterState::utilization(self)
    }

    fn allocate(&mut self, slot: usize, alloc: &Allocation) {
        self.allocate_slot(slot, alloc);
    }

    fn fitting_by_mem(&self, cpu: u64, mem: u64) -> impl Iterator<Item = usize> + '_ {
        fitting(self.by_free_memory(mem, cpu), cpu)
    }

    fn fitting_by_cpu(&self, cpu: u64, mem: u64) -> impl Iterator<Item = usize> + '_ {
        fitting(self.by_free_cpu(cpu, mem), mem)
    }

    fn fitting_by_mem_rev(&self, cpu: u64, mem: u64) -> impl Iterator<Item = usize> + '_ {
        fitting(self.by_free_memory(mem, cpu).rev(), cpu)
    }

    fn fitting_by_cpu_rev(&self, cpu: u64, mem: u64) -> impl Iterator<Item = usize> + '_ {
        fitting(self.by_free_cpu(cpu, mem).rev(), mem)
    }

    fn top_by_mem(&self, cpu: u64, mem: u64) -> Option<IndexKey> {
        self.by_free_memory(mem, cpu).next_back().copied()
    }

    fn top_by_cpu(&self, cpu: u64, mem: u64) -> Option<IndexKey> {
        self.by_free_cpu(cpu, mem).next_back().copied()
    }
}

/// A touched node's state under the plan.
#[derive(Clone, Debug)]
pub(crate) struct Delta {
    /// Everything allocated on the node, the plan's changes included.
    allocated: Resources,
    /// Its claimed host ports, likewise.
    ports: PortClaims,
    /// Replicas of the plan's workload on it, likewise.
    replicas: u32,
    /// Its (free CPU, free memory) key in the overlay's indexes; `None` when not schedulable.
    key: Option<(u64, u64)>,
}

/// A [`ClusterState`] under one plan's tentative allocations and releases, which stay local to
/// the plan: only the nodes it touches are copied, and the state itself is only read.
#[derive(Debug)]
pub(crate) struct Overlay<'s> {
    state: &'s ClusterState,
    /// The workload being placed, whose replica counts [`Delta::replicas`] tracks.
    workload: &'s WorkloadId,
    deltas: HashMap<usize, Delta>,
    /// Bit `slot` is set when `deltas` has the slot: the test index walks make per entry.
    touched: Touched,
    /// Touched schedulable nodes by (free memory, free CPU, slot) under the plan.
    by_mem: BTreeSet<IndexKey>,
    /// Touched schedulable nodes by (free CPU, free memory, slot) under the plan.
    by_cpu: BTreeSet<IndexKey>,
    /// Schedulable nodes' free (CPU, memory) totals under the plan minus the state's.
    free_change: (i128, i128),
    resumes: Resumes,
}

impl<'s> Overlay<'s> {
    /// Nothing changed yet, for placing replicas of `workload`.
    pub(crate) fn new(state: &'s ClusterState, workload: &'s WorkloadId) -> Self {
        Self {
            state,
            workload,
            deltas: HashMap::new(),
            touched: Touched::new(state.slot_count()),
            by_mem: BTreeSet::new(),
            by_cpu: BTreeSet::new(),
            free_change: (0, 0),
            resumes: Resumes::default(),
        }
    }

    /// As [`ClusterState::release`] would on the node in `slot`.
    pub(crate) fn release(&mut self, slot: usize, alloc: &Allocation) {
        let workload = self.workload;
        self.change(slot, |delta| {
            delta.allocated = delta.allocated.saturating_sub(&alloc.resources);
            unclaim_ports(&mut delta.ports, &alloc.host_ports);
            if alloc.workload_id == *workload {
                // The state drops a count that reaches zero and ignores one that is absent.
                delta.replicas = delta.replicas.saturating_sub(1);
            }
        });
    }

    /// As [`ClusterState::allocate`] would on the node in `slot`.
    fn allocate_slot(&mut self, slot: usize, alloc: &Allocation) {
        let workload = self.workload;
        self.change(slot, |delta| {
            delta.allocated += alloc.resources;
            claim_ports(&mut delta.ports, &alloc.host_ports);
            if alloc.workload_id == *workload {
                delta.replicas += 1;
            }
        });
    }

    /// Applies `change` to the node in `slot`, copying it into the overlay on first touch, and
    /// moves it in the overlay's indexes and totals as [`ClusterState`] would.
    fn change(&mut self, slot: usize, change: impl FnOnce(&mut Delta)) {
        let Self {
            state,
            workload,
            deltas,
            touched,
            by_mem,
            by_cpu,
            free_change,
            resumes: _,
        } = self;
        let entry = state.entry(slot);
        let delta = deltas.entry(slot).or_insert_with(|| {
            touched.insert(slot);
            let key = entry.indexed_free();
            if let Some((cpu, mem)) = key {
                // Under its current key: from now on walks skip the state's entry for it.
                by_mem.insert((mem, cpu, slot));
                by_cpu.insert((cpu, mem, slot));
            }
            Delta {
                allocated: entry.allocated,
                ports: entry.ports.clone(),
                replicas: entry.replicas_of(workload),
                key,
            }
        });
        change(delta);
        let Some((old_cpu, old_mem)) = delta.key else {
            // Not schedulable: in no index and no total, whatever it holds.
            return;
        };
        let free = entry.node.allocatable.saturating_sub(&delta.allocated);
        let (cpu, mem) = (free.cpu_millicores, free.memory_mb);
        if (cpu, mem) == (old_cpu, old_mem) {
            return;
        }
        by_mem.remove(&(old_mem, old_cpu, slot));
        by_cpu.remove(&(old_cpu, old_mem, slot));
        by_mem.insert((mem, cpu, slot));
        by_cpu.insert((cpu, mem, slot));
        free_change.0 += i128::from(cpu) - i128::from(old_cpu);
        free_change.1 += i128::from(mem) - i128::from(old_mem);
        delta.key = Some((cpu, mem));
    }

    /// A walk of one of the state's free indexes under the plan, from key `from` up (or from
    /// the top down to `from`): the state's entries without the touched nodes, merged with the
    /// overlay's `touched` range, keeping keys whose second amount is at least `min`. The walk
    /// starts where the plan's previous walk of the same kind found its first entry (see
    /// [`Resume`]).
    fn walk<'a>(
        &'a self,
        index: &'a BTreeSet<IndexKey>,
        from: IndexKey,
        touched: Range<'a, IndexKey>,
        min: u64,
        descending: bool,
        resume: &'a Resume,
    ) -> impl Iterator<Item = usize> + 'a {
        Merge {
            base: resume.range(index, from, min, descending),
            touched,
            next_base: None,
            next_touched: None,
            min,
            descending,
            skip: &self.touched,
            resume: Some((resume, from)),
        }
    }

    /// The largest key at or above `from` of one of the state's free indexes under the plan:
    /// the larger of the state's largest untouched one and the overlay's `touched` largest.
    fn top(
        &self,
        index: &BTreeSet<IndexKey>,
        from: IndexKey,
        mut touched: Range<'_, IndexKey>,
        resume: &Resume,
    ) -> Option<IndexKey> {
        let base = resume
            .range(index, from, 0, true)
            .rev()
            .find(|(_, _, slot)| !self.touched.contains(*slot))
            .copied();
        if let Some(key) = base {
            resume.remember(from, 0, key);
        }
        base.max(touched.next_back().copied())
    }
}

/// Where a plan's walks of one kind (one index, one direction, one start and one `min`) found
/// their first entry of the state's index.
///
/// Everything a walk steps over before that entry is a touched node or fails `min`, and stays
/// so for the rest of the plan (nodes only get touched, the state and the request do not
/// change), so the next walk of the kind may start right there. Without this, a plan that has
/// filled many nodes would step over all their old keys on every replica: best fit fills the
/// tightest nodes, whose old keys lie at the very start of its walks (spread, at the top).
/// A `Cell` because walks only borrow the overlay, which is local to one plan.
#[derive(Debug, Default)]
struct Resume(Cell<Option<ResumeAt>>);

#[derive(Clone, Copy, Debug)]
struct ResumeAt {
    from: IndexKey,
    min: u64,
    at: IndexKey,
}

impl Resume {
    /// The part of `index` a walk from `from` (up, or down to it) still has to look at.
    fn range<'a>(
        &self,
        index: &'a BTreeSet<IndexKey>,
        from: IndexKey,
        min: u64,
        descending: bool,
    ) -> Range<'a, IndexKey> {
        match self.0.get() {
            Some(r) if r.from == from && r.min == min => {
                if descending {
                    index.range(from..=r.at)
                } else {
                    index.range(r.at..)
                }
            }
            _ => index.range(from..),
        }
    }

    fn remember(&self, from: IndexKey, min: u64, at: IndexKey) {
        self.0.set(Some(ResumeAt { from, min, at }));
    }
}

/// The kinds of walk a plan makes, each with its own [`Resume`].
#[derive(Debug, Default)]
struct Resumes {
    mem_up: Resume,
    cpu_up: Resume,
    mem_down: Resume,
    cpu_down: Resume,
    top_mem: Resume,
    top_cpu: Resume,
}

impl Nodes for Overlay<'_> {
    fn state(&self) -> &ClusterState {
        self.state
    }

    fn view(&self, slot: usize) -> NodeView<'_> {
        NodeView {
            entry: self.state.entry(slot),
            delta: if self.touched.contains(slot) {
                self.deltas.get(&slot)
            } else {
                None
            },
        }
    }

    fn utilization(&self) -> (f64, f64) {
        self.state.utilization_after(self.free_change)
    }

    fn allocate(&mut self, slot: usize, alloc: &Allocation) {
        self.allocate_slot(slot, alloc);
    }

    fn fitting_by_mem(&self, cpu: u64, mem: u64) -> impl Iterator<Item = usize> + '_ {
        let (index, from) = (self.state.memory_index(), (mem, cpu, 0));
        let touched = self.by_mem.range(from..);
        self.walk(index, from, touched, cpu, false, &self.resumes.mem_up)
    }

    fn fitting_by_cpu(&self, cpu: u64, mem: u64) -> impl Iterator<Item = usize> + '_ {
        let (index, from) = (self.state.cpu_index(), (cpu, mem, 0));
        let touched = self.by_cpu.range(from..);
        self.walk(index, from, touched, mem, false, &self.resumes.cpu_up)
    }

    fn fitting_by_mem_rev(&self, cpu: u64, mem: u64) -> impl Iterator<Item = usize> + '_ {
        let (index, from) = (self.state.memory_index(), (mem, cpu, 0));
        let touched = self.by_mem.range(from..);
        self.walk(index, from, touched, cpu, true, &self.resumes.mem_down)
    }

    fn fitting_by_cpu_rev(&self, cpu: u64, mem: u64) -> impl Iterator<Item = usize> + '_ {
        let (index, from) = (self.state.cpu_index(), (cpu, mem, 0));
        let touched = self.by_cpu.range(from..);
        self.walk(index, from, touched, mem, true, &self.resumes.cpu_down)
    }

    fn top_by_mem(&self, cpu: u64, mem: u64) -> Option<IndexKey> {
        let from = (mem, cpu, 0);
        let touched = self.by_mem.range(from..);
        self.top(
            self.state.memory_index(),
            from,
            touched,
            &self.resumes.top_mem,
        )
    }

    fn top_by_cpu(&self, cpu: u64, mem: u64) -> Option<IndexKey> {
        let from = (cpu, mem, 0);
        let touched = self.by_cpu.range(from..);
        self.top(self.state.cpu_index(), from, touched, &self.resumes.top_cpu)
    }
}

/// A set of slots as a bitmap over the state's slots.
#[derive(Debug)]
struct Touched(Vec<u64>);

impl Touched {
    fn new(slots: usize) -> Self {
        Self(vec![0; slots.div_ceil(64)])
    }

    fn insert(&mut self, slot: usize) {
        self.0[slot / 64] |= 1 << (slot % 64);
    }

    fn contains(&self, slot: usize) -> bool {
        self.0[slot / 64] & (1 << (slot % 64)) != 0
    }
}

/// Two sorted runs of index keys merged into one, in the same order (see [`Overlay::walk`]).
/// Keys never tie: each carries its slot, and a touched slot is only in `touched`.
struct Merge<'a> {
    base: Range<'a, IndexKey>,
    touched: Range<'a, IndexKey>,
    /// The next qualifying key of each run, `None` until looked for: looking ahead only when
    /// asked keeps a walk that is stopped early from stepping further than needed.
    next_base: Option<Option<IndexKey>>,
    next_touched: Option<Option<IndexKey>>,
    min: u64,
    descending: bool,
    skip: &'a Touched,
    /// Where to remember the first entry of `base` this walk offers, and the walk's start;
    /// `None` once done.
    resume: Option<(&'a Resume, IndexKey)>,
}

impl Merge<'_> {
    fn pull_base(&mut self) -> Option<IndexKey> {
        loop {
            let key = if self.descending {
                self.base.next_back()
            } else {
                self.base.next()
            }?;
            // The cheap key test first: a lookup only for nodes that could be offered.
            if key.1 >= self.min && !self.skip.contains(key.2) {
                if let Some((resume, from)) = self.resume.take() {
                    resume.remember(from, self.min, *key);
                }
                return Some(*key);
            }
        }
    }

    fn pull_touched(&mut self) -> Option<IndexKey> {
        loop {
            let key = if self.descending {
                self.touched.next_back()
            } else {
                self.touched.next()
            }?;
            if key.1 >= self.min {
                return Some(*key);
            }
        }
    }
}

impl Iterator for Merge<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let base = match self.next_base {
            Some(key) => key,
            None => {
                let key = self.pull_base();
                self.next_base = Some(key);
                key
            }
        };
        let touched = match self.next_touched {
            Some(key) => key,
            None => {
                let key = self.pull_touched();
                self.next_touched = Some(key);
                key
            }
        };
        let base_first = match (base, touched) {
            (None, None) => return None,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(b), Some(t)) => (b < t) != self.descending,
        };
        let key = if base_first {
            self.next_base = None;
            base
        } else {
            self.next_touched = None;
            touched
        };
        key.map(|(_, _, slot)| slot)
    }
}
