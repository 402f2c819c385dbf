//! CPU cost of probing: N containers (default 500) on the simulated runtime, each with an
//! HTTP readiness probe and a TCP liveness probe every second, against one HTTP server on
//! 127.0.0.1 served by a child process (this binary with `serve`), so that the CPU use printed
//! (this process's, over a measured window) is the probes' alone.
//!
//! `cargo bench -p container_runtime_interface --features oci --bench probe_cpu -- [N] [SECONDS] [http|tcp|both]`

use container_runtime_interface::{
    ContainerRuntime, ContainerSpec, ProbingConfig, ProbingRuntime, SimulatedRuntime,
    SimulatedRuntimeConfig,
};
use orchestrator_shared_types::{
    ContainerConfig, ContainerId, InstanceId, NodeId, PortMapping, Probe, Protocol, WorkloadId,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// User + system CPU time of this process, from `/proc/self/stat` (clock ticks of 10 ms).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let close = stat.rfind(')').expect("stat format");
    let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    // After "pid (comm) ": state is field 0, utime 11, stime 12.
    let ticks: u64 =
        fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

async fn server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = conn
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    port
}

/// Serves HTTP on a port of 127.0.0.1 printed on stdout, until killed.
fn serve() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let port = server().await;
        println!("{port}");
        std::future::pending::<()>().await;
    });
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if args.first().is_some_and(|a| a == "serve") {
        return serve();
    }
    let mut child = std::process::Command::new(std::env::current_exe().expect("current exe"))
        .arg("serve")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the server");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("server port");
    let port: u16 = line.trim().parse().expect("server port");
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(500);
    let secs: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    // `http`, `tcp` or `both` (default): which probes each container has.
    let kinds = args.get(2).cloned().unwrap_or_else(|| "both".to_owned());
    let per_container = if kinds == "both" { 2 } else { 1 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let sim: Arc<dyn ContainerRuntime> = Arc::new(SimulatedRuntime::new(SimulatedRuntimeConfig {
            start_delay: Duration::ZERO,
            ..SimulatedRuntimeConfig::default()
        }));
        let probing = ProbingRuntime::new(sim, ProbingConfig::default()).expect("probing runtime");
        let mut rx = probing.subscribe();
        let node = NodeId::from("local");
        for i in 0..n {
            let mut config = ContainerConfig::new("web", "img");
            config.ports = vec![PortMapping {
                container_port: 80,
                host_port: Some(port),
                protocol: Protocol::Tcp,
            }];
            let period = |mut p: Probe| {
                p.period_seconds = 1;
                p
            };
            if kinds != "tcp" {
                config.readiness_probe = Some(period(Probe::http("/ready", 80)));
            }
            if kinds != "http" {
                config.liveness_probe = Some(period(Probe::tcp(80)));
            }
            let spec = ContainerSpec {
                id: ContainerId::from(format!("c-{i}")),
                instance_id: InstanceId::from(format!("i-{i}")),
                workload_id: WorkloadId::from("wl"),
                config,
            };
            probing.create_and_start(&node, &spec).await.expect("create");
        }
        // Drains events so the channel never lags; counts health changes.
        let drain = tokio::spawn(async move {
            let mut events = 0u64;
            while rx.recv().await.is_ok() {
                events += 1;
            }
            events
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        let (cpu0, wall0) = (cpu_time(), Instant::now());
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let (cpu, wall) = (cpu_time() - cpu0, wall0.elapsed());
        let ready = probing
            .list(&node)
            .await
            .expect("list")
            .iter()
            .filter(|c| c.health.as_ref().is_some_and(|h| h.ready))
            .count();
        println!(
            "{n} containers, {kinds} probes every 1 s ({} checks/s): CPU {:.1} % of one core over {:.1} s (probes alone; the server is another process); {ready}/{n} ready",
            per_container * n,
            100.0 * cpu.as_secs_f64() / wall.as_secs_f64(),
            wall.as_secs_f64()
        );
        probing.shutdown().await;
        drop(probing);
        drain.abort();
    });
    let _ = child.kill();
    let _ = child.wait();
}
