//! Black-box tests of the `orchestrator-cli` binary against a PROTOCOL STUB.
//!
//! The stub is not orchestratord: it is a few lines of `std::net` answering canned JSON (shaped by
//! `orchestrator_shared_types`, as `docs/api.md` says) on 127.0.0.1:0, so these tests check the
//! CLI's side of the contract — exit codes, error rendering with the server's field details,
//! parseable `-o json`, the apply fallback, `--wait` timeouts, the unreachable-server message —
//! without a daemon. End-to-end tests against the real orchestratord belong elsewhere and replace
//! nothing here.

use orchestrator_shared_types::api::{
    ErrorBody, ErrorInfo, ListResponse, ReplicaCounts, RolloutHistory, RolloutStatus,
    WorkloadDetail, WorkloadView,
};
use orchestrator_shared_types::{
    ContainerConfig, FieldError, InstanceStatus, RejectReason, Unschedulable, WorkloadDefinition,
    WorkloadInstance,
};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

/// A canned answer: `(status, JSON body)` for `(method, path with query, request body)`.
type Routes = fn(&str, &str, &str) -> (u16, String);

/// The protocol stub: a listener on a free loopback port, answering each request with `routes`
/// and recording `METHOD target` of every request.
struct ProtocolStub {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl ProtocolStub {
    fn start(routes: Routes) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        // The thread lives as long as the test process; it only ever talks to this test's CLI.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = answer(stream, routes, &seen);
            }
        });
        Self { url, requests }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// Reads one HTTP/1.1 request and writes one response, closing the connection.
fn answer(stream: TcpStream, routes: Routes, seen: &Mutex<Vec<String>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("").to_owned(),
        parts.next().unwrap_or("").to_owned(),
    );
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        if header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    seen.lock().unwrap().push(format!("{method} {target}"));
    let (status, json) = routes(&method, &target, &String::from_utf8_lossy(&body));
    // The nodes are answered by a daemon that lost its store: marked as maybe out of date.
    let stale = if target.starts_with("/api/v1/nodes") {
        format!("{STALE}\r\n")
    } else {
        String::new()
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} Canned\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         {stale}Connection: close\r\n\r\n{json}",
        json.len()
    )?;
    stream.flush()
}

fn error(status: u16, code: &str, message: &str, details: &[(&str, &str)]) -> (u16, String) {
    let body = ErrorBody {
        error: ErrorInfo {
            code: code.into(),
            message: message.into(),
            details: details
                .iter()
                .map(|(f, m)| FieldError {
                    field: (*f).into(),
                    message: (*m).into(),
                })
                .collect(),
        },
    };
    (status, serde_json::to_string(&body).unwrap())
}

fn not_found() -> (u16, String) {
    error(404, "not_found", "workload nope not found", &[])
}

/// `web`: 1 of 3 replicas running, 2 pending for lack of memory. Ids and times are fixed so that
/// every answer of the stub describes the same workload.
fn web_detail() -> WorkloadDetail {
    let mut workload = WorkloadDefinition::new("web", 3, ContainerConfig::new("web", "nginx:1.27"));
    workload.id = "wid-web".into();
    let created = "2026-01-10T12:00:00Z".parse().unwrap();
    let instance = |id: &str| {
        let mut i = WorkloadInstance::new(id.into(), workload.id.clone());
        i.created_at = created;
        i.updated_at = created;
        i
    };
    let mut running = instance("web-aaaa");
    running.status = InstanceStatus::Running;
    running.node_id = Some("node-1".into());
    running.spec_hash = workload.spec_hash();
    running.restart_count = 4;
    let instances = vec![running, instance("web-p0"), instance("web-p1")];
    WorkloadDetail {
        replicas: ReplicaCounts::of(3, &instances),
        workload,
        revision: 3,
        instances,
        events: Vec::new(),
        rollout: None,
        pending_reason: Some(Unschedulable {
            nodes_total: 1,
            reasons: [(RejectReason::InsufficientMemory, 1)]
                .into_iter()
                .collect(),
            unplaced: 2,
        }),
    }
}

fn web_view() -> WorkloadView {
    let d = web_detail();
    WorkloadView {
        workload: d.workload,
        revision: d.revision,
        replicas: d.replicas,
    }
}

/// The stale mark the stub puts on node answers.
const STALE: &str = "x-orchestrator-stale: the store is unreachable since 12:00:03";

/// A node of 4 cores and 8 GB with `cpu` millicores allocated.
fn node_view(id: &str, cpu: u64) -> orchestrator_shared_types::api::NodeView {
    orchestrator_shared_types::api::NodeView {
        node: orchestrator_shared_types::Node::new(
            id,
            orchestrator_shared_types::Resources::new(4000, 8192, 0),
        ),
        allocated: orchestrator_shared_types::Resources::new(cpu, 512, 0),
        instances: usize::from(cpu > 0),
    }
}

fn json<T: serde::Serialize>(status: u16, value: &T) -> (u16, String) {
    (status, serde_json::to_string(value).unwrap())
}

/// The routes most tests need.
fn routes(method: &str, target: &str, _body: &str) -> (u16, String) {
    match (method, target) {
        ("GET", "/api/v1/workloads") => json(200, &ListResponse::new(vec![web_view()])),
        ("GET", "/api/v1/instances") => json(200, &ListResponse::new(web_detail().instances)),
        ("GET", "/api/v1/workloads/web") => json(200, &web_detail()),
        ("POST", "/api/v1/workloads/web/scale") => json(200, &web_view()),
        ("GET", "/api/v1/workloads/web/rollout") => json(200, &web_rollout()),
        ("GET", "/api/v1/workloads/web/rollout/history") => {
            let mut w = web_detail().workload;
            w.revision = 3;
            let mut old = w.template();
            old.revision = 2;
            old.containers[0].image = "nginx:1.26".into();
            old.failed = Some("no progress for 600 s (progress_deadline_seconds)".into());
            w.history = vec![old];
            json(200, &RolloutHistory::of(&w))
        }
        ("POST", "/api/v1/workloads/web/rollout/undo") => error(
            400,
            "validation_failed",
            "invalid input: 1 problem",
            &[(
                "to_revision",
                "workload web has no revision 9 (known: 2, 3 (current))",
            )],
        ),
        // Two pages: `node list` shows every node.
        ("GET", "/api/v1/nodes") => json(
            200,
            &ListResponse {
                items: vec![node_view("node-a", 1200)],
                next: Some("t1".into()),
            },
        ),
        ("GET", "/api/v1/nodes?continue=t1") => {
            json(200, &ListResponse::new(vec![node_view("node-b", 0)]))
        }
        ("POST", "/api/v1/workloads") => error(
            400,
            "validation_failed",
            "invalid workload: 2 problems",
            &[
                ("name", "must be a DNS-1123 label"),
                (
                    "containers[0].resources.memory_mb",
                    "must be greater than 0",
                ),
            ],
        ),
        _ => not_found(),
    }
}

/// A rollout that waits on a replica whose readiness probe fails.
fn web_rollout() -> RolloutStatus {
    RolloutStatus {
        name: "web".into(),
        revision: 3,
        strategy: orchestrator_shared_types::StrategyKind::RollingUpdate,
        desired: 3,
        updated: 1,
        ready: 0,
        available: 0,
        outdated: 2,
        complete: false,
        waiting_for: vec![
            "instance web-aaaa (Running): web: readiness probe failed 3 times: HTTP 503 from GET /ready"
                .into(),
        ],
        last_failure: None,
        message: "revision 3: 1 of 3 replicas updated, 0 available, 2 outdated left".into(),
    }
}

fn cli(server: &str, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_orchestrator-cli"))
        .args(args)
        .env("ORCHESTRATOR_SERVER", server)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn list_as_json_is_the_servers_list() {
    let stub = ProtocolStub::start(routes);
    let out = cli(&stub.url, &["workload", "list", "-o", "json"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list: ListResponse<WorkloadView> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.items, vec![web_view()]);
}

#[test]
fn list_as_table() {
    let stub = ProtocolStub::start(routes);
    let out = cli(&stub.url, &["workload", "list"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["NAME", "READY", "PENDING", "RESTARTS", "AGE"]);
    assert_eq!(lines[1][..4], ["web", "1/3", "2", "4"]);
}

#[test]
fn rollout_status_says_what_it_waits_for_and_times_out() {
    let stub = ProtocolStub::start(routes);
    let out = cli(
        &stub.url,
        &["workload", "rollout", "status", "web", "--no-wait"],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("workload/web rollout in progress: revision 3: 1 of 3 replicas updated"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  waiting for instance web-aaaa (Running): web: readiness probe failed 3 times: HTTP 503 from GET /ready"),
        "{stdout}"
    );
    let out = cli(
        &stub.url,
        &["workload", "rollout", "status", "web", "--timeout", "1s"],
        "",
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("timed out after 1s waiting for web"),
        "{stderr}"
    );
    assert!(
        stderr.contains("readiness probe failed 3 times"),
        "{stderr}"
    );
}

#[test]
fn rollout_history_and_a_refused_undo() {
    let stub = ProtocolStub::start(routes);
    let out = cli(&stub.url, &["workload", "rollout", "history", "web"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("REVISION"), "{stdout}");
    assert!(
        lines[1].starts_with("2 ")
            && lines[1].contains("web=nginx:1.26")
            && lines[1].contains("failed: no progress"),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with("3 ") && lines[2].ends_with("current"),
        "{stdout}"
    );
    let out = cli(
        &stub.url,
        &["workload", "rollout", "undo", "web", "--to-revision", "9"],
        "",
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("to_revision: workload web has no revision 9"),
        "{stderr}"
    );
}

#[test]
fn validation_errors_show_the_servers_message_and_every_field() {
    let stub = ProtocolStub::start(routes);
    let manifest = "name: Bad_Name\nreplicas: 1\ncontainers: [{name: c, image: i}]\n";
    let out = cli(&stub.url, &["workload", "create", "-f", "-"], manifest);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: creating workload Bad_Name: invalid workload: 2 problems\n  \
         name: must be a DNS-1123 label\n  \
         containers[0].resources.memory_mb: must be greater than 0\n"
    );
    assert_eq!(stub.requests(), ["POST /api/v1/workloads"]);
}

#[test]
fn not_found_exits_non_zero_with_the_servers_message() {
    let stub = ProtocolStub::start(routes);
    let out = cli(&stub.url, &["workload", "get", "nope"], "");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "error: workload nope not found\n");
    assert!(out.stdout.is_empty());
}

#[test]
fn unreachable_server_is_named() {
    // A port that was just free: nothing listens there once the listener is dropped.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let out = cli(&url, &["cluster", "info"], "");
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: cannot reach the orchestrator server at {url}: "
        )),
        "{stderr}"
    );
}

#[test]
fn a_manifest_that_does_not_parse_sends_nothing() {
    let stub = ProtocolStub::start(routes);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.yaml");
    std::fs::write(&path, "name: a\nreplicas: 1\n---\nname: [oops\n").unwrap();
    let file = path.display().to_string();
    let out = cli(&stub.url, &["workload", "apply", "-f", &file], "");
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: cannot parse {file}, document 2, as YAML: "
        )),
        "{stderr}"
    );
    assert!(stub.requests().is_empty());
}

#[test]
fn apply_creates_when_the_workload_is_absent() {
    fn apply_routes(method: &str, target: &str, body: &str) -> (u16, String) {
        match (method, target) {
            ("PUT", "/api/v1/workloads/new") => not_found(),
            ("POST", "/api/v1/workloads") => {
                let mut def: WorkloadDefinition = serde_json::from_str(body).unwrap();
                def.id = "id-new".into();
                let replicas = ReplicaCounts {
                    desired: def.replicas,
                    ..Default::default()
                };
                json(
                    201,
                    &WorkloadView {
                        workload: def,
                        revision: 1,
                        replicas,
                    },
                )
            }
            _ => not_found(),
        }
    }
    let stub = ProtocolStub::start(apply_routes);
    let manifest = r#"{"name": "new", "replicas": 1, "containers": [{"name": "c", "image": "i"}]}"#;
    let out = cli(&stub.url, &["workload", "apply", "-f", "-"], manifest);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "workload/new created\n");
    assert_eq!(
        stub.requests(),
        ["PUT /api/v1/workloads/new", "POST /api/v1/workloads"]
    );
}

#[test]
fn wait_timeout_says_what_is_pending_and_why() {
    let stub = ProtocolStub::start(routes);
    let out = cli(
        &stub.url,
        &[
            "workload",
            "scale",
            "web",
            "--replicas",
            "3",
            "--wait",
            "--timeout",
            "1s",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "workload/web scaled to 3 replicas\n");
    let stderr = text(&out.stderr);
    let expected = "error: timed out after 1s waiting for web\n  \
                    web: 1/3 running, 2 pending (0/1 nodes fit: 1 insufficient memory)\n";
    assert!(stderr.ends_with(expected), "{stderr}");
    assert!(
        stub.requests()
            .iter()
            .filter(|r| *r == "GET /api/v1/workloads/web")
            .count()
            >= 2,
        "polled more than once: {:?}",
        stub.requests()
    );
}

#[test]
fn server_flag_overrides_the_environment() {
    let stub = ProtocolStub::start(routes);
    let out = cli(
        "http://127.0.0.1:1",
        &[
            "--server", &stub.url, "workload", "get", "web", "-o", "yaml",
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let detail: WorkloadDetail = serde_norway::from_slice(&out.stdout).unwrap();
    assert_eq!(detail, web_detail());
}

#[test]
fn node_list_shows_every_node_and_warns_once_of_a_stale_answer() {
    let stub = ProtocolStub::start(routes);
    let out = cli(&stub.url, &["node", "list"], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "NAME     STATUS   CPU           MEMORY         INSTANCES\n\
         node-a   Ready    1200m/4000m   512MB/8192MB   1\n\
         node-b   Ready    0m/4000m      512MB/8192MB   0\n"
    );
    assert_eq!(
        text(&out.stderr),
        "warning: the answering daemon may be out of date: the store is unreachable since 12:00:03\n",
        "one warning for the two pages"
    );
    assert_eq!(
        stub.requests(),
        ["GET /api/v1/nodes", "GET /api/v1/nodes?continue=t1"]
    );
    // Answers that are not marked warn of nothing.
    let out = cli(&stub.url, &["workload", "list"], "");
    assert_eq!(text(&out.stderr), "");
}
