//! The real `orchestrator-cli` binary driving a real `orchestratord`, for the end-to-end tests.
//!
//! The daemon (start on a free port, readiness, kill -9, restart, a `Drop` that never panics)
//! comes from `orchestrator_testkit`; this adds running the CLI against it ([`CliExt`]).

#![allow(dead_code)] // Each test binary uses a different part.

use orchestrator_shared_types::api::{ListResponse, WorkloadView};
use orchestrator_shared_types::{InstanceStatus, WorkloadInstance};
pub use orchestrator_testkit::Daemon;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn cli_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_orchestrator-cli"))
}

/// A daemon on the simulated runtime (node `node-1`, 16 CPUs, 32 GB) in `data_dir`.
pub fn start_simulated(data_dir: &Path) -> Daemon {
    Daemon::builder().simulated().data_dir(data_dir).start()
}

/// `orchestrator-cli --server DAEMON ...` and what it printed.
pub trait CliExt {
    /// Runs the CLI with `args`.
    fn cli(&self, args: &[&str]) -> Output {
        self.cli_with_stdin(args, None)
    }

    /// Runs the CLI with `args`, writing `stdin` to it.
    fn cli_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output;

    /// Runs the CLI, asserts success, returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "orchestrator-cli {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs the CLI with `-o json` and parses its output.
    fn json<T: serde::de::DeserializeOwned>(&self, args: &[&str]) -> T {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let text = self.ok(&all);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    fn workloads(&self) -> Vec<WorkloadView> {
        self.json::<ListResponse<WorkloadView>>(&["workload", "list"])
            .items
    }

    fn instances(&self, workload: &str) -> Vec<WorkloadInstance> {
        self.json::<ListResponse<WorkloadInstance>>(&["instance", "list", "--workload", workload])
            .items
    }

    /// Polls the instances of `workload` until `done` holds for them, or panics after
    /// `timeout` with what they were.
    fn wait_instances(
        &self,
        workload: &str,
        timeout: Duration,
        what: &str,
        done: impl Fn(&[WorkloadInstance]) -> bool,
    ) -> Vec<WorkloadInstance> {
        let deadline = Instant::now() + timeout;
        loop {
            let instances = self.instances(workload);
            if done(&instances) {
                return instances;
            }
            if Instant::now() > deadline {
                // What the containers that are not running said last: the reason is usually
                // there (a failed bind, a missing file), and the data dir is gone after the test.
                let logs: Vec<String> = instances
                    .iter()
                    .filter(|i| i.status != InstanceStatus::Running)
                    .map(|i| {
                        let out = self.cli(&["instance", "logs", i.id.as_str(), "--tail", "20"]);
                        format!(
                            "--- logs of {} ({}):\n{}{}",
                            i.id,
                            i.status,
                            String::from_utf8_lossy(&out.stdout),
                            String::from_utf8_lossy(&out.stderr)
                        )
                    })
                    .collect();
                panic!(
                    "{workload}: not {what} within {timeout:?}: {instances:#?}\n{}",
                    logs.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl CliExt for Daemon {
    fn cli_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new(cli_exe())
            .args(["--server", &self.url()])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running orchestrator-cli");
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    }
}

/// Writes `text` to `dir/name`; returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}
