//! [`GuardedStore`]: the store as every part of a member sees it, watched for
//! [`StoreError::Reset`]. A store that was wiped or replaced (etcd restarted empty, another
//! etcd behind the same address) must not be written to: every part would re-create what it
//! knows from nothing (an agent its reports, a leader its records), and an agent that lists no
//! assignment would remove every container of its node. So the first `Reset` any part meets
//! trips the guard for good: from then on every call fails with `Reset` without reaching the
//! store, and [`StoreFailure`] tells the daemon, which stops (see `ClusterMember::failed`).

use async_trait::async_trait;
use orchestrator_shared_types::Event;
use state_store_interface::{
    Coordination, Entry, EventFilter, Kind, KindSet, LeaseId, Op, Precondition, Revision,
    StateStore, StoreError, Watch,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Whether the store of a member was found reset, and why; cheap to clone.
#[derive(Clone)]
pub struct StoreFailure {
    reason: watch::Receiver<Option<String>>,
}

impl StoreFailure {
    /// The reason, once the store was found reset.
    pub fn reason(&self) -> Option<String> {
        self.reason.borrow().clone()
    }

    /// Waits until the store is found reset; returns why. Never returns while the store is
    /// the same.
    pub async fn failed(&self) -> String {
        let mut rx = self.reason.clone();
        let reason = rx
            .wait_for(Option::is_some)
            .await
            .map(|reason| reason.clone().unwrap_or_default());
        match reason {
            Ok(reason) => reason,
            // The guard is gone (the member shut down): nothing will fail any more.
            Err(_) => std::future::pending().await,
        }
    }
}

/// A [`Coordination`] store that stops at the first [`StoreError::Reset`]; see the module docs.
pub struct GuardedStore {
    inner: Arc<dyn Coordination>,
    tripped: watch::Sender<Option<String>>,
}

impl GuardedStore {
    /// Guards `inner`.
    pub fn new(inner: Arc<dyn Coordination>) -> Arc<Self> {
        let (tripped, _) = watch::channel(None);
        Arc::new(Self { inner, tripped })
    }

    /// What tells whether (and why) the store was found reset.
    pub fn failure(&self) -> StoreFailure {
        StoreFailure {
            reason: self.tripped.subscribe(),
        }
    }

    /// `Reset` at once if the guard has tripped.
    fn check(&self) -> Result<(), StoreError> {
        match &*self.tripped.borrow() {
            Some(reason) => Err(StoreError::Reset {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Trips the guard on a `Reset` (the first reason is kept).
    fn seen<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(StoreError::Reset { reason }) = &result {
            self.tripped.send_if_modified(|current| {
                if current.is_some() {
                    return false;
                }
                tracing::debug!(%reason, "the store was found reset: every further call fails");
                *current = Some(reason.clone());
                true
            });
        }
        result
    }
}

#[async_trait]
impl StateStore for GuardedStore {
    async fn get(&self, kind: Kind, key: &str) -> Result<Option<Entry>, StoreError> {
        self.check()?;
        self.seen(self.inner.get(kind, key).await)
    }

    async fn list(&self, kind: Kind, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        self.check()?;
        self.seen(self.inner.list(kind, prefix).await)
    }

    async fn list_page<'a>(
        &self,
        kind: Kind,
        prefix: &str,
        start_after: Option<&'a str>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        self.check()?;
        self.seen(self.inner.list_page(kind, prefix, start_after, limit).await)
    }

    async fn commit(&self, ops: Vec<Op>) -> Result<Revision, StoreError> {
        self.check()?;
        self.seen(self.inner.commit(ops).await)
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        self.check()?;
        self.seen(self.inner.revision().await)
    }

    async fn watch_kinds(&self, after: Revision, kinds: KindSet) -> Result<Watch, StoreError> {
        self.check()?;
        // A watch that ends with `Reset` is followed by a re-listing, which trips the guard.
        self.seen(self.inner.watch_kinds(after, kinds).await)
    }

    async fn watch_prefix(
        &self,
        after: Revision,
        kind: Kind,
        prefix: &str,
    ) -> Result<Watch, StoreError> {
        self.check()?;
        self.seen(self.inner.watch_prefix(after, kind, prefix).await)
    }

    async fn append_events(&self, events: Vec<Event>) -> Result<(), StoreError> {
        self.check()?;
        self.seen(self.inner.append_events(events).await)
    }

    async fn list_events(&self, filter: &EventFilter) -> Result<Vec<Event>, StoreError> {
        self.check()?;
        self.seen(self.inner.list_events(filter).await)
    }
}

#[async_trait]
impl Coordination for GuardedStore {
    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        self.check()?;
        self.seen(self.inner.grant_lease(ttl).await)
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.check()?;
        self.seen(self.inner.keep_alive(lease).await)
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.check()?;
        self.seen(self.inner.revoke_lease(lease).await)
    }

    async fn put_leased(
        &self,
        kind: Kind,
        key: &str,
        value: Vec<u8>,
        lease: LeaseId,
        precondition: Precondition,
    ) -> Result<Revision, StoreError> {
        self.check()?;
        self.seen(
            self.inner
                .put_leased(kind, key, value, lease, precondition)
                .await,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use state_store_interface::InMemoryStore;

    /// Once one call meets a `Reset`, every later call fails with it without reaching the
    /// store, and the failure is told once with the first reason.
    #[tokio::test]
    async fn the_first_reset_trips_the_guard_for_good() {
        let guarded = GuardedStore::new(Arc::new(InMemoryStore::new()));
        let failure = guarded.failure();
        assert!(guarded.revision().await.is_ok());
        assert_eq!(failure.reason(), None);
        let reset: Result<(), _> = guarded.seen(Err(StoreError::Reset {
            reason: "wiped".into(),
        }));
        assert!(reset.is_err());
        let _ = guarded.seen::<()>(Err(StoreError::Reset {
            reason: "second".into(),
        }));
        assert_eq!(failure.failed().await, "wiped");
        match guarded.revision().await {
            Err(StoreError::Reset { reason }) => assert_eq!(reason, "wiped"),
            other => panic!("expected Reset, got {other:?}"),
        }
        let unavailable: Result<(), _> = GuardedStore::new(Arc::new(InMemoryStore::new()))
            .seen(Err(StoreError::unavailable("get", "down")));
        assert!(matches!(unavailable, Err(StoreError::Unavailable { .. })));
    }
}
