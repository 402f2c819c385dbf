//! The default scheduler: feasibility filters → scorers → choice.
//!
//! # Filters
//! A node is feasible for a replica when it passes every filter, evaluated in this order
//! (the order in which a rejected node is *counted*, under the first filter it fails):
//! 1. node ready ([`RejectReason::NodeNotReady`]),
//! 2. schedulable, i.e. not cordoned or draining ([`RejectReason::NodeUnschedulable`]),
//! 3. carries every `node_selector` label ([`RejectReason::SelectorMismatch`]),
//! 4. one-per-node: no replica of the workload yet, only for
//!    [`PlacementStrategy::OnePerNode`] ([`RejectReason::AntiAffinity`]),
//! 5. none of the replica's host ports claimed ([`RejectReason::HostPortConflict`]),
//! 6. enough free CPU, 7. memory, 8. disk ([`RejectReason::InsufficientCpu`],
//!    [`RejectReason::InsufficientMemory`], [`RejectReason::InsufficientDisk`]), where free is
//!    allocatable minus everything allocated.
//!
//! # Candidates
//! Candidates come from the state's free-resource indexes rather than from a scan of every node:
//! * best fit ([`PlacementStrategy::BinPack`]) first offers the node the previous replica of the
//!   same call went to (identical replicas tend to fit the same node again, and that node is
//!   often neither the tightest nor the emptiest) and the roomiest node (so that opening a
//!   fresh node is always an option the scorer can weigh), then walks the index by free memory
//!   and the index by free CPU in lockstep, each from the smallest free amount that could hold
//!   the replica, so the tightest nodes in either dimension come next;
//! * spread and one-per-node walk the same indexes from the top (most free first);
//! * a `node_selector` that only few nodes match walks those nodes (label index) instead.
//!
//! The walk goes on until a bounded number of *feasible* candidates has been scored (by default
//! about log2 of the number of schedulable nodes, as Nomad does for services) or the candidates
//! run out, so it finds a node whenever one is feasible: the limit bounds scoring, not the search.
//! The best score wins; ties go to the lowest slot, so placement is deterministic.
//!
//! # Plans
//! [`Scheduler::plan_with`] runs the same selection over the state seen through an overlay of
//! the plan's own tentative allocations and releases (crate-internal `overlay` module): touched
//! nodes are offered under their adjusted free amounts, in the order the state's indexes would
//! have once the plan is committed, so a committed plan is exactly what
//! [`Scheduler::place`] would have done. `place` itself allocates into the state as it goes.
//!
//! # Scores
//! * Best fit: Nomad's `ScoreFitBinPack` (`20 - 10^freeCpu - 10^freeMem`, fractions left free
//!   after placement), minus a penalty for *stranding* the scarce resource: leaving CPU on a node
//!   whose memory is (nearly) gone, or the reverse. How much memory goes with a unit of CPU, and
//!   which resource is scarce, are read from what the cluster has allocated so far, so a
//!   CPU-bound cluster does not mind memory left over and vice versa. Without the penalty,
//!   bursts of memory-heavy replicas fill nodes' memory two by two and leave their CPU idle for
//!   good (see `docs/benchmarks-scheduler.md`).
//! * Spread: fewest replicas of the workload on the node, then most free CPU and memory.

use crate::overlay::{NodeView, Nodes, Overlay};
use crate::{
    Allocation, ClusterState, Placement, PlacementOutcome, PlacementPlan, PlacementRequest,
    Scheduler, SchedulerError,
};
use orchestrator_shared_types::{
    NodeId, NodeStatus, PlacementStrategy, RejectReason, Resources, Unschedulable,
};
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// Resource-aware bin-packing scheduler (best fit; spread and one-per-node on request).
#[derive(Clone, Debug, Default)]
pub struct BinPackScheduler {
    /// Feasible candidates scored per replica; `None` derives it from the cluster size.
    candidate_limit: Option<usize>,
}

impl BinPackScheduler {
    /// A scheduler with default settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// A scheduler scoring at most `limit` feasible candidates per replica (at least 1) instead
    /// of the default derived from the cluster size. Larger limits pack a little better and
    /// place more slowly.
    pub fn with_candidate_limit(limit: usize) -> Self {
        Self {
            candidate_limit: Some(limit.max(1)),
        }
    }

    /// How many feasible candidates are scored per replica on a cluster of `schedulable` nodes.
    pub fn candidate_limit(&self, schedulable: usize) -> usize {
        self.candidate_limit
            .unwrap_or_else(|| default_limit(schedulable))
    }
}

/// Nomad scores log2(N) candidates for services; a floor keeps small clusters well packed.
fn default_limit(schedulable: usize) -> usize {
    let log2 = usize::BITS - schedulable.max(1).leading_zeros();
    (log2 as usize).max(MIN_CANDIDATES)
}

/// Fewest candidates scored per replica, whatever the cluster size.
const MIN_CANDIDATES: usize = 4;

impl Scheduler for BinPackScheduler {
    fn name(&self) -> &'static str {
        "binpack"
    }

    /// Allocates into `state` as it goes rather than planning then committing: the same
    /// selection code and result, without the overlay's bookkeeping on the hot path.
    fn place(
        &self,
        state: &mut ClusterState,
        request: &PlacementRequest,
        count: usize,
    ) -> Result<PlacementOutcome, SchedulerError> {
        validate(request)?;
        let mut outcome = PlacementOutcome::default();
        if count == 0 {
            return Ok(outcome);
        }
        // One allocation for all replicas: `allocate` only borrows it.
        let alloc = request.allocation();
        outcome.unschedulable = self.run(state, request, count, &alloc, |state, slot| {
            outcome.placed.push(state.entry(slot).node.id.clone());
        });
        Ok(outcome)
    }

    fn plan_with(
        &self,
        state: &ClusterState,
        request: &PlacementRequest,
        count: usize,
        released: &[(NodeId, Allocation)],
    ) -> Result<PlacementPlan, SchedulerError> {
        validate(request)?;
        let mut plan = PlacementPlan {
            released: released.to_vec(),
            ..PlacementPlan::default()
        };
        if count == 0 {
            return Ok(plan);
        }
        let mut overlay = Overlay::new(state, &request.workload_id);
        for (node, alloc) in released {
            // Unknown nodes are ignored, as `ClusterState::release` ignores them.
            if let Some(slot) = state.slot_of(node) {
                overlay.release(slot, alloc);
            }
        }
        let alloc = request.allocation();
        plan.unschedulable = self.run(&mut overlay, request, count, &alloc, |overlay, slot| {
            plan.placements.push(Placement {
                node: overlay.state().entry(slot).node.id.clone(),
                allocation: alloc.clone(),
            });
        });
        Ok(plan)
    }

    /// Counts, for one replica, every node under the first filter it fails. `unplaced` is 1 when
    /// no node fits and 0 when one does.
    fn explain(&self, state: &ClusterState, request: &PlacementRequest) -> Unschedulable {
        let mut explained = rejections(state, request);
        let rejected: usize = explained.reasons.values().sum();
        explained.unplaced = usize::from(rejected == explained.nodes_total);
        explained
    }
}

impl BinPackScheduler {
    /// Places up to `count` replicas (`count` > 0) one by one on `nodes`, recording `alloc` for
    /// each and reporting its slot to `placed`; returns why the rest fit nowhere, if any.
    fn run<N: Nodes>(
        &self,
        nodes: &mut N,
        request: &PlacementRequest,
        count: usize,
        alloc: &Allocation,
        mut placed: impl FnMut(&N, usize),
    ) -> Option<Unschedulable> {
        let limit = self.candidate_limit(nodes.state().schedulable_len());
        let mut seen = Vec::with_capacity(limit);
        let mut previous = None;
        for done in 0..count {
            match select(&*nodes, request, limit, previous, &mut seen) {
                Some(slot) => {
                    previous = Some(slot);
                    nodes.allocate(slot, alloc);
                    placed(&*nodes, slot);
                }
                None => {
                    return Some(Unschedulable {
                        unplaced: count - done,
                        ..rejections(&*nodes, request)
                    });
                }
            }
        }
        None
    }
}

/// A request for nothing would fit everywhere forever; it is a caller's bug, not a placement.
fn validate(request: &PlacementRequest) -> Result<(), SchedulerError> {
    if request.resources.cpu_millicores == 0 && request.resources.memory_mb == 0 {
        return Err(SchedulerError::InvalidRequest(format!(
            "workload {} requests neither cpu nor memory",
            request.workload_id
        )));
    }
    Ok(())
}

/// Every node evaluated once against the filters.
fn rejections<N: Nodes>(nodes: &N, request: &PlacementRequest) -> Unschedulable {
    let state = nodes.state();
    let mut reasons = BTreeMap::new();
    for (slot, _) in state.entries() {
        if let Some(reason) = first_rejection(&nodes.view(slot), request) {
            *reasons.entry(reason).or_insert(0) += 1;
        }
    }
    Unschedulable {
        nodes_total: state.len(),
        reasons,
        unplaced: 0,
    }
}

/// One feasibility check of the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Filter {
    Ready,
    Schedulable,
    Selector,
    OnePerNode,
    HostPorts,
    Cpu,
    Memory,
    Disk,
}

impl Filter {
    /// The pipeline, in the order rejections are attributed (see the module docs).
    const PIPELINE: [Filter; 8] = [
        Filter::Ready,
        Filter::Schedulable,
        Filter::Selector,
        Filter::OnePerNode,
        Filter::HostPorts,
        Filter::Cpu,
        Filter::Memory,
        Filter::Disk,
    ];

    fn reject(self, view: &NodeView<'_>, request: &PlacementRequest) -> Option<RejectReason> {
        let node = view.node();
        let need = &request.resources;
        let fails = match self {
            Filter::Ready => node.status != NodeStatus::Ready,
            Filter::Schedulable => node.unschedulable,
            Filter::Selector => request
                .node_selector
                .iter()
                .any(|(k, v)| node.labels.get(k) != Some(v)),
            Filter::OnePerNode => {
                request.strategy == PlacementStrategy::OnePerNode
                    && view.replicas_of(&request.workload_id) > 0
            }
            Filter::HostPorts => request.host_ports.iter().any(|&p| view.port_claimed(p)),
            Filter::Cpu => need.cpu_millicores > view.free().cpu_millicores,
            Filter::Memory => need.memory_mb > view.free().memory_mb,
            Filter::Disk => need.disk_mb > view.free().disk_mb,
        };
        fails.then_some(self.reason())
    }

    fn reason(self) -> RejectReason {
        match self {
            Filter::Ready => RejectReason::NodeNotReady,
            Filter::Schedulable => RejectReason::NodeUnschedulable,
            Filter::Selector => RejectReason::SelectorMismatch,
            Filter::OnePerNode => RejectReason::AntiAffinity,
            Filter::HostPorts => RejectReason::HostPortConflict,
            Filter::Cpu => RejectReason::InsufficientCpu,
            Filter::Memory => RejectReason::InsufficientMemory,
            Filter::Disk => RejectReason::InsufficientDisk,
        }
    }
}

/// The first filter `view` fails for `request`, if any.
fn first_rejection(view: &NodeView<'_>, request: &PlacementRequest) -> Option<RejectReason> {
    Filter::PIPELINE
        .iter()
        .find_map(|filter| filter.reject(view, request))
}

/// How good a feasible node is for a replica; higher wins. Compared lexicographically.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Score(f64, f64);

impl Score {
    fn cmp(&self, other: &Score) -> Ordering {
        self.0.total_cmp(&other.0).then(self.1.total_cmp(&other.1))
    }
}

/// Ranks feasible nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scorer {
    /// Fullest node after placement, over CPU and memory together, without stranding the
    /// scarce resource.
    BestFit,
    /// Fewest replicas of the workload, then emptiest after placement.
    Spread,
}

/// Weight of the stranding penalty, on the scale of Nomad's fit score (0 to 18). Tuned with
/// the packing benchmark: below ~15 memory-heavy bursts still strand CPU; from ~80 the
/// penalty outweighs best fit and replicas spread over fresh nodes.
const STRANDING_WEIGHT: f64 = 30.0;

/// Shapes how fast a resource's penalty fades as it becomes less scarce than the other.
const SCARCITY_EXPONENT: i32 = 4;

/// What the cluster's allocations say about the workload mix, read once per replica.
#[derive(Clone, Copy, Debug)]
struct Scarcity {
    /// Fraction of a node's memory the mix asks for per fraction of its CPU.
    memory_per_cpu: f64,
    /// What stranded CPU costs: 1 when CPU is the scarcer resource, less the less scarce it is.
    cpu_weight: f64,
    /// What stranded memory costs, likewise.
    memory_weight: f64,
}

impl Scarcity {
    fn of(nodes: &impl Nodes) -> Self {
        let (cpu, mem) = nodes.utilization();
        let scarcest = cpu.max(mem);
        if scarcest <= 0.0 {
            // Nothing allocated yet, so nothing is known about the mix: plain best fit.
            return Self {
                memory_per_cpu: 1.0,
                cpu_weight: 0.0,
                memory_weight: 0.0,
            };
        }
        let memory_per_cpu = if cpu > 0.0 {
            (mem / cpu).clamp(0.1, 10.0)
        } else {
            10.0
        };
        Self {
            memory_per_cpu,
            cpu_weight: (cpu / scarcest).powi(SCARCITY_EXPONENT),
            memory_weight: (mem / scarcest).powi(SCARCITY_EXPONENT),
        }
    }

    /// Penalty for leaving `cpu` and `mem` (fractions of the node) free: the part of each that
    /// the other cannot accompany at the mix's ratio is unlikely to ever be used.
    fn stranding(&self, cpu: f64, mem: f64) -> f64 {
        let stranded_cpu = (cpu - mem / self.memory_per_cpu).max(0.0);
        let stranded_mem = (mem - cpu * self.memory_per_cpu).max(0.0);
        self.cpu_weight * stranded_cpu + self.memory_weight * stranded_mem
    }
}

impl Scorer {
    fn for_strategy(strategy: PlacementStrategy) -> Self {
        match strategy {
            PlacementStrategy::BinPack => Scorer::BestFit,
            PlacementStrategy::Spread | PlacementStrategy::OnePerNode => Scorer::Spread,
        }
    }

    fn score(self, view: &NodeView<'_>, request: &PlacementRequest, scarcity: &Scarcity) -> Score {
        let (cpu, mem) = free_fractions_after(view, &request.resources);
        match self {
            // Nomad's ScoreFitBinPack: the exponent punishes the emptier dimension hardest.
            Scorer::BestFit => Score(
                20.0 - 10f64.powf(cpu)
                    - 10f64.powf(mem)
                    - STRANDING_WEIGHT * scarcity.stranding(cpu, mem),
                0.0,
            ),
            Scorer::Spread => Score(
                -f64::from(view.replicas_of(&request.workload_id)),
                cpu + mem,
            ),
        }
    }
}

/// Fractions of the node's allocatable CPU and memory left free once `need` is placed.
fn free_fractions_after(view: &NodeView<'_>, need: &Resources) -> (f64, f64) {
    let free = view.free();
    let fraction = |free: u64, need: u64, total: u64| {
        if total == 0 {
            0.0
        } else {
            free.saturating_sub(need) as f64 / total as f64
        }
    };
    let total = &view.node().allocatable;
    (
        fraction(
            free.cpu_millicores,
            need.cpu_millicores,
            total.cpu_millicores,
        ),
        fraction(free.memory_mb, need.memory_mb, total.memory_mb),
    )
}

/// The slot of the best feasible node for one replica, or `None` when no node is feasible.
/// `previous` is the node the previous replica of the same call went to; `seen` is scratch
/// space reused across replicas.
fn select<N: Nodes>(
    nodes: &N,
    request: &PlacementRequest,
    limit: usize,
    previous: Option<usize>,
    seen: &mut Vec<usize>,
) -> Option<usize> {
    let scorer = Scorer::for_strategy(request.strategy);
    let (cpu, mem) = (
        request.resources.cpu_millicores,
        request.resources.memory_mb,
    );
    let state = nodes.state();
    if let Some(labelled) = state.smallest_label_set(&request.node_selector) {
        // Walking the label set costs its size; walking the free index costs about
        // limit * N / size nodes when matches are spread evenly. Take the cheaper one.
        let size = labelled.len();
        if size.saturating_mul(size) <= limit.saturating_mul(state.schedulable_len()) {
            return best_of(nodes, request, scorer, labelled.slots(), usize::MAX, None);
        }
    }
    match scorer {
        Scorer::BestFit => {
            let candidates =
                previous
                    .into_iter()
                    .chain(roomiest(nodes, cpu, mem))
                    .chain(Interleave::new(
                        nodes.fitting_by_mem(cpu, mem),
                        nodes.fitting_by_cpu(cpu, mem),
                    ));
            best_of(nodes, request, scorer, candidates, limit, Some(seen))
        }
        Scorer::Spread => {
            let candidates = Interleave::new(
                nodes.fitting_by_mem_rev(cpu, mem),
                nodes.fitting_by_cpu_rev(cpu, mem),
            );
            best_of(nodes, request, scorer, candidates, limit, Some(seen))
        }
    }
}

/// The node with the most free memory, or else the one with the most free CPU, if it has room
/// for `cpu` and `mem`. Looks at two index entries only: it is a hint, not a search.
fn roomiest(nodes: &impl Nodes, cpu: u64, mem: u64) -> Option<usize> {
    let top_mem = nodes.top_by_mem(cpu, mem).filter(|&(_, c, _)| c >= cpu);
    let top_cpu = || nodes.top_by_cpu(cpu, mem).filter(|&(_, m, _)| m >= mem);
    top_mem.or_else(top_cpu).map(|(_, _, slot)| slot)
}

/// Scores the first `limit` feasible candidates and returns the best. Candidates may repeat
/// (a node is in both free indexes) only when `seen` is given, which then deduplicates them.
fn best_of<N: Nodes>(
    nodes: &N,
    request: &PlacementRequest,
    scorer: Scorer,
    candidates: impl Iterator<Item = usize>,
    limit: usize,
    mut seen: Option<&mut Vec<usize>>,
) -> Option<usize> {
    if let Some(seen) = seen.as_deref_mut() {
        seen.clear();
    }
    let scarcity = Scarcity::of(nodes);
    let mut scored = 0;
    let mut best: Option<(Score, usize)> = None;
    for slot in candidates {
        if scored >= limit {
            break;
        }
        let view = nodes.view(slot);
        if first_rejection(&view, request).is_some() {
            continue;
        }
        if let Some(seen) = seen.as_deref_mut() {
            if seen.contains(&slot) {
                continue;
            }
            seen.push(slot);
        }
        scored += 1;
        let score = scorer.score(&view, request, &scarcity);
        let better = match &best {
            None => true,
            Some((best_score, best_slot)) => match score.cmp(best_score) {
                Ordering::Greater => true,
                Ordering::Equal => slot < *best_slot,
                Ordering::Less => false,
            },
        };
        if better {
            best = Some((score, slot));
        }
    }
    best.map(|(_, slot)| slot)
}

/// Alternates between two candidate streams, continuing with one when the other runs out, so a
/// long run of nodes that fit in one dimension only cannot starve the search.
struct Interleave<A, B> {
    a: std::iter::Fuse<A>,
    b: std::iter::Fuse<B>,
    b_next: bool,
}

impl<A: Iterator, B: Iterator<Item = A::Item>> Interleave<A, B> {
    fn new(a: A, b: B) -> Self {
        Self {
            a: a.fuse(),
            b: b.fuse(),
            b_next: false,
        }
    }
}

impl<A: Iterator, B: Iterator<Item = A::Item>> Iterator for Interleave<A, B> {
    type Item = A::Item;

    fn next(&mut self) -> Option<A::Item> {
        let from_b = self.b_next;
        self.b_next = !from_b;
        if from_b {
            self.b.next().or_else(|| self.a.next())
        } else {
            self.a.next().or_else(|| self.b.next())
        }
    }
}

#[cfg(test)]
mod tests;
