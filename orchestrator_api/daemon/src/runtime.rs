//! The container runtime of this node: youki (or runc) through [`OciRuntime`], with images
//! pulled from registries, or the simulated runtime when asked for.
//!
//! Everything of the OCI runtime lives under `data_dir/oci/`: `state/` (the runtime's `--root`,
//! where it finds the containers of an earlier daemon process), `bundles/`, `logs/` and
//! `images/` (content-addressed blobs and unpacked root filesystems, shared by containers).
//! The OCI runtime is wrapped in a [`ProbingRuntime`], which runs the containers' liveness,
//! readiness and startup probes on this node (its registrations in `data_dir/probes/`), so
//! both the single-node loop and the cluster agent get probes.

use crate::config::{Config, RuntimeKind};
use anyhow::{bail, Context, Result};
use container_runtime_interface::oci::cli::Cli;
use container_runtime_interface::oci::{
    parse_docker_config, OciConfig, OciRuntime, RegistryConfig, RegistryImages, INSTALL_HINT,
};
use container_runtime_interface::{
    ContainerRuntime, ProbingConfig, ProbingRuntime, SimulatedRuntime, SimulatedRuntimeConfig,
};
use orchestrator_shared_types::NodeId;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Runtime binaries looked for, in order, when none is configured.
const CANDIDATES: [&str; 2] = ["youki", "runc"];

/// The runtime of this node, and what must be shut down with the daemon.
pub struct NodeRuntime {
    /// What the loop or the agent drives.
    pub runtime: Arc<dyn ContainerRuntime>,
    /// The probes of the OCI runtime's containers (none for the simulated runtime, whose
    /// containers have no processes to probe).
    probes: Option<Arc<ProbingRuntime>>,
}

impl NodeRuntime {
    /// Ends the probing tasks (containers keep running; the next daemon probes them again).
    pub async fn shutdown(&self) {
        if let Some(probes) = &self.probes {
            probes.shutdown().await;
        }
    }
}

/// The runtime `config` asks for, driving containers of `node`.
pub async fn build(config: &Config, node: &NodeId) -> Result<NodeRuntime> {
    match config.runtime {
        RuntimeKind::Simulated => {
            tracing::warn!("using the SIMULATED runtime: no real containers will run");
            Ok(NodeRuntime {
                runtime: Arc::new(SimulatedRuntime::new(SimulatedRuntimeConfig::default())),
                probes: None,
            })
        }
        RuntimeKind::Youki => {
            let binary = runtime_binary(config.runtime_binary.as_deref())?;
            let dir = config.data_dir.join("oci");
            let version = check_binary(&binary, &dir.join("state")).await?;
            let credentials = match &config.registry_auth {
                Some(path) => {
                    let text = std::fs::read_to_string(path).with_context(|| {
                        format!("reading the registry credentials {}", path.display())
                    })?;
                    parse_docker_config(&text).map_err(|e| {
                        anyhow::anyhow!("the registry credentials {}: {e}", path.display())
                    })?
                }
                None => Default::default(),
            };
            let mut ca_certs = std::collections::HashMap::new();
            for (registry, path) in &config.registry_cas {
                let pem = std::fs::read(path).with_context(|| {
                    format!("reading the CA of registry {registry}, {}", path.display())
                })?;
                ca_certs.insert(registry.clone(), pem);
            }
            let images = RegistryImages::new(RegistryConfig {
                insecure_registries: config.insecure_registries.clone(),
                credentials,
                ca_certs,
                ..RegistryConfig::new(dir.join("images"))
            })
            .context("preparing the image store")?;
            let runtime = OciRuntime::new(OciConfig {
                binary: binary.clone(),
                root: dir.join("state"),
                data_dir: dir,
                cgroup_parent: config.cgroup_parent.clone(),
                node: node.clone(),
                images: Arc::new(images),
                ..OciConfig::defaults()
            })
            .context("starting the OCI runtime")?;
            tracing::info!(binary = %binary.display(), %version, "containers run through this OCI runtime");
            let probes = Arc::new(
                ProbingRuntime::new(
                    Arc::new(runtime),
                    ProbingConfig {
                        state_dir: Some(config.data_dir.join("probes")),
                        ..ProbingConfig::default()
                    },
                )
                .context("starting the probes")?,
            );
            Ok(NodeRuntime {
                runtime: probes.clone(),
                probes: Some(probes),
            })
        }
    }
}

/// The configured binary, or the first of [`CANDIDATES`] found in `PATH` or `~/.cargo/bin`.
fn runtime_binary(configured: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = configured {
        if path.is_file() {
            return Ok(path.to_owned());
        }
        bail!(
            "the OCI runtime binary {} does not exist. Install youki with \
             `apt-get install -y libseccomp-dev pkg-config && {INSTALL_HINT}` \
             (or `apt-get install runc`), or start with `--runtime simulated` to run no real containers",
            path.display()
        );
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    for name in CANDIDATES {
        if let Some(found) = dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
            return Ok(found);
        }
    }
    bail!(
        "no OCI runtime found (looked for {} in PATH and ~/.cargo/bin). Install youki with \
         `apt-get install -y libseccomp-dev pkg-config && {INSTALL_HINT}` (or `apt-get install runc`), \
         or name one with --runtime-binary, or start with `--runtime simulated` to run no real containers",
        CANDIDATES.join(" and ")
    )
}

/// Runs `BINARY --version` through the runtime's CLI wrapper (which repeats a run that hit
/// youki's occasional seal failure): a binary that cannot run stops the daemon now, not at the
/// first container. Returns the first line it printed.
async fn check_binary(binary: &Path, root: &Path) -> Result<String> {
    Cli::new(binary, root)
        .version()
        .await
        .with_context(|| format!("checking the OCI runtime {}", binary.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_configured_binary_says_how_to_install() {
        let err = runtime_binary(Some(Path::new("/nonexistent/youki"))).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/nonexistent/youki"), "{msg}");
        assert!(msg.contains("cargo install youki"), "{msg}");
    }

    #[tokio::test]
    async fn a_binary_that_fails_is_refused() {
        let root = Path::new("/nonexistent/state");
        assert!(check_binary(Path::new("/bin/false"), root).await.is_err());
        assert!(check_binary(Path::new("/bin/true"), root).await.is_ok());
    }
}
