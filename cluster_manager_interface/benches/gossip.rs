//! Gossip benchmarks: many `GossipClusterManager`s in one process on real UDP (127.0.0.1).
//!
//! ```text
//! cargo bench -p cluster_manager_interface --features gossip --bench gossip -- traffic --nodes N --seconds S
//! cargo bench -p cluster_manager_interface --features gossip --bench gossip -- detect --runs K [--nodes N]
//! cargo bench -p cluster_manager_interface --features gossip --bench gossip -- false-positives --nodes N --seconds S --burn-threads T
//! ```
//! * `traffic`: per-node bytes/s and datagrams/s (sent, received), mean and max, once all see
//!   each other.
//! * `detect`: start N nodes, wait until all see each other Ready, drop one abruptly (no
//!   shutdown, as a kill -9), time until the first and until every other node sees it `Down`.
//! * `false-positives`: T threads spin at 100% CPU while N live nodes gossip; counts every
//!   `Down` event (each one is false: every node is alive).

use cluster_manager_interface::{
    ClusterEvent, ClusterManager, GossipClusterManager, GossipConfig, Traffic,
};
use orchestrator_shared_types::{Node, NodeId, NodeStatus, Resources};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONVERGE_TIMEOUT: Duration = Duration::from_secs(300);

struct Args {
    command: String,
    nodes: usize,
    seconds: u64,
    runs: usize,
    burn_threads: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        command: String::new(),
        nodes: 3,
        seconds: 10,
        runs: 10,
        burn_threads: 2,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> usize {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a number"))
        };
        match arg.as_str() {
            "--bench" => {}
            "--nodes" => args.nodes = value("--nodes"),
            "--seconds" => args.seconds = value("--seconds") as u64,
            "--runs" => args.runs = value("--runs"),
            "--burn-threads" => args.burn_threads = value("--burn-threads"),
            command if !command.starts_with('-') && args.command.is_empty() => {
                args.command = command.to_owned()
            }
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

fn node(i: usize) -> Node {
    Node::new(format!("n{i:03}"), Resources::new(4000, 8192, 100_000))
        .with_label("zone", &format!("z{}", i % 3))
}

/// Starts `n` nodes seeded with the first three, and waits until every node sees all `n` Ready.
async fn cluster(n: usize) -> Vec<GossipClusterManager> {
    let mut managers: Vec<GossipClusterManager> = Vec::with_capacity(n);
    for i in 0..n {
        let mut config = GossipConfig::new(node(i), "bench", "127.0.0.1:0".parse().unwrap());
        config.seeds = managers
            .iter()
            .take(3)
            .map(|m| m.gossip_addr().to_string())
            .collect();
        managers.push(GossipClusterManager::start(config).await.expect("starts"));
    }
    let started = Instant::now();
    loop {
        let mut converged = true;
        for m in &managers {
            let nodes = m.nodes().await.unwrap();
            if nodes.len() != n || nodes.iter().any(|n| n.status != NodeStatus::Ready) {
                converged = false;
                break;
            }
        }
        if converged {
            break;
        }
        assert!(
            started.elapsed() < CONVERGE_TIMEOUT,
            "{n} nodes did not converge within {CONVERGE_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "{n} nodes converged in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    managers
}

fn mean_max(values: &[f64]) -> (f64, f64) {
    let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
    let max = values.iter().cloned().fold(0.0, f64::max);
    (mean, max)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

async fn traffic(args: &Args) {
    let managers = cluster(args.nodes).await;
    let before: Vec<_> = managers.iter().map(|m| m.traffic()).collect();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let secs = started.elapsed().as_secs_f64();
    let deltas: Vec<_> = managers
        .iter()
        .zip(&before)
        .map(|(m, b)| m.traffic().since(b))
        .collect();
    let per = |f: fn(&Traffic) -> u64| -> (f64, f64) {
        let v: Vec<f64> = deltas.iter().map(|d| f(d) as f64 / secs).collect();
        mean_max(&v)
    };
    println!("traffic: {} nodes, {:.1} s, per node:", args.nodes, secs);
    for (name, f) in [
        (
            "bytes/s sent",
            (|t: &Traffic| t.bytes_sent) as fn(&Traffic) -> u64,
        ),
        ("bytes/s received", |t| t.bytes_received),
        ("datagrams/s sent", |t| t.datagrams_sent),
        ("datagrams/s received", |t| t.datagrams_received),
    ] {
        let (mean, max) = per(f);
        println!("  {name:<22} mean {mean:>10.0}  max {max:>10.0}");
    }
    for m in managers {
        m.shutdown().await;
    }
}

async fn detect(args: &Args) {
    let mut firsts = Vec::new();
    let mut alls = Vec::new();
    for run in 0..args.runs {
        let mut managers = cluster(args.nodes).await;
        let victim = managers.pop().expect("at least two nodes");
        let victim_id: NodeId = victim.node_id().clone();
        let mut waiters = Vec::new();
        let t0 = Arc::new(std::sync::OnceLock::<Instant>::new());
        for m in &managers {
            let mut sub = m.subscribe();
            let victim_id = victim_id.clone();
            let t0 = t0.clone();
            waiters.push(tokio::spawn(async move {
                loop {
                    match sub.recv().await {
                        Some(ClusterEvent::NodeUpdated(n))
                            if n.id == victim_id && n.status == NodeStatus::Down =>
                        {
                            return t0.get().expect("set before the drop").elapsed();
                        }
                        Some(ClusterEvent::Resync(nodes))
                            if nodes
                                .iter()
                                .any(|n| n.id == victim_id && n.status == NodeStatus::Down) =>
                        {
                            return t0.get().expect("set before the drop").elapsed();
                        }
                        Some(_) => {}
                        None => panic!("subscription ended"),
                    }
                }
            }));
        }
        t0.set(Instant::now()).unwrap();
        drop(victim); // abrupt: no shutdown, no leave
        let mut times = Vec::new();
        for w in waiters {
            times.push(w.await.unwrap().as_secs_f64());
        }
        let first = times.iter().cloned().fold(f64::INFINITY, f64::min);
        let all = times.iter().cloned().fold(0.0, f64::max);
        println!(
            "detect run {run}: {} nodes, first Down after {first:.3} s, all {} others after {all:.3} s",
            args.nodes,
            times.len()
        );
        firsts.push(first);
        alls.push(all);
        for m in managers {
            m.shutdown().await;
        }
    }
    println!(
        "detect: {} runs, {} nodes: median first {:.3} s, median all {:.3} s",
        args.runs,
        args.nodes,
        median(&mut firsts),
        median(&mut alls)
    );
}

async fn false_positives(args: &Args) {
    let managers = cluster(args.nodes).await;
    let mut subs: Vec<_> = managers.iter().map(|m| m.subscribe()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let burners: Vec<_> = (0..args.burn_threads)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x: u64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            })
        })
        .collect();
    let started = Instant::now();
    let mut downs = 0usize;
    let mut details = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.seconds);
    // Each subscription is drained in turn; any Down event is false (all nodes live).
    while tokio::time::Instant::now() < deadline {
        for (i, sub) in subs.iter_mut().enumerate() {
            while let Ok(Some(event)) =
                tokio::time::timeout(Duration::from_millis(1), sub.recv()).await
            {
                let down = match &event {
                    ClusterEvent::NodeUpdated(n) if n.status == NodeStatus::Down => {
                        vec![n.id.clone()]
                    }
                    ClusterEvent::Resync(nodes) => nodes
                        .iter()
                        .filter(|n| n.status == NodeStatus::Down)
                        .map(|n| n.id.clone())
                        .collect(),
                    _ => vec![],
                };
                for id in down {
                    downs += 1;
                    details.push(format!(
                        "{:.1} s: {} saw {} Down",
                        started.elapsed().as_secs_f64(),
                        managers[i].node_id(),
                        id
                    ));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for b in burners {
        b.join().unwrap();
    }
    for d in &details {
        println!("  {d}");
    }
    println!(
        "false-positives: {} nodes, {} s, {} burn threads: {downs} false Down events",
        args.nodes, args.seconds, args.burn_threads
    );
    for m in managers {
        m.shutdown().await;
    }
}

fn main() {
    let args = parse_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        match args.command.as_str() {
            "traffic" => traffic(&args).await,
            "detect" => detect(&args).await,
            "false-positives" => false_positives(&args).await,
            // `cargo bench` without arguments (or with a filter): run nothing heavy.
            _ => eprintln!(
                "usage: gossip (traffic --nodes N --seconds S | detect --runs K [--nodes N] | \
                 false-positives --nodes N --seconds S --burn-threads T)"
            ),
        }
    });
}
