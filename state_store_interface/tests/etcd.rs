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

// ---------------------------------------------------------------------------------------------
// What only a real server shows: each test has its own etcd.

fn put(key: &str, value: &str) -> Op {
    Op::Put {
        kind: Kind::Node,
        key: key.into(),
        value: value.as_bytes().to_vec(),
        precondition: Precondition::None,
    }
}

async fn next(watch: &mut Watch) -> Result<state_store_interface::WatchEvent, StoreError> {
    tokio::time::timeout(Duration::from_secs(20), watch.next())
        .await
        .expect("the watch answers within 20 s")
        .expect("the watch goes on")
}

/// Retries `f` while etcd is not back (transient errors), for up to 20 s.
async fn retry<T, F: std::future::Future<Output = Result<T, StoreError>>>(
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) if e.is_transient() && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// A watch survives an etcd restart: changes made before, during the reconnect and after it
/// all arrive on the same `Watch`, once each, in order.
#[tokio::test]
async fn watch_resumes_after_an_etcd_restart() {
    let Some(mut server) = EtcdServer::start_or_skip() else {
        return;
    };
    let store = EtcdStore::connect(&[server.client_url()], "restart")
        .await
        .unwrap();
    let start = store.revision().await.unwrap();
    let mut watch = store.watch(start).await.unwrap();
    let before = store.commit(vec![put("a", "1")]).await.unwrap();
    assert_eq!(next(&mut watch).await.unwrap().revision, before);

    server.stop();
    server.start().unwrap();
    let mut written = Vec::new();
    for i in 0..5 {
        let value = i.to_string();
        written.push(retry(|| store.commit(vec![put("b", &value)])).await);
    }
    for want in written {
        let event = next(&mut watch).await.unwrap();
        assert_eq!(event.revision, want, "none lost, none repeated");
        assert_eq!(event.key, "b");
    }
    let last = store.commit(vec![put("c", "x")]).await.unwrap();
    assert_eq!(next(&mut watch).await.unwrap().revision, last);
}

/// A watch whose revisions etcd compacted away ends with `Compacted`, and a new watch from
/// before the compaction fails with it, naming the compaction revision.
#[tokio::test]
async fn compaction_ends_a_watch_and_refuses_an_old_one() {
    let Some(server) = EtcdServer::start_or_skip() else {
        return;
    };
    let store = EtcdStore::connect(&[server.client_url()], "compact")
        .await
        .unwrap();
    let start = store.revision().await.unwrap();
    let mut revisions = Vec::new();
    for i in 0..5 {
        revisions.push(store.commit(vec![put("k", &i.to_string())]).await.unwrap());
    }
    server.compact(revisions[3]).unwrap();
    match store.watch(start).await {
        Err(StoreError::Compacted { requested, oldest }) => {
            assert_eq!((requested, oldest), (start, revisions[3]));
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    // From just before the compaction revision works.
    let mut watch = store.watch(revisions[3] - 1).await.unwrap();
    assert_eq!(next(&mut watch).await.unwrap().revision, revisions[3]);
}

/// A store whose etcd was wiped and restarted empty fails with `Reset`, not as if nothing
/// had happened; its watches end with it too.
#[tokio::test]
async fn a_wiped_etcd_is_a_reset() {
    let Some(mut server) = EtcdServer::start_or_skip() else {
        return;
    };
    let store = EtcdStore::connect(&[server.client_url()], "reset")
        .await
        .unwrap();
    for i in 0..5 {
        store.commit(vec![put("k", &i.to_string())]).await.unwrap();
    }
    let now = store.revision().await.unwrap();
    let mut watch = store.watch(now).await.unwrap();
    server.wipe_and_start().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let err = loop {
        match store.get(Kind::Node, "k").await {
            Err(e) if e.is_transient() && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => break e,
            Ok(found) => panic!("a wiped etcd answered as if nothing happened: {found:?}"),
        }
    };
    assert!(matches!(err, StoreError::Reset { .. }), "{err:?}");
    assert!(!err.is_transient());
    match tokio::time::timeout(Duration::from_secs(20), watch.next()).await {
        Ok(Some(Err(StoreError::Reset { .. }))) => {}
        other => panic!("expected the watch to end with Reset, got {other:?}"),
    }
}

/// A down etcd fails calls quickly with a transient `Unavailable`, both when connecting and
/// for a store that was connected.
#[tokio::test]
async fn a_down_etcd_is_unavailable_quickly() {
    let Some(mut server) = EtcdServer::start_or_skip() else {
        return;
    };
    let store = EtcdStore::connect(&[server.client_url()], "down")
        .await
        .unwrap();
    server.stop();
    let started = std::time::Instant::now();
    let err = store.get(Kind::Node, "k").await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    let started = std::time::Instant::now();
    let err = EtcdStore::connect(&[server.client_url()], "down")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}
