//! A machine of the cluster.

use crate::{Labels, NodeId, Resources};
use serde::{Deserialize, Serialize};

/// Whether a node can run work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub enum NodeStatus {
    /// Healthy and reachable: new instances may be placed here.
    #[default]
    Ready,
    /// Reachable but not healthy (e.g. its runtime is failing): keep what runs, place nothing new.
    NotReady,
    /// Unreachable or gone: its instances are lost and must be replaced elsewhere.
    Down,
}

/// One machine: its identity, readiness, labels and resources.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct Node {
    /// Stable identity.
    pub id: NodeId,
    /// Human-readable name (often the hostname).
    pub name: String,
    /// Where its daemon can be reached (`host:port`).
    pub address: String,
    /// Readiness.
    pub status: NodeStatus,
    /// Set by a drain or cordon: keep what runs, place nothing new (Kubernetes' `unschedulable`).
    #[serde(default)]
    pub unschedulable: bool,
    /// Free-form labels matched by workloads' `node_selector`.
    #[serde(default)]
    // `Labels` is an alias: spell it out so the schema is an inline string map, not a component
    // named after the alias's target.
    #[cfg_attr(feature = "openapi", schema(value_type = std::collections::BTreeMap<String, String>))]
    pub labels: Labels,
    /// Total resources of the machine.
    pub capacity: Resources,
    /// What workloads may use: capacity minus what the system reserves.
    pub allocatable: Resources,
    /// Where this node's dynamic host ports (`host_port: 0`) are picked from (a Nomad client's
    /// `min_dynamic_port`..`max_dynamic_port`); [`DYNAMIC_PORT_RANGE`](crate::DYNAMIC_PORT_RANGE)
    /// by default.
    #[serde(default)]
    pub dynamic_ports: PortRange,
}

/// An inclusive range of ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port (included).
    pub last: u16,
}

impl PortRange {
    /// The range as a `RangeInclusive`.
    pub fn range(&self) -> std::ops::RangeInclusive<u16> {
        self.first..=self.last
    }
}

impl Default for PortRange {
    fn default() -> Self {
        Self {
            first: *crate::DYNAMIC_PORT_RANGE.start(),
            last: *crate::DYNAMIC_PORT_RANGE.end(),
        }
    }
}

impl std::str::FromStr for PortRange {
    type Err = String;

    /// `FIRST-LAST`, e.g. `20000-32767`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a port range FIRST-LAST (e.g. 20000-32767)");
        let (first, last) = s.split_once('-').ok_or_else(bad)?;
        let first: u16 = first.trim().parse().map_err(|_| bad())?;
        let last: u16 = last.trim().parse().map_err(|_| bad())?;
        if first == 0 || first > last {
            return Err(format!(
                "{s:?}: the first port must be at least 1 and not above the last"
            ));
        }
        Ok(Self { first, last })
    }
}

impl Node {
    /// A ready node whose allocatable resources equal its capacity; handy in tests and benchmarks.
    pub fn new(id: impl Into<NodeId>, capacity: Resources) -> Self {
        let id = id.into();
        Self {
            name: id.0.clone(),
            address: String::new(),
            id,
            status: NodeStatus::Ready,
            unschedulable: false,
            labels: Labels::new(),
            capacity,
            allocatable: capacity,
            dynamic_ports: PortRange::default(),
        }
    }

    /// Adds a label (builder style).
    pub fn with_label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_owned(), value.to_owned());
        self
    }

    /// True when new instances may be placed on this node.
    pub fn is_schedulable(&self) -> bool {
        self.status == NodeStatus::Ready && !self.unschedulable
    }
}
