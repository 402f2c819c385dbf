//! Typed access on top of the byte-level [`StateStore`]: values are JSON, so an etcd user can read
//! them with `etcdctl get`.

use crate::{Entry, Kind, Op, Precondition, Revision, StateStore, StoreError};
use async_trait::async_trait;
use orchestrator_shared_types::{Node, NodeId, WorkloadDefinition, WorkloadId, WorkloadInstance};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// A type stored in one collection under a key derived from its value.
pub trait StoredObject: Serialize + DeserializeOwned + Send + Sync {
    /// Its collection.
    const KIND: Kind;
    /// Its key.
    fn key(&self) -> String;
}

impl StoredObject for WorkloadDefinition {
    const KIND: Kind = Kind::Workload;
    fn key(&self) -> String {
        self.name.clone()
    }
}

impl StoredObject for WorkloadInstance {
    const KIND: Kind = Kind::Instance;
    fn key(&self) -> String {
        format!("{}/{}", self.workload_id, self.id)
    }
}

impl StoredObject for Node {
    const KIND: Kind = Kind::Node;
    fn key(&self) -> String {
        self.id.0.clone()
    }
}

/// The key prefix, in the [`Kind::Node`] collection, of every [`NodeCordon`].
pub const CORDON_PREFIX: &str = "cordons/";

/// A node an operator cordoned or drained (Kubernetes' `spec.unschedulable`): kept in the store so
/// the cordon survives a restart of the orchestrator, which re-applies it before planning.
/// Uncordoning deletes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCordon {
    /// The cordoned node.
    pub node_id: NodeId,
}

impl StoredObject for NodeCordon {
    const KIND: Kind = Kind::Node;
    fn key(&self) -> String {
        format!("{CORDON_PREFIX}{}", self.node_id.0)
    }
}

/// The key prefix of every instance of a workload.
pub fn instance_prefix(workload_id: &WorkloadId) -> String {
    format!("{workload_id}/")
}

/// A value with the revision it was last modified at (for compare-and-swap).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The value.
    pub value: T,
    /// Its `mod_revision`.
    pub revision: Revision,
}

fn decode<T: StoredObject>(entry: Entry) -> Result<Versioned<T>, StoreError> {
    serde_json::from_slice(&entry.value)
        .map(|value| Versioned {
            value,
            revision: entry.mod_revision,
        })
        .map_err(|source| StoreError::Codec {
            kind: entry.kind,
            key: entry.key,
            source,
        })
}

/// The object a watch event carries (`None` for a delete), decoded as `T`; a value that does
/// not decode is a [`StoreError::Codec`] naming the key.
pub fn decode_event<T: StoredObject>(event: &crate::WatchEvent) -> Result<Option<T>, StoreError> {
    event
        .value
        .as_deref()
        .map(|bytes| {
            serde_json::from_slice(bytes).map_err(|source| StoreError::Codec {
                kind: event.kind,
                key: event.key.clone(),
                source,
            })
        })
        .transpose()
}

/// A put of `obj` under its own key, for a batch.
pub fn put_op<T: StoredObject>(obj: &T, precondition: Precondition) -> Op {
    Op::Put {
        kind: T::KIND,
        key: obj.key(),
        // Serializing our own plain data types cannot fail (no maps with non-string keys).
        value: serde_json::to_vec(obj).expect("stored objects serialize"),
        precondition,
    }
}

/// A delete of `obj`'s key, for a batch.
pub fn delete_op<T: StoredObject>(obj: &T, precondition: Precondition) -> Op {
    Op::Delete {
        kind: T::KIND,
        key: obj.key(),
        precondition,
    }
}

/// Typed helpers available on every [`StateStore`], including `dyn StateStore`.
#[async_trait]
pub trait StoreExt: StateStore {
    /// The object at `key`, decoded.
    async fn get_obj<T: StoredObject>(
        &self,
        key: &str,
    ) -> Result<Option<Versioned<T>>, StoreError> {
        self.get(T::KIND, key).await?.map(decode).transpose()
    }

    /// Every object whose key starts with `prefix`, decoded, sorted by key.
    async fn list_obj<T: StoredObject>(
        &self,
        prefix: &str,
    ) -> Result<Vec<Versioned<T>>, StoreError> {
        self.list(T::KIND, prefix)
            .await?
            .into_iter()
            .map(decode)
            .collect()
    }

    /// One page of [`StoreExt::list_obj`]: at most `limit` objects whose key starts with
    /// `prefix` and sorts after `start_after`, decoded, sorted by key (see
    /// [`StateStore::list_page`]). The next page starts after the last object's
    /// [`StoredObject::key`].
    async fn list_obj_page<'a, T: StoredObject>(
        &self,
        prefix: &str,
        start_after: Option<&'a str>,
        limit: usize,
    ) -> Result<Vec<Versioned<T>>, StoreError> {
        self.list_page(T::KIND, prefix, start_after, limit)
            .await?
            .into_iter()
            .map(decode)
            .collect()
    }

    /// Writes `obj` under its key if `precondition` holds; returns the new revision.
    async fn put_obj<T: StoredObject>(
        &self,
        obj: &T,
        precondition: Precondition,
    ) -> Result<Revision, StoreError> {
        self.commit(vec![put_op(obj, precondition)]).await
    }
}

impl<S: StateStore + ?Sized> StoreExt for S {}
