//! The pure half of reconciliation: from a workload's desired state, its observed instances and
//! the cluster, decide what to do. No I/O, no `.await`: it is unit-tested without a runtime or a
//! store, and the executor applies its result.
//!
//! The decision is level-triggered: it looks only at the state, never at what triggered it, so
//! planning twice over the same state plans the same thing, and planning over the state that
//! the first plan produced plans nothing.

use crate::rollout::{self, RolloutProgress};
use container_runtime_interface::container_id_for;
use orchestrator_shared_types::StrategyKind;
use orchestrator_shared_types::{
    AssignedPort, ContainerConfig, InstanceId, InstanceStatus, NodeId, NodeStatus, PortMapping,
    Protocol, RejectReason, Unschedulable, WorkloadDefinition, WorkloadInstance,
    DYNAMIC_PORT_RANGE,
};
use scheduler_interface::{Allocation, ClusterState, PlacementRequest, Scheduler};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio::time::Instant;

/// What the planner knows about one existing instance.
#[derive(Clone, Copy, Debug)]
pub struct InstanceView<'a> {
    /// The instance as recorded.
    pub instance: &'a WorkloadInstance,
    /// When it may next be acted upon (restart of an exited instance, retry of a failed stop);
    /// `None` means now.
    pub not_before: Option<Instant>,
    /// Its node is being drained: stop it and place a replacement elsewhere.
    pub evict: bool,
    /// Since when it has been ready (`None`: not ready).
    pub ready_since: Option<Instant>,
}

/// Why an instance is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// More replicas than desired.
    ScaledDown,
    /// Its workload was deleted.
    WorkloadDeleted,
    /// Its workload's template changed; a replacement is created.
    SpecChanged,
    /// Its node is being drained; a replacement is placed elsewhere.
    Drained,
    /// A previous stop failed and is retried.
    Retry,
}

/// One thing to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Record `instance` (placed on its node, status Scheduled, container ids set) and start its
    /// containers. It is a new instance or an existing pending one.
    Place {
        /// The instance as it should be recorded.
        instance: WorkloadInstance,
        /// What it holds on its node: committing the step allocates it in the cluster state.
        allocation: Allocation,
        /// The lost instance it replaces, if any.
        replaces: Option<(InstanceId, NodeId)>,
    },
    /// Record a new instance that fits nowhere yet.
    Pending {
        /// The instance (status Pending).
        instance: WorkloadInstance,
    },
    /// Start an exited instance's containers again on its node.
    Restart {
        /// Which instance.
        instance_id: InstanceId,
    },
    /// Stop and remove an instance's containers, then forget it.
    Stop {
        /// Which instance.
        instance_id: InstanceId,
        /// Why.
        reason: StopReason,
    },
    /// Forget an instance whose node is down or gone (nothing to stop there).
    Forget {
        /// Which instance.
        instance_id: InstanceId,
    },
}

/// Everything decided for one workload.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// What to do, in order.
    pub steps: Vec<Step>,
    /// Why some replicas could not be placed.
    pub unschedulable: Option<Unschedulable>,
    /// Plan again at this time (a restart or retry waiting for its backoff).
    pub requeue_at: Option<Instant>,
    /// Where the workload's rollout stands (`None` when it was deleted).
    pub rollout: Option<RolloutProgress>,
}

impl Plan {
    fn requeue(&mut self, at: Instant) {
        self.requeue_at = Some(self.requeue_at.map_or(at, |t| t.min(at)));
    }

    /// True when there is nothing to do now.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// Whether instances on `node` still exist: the node is known and not down.
fn node_alive(cluster: &ClusterState, node: &NodeId) -> bool {
    cluster
        .node(node)
        .is_some_and(|n| n.status != NodeStatus::Down)
}

/// Order in which replicas are removed on scale down: unplaced first, then exited, then
/// starting, then running; within a class the newest first (Kubernetes' ReplicaSet does the
/// same: the least useful and least proven go first).
fn victim_rank(i: &WorkloadInstance) -> u8 {
    match i.status {
        InstanceStatus::Pending => 0,
        InstanceStatus::Failed | InstanceStatus::Succeeded => 1,
        InstanceStatus::Scheduled => 2,
        _ => 3,
    }
}

/// The container ids of `instance` for its current restart count: a restart creates new ids,
/// so a late event from the previous incarnation can never be mistaken for the new one.
pub fn container_ids(
    def: &WorkloadDefinition,
    instance: &WorkloadInstance,
) -> Vec<orchestrator_shared_types::ContainerId> {
    def.containers
        .iter()
        .map(|c| {
            container_id_for(
                &instance.id,
                &format!("{}-{}", c.name, instance.restart_count),
            )
        })
        .collect()
}

/// The variables that tell `container` of `instance` its host ports: `PORT_<container_port>`
/// for every dynamic mapping of the replica (its containers share the host's network, so each
/// sees all of them; when a TCP and a UDP mapping share a number, the first one listed wins),
/// and `PORT` for the container's own first port, dynamic or static. The executor adds them to
/// the container's environment over any variable of the same name from the manifest.
pub fn port_env(
    def: &WorkloadDefinition,
    instance: &WorkloadInstance,
    container: &ContainerConfig,
) -> BTreeMap<String, String> {
    let assigned = |c: &ContainerConfig, p: &PortMapping| {
        instance
            .ports
            .iter()
            .find(|a| {
                a.container == c.name
                    && a.container_port == p.container_port
                    && a.protocol == p.protocol
            })
            .map(|a| a.host_port)
    };
    let mut env = BTreeMap::new();
    for c in &def.containers {
        for p in c.ports.iter().filter(|p| p.is_dynamic()) {
            if let Some(port) = assigned(c, p) {
                env.entry(format!("PORT_{}", p.container_port))
                    .or_insert_with(|| port.to_string());
            }
        }
    }
    let first = container.ports.first().and_then(|p| match p.host_port {
        Some(0) => assigned(container, p),
        other => other,
    });
    if let Some(port) = first {
        env.insert("PORT".to_owned(), port.to_string());
    }
    env
}

/// Gives a replica placed on `node` its host ports: the static ones of `def` and, for each
/// dynamic mapping (`host_port: 0`), a port of the node's dynamic range that nothing on the node
/// claims, in the cluster or among the ports this plan already `picked` there (the state is not
/// changed while planning). The allocation returned claims the static ports the scheduler
/// checked (`base`) and the dynamic ones, so they are freed with the instance. `None` when the
/// range is exhausted on the node.
fn assign_ports(
    def: &WorkloadDefinition,
    node: &NodeId,
    base: &Allocation,
    cluster: &ClusterState,
    picked: &mut HashMap<(NodeId, Protocol), Vec<u16>>,
) -> Option<(Vec<AssignedPort>, Allocation)> {
    let mappings = || {
        def.containers
            .iter()
            .flat_map(|c| c.ports.iter().map(move |p| (c, p)))
    };
    let mut fresh = Vec::new();
    for protocol in [Protocol::Tcp, Protocol::Udp] {
        let count = mappings()
            .filter(|(_, p)| p.is_dynamic() && p.protocol == protocol)
            .count();
        if count == 0 {
            continue;
        }
        let range = cluster
            .node(node)
            .map_or(DYNAMIC_PORT_RANGE, |n| n.dynamic_ports.range());
        // The free ports come lowest first from an unchanged state, so the ones this plan took
        // on the node are among the first: ask for that many more and skip them.
        let taken = picked.get(&(node.clone(), protocol));
        let already = taken.map_or(0, Vec::len);
        let free = cluster.free_host_ports(node, protocol, count + already, range)?;
        let ports: Vec<u16> = free
            .into_iter()
            .filter(|p| taken.is_none_or(|t| !t.contains(p)))
            .take(count)
            .collect();
        if ports.len() < count {
            return None;
        }
        fresh.push((protocol, ports));
    }
    let mut allocation = base.clone();
    let mut ports = Vec::new();
    let mut next: Vec<(Protocol, std::vec::IntoIter<u16>)> = fresh
        .iter()
        .map(|(proto, ports)| (*proto, ports.clone().into_iter()))
        .collect();
    for (c, p) in mappings() {
        let host_port = match p.host_port {
            None => continue,
            Some(0) => next
                .iter_mut()
                .find(|(proto, _)| *proto == p.protocol)
                .and_then(|(_, free)| free.next())?,
            Some(port) => port,
        };
        if p.is_dynamic() {
            allocation.host_ports.push((p.protocol, host_port));
        }
        ports.push(AssignedPort {
            container: c.name.clone(),
            container_port: p.container_port,
            host_port,
            protocol: p.protocol,
        });
    }
    for (protocol, taken) in fresh {
        picked
            .entry((node.clone(), protocol))
            .or_default()
            .extend(taken);
    }
    Some((ports, allocation))
}

/// Decides what to do for one workload.
///
/// * `desired`: the workload, or `None` when it was deleted (every instance is stopped).
/// * `instances`: its instances as currently known.
/// * `cluster`: nodes and allocations. It is not changed: the plan is computed against it, and
///   committing a [`Step::Place`] (allocating its `allocation` on its node) is the caller's
///   separate step (Nomad: compute, then submit).
pub fn plan(
    desired: Option<&WorkloadDefinition>,
    instances: &[InstanceView<'_>],
    cluster: &ClusterState,
    scheduler: &dyn Scheduler,
    now: Instant,
) -> Plan {
    let mut plan = Plan::default();
    let due = |v: &InstanceView<'_>| v.not_before.is_none_or(|t| t <= now);

    let Some(def) = desired else {
        for v in instances {
            let step = match v.instance.status {
                InstanceStatus::Stopped | InstanceStatus::Lost => Step::Forget {
                    instance_id: v.instance.id.clone(),
                },
                InstanceStatus::Stopping if !due(v) => {
                    plan.requeue(v.not_before.unwrap_or(now));
                    continue;
                }
                _ => Step::Stop {
                    instance_id: v.instance.id.clone(),
                    reason: StopReason::WorkloadDeleted,
                },
            };
            plan.steps.push(step);
        }
        return plan;
    };

    let hash = def.spec_hash();
    let replacing = instances.iter().any(|v| {
        v.instance.spec_hash != hash
            && !matches!(
                v.instance.status,
                InstanceStatus::Stopped | InstanceStatus::Lost
            )
    });
    let rolling = def.strategy.kind == StrategyKind::RollingUpdate;
    let mut live: Vec<&InstanceView<'_>> = Vec::new();
    let mut outdated: Vec<&InstanceView<'_>> = Vec::new();
    let mut lost: Vec<(InstanceId, NodeId)> = Vec::new();
    for v in instances {
        let i = v.instance;
        match i.status {
            InstanceStatus::Stopped | InstanceStatus::Lost => {
                plan.steps.push(Step::Forget {
                    instance_id: i.id.clone(),
                });
                continue;
            }
            InstanceStatus::Stopping => {
                // Only here when an earlier stop failed: retry once its backoff has passed.
                if due(v) {
                    plan.steps.push(Step::Stop {
                        instance_id: i.id.clone(),
                        reason: StopReason::Retry,
                    });
                } else {
                    plan.requeue(v.not_before.unwrap_or(now));
                }
                continue;
            }
            _ => {}
        }
        if let Some(node) = &i.node_id {
            if !node_alive(cluster, node) {
                lost.push((i.id.clone(), node.clone()));
                plan.steps.push(Step::Forget {
                    instance_id: i.id.clone(),
                });
                continue;
            }
        }
        if i.spec_hash != hash && rolling && !v.evict {
            outdated.push(v);
            continue;
        }
        if i.spec_hash != hash || v.evict {
            plan.steps.push(Step::Stop {
                instance_id: i.id.clone(),
                reason: if v.evict {
                    StopReason::Drained
                } else {
                    StopReason::SpecChanged
                },
            });
            continue;
        }
        live.push(v);
    }

    let replicas = def.replicas as usize;
    if live.len() > replicas {
        live.sort_by(|a, b| {
            victim_rank(a.instance)
                .cmp(&victim_rank(b.instance))
                .then(b.instance.created_at.cmp(&a.instance.created_at))
                .then(b.instance.id.cmp(&a.instance.id))
        });
        for v in live.drain(..live.len() - replicas) {
            plan.steps.push(Step::Stop {
                instance_id: v.instance.id.clone(),
                reason: StopReason::ScaledDown,
            });
        }
    }

    for v in &live {
        let i = v.instance;
        let exited = matches!(i.status, InstanceStatus::Failed | InstanceStatus::Succeeded);
        if exited && def.restart_policy.restarts(i.last_exit_code) {
            if due(v) {
                plan.steps.push(Step::Restart {
                    instance_id: i.id.clone(),
                });
            } else {
                plan.requeue(v.not_before.unwrap_or(now));
            }
        }
    }

    let min_ready = Duration::from_secs(def.strategy.min_ready_seconds.into());
    let available = live
        .iter()
        .filter(|v| rollout::is_available(v, min_ready, now))
        .count();
    let mut missing = replicas - live.len();
    if !outdated.is_empty() {
        let step = rollout::roll(def, live.len(), available, &mut outdated);
        missing = missing.min(step.room);
        for instance_id in step.stop {
            plan.steps.push(Step::Stop {
                instance_id,
                reason: StopReason::SpecChanged,
            });
        }
    }
    if let Some(at) = rollout::next_available(&live, min_ready, now) {
        // A new replica becomes available then: the rollout may take its next step.
        plan.requeue(at);
    }
    plan.rollout = Some(RolloutProgress {
        desired: replicas,
        updated: live.len() + missing,
        available,
        outdated: outdated.len(),
        restarts: live
            .iter()
            .map(|v| v.instance.restart_count)
            .max()
            .unwrap_or(0),
        blocker: live
            .iter()
            .find(|v| !rollout::is_available(v, min_ready, now))
            .map(|v| v.instance.why_unavailable()),
        replacing,
    });

    let pending: Vec<&WorkloadInstance> = live
        .iter()
        .map(|v| v.instance)
        .filter(|i| i.status == InstanceStatus::Pending)
        .collect();
    let wanted = pending.len() + missing;
    if wanted == 0 {
        return plan;
    }
    let request = PlacementRequest::for_workload(def);
    let placements = match scheduler.plan(cluster, &request, wanted) {
        Ok(placements) => placements,
        Err(e) => {
            tracing::warn!(workload = %def.name, error = %e, "scheduler refused the request");
            Default::default()
        }
    };
    let mut nodes = placements.placements.into_iter();
    let mut picked = HashMap::new();
    // Pending instances first, then new ones (which are recorded even when they fit nowhere).
    let new = (0..missing).map(|_| {
        let mut instance = WorkloadInstance::new(InstanceId::generate(&def.name), def.id.clone());
        instance.spec_hash.clone_from(&hash);
        (instance, true)
    });
    let candidates = pending.into_iter().map(|p| (p.clone(), false)).chain(new);
    let mut out_of_ports: Vec<NodeId> = Vec::new();
    let mut unplaced_for_ports = 0;
    for (mut instance, is_new) in candidates {
        let assigned = nodes.next().and_then(|placement| {
            let node = placement.node;
            let ports = assign_ports(def, &node, &placement.allocation, cluster, &mut picked);
            if ports.is_none() {
                unplaced_for_ports += 1;
                if !out_of_ports.contains(&node) {
                    out_of_ports.push(node.clone());
                }
            }
            ports.map(|p| (node, p))
        });
        match assigned {
            Some((node, (ports, allocation))) => {
                instance.node_id = Some(node);
                instance.spec_hash.clone_from(&hash);
                instance.container_ids = container_ids(def, &instance);
                instance.ports = ports;
                instance.transition(InstanceStatus::Scheduled);
                plan.steps.push(Step::Place {
                    instance,
                    allocation,
                    replaces: if is_new { lost.pop() } else { None },
                });
            }
            None if is_new => plan.steps.push(Step::Pending { instance }),
            None => {}
        }
    }
    plan.unschedulable = placements.unschedulable;
    if unplaced_for_ports > 0 {
        let why = plan.unschedulable.get_or_insert_with(|| Unschedulable {
            nodes_total: cluster.len(),
            ..Default::default()
        });
        why.unplaced += unplaced_for_ports;
        *why.reasons
            .entry(RejectReason::HostPortsExhausted)
            .or_default() += out_of_ports.len();
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plans, then commits every placement into `cluster` as the loop does, so that the tests
    /// see the state after the plan.
    fn plan(
        desired: Option<&WorkloadDefinition>,
        instances: &[InstanceView<'_>],
        cluster: &mut ClusterState,
        scheduler: &dyn Scheduler,
        now: Instant,
    ) -> Plan {
        let before = format!("{cluster:?}");
        let p = super::plan(desired, instances, cluster, scheduler, now);
        assert_eq!(before, format!("{cluster:?}"), "planning changes nothing");
        for step in &p.steps {
            if let Step::Place {
                instance,
                allocation,
                ..
            } = step
            {
                cluster.allocate(instance.node_id.as_ref().unwrap(), allocation);
            }
        }
        p
    }
    use orchestrator_shared_types::{Node, Quantity, Resources, RestartPolicy};
    use scheduler_interface::BinPackScheduler;
    use std::time::Duration;

    fn def(replicas: u32) -> WorkloadDefinition {
        let mut c = ContainerConfig::new("main", "img");
        c.resources = Resources::new(500, 256, 0);
        WorkloadDefinition::new("web", replicas, c)
    }

    fn cluster(nodes: &[&str]) -> ClusterState {
        let mut state = ClusterState::new();
        for n in nodes {
            state.upsert_node(Node::new(*n, Resources::new(2000, 4096, 0)));
        }
        state
    }

    fn instance(
        def: &WorkloadDefinition,
        status: InstanceStatus,
        node: Option<&str>,
    ) -> WorkloadInstance {
        let mut i = WorkloadInstance::new(InstanceId::generate(&def.name), def.id.clone());
        i.spec_hash = def.spec_hash();
        i.node_id = node.map(NodeId::from);
        i.status = status;
        i.container_ids = container_ids(def, &i);
        i
    }

    fn views(instances: &[WorkloadInstance]) -> Vec<InstanceView<'_>> {
        instances
            .iter()
            .map(|instance| InstanceView {
                instance,
                not_before: None,
                evict: false,
                ready_since: None,
            })
            .collect()
    }

    fn kinds(plan: &Plan) -> Vec<&'static str> {
        plan.steps
            .iter()
            .map(|s| match s {
                Step::Place { .. } => "place",
                Step::Pending { .. } => "pending",
                Step::Restart { .. } => "restart",
                Step::Stop { .. } => "stop",
                Step::Forget { .. } => "forget",
            })
            .collect()
    }

    #[test]
    fn scale_up_places_missing_replicas_and_allocates_them() {
        let d = def(3);
        let mut state = cluster(&["n1"]);
        let p = plan(
            Some(&d),
            &[],
            &mut state,
            &BinPackScheduler::new(),
            Instant::now(),
        );
        assert_eq!(kinds(&p), ["place", "place", "place"]);
        assert_eq!(state.allocated(&"n1".into()), Resources::new(1500, 768, 0));
        for step in &p.steps {
            let Step::Place { instance, .. } = step else {
                unreachable!()
            };
            assert_eq!(instance.status, InstanceStatus::Scheduled);
            assert_eq!(instance.container_ids.len(), 1);
        }
    }

    #[test]
    fn converged_state_plans_nothing() {
        let d = def(2);
        let mut state = cluster(&["n1"]);
        let existing = [
            instance(&d, InstanceStatus::Running, Some("n1")),
            instance(&d, InstanceStatus::Scheduled, Some("n1")),
        ];
        let p = plan(
            Some(&d),
            &views(&existing),
            &mut state,
            &BinPackScheduler::new(),
            Instant::now(),
        );
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn what_does_not_fit_stays_pending_with_reasons() {
        let d = def(5);
        let mut state = cluster(&["n1"]);
        let p = plan(
            Some(&d),
            &[],
            &mut state,
            &BinPackScheduler::new(),
            Instant::now(),
        );
        assert_eq!(kinds(&p), ["place", "place", "place", "place", "pending"]);
        let u = p.unschedulable.expect("reasons");
        assert_eq!(u.unplaced, 1);
        assert_eq!(u.to_string(), "0/1 nodes fit: 1 insufficient cpu");
    }

    #[test]
    fn scale_down_removes_pending_then_exited_then_newest() {
        let d = def(1);
        let mut state = cluster(&["n1"]);
        let mut old = instance(&d, InstanceStatus::Running, Some("n1"));
        old.created_at -= chrono::Duration::seconds(60);
        let new = instance(&d, InstanceStatus::Running, Some("n1"));
        let pending = instance(&d, InstanceStatus::Pending, None);
        let failed = instance(&d, InstanceStatus::Failed, Some("n1"));
        let all = [old.clone(), new.clone(), pending.clone(), failed.clone()];
        let mut d3 = d.clone();
        d3.replicas = 3;
        let p = plan(
            Some(&d3),
            &views(&all),
            &mut state,
            &BinPackScheduler::new(),
            Instant::now(),
        );
        assert!(
            matches!(&p.steps[0], Step::Stop { instance_id, reason: StopReason::ScaledDown } if *instance_id == pending.id)
        );
        let p = plan(
            Some(&d),
            &views(&all),
            &mut state,
            &BinPackScheduler::new(),
            Instant::now(),
        );
        let stopped: Vec<&InstanceId> = p
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Stop { instance_id, .. } => Some(instance_id),
                _ => None,
            })
            .collect();
        assert_eq!(stopped, [&pending.id, &failed.id, &new.id]);
    }

    #[test]
    fn exited_instances_restart_after_their_backoff_per_policy() {
        let mut d = def(1);
        let mut state = cluster(&["n1"]);
        let mut failed = instance(&d, InstanceStatus::Failed, Some("n1"));
        failed.last_exit_code = Some(1);
        let now = Instant::now();
        let later = now + Duration::from_secs(10);
        let waiting = [InstanceView {
            instance: &failed,
            not_before: Some(later),
            evict: false,
            ready_since: None,
        }];
        let p = plan(
            Some(&d),
            &waiting,
            &mut state,
            &BinPackScheduler::new(),
            now,
        );
        assert!(p.is_empty());
        assert_eq!(p.requeue_at, Some(later));
        let p = plan(
            Some(&d),
            &waiting,
            &mut state,
            &BinPackScheduler::new(),
            later,
        );
        assert_eq!(kinds(&p), ["restart"]);

        d.restart_policy = RestartPolicy::OnFailure;
        failed.last_exit_code = Some(0);
        failed.status = InstanceStatus::Succeeded;
        let p = plan(
            Some(&d),
            &views(std::slice::from_ref(&failed)),
            &mut state,
            &BinPackScheduler::new(),
            later,
        );
        assert!(p.is_empty(), "OnFailure does not restart a success");
        d.restart_policy = RestartPolicy::Never;
        failed.status = InstanceStatus::Failed;
        failed.last_exit_code = Some(2);
        let p = plan(
            Some(&d),
            &views(std::slice::from_ref(&failed)),
            &mut state,
            &BinPackScheduler::new(),
            later,
        );
        assert!(p.is_empty(), "Never keeps the failure");
    }

    #[test]
    fn instances_on_a_lost_node_are_forgotten_and_replaced() {
        let d = def(2);
        let mut state = cluster(&["n1", "n2"]);
        let on_gone = instance(&d, InstanceStatus::Running, Some("n9"));
        let fine = instance(&d, InstanceStatus::Running, Some("n1"));
        let mut down = Node::new("n2", Resources::new(2000, 4096, 0));
        down.status = NodeStatus::Down;
        state.upsert_node(down);
        let on_down = instance(&d, InstanceStatus::Running, Some("n2"));
        let all = [on_gone.clone(), fine, on_down.clone()];
        let p = plan(
            Some(&d),
            &views(&all),
            &mut state,
            &BinPackScheduler::new(),
            Instant::now(),
        );
        assert_eq!(kinds(&p), ["forget", "forget", "place"]);
        let Step::Place {
            instance, replaces, ..
        } = &p.steps[2]
        else {
            unreachable!()
        };
        assert_eq!(instance.node_id.as_ref().unwrap().as_str(), "n1");
        assert!(replaces.is_some());
    }

    #[test]
    fn evicted_instances_are_stopped_and_replaced() {
        let d = def(2);
        let mut state = cluster(&["n1", "n2"]);
        let on_n1 = instance(&d, InstanceStatus::Running, Some("n1"));
        let on_n2 = instance(&d, InstanceStatus::Running, Some("n2"));
        let mut cordoned = Node::new("n1", Resources::new(2000, 4096, 0));
        cordoned.unschedulable = true;
        state.upsert_node(cordoned);
        let views = [
            InstanceView {
                instance: &on_n1,
                not_before: None,
                evict: true,
                ready_since: None,
            },
            InstanceView {
                instance: &on_n2,
                not_before: None,
                evict: false,
                ready_since: None,
            },
        ];
        let p = plan(
            Some(&d),
            &views,
            &mut state,
            &BinPackScheduler::new(),
            Instant::now(),
        );
        assert_eq!(kinds(&p), ["stop", "place"]);
        assert!(
            matches!(&p.steps[0], Step::Stop { instance_id, reason: StopReason::Drained } if *instance_id == on_n1.id)
        );
        let Step::Place { instance, .. } = &p.steps[1] else {
            unreachable!()
        };
        assert_eq!(
            instance.node_id.as_ref().unwrap().as_str(),
            "n2",
            "not on the cordoned node"
        );
    }

    #[test]
    fn deleted_workload_stops_everything() {
        let d = def(2);
        let mut state = cluster(&["n1"]);
        let all = [
            instance(&d, InstanceStatus::Running, Some("n1")),
            instance(&d, InstanceStatus::Pending, None),
        ];
        let p = plan(
            None,
            &views(&all),
            &mut state,
            &BinPackScheduler::new(),
            Instant::now(),
        );
        assert_eq!(kinds(&p), ["stop", "stop"]);
        assert!(p.steps.iter().all(|s| matches!(
            s,
            Step::Stop {
                reason: StopReason::WorkloadDeleted,
                ..
            }
        )));
    }

    #[test]
    fn recreate_stops_outdated_and_places_replacements_at_once() {
        let mut d = def(1);
        d.strategy.kind = StrategyKind::Recreate;
        let mut state = cluster(&["n1"]);
        let old = [instance(&d, InstanceStatus::Running, Some("n1"))];
        let mut changed = d.clone();
        changed.containers[0].image = "img:2".into();
        let p = plan(
            Some(&changed),
            &views(&old),
            &mut state,
            &BinPackScheduler::new(),
            Instant::now(),
        );
        assert_eq!(kinds(&p), ["stop", "place"]);
    }

    /// What a rolling update looked like, round by round.
    #[derive(Debug, Default)]
    struct Rolled {
        rounds: usize,
        min_available: usize,
        max_total: usize,
        outdated_left: usize,
    }

    /// Drives the planner from `replicas` ready outdated replicas to `new`'s template: each
    /// round plans, checks that planning the same state again decides the same (a restart
    /// mid-rollout continues it), then applies the plan (stops take effect at once, placed
    /// replicas run and, when `new_ready`, are ready one round later).
    fn roll(new: &WorkloadDefinition, new_ready: bool, max_rounds: usize) -> Rolled {
        let mut old_def = new.clone();
        old_def.containers[0].image = "img:old".into();
        let mut state = ClusterState::new();
        for n in ["n1", "n2", "n3"] {
            state.upsert_node(Node::new(n, Resources::new(10_000_000, 10_000_000, 0)));
        }
        let start = Instant::now();
        let mut now = start;
        let mut live: Vec<(WorkloadInstance, Option<Instant>)> = (0..new.replicas)
            .map(|_| {
                let mut i = instance(&old_def, InstanceStatus::Running, Some("n1"));
                i.ready = true;
                (i, Some(start))
            })
            .collect();
        let mut rolled = Rolled {
            min_available: usize::MAX,
            ..Default::default()
        };
        let hash = new.spec_hash();
        while rolled.rounds < max_rounds {
            let available = live
                .iter()
                .filter(|(_, r)| r.is_some_and(|t| t <= now))
                .count();
            rolled.min_available = rolled.min_available.min(available);
            rolled.max_total = rolled.max_total.max(live.len());
            rolled.outdated_left = live.iter().filter(|(i, _)| i.spec_hash != hash).count();
            let views: Vec<InstanceView<'_>> = live
                .iter()
                .map(|(instance, ready)| InstanceView {
                    instance,
                    not_before: None,
                    evict: false,
                    ready_since: ready.filter(|t| *t <= now),
                })
                .collect();
            let scheduler = BinPackScheduler::new();
            let p = super::plan(Some(new), &views, &state, &scheduler, now);
            let again = super::plan(Some(new), &views, &state, &scheduler, now);
            assert_eq!(kinds(&p), kinds(&again), "same state, same decision");
            assert_eq!(p.rollout, again.rollout);
            let complete = p.rollout.as_ref().is_some_and(RolloutProgress::complete);
            for step in p.steps {
                match step {
                    Step::Stop { instance_id, .. } => live.retain(|(i, _)| i.id != instance_id),
                    Step::Place { mut instance, .. } => {
                        instance.status = InstanceStatus::Running;
                        let ready = new_ready.then(|| now + Duration::from_secs(1));
                        live.push((instance, ready));
                    }
                    other => panic!("unexpected step {other:?}"),
                }
            }
            if complete {
                rolled.outdated_left = live.iter().filter(|(i, _)| i.spec_hash != hash).count();
                break;
            }
            now += Duration::from_secs(1);
            rolled.rounds += 1;
        }
        rolled
    }

    #[test]
    fn rolling_updates_keep_within_surge_and_unavailability() {
        let pct = |s: &str| Quantity::Percent(s.into());
        let n = Quantity::Count;
        // (replicas, max_surge, max_unavailable)
        let table = [
            (10, pct("25%"), pct("25%")),
            (4, n(1), n(0)),
            (4, n(0), n(1)),
            (1, pct("25%"), pct("25%")),
            (5, pct("100%"), n(0)),
            (100, pct("25%"), pct("25%")),
        ];
        for (replicas, surge, unavailable) in table {
            let mut d = def(replicas);
            d.strategy.max_surge = surge.clone();
            d.strategy.max_unavailable = unavailable.clone();
            let (s, u) = d.strategy.limits(replicas);
            let r = roll(&d, true, 1000);
            let case =
                format!("{replicas} replicas, surge {surge:?}, unavailable {unavailable:?}: {r:?}");
            assert!(r.rounds < 1000, "never completes: {case}");
            assert_eq!(r.outdated_left, 0, "{case}");
            assert!(
                r.min_available >= (replicas - u) as usize,
                "availability fell below {}: {case}",
                replicas - u
            );
            assert!(
                r.max_total <= (replicas + s) as usize,
                "surge exceeded: {case}"
            );
        }
    }

    #[test]
    fn a_template_that_never_becomes_ready_keeps_the_old_replicas_serving() {
        let mut d = def(4);
        d.strategy.max_surge = Quantity::Count(1);
        d.strategy.max_unavailable = Quantity::Count(1);
        let r = roll(&d, false, 50);
        assert_eq!(r.rounds, 50, "it cannot complete");
        assert_eq!(r.min_available, 3, "never below replicas - max_unavailable");
        assert_eq!(r.outdated_left, 3);
        assert!(r.max_total <= 5);
    }

    #[test]
    fn every_outdated_replica_goes_once_the_new_ones_are_all_available() {
        // All new replicas became available before the old ones were stopped (fast readiness):
        // what may go exceeds what is left, and every outdated one goes at once.
        let d = def(4);
        let mut old_def = d.clone();
        old_def.containers[0].image = "img:old".into();
        let now = Instant::now();
        let mut instances: Vec<WorkloadInstance> = (0..4)
            .map(|_| instance(&d, InstanceStatus::Running, Some("n1")))
            .collect();
        instances.push(instance(&old_def, InstanceStatus::Running, Some("n1")));
        let views: Vec<InstanceView<'_>> = instances
            .iter()
            .map(|instance| InstanceView {
                instance,
                not_before: None,
                evict: false,
                ready_since: Some(now),
            })
            .collect();
        let state = cluster(&["n1"]);
        let p = super::plan(Some(&d), &views, &state, &BinPackScheduler::new(), now);
        assert_eq!(kinds(&p), ["stop"]);
        assert!(p.rollout.unwrap().complete());
    }

    #[test]
    fn min_ready_seconds_holds_the_next_step_and_requeues() {
        let mut d = def(2);
        d.strategy.max_surge = Quantity::Count(1);
        d.strategy.max_unavailable = Quantity::Count(0);
        d.strategy.min_ready_seconds = 30;
        let mut old_def = d.clone();
        old_def.containers[0].image = "img:old".into();
        let now = Instant::now();
        let mut old = instance(&old_def, InstanceStatus::Running, Some("n1"));
        old.ready = true;
        let mut new = instance(&d, InstanceStatus::Running, Some("n1"));
        new.ready = true;
        let old2 = instance(&old_def, InstanceStatus::Running, Some("n1"));
        let views = [
            InstanceView {
                instance: &old,
                not_before: None,
                evict: false,
                ready_since: Some(now - Duration::from_secs(100)),
            },
            InstanceView {
                instance: &old2,
                not_before: None,
                evict: false,
                ready_since: Some(now - Duration::from_secs(100)),
            },
            InstanceView {
                instance: &new,
                not_before: None,
                evict: false,
                ready_since: Some(now - Duration::from_secs(10)),
            },
        ];
        let state = cluster(&["n1"]);
        let p = super::plan(Some(&d), &views, &state, &BinPackScheduler::new(), now);
        assert!(
            p.steps.is_empty(),
            "ready for 10 s of 30: not available yet"
        );
        assert_eq!(p.requeue_at, Some(now + Duration::from_secs(20)));
        let progress = p.rollout.unwrap();
        assert_eq!((progress.available, progress.outdated), (0, 2));
        let later = now + Duration::from_secs(20);
        let p = super::plan(Some(&d), &views, &state, &BinPackScheduler::new(), later);
        assert_eq!(
            kinds(&p),
            ["stop"],
            "one old goes; the new one comes next round (the surge counted it)"
        );
    }

    fn with_dynamic_port(mut d: WorkloadDefinition) -> WorkloadDefinition {
        d.containers[0].ports = vec![
            PortMapping {
                container_port: 8080,
                host_port: Some(0),
                protocol: Protocol::Tcp,
            },
            PortMapping {
                container_port: 9090,
                host_port: Some(9090),
                protocol: Protocol::Tcp,
            },
        ];
        d
    }

    #[test]
    fn dynamic_ports_are_picked_claimed_and_passed_in_the_environment() {
        // The static port 9090 limits a node to one replica: use one node per replica.
        let d = with_dynamic_port(def(3));
        let mut state = cluster(&["n1", "n2", "n3"]);
        let busy = Allocation {
            workload_id: "other".into(),
            resources: Resources::ZERO,
            host_ports: vec![(Protocol::Tcp, 20000)],
        };
        state.allocate(&"n1".into(), &busy);
        state.allocate(&"n2".into(), &busy);
        state.allocate(&"n3".into(), &busy);
        let p = plan(
            Some(&d),
            &[],
            &mut state,
            &BinPackScheduler::new(),
            Instant::now(),
        );
        assert_eq!(kinds(&p), ["place", "place", "place"]);
        for step in &p.steps {
            let Step::Place {
                instance,
                allocation,
                ..
            } = step
            else {
                unreachable!()
            };
            let ports: Vec<(u16, u16)> = instance
                .ports
                .iter()
                .map(|a| (a.container_port, a.host_port))
                .collect();
            assert_eq!(ports, [(8080, 20001), (9090, 9090)], "20000 is taken");
            assert_eq!(
                allocation.host_ports,
                [(Protocol::Tcp, 9090), (Protocol::Tcp, 20001)]
            );
            let node = instance.node_id.as_ref().unwrap();
            assert!(state.host_port_claimed(node, (Protocol::Tcp, 20001)));
            let env = port_env(&d, instance, &d.containers[0]);
            assert_eq!(env["PORT"], "20001");
            assert_eq!(env["PORT_8080"], "20001");
            assert!(
                !env.contains_key("PORT_9090"),
                "static ports have no PORT_n"
            );
            // Releasing the allocation frees the picked port.
            state.release(node, allocation);
            assert!(!state.host_port_claimed(node, (Protocol::Tcp, 20001)));
        }
    }

    #[test]
    fn an_exhausted_port_range_leaves_the_replica_pending_with_the_reason() {
        let mut d = def(2);
        d.containers[0].ports = vec![PortMapping {
            container_port: 80,
            host_port: Some(0),
            protocol: Protocol::Tcp,
        }];
        let mut state = cluster(&["n1"]);
        let all_but_one = Allocation {
            workload_id: "other".into(),
            resources: Resources::ZERO,
            host_ports: DYNAMIC_PORT_RANGE
                .skip(1)
                .map(|p| (Protocol::Tcp, p))
                .collect(),
        };
        state.allocate(&"n1".into(), &all_but_one);
        let p = plan(
            Some(&d),
            &[],
            &mut state,
            &BinPackScheduler::new(),
            Instant::now(),
        );
        assert_eq!(kinds(&p), ["place", "pending"]);
        let Step::Place { instance, .. } = &p.steps[0] else {
            unreachable!()
        };
        assert_eq!(instance.ports[0].host_port, *DYNAMIC_PORT_RANGE.start());
        let why = p.unschedulable.expect("a reason");
        assert_eq!(why.unplaced, 1);
        assert_eq!(
            why.to_string(),
            "0/1 nodes fit: 1 no free dynamic host port"
        );
        assert_eq!(
            state.allocated(&"n1".into()),
            Resources::new(500, 256, 0),
            "the unplaced replica's resources were released"
        );
    }

    #[test]
    fn a_mock_scheduler_error_leaves_replicas_pending() {
        let d = def(1);
        let mut state = cluster(&["n1"]);
        let mut scheduler = scheduler_interface::MockScheduler::new();
        scheduler.expect_plan().returning(|_, _, _| {
            Err(scheduler_interface::SchedulerError::InvalidRequest(
                "boom".into(),
            ))
        });
        let p = plan(Some(&d), &[], &mut state, &scheduler, Instant::now());
        assert_eq!(kinds(&p), ["pending"]);
    }
}
