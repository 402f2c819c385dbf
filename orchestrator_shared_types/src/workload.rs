//! What the user asks for: a workload of identical replicas, each a group of containers.

use crate::{Labels, Probe, Resources, TemplateRevision, UpdateStrategy, WorkloadId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// When a replica whose containers exited is started again (Kubernetes' `restartPolicy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub enum RestartPolicy {
    /// Restart after any exit, successful or not.
    #[default]
    Always,
    /// Restart only after a failure (non-zero exit or runtime error).
    OnFailure,
    /// Never restart; the replica keeps its final status.
    Never,
}

impl RestartPolicy {
    /// Whether an instance that ended with `exit_code` (None: a runtime error) is restarted.
    pub fn restarts(&self, exit_code: Option<i32>) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => exit_code != Some(0),
            RestartPolicy::Never => false,
        }
    }
}

/// When a node pulls a container's image from its registry (Kubernetes' `imagePullPolicy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub enum PullPolicy {
    /// Pull only when the node has no image under this reference yet.
    #[default]
    IfNotPresent,
    /// Ask the registry every time a container starts (a moved tag is pulled; unchanged blobs
    /// are not downloaded again).
    Always,
    /// Never pull: the image must already be on the node.
    Never,
}

impl PullPolicy {
    /// Whether this is the default (kept out of serialized manifests, so adding the field left
    /// existing workloads' spec hashes unchanged).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// How the scheduler chooses among feasible nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub enum PlacementStrategy {
    /// Fill the fullest node that still fits (best fit): fewer nodes used, room kept for big
    /// requests. The default, as in Nomad.
    #[default]
    BinPack,
    /// Prefer the node with the fewest replicas of this workload, then the emptiest one.
    Spread,
    /// At most one replica of this workload per node (hard anti-affinity); spread among those.
    OnePerNode,
}

/// Transport protocol of a port.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub enum Protocol {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

/// Where dynamic host ports (`host_port: 0`) are picked from by default (Nomad's default dynamic
/// range); a node may set its own ([`Node::dynamic_ports`](crate::Node::dynamic_ports)).
pub const DYNAMIC_PORT_RANGE: std::ops::RangeInclusive<u16> = 20000..=32767;

/// A port a container listens on and, optionally, the host port it claims.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct PortMapping {
    /// Port inside the container. For a dynamic mapping it only names the port: the container
    /// shares the host's network and must listen on the host port it is given.
    pub container_port: u16,
    /// Port on the host; a scheduling resource: no two instances on one node may claim it.
    /// `0` means dynamic: when a replica is placed, the orchestrator picks a port of its node's
    /// dynamic range (20000-32767 by default, `DYNAMIC_PORT_RANGE`) free there, records it in
    /// the instance's `ports` and passes it to the containers as `PORT_<container_port>` (and
    /// `PORT` for a container's first port), so many replicas of one workload can share a node.
    // The text above is also the MCP tools' schema description: no rustdoc links in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u16>,
    /// `tcp` (default) or `udp`.
    #[serde(default)]
    pub protocol: Protocol,
}

impl PortMapping {
    /// Whether the host port is picked at placement (`host_port: 0`).
    pub fn is_dynamic(&self) -> bool {
        self.host_port == Some(0)
    }
}

/// One container of a replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct ContainerConfig {
    /// Unique within the workload (DNS-1123 label).
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 63,
            pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
        )
    )]
    pub name: String,
    /// Image reference, e.g. `127.0.0.1:5000/demo/busybox:1`.
    pub image: String,
    /// When to pull `image` (`IfNotPresent` by default).
    #[serde(default, skip_serializing_if = "PullPolicy::is_default")]
    pub image_pull_policy: PullPolicy,
    /// Replaces the image's entrypoint when not empty.
    #[serde(default)]
    pub command: Vec<String>,
    /// Replaces the image's arguments when not empty.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment variables added to the image's.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Ports.
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    /// What the container requests; the scheduler reserves it and the runtime enforces it.
    #[serde(default = "ContainerConfig::default_resources")]
    pub resources: Resources,
    /// Runs the process as this user instead of the image's `USER` (`docker run --user`):
    /// `name`, `uid`, `name:group` or `uid:gid`, names looked up in the image's `/etc/passwd`
    /// and `/etc/group`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Mounts the container's root filesystem read-only (`docker run --read-only`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only_root: bool,
    /// Restarts the container when it fails (see `Probe`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    /// The instance is ready only while it passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    /// Holds liveness and readiness until it passes once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<Probe>,
}

impl ContainerConfig {
    /// Requests of a container whose manifest gives none: 100 millicores and 64 MB.
    pub fn default_resources() -> Resources {
        Resources::new(100, 64, 0)
    }

    /// A container with default resources; handy in tests.
    pub fn new(name: &str, image: &str) -> Self {
        Self {
            name: name.to_owned(),
            image: image.to_owned(),
            image_pull_policy: PullPolicy::default(),
            command: Vec::new(),
            args: Vec::new(),
            env: BTreeMap::new(),
            ports: Vec::new(),
            resources: Self::default_resources(),
            user: None,
            read_only_root: false,
            liveness_probe: None,
            readiness_probe: None,
            startup_probe: None,
        }
    }

    /// Whether anything probes this container.
    pub fn has_probes(&self) -> bool {
        self.liveness_probe.is_some()
            || self.readiness_probe.is_some()
            || self.startup_probe.is_some()
    }
}

/// The desired state of a workload: `replicas` copies of the same group of containers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct WorkloadDefinition {
    /// Assigned by the server on creation; empty in manifests.
    #[serde(default, skip_serializing_if = "is_empty_id")]
    pub id: WorkloadId,
    /// Unique name (DNS-1123 label).
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 63,
            pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
        )
    )]
    pub name: String,
    /// Free-form labels.
    #[serde(default)]
    // `Labels` is an alias: spell it out so the schema is an inline string map, not a component
    // named after the alias's target.
    #[cfg_attr(feature = "openapi", schema(value_type = std::collections::BTreeMap<String, String>))]
    pub labels: Labels,
    /// The containers of each replica (at least one).
    #[cfg_attr(feature = "openapi", schema(min_items = 1))]
    pub containers: Vec<ContainerConfig>,
    /// How many replicas should run (at most 10,000).
    #[cfg_attr(feature = "openapi", schema(maximum = 10000))]
    pub replicas: u32,
    /// Only nodes carrying all these labels are eligible.
    #[serde(default)]
    // `Labels` is an alias: spell it out so the schema is an inline string map, not a component
    // named after the alias's target.
    #[cfg_attr(feature = "openapi", schema(value_type = std::collections::BTreeMap<String, String>))]
    pub node_selector: Labels,
    /// What happens when containers exit.
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    /// How replicas are spread over nodes.
    #[serde(default)]
    pub placement: PlacementStrategy,
    /// How long a replica's containers get to exit after SIGTERM before SIGKILL when they are
    /// stopped (scale down, delete, replacement, drain), as Kubernetes'
    /// `terminationGracePeriodSeconds`; `0` kills at once. Default: the daemon's (10 s). At
    /// most 3600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(maximum = 3600))]
    pub termination_grace_seconds: Option<u32>,
    /// Seconds between taking a replica out of service (not ready, no longer listed as such)
    /// and sending it SIGTERM when it is stopped, so that clients which just looked it up are
    /// served (Kubernetes users get this with a `preStop` sleep). Default 0, at most 3600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(maximum = 3600))]
    pub pre_stop_seconds: Option<u32>,
    /// How a template change (containers, node selector, placement) replaces the replicas:
    /// a rolling update by default.
    #[serde(default, skip_serializing_if = "UpdateStrategy::is_default")]
    pub strategy: UpdateStrategy,
    /// The revision number of the current template: set by the server (1 on creation, one
    /// more on every template change); ignored in manifests.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub revision: u64,
    /// The previous templates, oldest first, at most `REVISION_HISTORY`: kept by the server
    /// for `rollout history` and `rollout undo`; ignored in manifests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<TemplateRevision>,
    /// Who made the last change (create, update, scale, delete): set by the server from the
    /// caller's API token; ignored in manifests. Not part of the desired state: see
    /// [`WorkloadDefinition::same_desired_state`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<String>,
}

fn is_empty_id(id: &WorkloadId) -> bool {
    id.0.is_empty()
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl WorkloadDefinition {
    /// A workload with one container, handy in tests and benchmarks.
    pub fn new(name: &str, replicas: u32, container: ContainerConfig) -> Self {
        Self {
            id: WorkloadId::generate(),
            name: name.to_owned(),
            labels: Labels::new(),
            containers: vec![container],
            replicas,
            node_selector: Labels::new(),
            restart_policy: RestartPolicy::Always,
            placement: PlacementStrategy::BinPack,
            termination_grace_seconds: None,
            pre_stop_seconds: None,
            strategy: UpdateStrategy::default(),
            revision: 0,
            history: Vec::new(),
            changed_by: None,
        }
    }

    /// Whether `self` and `other` ask for the same thing: equal but for who changed them last
    /// ([`WorkloadDefinition::changed_by`]) and the server's revision bookkeeping, so that the
    /// same manifest applied by someone else is no change.
    pub fn same_desired_state(&self, other: &WorkloadDefinition) -> bool {
        let Self {
            id,
            name,
            labels,
            containers,
            replicas,
            node_selector,
            restart_policy,
            placement,
            termination_grace_seconds,
            pre_stop_seconds,
            strategy,
            revision: _,
            history: _,
            changed_by: _,
        } = self;
        *id == other.id
            && *name == other.name
            && *labels == other.labels
            && *containers == other.containers
            && *replicas == other.replicas
            && *node_selector == other.node_selector
            && *restart_policy == other.restart_policy
            && *placement == other.placement
            && *termination_grace_seconds == other.termination_grace_seconds
            && *pre_stop_seconds == other.pre_stop_seconds
            && *strategy == other.strategy
    }

    /// Whether `other` has the same template: the parts [`WorkloadDefinition::spec_hash`]
    /// covers.
    pub fn same_template(&self, other: &WorkloadDefinition) -> bool {
        self.containers == other.containers
            && self.node_selector == other.node_selector
            && self.placement == other.placement
    }

    /// The current template as a revision record.
    pub fn template(&self) -> TemplateRevision {
        TemplateRevision {
            revision: self.revision,
            containers: self.containers.clone(),
            node_selector: self.node_selector.clone(),
            placement: self.placement,
            changed_by: self.changed_by.clone(),
            failed: None,
        }
    }

    /// Takes `revision`'s template (containers, node selector, placement) as the current one.
    pub fn set_template(&mut self, revision: &TemplateRevision) {
        self.containers.clone_from(&revision.containers);
        self.node_selector.clone_from(&revision.node_selector);
        self.placement = revision.placement;
    }

    /// [`WorkloadDefinition::pre_stop_seconds`] as a duration.
    pub fn pre_stop(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.pre_stop_seconds.unwrap_or(0).into())
    }

    /// [`WorkloadDefinition::termination_grace_seconds`] as a duration; `None`: the daemon's.
    pub fn termination_grace(&self) -> Option<std::time::Duration> {
        self.termination_grace_seconds
            .map(|s| std::time::Duration::from_secs(s.into()))
    }

    /// What one replica requests: the sum over its containers.
    pub fn replica_resources(&self) -> Resources {
        self.containers
            .iter()
            .fold(Resources::ZERO, |acc, c| acc + c.resources)
    }

    /// A stable fingerprint of what makes replicas differ: containers, node selector and
    /// placement (not replicas, labels or restart policy, which apply without replacing
    /// anything). FNV-1a over the canonical JSON, so it is the same across builds and machines.
    pub fn spec_hash(&self) -> String {
        #[derive(Serialize)]
        struct Template<'a> {
            containers: &'a [ContainerConfig],
            node_selector: &'a Labels,
            placement: PlacementStrategy,
        }
        let template = Template {
            containers: &self.containers,
            node_selector: &self.node_selector,
            placement: self.placement,
        };
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |bytes: &[u8]| {
            for b in bytes {
                hash ^= u64::from(*b);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        };
        // Writing plain data into a Vec cannot fail.
        let json = serde_json::to_vec(&template).unwrap_or_default();
        feed(&json);
        format!("{hash:016x}")
    }

    /// The static host ports one replica claims, with their protocols (dynamic ones, picked
    /// at placement, are not among them).
    pub fn host_ports(&self) -> Vec<(Protocol, u16)> {
        self.containers
            .iter()
            .flat_map(|c| c.ports.iter())
            .filter_map(|p| p.host_port.filter(|&h| h != 0).map(|h| (p.protocol, h)))
            .collect()
    }

    /// Whether a replica needs host ports picked at placement.
    pub fn has_dynamic_ports(&self) -> bool {
        self.containers
            .iter()
            .any(|c| c.ports.iter().any(PortMapping::is_dynamic))
    }
}
