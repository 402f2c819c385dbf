//! End-to-end: `orchestrator-mcp` driven by a real MCP client we did not write — the official
//! Python SDK (`mcp` from PyPI) — against a real `orchestratord` (redb store in a temp dir, API
//! on a free port, simulated runtime). The client's checks live in `tests/python/drive_mcp.py`,
//! one scenario per test; a failed `assert` there fails the test here with its output.
//!
//! Setup: the first test creates a virtualenv under the target directory
//! (`target/tmp/mcp-python-<version>`) and installs the SDK into it with pip; later runs reuse
//! it. Without `python3` (or without network for pip) the tests are skipped with a message,
//! except with `CI=true`, where a missing prerequisite fails them.
//!
//! The daemon comes from `orchestrator_testkit` (which finds `orchestratord`, or builds it when
//! this package's tests run alone).

use orchestrator_testkit::{prerequisite_missing, python, Daemon};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// The SDK version the scenarios were written against.
const MCP_SDK: &str = "mcp==2.3.0";

/// The Python interpreter of a virtualenv holding the MCP SDK, made once per target dir.
fn python() -> Option<PathBuf> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let made = PYTHON.get_or_init(|| {
        let name = format!("mcp-python-{}", MCP_SDK.replace("==", "-"));
        python::venv(Path::new(env!("CARGO_TARGET_TMPDIR")), &name, &[MCP_SDK])
    });
    match made {
        Ok(p) => Some(p.clone()),
        Err(why) => prerequisite_missing(why),
    }
}

fn mcp_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_orchestrator-mcp"))
}

/// A daemon on the simulated runtime with `extra` flags.
fn start_daemon(extra: &[&str]) -> Daemon {
    Daemon::builder().simulated().args(extra).start()
}

/// Runs one scenario of `drive_mcp.py`; panics with its output if it fails.
fn scenario(python: &Path, args: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/drive_mcp.py");
    // Bounded: a hung client must fail the test, not the CI run.
    let out = python::run_bounded(
        Command::new(python)
            .arg(&script)
            .args(args)
            // The server's logs (stderr) are passed through by the SDK: keep them short.
            .env("RUST_LOG", "warn"),
        Duration::from_secs(240),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "scenario {args:?} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains(&format!("scenario {}: passed", args[0])),
        "{stdout}"
    );
}

#[test]
fn stdio_tools_against_a_real_daemon() {
    let Some(python) = python() else { return };
    let d = start_daemon(&[]);
    scenario(&python, &["stdio", mcp_exe().to_str().unwrap(), &d.url()]);
}

#[test]
fn read_only_lists_and_runs_no_mutating_tool() {
    let Some(python) = python() else { return };
    let d = start_daemon(&[]);
    scenario(
        &python,
        &["read_only", mcp_exe().to_str().unwrap(), &d.url()],
    );
}

#[test]
fn results_stay_under_the_byte_cap_and_pages_still_walk_everything() {
    let Some(python) = python() else { return };
    let d = start_daemon(&[]);
    scenario(
        &python,
        &["size_cap", mcp_exe().to_str().unwrap(), &d.url()],
    );
}

#[test]
fn streamable_http_on_the_daemon() {
    let Some(python) = python() else { return };
    let d = start_daemon(&["--mcp"]);
    scenario(&python, &["http", &format!("{}/mcp", d.url())]);
}

/// Stdout is the protocol channel: a client that sends nothing gets nothing on stdout, even
/// when the server logs (at debug level) and cannot reach its API.
#[test]
fn streamable_http_passes_the_callers_token_on() {
    use orchestrator_testkit::daemon::{tokens_file, ADMIN_TOKEN, READ_ONLY_TOKEN};
    let Some(python) = python() else { return };
    let tokens = tokens_file().to_str().unwrap().to_owned();
    let d = start_daemon(&["--mcp", "--tokens", &tokens]);
    scenario(
        &python,
        &[
            "http_auth",
            &format!("{}/mcp", d.url()),
            ADMIN_TOKEN,
            READ_ONLY_TOKEN,
        ],
    );
    // The API named the MCP caller in the workload's events.
    let (status, body) = d.get("/api/v1/events?workload=by-mcp").unwrap();
    assert_eq!(status, 200, "{body}");
    let events: serde_json::Value = serde_json::from_str(&body).unwrap();
    let created = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "Updated")
        .unwrap_or_else(|| panic!("no Updated event: {events}"));
    assert_eq!(created["actor"], "admin", "{created}");
    let (status, _) = d.get("/api/v1/workloads/by-reader").unwrap();
    assert_eq!(status, 404, "the read-only token created nothing");
}

#[test]
fn nothing_but_the_protocol_on_stdout() {
    let out = Command::new(mcp_exe())
        .args(["--server", "http://127.0.0.1:9"])
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("running orchestrator-mcp");
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("orchestrator-mcp starting on stdio"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
