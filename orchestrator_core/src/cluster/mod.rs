//! A cluster of daemons sharing one store (etcd): every daemon serves the API from a view fed by
//! the store's watch, is its machine's node agent, and campaigns for the leadership; the leader
//! runs the reconcile loop with every write fenced.
//!
//! # Layout
//! * [`MembershipSource`] — what `cluster info` shows of the members and the leader.

use async_trait::async_trait;
use orchestrator_shared_types::api::Membership;

/// What this daemon knows of its cluster's members, leader and store, for `cluster info`.
#[async_trait]
pub trait MembershipSource: Send + Sync {
    /// The membership as this daemon sees it now.
    async fn membership(&self) -> Membership;
}
