//! A cluster of daemons sharing one store (etcd): every daemon serves the API from a view fed by
//! the store's watch, is its machine's node agent, and campaigns for the leadership; the leader
//! runs the reconcile loop with every write fenced.
//!
//! # Layout
//! * [`member`] — [`member::ClusterMember`]: one daemon of a cluster, put together.
//! * [`records`] — what a cluster keeps in the store: assignments, reports, the cluster's
//!   identity, the leadership and the members.
//! * [`agent`] — [`agent::NodeAgent`]: realizes its node's assignments with the local runtime.
//! * [`runtime`] — [`runtime::ClusterRuntime`]: the leader's `ContainerRuntime`, which writes
//!   assignments and turns reports into container events.
//! * [`leader`] — the election and the [`leader::FencedStore`].
//! * [`lease`] — [`lease::LeaseKeeper`]: this daemon's lease.
//! * [`guard`] — [`guard::GuardedStore`]: the store as the parts see it, stopped for good at
//!   the first sign that it was reset or replaced.
//! * [`nodes`] — registrations plus liveness as nodes; [`nodes::StoreClusterManager`].
//! * [`mirror`] — [`mirror::Mirror`]: the store-fed view the API answers from.
//! * [`MembershipSource`] — what `cluster info` shows of the members and the leader.

pub mod agent;
pub mod guard;
pub mod leader;
pub mod lease;
pub mod member;
pub mod mirror;
pub mod nodes;
pub mod records;
pub mod runtime;

use crate::backoff::BackoffPolicy;
use async_trait::async_trait;
use orchestrator_shared_types::api::Membership;

/// What this daemon knows of its cluster's members, leader and store, for `cluster info`.
#[async_trait]
pub trait MembershipSource: Send + Sync {
    /// The membership as this daemon sees it now.
    async fn membership(&self) -> Membership;
}

/// Backoff of re-listing and re-watching the store after it failed: fast at first, so a
/// restarted store is followed again within a fraction of a second, and capped low, so an
/// outage of half a minute is followed by seconds, not half a minute more.
pub const RECONNECT: BackoffPolicy = BackoffPolicy {
    initial: std::time::Duration::from_millis(200),
    max: std::time::Duration::from_secs(5),
    reset_after: std::time::Duration::from_secs(30),
    jitter: 0.2,
};
