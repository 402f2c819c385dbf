//! `termination_grace_seconds` with REAL containers: a container that ignores SIGTERM is killed
//! once its workload's grace has passed, not after the daemon's default (10 s); on scale down
//! and on delete.
//!
//! Without youki or the registry this prints why and passes, except with `CI=true`, where that
//! is a failure (see `orchestrator_testkit::prerequisite_missing`).

use orchestrator_testkit::{Daemon, YoukiNode, YoukiSetup};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A workload whose containers ignore SIGTERM (as pid 1 with a handler that does nothing).
fn stubborn(image: &str, replicas: u32) -> Value {
    json!({
        "name": "stubborn",
        "replicas": replicas,
        "termination_grace_seconds": 1,
        "containers": [{
            "name": "main",
            "image": image,
            "command": ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"],
            "resources": {"cpu_millicores": 100, "memory_mb": 32}
        }]
    })
}

fn running(d: &Daemon) -> u64 {
    let (status, body) = d.get("/api/v1/workloads/stubborn").unwrap();
    assert_eq!(status, 200, "{body}");
    let view: Value = serde_json::from_str(&body).unwrap();
    view["replicas"]["running"].as_u64().unwrap_or(0)
}

/// Waits until `done` holds (polling), panicking with `what` after 60 s; the time it took.
fn until(what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(60), "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}

#[test]
fn containers_that_ignore_sigterm_are_killed_after_the_workload_s_grace() {
    let Some(setup) = YoukiSetup::detect() else {
        return;
    };
    let node = YoukiNode::new(&setup, "grace");
    let d = node.start();
    let (status, body) = d
        .send_json(
            "POST",
            "/api/v1/workloads",
            Some(&stubborn(&setup.image, 2)),
        )
        .unwrap();
    assert_eq!(status, 201, "{body}");
    until("2 replicas running", || running(&d) == 2);
    assert_eq!(node.youki_list().len(), 2);

    // Scale down to 1: one container is stopped with the workload's grace.
    let (status, body) = d
        .send_json(
            "POST",
            "/api/v1/workloads/stubborn/scale",
            Some(&json!({"replicas": 1})),
        )
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let scaled = until("one container left", || node.youki_list().len() == 1);

    // Delete: the last one too, although the definition is gone by then.
    let (status, body) = d
        .send_json("DELETE", "/api/v1/workloads/stubborn", None)
        .unwrap();
    assert!(status == 200 || status == 204, "{status} {body}");
    let deleted = until("no container left", || node.youki_list().is_empty());

    println!("stopped after {scaled:?} (scale down) and {deleted:?} (delete)");
    for took in [scaled, deleted] {
        // SIGTERM was ignored, so the kill came after the grace (1 s) ...
        assert!(took >= Duration::from_millis(900), "{took:?}");
        // ... and well before the daemon's default grace (10 s) would have ended.
        assert!(took < Duration::from_secs(8), "{took:?}");
    }
}
