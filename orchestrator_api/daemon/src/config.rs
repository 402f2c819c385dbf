//! Settings of the daemon: command-line flags, each also read from an environment variable, over
//! an optional TOML or YAML config file, over defaults. A flag beats its variable, which beats the
//! file, which beats the default.

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use orchestrator_shared_types::PortRange;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Which container runtime runs the workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// Real containers through the youki OCI runtime (the default).
    Youki,
    /// In-process fake containers, for trying the orchestrator and for benchmarks.
    Simulated,
}

impl std::fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RuntimeKind::Youki => "youki",
            RuntimeKind::Simulated => "simulated",
        })
    }
}

/// How logs are written (always to stderr).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per event.
    Json,
}

/// Command-line flags. Every one is optional here so that the config file can fill the gaps.
#[derive(Debug, Parser)]
#[command(
    name = "orchestratord",
    version,
    about = "The orchestrator daemon: store, reconcile loop and REST API on this machine"
)]
pub struct Cli {
    /// Address of the REST API [default: 127.0.0.1:8080]
    #[arg(long, env = "ORCHESTRATORD_LISTEN")]
    listen: Option<SocketAddr>,
    /// Directory of the embedded store [default: /var/lib/orchestrator as root, else ~/.local/share/orchestrator]
    #[arg(long, env = "ORCHESTRATORD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Container runtime [default: youki]
    #[arg(long, env = "ORCHESTRATORD_RUNTIME")]
    runtime: Option<RuntimeKind>,
    /// OCI runtime binary (youki; runc works too) [default: youki, else runc, from PATH or ~/.cargo/bin]
    #[arg(long, env = "ORCHESTRATORD_RUNTIME_BINARY")]
    runtime_binary: Option<PathBuf>,
    /// A registry (host[:port]) to reach over plain http; repeatable. Registries on 127.0.0.0/8 and localhost always are
    #[arg(
        long = "insecure-registry",
        env = "ORCHESTRATORD_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    insecure_registries: Vec<String>,
    /// Registry credentials: a Docker config.json (`{"auths": {"REGISTRY": {"auth": "base64(user:password)"}}}`, what `docker login` writes)
    #[arg(long, env = "ORCHESTRATORD_REGISTRY_AUTH")]
    registry_auth: Option<PathBuf>,
    /// A registry served over HTTPS with a certificate from a CA of its own: REGISTRY=FILE (PEM, one or more certificates; as Docker's /etc/docker/certs.d/REGISTRY/ca.crt); repeatable. That registry is reached over HTTPS even on loopback
    #[arg(long = "registry-ca", value_name = "REGISTRY=FILE", value_parser = registry_ca)]
    registry_cas: Vec<(String, PathBuf)>,
    /// Host ports this node hands out for `host_port: 0`, FIRST-LAST [default: 20000-32767]
    #[arg(long, env = "ORCHESTRATORD_DYNAMIC_PORTS")]
    dynamic_ports: Option<PortRange>,
    /// Cgroup (in every hierarchy) under which containers get theirs [default: orchestrator]
    #[arg(long, env = "ORCHESTRATORD_CGROUP_PARENT")]
    cgroup_parent: Option<String>,
    /// Name (and id) of this node [default: the hostname]
    #[arg(long, env = "ORCHESTRATORD_NODE_NAME")]
    node_name: Option<String>,
    /// Log format [default: human]
    #[arg(long, env = "ORCHESTRATORD_LOG_FORMAT")]
    log_format: Option<LogFormat>,
    /// CPU this node offers, in millicores [default: 1000 per CPU the OS reports]
    #[arg(long, env = "ORCHESTRATORD_CPU_MILLICORES")]
    cpu_millicores: Option<u64>,
    /// Memory this node offers, in MB [default: what the OS reports]
    #[arg(long, env = "ORCHESTRATORD_MEMORY_MB")]
    memory_mb: Option<u64>,
    /// Config file (TOML, or YAML if it ends in .yaml/.yml) with the same settings, snake_case
    #[arg(long, env = "ORCHESTRATORD_CONFIG")]
    config: Option<PathBuf>,
    /// Also serve MCP (streamable HTTP) at /mcp on the same listener, for AI assistants
    #[arg(long, env = "ORCHESTRATORD_MCP")]
    mcp: bool,
    /// Serve MCP at /mcp with only the tools that read, none that change the cluster (implies --mcp)
    #[arg(long, env = "ORCHESTRATORD_MCP_READ_ONLY")]
    mcp_read_only: bool,
    /// Join a cluster whose state is in etcd: its client URLs, comma-separated (without it: single node, embedded store)
    #[arg(long, env = "ORCHESTRATORD_ETCD", value_delimiter = ',')]
    etcd: Vec<String>,
    /// Key prefix of the cluster's state in etcd [default: orchestrator]
    #[arg(long, env = "ORCHESTRATORD_ETCD_PREFIX")]
    etcd_prefix: Option<String>,
    /// Address (host:port) other daemons reach this one's API at [default: the listen address]
    #[arg(long, env = "ORCHESTRATORD_ADVERTISE")]
    advertise: Option<String>,
    /// Secret the cluster's daemons share: they call each other's agent API with it, and a daemon with another one cannot join
    #[arg(long, env = "ORCHESTRATORD_CLUSTER_TOKEN", hide_env_values = true)]
    cluster_token: Option<String>,
    /// Seconds a daemon's lease lives without a refresh: a dead daemon is noticed, and a dead leader replaced, within it [default: 5]
    #[arg(long, env = "ORCHESTRATORD_LEASE_TTL")]
    lease_ttl: Option<u64>,
    /// Create a new cluster under --etcd-prefix even though the same etcd holds clusters under other prefixes (without it such a daemon refuses, naming them: a mistyped prefix must not split a cluster)
    #[arg(long, env = "ORCHESTRATORD_NEW_CLUSTER")]
    new_cluster: bool,
    /// UDP address (host:port) this daemon gossips on, for failure detection in about a second [default: the API's host, port 0: the others learn it from this daemon's member record]
    #[arg(long, env = "ORCHESTRATORD_GOSSIP_LISTEN")]
    gossip_listen: Option<SocketAddr>,
    /// Gossip addresses (host:port) of other daemons to gossip with first, comma-separated [default: those in the member records in etcd]
    #[arg(long, env = "ORCHESTRATORD_JOIN", value_delimiter = ',')]
    join: Vec<String>,
    /// Do not gossip: nodes are found dead only when their lease ends (--lease-ttl)
    #[arg(long, env = "ORCHESTRATORD_NO_GOSSIP")]
    no_gossip: bool,
    /// Stop this node's containers once etcd was unreachable for a whole lease TTL and they may run elsewhere (a partition), and kill them a lease TTL after this daemon is gone (a watchdog process): true or false [default: true]
    #[arg(long, env = "ORCHESTRATORD_STOP_ON_STORE_LOSS")]
    stop_on_store_loss: Option<bool>,
    /// API tokens file (YAML: name, role, sha256 of each token; make entries with `orchestrator-cli token create`): every request then needs `Authorization: Bearer TOKEN`. Reloaded on SIGHUP. Required to listen beyond loopback
    #[arg(long, env = "ORCHESTRATORD_TOKENS")]
    tokens: Option<PathBuf>,
    /// TLS certificate chain (PEM) of the API: serve HTTPS (needs --tls-key)
    #[arg(long, env = "ORCHESTRATORD_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM, PKCS#8, PKCS#1 or SEC1) of --tls-cert
    #[arg(long, env = "ORCHESTRATORD_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

/// The config file: the same settings as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    runtime: Option<RuntimeKind>,
    runtime_binary: Option<PathBuf>,
    insecure_registries: Option<Vec<String>>,
    registry_auth: Option<PathBuf>,
    registry_ca: Option<BTreeMap<String, PathBuf>>,
    #[serde(default, deserialize_with = "port_range")]
    dynamic_ports: Option<PortRange>,
    cgroup_parent: Option<String>,
    node_name: Option<String>,
    log_format: Option<LogFormat>,
    cpu_millicores: Option<u64>,
    memory_mb: Option<u64>,
    mcp: Option<bool>,
    mcp_read_only: Option<bool>,
    etcd: Option<Vec<String>>,
    etcd_prefix: Option<String>,
    advertise: Option<String>,
    cluster_token: Option<String>,
    lease_ttl: Option<u64>,
    new_cluster: Option<bool>,
    gossip_listen: Option<SocketAddr>,
    join: Option<Vec<String>>,
    no_gossip: Option<bool>,
    stop_on_store_loss: Option<bool>,
    tokens: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

/// The settings in force.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address of the REST API.
    pub listen: SocketAddr,
    /// Directory of the embedded store.
    pub data_dir: PathBuf,
    /// Container runtime.
    pub runtime: RuntimeKind,
    /// OCI runtime binary; `None`: searched for.
    pub runtime_binary: Option<PathBuf>,
    /// Registries reached over plain http (besides loopback ones).
    pub insecure_registries: Vec<String>,
    /// Registry credentials file (a Docker config.json).
    pub registry_auth: Option<PathBuf>,
    /// CA certificate files (PEM) by registry, for HTTPS registries with a CA of their own.
    pub registry_cas: BTreeMap<String, PathBuf>,
    /// Parent cgroup of the containers.
    pub cgroup_parent: String,
    /// Dynamic host ports of this node.
    pub dynamic_ports: PortRange,
    /// Name of this node; `None`: the hostname.
    pub node_name: Option<String>,
    /// Log format.
    pub log_format: LogFormat,
    /// CPU override.
    pub cpu_millicores: Option<u64>,
    /// Memory override.
    pub memory_mb: Option<u64>,
    /// Serve MCP at `/mcp`.
    pub mcp: bool,
    /// Only the read-only MCP tools.
    pub mcp_read_only: bool,
    /// The cluster to join; `None`: single node with the embedded store.
    pub cluster: Option<ClusterConfig>,
    /// API tokens file; `None`: the API is open (loopback only).
    pub tokens: Option<PathBuf>,
    /// TLS certificate chain and key files; `None`: plain HTTP.
    pub tls: Option<TlsFiles>,
}

/// The PEM files of the API's TLS identity.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// How this daemon joins a cluster (`--etcd` and the flags that go with it).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// etcd client URLs.
    pub etcd: Vec<String>,
    /// Key prefix in etcd.
    pub prefix: String,
    /// Where other daemons reach this one; `None`: the listen address once bound.
    pub advertise: Option<String>,
    /// The shared secret.
    pub token: Option<String>,
    /// Lease time-to-live.
    pub lease_ttl: std::time::Duration,
    /// Create a new cluster even though clusters exist under other prefixes (`--new-cluster`).
    pub new_cluster: bool,
    /// Gossip settings; `None`: no gossip (`--no-gossip`).
    pub gossip: Option<GossipSettings>,
    /// Stop the containers after losing the store for a lease TTL (`--stop-on-store-loss`).
    pub stop_on_store_loss: bool,
}

/// Where and with whom this daemon gossips.
#[derive(Debug, Clone)]
pub struct GossipSettings {
    /// UDP listen address; `None`: the API's host, port 0.
    pub listen: Option<SocketAddr>,
    /// Addresses to gossip with first, besides those in the member records.
    pub join: Vec<String>,
}

impl Config {
    /// Merges flags (and their environment variables), the config file and the defaults.
    pub fn load(cli: Cli) -> Result<Self> {
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let tls = match (cli.tls_cert.or(file.tls_cert), cli.tls_key.or(file.tls_key)) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => bail!("tls_cert and tls_key go together: give both or neither"),
        };
        let config = Config {
            tokens: cli.tokens.or(file.tokens),
            tls,
            listen: cli
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            // Absolute, so logs and `cluster info` say where the data is whatever the cwd.
            data_dir: std::path::absolute(match cli.data_dir.or(file.data_dir) {
                Some(dir) => dir,
                None => default_data_dir()?,
            })
            .context("resolving the data directory")?,
            runtime: cli.runtime.or(file.runtime).unwrap_or(RuntimeKind::Youki),
            runtime_binary: cli.runtime_binary.or(file.runtime_binary),
            registry_auth: cli.registry_auth.or(file.registry_auth),
            registry_cas: if cli.registry_cas.is_empty() {
                file.registry_ca.unwrap_or_default()
            } else {
                cli.registry_cas.into_iter().collect()
            },
            insecure_registries: if cli.insecure_registries.is_empty() {
                file.insecure_registries.unwrap_or_default()
            } else {
                cli.insecure_registries
            },
            dynamic_ports: cli.dynamic_ports.or(file.dynamic_ports).unwrap_or_default(),
            cgroup_parent: cli
                .cgroup_parent
                .or(file.cgroup_parent)
                .unwrap_or_else(|| "orchestrator".to_owned()),
            node_name: cli.node_name.or(file.node_name),
            log_format: cli
                .log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Human),
            cpu_millicores: cli.cpu_millicores.or(file.cpu_millicores),
            memory_mb: cli.memory_mb.or(file.memory_mb),
            mcp: cli.mcp
                || cli.mcp_read_only
                || file.mcp.unwrap_or(false)
                || file.mcp_read_only.unwrap_or(false),
            mcp_read_only: cli.mcp_read_only || file.mcp_read_only.unwrap_or(false),
            cluster: {
                let etcd = if cli.etcd.is_empty() {
                    file.etcd.unwrap_or_default()
                } else {
                    cli.etcd
                };
                let lease_ttl = cli.lease_ttl.or(file.lease_ttl).unwrap_or(5);
                if lease_ttl == 0 {
                    bail!("--lease-ttl must be at least 1 (seconds)");
                }
                (!etcd.is_empty()).then(|| ClusterConfig {
                    etcd,
                    prefix: cli
                        .etcd_prefix
                        .or(file.etcd_prefix)
                        .unwrap_or_else(|| "orchestrator".to_owned()),
                    advertise: cli.advertise.or(file.advertise),
                    token: cli.cluster_token.or(file.cluster_token),
                    lease_ttl: std::time::Duration::from_secs(lease_ttl),
                    new_cluster: cli.new_cluster || file.new_cluster.unwrap_or(false),
                    gossip: (!(cli.no_gossip || file.no_gossip.unwrap_or(false))).then(|| {
                        GossipSettings {
                            listen: cli.gossip_listen.or(file.gossip_listen),
                            join: if cli.join.is_empty() {
                                file.join.unwrap_or_default()
                            } else {
                                cli.join
                            },
                        }
                    }),
                    stop_on_store_loss: cli
                        .stop_on_store_loss
                        .or(file.stop_on_store_loss)
                        .unwrap_or(true),
                })
            },
        };
        config.check_exposure()?;
        Ok(config)
    }

    /// Refuses settings that would expose an open API: listening beyond loopback without
    /// tokens (anyone who reaches it could run containers as root), and tokens in a cluster
    /// without a cluster token (the daemons could not call each other's agent API).
    fn check_exposure(&self) -> Result<()> {
        if self.tokens.is_none() && !self.listen.ip().is_loopback() {
            bail!(
                "refusing to listen on {} without API tokens: anyone who can reach it could run \
                 containers as root on this machine. Make a token with `orchestrator-cli token \
                 create --name admin --role admin --file /etc/orchestrator/tokens.yaml` and start \
                 with `--tokens /etc/orchestrator/tokens.yaml`, or listen on 127.0.0.1",
                self.listen
            );
        }
        if let Some(cluster) = &self.cluster {
            if self.tokens.is_some() && cluster.token.as_deref().is_none_or(str::is_empty) {
                bail!(
                    "--tokens in a cluster needs --cluster-token: the daemons call each other's \
                     agent API with it, not with users' tokens"
                );
            }
        }
        Ok(())
    }
}

/// `dynamic_ports = "20000-32767"` in the config file.
/// `REGISTRY=FILE` of `--registry-ca`.
fn registry_ca(arg: &str) -> Result<(String, PathBuf), String> {
    match arg.split_once('=') {
        Some((registry, file)) if !registry.is_empty() && !file.is_empty() => {
            Ok((registry.to_owned(), PathBuf::from(file)))
        }
        _ => Err(format!(
            "expected REGISTRY=FILE (e.g. registry.example:5000=/etc/orchestrator/ca.pem), got {arg:?}"
        )),
    }
}

fn port_range<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<PortRange>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|s| s.parse().map_err(serde::de::Error::custom))
        .transpose()
}

fn read_file(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the config file {}", path.display()))?;
    let yaml = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    );
    let parsed = if yaml {
        serde_norway::from_str(&text).map_err(anyhow::Error::from)
    } else {
        toml::from_str(&text).map_err(anyhow::Error::from)
    };
    parsed.with_context(|| format!("parsing the config file {}", path.display()))
}

fn default_data_dir() -> Result<PathBuf> {
    if rustix::process::geteuid().is_root() {
        return Ok(PathBuf::from("/var/lib/orchestrator"));
    }
    match std::env::var_os("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(".local/share/orchestrator")),
        None => bail!("no --data-dir given and HOME is not set"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("od.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9999\"\nruntime = \"simulated\"\nnode_name = \"from-file\"\n",
        )
        .unwrap();
        let cli = Cli::parse_from([
            "orchestratord",
            "--config",
            path.to_str().unwrap(),
            "--node-name",
            "from-flag",
            "--data-dir",
            "/tmp/x",
        ]);
        let c = Config::load(cli).unwrap();
        assert_eq!(c.listen.port(), 9999);
        assert_eq!(c.runtime, RuntimeKind::Simulated);
        assert_eq!(c.node_name.as_deref(), Some("from-flag"));
        assert_eq!(c.log_format, LogFormat::Human);
    }

    #[test]
    fn cluster_flags_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("od.toml");
        std::fs::write(
            &path,
            "etcd = [\"http://10.0.0.1:2379\"]\ncluster_token = \"from-file\"\nlease_ttl = 3\nnew_cluster = true\njoin = [\"10.0.0.2:7946\"]\nstop_on_store_loss = false\n",
        )
        .unwrap();
        let c = Config::load(Cli::parse_from([
            "orchestratord",
            "--config",
            path.to_str().unwrap(),
            "--data-dir",
            "/tmp/x",
            "--etcd",
            "http://127.0.0.1:2379,http://127.0.0.1:2479",
            "--advertise",
            "10.0.0.5:8080",
            "--gossip-listen",
            "10.0.0.5:7946",
        ]))
        .unwrap();
        let cluster = c.cluster.unwrap();
        let gossip = cluster.gossip.as_ref().unwrap();
        assert_eq!(gossip.listen, Some("10.0.0.5:7946".parse().unwrap()));
        assert_eq!(gossip.join, ["10.0.0.2:7946"]);
        assert!(!cluster.stop_on_store_loss);
        assert_eq!(
            cluster.etcd,
            ["http://127.0.0.1:2379", "http://127.0.0.1:2479"]
        );
        assert_eq!(cluster.prefix, "orchestrator");
        assert_eq!(cluster.advertise.as_deref(), Some("10.0.0.5:8080"));
        assert_eq!(cluster.token.as_deref(), Some("from-file"));
        assert_eq!(cluster.lease_ttl, std::time::Duration::from_secs(3));
        assert!(cluster.new_cluster);
        // No --etcd anywhere: single node.
        let single =
            Config::load(Cli::parse_from(["orchestratord", "--data-dir", "/tmp/x"])).unwrap();
        assert!(single.cluster.is_none());
        // Gossip and fencing are on by default; --no-gossip turns gossip off.
        let flags = |extra: &[&str]| {
            let mut args = vec!["orchestratord", "--etcd", "http://127.0.0.1:2379"];
            args.extend_from_slice(extra);
            Config::load(Cli::parse_from(args))
                .unwrap()
                .cluster
                .unwrap()
        };
        let defaults = flags(&[]);
        assert!(defaults
            .gossip
            .is_some_and(|g| g.listen.is_none() && g.join.is_empty()));
        assert!(defaults.stop_on_store_loss);
        assert!(flags(&["--no-gossip"]).gossip.is_none());
        let auth = Config::load(Cli::parse_from([
            "orchestratord",
            "--data-dir",
            "/tmp/x",
            "--registry-auth",
            "/etc/orch/auth.json",
        ]))
        .unwrap();
        assert_eq!(
            auth.registry_auth.as_deref(),
            Some(std::path::Path::new("/etc/orch/auth.json"))
        );
        let cas = Config::load(Cli::parse_from([
            "orchestratord",
            "--data-dir",
            "/tmp/x",
            "--registry-ca",
            "reg.example:5000=/etc/orch/ca.pem",
        ]))
        .unwrap();
        assert_eq!(
            cas.registry_cas
                .get("reg.example:5000")
                .map(PathBuf::as_path),
            Some(Path::new("/etc/orch/ca.pem"))
        );
        for bad in ["reg.example", "=/ca.pem", "reg.example="] {
            let e = Cli::try_parse_from(["orchestratord", "--registry-ca", bad]).unwrap_err();
            assert!(e.to_string().contains("REGISTRY=FILE"), "{e}");
        }
        let zero = Config::load(Cli::parse_from([
            "orchestratord",
            "--data-dir",
            "/tmp/x",
            "--etcd",
            "http://127.0.0.1:2379",
            "--lease-ttl",
            "0",
        ]));
        assert!(zero.unwrap_err().to_string().contains("--lease-ttl"));
    }

    #[test]
    fn an_open_api_stays_on_loopback() {
        let load = |args: &[&str]| {
            let mut all = vec!["orchestratord", "--data-dir", "/tmp/x"];
            all.extend_from_slice(args);
            Config::load(Cli::parse_from(all))
        };
        let err = load(&["--listen", "0.0.0.0:8080"]).unwrap_err().to_string();
        assert!(
            err.contains("without API tokens") && err.contains("token create"),
            "{err}"
        );
        assert!(load(&["--listen", "10.1.2.3:8080"]).is_err());
        assert!(load(&["--listen", "[::1]:8080"]).is_ok());
        let with_tokens = load(&["--listen", "0.0.0.0:8080", "--tokens", "/t.yaml"]).unwrap();
        assert_eq!(with_tokens.tokens.as_deref(), Some(Path::new("/t.yaml")));
        let err = load(&["--tokens", "/t.yaml", "--etcd", "http://127.0.0.1:2379"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--cluster-token"), "{err}");
        let tls = load(&["--tls-cert", "/c.pem", "--tls-key", "/k.pem"]).unwrap();
        assert_eq!(tls.tls.unwrap().key, Path::new("/k.pem"));
        assert!(Cli::try_parse_from(["orchestratord", "--tls-cert", "/c.pem"]).is_err());
    }

    #[test]
    fn yaml_files_and_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("od.yaml");
        std::fs::write(
            &path,
            "log_format: json\nmemory_mb: 512\ndynamic_ports: 40000-40099\n",
        )
        .unwrap();
        let c = Config::load(Cli::parse_from([
            "orchestratord",
            "--config",
            path.to_str().unwrap(),
            "--data-dir",
            "/tmp/x",
        ]))
        .unwrap();
        assert_eq!((c.log_format, c.memory_mb), (LogFormat::Json, Some(512)));
        assert_eq!(c.dynamic_ports.range(), 40000..=40099);
        std::fs::write(&path, "colour: red\n").unwrap();
        let err = Config::load(Cli::parse_from([
            "orchestratord",
            "--config",
            path.to_str().unwrap(),
        ]))
        .unwrap_err();
        assert!(format!("{err:#}").contains("colour"), "{err:#}");
    }
}
