//! End-to-end with REAL containers: `orchestrator-cli` against `orchestratord` running youki, with
//! the image pulled from the local registry (`scripts/setup-oci.sh` installs youki, starts Debian's
//! `docker-registry` on 127.0.0.1:5000 and pushes a busybox image; its env file names them).
//!
//! Without youki or the registry these tests print why and pass, except with `CI=true`, where
//! that is a failure. They run one at a time (dynamic host ports are per daemon, and every daemon
//! here is a node of its own on the same machine). The nodes, and every look at youki's own
//! state, come from `orchestrator_testkit` (feature `youki`), which calls youki only through the
//! runtime's CLI wrapper.

mod common;

use common::{write, CliExt};
use orchestrator_shared_types::api::WorkloadDetail;
use orchestrator_shared_types::{InstanceStatus, WorkloadInstance};
use orchestrator_testkit::{YoukiNode as Node, YoukiSetup};
use std::sync::Mutex;
use std::time::Duration;

/// One test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// youki and the test image, or `None` (outside CI) when the machine lacks them.
fn setup() -> Option<YoukiSetup> {
    YoukiSetup::detect()
}

fn running(instances: &[WorkloadInstance], n: usize) -> bool {
    instances.len() == n
        && instances
            .iter()
            .all(|i| i.status == InstanceStatus::Running)
}

fn container_id(i: &WorkloadInstance) -> String {
    i.container_ids[0].to_string()
}

/// `GET http://127.0.0.1:port/` with a bare HTTP/1.0 request: the status line and body.
fn http_get(port: u16) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    Ok(answer)
}

fn host_port(i: &WorkloadInstance) -> u16 {
    i.ports.first().expect("an assigned host port").host_port
}

/// The web example's shape: busybox httpd on a dynamic host port, serving a page naming itself.
fn web_manifest(image: &str, name: &str, replicas: u32) -> String {
    format!(
        r#"name: {name}
replicas: {replicas}
restart_policy: Always
containers:
  - name: httpd
    image: {image}
    command: ["sh", "-c", "mkdir -p /www && echo \"hello from $HOSTNAME\" > /www/index.html && echo \"serving on $PORT\" && exec httpd -f -v -p \"$PORT\" -h /www"]
    ports: [{{container_port: 8080, host_port: 0}}]
    resources: {{cpu_millicores: 100, memory_mb: 32}}
"#
    )
}

#[test]
fn web_replicas_serve_log_restart_scale_and_leave_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(setup) = setup() else { return };
    let node = Node::new(&setup, "web-node");
    let mut d = node.start();
    let file = write(
        node.dir(),
        "web.yaml",
        &web_manifest(&setup.image, "web", 3),
    );
    d.ok(&["workload", "create", "-f", &file]);
    let instances = d.wait_instances("web", Duration::from_secs(60), "3 running", |i| {
        running(i, 3)
    });

    // Each replica answers on its own host port, and its log says so.
    let mut ports: Vec<u16> = instances.iter().map(host_port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 3, "three distinct host ports: {instances:#?}");
    for i in &instances {
        let answer = http_get(host_port(i)).expect("the replica answers HTTP");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("hello from"), "{answer}");
        let logs = d.ok(&["instance", "logs", i.id.as_str()]);
        assert!(
            logs.contains(&format!("serving on {}", host_port(i))),
            "{logs}"
        );
    }
    assert_eq!(node.youki_list().len(), 3);

    // Kill one container's process from outside: it is restarted, and the restart counted.
    let victim = instances[0].clone();
    let pid = node.pid(&container_id(&victim));
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    let after = d.wait_instances("web", Duration::from_secs(60), "restarted", |all| {
        running(all, 3)
            && all
                .iter()
                .any(|i| i.id == victim.id && i.restart_count >= 1)
    });
    let restarted = after.iter().find(|i| i.id == victim.id).unwrap();
    assert_eq!(restarted.last_exit_code, Some(137), "{restarted:#?}");
    assert_ne!(node.pid(&container_id(restarted)), pid);
    assert!(http_get(host_port(restarted))
        .unwrap()
        .starts_with("HTTP/1.1 200"));
    let detail: WorkloadDetail = d.json(&["workload", "get", "web"]);
    assert_eq!(detail.workload.name, "web");
    let events = d.ok(&["events", "--workload", "web"]);
    assert!(events.contains("exited with code 137"), "{events}");

    // Scale to 1: two containers gone, and youki agrees.
    d.ok(&[
        "workload",
        "scale",
        "web",
        "--replicas",
        "1",
        "--wait",
        "--timeout",
        "60s",
    ]);
    let one = d.wait_instances("web", Duration::from_secs(30), "1 running", |i| {
        running(i, 1)
    });
    assert_eq!(node.youki_list(), vec![container_id(&one[0])]);
    assert_eq!(node.bundles(), vec![container_id(&one[0])]);

    // Delete: no containers, bundles, rootfs copies or cgroups left.
    d.ok(&["workload", "delete", "web"]);
    d.wait_instances("web", Duration::from_secs(30), "gone", |i| i.is_empty());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !(node.youki_list().is_empty() && node.bundles().is_empty())
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(node.youki_list().is_empty(), "{:?}", node.youki_list());
    assert!(node.bundles().is_empty(), "{:?}", node.bundles());
    assert!(node.cgroups().is_empty(), "{:?}", node.cgroups());
    d.terminate();
}

#[test]
fn on_failure_restarts_with_growing_delays() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(setup) = setup() else { return };
    let node = Node::new(&setup, "crash-node");
    let mut d = node.start();
    let manifest = format!(
        "name: crasher\nreplicas: 1\nrestart_policy: OnFailure\ncontainers:\n  - name: main\n    image: {}\n    command: [\"sh\", \"-c\", \"echo about to fail; exit 1\"]\n    resources: {{cpu_millicores: 100, memory_mb: 32}}\n",
        setup.image
    );
    let file = write(node.dir(), "crasher.yaml", &manifest);
    d.ok(&["workload", "create", "-f", &file]);
    let instances = d.wait_instances("crasher", Duration::from_secs(90), "restarted twice", |i| {
        i.len() == 1 && i[0].restart_count >= 2
    });
    assert_eq!(instances[0].last_exit_code, Some(1));
    let events = d.ok(&["events", "--workload", "crasher", "-o", "json"]);
    let events: serde_json::Value = serde_json::from_str(&events).unwrap();
    let delays: Vec<f64> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["message"].as_str())
        .filter(|m| m.contains("exited with code 1"))
        .filter_map(|m| m.split("restarting in ").nth(1))
        .filter_map(|s| s.trim_end_matches('s').parse().ok())
        .collect();
    assert!(delays.len() >= 2, "{events:#}");
    assert!(
        delays.windows(2).all(|w| w[1] > w[0]),
        "delays grow: {delays:?}"
    );
    // Each restart is a new container with a log of its own (like `kubectl logs`), which the
    // instance may be about to start: poll.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let logs = d.ok(&["instance", "logs", instances[0].id.as_str()]);
        if logs.contains("about to fail") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{logs:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    d.ok(&["workload", "delete", "crasher"]);
    d.wait_instances("crasher", Duration::from_secs(30), "gone", |i| i.is_empty());
    d.terminate();
}

#[test]
fn a_restarted_daemon_adopts_running_containers() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(setup) = setup() else { return };
    let node = Node::new(&setup, "adopt-node");
    let mut d = node.start();
    let file = write(
        node.dir(),
        "web.yaml",
        &web_manifest(&setup.image, "sticky", 2),
    );
    d.ok(&["workload", "create", "-f", &file]);
    let before = d.wait_instances("sticky", Duration::from_secs(60), "2 running", |i| {
        running(i, 2)
    });
    let pids: Vec<i32> = before.iter().map(|i| node.pid(&container_id(i))).collect();
    d.kill9();

    d.restart();
    // Same instances, same processes, no duplicates.
    let after = d.wait_instances("sticky", Duration::from_secs(30), "2 running", |i| {
        running(i, 2)
    });
    let ids = |v: &[WorkloadInstance]| {
        let mut ids: Vec<String> = v.iter().map(|i| i.id.to_string()).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&before), ids(&after));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(node.youki_list().len(), 2, "{:?}", node.youki_list());
    let pids_after: Vec<i32> = before.iter().map(|i| node.pid(&container_id(i))).collect();
    assert_eq!(pids, pids_after, "the containers were not recreated");
    for i in &after {
        assert!(http_get(host_port(i)).unwrap().starts_with("HTTP/1.1 200"));
    }

    // The new daemon watches the adopted containers: a kill is noticed and restarted.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pids[0]).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    d.wait_instances("sticky", Duration::from_secs(60), "restarted", |all| {
        running(all, 2) && all.iter().any(|i| i.restart_count >= 1)
    });
    d.ok(&["workload", "delete", "sticky"]);
    d.wait_instances("sticky", Duration::from_secs(30), "gone", |i| i.is_empty());
    d.terminate();
}

#[test]
fn bad_images_and_commands_fail_the_instance_with_the_runtime_message() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(setup) = setup() else { return };
    let node = Node::new(&setup, "bad-node");
    let mut d = node.start();
    let registry = setup.registry().to_owned();
    let one = |name: &str, image: &str, extra: &str| {
        format!(
            "name: {name}\nreplicas: 1\nrestart_policy: Never\ncontainers:\n  - name: main\n    image: {image}\n{extra}    resources: {{cpu_millicores: 100, memory_mb: 32}}\n"
        )
    };
    // A healthy workload next to the bad ones stays untouched.
    let healthy = one(
        "healthy",
        &setup.image,
        "    command: [\"sleep\", \"3600\"]\n",
    );
    let cases = [
        (
            one("no-tag", &format!("{registry}/demo/busybox:nope"), ""),
            "no-tag",
            "not found",
        ),
        (
            one("no-repo", &format!("{registry}/demo/nothing:1"), ""),
            "no-repo",
            "not found",
        ),
        (
            format!(
                "name: tiny-memory\nreplicas: 1\nrestart_policy: Never\ncontainers:\n  - name: main\n    image: {}\n    command: [\"sh\", \"-c\", \"x=$(head -c 64000000 /dev/zero | tr '\\\\0' a); sleep 3600\"]\n    resources: {{cpu_millicores: 100, memory_mb: 4}}\n",
                setup.image
            ),
            "tiny-memory",
            "OOM-killed",
        ),
        (
            one("no-command", &format!("{registry}/demo/busybox:nocmd"), ""),
            "no-command",
            "no command",
        ),
        (
            one(
                "no-binary",
                &setup.image,
                "    command: [\"/no/such/binary\"]\n",
            ),
            "no-binary",
            "/no/such/binary",
        ),
    ];
    let mut all = healthy.clone();
    for (m, _, _) in &cases {
        all.push_str("---\n");
        all.push_str(m);
    }
    let file = write(node.dir(), "bad.yaml", &all);
    d.ok(&["workload", "create", "-f", &file]);
    for (_, name, needle) in &cases {
        let failed = d.wait_instances(name, Duration::from_secs(60), "failed", |i| {
            i.len() == 1 && i[0].status == InstanceStatus::Failed
        });
        let error = failed[0].last_error.clone().unwrap_or_default();
        assert!(error.contains(needle), "{name}: {error}");
        let describe = d.ok(&["workload", "describe", name]);
        assert!(describe.contains(needle), "{name}: {describe}");
        let events = d.ok(&["events", "--workload", name]);
        assert!(events.contains(needle), "{name}: {events}");
    }
    let healthy = d.wait_instances("healthy", Duration::from_secs(30), "running", |i| {
        running(i, 1)
    });
    assert_eq!(healthy[0].restart_count, 0);
    // Failed starts left nothing behind: besides the healthy container there is only the
    // OOM-killed one, which started and, with restart policy Never, is kept stopped until its
    // workload is deleted (like a terminated pod's container).
    let oom = d.instances("tiny-memory");
    let mut expected = vec![container_id(&healthy[0]), container_id(&oom[0])];
    expected.sort();
    assert_eq!(node.youki_list(), expected);
    d.ok(&["workload", "delete", "tiny-memory"]);
    d.wait_instances("tiny-memory", Duration::from_secs(30), "gone", |i| {
        i.is_empty()
    });
    assert_eq!(node.youki_list(), vec![container_id(&healthy[0])]);
    d.terminate();
}
