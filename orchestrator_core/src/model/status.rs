//! Folding what is observed into instance status: reports of runtime operations, container
//! events and container listings.

use super::wording::{self, new_event};
use super::{Effect, Listed, Model};
use crate::execute::Done;
use container_runtime_interface::{ContainerEvent, ContainerState, Health};
use orchestrator_shared_types::{ContainerId, EventKind, InstanceId, InstanceStatus, NodeId};
use std::collections::HashSet;
use std::time::Duration;
use tokio::time::Instant;

impl Model {
    /// A runtime operation finished.
    pub(crate) fn on_done(&mut self, done: Done, now: Instant) {
        self.queue.op_finished(&done.workload);
        self.changed = true;
        if done.started {
            if let Some(entry) = self.instances.get_mut(&done.instance) {
                entry.settled_at = Some(self.seq);
            }
        }
        let def = self.workloads.get(&done.workload).map(|(d, _)| d.clone());
        match (done.started, done.result) {
            (true, Ok(())) => {}
            (true, Err(error)) => {
                let Some(entry) = self.instances.get_mut(&done.instance) else {
                    return;
                };
                // Stopped or replaced meanwhile: the failed start no longer matters.
                if entry.instance.status != InstanceStatus::Scheduled
                    || !entry.transition(InstanceStatus::Failed)
                {
                    return;
                }
                let instance = entry.instance_mut();
                instance.last_error = Some(error.to_string());
                instance.last_exit_code = None;
                let delay = if error.is_transient() {
                    entry.error_backoff.fail(Duration::ZERO)
                } else {
                    entry.crash_backoff.fail(Duration::ZERO)
                };
                entry.not_before = Some(now + delay);
                self.out.put(&entry.instance);
                let instance = entry.instance.clone();
                if let Some(def) = &def {
                    let retry = if def.restart_policy.restarts(None) {
                        format!("; retrying in {:.1}s", delay.as_secs_f64())
                    } else {
                        String::new()
                    };
                    self.event(
                        EventKind::Failed,
                        def,
                        Some(&instance),
                        format!("{error}{retry}"),
                    );
                }
                self.queue.schedule(now + delay, done.workload.clone());
                self.queue.mark_dirty(done.workload);
            }
            (false, Ok(())) => {
                if let Some(entry) = self.remove_entry(&done.instance) {
                    if let Some(def) = &def {
                        self.stopped(def, &entry);
                    }
                }
                self.queue.mark_dirty(done.workload);
            }
            (false, Err(error)) => {
                let Some(entry) = self.instances.get_mut(&done.instance) else {
                    return;
                };
                let delay = entry.error_backoff.fail(Duration::ZERO);
                entry.not_before = Some(now + delay);
                entry.instance_mut().last_error = Some(error.to_string());
                self.out.put(&entry.instance);
                tracing::warn!(instance = %done.instance, %error, ?delay, "stopping failed; will retry");
                self.queue.schedule(now + delay, done.workload);
            }
        }
    }

    /// A container changed state.
    pub(crate) fn on_container_event(&mut self, event: ContainerEvent, now: Instant) {
        self.observe(
            &event.instance_id,
            &event.node_id,
            event.container_id,
            event.state,
            event.health,
            now,
        );
    }

    /// Folds one observed container state into its instance.
    fn observe(
        &mut self,
        instance: &InstanceId,
        node: &NodeId,
        container: ContainerId,
        state: ContainerState,
        health: Option<Health>,
        now: Instant,
    ) {
        let Some(entry) = self.instances.get_mut(instance) else {
            return;
        };
        if entry.instance.node_id.as_ref() != Some(node)
            || !entry.instance.container_ids.contains(&container)
        {
            // A previous incarnation's container or another node's: not this instance's now.
            return;
        }
        match health {
            Some(h) => entry.health.insert(container.clone(), h),
            None => entry.health.remove(&container),
        };
        entry.containers.insert(container, state);
        self.observe_status(instance, now);
        self.update_readiness(instance, now);
    }

    /// Folds the observed container states of `instance` into its status.
    fn observe_status(&mut self, instance: &InstanceId, now: Instant) {
        let Some(entry) = self.instances.get_mut(instance) else {
            return;
        };
        if !matches!(
            entry.instance.status,
            InstanceStatus::Scheduled | InstanceStatus::Running
        ) {
            return;
        }
        let complete = entry.instance.container_ids.len() == entry.containers.len();
        let all_running = complete
            && entry
                .containers
                .values()
                .all(|s| *s == ContainerState::Running);
        // An instance ends when a container fails, or when all of them have exited; one that
        // exits 0 while its siblings run is simply done (Kubernetes' pods behave the same).
        let failed = entry
            .containers
            .values()
            .find(|s| {
                matches!(
                    s,
                    ContainerState::Failed { .. } | ContainerState::Killed { .. }
                ) || matches!(s, ContainerState::Exited { code } if *code != 0)
            })
            .cloned();
        let all_exited = complete
            && entry
                .containers
                .values()
                .all(|s| matches!(s, ContainerState::Exited { .. }));
        let ended = failed.or_else(|| all_exited.then_some(ContainerState::Exited { code: 0 }));
        if let Some(ended) = ended {
            let (code, message) = match ended {
                ContainerState::Exited { code } => (Some(code), None),
                ContainerState::Killed { code, reason } => (Some(code), Some(reason)),
                ContainerState::Failed { message } => (None, Some(message)),
                _ => (None, None),
            };
            self.on_exit(instance, code, message, false, now);
        } else if all_running
            && entry.instance.status == InstanceStatus::Scheduled
            && entry.transition(InstanceStatus::Running)
        {
            entry.running_since = Some(now);
            entry.instance_mut().last_error = None;
            self.out.put(&entry.instance);
            self.changed = true;
            let instance = entry.instance.clone();
            if let Some((def, _)) = self.workloads.get(&instance.workload_id) {
                let def = def.clone();
                let node = instance.node_id.clone().unwrap_or_default();
                self.event(
                    EventKind::Started,
                    &def,
                    Some(&instance),
                    format!("running on node {node}"),
                );
            }
        }
    }

    /// Recomputes whether `instance` is ready: Running, every container running, and every
    /// probed one ready. A change is recorded and its workload planned again (a rollout waits
    /// for readiness); losing readiness is an event with the probe's output.
    fn update_readiness(&mut self, instance: &InstanceId, now: Instant) {
        let Some(entry) = self.instances.get_mut(instance) else {
            return;
        };
        let running = entry.instance.status == InstanceStatus::Running;
        let ready = running
            && entry.instance.container_ids.iter().all(|c| {
                entry.containers.get(c) == Some(&ContainerState::Running)
                    && entry.health.get(c).is_none_or(|h| h.ready)
            });
        // In container order, so the message does not flip between containers.
        let message = entry
            .instance
            .container_ids
            .iter()
            .filter_map(|c| entry.health.get(c))
            .find_map(|h| h.message.clone())
            .filter(|_| running);
        if ready == entry.instance.ready && message == entry.instance.health {
            return;
        }
        let was_ready = entry.instance.ready;
        let record = entry.instance_mut();
        record.set_ready(ready);
        record.health.clone_from(&message);
        entry.ready_at = if ready {
            entry.ready_at.or(Some(now))
        } else {
            None
        };
        self.out.put(&entry.instance);
        self.changed = true;
        let instance = entry.instance.clone();
        if was_ready && !ready {
            if let Some((def, _)) = self.workloads.get(&instance.workload_id) {
                let def = def.clone();
                let why = message.unwrap_or_else(|| "a container is not running".to_owned());
                self.event(
                    EventKind::Unhealthy,
                    &def,
                    Some(&instance),
                    format!("not ready: {why}"),
                );
            }
        }
        self.queue.mark_dirty(instance.workload_id.clone());
    }

    /// An instance's containers ended: an exit or a runtime failure, or they `vanished` from the
    /// runtime (a reboot, a restarted runtime). Vanishing is not the application's crash, so it
    /// backs off like an operation error, not like a crash loop.
    fn on_exit(
        &mut self,
        instance: &InstanceId,
        code: Option<i32>,
        message: Option<String>,
        vanished: bool,
        now: Instant,
    ) {
        let Some(entry) = self.instances.get_mut(instance) else {
            return;
        };
        let succeeded = code == Some(0)
            && entry
                .containers
                .values()
                .all(|s| *s == ContainerState::Exited { code: 0 });
        let status = if succeeded {
            InstanceStatus::Succeeded
        } else {
            InstanceStatus::Failed
        };
        if !entry.transition(status) {
            return;
        }
        self.changed = true;
        let record = entry.instance_mut();
        record.last_exit_code = code;
        record.last_error.clone_from(&message);
        let healthy_for = entry
            .running_since
            .take()
            .map_or(Duration::ZERO, |t| now - t);
        let workload = entry.instance.workload_id.clone();
        let def = self.workloads.get(&workload).map(|(d, _)| d.clone());
        let restarts = def
            .as_ref()
            .is_some_and(|d| d.restart_policy.restarts(code));
        let mut detail = wording::exit_detail(code, message.as_deref());
        if restarts {
            let delay = if vanished {
                entry.error_backoff.fail(healthy_for)
            } else {
                entry.crash_backoff.fail(healthy_for)
            };
            entry.not_before = Some(now + delay);
            self.queue.schedule(now + delay, workload.clone());
            detail.push_str(&format!("; restarting in {:.1}s", delay.as_secs_f64()));
        } else if let Some(def) = &def {
            detail.push_str(&format!(
                "; not restarted (restart policy {:?})",
                def.restart_policy
            ));
        }
        self.out.put(&entry.instance);
        if let Some(def) = &def {
            let kind = if succeeded {
                EventKind::Stopped
            } else {
                EventKind::Failed
            };
            self.out
                .event(new_event(kind, def, Some(&entry.instance), detail));
        }
        self.queue.mark_dirty(workload);
    }

    /// Folds a node's container listing in: its own containers update their instances, others
    /// are orphans and are removed, and running instances whose containers are gone have ended.
    pub(crate) fn on_listed(&mut self, listed: Listed, now: Instant) {
        let containers = match listed.result {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(node = %listed.node, error = %e, "listing containers failed");
                return;
            }
        };
        let mut present: HashSet<ContainerId> = HashSet::new();
        for info in containers {
            present.insert(info.id.clone());
            let ours = self.instances.get(&info.instance_id).is_some_and(|e| {
                e.instance.node_id.as_ref() == Some(&listed.node)
                    && (e.instance.container_ids.contains(&info.id)
                        || e.instance.status == InstanceStatus::Stopping)
            });
            if ours {
                self.observe(
                    &info.instance_id,
                    &listed.node,
                    info.id,
                    info.state,
                    info.health,
                    now,
                );
            } else {
                // Not a current container of a known instance: an unknown instance's, or an
                // earlier incarnation's left by a crash mid-restart. Removing is idempotent, so
                // racing a stop or restart that removes it too is harmless.
                self.out.push(Effect::RemoveOrphan {
                    node: listed.node.clone(),
                    container: info.id,
                });
            }
        }
        let vanished: Vec<InstanceId> = self
            .instances
            .values()
            .filter(|e| {
                e.instance.node_id.as_ref() == Some(&listed.node)
                    && matches!(
                        e.instance.status,
                        InstanceStatus::Scheduled | InstanceStatus::Running
                    )
                    && e.settled_at.is_some_and(|at| at < listed.requested_at)
                    && e.instance
                        .container_ids
                        .iter()
                        .any(|c| !present.contains(c))
            })
            .map(|e| e.instance.id.clone())
            .collect();
        for id in vanished {
            self.on_exit(
                &id,
                None,
                Some("its containers are gone from the runtime".to_owned()),
                true,
                now,
            );
        }
    }
}
