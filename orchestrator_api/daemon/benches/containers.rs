//! Real containers: how fast `orchestratord` (youki runtime) starts them, against youki itself.
//!
//! 1. **N containers**: a plain sequential shell loop of `youki create` + `youki start` on N
//!    ready-made bundles (rootfs copies of the test image, `sleep 3600`, host network, a cgroup
//!    each with the same limits the orchestrator sets), timed from the loop's start to its end; then one `POST /api/v1/workloads` of N
//!    replicas of the same image and command to a running `orchestratord`, timed until the API
//!    reports N running. Alternated `--runs` times; medians and their ratio are printed.
//! 2. **One container**: `--single` times, create a 1-replica workload and poll (every 2 ms)
//!    until it runs; p50/p90/max. The image is already on the node (pulled by a warm-up).
//!
//! Needs root, youki and the local registry with the test image (`./scripts/setup-oci.sh`).
//!
//! `cargo bench -p orchestratord --bench containers -- --count 100 --runs 3 --single 30`

mod common;

use common::arg;
use container_runtime_interface::oci::cli::Cli;
use orchestrator_testkit::Daemon;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Resources of every container, in both runs. The CPU quota matters: youki's container init
/// runs inside the cgroup, so a tiny quota (10 millicores: 1 ms per 100 ms) throttles the start
/// itself (~360 ms instead of ~40 ms for create + start here).
const CPU_MILLICORES: u64 = 100;
const MEMORY_MB: u64 = 16;

/// What `scripts/setup-oci.sh` set up.
struct Env {
    youki: PathBuf,
    image: String,
    rootfs: PathBuf,
}

impl Env {
    fn load() -> Env {
        let text = std::fs::read_to_string("/var/lib/orchestrator-oci/env")
            .expect("no /var/lib/orchestrator-oci/env: run ./scripts/setup-oci.sh");
        let var = |name: &str| {
            std::env::var(name).ok().unwrap_or_else(|| {
                text.lines()
                    .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                    .unwrap_or_else(|| panic!("{name} missing from the env file"))
                    .to_owned()
            })
        };
        Env {
            youki: var("ORCHESTRATOR_YOUKI").into(),
            image: var("ORCHESTRATOR_TEST_IMAGE"),
            rootfs: var("ORCHESTRATOR_TEST_ROOTFS").into(),
        }
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The raw loop: N bundles prepared (untimed), then `youki create` + `youki start` for each in
/// one bash loop (timed), then everything deleted (untimed). Returns the loop's duration.
fn raw_loop(env: &Env, dir: &Path, count: usize) -> Duration {
    let root = dir.join("raw-state");
    let bundles = dir.join("raw-bundles");
    std::fs::create_dir_all(&bundles).unwrap();
    let template = dir.join("template");
    std::fs::create_dir_all(&template).unwrap();
    if !template.join("config.json").exists() {
        run(Command::new(&env.youki).arg("spec").current_dir(&template));
    }
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(template.join("config.json")).unwrap()).unwrap();
    spec["process"]["args"] = serde_json::json!(["sleep", "3600"]);
    // The limits the orchestrator sets for `RESOURCES` (CPU quota, memory, pids).
    spec["linux"]["resources"] = serde_json::json!({
        "memory": {"limit": MEMORY_MB * 1024 * 1024},
        "cpu": {"quota": CPU_MILLICORES * 100, "period": 100_000},
        "pids": {"limit": 1024},
    });
    spec["process"]["terminal"] = false.into();
    spec["root"]["readonly"] = false.into();
    if let Some(ns) = spec["linux"]["namespaces"].as_array_mut() {
        ns.retain(|n| n["type"] != "network"); // host network, as the orchestrator's containers
    }
    let ids: Vec<String> = (0..count).map(|i| format!("raw-{i}")).collect();
    for id in &ids {
        let b = bundles.join(id);
        std::fs::create_dir_all(b.join("rootfs")).unwrap();
        run(Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", env.rootfs.display()))
            .arg(b.join("rootfs")));
        spec["linux"]["cgroupsPath"] = format!("/bench-raw/{id}").into();
        std::fs::write(b.join("config.json"), spec.to_string()).unwrap();
    }
    let script = format!(
        "set -e; for id in {ids}; do {y} --root {root} create --bundle {b}/$id $id </dev/null >/dev/null 2>&1; {y} --root {root} start $id; done",
        ids = ids.join(" "),
        y = env.youki.display(),
        root = root.display(),
        b = bundles.display(),
    );
    let started = Instant::now();
    run(Command::new("bash").arg("-c").arg(&script));
    let took = started.elapsed();
    // Untimed cleanup through the runtime's CLI wrapper, which retries youki's occasional
    // seal failure (the timed loop above is raw youki on purpose: it is the baseline).
    let cli = Cli::new(&env.youki, &root);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    for id in &ids {
        rt.block_on(cli.delete_force(id))
            .unwrap_or_else(|e| panic!("youki delete --force {id}: {e}"));
    }
    std::fs::remove_dir_all(&bundles).unwrap();
    let _ = std::fs::remove_dir_all(&root);
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let _ = std::fs::remove_dir(h.path().join("bench-raw"));
    }
    took
}

/// One HTTP/1.1 request on a fresh connection; the status and body.
fn http(server: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(server).expect("connect to orchestratord");
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {server}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn workload(image: &str, name: &str, replicas: usize) -> String {
    serde_json::json!({
        "name": name,
        "replicas": replicas,
        "containers": [{
            "name": "main",
            "image": image,
            "command": ["sleep", "3600"],
            "resources": {"cpu_millicores": CPU_MILLICORES, "memory_mb": MEMORY_MB},
        }],
    })
    .to_string()
}

/// Running replicas of the only workload, from `GET /api/v1/workloads`.
fn running(server: &str) -> u64 {
    let (status, body) = http(server, "GET", "/api/v1/workloads", None);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["items"][0]["replicas"]["running"].as_u64().unwrap_or(0)
}

fn instances_left(server: &str) -> usize {
    let (_, body) = http(server, "GET", "/api/v1/instances", None);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["items"].as_array().map_or(0, Vec::len)
}

/// Creates `replicas` replicas and returns the time until all run; then deletes them and
/// waits until they are gone (untimed).
fn through_orchestrator(server: &str, image: &str, name: &str, replicas: usize) -> Duration {
    let body = workload(image, name, replicas);
    let started = Instant::now();
    let (status, answer) = http(server, "POST", "/api/v1/workloads", Some(&body));
    assert_eq!(status, 201, "{answer}");
    let deadline = started + Duration::from_secs(300);
    while running(server) < replicas as u64 {
        assert!(Instant::now() < deadline, "not all running after 300 s");
        std::thread::sleep(Duration::from_millis(2));
    }
    let took = started.elapsed();
    let (status, answer) = http(server, "DELETE", &format!("/api/v1/workloads/{name}"), None);
    assert!(status == 200 || status == 202, "{status} {answer}");
    while instances_left(server) > 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
    took
}

/// The daemon under test (release build of this package), through the test kit: a free port,
/// readiness, and a kill when the bench ends or panics. Logs at `warn` (as a production node
/// would run), but for the one line that says where it listens.
fn start_daemon(env: &Env, dir: &Path) -> Daemon {
    Daemon::builder()
        .exe(env!("CARGO_BIN_EXE_orchestratord"))
        .args(["--node-name", "bench"])
        .arg("--runtime-binary")
        .arg(&env.youki)
        .args(["--cgroup-parent", "bench-orchestrator"])
        .args(["--cpu-millicores", "100000", "--memory-mb", "100000"])
        .data_dir(dir.join("data"))
        .env("RUST_LOG", "warn,orchestratord=info")
        .start()
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let count: usize = arg("--count", "100").parse().expect("--count");
    let runs: usize = arg("--runs", "3").parse().expect("--runs");
    let single: usize = arg("--single", "30").parse().expect("--single");
    let env = Env::load();
    let dir = tempfile::tempdir().unwrap();
    let daemon = start_daemon(&env, dir.path());
    let server = daemon.addr().to_string();

    // Warm-up: pulls the image onto the node.
    through_orchestrator(&server, &env.image, "warm-up", 1);

    let (mut raw, mut orch) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let r = raw_loop(&env, dir.path(), count);
        let o = through_orchestrator(&server, &env.image, "many", count);
        println!(
            "run {}: raw youki loop {} · orchestrator {} · ratio {:.2}",
            i + 1,
            ms(r),
            ms(o),
            o.as_secs_f64() / r.as_secs_f64()
        );
        raw.push(r);
        orch.push(o);
    }
    let (r, o) = (median(&mut raw), median(&mut orch));
    println!(
        "{count} containers, median of {runs}: raw youki loop {} · orchestrator {} · ratio {:.2} (target <= 1.2)",
        ms(r),
        ms(o),
        o.as_secs_f64() / r.as_secs_f64()
    );

    let mut one: Vec<Duration> = (0..single)
        .map(|_| through_orchestrator(&server, &env.image, "one", 1))
        .collect();
    one.sort();
    let pct = |p: f64| one[((one.len() as f64 * p) as usize).min(one.len() - 1)];
    println!(
        "one container create -> Running over {single} runs: p50 {} · p90 {} · max {} (target p50 <= 150 ms)",
        ms(pct(0.5)),
        ms(pct(0.9)),
        ms(*one.last().unwrap())
    );
}
