//! Errors of a [`crate::StateStore`].

use crate::{Kind, Revision};

/// What went wrong with a store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A write's precondition did not hold: the key exists, is absent, or was modified since the
    /// revision the writer read. The caller should re-read and decide again.
    #[error("conflict on {kind:?} {key:?}: {reason}")]
    Conflict {
        /// Kind of the entry.
        kind: Kind,
        /// Its key.
        key: String,
        /// What the precondition expected.
        reason: String,
    },
    /// A watch asked for changes older than what the store still keeps.
    #[error("revision {requested} is compacted (oldest kept: {oldest})")]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// The oldest revision whose changes are all still kept: `watch(oldest - 1)` works.
        oldest: Revision,
    },
    /// A stored value could not be (de)serialized.
    #[error("bad stored value for {kind:?} {key:?}")]
    Codec {
        /// Kind of the entry.
        kind: Kind,
        /// Its key.
        key: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// The store cannot be reached or is overloaded; retrying later may succeed.
    #[error("store unavailable during {operation}")]
    Unavailable {
        /// What was being done.
        operation: &'static str,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The store failed in a way retrying will not fix (corruption, full disk, ...).
    #[error("store failed during {operation}")]
    Backend {
        /// What was being done.
        operation: &'static str,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The lease has ended (expired or revoked): the keys written under it are gone.
    #[error("lease {lease} has expired")]
    LeaseExpired {
        /// The lease.
        lease: i64,
    },
    /// The store is not the one this client was using: it was reset or replaced (etcd: its
    /// cluster id changed, or its revision went backwards). Continuing would re-run the cluster
    /// from nothing, so the caller must stop and an operator decide.
    #[error("the store was reset or replaced: {reason}")]
    Reset {
        /// What showed it.
        reason: String,
    },
    /// The store was closed.
    #[error("store closed")]
    Closed,
}

impl StoreError {
    /// Whether retrying the same operation later may succeed. Conflicts are not transient: the
    /// caller must re-read first.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }

    /// An `Unavailable` error from any error type.
    pub fn unavailable(
        operation: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StoreError::Unavailable {
            operation,
            source: source.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Kind, MockStateStore, StateStore};

    /// The core retries what `is_transient()` says may heal and re-reads on a conflict: a mock
    /// forces both through the trait the core calls.
    #[tokio::test]
    async fn unavailable_is_transient_and_conflict_is_not() {
        let mut mock = MockStateStore::new();
        mock.expect_get()
            .times(1)
            .returning(|_, _| Err(StoreError::unavailable("get", "connection refused")));
        mock.expect_commit().times(1).returning(|_| {
            Err(StoreError::Conflict {
                kind: Kind::Workload,
                key: "web".into(),
                reason: "expected absent".into(),
            })
        });
        let store: &dyn StateStore = &mock;

        let err = store.get(Kind::Node, "n1").await.unwrap_err();
        assert!(err.is_transient());
        assert_eq!(err.to_string(), "store unavailable during get");
        assert_eq!(
            std::error::Error::source(&err)
                .map(ToString::to_string)
                .as_deref(),
            Some("connection refused")
        );

        let err = store.commit(vec![]).await.unwrap_err();
        assert!(
            !err.is_transient(),
            "a conflict needs a re-read, not a blind retry"
        );
        assert_eq!(
            err.to_string(),
            "conflict on Workload \"web\": expected absent"
        );
        assert!(!StoreError::Closed.is_transient());
    }
}
