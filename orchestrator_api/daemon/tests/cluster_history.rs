//! A Jepsen-style history check of a cluster of three daemons on the simulated runtime.
//!
//! Client threads send random writes (create, scale, delete of workloads `w0`..`w7`) to random
//! live daemons over REST and record each one with its outcome, while a nemesis kills a daemon
//! (sometimes the leader) with SIGKILL and restarts it, round after round. Then, with every
//! daemon up and the clients stopped, the final state must agree with the history:
//!
//! * every acknowledged write is reflected: the final workload set and replica counts are ones
//!   the history allows (see [`acceptable`]);
//! * no instance id and no container shows twice;
//! * each workload has exactly its desired number of instances, all running, on live nodes
//!   (a simulated container dies with its daemon, so a running instance on a dead node would
//!   be a lie), and nothing is left of deleted workloads;
//! * every daemon answers the same.
//!
//! `CLUSTER_HISTORY_ROUNDS` sets the number of nemesis rounds (default 20);
//! `CLUSTER_HISTORY_SEED` the random seed (printed; random by default) of the clients and the
//! nemesis.

use orchestrator_testkit::cluster::TestCluster;
use orchestrator_testkit::daemon::http;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Workloads `w0`..`w{KEYS-1}`.
const KEYS: usize = 8;
/// Client threads.
const CLIENTS: usize = 3;
/// How long a write whose outcome is unknown may still take effect after its client saw the
/// error (a request in flight to etcd when its daemon was killed lands within milliseconds).
const UNKNOWN_SLACK: Duration = Duration::from_secs(2);
/// How long the cluster may take to converge once the nemesis stopped: a restarted member is
/// back within a lease TTL (2 s) and simulated containers start and stop at once, so it takes
/// well under a second when all is well. Kept below the leader's 40 s stop and removal
/// timeouts, so that waiting one out (a report nobody answers) fails.
const CONVERGE: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Write {
    Create(u32),
    Scale(u32),
    Delete,
}

impl Write {
    /// The key's value once this write took effect: its replica count, or `None` (absent).
    fn effect(self) -> Option<u32> {
        match self {
            Write::Create(r) | Write::Scale(r) => Some(r),
            Write::Delete => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Write::Create(_) => "create",
            Write::Scale(_) => "scale",
            Write::Delete => "delete",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    /// 2xx: it happened.
    Ack,
    /// 4xx (AlreadyExists, NotFound): it did not happen.
    Refused(u16),
    /// The connection was refused: the request never reached a daemon.
    NotSent,
    /// A broken connection or a 5xx: it may or may not have happened.
    Unknown(String),
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::Ack => "ack",
            Outcome::Refused(_) => "refused",
            Outcome::NotSent => "not-sent",
            Outcome::Unknown(_) => "unknown",
        }
    }
}

/// One write of the history; times are since the start of the history.
#[derive(Clone, Debug)]
struct Op {
    client: usize,
    key: usize,
    write: Write,
    invoked: Duration,
    completed: Duration,
    outcome: Outcome,
}

impl Op {
    /// Until when the write may take effect.
    fn window_end(&self) -> Duration {
        match self.outcome {
            Outcome::Unknown(_) => self.completed + UNKNOWN_SLACK,
            _ => self.completed,
        }
    }
}

/// The final values of `key` the history allows: the effects of the writes that may have
/// happened (acknowledged, or unknown) and that no acknowledged write surely followed (invoked
/// after they could last take effect); the initial absence if nothing was acknowledged. A
/// refused or unsent write changed nothing, and an unknown one that did not happen left the
/// value of a write before it, which is in the set already.
fn acceptable(history: &[Op], key: usize) -> BTreeSet<Option<u32>> {
    let ops: Vec<&Op> = history.iter().filter(|o| o.key == key).collect();
    let acked: Vec<&Op> = ops
        .iter()
        .copied()
        .filter(|o| o.outcome == Outcome::Ack)
        .collect();
    let mut values: BTreeSet<Option<u32>> = ops
        .iter()
        .filter(|o| matches!(o.outcome, Outcome::Ack | Outcome::Unknown(_)))
        .filter(|o| !acked.iter().any(|a| a.invoked > o.window_end()))
        .map(|o| o.write.effect())
        .collect();
    if acked.is_empty() {
        values.insert(None);
    }
    values
}

/// Checks a final state (name → replicas) against the history: `Err` says which key is wrong
/// and how its writes went.
fn check_against_history(history: &[Op], state: &BTreeMap<String, u32>) -> Result<(), String> {
    for name in state.keys() {
        let known = name
            .strip_prefix('w')
            .and_then(|k| k.parse::<usize>().ok())
            .is_some_and(|k| k < KEYS);
        if !known {
            return Err(format!("a workload nobody created: {name}"));
        }
    }
    for key in 0..KEYS {
        let actual = state.get(&format!("w{key}")).copied();
        let allowed = acceptable(history, key);
        if !allowed.contains(&actual) {
            let ops: Vec<String> = history
                .iter()
                .filter(|o| o.key == key && o.outcome != Outcome::Refused(404))
                .map(|o| {
                    format!(
                        "  c{} {:?} [{:.3}s..{:.3}s] {:?}",
                        o.client,
                        o.write,
                        o.invoked.as_secs_f64(),
                        o.completed.as_secs_f64(),
                        o.outcome
                    )
                })
                .collect();
            let tail = &ops[ops.len().saturating_sub(15)..];
            return Err(format!(
                "w{key} is {actual:?}, the history allows only {allowed:?}; its last writes:\n{}",
                tail.join("\n")
            ));
        }
    }
    Ok(())
}

fn workload(name: &str, replicas: u32) -> Value {
    json!({
        "name": name,
        "replicas": replicas,
        "containers": [{
            "name": "app",
            "image": "example/app:1",
            "resources": {"cpu_millicores": 50, "memory_mb": 16}
        }]
    })
}

/// Sends `write` of `key` to `addr` and classifies the answer.
fn send(addr: SocketAddr, key: usize, write: Write) -> Outcome {
    let name = format!("w{key}");
    let (method, path, body) = match write {
        Write::Create(r) => (
            "POST",
            "/api/v1/workloads".to_owned(),
            Some(workload(&name, r)),
        ),
        Write::Scale(r) => (
            "POST",
            format!("/api/v1/workloads/{name}/scale"),
            Some(json!({ "replicas": r })),
        ),
        Write::Delete => ("DELETE", format!("/api/v1/workloads/{name}"), None),
    };
    let bytes = body.map(|b| b.to_string().into_bytes());
    match http(
        addr,
        method,
        &path,
        bytes.as_deref().map(|b| ("application/json", b)),
    ) {
        Ok((status, _)) if (200..300).contains(&status) => Outcome::Ack,
        Ok((status, _)) if (400..500).contains(&status) => Outcome::Refused(status),
        Ok((status, body)) => Outcome::Unknown(format!("{status}: {body}")),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Outcome::NotSent,
        Err(e) => Outcome::Unknown(e.to_string()),
    }
}

/// A client: random writes to random live daemons until `stop`.
fn client(
    id: usize,
    live: Arc<Mutex<Vec<Option<SocketAddr>>>>,
    stop: Arc<AtomicBool>,
    start: Instant,
    seed: u64,
) -> Vec<Op> {
    let mut rng = fastrand::Rng::with_seed(seed.wrapping_add(1 + id as u64));
    let mut history = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let targets: Vec<SocketAddr> = live.lock().unwrap().iter().flatten().copied().collect();
        if targets.is_empty() {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        let addr = targets[rng.usize(..targets.len())];
        let key = rng.usize(..KEYS);
        let write = match rng.u32(..100) {
            0..40 => Write::Create(rng.u32(1..=4)),
            40..75 => Write::Scale(rng.u32(1..=4)),
            _ => Write::Delete,
        };
        let invoked = start.elapsed();
        let outcome = send(addr, key, write);
        history.push(Op {
            client: id,
            key,
            write,
            invoked,
            completed: start.elapsed(),
            outcome,
        });
        std::thread::sleep(Duration::from_millis(rng.u64(20..120)));
    }
    history
}

/// The final state as daemon `via` answers, checked on its own: workloads (name → replicas),
/// or why it is not (yet) what the history allows.
fn final_state(c: &TestCluster, via: usize, history: &[Op]) -> Result<(), String> {
    let page = c
        .get_json(via, "/api/v1/workloads")
        .ok_or("the workloads list does not answer")?;
    let items = page["items"].as_array().ok_or("no items")?;
    let mut by_name = BTreeMap::new();
    let mut by_id: HashMap<String, (String, u32)> = HashMap::new();
    for w in items {
        let def = &w["workload"];
        let name = def["name"].as_str().ok_or("a workload without a name")?;
        let replicas = def["replicas"].as_u64().ok_or("no replicas")? as u32;
        by_name.insert(name.to_owned(), replicas);
        by_id.insert(
            def["id"].as_str().ok_or("no id")?.to_owned(),
            (name.to_owned(), replicas),
        );
    }
    check_against_history(history, &by_name)?;

    let info = c.info(via).ok_or("cluster info does not answer")?;
    let live: HashSet<&str> = info["membership"]["members"]
        .as_array()
        .ok_or("no members")?
        .iter()
        .filter(|m| m["status"] == "Ready")
        .filter_map(|m| m["node"].as_str())
        .collect();
    if live.len() != c.len() {
        return Err(format!(
            "{} live members of {}: {live:?}",
            live.len(),
            c.len()
        ));
    }
    let instances = c
        .instances(via)
        .ok_or("the instances list does not answer")?;
    let mut ids = HashSet::new();
    let mut containers = HashMap::new();
    let mut running: HashMap<&str, u32> = HashMap::new();
    for i in &instances {
        let id = i["id"].as_str().ok_or("an instance without an id")?;
        if !ids.insert(id) {
            return Err(format!("instance {id} shows twice"));
        }
        for cid in i["container_ids"].as_array().into_iter().flatten() {
            let cid = cid.as_str().unwrap_or_default();
            if let Some(other) = containers.insert(cid, id) {
                return Err(format!("container {cid} claimed by {other} and {id}"));
            }
        }
        let workload = i["workload_id"].as_str().unwrap_or_default();
        let Some((name, _)) = by_id.get(workload) else {
            return Err(format!("instance {id} of a workload that is gone: {i}"));
        };
        if i["status"] != "Running" {
            return Err(format!(
                "{name}: instance {id} is {} ({})",
                i["status"], i["last_error"]
            ));
        }
        let node = i["node_id"].as_str().unwrap_or_default();
        if !live.contains(node) {
            return Err(format!(
                "{name}: instance {id} runs on {node}, not a live node"
            ));
        }
        *running.entry(workload).or_default() += 1;
    }
    for (wid, (name, replicas)) in &by_id {
        let n = running.get(wid.as_str()).copied().unwrap_or(0);
        if n != *replicas {
            return Err(format!("{name}: {n} running instead of {replicas}"));
        }
    }
    Ok(())
}

#[test]
fn acknowledged_writes_survive_kills_of_members_and_leaders() {
    let rounds: usize = std::env::var("CLUSTER_HISTORY_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("CLUSTER_HISTORY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("CLUSTER_HISTORY_SEED={seed}");
    let Some(mut c) = TestCluster::start(3) else {
        return;
    };
    let began = Instant::now();
    c.wait_for_leader(Duration::from_secs(20));
    let live: Arc<Mutex<Vec<Option<SocketAddr>>>> = Arc::new(Mutex::new(
        (0..c.len()).map(|i| Some(c.daemon(i).addr())).collect(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let (live, stop) = (live.clone(), stop.clone());
            std::thread::spawn(move || client(id, live, stop, start, seed))
        })
        .collect();

    // The nemesis: kill -9 a random daemon (every third round the leader, if one is agreed
    // on), leave it down 0.5–3 s, restart it.
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut leaders_seen = BTreeSet::new();
    let mut leader_kills = 0;
    for round in 0..rounds {
        let leader = c.leader();
        if let Some(l) = leader {
            leaders_seen.insert(c.node_name(l).unwrap_or_default());
        }
        let victim = match leader {
            Some(l) if round % 3 == 0 => {
                leader_kills += 1;
                l
            }
            _ => rng.usize(..c.len()),
        };
        live.lock().unwrap()[victim] = None;
        c.daemon_mut(victim).kill9();
        std::thread::sleep(Duration::from_millis(rng.u64(500..3000)));
        c.daemon_mut(victim).restart();
        live.lock().unwrap()[victim] = Some(c.daemon(victim).addr());
        std::thread::sleep(Duration::from_millis(rng.u64(200..800)));
    }
    stop.store(true, Ordering::Relaxed);
    let mut history: Vec<Op> = clients
        .into_iter()
        .flat_map(|t| t.join().expect("a client thread panicked"))
        .collect();
    history.sort_by_key(|o| o.invoked);
    let leader = c.wait_for_leader(Duration::from_secs(20));
    leaders_seen.insert(c.node_name(leader).unwrap_or_default());

    // The summary.
    let mut counts: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for o in &history {
        *counts
            .entry((o.write.name(), o.outcome.label()))
            .or_default() += 1;
    }
    let weak = (0..KEYS)
        .filter(|k| acceptable(&history, *k).len() > 1)
        .count();
    eprintln!(
        "history: {} writes by {CLIENTS} clients, {rounds} nemesis rounds ({leader_kills} of a \
         leader), leaders seen {leaders_seen:?}, {weak}/{KEYS} keys with more than one allowed \
         value, {:.1}s",
        history.len(),
        start.elapsed().as_secs_f64()
    );
    for ((write, outcome), n) in &counts {
        eprintln!("  {write:>6} {outcome:<8} {n}");
    }
    assert!(
        counts.get(&("create", "ack")).is_some_and(|n| *n > 0),
        "no create was acknowledged: {counts:?}"
    );

    // Convergence, then the check on every daemon.
    let converging = Instant::now();
    let deadline = converging + CONVERGE;
    let mut said = converging;
    for via in 0..c.len() {
        loop {
            match final_state(&c, via, &history) {
                Ok(()) => break,
                Err(why) if Instant::now() > deadline => panic!(
                    "daemon {via} did not converge to a state the history allows within \
                     {CONVERGE:?}: {why}"
                ),
                Err(why) => {
                    if said.elapsed() > Duration::from_secs(5) {
                        eprintln!("still converging after {:?}: {why}", converging.elapsed());
                        said = Instant::now();
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }
    eprintln!(
        "converged in {:.1}s and checked on {} daemons; {:.1}s in all",
        converging.elapsed().as_secs_f64(),
        c.len(),
        began.elapsed().as_secs_f64()
    );
}

/// The checker itself: it must catch a lost write and accept either value of an unknown one.
#[test]
fn the_history_model_catches_lost_writes() {
    let s = Duration::from_secs;
    let op = |key, write, invoked: u64, completed: u64, outcome| Op {
        client: 0,
        key,
        write,
        invoked: s(invoked),
        completed: s(completed),
        outcome,
    };
    let history = vec![
        op(0, Write::Create(2), 0, 1, Outcome::Ack),
        op(0, Write::Scale(3), 2, 3, Outcome::Ack),
        op(0, Write::Create(4), 4, 5, Outcome::Refused(409)),
        op(1, Write::Create(1), 0, 1, Outcome::Ack),
        op(1, Write::Delete, 10, 11, Outcome::Unknown("reset".into())),
        op(2, Write::Create(1), 0, 1, Outcome::NotSent),
    ];
    let state = |pairs: &[(&str, u32)]| -> BTreeMap<String, u32> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    };
    assert_eq!(
        check_against_history(&history, &state(&[("w0", 3), ("w1", 1)])),
        Ok(())
    );
    assert_eq!(
        check_against_history(&history, &state(&[("w0", 3)])),
        Ok(())
    );
    // The acknowledged scale lost, the acknowledged create lost, a write nobody made.
    assert!(check_against_history(&history, &state(&[("w0", 2)])).is_err());
    assert!(check_against_history(&history, &state(&[("w1", 1)])).is_err());
    assert!(check_against_history(&history, &state(&[("w0", 3), ("w2", 1)])).is_err());
    // Overlapping acknowledged writes: either order.
    let concurrent = vec![
        op(0, Write::Scale(1), 0, 5, Outcome::Ack),
        op(0, Write::Scale(2), 1, 2, Outcome::Ack),
    ];
    assert_eq!(
        acceptable(&concurrent, 0),
        BTreeSet::from([Some(1), Some(2)])
    );
}
