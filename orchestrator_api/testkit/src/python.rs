//! Python tools the tests drive (the MCP SDK, schemathesis): a virtualenv per package set under
//! the target directory, made once and reused, and running a tool with a time bound.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `cmd` to completion; an error (with its output) when it cannot start or fails.
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

/// The Python interpreter of a virtualenv at `root/name` holding `packages` (pip requirement
/// specifiers, pinned), made with `python3 -m venv` (or `$PYTHON`) and pip the first time.
/// Errors say what is missing: python3 with venv, or pip's access to PyPI.
pub fn venv(root: &Path, name: &str, packages: &[&str]) -> Result<PathBuf, String> {
    let venv = root.join(name);
    let python = venv.join("bin/python");
    let ready = venv.join(".installed");
    if ready.exists() {
        return Ok(python);
    }
    let python3 = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    // Built aside and renamed into place, so that two concurrent `cargo test` runs never see
    // a half-made environment.
    let scratch = root.join(format!("{name}-tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(root).map_err(|e| format!("creating {}: {e}", root.display()))?;
    run(Command::new(&python3).args(["-m", "venv"]).arg(&scratch))
        .map_err(|e| format!("python3 with the venv module is needed: {e}"))?;
    run(Command::new(scratch.join("bin/python"))
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(packages))
    .map_err(|e| format!("installing {packages:?} with pip: {e}"))?;
    // A venv hard-codes its own path in its scripts, but `bin/python` works from any place:
    // callers only run `bin/python` (`-m tool` for a tool's command).
    std::fs::write(scratch.join(".installed"), packages.join("\n")).map_err(|e| e.to_string())?;
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

/// Runs `cmd` with its output captured (in files, so a chatty tool never blocks on a full
/// pipe), killing it after `limit`: a hung tool fails its test instead of the CI run. The
/// status says whether it was killed (`signal 9`).
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let dir = tempfile::tempdir().expect("a temp dir for the output");
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let file = |p: &Path| std::fs::File::create(p).expect("an output file");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(file(&out_path))
        .stderr(file(&err_path))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the tool") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break child.wait().expect("reaping the tool");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Output {
        status,
        stdout: std::fs::read(&out_path).unwrap_or_default(),
        stderr: std::fs::read(&err_path).unwrap_or_default(),
    }
}
