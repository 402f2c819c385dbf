//! Where the workspace's binaries are.
//!
//! A test binary lives in `TARGET/PROFILE/deps/`; the workspace's binaries in `TARGET/PROFILE/`.
//! A package's own binaries are best found with `env!("CARGO_BIN_EXE_name")`; the others (the
//! daemon, for the CLI's and the MCP server's tests) are looked up here.
//!
//! `cargo test --workspace` builds `orchestratord` (its package has tests) before any test
//! runs. Run alone (`cargo test -p orchestrator_cli`), a missing daemon is built here with
//! `cargo build -p orchestratord`; one already there is used as it is, even if older than the
//! sources (rebuilding each time would rebuild its dependencies with other features than the
//! test run's): build it first, or name one with `ORCHESTRATORD_BIN`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Environment variable naming the `orchestratord` binary to use instead of the target dir's.
pub const DAEMON_BIN_VAR: &str = "ORCHESTRATORD_BIN";

/// The target dir's profile directory (`TARGET/debug`, `TARGET/release`) of the running test or
/// bench binary.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the running test binary");
    let dir = exe.parent().expect("the test binary is in a directory");
    // Test and bench binaries are in `deps/`; binaries one level up.
    if dir.ends_with("deps") {
        dir.parent().expect("deps/ has a parent").to_owned()
    } else {
        dir.to_owned()
    }
}

/// The workspace binary `name` of `package`, built with cargo if it is not there yet.
pub fn workspace_bin(package: &str, name: &str) -> PathBuf {
    let exe = profile_dir().join(name);
    if !exe.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "-p", package, "--bin", name]);
        if profile_dir().ends_with("release") {
            build.arg("--release");
        }
        let status = build
            .status()
            .unwrap_or_else(|e| panic!("running cargo build for {name}: {e}"));
        assert!(status.success(), "building {name} failed ({status})");
    }
    assert!(exe.exists(), "{name} not found at {}", exe.display());
    exe
}

/// The `orchestratord` binary: `$ORCHESTRATORD_BIN`, else the target dir's (built if missing,
/// once per test process).
pub fn daemon_exe() -> PathBuf {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| match std::env::var_os(DAEMON_BIN_VAR) {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(
                path.is_file(),
                "{DAEMON_BIN_VAR}={} does not exist",
                path.display()
            );
            path
        }
        None => workspace_bin("orchestratord", "orchestratord"),
    })
    .clone()
}
