//! The faults of a cluster's store, through real `orchestratord` processes on one etcd (started
//! on loopback by the kit), on the simulated runtime: etcd down for a while, etcd restarted
//! empty, and a daemon started with a prefix that holds no cluster. See docs/cluster.md,
//! "Faults".

use orchestrator_testkit::cluster::{spread_web, TestCluster, LEASE_TTL_SECS};
use orchestrator_testkit::Daemon;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);
const STALE: &str = "x-orchestrator-stale";

/// The ids of the Running instances, when there are exactly `n`, spread over `nodes` nodes.
fn running(c: &TestCluster, via: usize, n: usize, nodes: usize) -> Option<HashSet<String>> {
    let all = c.instance_table(via)?;
    let running: Vec<_> = all.iter().filter(|(_, (_, s))| s == "Running").collect();
    let on: HashSet<&String> = running.iter().map(|(_, (node, _))| node).collect();
    (running.len() == n && all.len() == n && on.len() == nodes)
        .then(|| running.into_iter().map(|(id, _)| id.clone()).collect())
}

fn is_stale(d: &Daemon, path: &str) -> Option<bool> {
    let answer = d.get_with_headers(path).ok()?;
    assert_eq!(answer.status, 200, "GET {path}: {}", answer.body);
    Some(answer.header(STALE).is_some())
}

/// Every key in etcd (keys only), through etcd's HTTP gateway.
fn etcd_keys(c: &TestCluster) -> Vec<String> {
    let addr = c.etcd_url().trim_start_matches("http://").to_owned();
    let body = r#"{"key":"AA==","range_end":"AA==","keys_only":true}"#;
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "POST /v3/kv/range HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let json: Value = serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap();
    json["kvs"]
        .as_array()
        .map(|kvs| {
            kvs.iter()
                .filter_map(|kv| kv["key"].as_str())
                .map(|k| String::from_utf8(base64_decode(k)).unwrap())
                .collect()
        })
        .unwrap_or_default()
}

/// Standard base64 (etcd's gateway encodes keys so).
fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut bits, mut n) = (0u32, 0);
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = ALPHABET.iter().position(|a| *a == c).expect("base64") as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    out
}

/// Runs the daemon binary with `args` on `data_dir` until it exits; its status and stderr.
fn run_daemon(data_dir: &std::path::Path, args: &[String]) -> (std::process::ExitStatus, String) {
    let out = Command::new(orchestrator_testkit::bins::daemon_exe())
        .args([
            "--runtime",
            "simulated",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data_dir)
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn set_prefix(args: &mut [String], prefix: &str) {
    let at = args.iter().position(|a| a == "--etcd-prefix").unwrap() + 1;
    args[at] = prefix.into();
}

#[test]
fn an_etcd_outage_keeps_reads_refuses_writes_quickly_and_loses_nothing() {
    let Some(mut c) = TestCluster::start(3) else {
        return;
    };
    c.wait_for_leader(WAIT);
    let (status, body) = c
        .daemon(0)
        .send_json("POST", "/api/v1/workloads", Some(&spread_web(6)))
        .unwrap();
    assert_eq!(status, 201, "{body}");
    let mut before = HashSet::new();
    c.wait_for("6 replicas running on 3 nodes", WAIT, |c| {
        running(c, 0, 6, 3).is_some_and(|r| {
            before = r;
            true
        })
    });
    let placed = c.instance_table(0).unwrap();

    // The issue's outage is 30 s; 8 s is enough here: it is four times the kit's lease TTL
    // (2 s), so every lease is counted lost during it, as in a long outage. Nothing in the code
    // depends on the length.
    let outage = Duration::from_secs(8);
    c.etcd().stop();
    let stopped = Instant::now();

    // (a) Reads answer 200 from the last view, marked stale.
    for i in 0..3 {
        c.wait_for("reads marked stale", Duration::from_secs(10), |c| {
            is_stale(c.daemon(i), "/api/v1/workloads") == Some(true)
        });
        for path in ["/api/v1/workloads", "/api/v1/instances", "/api/v1/cluster"] {
            let answer = c.daemon(i).get_with_headers(path).unwrap();
            assert_eq!(answer.status, 200, "GET {path}: {}", answer.body);
            let reason = answer.header(STALE).unwrap_or_else(|| {
                panic!("GET {path} on daemon {i} is not marked stale: {answer:?}")
            });
            assert!(reason.contains("unreachable"), "{reason}");
        }
        let listed: Value =
            serde_json::from_str(&c.daemon(i).get("/api/v1/instances").unwrap().1).unwrap();
        assert_eq!(listed["items"].as_array().unwrap().len(), 6, "{listed}");
    }

    // (b) Writes fail fast with a 503 that says why.
    for (method, path, body) in [
        (
            "POST",
            "/api/v1/workloads",
            json!({"name": "api", "replicas": 1, "containers": [{"name": "api", "image": "example/api:1"}]}),
        ),
        (
            "POST",
            "/api/v1/workloads/web/scale",
            json!({"replicas": 7}),
        ),
    ] {
        let started = Instant::now();
        let (status, answer) = c.daemon(1).send_json(method, path, Some(&body)).unwrap();
        let took = started.elapsed();
        assert_eq!(status, 503, "{method} {path}: {answer}");
        let answer: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(answer["error"]["code"], "store_unavailable", "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| m.len() > 10),
            "{answer}"
        );
        assert!(
            took < Duration::from_secs(6),
            "{method} {path} took {took:?}"
        );
    }

    std::thread::sleep(outage.saturating_sub(stopped.elapsed()));
    c.etcd().start().unwrap();
    let back = Instant::now();

    // (d) Everything resumes by itself: no stale mark, a leader, writes succeed.
    for i in 0..3 {
        c.wait_for("reads no longer stale", WAIT, |c| {
            is_stale(c.daemon(i), "/api/v1/workloads") == Some(false)
                && is_stale(c.daemon(i), "/api/v1/cluster") == Some(false)
        });
    }
    eprintln!(
        "the stale mark was gone {:?} after etcd returned",
        back.elapsed()
    );
    c.wait_for_leader(WAIT);

    // (c) Nothing was lost or replaced: past the grace a new leader gives missing members
    // (one TTL + 2 s), the same six instances run on the same nodes.
    std::thread::sleep(Duration::from_secs(LEASE_TTL_SECS + 4).saturating_sub(back.elapsed()));
    c.wait_for("the same 6 instances running", WAIT, |c| {
        (0..3).all(|i| running(c, i, 6, 3).is_some_and(|r| r == before))
    });
    let after = c.instance_table(1).unwrap();
    assert_eq!(placed.len(), after.len());
    for (id, (node, _)) in &placed {
        assert_eq!(after.get(id).map(|(n, _)| n), Some(node), "{id} moved");
    }
    for i in 0..3 {
        let info = c.info(i).unwrap();
        let members = info["membership"]["members"].as_array().unwrap().clone();
        assert!(
            members.iter().all(|m| m["status"] == "Ready") && members.len() == 3,
            "{info}"
        );
    }

    // A scale made after the outage converges, with no instance twice.
    let scaled = Instant::now();
    let (status, body) = c
        .daemon(2)
        .send_json(
            "POST",
            "/api/v1/workloads/web/scale",
            Some(&json!({"replicas": 9})),
        )
        .unwrap();
    assert_eq!(status, 200, "{body}");
    c.wait_for("9 running over 3 nodes", WAIT, |c| {
        running(c, 0, 9, 3).is_some_and(|r| r.is_superset(&before))
    });
    eprintln!(
        "the scale converged {:?} after it was asked, {:?} after etcd returned",
        scaled.elapsed(),
        back.elapsed()
    );
}

#[test]
fn a_wiped_etcd_stops_every_daemon_and_nothing_is_recreated() {
    let Some(mut c) = TestCluster::start(2) else {
        return;
    };
    c.wait_for_leader(WAIT);
    let (status, body) = c
        .daemon(0)
        .send_json("POST", "/api/v1/workloads", Some(&spread_web(4)))
        .unwrap();
    assert_eq!(status, 201, "{body}");
    c.wait_for("4 replicas running on 2 nodes", WAIT, |c| {
        running(c, 0, 4, 2).is_some()
    });

    c.etcd().wipe_and_start().unwrap();
    let wiped = Instant::now();
    for i in 0..2 {
        let status = c
            .daemon_mut(i)
            .wait_exit(WAIT)
            .unwrap_or_else(|| panic!("daemon {i} still runs on a wiped etcd"));
        assert!(!status.success(), "daemon {i} exited with {status}");
        let log = c.daemon(i).log();
        let errors: Vec<&String> = log
            .iter()
            .filter(|l| l.contains("the store was reset or replaced"))
            .filter(|l| l.contains("\"ERROR\""))
            .collect();
        assert_eq!(errors.len(), 1, "{}", log.join("\n"));
        assert!(
            errors[0].contains("restore etcd from a backup")
                && errors[0].contains("start a new cluster with an empty data dir"),
            "{}",
            errors[0]
        );
    }
    eprintln!("both daemons stopped {:?} after the wipe", wiped.elapsed());

    // A restarted daemon remembers its cluster and refuses the empty store.
    let (status, stderr) = run_daemon(c.daemon(0).data_dir(), &c.member_args("n1"));
    assert!(!status.success());
    assert!(stderr.contains("holds no cluster"), "{stderr}");
    assert!(
        stderr.contains("the store was emptied or replaced"),
        "{stderr}"
    );

    // Nothing was re-created in the empty etcd: no cluster, no workload, no instance.
    let keys = etcd_keys(&c);
    let recreated: Vec<&String> = keys
        .iter()
        .filter(|k| {
            k.ends_with("/cluster/id")
                || k.contains("/workloads/")
                || k.contains("/instances/")
                || k.contains("/assignments/")
                || k.contains("/cluster/leader")
        })
        .collect();
    assert!(
        recreated.is_empty(),
        "re-created in the empty etcd: {keys:?}"
    );
}

#[test]
fn a_wrong_prefix_does_not_start_a_second_cluster_unless_asked() {
    let Some(mut c) = TestCluster::start(1) else {
        return;
    };
    c.wait_for_leader(WAIT);
    let cluster_id = c.info(0).unwrap()["membership"]["cluster_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // A fresh daemon under a prefix without a cluster is refused, told where the cluster is.
    let mut args = c.member_args("n2");
    set_prefix(&mut args, "typo");
    let fresh = tempfile::tempdir().unwrap();
    let (status, stderr) = run_daemon(fresh.path(), &args);
    assert!(!status.success());
    assert!(stderr.contains(&format!("{:?}", c.prefix())), "{stderr}");
    assert!(
        stderr.contains("--etcd-prefix") && stderr.contains("--new-cluster"),
        "{stderr}"
    );
    assert!(
        !etcd_keys(&c).iter().any(|k| k.starts_with("typo/")),
        "the refused daemon wrote under its prefix"
    );

    // Asked for (here through the environment), it starts another cluster there.
    let other = Daemon::builder()
        .args(["--runtime", "simulated"])
        .args(&args)
        .env("ORCHESTRATORD_NEW_CLUSTER", "true")
        .start();
    let info: Value = serde_json::from_str(&other.get("/api/v1/cluster").unwrap().1).unwrap();
    let other_id = info["membership"]["cluster_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(other_id, cluster_id);
    let other_dir = other.data_dir().to_owned();
    let i = c.add(other);
    c.daemon_mut(i).terminate();

    // A daemon that remembers one cluster is refused by a prefix holding another, even with
    // --new-cluster.
    let mut args = c.member_args("n2");
    args.push("--new-cluster".into());
    let (status, stderr) = run_daemon(&other_dir, &args);
    assert!(!status.success());
    assert!(
        stderr.contains(&format!("belongs to cluster {other_id}")) && stderr.contains(&cluster_id),
        "{stderr}"
    );
    c.wait_for("the first cluster still has its one member", WAIT, |c| {
        c.info(0).is_some_and(|i| {
            i["membership"]["members"]
                .as_array()
                .is_some_and(|m| m.len() == 1)
        })
    });
}
