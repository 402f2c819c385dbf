//! The REST API against its own OpenAPI document, with a property-based tester we did not
//! write: schemathesis (PyPI) generates requests from `/api/v1/openapi.json` — examples, the
//! schema's edge cases, random data and stateful sequences (create, then get, scale, delete) —
//! and checks every answer. Run with an admin token, a read-only token and no token, against a
//! daemon that requires tokens (simulated runtime: the API is what is under test).
//!
//! The checks: no 5xx, every status code, content type and header documented, every body valid
//! against its schema, and what was created or deleted is (or is no longer) there. Two checks of
//! "all" are left out because they measure how precisely the schema describes validation, not
//! the server's behaviour: `positive_data_acceptance` (the validation rules beyond JSON Schema —
//! an image reference's syntax, container names unique in a workload, a `continue` token from
//! the same list — refuse some schema-valid bodies with a 4xx naming the field) and
//! `negative_data_rejection` (lenient inputs such as a `limit` above 1000, lowered rather than
//! refused).
//!
//! Seconds per run: `ORCHESTRATOR_SCHEMATHESIS_SECONDS` (default 20).

use orchestrator_testkit::daemon::{tokens_file, ADMIN_TOKEN, READ_ONLY_TOKEN};
use orchestrator_testkit::{prerequisite_missing, python, Daemon};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The version the checks were written against.
const SCHEMATHESIS: &str = "schemathesis==4.32.5";

fn seconds() -> u64 {
    std::env::var("ORCHESTRATOR_SCHEMATHESIS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

/// One schemathesis run against `d` with `token` (or none); panics with its report on a failure.
fn schemathesis(python: &Path, d: &Daemon, token: Option<&str>) {
    let seconds = seconds();
    // schemathesis keeps a cache (`.schemathesis/`) in its working directory: a scratch one.
    let scratch = tempfile::tempdir().expect("a scratch dir");
    let mut cmd = Command::new(python);
    cmd.current_dir(scratch.path())
        .args(["-m", "schemathesis.cli", "run"])
        .arg(format!("{}/api/v1/openapi.json", d.url()))
        .args(["--checks", "all"])
        .args([
            "--exclude-checks",
            "positive_data_acceptance,negative_data_rejection",
        ])
        .args(["--max-time", &seconds.to_string()])
        .args(["--workers", "1", "--request-timeout", "10"])
        // No colours, no progress bar: a readable report in the test's output.
        .env("NO_COLOR", "1");
    if let Some(token) = token {
        cmd.args(["--header", &format!("Authorization: Bearer {token}")]);
    }
    let out = python::run_bounded(&mut cmd, Duration::from_secs(seconds + 120));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Vec<&str> = report
        .lines()
        .filter(|l| l.contains(" generated, "))
        .collect();
    println!("schemathesis, token {token:?}: {}", summary.join(" | "));
    assert!(
        out.status.success(),
        "schemathesis found problems (token {token:?}, {}):\n{report}",
        out.status
    );
}

#[test]
fn the_api_keeps_to_its_openapi_document_with_and_without_a_token() {
    let made = python::venv(
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        &SCHEMATHESIS.replace("==", "-"),
        &[SCHEMATHESIS],
    );
    let python = match made {
        Ok(p) => p,
        Err(why) => {
            let _: Option<()> = prerequisite_missing(why);
            return;
        }
    };
    let d = Daemon::builder()
        .simulated()
        .arg("--tokens")
        .arg(tokens_file())
        .start();
    for token in [Some(ADMIN_TOKEN), Some(READ_ONLY_TOKEN), None] {
        schemathesis(&python, &d, token);
    }
    // The daemon lived through all of it.
    assert_eq!(d.get("/healthz").unwrap().0, 200);
}
