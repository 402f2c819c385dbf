//! Zero-downtime updates with REAL containers: a busybox httpd workload (dynamic host ports) with
//! an HTTP readiness probe is updated while a client, every 50 ms, asks the API for the
//! workload's ready instances and requests one of them: no request fails, and the answers
//! switch from the old body to the new. Then an update to a command that exits at once rolls
//! back by itself (progress deadline), and `rollout undo` returns to the first revision.
//!
//! Without youki or the registry this prints why and passes, except with `CI=true`, where that
//! is a failure (see `orchestrator_testkit::prerequisite_missing`).

use orchestrator_testkit::daemon::http;
use orchestrator_testkit::{Daemon, YoukiNode, YoukiSetup};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The workload, serving `body` (or running `command` instead when given).
fn web(image: &str, body: &str, command: Option<&str>) -> Value {
    let serve = format!(
        "mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p \"$PORT\" -h /www"
    );
    json!({
        "name": "web",
        "replicas": 3,
        "termination_grace_seconds": 2,
        "pre_stop_seconds": 1,
        "strategy": {
            "max_surge": 1,
            "max_unavailable": 0,
            "progress_deadline_seconds": 8
        },
        "containers": [{
            "name": "httpd",
            "image": image,
            "command": ["sh", "-c", command.unwrap_or(&serve)],
            "ports": [{"container_port": 8080, "host_port": 0}],
            "readiness_probe": {"http": {"path": "/index.html", "port": 8080}, "period_seconds": 1},
            "resources": {"cpu_millicores": 100, "memory_mb": 32}
        }]
    })
}

fn get_json(d: &Daemon, path: &str) -> Value {
    let (status, body) = d.get(path).unwrap();
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// The host ports of the instances the API lists as ready.
fn ready_ports(addr: SocketAddr) -> Vec<u16> {
    let Ok((200, body)) = http(addr, "GET", "/api/v1/instances?workload=web", None) else {
        return Vec::new();
    };
    let list: Value = serde_json::from_str(&body).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["ready"] == json!(true))
        .filter_map(|i| i["ports"][0]["host_port"].as_u64())
        .map(|p| p as u16)
        .collect()
}

/// Waits until `done` holds (polling), panicking with `what` after `limit`.
fn until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn rollout_complete_at(d: &Daemon, revision: u64) -> bool {
    let r = get_json(d, "/api/v1/workloads/web/rollout");
    r["complete"] == json!(true) && r["revision"] == json!(revision)
}

/// What the client saw: answers per body, and the failed requests with why.
#[derive(Debug, Default)]
struct Seen {
    bodies: Vec<String>,
    failures: Vec<String>,
}

#[test]
fn an_update_under_traffic_loses_no_request_a_broken_one_rolls_back_and_undo_works() {
    let Some(setup) = YoukiSetup::detect() else {
        return;
    };
    let node = YoukiNode::new(&setup, "rollout");
    let d = node.start();
    let (status, body) = d
        .send_json(
            "POST",
            "/api/v1/workloads",
            Some(&web(&setup.image, "v1", None)),
        )
        .unwrap();
    assert_eq!(status, 201, "{body}");
    until("3 ready replicas", Duration::from_secs(60), || {
        ready_ports(d.addr()).len() == 3
    });

    // The client: every 50 ms, a ready instance from the API, then a request to it.
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (stop, api) = (stop.clone(), d.addr());
        std::thread::spawn(move || {
            let mut seen = Seen::default();
            let mut turn = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let ports = ready_ports(api);
                if ports.is_empty() {
                    seen.failures
                        .push("the API listed no ready instance".into());
                } else {
                    let port = ports[turn % ports.len()];
                    turn += 1;
                    let target = SocketAddr::from(([127, 0, 0, 1], port));
                    match http(target, "GET", "/index.html", None) {
                        Ok((200, body)) => seen.bodies.push(body.trim().to_owned()),
                        Ok((status, body)) => {
                            seen.failures.push(format!("port {port}: {status} {body}"))
                        }
                        Err(e) => seen.failures.push(format!("port {port}: {e}")),
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            seen
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let (status, body) = d
        .send_json(
            "PUT",
            "/api/v1/workloads/web",
            Some(&web(&setup.image, "v2", None)),
        )
        .unwrap();
    assert_eq!(status, 200, "{body}");
    until(
        "the rollout to revision 2 completes",
        Duration::from_secs(90),
        || rollout_complete_at(&d, 2),
    );
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let seen = client.join().unwrap();
    let v1 = seen.bodies.iter().filter(|b| *b == "v1").count();
    let v2 = seen.bodies.iter().filter(|b| *b == "v2").count();
    println!(
        "{} requests: {v1} v1, {v2} v2, {} failed",
        seen.bodies.len() + seen.failures.len(),
        seen.failures.len()
    );
    assert!(
        seen.failures.is_empty(),
        "failed requests: {:?}",
        seen.failures
    );
    assert!(v1 > 0 && v2 > 0, "the answers switched: {v1} v1, {v2} v2");
    let last_v1 = seen.bodies.iter().rposition(|b| b == "v1").unwrap();
    let first_v2 = seen.bodies.iter().position(|b| b == "v2").unwrap();
    assert!(
        seen.bodies[last_v1 + 1..].iter().all(|b| b == "v2"),
        "after the last v1 answer, only v2 (first v2 at {first_v2}, last v1 at {last_v1})"
    );
    // The last old replica may still be in its pre-stop delay and grace.
    until(
        "the old containers are gone",
        Duration::from_secs(10),
        || node.youki_list().len() == 3,
    );

    // A broken update: the command exits at once, no new replica ever gets ready; the
    // progress deadline (8 s) fails the rollout and it returns to revision 2's template.
    let broken = web(&setup.image, "v3", Some("exit 1"));
    let (status, body) = d
        .send_json("PUT", "/api/v1/workloads/web", Some(&broken))
        .unwrap();
    assert_eq!(status, 200, "{body}");
    until(
        "rolled back to v2 as revision 4",
        Duration::from_secs(90),
        || rollout_complete_at(&d, 4),
    );
    let detail = get_json(&d, "/api/v1/workloads/web");
    let command = detail["workload"]["containers"][0]["command"][2]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(command.contains("echo v2"), "{command}");
    assert_eq!(detail["workload"]["changed_by"], json!("auto-rollback"));
    let history = get_json(&d, "/api/v1/workloads/web/rollout/history");
    let failed: Vec<&Value> = history["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["failed"].is_string())
        .collect();
    assert_eq!(failed.len(), 1, "{history}");
    assert_eq!(failed[0]["revision"], json!(3));
    let reason = failed[0]["failed"].as_str().unwrap();
    assert!(reason.contains("progress_deadline_seconds"), "{reason}");
    let events = get_json(&d, "/api/v1/events?workload=web&limit=1000");
    assert!(
        events["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == json!("Rollout")
                && e["message"]
                    .as_str()
                    .unwrap()
                    .contains("rolling back to the template of revision 2")),
        "no rollback event: {events}"
    );

    // Undo to revision 1: v1 again, as revision 5.
    let (status, body) = d
        .send_json(
            "POST",
            "/api/v1/workloads/web/rollout/undo",
            Some(&json!({"to_revision": 1})),
        )
        .unwrap();
    assert_eq!(status, 200, "{body}");
    until(
        "undo to revision 1 completes",
        Duration::from_secs(90),
        || rollout_complete_at(&d, 5),
    );
    let ports = ready_ports(d.addr());
    assert_eq!(ports.len(), 3);
    for port in ports {
        let (status, body) = http(
            SocketAddr::from(([127, 0, 0, 1], port)),
            "GET",
            "/index.html",
            None,
        )
        .unwrap();
        assert_eq!((status, body.trim()), (200, "v1"));
    }
    let (status, body) = d
        .send_json(
            "POST",
            "/api/v1/workloads/web/rollout/undo",
            Some(&json!({"to_revision": 42})),
        )
        .unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("no revision 42"), "{body}");
}
