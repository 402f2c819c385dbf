//! API tokens end to end, through the `orchestratord` binary: 401 and 403 as JSON, roles, the
//! audit trail in events, reloading on SIGHUP, refusing an open API beyond loopback, and HTTPS.

use orchestrator_shared_types::auth::{hash_token, Role, TokenEntry, TokenFile};
use orchestrator_testkit::daemon::{http_as, ADMIN_TOKEN, READ_ONLY_TOKEN};
use orchestrator_testkit::Daemon;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

fn web(name: &str, replicas: u32) -> Vec<u8> {
    json!({
        "name": name,
        "replicas": replicas,
        "containers": [{"name": "main", "image": "demo/app:1",
                        "resources": {"cpu_millicores": 100, "memory_mb": 64}}]
    })
    .to_string()
    .into_bytes()
}

fn with_kit_tokens() -> Daemon {
    Daemon::builder()
        .simulated()
        .arg("--tokens")
        .arg(orchestrator_testkit::daemon::tokens_file())
        .start()
}

/// `METHOD path` with `token` and an optional JSON body: status and parsed body.
fn call(
    d: &Daemon,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> (u16, Value) {
    let answer = http_as(
        token,
        d.addr(),
        method,
        path,
        body.map(|b| ("application/json", b)),
    )
    .expect("the daemon answers");
    let value = serde_json::from_str(&answer.body).unwrap_or(Value::String(answer.body.clone()));
    (answer.status, value)
}

#[test]
fn tokens_and_roles_guard_every_route_but_the_probes() {
    let d = with_kit_tokens();
    // No token: 401 with the JSON error body and the RFC 6750 challenge.
    let answer = http_as(None, d.addr(), "GET", "/api/v1/workloads", None).unwrap();
    assert_eq!(answer.status, 401, "{}", answer.body);
    assert_eq!(answer.header("www-authenticate"), Some("Bearer"));
    let body: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Authorization: Bearer"));
    // Unknown paths and /metrics too: nothing is mapped for a stranger.
    for path in ["/api/v1/nope", "/metrics", "/api/v1/cluster"] {
        assert_eq!(call(&d, None, "GET", path, None).0, 401, "{path}");
    }
    // A wrong token: 401 as well.
    let (status, body) = call(&d, Some("orc_wrong"), "GET", "/api/v1/workloads", None);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    // The probes and the OpenAPI document need none.
    for path in ["/healthz", "/readyz", "/api/v1/openapi.json"] {
        assert_eq!(call(&d, None, "GET", path, None).0, 200, "{path}");
    }

    // read-only: reads and previews, no change.
    assert_eq!(
        call(&d, Some(READ_ONLY_TOKEN), "GET", "/api/v1/workloads", None).0,
        200
    );
    let (status, _) = call(
        &d,
        Some(READ_ONLY_TOKEN),
        "POST",
        "/api/v1/preview",
        Some(&web("p", 1)),
    );
    assert_eq!(status, 200);
    let (status, body) = call(
        &d,
        Some(READ_ONLY_TOKEN),
        "POST",
        "/api/v1/workloads",
        Some(&web("web", 1)),
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("read-only"),
        "{body}"
    );
    let (_, list) = call(&d, Some(ADMIN_TOKEN), "GET", "/api/v1/workloads", None);
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        0,
        "nothing was created: {list}"
    );

    // admin: everything, and the events name who did it.
    let (status, body) = call(
        &d,
        Some(ADMIN_TOKEN),
        "POST",
        "/api/v1/workloads",
        Some(&web("web", 1)),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["workload"]["changed_by"], "admin");
    let scale = json!({"replicas": 2}).to_string().into_bytes();
    let (status, body) = call(
        &d,
        Some(READ_ONLY_TOKEN),
        "POST",
        "/api/v1/workloads/web/scale",
        Some(&scale),
    );
    assert_eq!(status, 403, "{body}");
    let (status, _) = call(
        &d,
        Some(ADMIN_TOKEN),
        "POST",
        "/api/v1/workloads/web/scale",
        Some(&scale),
    );
    assert_eq!(status, 200);
    let (status, _) = call(
        &d,
        Some(READ_ONLY_TOKEN),
        "DELETE",
        "/api/v1/workloads/web",
        None,
    );
    assert_eq!(status, 403);
    let (status, _) = call(
        &d,
        Some(ADMIN_TOKEN),
        "DELETE",
        "/api/v1/workloads/web",
        None,
    );
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, events) = call(
            &d,
            Some(READ_ONLY_TOKEN),
            "GET",
            "/api/v1/events?workload=web",
            None,
        );
        let audit: Vec<(String, String)> = events["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "Updated" || e["kind"] == "Deleted")
            .map(|e| {
                (
                    e["message"].as_str().unwrap().to_owned(),
                    e["actor"].as_str().unwrap_or("-").to_owned(),
                )
            })
            .collect();
        if audit.len() == 3 {
            assert!(audit.iter().all(|(_, who)| who == "admin"), "{audit:?}");
            assert!(audit[1].0.contains("replicas 1 -> 2"), "{audit:?}");
            assert_eq!(audit[2].0, "deleted", "{audit:?}");
            break;
        }
        assert!(Instant::now() < deadline, "no audit events: {events}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The audit log names the caller, never the token.
    let log = d.log().join("\n");
    assert!(log.contains("orchestrator::audit"), "{log}");
    assert!(!log.contains(ADMIN_TOKEN) && !log.contains(READ_ONLY_TOKEN));
}

fn write_tokens(path: &Path, tokens: &[(&str, Role, &str)]) {
    let file = TokenFile {
        tokens: tokens
            .iter()
            .map(|(name, role, token)| TokenEntry {
                name: (*name).to_owned(),
                role: *role,
                sha256: hash_token(token),
            })
            .collect(),
    };
    std::fs::write(path, serde_json::to_string(&file).unwrap()).unwrap();
}

#[test]
fn sighup_reloads_the_tokens_and_a_bad_file_keeps_the_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.yaml");
    write_tokens(&path, &[("alice", Role::Admin, "orc_alice")]);
    let d = Daemon::builder()
        .simulated()
        .arg("--tokens")
        .arg(&path)
        .start();
    let hup = || {
        let pid = d.pid().expect("running");
        assert!(std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap()
            .success());
    };
    let status = |token: &str| call(&d, Some(token), "GET", "/api/v1/workloads", None).0;
    assert_eq!((status("orc_alice"), status("orc_bob")), (200, 401));
    write_tokens(&path, &[("bob", Role::ReadOnly, "orc_bob")]);
    hup();
    let deadline = Instant::now() + Duration::from_secs(10);
    while status("orc_bob") != 200 {
        assert!(
            Instant::now() < deadline,
            "bob's token never accepted: {:?}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(status("orc_alice"), 401, "alice's token was revoked");
    std::fs::write(&path, "tokens: [{name: x}]\n").unwrap();
    hup();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.log().iter().any(|l| l.contains("NOT reloaded")) {
        assert!(
            Instant::now() < deadline,
            "no reload error logged: {:?}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        status("orc_bob"),
        200,
        "a bad file keeps the tokens in force"
    );
}

#[test]
fn an_open_api_beyond_loopback_and_a_bad_token_file_refuse_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(orchestrator_testkit::bins::daemon_exe())
            .args(["--runtime", "simulated", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["--listen", "0.0.0.0:0"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("without API tokens") && stderr.contains("orchestrator-cli token create"),
        "{stderr}"
    );
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "tokens:\n  - {name: a, role: admin, sha256: nothex}\n",
    )
    .unwrap();
    let out = run(&["--tokens", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tokens[0].sha256"), "{stderr}");
}
