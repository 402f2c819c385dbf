//! The black-box test kit: a real `orchestratord` process for the tests of the CLI, the MCP
//! server and the daemon itself, so that each of them does not carry its own copy.
//!
//! ```no_run
//! use orchestrator_testkit::Daemon;
//!
//! let mut d = Daemon::simulated(); // temp data dir, 127.0.0.1:0, simulated runtime
//! let _ = d.url(); // http://127.0.0.1:PORT, ready
//! d.kill9();
//! d.restart(); // same data dir and flags, a new port
//! d.terminate(); // SIGTERM, and the daemon's exit status
//! ```
//!
//! Use it as a dev-dependency; the real-container helpers need the `youki` feature. Every call
//! of youki they make goes through `container_runtime_interface`'s own CLI wrapper
//! ([`oci::cli::Cli`](container_runtime_interface::oci::cli::Cli)), which retries youki's
//! occasional `failed to seal /proc/self/exe` the way the daemon does.
//!
//! # Layout
//! * [`bins`] — where the workspace's binaries are, and building `orchestratord` when it is
//!   missing.
//! * [`daemon`] — [`Daemon`] and [`DaemonBuilder`]: start on port 0, wait until `/readyz`
//!   answers 200, kill -9, SIGTERM, restart on the same data dir; a `Drop` that never panics.
//! * [`cluster`] — [`cluster::TestCluster`]: etcd on loopback and several daemons sharing it.
//! * [`netns`] — [`netns::NetHosts`]: several "machines" on this one (network namespaces on a
//!   bridge of the test's own), to cut off, heal, and reach loopback services from.
//! * `youki` (feature `youki`) — `YoukiSetup` (youki and the test image of
//!   `scripts/setup-oci.sh`) and `YoukiNode` (a daemon of its own on real containers, alone or
//!   as a member of a [`cluster::TestCluster`], and what youki, the bundles and the cgroups say
//!   about it).
//! * [`python`] — a virtualenv with a Python tool (the MCP SDK, schemathesis), and running a
//!   tool with a time bound.
//! * [`prerequisite_missing`] — skip outside CI, fail under `CI=true`.

pub mod bins;
pub mod cluster;
pub mod daemon;
pub mod netns;
pub mod python;
#[cfg(feature = "youki")]
pub mod youki;

pub use daemon::{Daemon, DaemonBuilder, HttpAnswer};
#[cfg(feature = "youki")]
pub use youki::{YoukiNode, YoukiSetup};

/// Whether this is a CI run (`CI=true`), where a missing prerequisite is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A test's prerequisite (youki, python3, a registry) is missing: under `CI=true` this panics
/// (a CI run must not pass by skipping); elsewhere it says why the test is skipped and returns
/// `None`, for `let Some(x) = ... else { return }`.
pub fn prerequisite_missing<T>(why: impl std::fmt::Display) -> Option<T> {
    if in_ci() {
        panic!("prerequisite missing (CI=true, so this fails instead of skipping): {why}");
    }
    eprintln!("SKIPPED: {why}");
    None
}
