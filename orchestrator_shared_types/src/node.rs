//! A machine of the cluster.

use crate::{Labels, NodeId, Resources};
use serde::{Deserialize, Serialize};

/// Whether a node can run work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
