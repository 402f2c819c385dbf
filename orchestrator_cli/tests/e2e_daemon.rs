//! End-to-end: the real `orchestrator-cli` binary against a real `orchestratord` process (redb store
//! in a temp data dir, API on a free port, simulated runtime), including kill -9 in the middle of
//! reconciling and a restart on the same data dir.
//!
//! `orchestratord` is a binary of the `orchestrator_api` package; `cargo test --workspace` builds it
//! next to this package's binary. Run alone (`cargo test -p orchestrator_cli`), the test builds it.

use orchestrator_shared_types::api::{ListResponse, WorkloadDetail, WorkloadView};
use orchestrator_shared_types::{InstanceStatus, WorkloadInstance};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn cli_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_orchestrator-cli"))
}

fn daemon_exe() -> PathBuf {
    let exe = cli_exe().with_file_name("orchestratord");
    if !exe.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "orchestrator_api", "--bin", "orchestratord"])
            .status()
            .expect("running cargo build for orchestratord");
        assert!(status.success(), "building orchestratord failed");
    }
    assert!(exe.exists(), "orchestratord not found at {}", exe.display());
    exe
}

/// A running daemon; killed (SIGKILL) when dropped.
struct Daemon {
    child: Child,
    server: String,
}

impl Daemon {
    fn start(data_dir: &Path) -> Daemon {
        let mut child = Command::new(daemon_exe())
            .args([
                "--listen",
                "127.0.0.1:0",
                "--runtime",
                "simulated",
                "--node-name",
                "node-1",
            ])
            .args([
                "--cpu-millicores",
                "16000",
                "--memory-mb",
                "32768",
                "--log-format",
                "json",
            ])
            .arg("--data-dir")
            .arg(data_dir)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting orchestratord");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // Read the log until the daemon says where it listens; keep draining it afterwards so the
        // daemon never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                        if v["fields"]["message"] == "orchestratord ready" {
                            let addr = v["fields"]["listen"]
                                .as_str()
                                .unwrap_or_default()
                                .to_owned();
                            let _ = tx.send(addr);
                            sent = true;
                        }
                    }
                }
                if std::env::var_os("E2E_DAEMON_LOG").is_some() {
                    eprintln!("[orchestratord] {line}");
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("orchestratord did not report ready within 30 s");
        Daemon {
            child,
            server: format!("http://{addr}"),
        }
    }

    fn cli(&self, args: &[&str]) -> Output {
        self.cli_with_stdin(args, None)
    }

    fn cli_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new(cli_exe())
            .args(["--server", &self.server])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running orchestrator-cli");
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "orchestrator-cli {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json<T: serde::de::DeserializeOwned>(&self, args: &[&str]) -> T {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let text = self.ok(&all);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    fn workloads(&self) -> Vec<WorkloadView> {
        self.json::<ListResponse<WorkloadView>>(&["workload", "list"])
            .items
    }

    fn instances(&self, workload: &str) -> Vec<WorkloadInstance> {
        self.json::<ListResponse<WorkloadInstance>>(&["instance", "list", "--workload", workload])
            .items
    }

    fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for a clean exit.
    fn terminate(mut self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
        let status = self.child.wait().unwrap();
        assert!(status.success(), "orchestratord exited with {status}");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

fn manifest(name: &str, replicas: u32) -> String {
    format!(
        "name: {name}\nreplicas: {replicas}\nrestart_policy: Always\ncontainers:\n  - name: main\n    image: demo/app:1\n    command: [\"sleep\", \"3600\"]\n    resources: {{cpu_millicores: 100, memory_mb: 64}}\n"
    )
}

#[test]
fn workload_lifecycle_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("data"));
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
    d.ok(&["node", "uncordon", "node-1"]);
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
    let d = Daemon::start(&dir.path().join("data"));
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
    let d = Daemon::start(&data);
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

    let d = Daemon::start(&data);
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
    let d = Daemon::start(&data);
    std::thread::sleep(Duration::from_secs(1));
    for (name, replicas) in &wanted {
        assert_eq!(d.instances(name).len(), *replicas as usize);
    }
}
