//! `OciRuntime` against youki and real containers: the conformance suite plus limits, cleanup
//! and logs. Needs root, youki (`~/.cargo/bin/youki`, or `$YOUKI`) and `/bin/busybox`
//! (Debian `busybox-static`). Without youki the tests pass with a note, except under `CI=true`
//! where they fail.
#![cfg(all(feature = "oci", feature = "conformance"))]

use container_runtime_interface::conformance::ConformanceTarget;
use container_runtime_interface::image::ImageError;
use container_runtime_interface::oci::{ImageConfig, LocalImages, OciConfig, OciRuntime};
use container_runtime_interface::{ContainerRuntime, ContainerState, LogRequest, RuntimeError};
use orchestrator_shared_types::{ContainerConfig, NodeId};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

const IMAGE: &str = "local/busybox:test";
/// The same root filesystem with `User: 65534:65534` in its image config.
const NOBODY_IMAGE: &str = "local/busybox:nobody";
const CGROUP_PARENT: &str = "orchestrator-test";
const NODE: &str = "local";

fn youki() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("YOUKI") {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME").map(PathBuf::from)?;
    let p = home.join(".cargo/bin/youki");
    p.is_file().then_some(p)
}

/// A rootfs with busybox and the applets the tests use.
fn busybox_rootfs(dir: &Path) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox"))
        .expect("copy /bin/busybox (apt-get install -y busybox-static)");
    for applet in ["sh", "sleep", "echo", "true", "cat", "httpd"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    for d in ["proc", "dev", "sys", "tmp", "etc"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
}

/// The settings of the shared runtime; `None` when youki is missing outside CI.
fn config() -> Option<OciConfig> {
    static CONFIG: OnceLock<Option<OciConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let Some(binary) = youki().filter(|p| p.is_file()) else {
                let msg = format!(
                    "youki not found (set $YOUKI or install it: `{}`)",
                    container_runtime_interface::oci::INSTALL_HINT
                );
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("{msg}");
                }
                eprintln!("skipping OCI tests: {msg}");
                return None;
            };
            let dir = test_dir();
            let rootfs = dir.join("images/busybox");
            busybox_rootfs(&rootfs);
            let images = LocalImages::new()
                .with_image(IMAGE, &rootfs, ImageConfig::default())
                .with_image(
                    NOBODY_IMAGE,
                    &rootfs,
                    ImageConfig {
                        user: Some("65534:65534".into()),
                        ..ImageConfig::default()
                    },
                );
            Some(OciConfig {
                binary,
                root: dir.join("state"),
                data_dir: dir.join("data"),
                cgroup_parent: CGROUP_PARENT.into(),
                node: NodeId::from(NODE),
                images: Arc::new(images),
                ..OciConfig::defaults()
            })
        })
        .clone()
}

/// `target/tmp/oci-{pid}`, after removing the directories of earlier test processes that are
/// gone (their containers were removed by the tests; only logs and the image copy remain).
fn test_dir() -> PathBuf {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    for old in std::fs::read_dir(base).into_iter().flatten().flatten() {
        let name = old.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("oci-") {
            if !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(old.path());
            }
        }
    }
    let dir = base.join(format!("oci-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// [`config`] with a state root and data dir of its own: for the tests that start a second
/// runtime on the same directories, as a restarted daemon does, whose `list` adopts and cleans
/// up what it finds there (which must not be what the other tests are creating meanwhile).
fn own_config(name: &str) -> Option<OciConfig> {
    let dir = test_dir().join(name);
    Some(OciConfig {
        root: dir.join("state"),
        data_dir: dir.join("data"),
        ..config()?
    })
}

/// One runtime per test process (it makes the process a subreaper).
fn runtime() -> Option<Arc<OciRuntime>> {
    static RUNTIME: OnceLock<Option<Arc<OciRuntime>>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let config = config()?;
            Some(Arc::new(
                OciRuntime::new(config).unwrap_or_else(|e| panic!("OciRuntime::new: {e}")),
            ))
        })
        .clone()
}

fn busybox(name: &str, command: &[&str]) -> ContainerConfig {
    let mut c = ContainerConfig::new(name, IMAGE);
    c.command = command.iter().map(|s| s.to_string()).collect();
    c
}

fn target() -> Option<ConformanceTarget> {
    let rt = runtime()?;
    Some(
        ConformanceTarget::new(
            rt,
            NodeId::from(NODE),
            busybox("sleeper", &["sleep", "3600"]),
        )
        .with_exit(busybox("exiter", &["sh", "-c", "exit 3"]), 3)
        .with_output(
            busybox(
                "talker",
                &["sh", "-c", "echo one; echo two >&2; echo three"],
            ),
            &["one", "two", "three"],
        )
        .with_timeout(Duration::from_secs(20)),
    )
}

mod conformance {
    use super::*;
    container_runtime_interface::runtime_conformance!(match target() {
        Some(t) => t,
        None => return,
    });
}

async fn wait_state(
    rt: &OciRuntime,
    id: &orchestrator_shared_types::ContainerId,
    wanted: impl Fn(&ContainerState) -> bool,
) -> ContainerState {
    for _ in 0..200 {
        let state = rt.status(&NodeId::from(NODE), id).await.unwrap().state;
        if wanted(&state) {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{id} never reached the wanted state");
}

#[tokio::test]
async fn memory_limit_is_applied() {
    let Some(t) = target() else { return };
    let rt = runtime().unwrap();
    let mut config = busybox("mem", &["sleep", "3600"]);
    config.resources.memory_mb = 48;
    let spec = t.spec(&config);
    rt.create_and_start(&t.node, &spec).await.unwrap();
    let limits: Vec<String> = rt
        .cgroup_dirs(&spec.id)
        .iter()
        .flat_map(|d| [d.join("memory.limit_in_bytes"), d.join("memory.max")])
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .collect();
    rt.remove(&t.node, &spec.id).await.unwrap();
    assert!(
        limits
            .iter()
            .any(|l| l.trim() == (48u64 * 1024 * 1024).to_string()),
        "memory limits found: {limits:?}"
    );
}

#[tokio::test]
async fn remove_leaves_no_bundle_or_cgroup() {
    let Some(t) = target() else { return };
    let rt = runtime().unwrap();
    let spec = t.spec(&busybox("gone", &["sleep", "3600"]));
    rt.create_and_start(&t.node, &spec).await.unwrap();
    assert!(rt.bundle_path(&spec.id).is_dir());
    assert!(
        rt.cgroup_dirs(&spec.id).iter().any(|d| d.is_dir()),
        "no cgroup dir while running"
    );
    rt.remove(&t.node, &spec.id).await.unwrap();
    assert!(!rt.bundle_path(&spec.id).exists(), "bundle left");
    let left: Vec<_> = rt
        .cgroup_dirs(&spec.id)
        .into_iter()
        .filter(|d| d.exists())
        .collect();
    assert!(left.is_empty(), "cgroup dirs left: {left:?}");
    rt.remove(&t.node, &spec.id).await.unwrap();
}

/// The runtime's helpers and never-started inits are reparented to this (subreaper) process:
/// they must be reaped, or a long-lived daemon fills up with zombies.
#[tokio::test]
async fn no_runtime_zombies_are_left() {
    let Some(t) = target() else { return };
    let rt = runtime().unwrap();
    for _ in 0..3 {
        let spec = t.spec(&busybox("z", &["sleep", "3600"]));
        rt.create_and_start(&t.node, &spec).await.unwrap();
        rt.remove(&t.node, &spec.id).await.unwrap();
    }
    let bad = t.spec(&busybox("zbad", &["/no/such/binary"]));
    let _ = rt.create_and_start(&t.node, &bad).await;
    rt.remove(&t.node, &bad.id).await.unwrap();
    let me = std::process::id().to_string();
    let zombies: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            let after = &stat[stat.rfind(')').unwrap_or(0) + 1..];
            let mut f = after.split_whitespace();
            f.next() == Some("Z") && f.next() == Some(me.as_str()) && stat.contains(":[")
        })
        .collect();
    assert!(zombies.is_empty(), "runtime zombies left: {zombies:?}");
}

#[tokio::test]
async fn logs_hold_container_output() {
    let Some(t) = target() else { return };
    let rt = runtime().unwrap();
    let spec = t.spec(&busybox(
        "talker",
        &["sh", "-c", "echo hello-from-container; echo oops >&2"],
    ));
    rt.create_and_start(&t.node, &spec).await.unwrap();
    let state = wait_state(&rt, &spec.id, |s| {
        matches!(s, ContainerState::Exited { .. })
    })
    .await;
    assert_eq!(state, ContainerState::Exited { code: 0 });
    let log = std::fs::read_to_string(rt.log_path(&spec.id)).unwrap();
    rt.remove(&t.node, &spec.id).await.unwrap();
    assert!(log.contains("hello-from-container"), "log: {log:?}");
    assert!(log.contains("oops"), "stderr in log: {log:?}");
    // The file outlives the container, and `logs` still serves it.
    let kept = rt
        .logs(&t.node, &spec.id, LogRequest::default())
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&kept.data), log);
}

#[tokio::test]
async fn the_image_user_runs_the_process() {
    let Some(t) = target() else { return };
    let rt = runtime().unwrap();
    let mut config = busybox("nobody", &["cat", "/proc/self/status"]);
    config.image = NOBODY_IMAGE.into();
    let spec = t.spec(&config);
    rt.create_and_start(&t.node, &spec).await.unwrap();
    let state = wait_state(&rt, &spec.id, |s| s.has_exited()).await;
    assert_eq!(state, ContainerState::Exited { code: 0 });
    let log = std::fs::read_to_string(rt.log_path(&spec.id)).unwrap();
    rt.remove(&t.node, &spec.id).await.unwrap();
    let uid = log
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap_or_default();
    let gid = log
        .lines()
        .find(|l| l.starts_with("Gid:"))
        .unwrap_or_default();
    assert!(
        uid.split_whitespace().skip(1).all(|f| f == "65534"),
        "{log}"
    );
    assert!(
        gid.split_whitespace().skip(1).all(|f| f == "65534"),
        "{log}"
    );
}

#[tokio::test]
async fn bad_command_fails_to_start_and_cleans_up() {
    let Some(t) = target() else { return };
    let rt = runtime().unwrap();
    let spec = t.spec(&busybox("bad", &["/no/such/binary"]));
    match rt.create_and_start(&t.node, &spec).await {
        // youki may fail at create (exec checked up front) ...
        Err(RuntimeError::StartFailed { message, .. }) => {
            eprintln!("start failed as expected: {message}");
            assert!(message.contains("/no/such/binary"), "{message}");
            assert!(
                !rt.bundle_path(&spec.id).exists(),
                "bundle left after a failed start"
            );
        }
        // ... or the process fails to exec right after start (exit code 127 or similar).
        Ok(()) => {
            let state = wait_state(&rt, &spec.id, |s| {
                !matches!(s, ContainerState::Running | ContainerState::Created)
            })
            .await;
            assert!(
                matches!(state, ContainerState::Exited { code } if code != 0),
                "{state:?}"
            );
            rt.remove(&t.node, &spec.id).await.unwrap();
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[tokio::test]
async fn unknown_image_fails_to_start() {
    let Some(t) = target() else { return };
    let rt = runtime().unwrap();
    let spec = t.spec(&ContainerConfig::new("x", "nowhere/none:1"));
    let err = rt.create_and_start(&t.node, &spec).await.unwrap_err();
    assert!(matches!(err, RuntimeError::StartFailed { .. }), "{err:?}");
    // The image subsystem's typed error is kept as the cause.
    let cause = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<RuntimeError>());
    assert!(
        matches!(
            cause,
            Some(RuntimeError::Image {
                source: ImageError::NotLocal,
                ..
            })
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("image nowhere/none:1 is not available locally"),
        "{err}"
    );
    assert!(rt.status(&t.node, &spec.id).await.is_err());
}

#[test]
fn missing_binary_names_path_and_install_command() {
    let dir = tempfile::tempdir().unwrap();
    let err = OciRuntime::new(OciConfig {
        binary: "/nonexistent/youki".into(),
        root: dir.path().join("state"),
        data_dir: dir.path().join("data"),
        cgroup_parent: CGROUP_PARENT.into(),
        node: NodeId::from(NODE),
        images: Arc::new(LocalImages::new()),
        ..OciConfig::defaults()
    })
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("/nonexistent/youki") && msg.contains("cargo install youki"),
        "{msg}"
    );
    assert!(!err.is_transient());
}

#[tokio::test]
async fn other_nodes_are_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let rt = OciRuntime::new(OciConfig {
        binary: "/bin/true".into(),
        root: dir.path().join("state"),
        data_dir: dir.path().join("data"),
        cgroup_parent: CGROUP_PARENT.into(),
        node: NodeId::from(NODE),
        images: Arc::new(LocalImages::new()),
        ..OciConfig::defaults()
    })
    .unwrap();
    let other = NodeId::from("elsewhere");
    assert!(matches!(
        rt.list(&other).await,
        Err(RuntimeError::NodeUnreachable { .. })
    ));
    assert!(matches!(
        rt.status(&other, &"x".into()).await,
        Err(RuntimeError::NodeUnreachable { .. })
    ));
    assert!(rt.list(&NodeId::from(NODE)).await.unwrap().is_empty());
}

/// A restarted daemon (a second `OciRuntime` on the same directories, which did not create the
/// container) lists it with its ownership from the bundle, and can stop and remove it.
#[tokio::test]
async fn another_runtime_process_adopts_containers() {
    let Some(t) = target() else { return };
    let config = own_config("adopts").unwrap();
    let rt = OciRuntime::new(config.clone()).unwrap();
    let spec = t.spec(&busybox("adopted", &["sleep", "3600"]));
    rt.create_and_start(&t.node, &spec).await.unwrap();
    let restarted = OciRuntime::new(config).unwrap();
    let listed = restarted.list(&t.node).await.unwrap();
    let info = listed
        .iter()
        .find(|c| c.id == spec.id)
        .unwrap_or_else(|| panic!("{} not listed: {listed:?}", spec.id));
    assert_eq!(info.instance_id, spec.instance_id);
    assert_eq!(info.workload_id, spec.workload_id);
    assert_eq!(info.state, ContainerState::Running);
    restarted
        .stop(&t.node, &spec.id, Duration::from_millis(300))
        .await
        .unwrap();
    let state = restarted.status(&t.node, &spec.id).await.unwrap().state;
    assert!(
        !matches!(state, ContainerState::Running | ContainerState::Created),
        "{state:?}"
    );
    restarted.remove(&t.node, &spec.id).await.unwrap();
    assert!(!restarted.bundle_path(&spec.id).exists());
    // The first runtime's table still has it: its remove is idempotent.
    rt.remove(&t.node, &spec.id).await.unwrap();
}

/// A daemon killed between the runtime's `create` and `start` leaves a container in state
/// `created` that nobody will start: the next process reports it `Failed`, its `list` removes
/// it, and nothing is left behind.
#[tokio::test]
async fn a_container_created_but_never_started_by_an_earlier_process_is_removed() {
    let Some(t) = target() else { return };
    let config = own_config("unstarted").unwrap();
    let rt = OciRuntime::new(config.clone()).unwrap();
    // A bundle as the runtime writes it: a started container's, copied under another id.
    let model = t.spec(&busybox("model", &["sleep", "3600"]));
    rt.create_and_start(&t.node, &model).await.unwrap();
    let spec = t.spec(&busybox("unstarted", &["sleep", "3600"]));
    let bundle = rt.bundle_path(&spec.id);
    let copy = std::process::Command::new("cp")
        .arg("-a")
        .arg(rt.bundle_path(&model.id))
        .arg(&bundle)
        .status()
        .unwrap();
    assert!(copy.success());
    rt.remove(&t.node, &model.id).await.unwrap();
    let json = std::fs::read_to_string(bundle.join("config.json"))
        .unwrap()
        .replace(model.id.as_str(), spec.id.as_str())
        .replace(model.instance_id.as_str(), spec.instance_id.as_str())
        .replace(model.workload_id.as_str(), spec.workload_id.as_str());
    std::fs::write(bundle.join("config.json"), json).unwrap();
    let _ = std::fs::remove_file(bundle.join("exit_code"));
    // `create` alone, as the killed daemon ran it (its output is not waited for: the init
    // holds it open until `start`); youki's occasional seal failure is retried.
    let cli = container_runtime_interface::oci::cli::Cli::new(&config.binary, &config.root);
    for _ in 0..3 {
        let status = tokio::process::Command::new(&config.binary)
            .arg("--root")
            .arg(&config.root)
            .args(["create", "--bundle"])
            .arg(&bundle)
            .arg(spec.id.as_str())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await
            .unwrap();
        if status.success() {
            break;
        }
        let _ = cli.delete_force(spec.id.as_str()).await;
    }
    let state = cli.state(spec.id.as_str()).await.unwrap().expect("created");
    assert_eq!(state.status, "created");

    let restarted = OciRuntime::new(config).unwrap();
    let status = restarted.status(&t.node, &spec.id).await.unwrap().state;
    assert!(
        matches!(status, ContainerState::Failed { .. }),
        "{status:?}"
    );
    // `list` removes it (the core then finds the instance's container gone and starts it
    // again soon, as a container that never ran, not after a crash-loop delay).
    let listed = restarted.list(&t.node).await.unwrap();
    assert!(
        listed.iter().all(|c| c.id != spec.id),
        "still listed: {listed:?}"
    );
    // Removing it again is a no-op.
    restarted.remove(&t.node, &spec.id).await.unwrap();
    assert!(!cli.knows(spec.id.as_str()), "youki still has it");
    assert!(!bundle.exists(), "bundle left");
    let left: Vec<_> = restarted
        .cgroup_dirs(&spec.id)
        .into_iter()
        .filter(|d| d.exists())
        .collect();
    assert!(left.is_empty(), "cgroup dirs left: {left:?}");
}

/// A daemon killed while it prepared a bundle (the root filesystem half copied, no
/// `config.json` yet, nothing in the runtime) leaves a directory nothing names: the next
/// process's `list` removes it.
#[tokio::test]
async fn list_removes_the_bundle_of_a_create_cut_short() {
    let Some(t) = target() else { return };
    let config = own_config("cut-short").unwrap();
    let rt = OciRuntime::new(config.clone()).unwrap();
    let spec = t.spec(&busybox("cut-short", &["sleep", "3600"]));
    let bundle = rt.bundle_path(&spec.id);
    std::fs::create_dir_all(bundle.join("rootfs/bin")).unwrap();
    std::fs::write(bundle.join("rootfs/bin/half"), "half a copy").unwrap();
    let restarted = OciRuntime::new(config).unwrap();
    let listed = restarted.list(&t.node).await.unwrap();
    assert!(listed.iter().all(|c| c.id != spec.id), "listed: {listed:?}");
    assert!(!bundle.exists(), "the cut-short bundle is left");
}

/// Runs `script` with `sh -c` in a busybox container changed by `change`; its output.
async fn output_of(name: &str, script: &str, change: impl FnOnce(&mut ContainerConfig)) -> String {
    let t = target().expect("checked by the caller");
    let rt = runtime().unwrap();
    let mut config = busybox(name, &["sh", "-c", script]);
    change(&mut config);
    let spec = t.spec(&config);
    rt.create_and_start(&t.node, &spec).await.unwrap();
    wait_state(&rt, &spec.id, |s| s.has_exited()).await;
    let log = std::fs::read_to_string(rt.log_path(&spec.id)).unwrap();
    rt.remove(&t.node, &spec.id).await.unwrap();
    log
}

/// Docker's defaults: the seccomp filter refuses new namespaces and mounts, `CAP_NET_RAW` is
/// not among the capabilities, and writing to the root filesystem works unless it is read-only.
#[tokio::test]
async fn docker_defaults_refuse_namespaces_mounts_and_raw_sockets() {
    if target().is_none() {
        return;
    }
    let log = output_of(
        "defaults",
        "busybox unshare -n true 2>&1; echo unshare=$?; \
         busybox unshare -U true 2>&1; echo userns=$?; \
         busybox mount -t tmpfs none /tmp 2>&1; echo mount=$?; \
         touch /written && echo write=ok; grep -E 'CapEff|Seccomp' /proc/self/status",
        |_| {},
    )
    .await;
    let value = |key: &str| {
        log.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {log}"))
            .trim()
            .to_owned()
    };
    assert_ne!(value("unshare="), "0", "unshare must fail: {log}");
    // A user namespace needs no capability: only the filter refuses it.
    assert_ne!(value("userns="), "0", "unshare -U must fail: {log}");
    assert_eq!(
        value("Seccomp:"),
        "2",
        "a seccomp filter is in force: {log}"
    );
    assert_ne!(value("mount="), "0", "mount must fail: {log}");
    assert!(log.contains("Operation not permitted"), "{log}");
    assert_eq!(value("write="), "ok", "{log}");
    let effective = u64::from_str_radix(&value("CapEff:"), 16).unwrap();
    assert_eq!(
        effective & (1 << 13),
        0,
        "CAP_NET_RAW (13) is dropped: {log}"
    );
    assert_ne!(effective & 1, 0, "CAP_CHOWN (0) is kept: {log}");
    assert_eq!(effective & (1 << 21), 0, "no CAP_SYS_ADMIN (21): {log}");

    // Read-only root, as another user than the image's.
    let log = output_of(
        "readonly",
        "touch /written 2>&1; echo write=$?; id -u",
        |c| {
            c.read_only_root = true;
            c.user = Some("65534:65534".into());
        },
    )
    .await;
    assert!(!log.contains("write=0"), "the root is read-only: {log}");
    assert!(log.lines().any(|l| l.trim() == "65534"), "{log}");
}

fn args(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// `exec` runs a command in the container: its exit code and (bounded) output come back; a
/// command youki cannot run is an error, not an exit code; a command that hangs is cut at
/// the timeout and killed inside the container too.
#[tokio::test]
async fn exec_runs_commands_in_the_container() {
    let Some(t) = target() else { return };
    let rt = runtime().unwrap();
    let spec = t.spec(&busybox("execd", &["sleep", "3600"]));
    rt.create_and_start(&t.node, &spec).await.unwrap();
    let long = Duration::from_secs(20);

    let out = rt
        .exec(
            &t.node,
            &spec.id,
            &args(&["sh", "-c", "echo out; echo err >&2; exit 3"]),
            long,
        )
        .await
        .unwrap();
    assert_eq!(out.code, 3, "{out:?}");
    assert!(
        out.output.contains("out") && out.output.contains("err"),
        "{out:?}"
    );

    let chatty = "i=0; while [ $i -lt 2000 ]; do echo 0123456789; i=$((i+1)); done";
    let out = rt
        .exec(&t.node, &spec.id, &args(&["sh", "-c", chatty]), long)
        .await
        .unwrap();
    assert_eq!(out.code, 0);
    assert_eq!(
        out.output.len(),
        container_runtime_interface::oci::EXEC_OUTPUT_MAX
    );

    let err = rt
        .exec(&t.node, &spec.id, &args(&["no-such-program"]), long)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no-such-program"), "{err}");

    let started = std::time::Instant::now();
    let err = rt
        .exec(
            &t.node,
            &spec.id,
            &args(&["sleep", "61"]),
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(15), "{err}");
    assert!(err.to_string().contains("did not finish"), "{err}");
    // The hung command does not stay behind in the container, nor as a zombie of this
    // process, which would keep the container's init from ever exiting (`stop` below).
    let scan = "for p in /proc/[0-9]*; do cat $p/cmdline; echo; done";
    let mut left = true;
    for _ in 0..50 {
        let out = rt
            .exec(&t.node, &spec.id, &args(&["sh", "-c", scan]), long)
            .await
            .unwrap();
        left = out.output.contains("sleep\u{0}61\u{0}");
        if !left {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!left, "the timed-out command still runs in the container");

    rt.stop(&t.node, &spec.id, Duration::from_secs(5))
        .await
        .unwrap();
    let err = rt
        .exec(&t.node, &spec.id, &args(&["true"]), long)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not running"), "{err}");
    rt.remove(&t.node, &spec.id).await.unwrap();
    assert!(matches!(
        rt.exec(&t.node, &spec.id, &args(&["true"]), long).await,
        Err(RuntimeError::NotFound { .. })
    ));
}

/// Probes end to end on youki: `exec` checks through `youki exec` make a container ready, and
/// a failing liveness check kills it, reported as `Killed` with the probe's reason.
#[tokio::test]
async fn exec_probes_drive_readiness_and_liveness() {
    use container_runtime_interface::{ProbingConfig, ProbingRuntime};
    use orchestrator_shared_types::Probe;
    let Some(t) = target() else { return };
    let rt = runtime().unwrap();
    let probing = ProbingRuntime::new(
        rt,
        ProbingConfig {
            kill_grace: Duration::from_secs(1),
            ..ProbingConfig::default()
        },
    )
    .unwrap();
    let mut rx = probing.subscribe();
    let mut config = busybox(
        "probed",
        &[
            "sh",
            "-c",
            "sleep 1; echo > /tmp/ready; sleep 4; echo > /tmp/dead; sleep 3600",
        ],
    );
    let every_second = |mut p: Probe| {
        p.period_seconds = 1;
        p.timeout_seconds = 5;
        p.failure_threshold = 2;
        p
    };
    config.readiness_probe = Some(every_second(Probe::exec(&["cat", "/tmp/ready"])));
    config.liveness_probe = Some(every_second(Probe::exec(&[
        "sh",
        "-c",
        "test ! -e /tmp/dead",
    ])));
    let spec = t.spec(&config);
    probing.create_and_start(&t.node, &spec).await.unwrap();
    let mut seen = Vec::new();
    let mut ready = false;
    let end = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let e = rx.recv().await.unwrap();
            if e.container_id != spec.id {
                continue;
            }
            if e.health.as_ref().is_some_and(|h| h.ready) {
                ready = true;
            }
            if e.state.has_exited() {
                return e;
            }
            seen.push(e);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("not killed within 60 s; saw {seen:#?}"));
    assert!(ready, "never ready; saw {seen:#?}");
    assert!(
        seen[0].health.as_ref().is_some_and(|h| !h.ready),
        "{seen:#?}"
    );
    assert!(
        matches!(&end.state, ContainerState::Killed { reason, .. }
            if reason == "liveness probe failed 2 times: `sh -c test ! -e /tmp/dead` exited with code 1"),
        "{end:?}"
    );
    probing.remove(&t.node, &spec.id).await.unwrap();
    probing.shutdown().await;
}
