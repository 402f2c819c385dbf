//! End-to-end: `orchestrator-cli instance logs` against a real `orchestratord` process with the
//! simulated runtime, whose containers log their lifecycle (`started: ...`, `received SIGTERM`,
//! `exited with code N`).

mod common;

use common::{start_simulated, write, CliExt, Daemon};
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

const START_LINE: &str = "started: image demo/app:1, command sleep 3600\n";

/// A daemon running one replica of `web`; returns it and the instance id.
fn daemon_with_an_instance(dir: &std::path::Path) -> (Daemon, String) {
    let d = start_simulated(&dir.join("data"));
    let file = write(
        dir,
        "web.yaml",
        "name: web\nreplicas: 1\ncontainers:\n  - name: main\n    image: demo/app:1\n    command: [\"sleep\", \"3600\"]\n",
    );
    d.ok(&[
        "workload",
        "create",
        "-f",
        &file,
        "--wait",
        "--timeout",
        "60s",
    ]);
    let id = d.instances("web")[0].id.to_string();
    (d, id)
}

#[test]
fn logs_print_the_containers_output() {
    let dir = tempfile::tempdir().unwrap();
    let (d, id) = daemon_with_an_instance(dir.path());
    assert_eq!(d.ok(&["instance", "logs", &id]), START_LINE);
    assert_eq!(d.ok(&["instance", "logs", &id, "--tail", "1"]), START_LINE);
    assert_eq!(d.ok(&["instance", "logs", &id, "--tail", "0"]), "");
    assert_eq!(d.ok(&["instances", "logs", &id, "-c", "main"]), START_LINE);
    assert_eq!(
        d.ok(&["instance", "logs", &id, "--since", "1h"]),
        START_LINE
    );
    // The simulated runtime dates every write: 1.2 s later, the start line is older than 1s.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(d.ok(&["instance", "logs", &id, "--since", "1s"]), "");

    for (args, needle) in [
        (
            vec!["instance", "logs", "nope-1"],
            "error: instance \"nope-1\" not found",
        ),
        (
            vec!["instance", "logs", &id, "-c", "sidecar"],
            "has no container \"sidecar\"; its containers: main",
        ),
        (
            vec!["instance", "logs", &id, "--since", "10"],
            "'--since <DURATION>': must be a number and a unit",
        ),
    ] {
        let out = d.cli(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

/// `-f` prints the output as it comes, and ends (successfully) once the instance is gone.
#[test]
fn follow_prints_new_output_until_the_instance_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let (d, id) = daemon_with_an_instance(dir.path());
    let mut child = Command::new(common::cli_exe())
        .args(["--server", &d.url(), "instance", "logs", &id, "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert_eq!(first, START_LINE, "printed before the stream ends");

    // Deleting the workload stops the container (which logs it), then removes the instance.
    d.ok(&["workload", "delete", "web"]);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        let _ = tx.send(rest);
    });
    let rest = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the followed log ends once the instance is gone");
    assert_eq!(rest, "received SIGTERM\nexited with code 143\n");
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{status}: {stderr}");
}
