//! [`LeaseKeeper`]: this daemon's one lease, kept alive for as long as the store answers. The
//! node agent binds its member record to it and the candidate its leadership, so a daemon that
//! dies or loses the store loses both within one TTL.
//!
//! The keeper counts the lease lost as soon as it could not refresh it for a whole TTL, even if
//! the store would still hold it a little longer: a leader stops acting early rather than late.
//! It then grants a new lease and publishes it, so the agent registers again and the candidate
//! campaigns again.
//!
//! Granting is retried quickly ([`GRANT_RETRY`], capped at one second): when the store comes
//! back after an outage longer than the TTL, every member's lease is gone at once, and the
//! members must be registered again well within the leader's grace for missing members (see
//! [`super::nodes`]) so that none is taken for dead.

use crate::backoff::{Backoff, BackoffPolicy};
use state_store_interface::{Coordination, LeaseId, StoreError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

/// Backoff of granting a lease while the store fails: a failed grant is cheap, and a member
/// without a lease looks dead to the leader, so it retries often.
pub const GRANT_RETRY: BackoffPolicy = BackoffPolicy {
    initial: Duration::from_millis(100),
    max: Duration::from_secs(1),
    reset_after: Duration::from_secs(30),
    jitter: 0.2,
};

/// Keeps one lease alive; see the module docs.
pub struct LeaseKeeper {
    current: watch::Receiver<Option<LeaseId>>,
    ttl: Duration,
    _stop: DropGuard,
}

impl LeaseKeeper {
    /// Starts keeping a lease of `ttl` on `store`; the first is granted in the background.
    pub fn start(store: Arc<dyn Coordination>, ttl: Duration) -> Self {
        let (tx, current) = watch::channel(None);
        let cancel = CancellationToken::new();
        tokio::spawn(keep(store, ttl, tx, cancel.clone()));
        Self {
            current,
            ttl,
            _stop: cancel.drop_guard(),
        }
    }

    /// The lease held now (`None` while there is none), and its changes.
    pub fn subscribe(&self) -> watch::Receiver<Option<LeaseId>> {
        self.current.clone()
    }

    /// The lease's time-to-live.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

async fn keep(
    store: Arc<dyn Coordination>,
    ttl: Duration,
    current: watch::Sender<Option<LeaseId>>,
    cancel: CancellationToken,
) {
    let mut backoff = Backoff::new(GRANT_RETRY);
    let refresh_every = ttl / 3;
    loop {
        let lease = tokio::select! {
            () = cancel.cancelled() => return,
            lease = store.grant_lease(ttl) => lease,
        };
        let lease = match lease {
            Ok(lease) => lease,
            Err(e) => {
                tracing::warn!(error = %e, "granting this daemon's lease failed; retrying");
                if !super::retry_after(&mut backoff, Duration::ZERO, &cancel).await {
                    return;
                }
                continue;
            }
        };
        let granted = Instant::now();
        tracing::info!(lease, ttl_ms = ttl.as_millis() as u64, "lease granted");
        current.send_replace(Some(lease));
        let mut refreshed = Instant::now();
        loop {
            tokio::select! {
                () = cancel.cancelled() => {
                    current.send_replace(None);
                    return;
                }
                () = tokio::time::sleep(refresh_every) => {}
            }
            // A refresh that hangs must not outlive the lease.
            let deadline = (refreshed + ttl).saturating_duration_since(Instant::now());
            match tokio::time::timeout(deadline, store.keep_alive(lease)).await {
                Ok(Ok(())) => refreshed = Instant::now(),
                Ok(Err(StoreError::LeaseExpired { .. })) => {
                    tracing::warn!(
                        lease,
                        "the lease expired (the store did not hear from this daemon in time)"
                    );
                    break;
                }
                Ok(Err(e)) => tracing::warn!(lease, error = %e, "refreshing the lease failed"),
                Err(_) => {}
            }
            if refreshed.elapsed() >= ttl {
                tracing::warn!(
                    lease,
                    "the lease could not be refreshed for a whole TTL: counted lost"
                );
                break;
            }
        }
        current.send_replace(None);
        backoff.fail(granted.elapsed());
    }
}
