//! [`Coordination`]: leases, the one thing a cluster needs from its store beyond [`StateStore`].
//!
//! A lease is a time-to-live the holder keeps refreshing; keys written under it are deleted by
//! the store when it ends (expiry or revocation), and that deletion is an ordinary change every
//! watcher sees. A cluster builds on it:
//! * a member's liveness: its node agent keeps `Cluster/members/{node}` under its lease, so a
//!   dead or cut-off machine disappears from the store within the TTL;
//! * leader election: the candidate that creates `Cluster/leader` (precondition `Absent`) under
//!   its lease is the leader; its fence is that key's mod revision, which [`Fence::check`]
//!   turns into an [`Op::Check`] on every leader write, so a deposed leader's late writes fail.
//!
//! etcd has leases natively (`EtcdStore`); [`crate::InMemoryStore`] has a twin for unit tests
//! and scenarios. The embedded single-node store (redb) has none: a single node needs no
//! election.

use crate::{Kind, Op, Precondition, Revision, StateStore, StoreError};
use async_trait::async_trait;
use std::time::Duration;

/// A lease's id, as the store assigned it.
pub type LeaseId = i64;

/// Leases over a [`StateStore`]. Implementations must pass the coordination part of
/// [`crate::conformance`].
#[async_trait]
pub trait Coordination: StateStore {
    /// A new lease that ends `ttl` from now unless refreshed. The store may round `ttl` up to
    /// its granularity (etcd: whole seconds).
    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError>;

    /// Refreshes `lease` to its full TTL. Fails with [`StoreError::LeaseExpired`] once it has
    /// ended (its keys are gone: the holder must stop acting on them).
    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError>;

    /// Ends `lease` now, deleting its keys. Revoking an ended lease is not an error.
    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError>;

    /// Writes `key` bound to `lease` if `precondition` holds (as a one-op [`StateStore::commit`]
    /// would). The key is deleted when the lease ends; a later write of the key without a lease
    /// (or with another) rebinds it. Fails with [`StoreError::LeaseExpired`] when the lease has
    /// ended.
    async fn put_leased(
        &self,
        kind: Kind,
        key: &str,
        value: Vec<u8>,
        lease: LeaseId,
        precondition: Precondition,
    ) -> Result<Revision, StoreError>;
}

/// The proof of a leadership: the leadership key and the revision at which this holder created
/// it. Every write the holder makes carries [`Fence::check`]; once the key is deleted (lease
/// ended) or re-created by another holder, those writes fail with a conflict on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    /// The leadership key's collection.
    pub kind: Kind,
    /// The leadership key.
    pub key: String,
    /// The revision that created (and, since it is never rewritten, last modified) it.
    pub revision: Revision,
}

impl Fence {
    /// The check to add to every batch the holder commits.
    pub fn check(&self) -> Op {
        Op::Check {
            kind: self.kind,
            key: self.key.clone(),
            precondition: Precondition::ModRevision(self.revision),
        }
    }

    /// Whether `err` is the fence failing (the holder is no longer the leader), rather than a
    /// conflict on one of the batch's own keys.
    pub fn is_violated_by(&self, err: &StoreError) -> bool {
        matches!(err, StoreError::Conflict { kind, key, .. } if *kind == self.kind && *key == self.key)
    }
}

/// Default time-to-live of leases (members' liveness, the leadership).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(5);
