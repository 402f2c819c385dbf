//! [`TestCluster`]: several real `orchestratord` processes sharing one etcd (started on loopback
//! by the kit, with its own data dir), on the simulated runtime unless told otherwise.
//!
//! ```no_run
//! use orchestrator_testkit::cluster::TestCluster;
//!
//! let Some(mut c) = TestCluster::start(3) else { return }; // skipped without etcd (not in CI)
//! let leader = c.wait_for_leader(std::time::Duration::from_secs(10));
//! c.daemon_mut(leader).kill9();
//! ```

use crate::netns::{NetHost, NetHosts};
use crate::{Daemon, DaemonBuilder};
use serde_json::Value;
use state_store_interface::etcd_server::EtcdServer;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The cluster token the kit's daemons share.
pub const TOKEN: &str = "test-cluster-token";

/// Lease TTL of the kit's daemons, in seconds: a killed daemon is noticed within it.
pub const LEASE_TTL_SECS: u64 = 2;

/// A workload `web` of `replicas` spread over the nodes (`placement: spread`), each replica a
/// 500m / 64 MB container: what the cluster tests place.
pub fn spread_web(replicas: u32) -> Value {
    serde_json::json!({
        "name": "web",
        "replicas": replicas,
        "placement": "spread",
        "containers": [{
            "name": "web",
            "image": "example/web:1",
            "resources": {"cpu_millicores": 500, "memory_mb": 64}
        }]
    })
}

/// etcd and the daemons of a test; see the module docs. Dropping it kills them all.
pub struct TestCluster {
    daemons: Vec<Daemon>,
    /// Declared after the daemons: they are killed before etcd.
    etcd: EtcdServer,
    prefix: String,
    /// etcd's client URL as the hosts of a [`NetHosts`] reach it (a proxy on their bridge),
    /// when made by [`TestCluster::etcd_only_for`].
    netns_etcd: Option<String>,
}

impl TestCluster {
    /// etcd and `n` daemons on the simulated runtime (nodes `n1`..`nN`, 4 CPUs and 8 GB each),
    /// each ready; `None` (the test is skipped) without etcd outside CI.
    pub fn start(n: usize) -> Option<Self> {
        let mut cluster = Self::etcd_only()?;
        for i in 1..=n {
            let daemon = cluster.simulated(&format!("n{i}")).start();
            cluster.daemons.push(daemon);
        }
        Some(cluster)
    }

    /// etcd alone (add daemons with [`TestCluster::add`]); `None` as for [`TestCluster::start`].
    pub fn etcd_only() -> Option<Self> {
        // Skips (or, under CI=true, fails) by itself when etcd is missing.
        let etcd = EtcdServer::start_or_skip()?;
        Some(Self {
            daemons: Vec::new(),
            etcd,
            prefix: format!("test-{}", std::process::id()),
            netns_etcd: None,
        })
    }

    /// etcd alone, also reachable from the network namespaces of `hosts` (forwarded from
    /// their bridge address to etcd's loopback one, see [`NetHosts::forward`]); add members on
    /// those hosts with [`TestCluster::netns_member_args`]. `None` as for
    /// [`TestCluster::start`].
    pub fn etcd_only_for(hosts: &mut NetHosts) -> Option<Self> {
        let mut cluster = Self::etcd_only()?;
        let loopback: SocketAddr = cluster
            .etcd
            .client_url()
            .trim_start_matches("http://")
            .parse()
            .expect("etcd's client URL is http://IP:PORT");
        cluster.netns_etcd = Some(format!("http://{}", hosts.forward(loopback)));
        Some(cluster)
    }

    /// The flags that make a daemon a member of this cluster (etcd, prefix, token, TTL).
    pub fn member_args(&self, node: &str) -> Vec<String> {
        vec![
            "--etcd".into(),
            self.etcd.client_url(),
            "--etcd-prefix".into(),
            self.prefix.clone(),
            "--cluster-token".into(),
            TOKEN.into(),
            "--lease-ttl".into(),
            LEASE_TTL_SECS.to_string(),
            "--node-name".into(),
            node.into(),
        ]
    }

    /// THE flags of a member that runs on `host` (in its network namespace): those of
    /// [`TestCluster::member_args`] with etcd at its address for the hosts. The API address
    /// (`--listen HOST_IP:0`) is the builder's ([`DaemonBuilder::on_host`]).
    ///
    /// Every flag a member on a netns host needs goes here and nowhere else, so that every
    /// netns test gets it. Gossip listens on the host's own address and the well-known port
    /// 7946, as on a real machine. Panics unless the cluster was made by
    /// [`TestCluster::etcd_only_for`].
    pub fn netns_member_args(&self, node: &str, host: &NetHost) -> Vec<String> {
        let etcd = self
            .netns_etcd
            .clone()
            .expect("a cluster made by TestCluster::etcd_only_for, to reach etcd from a netns");
        let mut args = self.member_args(node);
        let at = args.iter().position(|a| a == "--etcd").expect("--etcd") + 1;
        args[at] = etcd;
        // No `--advertise`: the address other daemons reach this one's agent API at is its
        // listen address (HOST_IP:PORT, from `DaemonBuilder::on_host`), which every host and
        // the root namespace route to.
        args.extend(["--gossip-listen".into(), format!("{}:7946", host.ip)]);
        args
    }

    /// A builder of a member on the simulated runtime with 4 CPUs and 8 GB.
    pub fn simulated(&self, node: &str) -> DaemonBuilder {
        Daemon::builder()
            .args([
                "--runtime",
                "simulated",
                "--cpu-millicores",
                "4000",
                "--memory-mb",
                "8192",
            ])
            .args(self.member_args(node))
    }

    /// Adds a started daemon; returns its index.
    pub fn add(&mut self, daemon: Daemon) -> usize {
        self.daemons.push(daemon);
        self.daemons.len() - 1
    }

    /// The etcd server (to stop, restart or wipe it).
    pub fn etcd(&mut self) -> &mut EtcdServer {
        &mut self.etcd
    }

    /// The etcd client URL.
    pub fn etcd_url(&self) -> String {
        self.etcd.client_url()
    }

    /// The key prefix of the cluster in etcd.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Daemon `i` (0-based; node `n{i+1}` for those [`TestCluster::start`] made).
    pub fn daemon(&self, i: usize) -> &Daemon {
        &self.daemons[i]
    }

    /// Daemon `i`, to kill or restart.
    pub fn daemon_mut(&mut self, i: usize) -> &mut Daemon {
        &mut self.daemons[i]
    }

    /// How many daemons were added.
    pub fn len(&self) -> usize {
        self.daemons.len()
    }

    /// Whether none was added.
    pub fn is_empty(&self) -> bool {
        self.daemons.is_empty()
    }

    /// The indexes of the daemons that run.
    pub fn running(&self) -> Vec<usize> {
        (0..self.daemons.len())
            .filter(|i| self.daemons[*i].pid().is_some())
            .collect()
    }

    /// `GET path` on daemon `i`, as JSON; `None` if it does not answer 200.
    pub fn get_json(&self, i: usize, path: &str) -> Option<Value> {
        match self.daemons[i].get(path) {
            Ok((200, body)) => serde_json::from_str(&body).ok(),
            _ => None,
        }
    }

    /// `GET /api/v1/cluster` of daemon `i`.
    pub fn info(&self, i: usize) -> Option<Value> {
        self.get_json(i, "/api/v1/cluster")
    }

    /// The index of the daemon the running ones agree leads, if they all name the same
    /// running one.
    pub fn leader(&self) -> Option<usize> {
        let mut named = None;
        for i in self.running() {
            let node = self.info(i)?["membership"]["leader"]["node"]
                .as_str()?
                .to_owned();
            if named.as_ref().is_some_and(|n| *n != node) {
                return None;
            }
            named = Some(node);
        }
        let node = named?;
        self.running()
            .into_iter()
            .find(|i| self.node_name(*i).is_some_and(|n| n == node))
    }

    /// Waits until the running daemons agree on a running leader; panics after `timeout`.
    pub fn wait_for_leader(&self, timeout: Duration) -> usize {
        let mut found = None;
        self.wait_for("a leader every running daemon agrees on", timeout, |c| {
            found = c.leader();
            found.is_some()
        });
        found.expect("checked")
    }

    /// The node name daemon `i` runs as (from its flags).
    pub fn node_name(&self, i: usize) -> Option<String> {
        self.info(i)?["membership"]["this_node"]
            .as_str()
            .map(str::to_owned)
    }

    /// Every instance, as daemon `i` answers (following pages).
    pub fn instances(&self, i: usize) -> Option<Vec<Value>> {
        let mut all = Vec::new();
        let mut path = "/api/v1/instances?limit=1000".to_owned();
        loop {
            let page = self.get_json(i, &path)?;
            all.extend(page["items"].as_array()?.iter().cloned());
            match page["continue"].as_str() {
                Some(token) => path = format!("/api/v1/instances?limit=1000&continue={token}"),
                None => return Some(all),
            }
        }
    }

    /// Every instance as daemon `i` answers: id → (node, status). Panics if an id shows twice
    /// (an instance listed twice is a bug of the cluster, whatever the test checks).
    pub fn instance_table(&self, i: usize) -> Option<BTreeMap<String, (String, String)>> {
        let mut all = BTreeMap::new();
        for instance in self.instances(i)? {
            let id = instance["id"].as_str()?.to_owned();
            let node = instance["node_id"].as_str().unwrap_or_default().to_owned();
            let status = instance["status"].as_str()?.to_owned();
            assert!(
                all.insert(id, (node, status)).is_none(),
                "duplicate instance {instance}"
            );
        }
        Some(all)
    }

    /// Polls `check` every 100 ms until it holds; panics after `timeout` with what was awaited
    /// and the last log lines of every daemon.
    pub fn wait_for(&self, what: &str, timeout: Duration, mut check: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + timeout;
        while !check(self) {
            if Instant::now() > deadline {
                let logs: Vec<String> = self
                    .daemons
                    .iter()
                    .enumerate()
                    .map(|(i, d)| {
                        let log = d.log();
                        let tail = &log[log.len().saturating_sub(30)..];
                        format!("--- daemon {i} ---\n{}", tail.join("\n"))
                    })
                    .collect();
                panic!(
                    "timed out after {timeout:?} waiting for {what}\n{}",
                    logs.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
