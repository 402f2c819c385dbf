//! What the model says in events: one place for the wording people read in `events` and
//! `describe`, so the state machine's code says what happened and this file says how.

use crate::plan::StopReason;
use orchestrator_shared_types::{Event, EventKind, WorkloadDefinition, WorkloadInstance};

/// An event about `def` (and `instance`, if given: it names the instance and its node).
pub(crate) fn new_event(
    kind: EventKind,
    def: &WorkloadDefinition,
    instance: Option<&WorkloadInstance>,
    message: String,
) -> Event {
    let mut event = Event::new(kind, message);
    event.workload_id = Some(def.id.clone());
    event.workload_name = Some(def.name.clone());
    if let Some(i) = instance {
        event.instance_id = Some(i.id.clone());
        event.node_id.clone_from(&i.node_id);
    }
    event
}

/// A workload appeared in the store.
pub(crate) fn created(def: &WorkloadDefinition) -> String {
    format!("created with {} replicas", def.replicas)
}

/// What changed between two definitions of one workload.
pub(crate) fn describe_change(old: &WorkloadDefinition, new: &WorkloadDefinition) -> String {
    let mut parts = Vec::new();
    if old.replicas != new.replicas {
        parts.push(format!("replicas {} -> {}", old.replicas, new.replicas));
    }
    if old.spec_hash() != new.spec_hash() {
        let how = match new.strategy.kind {
            orchestrator_shared_types::StrategyKind::RollingUpdate => "rolling update",
            orchestrator_shared_types::StrategyKind::Recreate => "recreate",
        };
        parts.push(format!(
            "template changed (revision {} -> {}): replicas will be replaced ({how})",
            old.revision, new.revision
        ));
    }
    if old.restart_policy != new.restart_policy {
        parts.push(format!(
            "restart policy {:?} -> {:?}",
            old.restart_policy, new.restart_policy
        ));
    }
    if old.labels != new.labels {
        parts.push("labels changed".to_owned());
    }
    if parts.is_empty() {
        "updated".to_owned()
    } else {
        format!("updated: {}", parts.join(", "))
    }
}

/// Why an instance was stopped, as the "stopped" event says it.
pub(crate) fn stop_reason(reason: Option<StopReason>) -> &'static str {
    match reason {
        Some(StopReason::ScaledDown) => "scaled down",
        Some(StopReason::SpecChanged) => "template changed",
        Some(StopReason::Drained) => "node drained",
        _ => "stopped",
    }
}

/// How an instance's containers ended.
pub(crate) fn exit_detail(code: Option<i32>, message: Option<&str>) -> String {
    match (code, message) {
        (Some(code), Some(reason)) => format!("exited with code {code}: {reason}"),
        (Some(code), None) => format!("exited with code {code}"),
        (None, Some(m)) => m.to_owned(),
        (None, None) => "ended".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_shared_types::ContainerConfig;

    #[test]
    fn a_change_names_what_changed() {
        let old = WorkloadDefinition::new("web", 1, ContainerConfig::new("app", "img:1"));
        let mut new = old.clone();
        assert_eq!(describe_change(&old, &new), "updated");
        new.replicas = 3;
        new.containers[0].image = "img:2".into();
        assert_eq!(
            describe_change(&old, &new),
            "updated: replicas 1 -> 3, template changed (revision 0 -> 0): replicas will be replaced (rolling update)"
        );
    }

    #[test]
    fn exits_read_naturally() {
        assert_eq!(exit_detail(Some(1), None), "exited with code 1");
        assert_eq!(
            exit_detail(Some(137), Some("OOM-killed")),
            "exited with code 137: OOM-killed"
        );
        assert_eq!(exit_detail(None, None), "ended");
    }
}
