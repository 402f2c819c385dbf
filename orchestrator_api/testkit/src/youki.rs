//! Real containers: youki and the test image that `scripts/setup-oci.sh` set up, and a daemon
//! node of its own on them.
//!
//! Every youki call goes through `container_runtime_interface`'s CLI wrapper
//! ([`Cli`]), never `Command::new(youki)`: the wrapper repeats a run that failed with youki's
//! occasional `failed to seal /proc/self/exe: Device or resource busy`, which otherwise fails a
//! test by chance.

use crate::cluster::TestCluster;
use crate::netns::NetHost;
use crate::{prerequisite_missing, Daemon, DaemonBuilder};
use container_runtime_interface::oci::cli::Cli;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, Ordering};

/// Where `scripts/setup-oci.sh` writes what it set up (`export NAME=value` lines).
pub const OCI_ENV_FILE: &str = "/var/lib/orchestrator-oci/env";

/// Where cgroup hierarchies are mounted.
const CGROUP_MOUNT: &str = "/sys/fs/cgroup";

/// youki and the test image, as `scripts/setup-oci.sh` set them up.
#[derive(Clone, Debug)]
pub struct YoukiSetup {
    /// The youki binary (`ORCHESTRATOR_YOUKI`).
    pub youki: PathBuf,
    /// The test image in the local registry (`ORCHESTRATOR_TEST_IMAGE`), e.g.
    /// `127.0.0.1:5000/demo/busybox:1`.
    pub image: String,
}

impl YoukiSetup {
    /// youki and the test image from the environment or [`OCI_ENV_FILE`], with the registry
    /// answering; else `None` with the reason printed (a panic under `CI=true`).
    pub fn detect() -> Option<YoukiSetup> {
        let missing =
            |what: String| prerequisite_missing(format!("{what} (run ./scripts/setup-oci.sh)"));
        let env = std::fs::read_to_string(OCI_ENV_FILE).unwrap_or_default();
        let var = |name: &str| {
            std::env::var(name).ok().or_else(|| {
                env.lines()
                    .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                    .map(str::to_owned)
            })
        };
        let Some(youki) = var("ORCHESTRATOR_YOUKI").map(PathBuf::from) else {
            return missing("ORCHESTRATOR_YOUKI is not set".into());
        };
        if !youki.is_file() {
            return missing(format!("{} does not exist", youki.display()));
        }
        let Some(image) = var("ORCHESTRATOR_TEST_IMAGE") else {
            return missing("ORCHESTRATOR_TEST_IMAGE is not set".into());
        };
        let registry = image.split('/').next().unwrap_or_default().to_owned();
        if std::net::TcpStream::connect(&registry).is_err() {
            return missing(format!("the registry {registry} does not answer"));
        }
        Some(YoukiSetup { youki, image })
    }

    /// The registry part of the test image (`127.0.0.1:5000`).
    pub fn registry(&self) -> &str {
        self.image.split('/').next().unwrap_or_default()
    }

    /// The registry's address (`127.0.0.1:5000`), e.g. to [`NetHosts::forward`](crate::netns::NetHosts::forward) it.
    pub fn registry_addr(&self) -> SocketAddr {
        self.registry()
            .parse()
            .unwrap_or_else(|e| panic!("the registry {} is not IP:PORT: {e}", self.registry()))
    }

    /// The test image with its registry part replaced by `registry` (e.g. the address a
    /// [`NetHosts::forward`](crate::netns::NetHosts::forward) gave): `10.X.Y.1:PORT/demo/busybox:1`.
    pub fn image_at(&self, registry: SocketAddr) -> String {
        let rest = self.image.split_once('/').map_or("", |(_, rest)| rest);
        format!("{registry}/{rest}")
    }
}

/// A youki daemon of its own: data dir, node name, cgroup parent and dynamic ports (a range of
/// its own, away from the default one a quick-start cluster on this machine may be using).
/// Dropping it deletes every container youki still has in its state dir and the cgroups under
/// its parent, even when the test failed half-way.
pub struct YoukiNode {
    dir: tempfile::TempDir,
    name: String,
    cgroup_parent: String,
    dynamic_ports: String,
    cli: Cli,
    /// The netns host its daemon runs on and the registry address it pulls from there.
    host: Option<(NetHost, SocketAddr)>,
    /// Runs the wrapper's async calls: the tests that use this are synchronous.
    rt: tokio::runtime::Runtime,
}

impl YoukiNode {
    /// A node called `name` (its daemon is not started yet: [`YoukiNode::start`]).
    pub fn new(setup: &YoukiSetup, name: &str) -> YoukiNode {
        static NEXT: AtomicU16 = AtomicU16::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let first = 41000 + 100 * n;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let cli = Cli::new(&setup.youki, dir.path().join("data/oci/state"));
        YoukiNode {
            dir,
            name: name.to_owned(),
            // Unique per node of the process, not per name: a killed daemon's watchdog kills
            // what runs under its parent a lease TTL later, which must not be a later node's.
            cgroup_parent: format!("orch-e2e-{}-{n}-{name}", std::process::id()),
            dynamic_ports: format!("{first}-{}", first + 99),
            cli,
            host: None,
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime for the youki wrapper"),
        }
    }

    /// This node's daemon runs on `host` (in its network namespace, the API on its address;
    /// see [`DaemonBuilder::on_host`]) and pulls images from `registry`, an address reachable
    /// from there (e.g. [`NetHosts::forward`](crate::netns::NetHosts::forward) of [`YoukiSetup::registry_addr`]; images named
    /// with [`YoukiSetup::image_at`]), over plain http. Its containers share the host's
    /// network namespace (host network), so their host ports are on the host's address.
    pub fn on_host(mut self, host: &NetHost, registry: SocketAddr) -> YoukiNode {
        self.host = Some((host.clone(), registry));
        self
    }

    /// The netns host of [`YoukiNode::on_host`], if any.
    pub fn host(&self) -> Option<&NetHost> {
        self.host.as_ref().map(|(h, _)| h)
    }

    /// The daemon of this node (youki runtime, 16 CPUs, 32 GB), not started.
    pub fn builder(&self) -> DaemonBuilder {
        self.runtime_builder().args(["--node-name", &self.name])
    }

    /// The daemon of this node as a member of `cluster` (its etcd, prefix, token and lease
    /// TTL; see [`TestCluster::member_args`], or [`TestCluster::netns_member_args`] on a
    /// [`YoukiNode::on_host`] node), on youki like [`YoukiNode::builder`], not started. Add it
    /// to the cluster with [`TestCluster::add`] once started.
    pub fn member_of(&self, cluster: &TestCluster) -> DaemonBuilder {
        let args = match &self.host {
            Some((host, _)) => cluster.netns_member_args(&self.name, host),
            None => cluster.member_args(&self.name),
        };
        self.runtime_builder().args(args)
    }

    /// Everything of [`YoukiNode::builder`] but the node name.
    fn runtime_builder(&self) -> DaemonBuilder {
        let builder = match &self.host {
            Some((host, registry)) => Daemon::builder()
                .on_host(host)
                .arg("--insecure-registry")
                .arg(registry.to_string()),
            None => Daemon::builder(),
        };
        builder
            .args(["--runtime", "youki", "--runtime-binary"])
            .arg(&self.cli.binary)
            .args(["--cgroup-parent", &self.cgroup_parent])
            .args(["--dynamic-ports", &self.dynamic_ports])
            .args(["--cpu-millicores", "16000", "--memory-mb", "32768"])
            .data_dir(self.data_dir())
    }

    /// Starts the daemon of this node and waits until it is ready.
    pub fn start(&self) -> Daemon {
        self.builder().start()
    }

    /// The temporary directory of this node (its data dir is `data/` inside).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The daemon's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The ids youki's own `list` reports, sorted; panics if youki fails.
    pub fn youki_list(&self) -> Vec<String> {
        self.try_youki_list()
            .unwrap_or_else(|e| panic!("youki list: {e}"))
    }

    /// [`YoukiNode::youki_list`] without panicking.
    pub fn try_youki_list(&self) -> Result<Vec<String>, String> {
        if !self.cli.root.exists() {
            // youki makes its root on the first create; before, it has nothing to list.
            return Ok(Vec::new());
        }
        self.rt
            .block_on(self.cli.list())
            .map_err(|e| error_chain(&e))
    }

    /// The init pid youki reports for container `id`; panics unless it runs.
    pub fn pid(&self, id: &str) -> i32 {
        let state = self
            .rt
            .block_on(self.cli.state(id))
            .unwrap_or_else(|e| panic!("youki state {id}: {}", error_chain(&e)))
            .unwrap_or_else(|| panic!("youki does not know {id}"));
        state
            .pid
            .filter(|p| *p > 0)
            .unwrap_or_else(|| panic!("{id} has no pid: {state:?}"))
    }

    /// A machine dying: kill -9 of `daemon` (this node's), then of every process in this
    /// node's containers ([`YoukiNode::kill_containers`]). youki's state and the bundles stay,
    /// as on a machine that lost power; the node's drop removes them.
    pub fn crash(&self, daemon: &mut Daemon) {
        daemon.kill9();
        self.kill_containers();
    }

    /// SIGKILLs every process in the cgroups under this node's parent (every hierarchy),
    /// until none is left (at most 5 s); how many were killed.
    pub fn kill_containers(&self) -> usize {
        container_runtime_interface::oci::fence::kill_cgroup_tree(&self.cgroup_parent)
    }

    /// Entries left in the bundles directory (one per container: config, rootfs copy).
    pub fn bundles(&self) -> Vec<String> {
        entries(&self.data_dir().join("oci/bundles"))
    }

    /// Container cgroup directories left under the parent, in every hierarchy.
    pub fn cgroups(&self) -> Vec<String> {
        let mut left = Vec::new();
        for h in std::fs::read_dir(CGROUP_MOUNT)
            .into_iter()
            .flatten()
            .flatten()
        {
            let parent = h.path().join(&self.cgroup_parent);
            left.extend(
                entries(&parent)
                    .into_iter()
                    .filter(|e| parent.join(e).is_dir())
                    .map(|e| format!("{}/{e}", h.path().display())),
            );
        }
        left
    }
}

impl Drop for YoukiNode {
    fn drop(&mut self) {
        // Leave nothing behind even when a test failed half-way; nothing here may panic.
        for id in self.try_youki_list().unwrap_or_default() {
            let _ = self.rt.block_on(self.cli.delete_force(&id));
        }
        for h in std::fs::read_dir(CGROUP_MOUNT).into_iter().flatten() {
            let Ok(h) = h else { continue };
            let parent = h.path().join(&self.cgroup_parent);
            for e in entries(&parent) {
                let _ = std::fs::remove_dir(parent.join(e));
            }
            let _ = std::fs::remove_dir(parent);
        }
    }
}

/// The names in `dir`, sorted; none if it cannot be read.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// An error and its sources, one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
