//! [`InMemoryStore`]. STUB: being written.

use crate::*;
use async_trait::async_trait;
use orchestrator_shared_types::Event;

/// The in-memory twin of the store, for tests, scenarios and benchmarks.
#[derive(Debug, Default)]
pub struct InMemoryStore {}

impl InMemoryStore {
    /// An empty store keeping up to 10,000 events and 100,000 changes of watch history.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl StateStore for InMemoryStore {
    async fn get(&self, _kind: Kind, _key: &str) -> Result<Option<Entry>, StoreError> {
        todo!()
    }
    async fn list(&self, _kind: Kind, _prefix: &str) -> Result<Vec<Entry>, StoreError> {
        todo!()
    }
    async fn commit(&self, _ops: Vec<Op>) -> Result<Revision, StoreError> {
        todo!()
    }
    async fn revision(&self) -> Result<Revision, StoreError> {
        todo!()
    }
    async fn watch(&self, _after: Revision) -> Result<Watch, StoreError> {
        todo!()
    }
    async fn append_events(&self, _events: Vec<Event>) -> Result<(), StoreError> {
        todo!()
    }
    async fn list_events(&self, _filter: &EventFilter) -> Result<Vec<Event>, StoreError> {
        todo!()
    }
}
