//! Black-box tests of the `orchestratord` binary over HTTP, through `orchestrator_testkit`: a
//! real process (redb store in a temp data dir, simulated runtime, port 0), its config file,
//! `/metrics` as a scraper sees it, kill -9 and restart on the same data dir, SIGTERM.

use orchestrator_testkit::Daemon;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn workload(name: &str, replicas: u32) -> Value {
    json!({
        "name": name,
        "replicas": replicas,
        "containers": [{
            "name": "main",
            "image": "demo/app:1",
            "resources": {"cpu_millicores": 100, "memory_mb": 64}
        }]
    })
}

/// `GET path` as JSON, asserting 200.
fn get_json(d: &Daemon, path: &str) -> Value {
    let (status, body) = d.get(path).expect("the daemon answers");
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// Polls `GET /api/v1/workloads/{name}` until `name` has `n` replicas running.
fn wait_running(d: &Daemon, name: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let view = get_json(d, &format!("/api/v1/workloads/{name}"));
        if view["replicas"]["running"] == n {
            return;
        }
        assert!(Instant::now() < deadline, "{name} not {n} running: {view}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of the sample line `series` (name and labels exactly) of an exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_count_requests_and_time_reconciles() {
    let d = Daemon::simulated();
    let (status, body) = d
        .send_json("POST", "/api/v1/workloads", Some(&workload("web", 2)))
        .unwrap();
    assert_eq!(status, 201, "{body}");
    wait_running(&d, "web", 2);
    let (status, _) = d.get("/api/v1/workloads/nope").unwrap();
    assert_eq!(status, 404);

    let (status, text) = d.get("/metrics").unwrap();
    assert_eq!(status, 200);
    for series in [
        "orchestrator_loop_up",
        "orchestrator_workloads",
        "orchestrator_nodes",
        "orchestrator_instances{status=\"Running\"}",
    ] {
        assert!(sample(&text, series).is_some(), "no {series} in\n{text}");
    }
    assert_eq!(sample(&text, "orchestrator_loop_up"), Some(1.0));
    assert_eq!(sample(&text, "orchestrator_workloads"), Some(1.0));
    assert_eq!(
        sample(&text, "orchestrator_instances{status=\"Running\"}"),
        Some(2.0)
    );
    // The loop planned at least once, and its histogram timed the plans. (The counter and the
    // histogram are separate metrics, so a scrape racing a plan may see one ahead of the other:
    // they are not compared.)
    let reconciles = sample(&text, "orchestrator_reconciles_total").expect(&text);
    assert!(reconciles >= 1.0, "{text}");
    let plans = sample(&text, "orchestrator_reconcile_duration_seconds_count").expect(&text);
    assert!(plans >= 1.0, "{text}");
    assert_eq!(
        sample(
            &text,
            "orchestrator_reconcile_duration_seconds_bucket{le=\"+Inf\"}"
        ),
        Some(plans),
        "+Inf counts every plan"
    );
    assert!(sample(&text, "orchestrator_reconcile_duration_seconds_sum").expect(&text) > 0.0);
    assert_eq!(sample(&text, "orchestrator_placements_total"), Some(2.0));
    // Requests by route template and status class: the create, the 404.
    assert_eq!(
        sample(
            &text,
            "orchestrator_http_request_duration_seconds_count{route=\"/api/v1/workloads\",status=\"2xx\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "orchestrator_http_request_duration_seconds_count{route=\"/api/v1/workloads/{name}\",status=\"4xx\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "orchestrator_http_requests_total{method=\"POST\",status=\"201\"}"
        ),
        Some(1.0),
        "{text}"
    );
}

#[test]
fn acknowledged_writes_survive_kill_9_and_sigterm_drains() {
    let mut d = Daemon::simulated();
    for name in ["a", "b", "c"] {
        let (status, body) = d
            .send_json("POST", "/api/v1/workloads", Some(&workload(name, 3)))
            .unwrap();
        assert_eq!(status, 201, "{body}");
    }
    d.kill9();
    assert!(d.get("/healthz").is_err(), "nothing listens after kill -9");

    d.restart();
    for name in ["a", "b", "c"] {
        wait_running(&d, name, 3);
    }
    let instances = get_json(&d, "/api/v1/instances");
    assert_eq!(
        instances["items"].as_array().unwrap().len(),
        9,
        "no duplicates"
    );

    // A graceful stop (the kit asserts a clean exit), then the same data dir again.
    d.terminate();
    d.restart();
    let list = get_json(&d, "/api/v1/workloads");
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["workload"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
}

#[test]
fn the_config_file_sets_what_flags_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("orchestratord.toml");
    std::fs::write(
        &config,
        "runtime = \"simulated\"\nnode_name = \"from-file\"\ncpu_millicores = 3000\nmemory_mb = 2048\n",
    )
    .unwrap();
    let d = Daemon::builder()
        .arg("--config")
        .arg(&config)
        .args(["--memory-mb", "4096"])
        .start();
    let node = get_json(&d, "/api/v1/nodes/from-file");
    assert_eq!(
        node["node"]["allocatable"]["cpu_millicores"], 3000,
        "{node}"
    );
    assert_eq!(
        node["node"]["allocatable"]["memory_mb"], 4096,
        "the flag wins: {node}"
    );
    let cluster = get_json(&d, "/api/v1/cluster");
    assert_eq!(cluster["runtime"], "simulated", "{cluster}");
}
