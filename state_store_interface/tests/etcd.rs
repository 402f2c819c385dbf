//! `EtcdStore` against a real etcd: the conformance suites, plus what only a real server
//! shows (restarts, compaction, a wiped server, a down one). Skipped without an etcd binary
//! (a failure under `CI=true`); see `EtcdServer`.
#![cfg(feature = "etcd")]

use async_trait::async_trait;
use orchestrator_shared_types::Event;
use state_store_interface::etcd_server::EtcdServer;
use state_store_interface::{
    Coordination, Entry, EtcdStore, EventFilter, Kind, KindSet, LeaseId, Op, Precondition,
    Revision, StateStore, StoreError, Watch,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;
use tokio::sync::{Mutex, OwnedMutexGuard};

/// One etcd for the suites of this binary; each check gets its own prefix. etcd's revision is
/// shared by every prefix and the checks compare revisions exactly, so they take turns
/// (`TURN`) rather than need `--test-threads=1`.
fn shared_server() -> Option<&'static EtcdServer> {
    static SERVER: OnceLock<Option<EtcdServer>> = OnceLock::new();
    SERVER.get_or_init(EtcdServer::start_or_skip).as_ref()
}

static TURN: OnceLock<std::sync::Arc<Mutex<()>>> = OnceLock::new();
static NEXT_PREFIX: AtomicUsize = AtomicUsize::new(0);

/// An `EtcdStore` on its own prefix that holds the turn while it lives.
struct Turn {
    store: EtcdStore,
    _turn: OwnedMutexGuard<()>,
}

async fn fresh() -> Option<Turn> {
    let server = shared_server()?;
    let turn = TURN
        .get_or_init(Default::default)
        .clone()
        .lock_owned()
        .await;
    let prefix = format!("t{}", NEXT_PREFIX.fetch_add(1, Ordering::Relaxed));
    let store = EtcdStore::connect(&[server.client_url()], &prefix)
        .await
        .expect("connects");
    Some(Turn { store, _turn: turn })
}

#[async_trait]
impl StateStore for Turn {
    async fn get(&self, kind: Kind, key: &str) -> Result<Option<Entry>, StoreError> {
        self.store.get(kind, key).await
    }
    async fn list(&self, kind: Kind, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        self.store.list(kind, prefix).await
    }
    async fn list_page<'a>(
        &self,
        kind: Kind,
        prefix: &str,
        start_after: Option<&'a str>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        self.store.list_page(kind, prefix, start_after, limit).await
    }
    async fn commit(&self, ops: Vec<Op>) -> Result<Revision, StoreError> {
        self.store.commit(ops).await
    }
    async fn revision(&self) -> Result<Revision, StoreError> {
        self.store.revision().await
    }
    async fn watch_kinds(&self, after: Revision, kinds: KindSet) -> Result<Watch, StoreError> {
        self.store.watch_kinds(after, kinds).await
    }
    async fn append_events(&self, events: Vec<Event>) -> Result<(), StoreError> {
        self.store.append_events(events).await
    }
    async fn list_events(&self, filter: &EventFilter) -> Result<Vec<Event>, StoreError> {
        self.store.list_events(filter).await
    }
}

#[async_trait]
impl Coordination for Turn {
    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        self.store.grant_lease(ttl).await
    }
    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.store.keep_alive(lease).await
    }
    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.store.revoke_lease(lease).await
    }
    async fn put_leased(
        &self,
        kind: Kind,
        key: &str,
        value: Vec<u8>,
        lease: LeaseId,
        precondition: Precondition,
    ) -> Result<Revision, StoreError> {
        self.store
            .put_leased(kind, key, value, lease, precondition)
            .await
    }
}

mod conformance {
    use super::fresh;

    state_store_interface::state_store_conformance!(optional fresh);
}

mod coordination {
    use super::fresh;

    state_store_interface::coordination_conformance!(optional fresh);
}
