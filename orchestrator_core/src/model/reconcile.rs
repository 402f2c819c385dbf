//! Planning: dirty workloads are planned ([`crate::plan`], pure: computed against the cluster
//! state without changing it) and each plan is committed to the model's records and cluster
//! state as a separate step, which turns its steps into effects (store writes, runtime
//! operations).

use super::wording::{self, new_event};
use super::{Effect, Entry, Model, RolloutClock};
use crate::backoff::Backoff;
use crate::execute::Operation;
use crate::persist::PersistMsg;
use crate::plan::{self, InstanceView, Plan, Step, StopReason};
use crate::rollout::RolloutProgress;
use container_runtime_interface::ContainerSpec;
use orchestrator_shared_types::{
    EventKind, InstanceId, InstanceStatus, NodeId, WorkloadDefinition, WorkloadId,
    WorkloadInstance, ROLLBACK_RESTARTS,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

impl Model {
    /// Plans every queued workload that has no operation in flight (unless draining).
    pub(crate) fn reconcile_dirty(&mut self, now: Instant) {
        if self.draining {
            return;
        }
        while let Some(w) = self.queue.pop() {
            self.reconcile(w, now);
        }
    }

    /// Plans one workload and commits the plan.
    fn reconcile(&mut self, workload: WorkloadId, now: Instant) {
        let started = std::time::Instant::now();
        let def = self.workloads.get(&workload).map(|(d, _)| d.clone());
        let plan = {
            let views: Vec<InstanceView<'_>> = self
                .by_workload
                .get(&workload)
                .into_iter()
                .flatten()
                .filter_map(|id| self.instances.get(id))
                .map(|e| InstanceView {
                    instance: &e.instance,
                    not_before: e.not_before,
                    evict: e
                        .instance
                        .node_id
                        .as_ref()
                        .is_some_and(|n| self.draining_nodes.contains(n)),
                    ready_since: e.ready_at,
                })
                .collect();
            plan::plan(
                def.as_deref(),
                &views,
                &self.state,
                self.scheduler.as_ref(),
                now,
            )
        };
        let placements = plan
            .steps
            .iter()
            .filter(|s| matches!(s, Step::Place { .. }))
            .count();
        self.metrics
            .record_reconcile(started.elapsed(), placements, plan.unschedulable.is_some());
        self.apply(&workload, def.as_deref(), plan, now);
    }

    /// Commits a plan: records change in the model at once (the model is authoritative) and
    /// go to the outbox with the runtime operations.
    fn apply(
        &mut self,
        workload: &WorkloadId,
        def: Option<&WorkloadDefinition>,
        plan: Plan,
        now: Instant,
    ) {
        if !plan.steps.is_empty() {
            self.changed = true;
        }
        match (def, &plan.rollout) {
            (Some(def), Some(progress)) => self.track_rollout(def, progress, now),
            _ => {
                self.rollouts.remove(workload);
            }
        }
        for step in plan.steps {
            match step {
                Step::Place {
                    instance,
                    allocation,
                    replaces,
                } => {
                    let Some(def) = def else { continue };
                    let node = instance.node_id.clone().unwrap_or_default();
                    let (kind, message) = match &replaces {
                        Some((old, old_node)) => (
                            EventKind::Rescheduled,
                            format!(
                                "replaces {old} lost with node {old_node}; placed on node {node}"
                            ),
                        ),
                        None => (EventKind::Scheduled, format!("placed on node {node}")),
                    };
                    self.out
                        .event(new_event(kind, def, Some(&instance), message));
                    // The commit of the plan's placement (the planner computed it against
                    // an unchanged state).
                    self.state.allocate(&node, &allocation);
                    let specs = container_specs(def, &instance);
                    let instance = Arc::new(instance);
                    self.out.put(&instance);
                    let previous = self.instances.remove(&instance.id);
                    self.insert_entry(Entry {
                        instance,
                        allocation: Some((node.clone(), allocation)),
                        containers: HashMap::new(),
                        health: HashMap::new(),
                        ready_at: None,
                        not_before: None,
                        crash_backoff: previous
                            .as_ref()
                            .map_or(Backoff::new(self.config.crash_backoff), |p| p.crash_backoff),
                        error_backoff: Backoff::new(self.config.error_backoff),
                        running_since: None,
                        stop_reason: None,
                        stop_grace: def.termination_grace(),
                        pre_stop: def.pre_stop(),
                        settled_at: None,
                    });
                    if let Some(id) = specs.first().map(|s| s.instance_id.clone()) {
                        self.run(
                            workload,
                            id,
                            node,
                            Operation::Start {
                                stale: Vec::new(),
                                specs,
                            },
                        );
                    }
                }
                Step::Pending { instance } => {
                    let instance = Arc::new(instance);
                    self.out.put(&instance);
                    self.insert_entry(Entry {
                        instance,
                        allocation: None,
                        containers: HashMap::new(),
                        health: HashMap::new(),
                        ready_at: None,
                        not_before: None,
                        crash_backoff: Backoff::new(self.config.crash_backoff),
                        error_backoff: Backoff::new(self.config.error_backoff),
                        running_since: None,
                        stop_reason: None,
                        stop_grace: def.and_then(WorkloadDefinition::termination_grace),
                        pre_stop: def.map_or(Duration::ZERO, WorkloadDefinition::pre_stop),
                        settled_at: Some(self.seq),
                    });
                }
                Step::Restart { instance_id } => {
                    let Some(def) = def else { continue };
                    let Some(entry) = self.instances.get_mut(&instance_id) else {
                        continue;
                    };
                    if !entry.transition(InstanceStatus::Scheduled) {
                        continue;
                    }
                    let instance = entry.instance_mut();
                    let stale = std::mem::take(&mut instance.container_ids);
                    instance.restart_count += 1;
                    instance.container_ids = plan::container_ids(def, instance);
                    entry.containers.clear();
                    entry.not_before = None;
                    entry.settled_at = None;
                    let instance = entry.instance.clone();
                    let node = instance.node_id.clone().unwrap_or_default();
                    let specs = container_specs(def, &instance);
                    let message = format!(
                        "restart #{} on node {node} (last exit code {})",
                        instance.restart_count,
                        instance
                            .last_exit_code
                            .map_or_else(|| "none".to_owned(), |c| c.to_string())
                    );
                    self.out.put(&instance);
                    self.metrics.add_restart();
                    self.out.event(new_event(
                        EventKind::Restarted,
                        def,
                        Some(&instance),
                        message,
                    ));
                    self.run(
                        workload,
                        instance_id,
                        node,
                        Operation::Start { stale, specs },
                    );
                }
                Step::Stop {
                    instance_id,
                    reason,
                } => {
                    let Some(entry) = self.instances.get_mut(&instance_id) else {
                        continue;
                    };
                    let Some(node) = entry.instance.node_id.clone() else {
                        // Never placed: nothing to stop.
                        self.remove_entry(&instance_id);
                        continue;
                    };
                    // Only a replica that may be serving waits out the pre-stop delay: taken out of
                    // service first (Stopping, not ready), stopped after.
                    let serving = entry.instance.status == InstanceStatus::Running;
                    // A retried stop is already Stopping.
                    if entry.instance.status != InstanceStatus::Stopping
                        && !entry.transition(InstanceStatus::Stopping)
                    {
                        continue;
                    }
                    entry.not_before = None;
                    if reason != StopReason::Retry {
                        entry.stop_reason = Some(reason);
                    }
                    self.out.put(&entry.instance);
                    let containers = entry.instance.container_ids.clone();
                    // The current definition's grace; once it is deleted, the one the
                    // instance was placed with.
                    let grace = def.map_or(entry.stop_grace, WorkloadDefinition::termination_grace);
                    let delay = if serving {
                        def.map_or(entry.pre_stop, WorkloadDefinition::pre_stop)
                    } else {
                        Duration::ZERO
                    };
                    self.run(
                        workload,
                        instance_id,
                        node,
                        Operation::Stop {
                            containers,
                            grace,
                            delay,
                        },
                    );
                }
                Step::Forget { instance_id } => {
                    if let Some(entry) = self.remove_entry(&instance_id) {
                        if let (Some(def), Some(node)) = (def, &entry.instance.node_id) {
                            if entry.instance.status.is_live() {
                                let message =
                                    format!("node {node} is down or gone; the instance is lost");
                                self.out.event(new_event(
                                    EventKind::Failed,
                                    def,
                                    Some(&entry.instance),
                                    message,
                                ));
                            }
                        }
                    }
                }
            }
        }
        match (plan.unschedulable, def) {
            (Some(u), Some(def)) => {
                self.queue.set_waiting_for_room(workload, true);
                let message = format!("{} replica(s) pending: {u}", u.unplaced);
                if self.last_unschedulable.get(workload) != Some(&message) {
                    self.last_unschedulable
                        .insert(workload.clone(), message.clone());
                    let mut event = new_event(EventKind::Unschedulable, def, None, message);
                    event.unschedulable = Some(u);
                    self.out.event(event);
                }
            }
            _ => {
                self.queue.set_waiting_for_room(workload, false);
                self.last_unschedulable.remove(workload);
            }
        }
        if let Some(at) = plan.requeue_at {
            self.queue.schedule(at, workload.clone());
        }
        if def.is_none() && !self.by_workload.contains_key(workload) {
            self.deleted.remove(workload);
        }
    }

    /// Follows a rollout's progress: a rollout that makes none for its progress deadline, or
    /// whose new replicas keep restarting before any is available, has failed; it is rolled
    /// back to the last good revision when the workload asks for it (the default), and said
    /// in events either way. Completion is an event too.
    fn track_rollout(
        &mut self,
        def: &WorkloadDefinition,
        progress: &RolloutProgress,
        now: Instant,
    ) {
        let seen = (progress.available, progress.outdated);
        let tracked = self
            .rollouts
            .get(&def.id)
            .is_some_and(|c| c.revision == def.revision);
        if !tracked && !progress.replacing {
            // A scale or a first start, not a template change: nothing to roll back to.
            self.rollouts.remove(&def.id);
            return;
        }
        if progress.complete() {
            if let Some(clock) = self.rollouts.remove(&def.id) {
                if !clock.failed {
                    self.event(
                        EventKind::Rollout,
                        def,
                        None,
                        format!("rollout of revision {} complete", def.revision),
                    );
                }
            }
            return;
        }
        let deadline_after = Duration::from_secs(def.strategy.progress_deadline_seconds.into());
        if !tracked {
            // A new rollout (or a new revision of one): its deadline counts from now.
            self.queue.schedule(now + deadline_after, def.id.clone());
            self.rollouts.insert(
                def.id.clone(),
                RolloutClock {
                    revision: def.revision,
                    seen,
                    last_progress: now,
                    failed: false,
                },
            );
        }
        let Some(clock) = self.rollouts.get_mut(&def.id) else {
            return;
        };
        if clock.seen != seen {
            clock.seen = seen;
            clock.last_progress = now;
            // Progress: the deadline moves; look again when it passes.
            self.queue.schedule(now + deadline_after, def.id.clone());
        }
        if clock.failed {
            return;
        }
        let crash_looping = progress.available == 0 && progress.restarts >= ROLLBACK_RESTARTS;
        if now < clock.last_progress + deadline_after && !crash_looping {
            return;
        }
        clock.failed = true;
        let mut reason = if crash_looping {
            format!(
                "a new replica restarted {} times and none became available",
                progress.restarts
            )
        } else {
            format!(
                "no progress for {} s (progress_deadline_seconds)",
                def.strategy.progress_deadline_seconds
            )
        };
        if let Some(blocker) = &progress.blocker {
            reason.push_str(&format!("; {blocker}"));
        }
        let target = def.rolled_back(None, Some(reason.clone()));
        let message = match (&target, def.strategy.auto_rollback) {
            (Ok(target), true) => {
                self.out.push(Effect::Persist(PersistMsg::Rollback {
                    name: def.name.clone(),
                    revision: def.revision,
                    reason: reason.clone(),
                }));
                format!(
                    "rollout of revision {} failed: {reason}; rolling back to the template of revision {}",
                    def.revision,
                    def.history
                        .iter()
                        .find(|h| h.containers == target.containers)
                        .map_or(0, |h| h.revision)
                )
            }
            (Err(_), true) => format!(
                "rollout of revision {} failed: {reason}; no earlier good revision to roll back to",
                def.revision
            ),
            (_, false) => format!(
                "rollout of revision {} failed: {reason}; auto_rollback is off: `rollout undo` returns to the previous revision",
                def.revision
            ),
        };
        let mut event = new_event(EventKind::Rollout, def, None, message);
        if def.strategy.auto_rollback && target.is_ok() {
            event.actor = Some(crate::persist::ROLLBACK_ACTOR.to_owned());
        }
        self.out.event(event);
    }

    /// Records a runtime operation for the driver and counts it in flight.
    fn run(&mut self, workload: &WorkloadId, instance: InstanceId, node: NodeId, op: Operation) {
        self.queue.op_started(workload);
        self.out.push(Effect::Run {
            workload: workload.clone(),
            instance,
            node,
            op,
        });
    }

    /// Records an event about `def`.
    pub(super) fn event(
        &mut self,
        kind: EventKind,
        def: &WorkloadDefinition,
        instance: Option<&WorkloadInstance>,
        message: String,
    ) {
        self.out.event(new_event(kind, def, instance, message));
    }

    /// The "stopped" event of an instance that was stopped and removed.
    pub(super) fn stopped(&mut self, def: &WorkloadDefinition, entry: &Entry) {
        if let Some(node) = &entry.instance.node_id {
            let why = wording::stop_reason(entry.stop_reason);
            self.event(
                EventKind::Stopped,
                def,
                Some(&entry.instance),
                format!("stopped and removed from node {node} ({why})"),
            );
        }
    }
}

/// The runtime specs of an instance's containers, ids matching its record, with the variables
/// of [`plan::port_env`] in their environments.
fn container_specs(def: &WorkloadDefinition, instance: &WorkloadInstance) -> Vec<ContainerSpec> {
    def.containers
        .iter()
        .zip(&instance.container_ids)
        .map(|(config, id)| {
            let mut config = config.clone();
            config.env.extend(plan::port_env(def, instance, &config));
            ContainerSpec {
                id: id.clone(),
                instance_id: instance.id.clone(),
                workload_id: def.id.clone(),
                config,
            }
        })
        .collect()
}
