//! `ProbingRuntime` from outside, over the simulated runtime, probing a real HTTP server on
//! 127.0.0.1 (port 0) whose answer the tests flip. Real time: probes run at most once a
//! second, so each test takes a few seconds; the bounds on waits are generous.
#![cfg(feature = "oci")]

use container_runtime_interface::{
    ContainerEvent, ContainerRuntime, ContainerSpec, ContainerState, Health, ProbingConfig,
    ProbingRuntime, SimulatedRuntime, SimulatedRuntimeConfig,
};
use orchestrator_shared_types::{
    ContainerConfig, ContainerId, InstanceId, NodeId, PortMapping, Probe, Protocol, WorkloadId,
};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast;

/// How long any awaited change may take (probes run every second).
const WAIT: Duration = Duration::from_secs(20);

const OK: u8 = 0;
const FAIL: u8 = 1;
const HANG: u8 = 2;

/// An HTTP server answering 200 (`OK`), 503 (`FAIL`), or nothing at all (`HANG`).
struct Server {
    port: u16,
    mode: Arc<AtomicU8>,
}

impl Server {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(AtomicU8::new(OK));
        let m = Arc::clone(&mode);
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let m = Arc::clone(&m);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut got = Vec::new();
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    let answer: &[u8] = match m.load(Ordering::SeqCst) {
                        OK => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        FAIL => b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        _ => {
                            // Holds the connection open without answering.
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            return;
                        }
                    };
                    let _ = conn.write_all(answer).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        Self { port, mode }
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }
}

fn node() -> NodeId {
    NodeId::from("local")
}

/// Container `name` whose port 80 is mapped dynamically to `host_port` (as the core passes
/// it: `PORT_80`).
fn spec(name: &str, host_port: u16) -> ContainerSpec {
    let mut config = ContainerConfig::new(name, "img");
    config.ports = vec![PortMapping {
        container_port: 80,
        host_port: Some(0),
        protocol: Protocol::Tcp,
    }];
    config.env.insert("PORT_80".into(), host_port.to_string());
    ContainerSpec {
        id: ContainerId::from(format!("inst-{name}")),
        instance_id: InstanceId::from("inst"),
        workload_id: WorkloadId::from("wl"),
        config,
    }
}

fn fast(mut probe: Probe, failures: u32) -> Probe {
    probe.period_seconds = 1;
    probe.timeout_seconds = 1;
    probe.failure_threshold = failures;
    probe
}

fn probing(sim: &Arc<SimulatedRuntime>, state_dir: Option<&std::path::Path>) -> ProbingRuntime {
    ProbingRuntime::new(
        Arc::clone(sim) as Arc<dyn ContainerRuntime>,
        ProbingConfig {
            state_dir: state_dir.map(ToOwned::to_owned),
            kill_grace: Duration::from_secs(1),
            ..ProbingConfig::default()
        },
    )
    .unwrap()
}

fn simulated() -> Arc<SimulatedRuntime> {
    Arc::new(SimulatedRuntime::new(SimulatedRuntimeConfig {
        start_delay: Duration::from_millis(5),
        ..SimulatedRuntimeConfig::default()
    }))
}

/// The next event of container `id` that `wanted` accepts; panics after [`WAIT`].
async fn wait_for(
    rx: &mut broadcast::Receiver<ContainerEvent>,
    id: &ContainerId,
    what: &str,
    wanted: impl Fn(&ContainerEvent) -> bool,
) -> ContainerEvent {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(WAIT, async {
        loop {
            let e = rx.recv().await.expect("event channel");
            if e.container_id == *id {
                if wanted(&e) {
                    return e;
                }
                seen.push(e);
            }
        }
    })
    .await;
    match found {
        Ok(e) => e,
        Err(_) => panic!("no event {what} for {id} within {WAIT:?}; saw {seen:#?}"),
    }
}

fn ready(e: &ContainerEvent) -> bool {
    e.state == ContainerState::Running && e.health.as_ref().is_some_and(|h| h.ready)
}

fn not_ready_with(text: &'static str) -> impl Fn(&ContainerEvent) -> bool {
    move |e| {
        e.state == ContainerState::Running
            && e.health
                .as_ref()
                .is_some_and(|h| !h.ready && h.message.as_deref().is_some_and(|m| m.contains(text)))
    }
}

#[tokio::test]
async fn readiness_follows_the_server() {
    let server = Server::start().await;
    server.set(FAIL);
    let sim = simulated();
    let rt = probing(&sim, None);
    let mut rx = rt.subscribe();
    let mut s = spec("web", server.port);
    s.config.readiness_probe = Some(fast(Probe::http("/ready", 80), 2));
    rt.create_and_start(&node(), &s).await.unwrap();

    // The first Running event already says what is awaited.
    let first = wait_for(&mut rx, &s.id, "running", |e| {
        e.state == ContainerState::Running
    })
    .await;
    assert_eq!(
        first.health,
        Some(Health {
            ready: false,
            message: Some("web: waiting for the readiness probe".into())
        })
    );
    // Failing from the start: not ready, with the reason.
    wait_for(
        &mut rx,
        &s.id,
        "failing",
        not_ready_with("web: readiness probe failed 1 times: HTTP 503 from GET /ready"),
    )
    .await;
    server.set(OK);
    wait_for(&mut rx, &s.id, "ready", ready).await;
    let status = rt.status(&node(), &s.id).await.unwrap();
    assert_eq!(
        status.health,
        Some(Health {
            ready: true,
            message: None
        })
    );
    server.set(FAIL);
    let e = wait_for(
        &mut rx,
        &s.id,
        "not ready",
        not_ready_with("readiness probe failed 2 times: HTTP 503 from GET /ready"),
    )
    .await;
    assert_eq!(e.state, ContainerState::Running);
    server.set(OK);
    wait_for(&mut rx, &s.id, "ready again", ready).await;
    let listed = rt.list(&node()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].health.as_ref().is_some_and(|h| h.ready));
    rt.shutdown().await;
}

#[tokio::test]
async fn a_failing_liveness_probe_kills_with_its_reason() {
    let server = Server::start().await;
    let sim = simulated();
    let rt = probing(&sim, None);
    let mut rx = rt.subscribe();
    let mut s = spec("api", server.port);
    s.config.liveness_probe = Some(fast(Probe::http("/healthz", 80), 2));
    rt.create_and_start(&node(), &s).await.unwrap();
    let running = wait_for(&mut rx, &s.id, "running", |e| {
        e.state == ContainerState::Running
    })
    .await;
    // Liveness alone: ready from the start.
    assert!(running.health.is_some_and(|h| h.ready));
    // Healthy for a while: no kill.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        rt.status(&node(), &s.id).await.unwrap().state,
        ContainerState::Running
    );
    server.set(FAIL);
    let reason = "liveness probe failed 2 times: HTTP 503 from GET /healthz";
    let killed = wait_for(&mut rx, &s.id, "killed", |e| e.state.has_exited()).await;
    assert_eq!(
        killed.state,
        ContainerState::Killed {
            code: container_runtime_interface::simulated::STOPPED_EXIT_CODE,
            reason: reason.into()
        }
    );
    // Listings say the same.
    assert!(matches!(
        rt.status(&node(), &s.id).await.unwrap().state,
        ContainerState::Killed { reason: r, .. } if r == reason
    ));
    rt.shutdown().await;
}

#[tokio::test]
async fn refused_connections_and_failed_execs_count_as_failures() {
    // A port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let sim = simulated();
    let rt = probing(&sim, None);
    // One receiver per container: waiting for one skips the other's events.
    let (mut rx, mut rx_exec) = (rt.subscribe(), rt.subscribe());
    let mut tcp = spec("tcp", closed);
    tcp.config.liveness_probe = Some(fast(Probe::tcp(80), 2));
    // The simulated runtime cannot exec: a startup probe by command never passes.
    let mut exec = spec("exec", closed);
    exec.config.startup_probe = Some(fast(Probe::exec(&["true"]), 2));
    exec.config.readiness_probe = Some(fast(Probe::tcp(80), 1));
    rt.create_and_start(&node(), &tcp).await.unwrap();
    rt.create_and_start(&node(), &exec).await.unwrap();
    let e = wait_for(&mut rx, &tcp.id, "killed", |e| e.state.has_exited()).await;
    assert!(
        matches!(&e.state, ContainerState::Killed { reason, .. }
            if reason == &format!("liveness probe failed 2 times: connection refused on port {closed}")),
        "{e:?}"
    );
    let e = wait_for(&mut rx_exec, &exec.id, "killed", |e| e.state.has_exited()).await;
    assert!(
        matches!(&e.state, ContainerState::Killed { reason, .. }
            if reason.starts_with("startup probe failed 2 times: `true`: ")
                && reason.contains("cannot run commands")),
        "{e:?}"
    );
    rt.shutdown().await;
}

#[tokio::test]
async fn a_hanging_server_fails_at_the_timeout() {
    let server = Server::start().await;
    let sim = simulated();
    let rt = probing(&sim, None);
    let mut rx = rt.subscribe();
    let mut s = spec("slow", server.port);
    s.config.readiness_probe = Some(fast(Probe::http("/ready", 80), 1));
    rt.create_and_start(&node(), &s).await.unwrap();
    wait_for(&mut rx, &s.id, "ready", ready).await;
    server.set(HANG);
    let started = tokio::time::Instant::now();
    wait_for(
        &mut rx,
        &s.id,
        "timed out",
        not_ready_with("no answer within 1s from GET /ready"),
    )
    .await;
    assert!(started.elapsed() < WAIT);
    rt.shutdown().await;
}

#[tokio::test]
async fn containers_without_probes_pass_through() {
    let sim = simulated();
    let rt = probing(&sim, None);
    let mut rx = rt.subscribe();
    let s = spec("plain", 1);
    rt.create_and_start(&node(), &s).await.unwrap();
    let e = wait_for(&mut rx, &s.id, "running", |e| {
        e.state == ContainerState::Running
    })
    .await;
    assert_eq!(e.health, None);
    assert_eq!(rt.status(&node(), &s.id).await.unwrap().health, None);
    rt.stop(&node(), &s.id, Duration::ZERO).await.unwrap();
    let e = wait_for(&mut rx, &s.id, "exit", |e| e.state.has_exited()).await;
    assert_eq!(
        e.state,
        ContainerState::Exited {
            code: container_runtime_interface::simulated::STOPPED_EXIT_CODE
        }
    );
    rt.shutdown().await;
}

/// A new process (a restarted daemon) probes the containers an earlier one registered, from
/// the state dir, once `list` shows them running; `remove` forgets them.
#[tokio::test]
async fn a_restarted_prober_picks_up_registered_containers() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let sim = simulated();
    let first = probing(&sim, Some(dir.path()));
    let mut rx = first.subscribe();
    let mut s = spec("kept", server.port);
    s.config.readiness_probe = Some(fast(Probe::http("/ready", 80), 1));
    first.create_and_start(&node(), &s).await.unwrap();
    wait_for(&mut rx, &s.id, "ready", ready).await;
    let file = dir.path().join(format!("{}.json", s.id));
    assert!(file.is_file(), "registration persisted");
    first.shutdown().await;
    drop(first);

    server.set(FAIL);
    let second = probing(&sim, Some(dir.path()));
    let mut rx = second.subscribe();
    // Before any listing nothing probes it; `list` picks it up, its readiness starts over.
    let listed = second.list(&node()).await.unwrap();
    assert_eq!(
        listed[0].health,
        Some(Health {
            ready: false,
            message: Some("kept: waiting for the readiness probe".into())
        })
    );
    wait_for(
        &mut rx,
        &s.id,
        "probed by the new process",
        not_ready_with("kept: readiness probe failed 1 times: HTTP 503 from GET /ready"),
    )
    .await;
    server.set(OK);
    wait_for(&mut rx, &s.id, "ready", ready).await;
    second.remove(&node(), &s.id).await.unwrap();
    assert!(!file.exists(), "registration removed with the container");
    second.shutdown().await;
}
