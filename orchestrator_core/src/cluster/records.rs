//! The records a cluster keeps in its store besides workloads, instances and nodes: what the
//! leader assigns to each node, what each node's agent reports back, and the cluster-wide
//! records (identity, leadership, members' liveness).
//!
//! Who writes what (one writer per key, so no two daemons ever race on one):
//! * `Assignment/{node}/{container}` — the leader (fenced);
//! * `ContainerStatus/{node}/{container}` — that node's agent;
//! * `Cluster/leader` — the elected leader, under its lease;
//! * `Cluster/members/{node}` — that node's agent, under its lease;
//! * `Cluster/id` — the first daemon of the cluster, once.

use container_runtime_interface::{ContainerSpec, ContainerState, Health};
use orchestrator_shared_types::{ContainerId, InstanceId, NodeId, WorkloadId};
use serde::{Deserialize, Serialize};
use state_store_interface::{Kind, StoredObject};

/// A container the leader wants on a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The node that runs it.
    pub node: NodeId,
    /// What to run.
    pub spec: ContainerSpec,
    /// Unique per assignment: a container id can be assigned again after a removal, and a
    /// report names the assignment it realizes, so a report about an earlier one never
    /// answers a later one.
    pub uid: String,
    /// Set when the leader wants it stopped (kept until removed): the grace period, in
    /// milliseconds, before it is killed.
    #[serde(default)]
    pub stop_grace_ms: Option<u64>,
}

impl StoredObject for Assignment {
    const KIND: Kind = Kind::Assignment;
    fn key(&self) -> String {
        container_key(&self.node, &self.spec.id)
    }
}

/// What a node's agent observed of one assigned container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerReport {
    /// The node it runs on.
    pub node: NodeId,
    /// The container.
    pub id: ContainerId,
    /// Its instance.
    pub instance_id: InstanceId,
    /// Its workload.
    pub workload_id: WorkloadId,
    /// Its state.
    pub state: ContainerState,
    /// What its probes say, if anything probes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// The [`Assignment::uid`] it realizes.
    pub assignment_uid: String,
}

impl StoredObject for ContainerReport {
    const KIND: Kind = Kind::ContainerStatus;
    fn key(&self) -> String {
        container_key(&self.node, &self.id)
    }
}

/// The key of a container's assignment and report: `{node}/{container}`.
pub fn container_key(node: &NodeId, id: &ContainerId) -> String {
    format!("{node}/{id}")
}

/// The key prefix of one node's assignments and reports.
pub fn node_prefix(node: &NodeId) -> String {
    format!("{node}/")
}

/// `Cluster/id`: the cluster's identity, made once by its first daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRecord {
    /// A random id.
    pub id: String,
    /// SHA-256 (hex) of the cluster token its daemons share, if one was set: a daemon with
    /// another token is refused.
    #[serde(default)]
    pub token_sha256: Option<String>,
}

impl StoredObject for ClusterRecord {
    const KIND: Kind = Kind::Cluster;
    fn key(&self) -> String {
        CLUSTER_ID_KEY.to_owned()
    }
}

/// The key of [`ClusterRecord`].
pub const CLUSTER_ID_KEY: &str = "id";

/// `Cluster/leader`: who holds the leadership (bound to the holder's lease).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderRecord {
    /// The leader's node.
    pub node: NodeId,
    /// Where its daemon's API is reached.
    pub address: String,
}

impl StoredObject for LeaderRecord {
    const KIND: Kind = Kind::Cluster;
    fn key(&self) -> String {
        LEADER_KEY.to_owned()
    }
}

/// The key of [`LeaderRecord`].
pub const LEADER_KEY: &str = "leader";

/// `Cluster/members/{node}`: a live member (bound to its agent's lease, so it disappears when
/// the member dies or loses the store).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// Its node.
    pub node: NodeId,
    /// Where its daemon's API (and agent API) is reached.
    pub address: String,
    /// Where its daemon gossips (UDP), if it does: other daemons take it as a seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gossip: Option<String>,
}

impl StoredObject for MemberRecord {
    const KIND: Kind = Kind::Cluster;
    fn key(&self) -> String {
        member_key(&self.node)
    }
}

/// The key prefix of [`MemberRecord`]s.
pub const MEMBERS_PREFIX: &str = "members/";

/// The key of a node's [`MemberRecord`].
pub fn member_key(node: &NodeId) -> String {
    format!("{MEMBERS_PREFIX}{node}")
}
