//! End-to-end: the real `orchestrator-cli` binary against a real `orchestratord` process (redb store
//! in a temp data dir, API on a free port, simulated runtime), including kill -9 in the middle of
//! reconciling and a restart on the same data dir.
//!
//! The daemon comes from `orchestrator_testkit`; running the CLI against it is in `common/`.

mod common;

use common::{start_simulated, write, CliExt};
use orchestrator_shared_types::api::WorkloadDetail;
use orchestrator_shared_types::InstanceStatus;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn manifest(name: &str, replicas: u32) -> String {
    format!(
        "name: {name}\nreplicas: {replicas}\nrestart_policy: Always\ncontainers:\n  - name: main\n    image: demo/app:1\n    command: [\"sleep\", \"3600\"]\n    resources: {{cpu_millicores: 100, memory_mb: 64}}\n"
    )
}

#[test]
fn workload_lifecycle_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut d = start_simulated(&data);
    let file = write(
        dir.path(),
        "apps.yaml",
        &format!("{}---\n{}", manifest("web", 3), manifest("api", 1)),
    );
    d.ok(&[
        "workload",
        "create",
        "-f",
        &file,
        "--wait",
        "--timeout",
        "60s",
    ]);

    let names: Vec<String> = d.workloads().into_iter().map(|w| w.workload.name).collect();
    assert_eq!(names, ["api", "web"]);
    let table = d.ok(&["workload", "list"]);
    assert!(table.contains("web") && table.contains("3/3"), "{table}");

    let web: WorkloadDetail = d.json(&["workload", "get", "web"]);
    assert_eq!((web.replicas.desired, web.replicas.running), (3, 3));
    assert_eq!(web.instances.len(), 3);

    d.ok(&[
        "workload",
        "scale",
        "web",
        "--replicas",
        "5",
        "--wait",
        "--timeout",
        "60s",
    ]);
    assert_eq!(d.instances("web").len(), 5);
    let describe = d.ok(&["workload", "describe", "web"]);
    assert!(describe.contains("node-1"), "{describe}");

    let events = d.ok(&["events", "--workload", "web"]);
    assert!(
        events.contains("Scheduled") && events.contains("Started"),
        "{events}"
    );

    // The same manifest through stdin and apply: unchanged, then updated.
    let out = d.cli_with_stdin(&["workload", "apply", "-f", "-"], Some(&manifest("api", 2)));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    d.ok(&["workload", "delete", "api"]);
    let names: Vec<String> = d.workloads().into_iter().map(|w| w.workload.name).collect();
    assert_eq!(names, ["web"]);

    let nodes = d.ok(&["node", "list"]);
    assert!(nodes.contains("node-1"), "{nodes}");
    // One node: a drain stops its instances and their replacements wait, with the reason.
    d.ok(&["node", "drain", "node-1"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let web: WorkloadDetail = d.json(&["workload", "get", "web"]);
        if web.replicas.pending == 5 && web.replicas.running == 0 {
            let why = web.pending_reason.expect("a reason").to_string();
            assert_eq!(why, "0/1 nodes fit: 1 node unschedulable");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "drain did not take effect: {:?}",
            web.replicas
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The cordon is kept in the store: a restarted daemon still places nothing on the node.
    d.terminate();
    d.restart();
    assert_eq!(d.data_dir(), data, "the same data dir");
    let nodes = d.ok(&["node", "list"]);
    assert!(nodes.contains("SchedulingDisabled"), "{nodes}");
    d.ok(&["workload", "scale", "web", "--replicas", "6"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let web: WorkloadDetail = d.json(&["workload", "get", "web"]);
        if web.replicas.desired == 6 && web.replicas.pending == 6 {
            let why = web.pending_reason.expect("a reason").to_string();
            assert_eq!(why, "0/1 nodes fit: 1 node unschedulable");
            assert_eq!(web.replicas.running, 0, "{:?}", web.replicas);
            break;
        }
        assert!(
            web.replicas.running == 0 && Instant::now() < deadline,
            "the restarted daemon forgot the cordon: {:?}",
            web.replicas
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    d.ok(&["node", "uncordon", "node-1"]);
    let nodes = d.ok(&["node", "list"]);
    assert!(!nodes.contains("SchedulingDisabled"), "{nodes}");
    d.ok(&[
        "workload",
        "scale",
        "web",
        "--replicas",
        "5",
        "--wait",
        "--timeout",
        "60s",
    ]);
    let info = d.ok(&["cluster", "info"]);
    assert!(info.contains("redb"), "{info}");
    d.terminate();
}

#[test]
fn bad_manifests_fail_clearly_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = start_simulated(&dir.path().join("data"));
    let good = write(dir.path(), "good.yaml", &manifest("keep", 1));
    d.ok(&[
        "workload",
        "create",
        "-f",
        &good,
        "--wait",
        "--timeout",
        "60s",
    ]);
    let before = d.ok(&["workload", "list", "-o", "json"]);

    let cases: &[(&str, &str, &str)] = &[
        ("unknown-field.yaml", "name: a\nreplicas: 1\ncolour: red\ncontainers: [{name: c, image: i}]\n", "colour"),
        ("bad-name.yaml", "name: Not_A_Name\nreplicas: 1\ncontainers: [{name: c, image: i}]\n", "name"),
        ("negative.yaml", "name: neg\nreplicas: -3\ncontainers: [{name: c, image: i}]\n", "replicas"),
        ("zero-memory.yaml", "name: zero\nreplicas: 1\ncontainers: [{name: c, image: i, resources: {cpu_millicores: 1, memory_mb: 0}}]\n", "containers[0].resources.memory_mb"),
        ("dup-containers.yaml", "name: dup\nreplicas: 1\ncontainers: [{name: c, image: i}, {name: c, image: i}]\n", "containers[1].name"),
        ("malformed.yaml", "name: [unclosed\n", "malformed"),
        ("empty.yaml", "", "empty"),
        ("conflict.yaml", &manifest("keep", 1), "already exists"),
    ];
    for (file, text, expected) in cases {
        let path = write(dir.path(), file, text);
        let out = d.cli(&["workload", "create", "-f", &path]);
        let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(!out.status.success(), "{file}: succeeded");
        assert!(
            stderr.contains(&expected.to_lowercase()),
            "{file}: expected {expected:?} in stderr: {stderr}"
        );
    }
    assert_eq!(
        d.ok(&["workload", "list", "-o", "json"]),
        before,
        "nothing stored changed"
    );
    let out = d.cli(&["workload", "scale", "nope", "--replicas", "2"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}

#[test]
fn kill_9_mid_reconcile_then_restart_converges_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let wanted: BTreeMap<String, u32> = (0..6).map(|i| (format!("app-{i}"), 10 + i)).collect();
    let mut d = start_simulated(&data);
    for (name, replicas) in &wanted {
        let file = write(
            dir.path(),
            &format!("{name}.yaml"),
            &manifest(name, *replicas),
        );
        d.ok(&["workload", "create", "-f", &file]);
    }
    // Every create was acknowledged; kill the daemon while it is still placing and starting.
    d.kill9();

    d.restart();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let views = d.workloads();
        let names: BTreeMap<String, u32> = views
            .iter()
            .map(|v| (v.workload.name.clone(), v.workload.replicas))
            .collect();
        assert_eq!(
            names, wanted,
            "every acknowledged workload survived kill -9"
        );
        if views
            .iter()
            .all(|v| v.replicas.running == v.replicas.desired && v.replicas.pending == 0)
        {
            break;
        }
        assert!(Instant::now() < deadline, "did not converge: {views:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    for (name, replicas) in &wanted {
        let instances = d.instances(name);
        assert_eq!(instances.len(), *replicas as usize, "{name}: no duplicates");
        assert!(instances
            .iter()
            .all(|i| i.status == InstanceStatus::Running));
    }
    // A second restart, clean this time, changes nothing.
    d.terminate();
    d.restart();
    std::thread::sleep(Duration::from_secs(1));
    for (name, replicas) in &wanted {
        assert_eq!(d.instances(name).len(), *replicas as usize);
    }
}

#[test]
fn without_an_oci_runtime_the_daemon_exits_at_once_saying_how_to_install_one() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = std::process::Command::new(orchestrator_testkit::bins::daemon_exe())
        .args(["--listen", "127.0.0.1:0", "--runtime", "youki"])
        .args(["--runtime-binary", "/nonexistent/youki"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(started.elapsed() < Duration::from_secs(10));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/youki"), "{stderr}");
    assert!(stderr.contains("cargo install youki"), "{stderr}");
}
