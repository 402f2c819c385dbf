//! JSON and YAML round-trips of the data model, and the manifest format users write.

use orchestrator_shared_types::*;

const MANIFEST: &str = r#"
name: web
replicas: 3
labels: {app: web}
node_selector: {disk: ssd}
restart_policy: Always
containers:
  - name: httpd
    image: 127.0.0.1:5000/demo/busybox:1
    command: ["httpd", "-f", "-p", "8080"]
    args: []
    env: {GREETING: hello}
    ports: [{container_port: 8080, host_port: 8080, protocol: tcp}]
    resources: {cpu_millicores: 100, memory_mb: 32}
"#;

#[test]
fn manifest_parses_and_validates() {
    let w: WorkloadDefinition = serde_norway::from_str(MANIFEST).unwrap();
    assert_eq!(w.name, "web");
    assert_eq!(w.replicas, 3);
    assert_eq!(w.containers[0].ports[0].host_port, Some(8080));
    assert_eq!(w.containers[0].resources, Resources::new(100, 32, 0));
    assert!(w.id.0.is_empty());
    w.validate().unwrap();
}

#[test]
fn workload_round_trips_json_and_yaml() {
    let mut w: WorkloadDefinition = serde_norway::from_str(MANIFEST).unwrap();
    w.id = WorkloadId::generate();
    w.placement = PlacementStrategy::Spread;
    let json = serde_json::to_string(&w).unwrap();
    assert_eq!(
        serde_json::from_str::<WorkloadDefinition>(&json).unwrap(),
        w
    );
    let yaml = serde_norway::to_string(&w).unwrap();
    assert_eq!(
        serde_norway::from_str::<WorkloadDefinition>(&yaml).unwrap(),
        w
    );
}

#[test]
fn instance_node_event_round_trip() {
    let mut i = WorkloadInstance::new(InstanceId::generate("web"), WorkloadId::generate());
    i.node_id = Some("n1".into());
    i.transition(InstanceStatus::Scheduled);
    let json = serde_json::to_string(&i).unwrap();
    assert_eq!(serde_json::from_str::<WorkloadInstance>(&json).unwrap(), i);
    let yaml = serde_norway::to_string(&i).unwrap();
    assert_eq!(
        serde_norway::from_str::<WorkloadInstance>(&yaml).unwrap(),
        i
    );

    let n = Node::new("n1", Resources::new(4000, 8192, 100)).with_label("disk", "ssd");
    let yaml = serde_norway::to_string(&n).unwrap();
    assert_eq!(serde_norway::from_str::<Node>(&yaml).unwrap(), n);

    let mut e = Event::new(EventKind::Unschedulable, "no room");
    e.unschedulable = Some(Unschedulable {
        nodes_total: 2,
        reasons: [(RejectReason::InsufficientCpu, 2)].into_iter().collect(),
        unplaced: 1,
    });
    let json = serde_json::to_string(&e).unwrap();
    assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), e);
}

#[test]
fn unknown_fields_and_bad_values_are_rejected_with_their_path() {
    let err = serde_norway::from_str::<WorkloadDefinition>(
        "name: a\nreplicas: 1\ncontainers: [{name: c, image: i, colour: red}]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("colour"), "{err}");
    assert!(err.contains("containers[0]"), "{err}");

    let err = serde_norway::from_str::<WorkloadDefinition>(
        "name: a\nreplicas: 1\ncontainers: [{name: c, image: i, ports: [{container_port: 1, protocol: sctp}]}]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("sctp"), "{err}");

    let err =
        serde_norway::from_str::<WorkloadDefinition>("name: a\nreplicas: -1\ncontainers: []\n")
            .unwrap_err()
            .to_string();
    assert!(err.contains("replicas"), "{err}");
}

#[test]
fn spec_hash_tracks_the_template_only() {
    let w: WorkloadDefinition = serde_norway::from_str(MANIFEST).unwrap();
    let mut scaled = w.clone();
    scaled.replicas = 10;
    scaled.labels.insert("tier".into(), "front".into());
    assert_eq!(w.spec_hash(), scaled.spec_hash());
    let mut changed = w.clone();
    changed.containers[0].image = "other:2".into();
    assert_ne!(w.spec_hash(), changed.spec_hash());
    assert_eq!(w.spec_hash().len(), 16);
}
