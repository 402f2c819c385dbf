//! The model driven by hand: facts in, effects out, time passed explicitly. No runtime, no
//! store, no clock, no tokio runtime.

use super::*;
use crate::execute::Done;
use container_runtime_interface::ContainerEvent;
use orchestrator_shared_types::{ContainerConfig, Resources};
use std::time::Duration;

fn model() -> Model {
    Model::new(
        OrchestratorConfig::default(),
        Arc::new(scheduler_interface::BinPackScheduler::new()),
        Arc::new(CoreMetrics::default()),
    )
}

fn workload(name: &str, replicas: u32) -> WorkloadDefinition {
    let mut c = ContainerConfig::new("main", "example/app:1");
    c.resources = Resources::new(100, 64, 0);
    WorkloadDefinition::new(name, replicas, c)
}

fn node(id: &str) -> Node {
    Node::new(id, Resources::new(4000, 8192, 10_000))
}

/// The runtime operations among `effects`: (instance, is a start).
fn runs(effects: &[Effect]) -> Vec<(InstanceId, bool)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Run { instance, op, .. } => {
                Some((instance.clone(), matches!(op, Operation::Start { .. })))
            }
            _ => None,
        })
        .collect()
}

/// The messages of the events among `effects`.
fn events(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Persist(PersistMsg::Event(ev)) => Some(ev.message.clone()),
            _ => None,
        })
        .collect()
}

/// Reports every start in `effects` as done and its containers as running.
fn start_all(m: &mut Model, effects: &[Effect], now: Instant) {
    for e in effects {
        if let Effect::Run {
            workload,
            instance,
            node,
            op: Operation::Start { specs, .. },
        } = e
        {
            m.on_done(
                Done {
                    workload: workload.clone(),
                    instance: instance.clone(),
                    started: true,
                    result: Ok(()),
                },
                now,
            );
            for spec in specs {
                m.on_container_event(
                    ContainerEvent {
                        node_id: node.clone(),
                        container_id: spec.id.clone(),
                        instance_id: instance.clone(),
                        state: ContainerState::Running,
                        health: None,
                    },
                    now,
                );
            }
        }
    }
}

/// A model with node `n1` running every replica of `def`, and the effects that started them.
fn running(def: WorkloadDefinition, now: Instant) -> (Model, Vec<Effect>) {
    let mut m = model();
    m.add_node(node("n1"));
    m.on_workload_put(def, 1);
    m.reconcile_dirty(now);
    let effects = m.take_effects();
    start_all(&mut m, &effects, now);
    m.take_effects();
    (m, effects)
}

#[test]
fn a_new_workload_is_placed_started_and_reported_running() {
    let now = Instant::now();
    let mut m = model();
    m.add_node(node("n1"));
    let def = workload("web", 2);
    m.on_workload_put(def.clone(), 5);
    m.reconcile_dirty(now);
    let effects = m.take_effects();
    assert_eq!(runs(&effects).len(), 2, "{effects:?}");
    assert!(runs(&effects).iter().all(|(_, start)| *start));
    let said = events(&effects);
    assert_eq!(said[0], "created with 2 replicas");
    assert_eq!(
        said.iter()
            .filter(|m| m.starts_with("placed on node n1"))
            .count(),
        2
    );
    assert_eq!(m.summary().count(InstanceStatus::Scheduled), 2);

    start_all(&mut m, &effects, now);
    assert_eq!(m.summary().count(InstanceStatus::Running), 2);
    let effects = m.take_effects();
    assert_eq!(
        events(&effects)
            .iter()
            .filter(|m| *m == "running on node n1")
            .count(),
        2
    );

    // Level-triggered: planning the converged state again does nothing.
    m.mark_all_dirty();
    m.reconcile_dirty(now);
    assert!(runs(&m.take_effects()).is_empty());

    let view = m.publish();
    assert_eq!(view.replica_counts(&def.id).running, 2);
    assert_eq!(view.replica_counts(&def.id).desired, 2);
    assert_eq!(view.nodes()[0].instances, 2);
    assert!(!m.changed(), "publishing clears the change flag");
}

#[test]
fn a_crash_restarts_only_after_the_backoff() {
    let now = Instant::now();
    let (mut m, effects) = running(workload("web", 1), now);
    let Some(Effect::Run {
        instance,
        node,
        op: Operation::Start { specs, .. },
        ..
    }) = effects.iter().find(|e| matches!(e, Effect::Run { .. }))
    else {
        panic!("no start in {effects:?}");
    };
    m.on_container_event(
        ContainerEvent {
            node_id: node.clone(),
            container_id: specs[0].id.clone(),
            instance_id: instance.clone(),
            state: ContainerState::Exited { code: 3 },
            health: None,
        },
        now,
    );
    let effects = m.take_effects();
    assert!(
        events(&effects)
            .iter()
            .any(|e| e.starts_with("exited with code 3; restarting in")),
        "{effects:?}"
    );
    assert_eq!(m.summary().count(InstanceStatus::Failed), 1);
    m.reconcile_dirty(now);
    assert!(runs(&m.take_effects()).is_empty(), "not before the backoff");
    let due = m.next_deadline().expect("a restart timer");
    assert!(due > now);
    m.on_timers(due + Duration::from_millis(1));
    m.reconcile_dirty(due + Duration::from_millis(1));
    let effects = m.take_effects();
    assert_eq!(runs(&effects), vec![(instance.clone(), true)]);
    assert!(events(&effects).iter().any(|e| e.starts_with("restart #1")));
}

#[test]
fn a_deleted_workload_is_stopped_then_forgotten() {
    let now = Instant::now();
    let def = workload("web", 1);
    let (mut m, _) = running(def.clone(), now);

    m.on_workload_deleted("web", 2);
    m.reconcile_dirty(now);
    let effects = m.take_effects();
    let stops = runs(&effects);
    assert_eq!(stops.len(), 1);
    assert!(!stops[0].1, "a stop");
    assert_eq!(events(&effects)[0], "deleted");
    // Nothing else is planned for it while its stop is in flight.
    m.mark_all_dirty();
    m.reconcile_dirty(now);
    assert!(runs(&m.take_effects()).is_empty());

    m.on_done(
        Done {
            workload: def.id.clone(),
            instance: stops[0].0.clone(),
            started: false,
            result: Ok(()),
        },
        now,
    );
    let effects = m.take_effects();
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::Persist(PersistMsg::Delete(_)))));
    assert_eq!(m.summary().instances.values().sum::<usize>(), 0);
    // A replayed older write does not bring it back.
    m.on_workload_put(def, 1);
    m.reconcile_dirty(now);
    assert!(runs(&m.take_effects()).is_empty());
}

/// The grace of every stop among `effects`.
fn stop_graces(effects: &[Effect]) -> Vec<Option<Duration>> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Run {
                op: Operation::Stop { grace, .. },
                ..
            } => Some(*grace),
            _ => None,
        })
        .collect()
}

#[test]
fn stops_give_the_workload_s_termination_grace_even_after_its_deletion() {
    let now = Instant::now();
    let mut def = workload("web", 2);
    def.termination_grace_seconds = Some(3);
    let (mut m, _) = running(def.clone(), now);

    // Scale down: the definition's grace.
    let mut one = def.clone();
    one.replicas = 1;
    m.on_workload_put(one, 2);
    m.reconcile_dirty(now);
    let effects = m.take_effects();
    assert_eq!(stop_graces(&effects), [Some(Duration::from_secs(3))]);
    m.on_done(
        Done {
            workload: def.id.clone(),
            instance: runs(&effects)[0].0.clone(),
            started: false,
            result: Ok(()),
        },
        now,
    );
    m.take_effects();

    // Deleted: the definition is gone, the grace the instance was placed with still holds.
    m.on_workload_deleted("web", 3);
    m.reconcile_dirty(now);
    assert_eq!(
        stop_graces(&m.take_effects()),
        [Some(Duration::from_secs(3))]
    );

    // Without one: the loop's default (None here).
    let (mut m, _) = running(workload("api", 1), now);
    m.on_workload_deleted("api", 2);
    m.reconcile_dirty(now);
    assert_eq!(stop_graces(&m.take_effects()), [None]);
}

#[test]
fn older_news_is_ignored_and_changes_are_described() {
    let mut m = model();
    let def = workload("web", 1);
    m.on_workload_put(def.clone(), 4);
    m.take_effects();
    let mut scaled = def.clone();
    scaled.replicas = 3;
    m.on_workload_put(scaled.clone(), 3);
    assert!(m.take_effects().is_empty(), "revision 3 is older than 4");
    m.on_workload_put(scaled.clone(), 6);
    assert_eq!(events(&m.take_effects()), ["updated: replicas 1 -> 3"]);
    m.on_workload_put(scaled, 6);
    assert!(m.take_effects().is_empty(), "the same revision twice");
}

#[test]
fn a_relist_finds_workloads_created_and_deleted_behind_its_back() {
    let mut m = model();
    m.on_workload_put(workload("old", 1), 2);
    m.take_effects();
    // At revision 10 the store holds only `new`: `old` was deleted in between.
    m.on_relisted(10, vec![(workload("new", 1), 9)]);
    let said = events(&m.take_effects());
    assert!(
        said.contains(&"created with 1 replicas".to_owned()),
        "{said:?}"
    );
    assert!(said.contains(&"deleted".to_owned()), "{said:?}");
    assert_eq!(m.summary().workloads, 1);
}

#[test]
fn a_drained_node_s_instances_move_elsewhere() {
    let now = Instant::now();
    let (mut m, _) = running(workload("web", 1), now);
    let mut n2 = node("n2");
    n2.labels.insert("zone".into(), "b".into());
    m.on_cluster_event(ClusterEvent::NodeAdded(n2));
    let mut cordoned = node("n1");
    cordoned.unschedulable = true;
    m.on_cluster_event(ClusterEvent::NodeUpdated(cordoned));
    m.take_effects();
    m.on_cordon(&NodeId::from("n1"), true);
    m.reconcile_dirty(now);
    let effects = m.take_effects();
    let placed_on_n2 = effects.iter().any(|e| {
        matches!(e, Effect::Run { node, op: Operation::Start { .. }, .. } if node.as_str() == "n2")
    });
    assert!(placed_on_n2, "{effects:?}");
}
