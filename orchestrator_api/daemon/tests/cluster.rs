//! Clusters of real `orchestratord` processes on one etcd (started on loopback by the kit), on
//! the simulated runtime: placement across the members, kill -9 of a member and of the leader,
//! and rejoining.

use orchestrator_testkit::cluster::{spread_web, TestCluster, LEASE_TTL_SECS};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// Running instances per node, as daemon `via` answers (an instance listed twice fails).
fn running_per_node(c: &TestCluster, via: usize) -> Option<BTreeMap<String, usize>> {
    let mut per_node = BTreeMap::new();
    for (node, status) in c.instance_table(via)?.into_values() {
        if status == "Running" {
            *per_node.entry(node).or_default() += 1;
        }
    }
    Some(per_node)
}

#[test]
fn three_daemons_share_work_survive_kills_and_rejoin() {
    let Some(mut c) = TestCluster::start(3) else {
        return;
    };
    c.wait_for_leader(WAIT);

    // Created through daemon 2, spread over the three nodes, seen by every daemon.
    let (status, body) = c
        .daemon(1)
        .send_json("POST", "/api/v1/workloads", Some(&spread_web(6)))
        .unwrap();
    assert_eq!(status, 201, "{body}");
    for via in 0..3 {
        c.wait_for("6 replicas, 2 per node", WAIT, |c| {
            running_per_node(c, via).is_some_and(|m| m.len() == 3 && m.values().all(|n| *n == 2))
        });
    }

    // kill -9 a member that does not lead: its replicas run elsewhere once its lease expires.
    let leader = c.wait_for_leader(WAIT);
    let victim = (0..3).find(|i| *i != leader).unwrap();
    let victim_node = c.node_name(victim).unwrap();
    c.daemon_mut(victim).kill9();
    c.wait_for("the killed member's replicas replaced", WAIT, |c| {
        running_per_node(c, leader)
            .is_some_and(|m| m.values().sum::<usize>() == 6 && !m.contains_key(&victim_node))
    });
    let info = c.info(leader).unwrap();
    let down: Vec<&Value> = info["membership"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["status"] == "Down")
        .collect();
    assert_eq!(down.len(), 1, "{info}");
    assert_eq!(down[0]["node"], victim_node.as_str());

    // kill -9 the leader: the last one takes over within the lease TTL and keeps 6 running.
    let survivor = (0..3).find(|i| *i != leader && *i != victim).unwrap();
    c.daemon_mut(leader).kill9();
    c.wait_for(
        "the survivor leads",
        Duration::from_secs(LEASE_TTL_SECS + 10),
        |c| c.leader() == Some(survivor),
    );
    c.wait_for("6 running on the survivor", WAIT, |c| {
        running_per_node(c, survivor)
            .is_some_and(|m| m.len() == 1 && m.values().sum::<usize>() == 6)
    });

    // The killed daemons restart and rejoin; scaling spreads over them again.
    c.daemon_mut(victim).restart();
    c.daemon_mut(leader).restart();
    c.wait_for("three live members", WAIT, |c| {
        c.info(survivor).is_some_and(|i| {
            i["membership"]["members"]
                .as_array()
                .is_some_and(|m| m.iter().filter(|m| m["status"] == "Ready").count() == 3)
        })
    });
    let (status, body) = c
        .daemon(victim)
        .send_json(
            "POST",
            "/api/v1/workloads/web/scale",
            Some(&json!({"replicas": 9})),
        )
        .unwrap();
    assert_eq!(status, 200, "{body}");
    c.wait_for("9 running over three nodes", WAIT, |c| {
        running_per_node(c, 0).is_some_and(|m| m.values().sum::<usize>() == 9 && m.len() == 3)
    });
}

#[test]
fn a_daemon_with_a_wrong_token_does_not_join_and_says_why() {
    let Some(c) = TestCluster::start(1) else {
        return;
    };
    let mut args = c.member_args("intruder");
    let token = args.iter().position(|a| a == "--cluster-token").unwrap() + 1;
    args[token] = "not-the-token".into();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(orchestrator_testkit::bins::daemon_exe())
        .args([
            "--runtime",
            "simulated",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .args(&args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the cluster token does not match"),
        "{stderr}"
    );
    c.wait_for("the one member listed", WAIT, |c| {
        c.info(0).is_some_and(|i| {
            i["membership"]["members"]
                .as_array()
                .is_some_and(|m| m.len() == 1)
        })
    });
}
