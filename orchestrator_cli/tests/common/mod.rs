//! A real `orchestratord` process driven through the real `orchestrator-cli` binary, shared by
//! the end-to-end tests.
//!
//! `orchestratord` is a binary of the `orchestrator_api` package; `cargo test --workspace` builds
//! it next to this package's binary. Run alone (`cargo test -p orchestrator_cli`), the harness
//! builds it.

#![allow(dead_code)] // Each test binary uses a different part.

use orchestrator_shared_types::api::{ListResponse, WorkloadView};
use orchestrator_shared_types::WorkloadInstance;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn cli_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_orchestrator-cli"))
}

pub fn daemon_exe() -> PathBuf {
    let exe = cli_exe().with_file_name("orchestratord");
    if !exe.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "orchestrator_api", "--bin", "orchestratord"])
            .status()
            .expect("running cargo build for orchestratord");
        assert!(status.success(), "building orchestratord failed");
    }
    assert!(exe.exists(), "orchestratord not found at {}", exe.display());
    exe
}

/// A running daemon; killed (SIGKILL) when dropped.
pub struct Daemon {
    pub child: Child,
    pub server: String,
}

impl Daemon {
    /// The daemon with the simulated runtime, as node `node-1` with 16 CPUs and 32 GB.
    pub fn start(data_dir: &Path) -> Daemon {
        Self::start_with(
            data_dir,
            [
                "--runtime",
                "simulated",
                "--node-name",
                "node-1",
                "--cpu-millicores",
                "16000",
                "--memory-mb",
                "32768",
            ],
        )
    }

    /// The daemon on a free port with `args` added.
    pub fn start_with<I, S>(data_dir: &Path, args: I) -> Daemon
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut child = Command::new(daemon_exe())
            .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
            .args(args.into_iter().map(Into::into))
            .arg("--data-dir")
            .arg(data_dir)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting orchestratord");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // Read the log until the daemon says where it listens; keep draining it afterwards so the
        // daemon never blocks on a full pipe. Lines before "ready" are kept for the error message.
        std::thread::spawn(move || {
            let mut sent = false;
            let mut early = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                        if v["fields"]["message"] == "orchestratord ready" {
                            let addr = v["fields"]["listen"]
                                .as_str()
                                .unwrap_or_default()
                                .to_owned();
                            let _ = tx.send(Ok(addr));
                            sent = true;
                        }
                    }
                    if !sent {
                        early.push(line.clone());
                    }
                }
                if std::env::var_os("E2E_DAEMON_LOG").is_some() {
                    eprintln!("[orchestratord] {line}");
                }
            }
            if !sent {
                let _ = tx.send(Err(early.join("\n")));
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(addr)) => addr,
            Ok(Err(log)) => panic!("orchestratord exited before it was ready:\n{log}"),
            Err(_) => panic!("orchestratord did not report ready within 30 s"),
        };
        Daemon {
            child,
            server: format!("http://{addr}"),
        }
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_with_stdin(args, None)
    }

    pub fn cli_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new(cli_exe())
            .args(["--server", &self.server])
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

    /// Runs the CLI, asserts success, returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "orchestrator-cli {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self, args: &[&str]) -> T {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let text = self.ok(&all);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    pub fn workloads(&self) -> Vec<WorkloadView> {
        self.json::<ListResponse<WorkloadView>>(&["workload", "list"])
            .items
    }

    pub fn instances(&self, workload: &str) -> Vec<WorkloadInstance> {
        self.json::<ListResponse<WorkloadInstance>>(&["instance", "list", "--workload", workload])
            .items
    }

    /// Polls the instances of `workload` until `done` holds for them, or panics after
    /// `timeout` with what they were.
    pub fn wait_instances(
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
                panic!("{workload}: not {what} within {timeout:?}: {instances:#?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(mut self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
        let status = self.child.wait().unwrap();
        assert!(status.success(), "orchestratord exited with {status}");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `text` to `dir/name`; returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}
