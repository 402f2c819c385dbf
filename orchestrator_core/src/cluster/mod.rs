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
//! * [`gossip`] — [`gossip::Gossip`]: the fast layer of liveness (chitchat, in the daemon).
//! * [`fence`] — fencing a node whose replicas are replaced: the leader deletes its
//!   assignments, a daemon cut off from the store stops its containers.
//! * [`mirror`] — [`mirror::Mirror`]: the store-fed view the API answers from.
//! * [`MembershipSource`] — what `cluster info` shows of the members and the leader.

pub mod agent;
pub mod fence;
pub mod gossip;
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

/// Waits out the next delay of `backoff`, after a failure that followed `healthy_for` of health
/// (a long healthy run forgets earlier failures); `false` if `cancel` fired first. The retry of
/// every follower of the store (re-listing after its watch ended, registering, campaigning).
pub(crate) async fn retry_after(
    backoff: &mut crate::backoff::Backoff,
    healthy_for: std::time::Duration,
    cancel: &tokio_util::sync::CancellationToken,
) -> bool {
    let delay = backoff.fail(healthy_for);
    tokio::select! {
        () = cancel.cancelled() => false,
        () = tokio::time::sleep(delay) => true,
    }
}

/// One stream of the changes seen by several watches of one collection's key prefix each
/// (`StateStore::watch_prefix`: etcd filters them at the source), for followers that need a few
/// collections but not the same order across them. A watch of several collections at once is
/// one etcd watch on their common prefix, filtered in the client, so it would carry every
/// assignment and report of the cluster to each such follower.
///
/// Within one scope, changes keep their order; across scopes they come as they arrive. The
/// stream ends (with an error) as soon as one of the watches ends: the follower re-lists.
pub(crate) async fn watch_scopes(
    store: &dyn state_store_interface::StateStore,
    after: state_store_interface::Revision,
    scopes: &[(state_store_interface::Kind, &str)],
) -> Result<state_store_interface::Watch, state_store_interface::StoreError> {
    use state_store_interface::{StoreError, Watch};
    let mut watches = Vec::with_capacity(scopes.len());
    for (kind, prefix) in scopes {
        watches.push(store.watch_prefix(after, *kind, prefix).await?);
    }
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    for mut watch in watches {
        let tx = tx.clone();
        // Ends when its watch ends or the merged stream is dropped.
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tx.closed() => return,
                    item = watch.next() => match item {
                        Some(item) => if tx.send(item).await.is_err() { return },
                        None => {
                            let _ = tx.send(Err(StoreError::Closed)).await;
                            return;
                        }
                    },
                }
            }
        });
    }
    Ok(Watch::new(rx))
}
