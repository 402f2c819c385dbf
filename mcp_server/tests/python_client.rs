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

use orchestrator_testkit::{prerequisite_missing, Daemon};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// The SDK version the scenarios were written against.
const MCP_SDK: &str = "mcp==2.3.0";

fn run(cmd: &mut Command) -> Result<Output, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The Python interpreter of a virtualenv holding the MCP SDK, made once per target dir.
fn python() -> Option<PathBuf> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PYTHON.get_or_init(make_venv) {
        Ok(p) => Some(p.clone()),
        Err(why) => prerequisite_missing(why),
    }
}

fn make_venv() -> Result<PathBuf, String> {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let venv = root.join(format!("mcp-python-{}", MCP_SDK.replace("==", "-")));
    let python = venv.join("bin/python");
    let ready = venv.join(".installed");
    if ready.exists() {
        return Ok(python);
    }
    let python3 = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    // Built aside and renamed into place, so that two concurrent `cargo test` runs never see
    // a half-made environment.
    let scratch = root.join(format!("mcp-python-tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&root).map_err(|e| format!("creating {}: {e}", root.display()))?;
    run(Command::new(&python3).args(["-m", "venv"]).arg(&scratch))
        .map_err(|e| format!("python3 with the venv module is needed: {e}"))?;
    run(Command::new(scratch.join("bin/python")).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        MCP_SDK,
    ]))
    .map_err(|e| format!("installing the Python MCP SDK ({MCP_SDK}) with pip: {e}"))?;
    // A venv hard-codes its own path in its scripts, but `bin/python` works from any place:
    // the scenarios only run `bin/python`.
    std::fs::write(scratch.join(".installed"), MCP_SDK).map_err(|e| e.to_string())?;
    if std::fs::rename(&scratch, &venv).is_err() {
        // Another run won the race (or a broken leftover is in the way).
        let _ = std::fs::remove_dir_all(&scratch);
        if !ready.exists() {
            let _ = std::fs::remove_dir_all(&venv);
            return Err(format!("cannot put the virtualenv at {}", venv.display()));
        }
    }
    Ok(python)
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
    let mut child = Command::new(python)
        .arg(&script)
        .args(args)
        // The server's logs (stderr) are passed through by the SDK: keep them short.
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running the Python MCP client");
    // Bounded: a hung client must fail the test, not the CI run.
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
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
