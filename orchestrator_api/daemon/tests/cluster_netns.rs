//! A cluster of three "machines" on this one: each a network namespace of its own
//! (`orchestrator_testkit::netns::NetHosts`) running a youki daemon, with etcd and the local
//! registry of the root namespace forwarded to them. Two web workloads (busybox httpd on a
//! dynamic host port) spread over the machines and answer on their machine's address; a
//! machine dies (its daemon and containers, kill -9) and its replicas answer again elsewhere;
//! the leader's daemon is killed and another leads within seconds, the containers of the
//! other machines untouched; the old leader restarts and converges. In a second cluster a
//! machine is cut off (its link down): its replicas are replaced, it stops its own containers,
//! and once healed every replica runs exactly once.
//!
//! Timings are printed (`--nocapture`), not asserted. Needs root, youki, the registry and etcd:
//! without them this prints why and passes, except with `CI=true` (a failure; see
//! `orchestrator_testkit::prerequisite_missing`).

use container_runtime_interface::oci::fence::process_alive;
use orchestrator_testkit::cluster::TestCluster;
use orchestrator_testkit::netns::NetHosts;
use orchestrator_testkit::{YoukiNode, YoukiSetup};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(90);
const WORKLOADS: [&str; 2] = ["alpha", "beta"];

/// A web workload of two replicas spread over the nodes, each serving "NAME on port PORT" with
/// busybox httpd on a dynamic host port (host network: the port is on its machine's address).
fn web(name: &str, image: &str) -> Value {
    json!({
        "name": name,
        "replicas": 2,
        "placement": "spread",
        "restart_policy": "Always",
        "containers": [{
            "name": "httpd",
            "image": image,
            "command": ["sh", "-c", format!(
                "mkdir -p /www && echo \"{name} on port $PORT\" > /www/index.html && \
                 exec httpd -f -p \"$PORT\" -h /www")],
            "ports": [{"container_port": 8080, "host_port": 0, "protocol": "tcp"}],
            "resources": {"cpu_millicores": 100, "memory_mb": 32}
        }]
    })
}

/// A Running replica: its workload, node, host port and container id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Replica {
    workload: String,
    node: String,
    port: u16,
    container: String,
}

/// The replicas as daemon `via` answers, if all four are Running (none on `not_on`).
fn replicas(c: &TestCluster, via: usize, not_on: &[&str]) -> Option<Vec<Replica>> {
    let mut out = Vec::new();
    for i in c.instances(via)? {
        if i["status"] != "Running" {
            return None;
        }
        let node = i["node_id"].as_str()?.to_owned();
        if not_on.contains(&node.as_str()) {
            return None;
        }
        out.push(Replica {
            // Instance ids are `WORKLOAD-SUFFIX` (`workload_id` is the workload's uuid).
            workload: i["id"].as_str()?.rsplit_once('-')?.0.to_owned(),
            node,
            port: i["ports"][0]["host_port"].as_u64()? as u16,
            container: i["container_ids"][0].as_str()?.to_owned(),
        });
    }
    out.sort();
    (out.len() == 4).then_some(out)
}

/// `GET /` of `addr` from the root namespace: the body, if it answers 200 within 2 s.
fn http_body(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    answer
        .starts_with("HTTP/1.")
        .then(|| answer.contains(" 200 "))?
        .then(|| answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()))?
}

/// Whether every replica answers on its node's address with its workload and port.
fn all_answer(replicas: &[Replica], ips: &BTreeMap<String, Ipv4Addr>) -> bool {
    replicas.iter().all(|r| {
        let addr = SocketAddr::from((ips[&r.node], r.port));
        http_body(addr).is_some_and(|b| b.trim() == format!("{} on port {}", r.workload, r.port))
    })
}

/// The two tests build a cluster of three machines each: one at a time on two cores.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Three netns machines, each a youki member, with both web workloads answering HTTP.
/// Dropped in field order: the daemons and etcd, the nodes' own clean-up, the hosts last.
struct Machines {
    c: TestCluster,
    nodes: Vec<YoukiNode>,
    ips: BTreeMap<String, Ipv4Addr>,
    /// The replicas as first placed.
    placed: Vec<Replica>,
    leader: usize,
    started: Instant,
    hosts: NetHosts,
}

const NAMES: [&str; 3] = ["m1", "m2", "m3"];

/// The cluster of [`Machines`]; `None` (skipped) without root, youki, the registry or etcd.
fn machines() -> Option<Machines> {
    let started = Instant::now();
    let setup = YoukiSetup::detect()?;
    let mut hosts = NetHosts::create(3)?;
    let registry = hosts.forward(setup.registry_addr());
    let image = setup.image_at(registry);
    let nodes: Vec<YoukiNode> = NAMES
        .iter()
        .enumerate()
        .map(|(i, n)| YoukiNode::new(&setup, n).on_host(hosts.host(i), registry))
        .collect();
    let ips: BTreeMap<String, Ipv4Addr> = NAMES
        .iter()
        .enumerate()
        .map(|(i, n)| ((*n).to_owned(), hosts.host(i).ip))
        .collect();
    let mut c = TestCluster::etcd_only_for(&mut hosts)?;
    for node in &nodes {
        let d = node.member_of(&c).start();
        assert_eq!(d.addr().ip(), node.host().unwrap().ip);
        c.add(d);
    }
    let leader = c.wait_for_leader(Duration::from_secs(30));
    eprintln!(
        "cluster of 3 netns machines up, leader m{} ({:?})",
        leader + 1,
        started.elapsed()
    );

    // Two workloads, two replicas each, spread: each answers on its machine's address.
    for w in WORKLOADS {
        let (status, body) = c
            .daemon(0)
            .send_json("POST", "/api/v1/workloads", Some(&web(w, &image)))
            .unwrap();
        assert_eq!(status, 201, "{body}");
    }
    let t = Instant::now();
    let mut placed = Vec::new();
    c.wait_for("4 replicas running and answering HTTP", WAIT, |c| {
        replicas(c, 0, &[]).is_some_and(|r| {
            placed = r;
            all_answer(&placed, &ips)
        })
    });
    eprintln!("4 replicas answering after {:?}: {placed:?}", t.elapsed());
    for w in WORKLOADS {
        let on: BTreeSet<&str> = placed
            .iter()
            .filter(|r| r.workload == w)
            .map(|r| r.node.as_str())
            .collect();
        assert_eq!(on.len(), 2, "{w} spread over two machines: {placed:?}");
    }
    Some(Machines {
        c,
        nodes,
        ips,
        placed,
        leader,
        started,
        hosts,
    })
}

impl Machines {
    /// The machine that is not the leader with the most replicas.
    fn busiest_follower(&self) -> usize {
        (0..3)
            .filter(|i| *i != self.leader)
            .max_by_key(|i| self.placed.iter().filter(|r| r.node == NAMES[*i]).count())
            .unwrap()
    }
}

#[test]
fn three_netns_machines_replace_a_dead_one_and_survive_a_leader_kill() {
    let _serial = serial();
    let Some(mut m) = machines() else {
        return;
    };
    let victim = m.busiest_follower();
    let (c, nodes, ips, placed, leader, started) =
        (&mut m.c, &m.nodes, &m.ips, &m.placed, m.leader, m.started);
    let names = NAMES;

    // A machine that is not the leader dies (daemon and containers, kill -9): the non-leader
    // with the most replicas.
    let lost = placed.iter().filter(|r| r.node == names[victim]).count();
    assert!(lost > 0, "{placed:?}");
    let t = Instant::now();
    nodes[victim].crash(c.daemon_mut(victim));
    let mut after_crash = Vec::new();
    c.wait_for(
        "the dead machine's replicas running and answering elsewhere",
        WAIT,
        |c| {
            replicas(c, leader, &[names[victim]]).is_some_and(|r| {
                after_crash = r;
                all_answer(&after_crash, ips)
            })
        },
    );
    eprintln!(
        "TIMING: {lost} replica(s) of dead machine {} replaced and answering after {:?}",
        names[victim],
        t.elapsed()
    );
    // The replicas that did not move are the same containers.
    for r in placed.iter().filter(|r| r.node != names[victim]) {
        assert!(after_crash.contains(r), "{r:?} untouched: {after_crash:?}");
    }

    // kill -9 the leader's daemon only: another one leads within seconds; the containers of
    // the machine that neither died nor led are untouched (same ids, same pids).
    let survivor = (0..3).find(|i| *i != leader && *i != victim).unwrap();
    let kept: Vec<(String, i32)> = after_crash
        .iter()
        .filter(|r| r.node == names[survivor])
        .map(|r| (r.container.clone(), nodes[survivor].pid(&r.container)))
        .collect();
    // The leader's own containers, which outlive its daemon until its watchdog kills them.
    let orphans: Vec<i32> = after_crash
        .iter()
        .filter(|r| r.node == names[leader])
        .map(|r| nodes[leader].pid(&r.container))
        .collect();
    let t = Instant::now();
    c.daemon_mut(leader).kill9();
    let new_leader = c.wait_for_leader(Duration::from_secs(30));
    eprintln!(
        "TIMING: new leader m{} after the leader's kill -9: {:?}",
        new_leader + 1,
        t.elapsed()
    );
    assert_eq!(new_leader, survivor);
    // The killed leader's replicas move once its lease expires.
    let mut after_leader = Vec::new();
    c.wait_for(
        "every replica running and answering on the survivor",
        WAIT,
        |c| {
            replicas(c, survivor, &[names[victim], names[leader]]).is_some_and(|r| {
                after_leader = r;
                all_answer(&after_leader, ips)
            })
        },
    );
    eprintln!(
        "TIMING: the killed leader's replicas answering on {} after {:?}",
        names[survivor],
        t.elapsed()
    );
    // Its daemon gone for a lease TTL, the old leader's watchdog kills its containers: the
    // replicas do not run twice for longer.
    c.wait_for(
        "the killed leader's containers killed by its watchdog",
        WAIT,
        |_| !orphans.iter().any(|p| process_alive(*p)),
    );
    eprintln!(
        "TIMING: the killed leader's own {} container(s) killed by its watchdog after {:?}",
        orphans.len(),
        t.elapsed()
    );
    for (container, pid) in &kept {
        assert!(
            after_leader.iter().any(|r| &r.container == container),
            "{container} kept: {after_leader:?}"
        );
        assert_eq!(nodes[survivor].pid(container), *pid, "{container}'s pid");
    }

    // The old leader restarts: it rejoins, removes the containers nothing assigns to it any
    // more, and the replicas stay where they are.
    let t = Instant::now();
    c.daemon_mut(leader).restart();
    c.wait_for("the restarted daemon agrees on the leader", WAIT, |c| {
        c.running().contains(&leader) && c.leader() == Some(survivor)
    });
    c.wait_for("the old leader's stale containers removed", WAIT, |_| {
        nodes[leader].youki_list().is_empty()
    });
    eprintln!(
        "old leader restarted, rejoined and cleaned up after {:?}",
        t.elapsed()
    );
    let now = replicas(c, leader, &[names[victim]]).expect("4 running replicas");
    assert_eq!(now, after_leader, "nothing moved on the restart");
    assert!(all_answer(&now, ips));
    for (container, pid) in &kept {
        assert_eq!(nodes[survivor].pid(container), *pid, "{container}'s pid");
    }
    eprintln!("whole test: {:?}", started.elapsed());
}

/// A machine cut off from the others and from etcd (its link down): gossip finds it dead and
/// its replicas are replaced on the others; cut off, it loses its lease and stops its own
/// containers, so a replica runs twice only for the short window measured here. Healed, it
/// rejoins, its stale containers are removed, and each replica runs exactly once.
#[test]
fn a_cut_off_machine_stops_its_containers_and_nothing_runs_twice() {
    let _serial = serial();
    let Some(m) = machines() else {
        return;
    };
    let victim = m.busiest_follower();
    let name = NAMES[victim];
    let lost: Vec<&Replica> = m.placed.iter().filter(|r| r.node == name).collect();
    assert!(!lost.is_empty(), "{:?}", m.placed);
    let pids: Vec<i32> = lost
        .iter()
        .map(|r| m.nodes[victim].pid(&r.container))
        .collect();

    let t = Instant::now();
    m.hosts.cut(victim);
    // Both sides of the cut at once: the replacements Running (as the leader reports them) and
    // the cut-off machine's own containers gone.
    let (mut replaced, mut stopped) = (None, None);
    while replaced.is_none() || stopped.is_none() {
        assert!(
            t.elapsed() < WAIT,
            "after {WAIT:?}: replaced {replaced:?}, stopped {stopped:?}"
        );
        if replaced.is_none() && replicas(&m.c, m.leader, &[name]).is_some() {
            replaced = Some(t.elapsed());
        }
        if stopped.is_none() && !pids.iter().any(|p| process_alive(*p)) {
            stopped = Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (replaced, stopped) = (replaced.unwrap(), stopped.unwrap());
    eprintln!(
        "TIMING: {} replica(s) of cut-off machine {name}: Running elsewhere after {replaced:?}, \
         its own containers stopped after {stopped:?}: ran twice for {:?}",
        lost.len(),
        stopped.saturating_sub(replaced)
    );
    let mut moved = Vec::new();
    m.c.wait_for("the replacements answering HTTP", WAIT, |c| {
        replicas(c, m.leader, &[name]).is_some_and(|r| {
            moved = r;
            all_answer(&moved, &m.ips)
        })
    });
    for r in m.placed.iter().filter(|r| r.node != name) {
        assert!(moved.contains(r), "{r:?} untouched: {moved:?}");
    }

    // Healed: the machine rejoins (Ready again) and removes its stale containers; every
    // container that runs anywhere is one of the four replicas.
    let t = Instant::now();
    m.hosts.heal(victim);
    m.c.wait_for("the healed machine Ready again", WAIT, |c| {
        c.info(m.leader).is_some_and(|info| {
            info["membership"]["members"]
                .as_array()
                .is_some_and(|ms| ms.iter().all(|m| m["status"] == "Ready"))
        })
    });
    let mut everywhere = BTreeSet::new();
    m.c.wait_for("only the four replicas' containers left", WAIT, |_| {
        everywhere = m.nodes.iter().flat_map(|n| n.youki_list()).collect();
        everywhere.len() == 4
    });
    eprintln!(
        "healed machine rejoined and cleaned up after {:?}",
        t.elapsed()
    );
    let now = replicas(&m.c, m.leader, &[]).expect("4 running replicas");
    assert_eq!(now, moved, "nothing moved on the heal");
    let running: BTreeSet<String> = now.iter().map(|r| r.container.clone()).collect();
    assert_eq!(everywhere, running, "each replica runs exactly once");
    assert!(all_answer(&now, &m.ips));
    eprintln!("whole test: {:?}", m.started.elapsed());
}
