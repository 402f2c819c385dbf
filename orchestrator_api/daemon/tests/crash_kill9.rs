//! Crash safety on REAL containers: the daemon is killed with SIGKILL at random moments under a
//! stream of API writes (creates, scales, deletes) while some containers keep exiting by
//! themselves, and restarted on the same data dir, `ORCHESTRATOR_CRASH_ROUNDS` times (default
//! 3; the benchmark runs 100).
//!
//! After each kill, before the restart, the redb file must pass `check_integrity`. After each
//! restart:
//! * every acknowledged write is there: a created workload exists unless an acknowledged delete
//!   followed, the last acknowledged scale holds, an acknowledged delete is gone (the one write
//!   in flight at the kill may have happened or not: both are accepted);
//! * the cluster converges (polled, with a deadline): each workload has exactly its replicas
//!   (no duplicate instance), the long-running ones all running in youki; every container youki
//!   knows belongs to a stored instance (no orphan); every bundle directory and container
//!   cgroup belongs to a stored instance's container (no leak).
//!
//! At the end every workload is deleted and nothing may be left (containers, bundles,
//! cgroups). The youki node's drop removes whatever is left even when the test fails.
//!
//! `ORCHESTRATOR_CRASH_SEED` replays a run (the seed is printed). Without youki or the
//! registry this prints why and passes, except with `CI=true`, where that is a failure.

use container_runtime_interface::oci::cli::Cli;
use orchestrator_testkit::daemon::http;
use orchestrator_testkit::{Daemon, YoukiNode, YoukiSetup};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The workloads the writer plays with: long-running sleepers, and one whose containers keep
/// exiting (non-zero, restarted on failure).
const NAMES: [&str; 4] = ["svc-a", "svc-b", "svc-c", "crasher"];
/// Largest replica count the writer asks for.
const MAX_REPLICAS: u32 = 3;
/// How long a round may take to converge after the restart.
const CONVERGE: Duration = Duration::from_secs(90);
/// How long a converged state must hold to count.
const STABLE: Duration = Duration::from_secs(2);

fn crashes(name: &str) -> bool {
    name.starts_with("crash")
}

fn definition(image: &str, name: &str, replicas: u32) -> Value {
    let (command, policy) = if crashes(name) {
        ("sleep 0.$RANDOM; exit 1", "OnFailure")
    } else {
        // Ends on SIGTERM within a second (as pid 1 it has no default handler).
        ("trap 'exit 0' TERM; while true; do sleep 1; done", "Always")
    };
    json!({
        "name": name,
        "replicas": replicas,
        "restart_policy": policy,
        "containers": [{
            "name": "main",
            "image": image,
            "command": ["sh", "-c", command],
            "resources": {"cpu_millicores": 100, "memory_mb": 32}
        }]
    })
}

/// What the writer knows: the state of each name (None: absent; Some(r): r replicas) as of its
/// last acknowledged write, and the one write whose outcome is unknown (sent, not answered).
#[derive(Debug, Default)]
struct Ledger {
    state: BTreeMap<String, Option<u32>>,
    in_doubt: Option<(String, Option<u32>)>,
    acked: u64,
    /// Answers that contradict the ledger (a 404 for a name it holds, a 409 for one it does
    /// not): an acknowledged write lost, or a write nobody acknowledged.
    contradictions: Vec<String>,
}

/// One round's writes, at `addr`, until the daemon stops answering.
fn write_stream(addr: SocketAddr, image: &str, mut ledger: Ledger, seed: u64) -> Ledger {
    let mut rng = fastrand::Rng::with_seed(seed);
    loop {
        let name = NAMES[rng.usize(..NAMES.len())];
        let now = ledger.state.get(name).copied().flatten();
        let (method, path, body, expect, after) = match now {
            None => {
                let r = rng.u32(1..=2);
                let body = definition(image, name, r);
                (
                    "POST",
                    "/api/v1/workloads".to_owned(),
                    Some(body),
                    201,
                    Some(r),
                )
            }
            Some(_) if rng.u8(..4) == 0 => (
                "DELETE",
                format!("/api/v1/workloads/{name}"),
                None,
                200,
                None,
            ),
            Some(_) => {
                let r = rng.u32(0..=MAX_REPLICAS);
                (
                    "POST",
                    format!("/api/v1/workloads/{name}/scale"),
                    Some(json!({ "replicas": r })),
                    200,
                    Some(r),
                )
            }
        };
        let bytes = body.map(|b| b.to_string().into_bytes());
        let answer = http(
            addr,
            method,
            &path,
            bytes.as_deref().map(|b| ("application/json", b)),
        );
        match answer {
            Ok((status, _)) if status == expect => {
                ledger.state.insert(name.to_owned(), after);
                ledger.acked += 1;
            }
            Ok((status @ (404 | 409), body)) => {
                ledger.contradictions.push(format!(
                    "{method} {path} answered {status} while the ledger says {name} is {now:?}: {body}"
                ));
            }
            Ok((status, body)) if (400..500).contains(&status) => {
                ledger
                    .contradictions
                    .push(format!("{method} {path} answered {status}: {body}"));
            }
            // No answer (the kill) or a server error: it may or may not have happened.
            _ => {
                ledger.in_doubt = Some((name.to_owned(), after));
                return ledger;
            }
        }
        std::thread::sleep(Duration::from_millis(rng.u64(10..120)));
    }
}

/// `GET path` as JSON, or why not.
fn get_json(addr: SocketAddr, path: &str) -> Result<Value, String> {
    match http(addr, "GET", path, None) {
        Ok((200, body)) => serde_json::from_str(&body).map_err(|e| format!("GET {path}: {e}")),
        Ok((status, body)) => Err(format!("GET {path}: {status} {body}")),
        Err(e) => Err(format!("GET {path}: {e}")),
    }
}

/// Checks the acknowledged writes against the store and settles the one in doubt; the
/// violations found.
fn check_acknowledged(addr: SocketAddr, ledger: &mut Ledger) -> Vec<String> {
    let mut violations = std::mem::take(&mut ledger.contradictions);
    let in_doubt = ledger.in_doubt.take();
    for name in NAMES {
        let path = format!("/api/v1/workloads/{name}");
        let actual = match http(addr, "GET", &path, None) {
            Ok((404, _)) => None,
            Ok((200, body)) => {
                let v: Value = serde_json::from_str(&body).unwrap_or_default();
                match v["workload"]["replicas"].as_u64() {
                    Some(r) => Some(r as u32),
                    None => {
                        violations.push(format!("GET {path}: no replicas in {body}"));
                        continue;
                    }
                }
            }
            other => {
                violations.push(format!("GET {path}: {other:?}"));
                continue;
            }
        };
        let acked = ledger.state.get(name).copied().flatten();
        let doubt = in_doubt
            .as_ref()
            .filter(|(n, _)| n == name)
            .map(|(_, s)| *s);
        if actual != acked && Some(actual) != doubt {
            violations.push(format!(
                "{name}: acknowledged {acked:?}, in doubt {doubt:?}, but the store has {actual:?}"
            ));
        }
        ledger.state.insert(name.to_owned(), actual);
    }
    violations
}

/// Why the node has not converged to `ledger` (empty: it has).
fn convergence_problems(node: &YoukiNode, addr: SocketAddr, ledger: &Ledger) -> Vec<String> {
    let mut problems = Vec::new();
    let workloads = match get_json(addr, "/api/v1/workloads") {
        Ok(v) => v,
        Err(e) => return vec![e],
    };
    let instances = match get_json(addr, "/api/v1/instances") {
        Ok(v) => v,
        Err(e) => return vec![e],
    };
    // workload id -> (name, replicas)
    let mut by_id: BTreeMap<String, (String, u64)> = BTreeMap::new();
    for w in workloads["items"].as_array().into_iter().flatten() {
        let w = &w["workload"];
        by_id.insert(
            w["id"].as_str().unwrap_or_default().to_owned(),
            (
                w["name"].as_str().unwrap_or_default().to_owned(),
                w["replicas"].as_u64().unwrap_or_default(),
            ),
        );
    }
    let listed: BTreeSet<&str> = by_id.values().map(|(n, _)| n.as_str()).collect();
    let expected: BTreeSet<&str> = ledger
        .state
        .iter()
        .filter(|(_, s)| s.is_some())
        .map(|(n, _)| n.as_str())
        .collect();
    if listed != expected {
        problems.push(format!("workloads {listed:?}, expected {expected:?}"));
    }

    let youki: BTreeSet<String> = match node.try_youki_list() {
        Ok(ids) => ids.into_iter().collect(),
        Err(e) => return vec![format!("youki list: {e}")],
    };
    // container id -> owning workload name; instances per workload.
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    let mut per_workload: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for i in instances["items"].as_array().into_iter().flatten() {
        let wid = i["workload_id"].as_str().unwrap_or_default();
        let Some((name, _)) = by_id.get(wid) else {
            problems.push(format!(
                "instance {} of no workload ({wid}), status {}",
                i["id"], i["status"]
            ));
            continue;
        };
        per_workload.entry(name.clone()).or_default().push(i);
        let containers = i["container_ids"].as_array().cloned().unwrap_or_default();
        if containers.len() > 1 {
            problems.push(format!(
                "instance {} has {} containers",
                i["id"],
                containers.len()
            ));
        }
        for c in containers {
            let c = c.as_str().unwrap_or_default().to_owned();
            if let Some(other) = owner.insert(c.clone(), name.clone()) {
                problems.push(format!("container {c} claimed by {other} and {name}"));
            }
        }
    }
    for (name, replicas) in by_id.values() {
        let mine = per_workload.get(name).cloned().unwrap_or_default();
        if mine.len() as u64 != *replicas {
            problems.push(format!(
                "{name}: {} instances for {replicas} replicas",
                mine.len()
            ));
        }
        let in_youki = youki.iter().filter(|c| owner.get(*c) == Some(name)).count() as u64;
        if crashes(name) {
            // Between its exits and restarts a replica may have no container at all.
            if in_youki > *replicas {
                problems.push(format!(
                    "{name}: {in_youki} containers in youki for {replicas} replicas"
                ));
            }
            continue;
        }
        let running = mine.iter().filter(|i| i["status"] == "Running").count() as u64;
        if running != *replicas {
            problems.push(format!("{name}: {running} running of {replicas}"));
        }
        if in_youki != *replicas {
            problems.push(format!(
                "{name}: {in_youki} containers in youki for {replicas} replicas"
            ));
        }
    }
    for c in &youki {
        if !owner.contains_key(c) {
            problems.push(format!("orphaned youki container {c}"));
        }
    }
    for b in node.bundles() {
        if !owner.contains_key(&b) {
            problems.push(format!("leaked bundle {b}"));
        }
    }
    for dir in node.cgroups() {
        let id = Path::new(&dir)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !owner.contains_key(&id) {
            problems.push(format!("leaked cgroup {dir}"));
        }
    }
    problems
}

/// What a kill left half done, seen before the restart: containers the runtime created but
/// the daemon never started, and bundles of creates cut short (no `config.json`, or unknown to
/// youki). The restarted daemon must clean both up; counted to show the kills hit those windows.
#[derive(Debug, Default, Clone, Copy)]
struct HalfDone {
    unstarted: usize,
    cut_short: usize,
}

fn half_done(node: &YoukiNode, cli: &Cli, rt: &tokio::runtime::Runtime) -> HalfDone {
    let mut found = HalfDone::default();
    let known: BTreeSet<String> = node
        .try_youki_list()
        .unwrap_or_default()
        .into_iter()
        .collect();
    for id in &known {
        if let Ok(Some(state)) = rt.block_on(cli.state(id)) {
            if state.status == "created" || state.status == "creating" {
                found.unstarted += 1;
            }
        }
    }
    let bundles = node.data_dir().join("oci/bundles");
    for b in node.bundles() {
        if !bundles.join(&b).join("config.json").is_file() || !known.contains(&b) {
            found.cut_short += 1;
        }
    }
    found
}

/// Opens the (unlocked: the daemon is dead) redb file and checks it; a violation if any.
fn check_redb(data_dir: &Path) -> Option<String> {
    let path = data_dir.join("state.redb");
    let mut db = match redb::Database::open(&path) {
        Ok(db) => db,
        Err(e) => return Some(format!("redb open {}: {e}", path.display())),
    };
    match db.check_integrity() {
        Ok(true) => None,
        Ok(false) => Some("redb check_integrity: failed, repaired".into()),
        Err(e) => Some(format!("redb check_integrity: {e}")),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[test]
fn kill_9_under_writes_loses_nothing_and_leaks_nothing() {
    let Some(setup) = YoukiSetup::detect() else {
        return;
    };
    let rounds: usize = std::env::var("ORCHESTRATOR_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let seed: u64 = std::env::var("ORCHESTRATOR_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    println!("crash_kill9: {rounds} rounds, seed {seed} (ORCHESTRATOR_CRASH_SEED replays it)");
    let mut rng = fastrand::Rng::with_seed(seed);

    // The node is declared before the daemon, so it is dropped after it: its drop deletes
    // whatever youki still has and the cgroups, even when an assertion failed.
    let node = YoukiNode::new(&setup, "crash");
    let mut daemon: Daemon = node.start();
    let started = Instant::now();
    let mut ledger = Ledger::default();
    let mut violations: Vec<String> = Vec::new();
    let mut convergence: Vec<Duration> = Vec::new();
    let cli = Cli::new(&setup.youki, node.data_dir().join("oci/state"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime for youki state");
    let mut half = HalfDone::default();

    for round in 1..=rounds {
        let addr = daemon.addr();
        let image = setup.image.clone();
        let writer_seed = rng.u64(..);
        let writer = std::thread::spawn(move || write_stream(addr, &image, ledger, writer_seed));
        let delay = Duration::from_millis(rng.u64(200..3000));
        std::thread::sleep(delay);
        daemon.kill9();
        ledger = writer.join().expect("the writer thread");
        let mut found = Vec::new();
        if let Some(v) = check_redb(&node.data_dir()) {
            found.push(v);
        }

        let left = half_done(&node, &cli, &rt);
        half.unstarted += left.unstarted;
        half.cut_short += left.cut_short;

        daemon.restart();
        let restarted = Instant::now();
        found.extend(check_acknowledged(daemon.addr(), &mut ledger));
        let deadline = restarted + CONVERGE;
        // Converged: no problem in every poll for STABLE (a listing taken before the daemon
        // acted on what it found could look right by chance); the time is the first such poll.
        let mut clean_since: Option<Duration> = None;
        let converged = loop {
            let problems = convergence_problems(&node, daemon.addr(), &ledger);
            if problems.is_empty() {
                let since = *clean_since.get_or_insert(restarted.elapsed());
                if restarted.elapsed() - since >= STABLE {
                    break since;
                }
            } else {
                clean_since = None;
            }
            if Instant::now() > deadline {
                found.extend(
                    problems
                        .into_iter()
                        .map(|p| format!("not converged in {CONVERGE:?}: {p}")),
                );
                break restarted.elapsed();
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        convergence.push(converged);
        println!(
            "round {round}/{rounds}: killed after {delay:?} leaving {left:?}, acked writes so \
             far {}, state {:?}, converged in {:.1}s, violations {}",
            ledger.acked,
            ledger.state,
            converged.as_secs_f64(),
            found.len()
        );
        for v in &found {
            println!("  VIOLATION (round {round}): {v}");
        }
        violations.extend(found.into_iter().map(|v| format!("round {round}: {v}")));
    }

    // The end: delete everything; nothing may be left.
    for name in NAMES {
        if ledger.state.get(name).copied().flatten().is_some() {
            let (status, body) = daemon
                .send_json("DELETE", &format!("/api/v1/workloads/{name}"), None)
                .expect("the daemon answers");
            assert_eq!(status, 200, "DELETE {name}: {body}");
            ledger.state.insert(name.to_owned(), None);
        }
    }
    let deadline = Instant::now() + CONVERGE;
    loop {
        let left: Vec<String> = node
            .try_youki_list()
            .unwrap_or_else(|e| vec![format!("youki list: {e}")])
            .into_iter()
            .map(|c| format!("container {c}"))
            .chain(node.bundles().into_iter().map(|b| format!("bundle {b}")))
            .chain(node.cgroups().into_iter().map(|c| format!("cgroup {c}")))
            .collect();
        if left.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            violations.push(format!("left after deleting everything: {left:?}"));
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    daemon.terminate();
    if let Some(v) = check_redb(&node.data_dir()) {
        violations.push(format!("after the graceful stop: {v}"));
    }

    convergence.sort();
    println!(
        "crash_kill9 summary: seed {seed}, {rounds} rounds in {:.0}s, {} acknowledged writes, \
         {} violations; convergence median {:.1}s, p95 {:.1}s, max {:.1}s; the kills left \
         {} containers created but never started and {} bundles cut short",
        started.elapsed().as_secs_f64(),
        ledger.acked,
        violations.len(),
        percentile(&convergence, 0.5).as_secs_f64(),
        percentile(&convergence, 0.95).as_secs_f64(),
        convergence
            .last()
            .copied()
            .unwrap_or_default()
            .as_secs_f64(),
        half.unstarted,
        half.cut_short,
    );
    assert!(
        violations.is_empty(),
        "{} violations (seed {seed}):\n{}\nthe daemon's last log lines:\n{}",
        violations.len(),
        violations.join("\n"),
        daemon.log().join("\n")
    );
}
