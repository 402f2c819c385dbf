//! Open-loop REST load generator: a fixed request rate over many keep-alive connections, with a
//! create / get / list mix, against a running `orchestratord` (see `bench/rest-load.sh`).
//!
//! Unlike wrk (closed loop: each connection sends when the previous answer arrives, so at 200
//! connections the server is always saturated and latency is mostly queueing), every request here
//! has a scheduled send time and its latency is measured from that time. A slow answer therefore
//! counts against every request that had to wait for it (no coordinated omission).
//!
//! `cargo bench -p orchestratord --bench rest_load -- --server 127.0.0.1:8080 --rate 5000
//! --connections 200 --duration 20 --mix 1,8,1 --seeds 100`

mod common;

use common::arg;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct Settings {
    server: String,
    rate: f64,
    connections: usize,
    duration: Duration,
    mix: [u32; 3],
    seeds: u32,
}

/// What one connection saw.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    /// Second of the run (from its start) of each request slower than 100 ms.
    slow_at: Vec<u64>,
    non_2xx: u64,
    failures: u64,
}

fn main() {
    let mix: Vec<u32> = arg("--mix", "1,8,1")
        .split(',')
        .map(|p| p.parse().expect("--mix a,b,c"))
        .collect();
    let settings = Settings {
        server: arg("--server", "127.0.0.1:8080"),
        rate: arg("--rate", "5000").parse().expect("--rate"),
        connections: arg("--connections", "200").parse().expect("--connections"),
        duration: Duration::from_secs(arg("--duration", "20").parse().expect("--duration")),
        mix: [mix[0], mix[1], mix[2]],
        seeds: arg("--seeds", "100").parse().expect("--seeds"),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    runtime.block_on(run(settings));
}

async fn run(s: Settings) {
    let interval = Duration::from_secs_f64(s.connections as f64 / s.rate);
    let start = Instant::now()
        + Duration::from_millis(arg("--warmup-ms", "200").parse().expect("--warmup-ms"));
    let mut tasks = Vec::new();
    for conn in 0..s.connections {
        // Stagger the connections evenly over one interval.
        let first = start + interval.mul_f64(conn as f64 / s.connections as f64);
        let server = s.server.clone();
        let (mix, seeds, duration) = (s.mix, s.seeds, s.duration);
        tasks.push(tokio::spawn(async move {
            connection(conn, server, first, interval, start + duration, mix, seeds).await
        }));
    }
    let mut all = Tally::default();
    for t in tasks {
        let t = t.await.expect("connection task");
        all.latencies_us.extend(t.latencies_us);
        all.slow_at.extend(t.slow_at);
        all.non_2xx += t.non_2xx;
        all.failures += t.failures;
    }
    let elapsed = s.duration.as_secs_f64();
    all.latencies_us.sort_unstable();
    let pct = |p: f64| {
        let v = &all.latencies_us;
        if v.is_empty() {
            return 0.0;
        }
        let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
        v[i] as f64 / 1000.0
    };
    println!(
        "rest_load: target {:.0} req/s over {} connections for {:.0} s, mix create/get/list {:?}",
        s.rate, s.connections, elapsed, s.mix
    );
    println!(
        "  sent {} ({:.0} req/s), non-2xx {}, failed {}",
        all.latencies_us.len(),
        all.latencies_us.len() as f64 / elapsed,
        all.non_2xx,
        all.failures
    );
    println!(
        "  latency from scheduled send: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        pct(50.0),
        pct(90.0),
        pct(99.0),
        pct(99.9),
        pct(100.0)
    );
    if !all.slow_at.is_empty() {
        let mut by_second = std::collections::BTreeMap::new();
        for at in &all.slow_at {
            *by_second.entry(*at).or_insert(0u32) += 1;
        }
        println!("  requests over 100 ms, by second of the run: {by_second:?}");
    }
}

async fn connection(
    conn: usize,
    server: String,
    first: Instant,
    interval: Duration,
    end: Instant,
    mix: [u32; 3],
    seeds: u32,
) -> Tally {
    let mut tally = Tally::default();
    let Ok(stream) = TcpStream::connect(&server).await else {
        tally.failures += 1;
        return tally;
    };
    let _ = stream.set_nodelay(true);
    let mut stream = BufReader::new(stream);
    let total = mix.iter().sum::<u32>().max(1);
    let mut rng = fastrand::Rng::with_seed(conn as u64);
    let (mut n, mut created) = (0u64, 0u64);
    loop {
        let scheduled = first + interval.mul_f64(n as f64);
        if scheduled >= end {
            break;
        }
        tokio::time::sleep_until(scheduled.into()).await;
        let slot = (n % u64::from(total)) as u32;
        n += 1;
        let request = if slot < mix[0] {
            created += 1;
            let body = format!(
                r#"{{"name":"l{conn}-{created}","replicas":0,"containers":[{{"name":"main","image":"bench/app:1","resources":{{"cpu_millicores":10,"memory_mb":8}}}}]}}"#
            );
            format!(
                "POST /api/v1/workloads HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        } else if slot < mix[0] + mix[1] {
            format!(
                "GET /api/v1/workloads/seed-{} HTTP/1.1\r\nHost: bench\r\n\r\n",
                rng.u32(0..seeds.max(1))
            )
        } else {
            "GET /api/v1/workloads?limit=20 HTTP/1.1\r\nHost: bench\r\n\r\n".to_owned()
        };
        match exchange(&mut stream, request.as_bytes()).await {
            Ok(status) => {
                let us = u64::try_from(scheduled.elapsed().as_micros()).unwrap_or(u64::MAX);
                tally.latencies_us.push(us);
                if us > 100_000 {
                    let at = scheduled
                        .saturating_duration_since(first - interval)
                        .as_secs();
                    tally.slow_at.push(at);
                }
                if !(200..300).contains(&status) {
                    tally.non_2xx += 1;
                }
            }
            Err(_) => {
                tally.failures += 1;
                break;
            }
        }
    }
    tally
}

/// Sends one request and reads its whole response; returns the status code.
async fn exchange(stream: &mut BufReader<TcpStream>, request: &[u8]) -> std::io::Result<u16> {
    stream.get_mut().write_all(request).await?;
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut length = 0usize;
    loop {
        line.clear();
        stream.read_line(&mut line).await?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await?;
    Ok(status)
}
