//! A cluster of two daemons on REAL containers: each is a youki node of its own (data dir, youki
//! state root, cgroup parent) and both share one etcd. Replicas spread over the two; the logs of
//! a container on the other node come through the agent API; a killed member's replica is
//! replaced on the survivor, and the container it left running is removed by its agent when it
//! restarts.
//!
//! Without youki, the registry or etcd this prints why and passes, except with `CI=true`, where
//! that is a failure (see `orchestrator_testkit::prerequisite_missing`).

use orchestrator_testkit::cluster::TestCluster;
use orchestrator_testkit::{YoukiNode, YoukiSetup};
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);
/// What each replica prints first.
const MARKER: &str = "cluster-youki-replica-up";

fn sleeper(image: &str) -> Value {
    json!({
        "name": "sleeper",
        "replicas": 2,
        "placement": "spread",
        "restart_policy": "Always",
        "containers": [{
            "name": "sleeper",
            "image": image,
            // Ends on SIGTERM within a second (as pid 1 it has no default handler).
            "command": ["sh", "-c",
                format!("trap 'exit 0' TERM; echo {MARKER} on $HOSTNAME; while true; do sleep 1; done")],
            "resources": {"cpu_millicores": 100, "memory_mb": 32}
        }]
    })
}

/// Running instances of `sleeper` as daemon `via` answers: (instance id, node, container id).
fn running(c: &TestCluster, via: usize) -> Option<Vec<(String, String, String)>> {
    let mut out = Vec::new();
    for i in c.instances(via)? {
        if i["status"] != "Running" {
            return None;
        }
        out.push((
            i["id"].as_str()?.to_owned(),
            i["node_id"].as_str()?.to_owned(),
            i["container_ids"][0].as_str()?.to_owned(),
        ));
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Some(out)
}

#[test]
fn two_youki_daemons_spread_read_remote_logs_and_clean_up_after_a_kill() {
    let Some(setup) = YoukiSetup::detect() else {
        return;
    };
    // The nodes are declared before the cluster, so they are dropped after its daemons: their
    // drop deletes whatever youki still has, and no daemon starts it again.
    let n1 = YoukiNode::new(&setup, "y1");
    let n2 = YoukiNode::new(&setup, "y2");
    let Some(mut c) = TestCluster::etcd_only() else {
        return;
    };
    let d1 = n1.member_of(&c).start();
    c.add(d1);
    let d2 = n2.member_of(&c).start();
    c.add(d2);
    c.wait_for_leader(Duration::from_secs(20));

    // Two replicas, one per node, each seen by its node's youki.
    let (status, body) = c
        .daemon(0)
        .send_json("POST", "/api/v1/workloads", Some(&sleeper(&setup.image)))
        .unwrap();
    assert_eq!(status, 201, "{body}");
    let mut spread = Vec::new();
    c.wait_for("one running replica per node", WAIT, |c| {
        running(c, 0).is_some_and(|r| {
            spread = r;
            spread.len() == 2 && spread[0].1 == "y1" && spread[1].1 == "y2"
        })
    });
    let (on1, on2) = (spread[0].clone(), spread[1].clone());
    assert_eq!(n1.youki_list(), vec![on1.2.clone()]);
    assert_eq!(n2.youki_list(), vec![on2.2.clone()]);

    // The logs of the container on y2, through daemon 1 (and so y2's agent API).
    let path = format!("/api/v1/instances/{}/logs", on2.0);
    let mut last = String::new();
    c.wait_for("the remote container's log", WAIT, |c| {
        last = match c.daemon(0).get(&path) {
            Ok((200, body)) => body,
            other => format!("{other:?}"),
        };
        last.contains(MARKER)
    });
    assert!(last.contains(MARKER), "{last}");

    // kill -9 daemon 2: its container goes on running in youki, and its replica is started
    // again on y1 once its lease has expired.
    c.daemon_mut(1).kill9();
    c.wait_for("both replicas on y1", WAIT, |c| {
        running(c, 0).is_some_and(|r| r.len() == 2 && r.iter().all(|i| i.1 == "y1"))
    });
    c.wait_for("two containers in y1's youki", WAIT, |_| {
        n1.youki_list().len() == 2
    });
    assert_eq!(
        n2.youki_list(),
        vec![on2.2.clone()],
        "the killed daemon's container runs on"
    );

    // Daemon 2 restarts: its agent removes the container nothing assigns any more.
    c.daemon_mut(1).restart();
    c.wait_for("y2's stale container removed", WAIT, |_| {
        n2.youki_list().is_empty() && n2.bundles().is_empty()
    });
    let now = running(&c, 0).expect("two running replicas");
    assert_eq!(now.len(), 2, "{now:?}");
    assert!(now.iter().all(|i| i.1 == "y1"), "{now:?}");
    let mut in_youki = n1.youki_list();
    in_youki.sort();
    let mut expected: Vec<String> = now.iter().map(|i| i.2.clone()).collect();
    expected.sort();
    assert_eq!(
        in_youki, expected,
        "youki runs exactly the running replicas"
    );
    assert_eq!(running(&c, 1), Some(now), "both daemons answer the same");

    // Delete: nothing left in youki, in the bundles or in the cgroups of either node.
    let (status, body) = c
        .daemon(1)
        .send_json("DELETE", "/api/v1/workloads/sleeper", None)
        .unwrap();
    assert!((200..300).contains(&status), "{status} {body}");
    c.wait_for("no instances", WAIT, |c| {
        c.instances(0).is_some_and(|i| i.is_empty())
    });
    for n in [&n1, &n2] {
        c.wait_for("no containers nor bundles", WAIT, |_| {
            n.youki_list().is_empty() && n.bundles().is_empty()
        });
        assert!(n.cgroups().is_empty(), "{:?}", n.cgroups());
    }
    c.daemon_mut(1).terminate();
    c.daemon_mut(0).terminate();
}
