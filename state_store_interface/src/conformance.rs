//! The conformance suite every [`StateStore`] must pass: the in-memory twin here, redb and etcd
//! against real databases. The core relies on exactly these behaviours (optimistic concurrency,
//! atomic batches, gap-free watches), so an implementation that passes can replace another.
//!
//! Each check is a `pub async fn` taking a fresh, empty store (`&dyn StateStore`, or an
//! `Arc<dyn StateStore>` for the one that spawns tasks);
//! [`state_store_conformance!`](crate::state_store_conformance) expands into one `#[tokio::test]`
//! per check.
//!
//! # What a "fresh store" must be
//! * Empty: no entries, no events.
//! * Its own revision counter while the check runs: checks compare revisions exactly (a failed
//!   commit must not move `revision()`), so nothing else may commit to the same counter
//!   concurrently. A store namespaced by a key prefix on a shared etcd qualifies only if the
//!   checks run one at a time (`--test-threads=1`); otherwise give each check its own server.
//! * It need not start at revision 0: checks read `revision()` first and reason from there.
//! * Its watch history must hold the few dozen changes a check makes (checks that replay from
//!   the start make fewer than 100 changes).

use crate::typed::{delete_op, instance_prefix, put_op};
use crate::{
    Coordination, Entry, EventFilter, Kind, KindSet, LimitFrom, Op, Precondition, Revision,
    StateStore, StoreError, StoreExt, StoredObject, Watch, WatchEvent,
};
use orchestrator_shared_types::{
    ContainerConfig, Event, EventKind, InstanceId, InstanceStatus, Node, NodeStatus, Resources,
    WorkloadDefinition, WorkloadId, WorkloadInstance,
};
use std::sync::Arc;
use std::time::Duration;

/// How long a check waits for a watch event before failing.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Expands into one `#[tokio::test]` per check of [`crate::conformance`], each with a fresh
/// store.
///
/// `$factory` is anything callable with no argument that returns a future of a store
/// (`S: StateStore + 'static`): a closure returning an `async` block, or the path of an
/// `async fn`. It is called once per test, so each test gets its own store; an etcd factory
/// would connect to a server (and namespace by a unique prefix, or start its own server), a
/// redb factory would open a file in a temporary directory (which the store must keep alive,
/// e.g. by owning the `TempDir`). Invoke the macro once per module (wrap it in `mod` to run it
/// against several configurations).
///
/// The calling crate needs this crate with the `conformance` feature and `tokio` with the
/// `macros`, `rt` and `rt-multi-thread` features as dev-dependencies (the concurrency check runs
/// on a multi-threaded runtime so that commits really race).
///
/// ```ignore
/// use state_store_interface::InMemoryStore;
///
/// state_store_interface::state_store_conformance!(|| async { InMemoryStore::new() });
/// ```
///
/// With `optional` first, the factory returns an `Option` of a store, and each test returns
/// at once (passing) on `None`: for a store whose server may be missing on a developer's
/// machine (the factory says so, and fails instead under `CI=true`).
#[macro_export]
macro_rules! state_store_conformance {
    ($factory:expr) => {
        $crate::state_store_conformance!(@suite [Some] $factory);
    };
    (optional $factory:expr) => {
        $crate::state_store_conformance!(@suite [] $factory);
    };
    (@suite $wrap:tt $factory:expr) => {
        $crate::state_store_conformance!(@tests $wrap $factory;
            put_get_and_list_sorted,
            list_by_prefix,
            list_page_covers_everything_once_in_order,
            list_page_edges,
            revisions_strictly_increase,
            create_and_mod_revisions,
            empty_batch_returns_current_revision,
            precondition_absent,
            precondition_exists,
            precondition_mod_revision,
            delete_preconditions,
            delete_semantics,
            batch_commits_at_one_revision,
            failed_batch_writes_nothing,
            duplicate_key_in_batch_is_refused,
            watch_replays_history_then_live,
            watch_from_current_sees_only_new,
            watch_from_a_past_revision,
            watch_of_some_kinds_sees_only_those,
            watch_of_a_prefix_sees_only_its_keys,
            watchers_are_independent,
            watch_compaction_is_reported,
            events_get_increasing_seq,
            events_filter_by_workload_and_after_seq,
            events_limit_keeps_the_most_recent,
            events_limit_from_oldest_pages_forward,
            typed_round_trip,
            typed_list_page,
            typed_codec_error,
            check_ops_are_preconditions_only,
        );

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn concurrent_cas_increments() {
            let Some(store) = $crate::state_store_conformance!(@store $wrap $factory) else { return };
            $crate::conformance::concurrent_cas_increments(::std::sync::Arc::new(store)).await;
        }
    };
    (@tests $wrap:tt $factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let Some(store) = $crate::state_store_conformance!(@store $wrap $factory) else { return };
                $crate::conformance::$name(&store).await;
            }
        )*
    };
    (@store [Some] $factory:expr) => {
        Some(($factory)().await)
    };
    (@store [] $factory:expr) => {
        ($factory)().await
    };
}

/// Expands into one `#[tokio::test]` per check of the coordination part of
/// [`crate::conformance`] (leases, fences), each with a fresh store implementing
/// [`crate::Coordination`]; the factory is as for
/// [`state_store_conformance!`](crate::state_store_conformance), `optional` included. The
/// checks wait for real lease expiry (TTL 1 s), so they take a few seconds each.
#[macro_export]
macro_rules! coordination_conformance {
    ($factory:expr) => {
        $crate::state_store_conformance!(@tests [Some] $factory;
            leased_key_disappears_after_ttl,
            keep_alive_keeps_a_lease,
            revoke_deletes_at_once,
            keep_alive_after_expiry_fails,
            put_leased_honours_preconditions,
            fence_holds_while_the_lease_does,
        );
    };
    (optional $factory:expr) => {
        $crate::state_store_conformance!(@tests [] $factory;
            leased_key_disappears_after_ttl,
            keep_alive_keeps_a_lease,
            revoke_deletes_at_once,
            keep_alive_after_expiry_fails,
            put_leased_honours_preconditions,
            fence_holds_while_the_lease_does,
        );
    };
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn put(kind: Kind, key: &str, value: &str, precondition: Precondition) -> Op {
    Op::Put {
        kind,
        key: key.to_owned(),
        value: value.as_bytes().to_vec(),
        precondition,
    }
}

fn delete(kind: Kind, key: &str, precondition: Precondition) -> Op {
    Op::Delete {
        kind,
        key: key.to_owned(),
        precondition,
    }
}

async fn commit_ok(store: &dyn StateStore, ops: Vec<Op>) -> Revision {
    match store.commit(ops.clone()).await {
        Ok(revision) => revision,
        Err(e) => panic!("commit of {ops:?} failed: {e}"),
    }
}

async fn get_value(store: &dyn StateStore, kind: Kind, key: &str) -> Option<String> {
    store
        .get(kind, key)
        .await
        .expect("get works")
        .map(|e| String::from_utf8(e.value).expect("the suite stores UTF-8"))
}

fn keys(entries: &[Entry]) -> Vec<&str> {
    entries.iter().map(|e| e.key.as_str()).collect()
}

/// Asserts that `result` is a conflict naming `kind` and `key`.
fn assert_conflict(result: Result<Revision, StoreError>, kind: Kind, key: &str) {
    match result {
        Err(e @ StoreError::Conflict { .. }) => {
            assert!(!e.is_transient(), "a conflict needs a re-read, not a retry");
            let StoreError::Conflict {
                kind: k, key: got, ..
            } = e
            else {
                unreachable!()
            };
            assert_eq!(
                (k, got.as_str()),
                (kind, key),
                "the conflict names the failing key"
            );
        }
        other => panic!("expected a conflict on {kind:?} {key:?}, got {other:?}"),
    }
}

async fn next_event(watch: &mut Watch) -> WatchEvent {
    match tokio::time::timeout(EVENT_TIMEOUT, watch.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(e))) => panic!("the watch failed: {e}"),
        Ok(None) => panic!("the watch ended"),
        Err(_) => panic!("no watch event within {EVENT_TIMEOUT:?}"),
    }
}

fn change(revision: Revision, kind: Kind, key: &str, value: Option<&str>) -> WatchEvent {
    WatchEvent {
        revision,
        kind,
        key: key.to_owned(),
        value: value.map(|v| v.as_bytes().to_vec()),
    }
}

fn event(workload: Option<&WorkloadId>, message: &str) -> Event {
    let mut e = Event::new(EventKind::Started, message);
    e.workload_id = workload.cloned();
    e.workload_name = workload.map(|_| "web".to_owned());
    e
}

fn messages(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.message.as_str()).collect()
}

// ---------------------------------------------------------------------------------------------
// Reads and writes

/// Put then get returns the value with its kind, key and revisions; a missing key is `None`;
/// `list` returns every entry of one kind (and only that kind), sorted by key whatever the
/// order of writes.
pub async fn put_get_and_list_sorted(store: &dyn StateStore) {
    assert_eq!(
        store.list(Kind::Workload, "").await.unwrap(),
        vec![],
        "fresh store is empty"
    );
    let mut revisions = Vec::new();
    for key in ["web", "api", "db", "cache"] {
        let value = format!("{key}-v1");
        revisions.push(
            commit_ok(
                store,
                vec![put(Kind::Workload, key, &value, Precondition::None)],
            )
            .await,
        );
    }
    // Same key in another kind is another entry.
    let node_rev = commit_ok(
        store,
        vec![put(Kind::Node, "web", "a node", Precondition::None)],
    )
    .await;

    let web = store
        .get(Kind::Workload, "web")
        .await
        .unwrap()
        .expect("web exists");
    assert_eq!(
        web,
        Entry {
            kind: Kind::Workload,
            key: "web".into(),
            value: b"web-v1".to_vec(),
            create_revision: revisions[0],
            mod_revision: revisions[0],
        }
    );
    assert_eq!(
        get_value(store, Kind::Node, "web").await.as_deref(),
        Some("a node")
    );
    assert_eq!(
        store
            .get(Kind::Node, "web")
            .await
            .unwrap()
            .unwrap()
            .mod_revision,
        node_rev
    );
    assert_eq!(store.get(Kind::Workload, "nope").await.unwrap(), None);
    assert_eq!(store.get(Kind::Instance, "web").await.unwrap(), None);

    let all = store.list(Kind::Workload, "").await.unwrap();
    assert_eq!(keys(&all), ["api", "cache", "db", "web"]);
    assert!(all.iter().all(|e| e.kind == Kind::Workload));
    assert_eq!(all[0].value, b"api-v1");
    assert_eq!(all[0].mod_revision, revisions[1]);
    assert_eq!(keys(&store.list(Kind::Node, "").await.unwrap()), ["web"]);
    assert_eq!(store.list(Kind::Instance, "").await.unwrap(), vec![]);
}

/// `list(kind, prefix)` returns exactly the keys starting with `prefix`, sorted; a prefix is a
/// string prefix (so `w1/` excludes `w10/...`) and an unmatched prefix gives nothing.
pub async fn list_by_prefix(store: &dyn StateStore) {
    let keys_written = ["w2/b", "w1/b", "w10/a", "w1/a", "w1", "w0/z", "w1/c/d"];
    let ops = keys_written
        .iter()
        .map(|k| put(Kind::Instance, k, k, Precondition::None))
        .collect();
    commit_ok(store, ops).await;
    let w1 = store.list(Kind::Instance, "w1/").await.unwrap();
    assert_eq!(keys(&w1), ["w1/a", "w1/b", "w1/c/d"]);
    assert!(w1.iter().all(|e| e.value == e.key.as_bytes()));
    assert_eq!(
        keys(&store.list(Kind::Instance, "w1").await.unwrap()),
        ["w1", "w1/a", "w1/b", "w1/c/d", "w10/a"]
    );
    assert_eq!(
        keys(&store.list(Kind::Instance, "w2/").await.unwrap()),
        ["w2/b"]
    );
    assert_eq!(store.list(Kind::Instance, "w3/").await.unwrap(), vec![]);
    assert_eq!(store.list(Kind::Instance, "x").await.unwrap(), vec![]);
    assert_eq!(store.list(Kind::Workload, "w1/").await.unwrap(), vec![]);
    assert_eq!(
        store.list(Kind::Instance, "").await.unwrap().len(),
        keys_written.len()
    );
}

/// Reads `kind` under `prefix` page by page, `limit` entries at a time, each page starting
/// after the last key of the one before, until a short page; checks that every page but the
/// last is full.
async fn all_pages(store: &dyn StateStore, kind: Kind, prefix: &str, limit: usize) -> Vec<Entry> {
    let mut all: Vec<Entry> = Vec::new();
    loop {
        let after = all.last().map(|e| e.key.clone());
        let page = store
            .list_page(kind, prefix, after.as_deref(), limit)
            .await
            .unwrap();
        assert!(
            page.len() <= limit,
            "a page of {limit} holds {} entries",
            page.len()
        );
        let done = page.len() < limit;
        all.extend(page);
        if done {
            return all;
        }
    }
}

/// Walking `list_page` with each page's last key as the next cursor returns exactly what
/// `list` returns (every entry once, in key order, with its value and revisions), whatever the
/// page size, with and without a prefix; other kinds never show up.
pub async fn list_page_covers_everything_once_in_order(store: &dyn StateStore) {
    // Written out of order, in three batches, with keys that share prefixes (`w1` and `w10`).
    let mut keys_written = Vec::new();
    for w in ["w2", "w10", "w1", "w0"] {
        for i in [3, 0, 2, 1, 4] {
            keys_written.push(format!("{w}/i{i}"));
        }
    }
    for batch in keys_written.chunks(7) {
        let ops = batch
            .iter()
            .map(|k| put(Kind::Instance, k, k, Precondition::None))
            .collect();
        commit_ok(store, ops).await;
    }
    commit_ok(
        store,
        vec![
            put(Kind::Workload, "w1/x", "other kind", Precondition::None),
            put(Kind::Node, "w1/y", "other kind", Precondition::None),
        ],
    )
    .await;

    for prefix in ["", "w1/", "w1", "w3/"] {
        let listed = store.list(Kind::Instance, prefix).await.unwrap();
        for limit in [1, 2, 3, 5, 7, 20, 100] {
            let paged = all_pages(store, Kind::Instance, prefix, limit).await;
            assert_eq!(
                paged, listed,
                "pages of {limit} under {prefix:?} give what `list` gives"
            );
        }
    }
    assert_eq!(
        store.list(Kind::Instance, "").await.unwrap().len(),
        keys_written.len()
    );
    let w1 = all_pages(store, Kind::Instance, "w1/", 2).await;
    assert_eq!(
        keys(&w1),
        ["w1/i0", "w1/i1", "w1/i2", "w1/i3", "w1/i4"],
        "a prefix is a string prefix: `w1/` excludes `w10/...`"
    );
}

/// The edges of `list_page`: a limit of 0 gives nothing; a cursor at or past the last key gives
/// nothing; a cursor need not be a stored key (the page starts at the next key after it), nor
/// have the prefix (one before the prefix's keys starts at the first of them, one after them
/// gives nothing); the prefix and the kind are respected.
pub async fn list_page_edges(store: &dyn StateStore) {
    let written = ["a/1", "a/3", "a/5", "b/1", "b/2", "c/1"];
    let ops = written
        .iter()
        .map(|k| put(Kind::Instance, k, k, Precondition::None))
        .collect();
    commit_ok(store, ops).await;
    commit_ok(
        store,
        vec![put(Kind::Node, "a/2", "a node", Precondition::None)],
    )
    .await;
    let page = |prefix: &'static str, after: Option<&'static str>, limit: usize| async move {
        let entries = store
            .list_page(Kind::Instance, prefix, after, limit)
            .await
            .unwrap();
        entries.into_iter().map(|e| e.key).collect::<Vec<String>>()
    };

    assert_eq!(page("", None, 0).await, Vec::<String>::new(), "limit 0");
    assert_eq!(page("a/", Some("a/1"), 0).await, Vec::<String>::new());
    assert_eq!(page("", None, 2).await, ["a/1", "a/3"]);
    assert_eq!(page("", Some("a/3"), 2).await, ["a/5", "b/1"]);
    assert_eq!(
        page("", Some("a/2"), 2).await,
        ["a/3", "a/5"],
        "a cursor that is not a key"
    );
    assert_eq!(
        page("", Some("c/1"), 5).await,
        Vec::<String>::new(),
        "at the end"
    );
    assert_eq!(
        page("", Some("zzz"), 5).await,
        Vec::<String>::new(),
        "past the end"
    );
    assert_eq!(page("a/", Some("a/5"), 5).await, Vec::<String>::new());
    assert_eq!(
        page("b/", None, 10).await,
        ["b/1", "b/2"],
        "the prefix bounds the page"
    );
    assert_eq!(
        page("b/", Some("a/3"), 10).await,
        ["b/1", "b/2"],
        "cursor before the prefix"
    );
    assert_eq!(page("b/", Some("b/1"), 10).await, ["b/2"]);
    assert_eq!(
        page("b/", Some("b/"), 1).await,
        ["b/1"],
        "the prefix itself as the cursor"
    );
    assert_eq!(
        page("a/", Some("b/1"), 10).await,
        Vec::<String>::new(),
        "cursor after the prefix"
    );
    assert_eq!(page("d/", None, 10).await, Vec::<String>::new());
    assert_eq!(
        page("", None, usize::MAX).await,
        written,
        "an unbounded page"
    );
    let node = store.list_page(Kind::Node, "", None, 10).await.unwrap();
    assert_eq!(keys(&node), ["a/2"], "only the kind asked for");
    let full = store
        .list_page(Kind::Instance, "", Some("b/2"), 10)
        .await
        .unwrap();
    assert_eq!(
        full,
        store.list(Kind::Instance, "c/").await.unwrap(),
        "entries come whole, with their revisions"
    );
}

/// Every commit gets a revision greater than the one before, and `revision()` reports the last.
pub async fn revisions_strictly_increase(store: &dyn StateStore) {
    let mut last = store.revision().await.unwrap();
    for i in 0..10 {
        let kind = Kind::ALL[i % Kind::ALL.len()];
        let revision = commit_ok(
            store,
            vec![put(kind, &format!("k{i}"), "v", Precondition::None)],
        )
        .await;
        assert!(revision > last, "revision {revision} after {last}");
        assert_eq!(store.revision().await.unwrap(), revision);
        last = revision;
    }
    // Deletes are commits too.
    let revision = commit_ok(
        store,
        vec![delete(Kind::Workload, "k0", Precondition::None)],
    )
    .await;
    assert!(revision > last);
    assert_eq!(store.revision().await.unwrap(), revision);
}

/// `create_revision` is the revision of the write that created the entry and survives updates;
/// `mod_revision` is the revision of the last write.
pub async fn create_and_mod_revisions(store: &dyn StateStore) {
    let created = commit_ok(store, vec![put(Kind::Node, "n1", "v1", Precondition::None)]).await;
    let other = commit_ok(store, vec![put(Kind::Node, "n2", "x", Precondition::None)]).await;
    let updated = commit_ok(store, vec![put(Kind::Node, "n1", "v2", Precondition::None)]).await;
    assert!(created < other && other < updated);
    let n1 = store.get(Kind::Node, "n1").await.unwrap().unwrap();
    assert_eq!((n1.create_revision, n1.mod_revision), (created, updated));
    assert_eq!(n1.value, b"v2");
    // Rewriting the same bytes is still a write.
    let again = commit_ok(store, vec![put(Kind::Node, "n1", "v2", Precondition::None)]).await;
    assert!(again > updated);
    let n1 = store.get(Kind::Node, "n1").await.unwrap().unwrap();
    assert_eq!((n1.create_revision, n1.mod_revision), (created, again));
    let n2 = store.get(Kind::Node, "n2").await.unwrap().unwrap();
    assert_eq!(
        (n2.create_revision, n2.mod_revision),
        (other, other),
        "untouched"
    );
}

/// An empty batch writes nothing and returns the current revision.
pub async fn empty_batch_returns_current_revision(store: &dyn StateStore) {
    let start = store.revision().await.unwrap();
    assert_eq!(store.commit(vec![]).await.unwrap(), start);
    let written = commit_ok(
        store,
        vec![put(Kind::Workload, "w", "v", Precondition::None)],
    )
    .await;
    assert_eq!(store.commit(vec![]).await.unwrap(), written);
    assert_eq!(store.revision().await.unwrap(), written);
}

// ---------------------------------------------------------------------------------------------
// Preconditions

/// `Absent` creates a missing key and conflicts on an existing one, leaving it untouched.
pub async fn precondition_absent(store: &dyn StateStore) {
    let created = commit_ok(
        store,
        vec![put(Kind::Workload, "w", "first", Precondition::Absent)],
    )
    .await;
    assert_conflict(
        store
            .commit(vec![put(
                Kind::Workload,
                "w",
                "second",
                Precondition::Absent,
            )])
            .await,
        Kind::Workload,
        "w",
    );
    assert_eq!(
        get_value(store, Kind::Workload, "w").await.as_deref(),
        Some("first")
    );
    assert_eq!(
        store.revision().await.unwrap(),
        created,
        "a conflict commits nothing"
    );
    // Absent in one kind says nothing about another.
    commit_ok(
        store,
        vec![put(Kind::Node, "w", "node", Precondition::Absent)],
    )
    .await;
}

/// `Exists` updates an existing key and conflicts on a missing one, creating nothing.
pub async fn precondition_exists(store: &dyn StateStore) {
    let start = store.revision().await.unwrap();
    assert_conflict(
        store
            .commit(vec![put(Kind::Node, "n", "v", Precondition::Exists)])
            .await,
        Kind::Node,
        "n",
    );
    assert_eq!(store.get(Kind::Node, "n").await.unwrap(), None);
    assert_eq!(store.revision().await.unwrap(), start);
    commit_ok(store, vec![put(Kind::Node, "n", "v1", Precondition::None)]).await;
    commit_ok(
        store,
        vec![put(Kind::Node, "n", "v2", Precondition::Exists)],
    )
    .await;
    assert_eq!(
        get_value(store, Kind::Node, "n").await.as_deref(),
        Some("v2")
    );
}

/// `ModRevision(r)` (compare-and-swap) succeeds only if the entry was last modified at `r`:
/// a stale revision, a future one, or a missing key conflicts.
pub async fn precondition_mod_revision(store: &dyn StateStore) {
    let r1 = commit_ok(
        store,
        vec![put(Kind::Instance, "w/i", "v1", Precondition::None)],
    )
    .await;
    let r2 = commit_ok(
        store,
        vec![put(
            Kind::Instance,
            "w/i",
            "v2",
            Precondition::ModRevision(r1),
        )],
    )
    .await;
    assert!(r2 > r1);
    // Another writer read r1 too: its swap must fail now.
    assert_conflict(
        store
            .commit(vec![put(
                Kind::Instance,
                "w/i",
                "lost update",
                Precondition::ModRevision(r1),
            )])
            .await,
        Kind::Instance,
        "w/i",
    );
    assert_conflict(
        store
            .commit(vec![put(
                Kind::Instance,
                "w/i",
                "future",
                Precondition::ModRevision(r2 + 100),
            )])
            .await,
        Kind::Instance,
        "w/i",
    );
    assert_conflict(
        store
            .commit(vec![put(
                Kind::Instance,
                "w/missing",
                "v",
                Precondition::ModRevision(r2),
            )])
            .await,
        Kind::Instance,
        "w/missing",
    );
    assert_eq!(
        get_value(store, Kind::Instance, "w/i").await.as_deref(),
        Some("v2")
    );
    assert_eq!(store.get(Kind::Instance, "w/missing").await.unwrap(), None);
    assert_eq!(store.revision().await.unwrap(), r2);
    // The current revision works, and the create revision stays.
    let r3 = commit_ok(
        store,
        vec![put(
            Kind::Instance,
            "w/i",
            "v3",
            Precondition::ModRevision(r2),
        )],
    )
    .await;
    let e = store.get(Kind::Instance, "w/i").await.unwrap().unwrap();
    assert_eq!((e.create_revision, e.mod_revision), (r1, r3));
}

/// Deletes honour preconditions like puts: `Exists` and `ModRevision` conflict on a missing or
/// changed entry and delete nothing; matching ones delete.
pub async fn delete_preconditions(store: &dyn StateStore) {
    let r1 = commit_ok(
        store,
        vec![put(Kind::Workload, "a", "v1", Precondition::None)],
    )
    .await;
    let r2 = commit_ok(
        store,
        vec![put(Kind::Workload, "a", "v2", Precondition::None)],
    )
    .await;
    assert_conflict(
        store
            .commit(vec![delete(
                Kind::Workload,
                "a",
                Precondition::ModRevision(r1),
            )])
            .await,
        Kind::Workload,
        "a",
    );
    assert_conflict(
        store
            .commit(vec![delete(Kind::Workload, "a", Precondition::Absent)])
            .await,
        Kind::Workload,
        "a",
    );
    assert_conflict(
        store
            .commit(vec![delete(
                Kind::Workload,
                "missing",
                Precondition::Exists,
            )])
            .await,
        Kind::Workload,
        "missing",
    );
    assert_conflict(
        store
            .commit(vec![delete(
                Kind::Workload,
                "missing",
                Precondition::ModRevision(r1),
            )])
            .await,
        Kind::Workload,
        "missing",
    );
    assert_eq!(
        get_value(store, Kind::Workload, "a").await.as_deref(),
        Some("v2")
    );
    assert_eq!(store.revision().await.unwrap(), r2);
    let r3 = commit_ok(
        store,
        vec![delete(Kind::Workload, "a", Precondition::ModRevision(r2))],
    )
    .await;
    assert!(r3 > r2);
    assert_eq!(store.get(Kind::Workload, "a").await.unwrap(), None);
    commit_ok(
        store,
        vec![put(Kind::Workload, "b", "v", Precondition::None)],
    )
    .await;
    commit_ok(
        store,
        vec![delete(Kind::Workload, "b", Precondition::Exists)],
    )
    .await;
    assert_eq!(store.get(Kind::Workload, "b").await.unwrap(), None);
}

/// A delete removes the entry from `get` and `list`; deleting a missing key without a
/// precondition succeeds, changes nothing and does not move the revision (as in etcd); a key
/// created again after a delete gets a new `create_revision`.
pub async fn delete_semantics(store: &dyn StateStore) {
    let created = commit_ok(
        store,
        vec![
            put(Kind::Node, "n1", "v", Precondition::None),
            put(Kind::Node, "n2", "v", Precondition::None),
        ],
    )
    .await;
    let deleted = commit_ok(store, vec![delete(Kind::Node, "n1", Precondition::None)]).await;
    assert!(deleted > created);
    assert_eq!(store.get(Kind::Node, "n1").await.unwrap(), None);
    assert_eq!(keys(&store.list(Kind::Node, "").await.unwrap()), ["n2"]);

    let noop = store
        .commit(vec![delete(Kind::Node, "n1", Precondition::None)])
        .await;
    assert_eq!(
        noop.unwrap(),
        deleted,
        "deleting nothing returns the current revision"
    );
    assert_eq!(store.revision().await.unwrap(), deleted);

    let recreated = commit_ok(
        store,
        vec![put(Kind::Node, "n1", "again", Precondition::Absent)],
    )
    .await;
    let n1 = store.get(Kind::Node, "n1").await.unwrap().unwrap();
    assert_eq!(
        (n1.create_revision, n1.mod_revision),
        (recreated, recreated)
    );
    assert!(recreated > created);
}

// ---------------------------------------------------------------------------------------------
// Batches

/// All ops of a batch land at one revision, across kinds, mixing puts and deletes.
pub async fn batch_commits_at_one_revision(store: &dyn StateStore) {
    let before = commit_ok(
        store,
        vec![put(Kind::Instance, "w/old", "v", Precondition::None)],
    )
    .await;
    let revision = commit_ok(
        store,
        vec![
            put(Kind::Workload, "w", "def", Precondition::Absent),
            put(Kind::Instance, "w/1", "i1", Precondition::Absent),
            put(Kind::Instance, "w/2", "i2", Precondition::None),
            delete(Kind::Instance, "w/old", Precondition::ModRevision(before)),
            put(Kind::Node, "n", "node", Precondition::None),
        ],
    )
    .await;
    assert!(revision > before);
    assert_eq!(
        store.revision().await.unwrap(),
        revision,
        "one batch, one revision"
    );
    for (kind, key) in [
        (Kind::Workload, "w"),
        (Kind::Instance, "w/1"),
        (Kind::Instance, "w/2"),
        (Kind::Node, "n"),
    ] {
        let e = store.get(kind, key).await.unwrap().expect("written");
        assert_eq!(
            (e.create_revision, e.mod_revision),
            (revision, revision),
            "{kind:?} {key}"
        );
    }
    assert_eq!(store.get(Kind::Instance, "w/old").await.unwrap(), None);
}

/// If any op's precondition fails, the batch writes nothing, the revision does not move, no watch
/// event is emitted, and the conflict names the first failing op.
pub async fn failed_batch_writes_nothing(store: &dyn StateStore) {
    let base = commit_ok(
        store,
        vec![
            put(Kind::Workload, "exists", "v1", Precondition::None),
            put(Kind::Node, "keep", "v1", Precondition::None),
        ],
    )
    .await;
    let mut watch = store.watch(base).await.unwrap();
    let result = store
        .commit(vec![
            put(Kind::Workload, "new", "v", Precondition::Absent),
            delete(Kind::Node, "keep", Precondition::None),
            put(Kind::Workload, "missing", "v", Precondition::Exists), // first failure
            put(Kind::Workload, "exists", "v2", Precondition::Absent), // second failure
        ])
        .await;
    assert_conflict(result, Kind::Workload, "missing");
    assert_eq!(
        store.revision().await.unwrap(),
        base,
        "the revision did not move"
    );
    assert_eq!(store.get(Kind::Workload, "new").await.unwrap(), None);
    assert_eq!(store.get(Kind::Workload, "missing").await.unwrap(), None);
    assert_eq!(
        get_value(store, Kind::Node, "keep").await.as_deref(),
        Some("v1")
    );
    assert_eq!(
        get_value(store, Kind::Workload, "exists").await.as_deref(),
        Some("v1")
    );
    // The watch saw nothing of it: its first event is the next successful commit.
    let next = commit_ok(
        store,
        vec![put(Kind::Node, "after", "v", Precondition::None)],
    )
    .await;
    assert_eq!(
        next_event(&mut watch).await,
        change(next, Kind::Node, "after", Some("v"))
    );
}

/// A batch that writes the same key twice is refused as a whole (etcd refuses it, so every
/// implementation does, and code tested against the twin keeps working on etcd).
pub async fn duplicate_key_in_batch_is_refused(store: &dyn StateStore) {
    let start = store.revision().await.unwrap();
    let result = store
        .commit(vec![
            put(Kind::Instance, "w/1", "a", Precondition::None),
            put(Kind::Instance, "w/2", "b", Precondition::None),
            delete(Kind::Instance, "w/1", Precondition::None),
        ])
        .await;
    assert!(
        result.is_err(),
        "a key written twice must be refused: {result:?}"
    );
    assert_eq!(store.revision().await.unwrap(), start);
    assert_eq!(store.list(Kind::Instance, "").await.unwrap(), vec![]);
}

/// An [`Op::Check`] writes nothing: a batch commits only if its precondition holds (and then
/// the check adds no change and no watch event), and fails naming the checked key otherwise.
pub async fn check_ops_are_preconditions_only(store: &dyn StateStore) {
    let held = commit_ok(
        store,
        vec![put(Kind::Cluster, "leader", "me", Precondition::None)],
    )
    .await;
    let check = |precondition| Op::Check {
        kind: Kind::Cluster,
        key: "leader".into(),
        precondition,
    };
    let mut watch = store.watch(held).await.unwrap();
    let written = commit_ok(
        store,
        vec![
            check(Precondition::ModRevision(held)),
            put(Kind::Workload, "w", "v", Precondition::None),
        ],
    )
    .await;
    assert!(written > held);
    assert_eq!(
        next_event(&mut watch).await,
        change(written, Kind::Workload, "w", Some("v")),
        "the check itself is no change"
    );
    let only_checks = commit_ok(store, vec![check(Precondition::Exists)]).await;
    assert_eq!(only_checks, written, "a batch of checks changes nothing");
    for failing in [Precondition::ModRevision(held + 100), Precondition::Absent] {
        assert_conflict(
            store
                .commit(vec![
                    put(Kind::Workload, "w", "v2", Precondition::None),
                    check(failing),
                ])
                .await,
            Kind::Cluster,
            "leader",
        );
    }
    assert_conflict(
        store
            .commit(vec![Op::Check {
                kind: Kind::Cluster,
                key: "missing".into(),
                precondition: Precondition::Exists,
            }])
            .await,
        Kind::Cluster,
        "missing",
    );
    assert_eq!(
        get_value(store, Kind::Workload, "w").await.as_deref(),
        Some("v")
    );
    assert_eq!(store.revision().await.unwrap(), written);
}

// ---------------------------------------------------------------------------------------------
// Watches

/// A watch from the store's start replays every change in commit order across kinds (deletes
/// with value `None`, a batch's changes at one revision in op order), then delivers live changes.
pub async fn watch_replays_history_then_live(store: &dyn StateStore) {
    let start = store.revision().await.unwrap();
    let r1 = commit_ok(
        store,
        vec![put(Kind::Workload, "w", "def", Precondition::None)],
    )
    .await;
    let r2 = commit_ok(
        store,
        vec![
            put(Kind::Instance, "w/1", "i1", Precondition::None),
            put(Kind::Node, "n1", "node", Precondition::None),
        ],
    )
    .await;
    let r3 = commit_ok(
        store,
        vec![put(Kind::Workload, "w", "def2", Precondition::None)],
    )
    .await;
    let r4 = commit_ok(
        store,
        vec![delete(Kind::Instance, "w/1", Precondition::None)],
    )
    .await;
    // Deleting nothing is no change: no event.
    commit_ok(
        store,
        vec![delete(Kind::Instance, "w/none", Precondition::None)],
    )
    .await;

    let mut watch = store.watch(start).await.unwrap();
    let replayed = [
        change(r1, Kind::Workload, "w", Some("def")),
        change(r2, Kind::Instance, "w/1", Some("i1")),
        change(r2, Kind::Node, "n1", Some("node")),
        change(r3, Kind::Workload, "w", Some("def2")),
        change(r4, Kind::Instance, "w/1", None),
    ];
    for want in replayed {
        assert_eq!(next_event(&mut watch).await, want);
    }
    let r5 = commit_ok(
        store,
        vec![put(Kind::Node, "n2", "live", Precondition::None)],
    )
    .await;
    let r6 = commit_ok(store, vec![delete(Kind::Node, "n1", Precondition::Exists)]).await;
    assert_eq!(
        next_event(&mut watch).await,
        change(r5, Kind::Node, "n2", Some("live"))
    );
    assert_eq!(
        next_event(&mut watch).await,
        change(r6, Kind::Node, "n1", None)
    );
}

/// A watch from the current revision delivers only changes committed after it.
pub async fn watch_from_current_sees_only_new(store: &dyn StateStore) {
    for i in 0..5 {
        commit_ok(
            store,
            vec![put(
                Kind::Instance,
                &format!("w/{i}"),
                "old",
                Precondition::None,
            )],
        )
        .await;
    }
    let now = store.revision().await.unwrap();
    let mut watch = store.watch(now).await.unwrap();
    let r = commit_ok(
        store,
        vec![put(Kind::Instance, "w/new", "new", Precondition::None)],
    )
    .await;
    assert_eq!(
        next_event(&mut watch).await,
        change(r, Kind::Instance, "w/new", Some("new"))
    );
}

/// A watch from a past revision delivers exactly the changes after it.
pub async fn watch_from_a_past_revision(store: &dyn StateStore) {
    let mut revisions = Vec::new();
    for i in 0..6 {
        revisions.push(
            commit_ok(
                store,
                vec![put(Kind::Node, "n", &i.to_string(), Precondition::None)],
            )
            .await,
        );
    }
    let mut watch = store.watch(revisions[2]).await.unwrap();
    for (i, revision) in revisions.iter().enumerate().skip(3) {
        assert_eq!(
            next_event(&mut watch).await,
            change(*revision, Kind::Node, "n", Some(&i.to_string()))
        );
    }
    let live = commit_ok(
        store,
        vec![put(Kind::Node, "n", "live", Precondition::None)],
    )
    .await;
    assert_eq!(
        next_event(&mut watch).await,
        change(live, Kind::Node, "n", Some("live"))
    );
}

/// A watch of a key prefix of one collection sees the changes to those keys, in order, and
/// nothing of the other keys or collections (a node agent's watch of its assignments).
pub async fn watch_of_a_prefix_sees_only_its_keys(store: &dyn StateStore) {
    let before = store.revision().await.unwrap();
    let r1 = commit_ok(
        store,
        vec![
            put(Kind::Assignment, "n1/a", "1", Precondition::None),
            put(Kind::Assignment, "n2/a", "1", Precondition::None),
            put(Kind::ContainerStatus, "n1/a", "1", Precondition::None),
        ],
    )
    .await;
    let mut watch = store
        .watch_prefix(before, Kind::Assignment, "n1/")
        .await
        .unwrap();
    commit_ok(
        store,
        vec![put(Kind::Assignment, "n2/b", "2", Precondition::None)],
    )
    .await;
    commit_ok(
        store,
        vec![put(Kind::ContainerStatus, "n1/b", "2", Precondition::None)],
    )
    .await;
    let r2 = commit_ok(
        store,
        vec![delete(Kind::Assignment, "n1/a", Precondition::None)],
    )
    .await;
    assert_eq!(
        next_event(&mut watch).await,
        change(r1, Kind::Assignment, "n1/a", Some("1"))
    );
    assert_eq!(
        next_event(&mut watch).await,
        change(r2, Kind::Assignment, "n1/a", None)
    );
    // Nothing else came in between: the next event is the next change under the prefix.
    let r3 = commit_ok(
        store,
        vec![put(Kind::Assignment, "n1/z", "3", Precondition::None)],
    )
    .await;
    assert_eq!(
        next_event(&mut watch).await,
        change(r3, Kind::Assignment, "n1/z", Some("3"))
    );
}

/// A watch of some kinds replays and delivers only their changes, in order, none missed: a
/// batch that writes several kinds shows up with its part of the watched kinds.
pub async fn watch_of_some_kinds_sees_only_those(store: &dyn StateStore) {
    let before = store.revision().await.unwrap();
    let r1 = commit_ok(
        store,
        vec![
            put(Kind::Workload, "kw", "1", Precondition::None),
            put(Kind::Instance, "kw/i", "1", Precondition::None),
        ],
    )
    .await;
    let mut watch = store
        .watch_kinds(before, KindSet::of(&[Kind::Workload, Kind::Node]))
        .await
        .unwrap();
    for i in 0..3 {
        commit_ok(
            store,
            vec![put(
                Kind::Instance,
                "kw/i",
                &i.to_string(),
                Precondition::None,
            )],
        )
        .await;
    }
    let r2 = commit_ok(store, vec![put(Kind::Node, "kn", "2", Precondition::None)]).await;
    let r3 = commit_ok(
        store,
        vec![delete(Kind::Workload, "kw", Precondition::None)],
    )
    .await;
    assert_eq!(
        next_event(&mut watch).await,
        change(r1, Kind::Workload, "kw", Some("1"))
    );
    assert_eq!(
        next_event(&mut watch).await,
        change(r2, Kind::Node, "kn", Some("2"))
    );
    assert_eq!(
        next_event(&mut watch).await,
        change(r3, Kind::Workload, "kw", None)
    );
}

/// Several watchers each get every change; dropping one does not disturb the others or the
/// writers.
pub async fn watchers_are_independent(store: &dyn StateStore) {
    let start = store.revision().await.unwrap();
    let mut first = store.watch(start).await.unwrap();
    let mut second = store.watch(start).await.unwrap();
    let dropped = store.watch(start).await.unwrap();
    drop(dropped);
    let mut revisions = Vec::new();
    for i in 0..3 {
        revisions.push(
            commit_ok(
                store,
                vec![put(
                    Kind::Workload,
                    &format!("w{i}"),
                    "v",
                    Precondition::None,
                )],
            )
            .await,
        );
    }
    for watch in [&mut first, &mut second] {
        for (i, revision) in revisions.iter().enumerate() {
            let want = change(*revision, Kind::Workload, &format!("w{i}"), Some("v"));
            assert_eq!(next_event(watch).await, want);
        }
    }
}

/// Asking for changes the store no longer keeps fails with `Compacted` (never a silent gap),
/// and watching from its `oldest` works. A store that keeps every change may instead replay
/// them all, which is also correct; the check accepts both.
pub async fn watch_compaction_is_reported(store: &dyn StateStore) {
    let start = store.revision().await.unwrap();
    let mut revisions = Vec::new();
    for i in 0..150 {
        revisions.push(
            commit_ok(
                store,
                vec![put(
                    Kind::Instance,
                    "w/hot",
                    &i.to_string(),
                    Precondition::None,
                )],
            )
            .await,
        );
    }
    let last = *revisions.last().unwrap();
    let (mut watch, first_index) = match store.watch(start).await {
        Ok(watch) => (watch, 0),
        Err(StoreError::Compacted { requested, oldest }) => {
            assert_eq!(requested, start);
            assert!(
                oldest > start && oldest <= last,
                "oldest {oldest} within the writes"
            );
            let first_index = revisions.iter().position(|r| *r >= oldest).unwrap();
            let watch = store
                .watch(oldest - 1)
                .await
                .expect("watching from `oldest` works");
            (watch, first_index)
        }
        Err(e) => panic!("expected a replay or Compacted, got {e}"),
    };
    for (i, revision) in revisions.iter().enumerate().skip(first_index) {
        assert_eq!(
            next_event(&mut watch).await,
            change(*revision, Kind::Instance, "w/hot", Some(&i.to_string()))
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Event log

/// Appending assigns each event a `seq`, increasing in append order (the caller's `seq` is
/// ignored); listing returns them oldest first, otherwise as appended.
pub async fn events_get_increasing_seq(store: &dyn StateStore) {
    assert_eq!(
        store.list_events(&EventFilter::default()).await.unwrap(),
        vec![]
    );
    let mut first = event(None, "e1");
    first.seq = 999; // ignored
    store
        .append_events(vec![first.clone(), event(None, "e2")])
        .await
        .unwrap();
    store.append_events(vec![]).await.unwrap();
    store.append_events(vec![event(None, "e3")]).await.unwrap();
    let listed = store.list_events(&EventFilter::default()).await.unwrap();
    assert_eq!(messages(&listed), ["e1", "e2", "e3"]);
    assert!(listed[0].seq > 0);
    assert!(
        listed.windows(2).all(|w| w[0].seq < w[1].seq),
        "seq increases: {listed:?}"
    );
    let mut stored_first = listed[0].clone();
    stored_first.seq = first.seq;
    assert_eq!(stored_first, first, "everything else is kept as appended");
}

/// `workload_id` keeps only that workload's events; `after_seq` only later ones; both combine.
pub async fn events_filter_by_workload_and_after_seq(store: &dyn StateStore) {
    let web = WorkloadId::from("web-id");
    let db = WorkloadId::from("db-id");
    store
        .append_events(vec![
            event(Some(&web), "web1"),
            event(Some(&db), "db1"),
            event(None, "cluster"),
            event(Some(&web), "web2"),
            event(Some(&db), "db2"),
            event(Some(&web), "web3"),
        ])
        .await
        .unwrap();
    let only_web = EventFilter {
        workload_id: Some(web.clone()),
        ..Default::default()
    };
    let listed = store.list_events(&only_web).await.unwrap();
    assert_eq!(messages(&listed), ["web1", "web2", "web3"]);
    let all = store.list_events(&EventFilter::default()).await.unwrap();
    let after = EventFilter {
        after_seq: Some(all[2].seq),
        ..Default::default()
    };
    assert_eq!(
        messages(&store.list_events(&after).await.unwrap()),
        ["web2", "db2", "web3"]
    );
    let both = EventFilter {
        workload_id: Some(db),
        after_seq: Some(all[1].seq),
        limit: None,
        limit_from: LimitFrom::Newest,
    };
    assert_eq!(messages(&store.list_events(&both).await.unwrap()), ["db2"]);
    let past_the_end = EventFilter {
        after_seq: Some(all[5].seq),
        ..Default::default()
    };
    assert_eq!(store.list_events(&past_the_end).await.unwrap(), vec![]);
}

/// `limit` keeps the most recent matching events, still returned oldest first.
pub async fn events_limit_keeps_the_most_recent(store: &dyn StateStore) {
    let web = WorkloadId::from("web-id");
    let other = WorkloadId::from("other-id");
    let mut batch = Vec::new();
    for i in 1..=6 {
        batch.push(event(Some(&web), &format!("web{i}")));
        batch.push(event(Some(&other), &format!("other{i}")));
    }
    store.append_events(batch).await.unwrap();
    let limited = |workload_id: Option<WorkloadId>, after_seq, limit| EventFilter {
        workload_id,
        after_seq,
        limit: Some(limit),
        limit_from: LimitFrom::Newest,
    };
    let last_three = store
        .list_events(&limited(Some(web.clone()), None, 3))
        .await
        .unwrap();
    assert_eq!(messages(&last_three), ["web4", "web5", "web6"]);
    let last_two = store.list_events(&limited(None, None, 2)).await.unwrap();
    assert_eq!(messages(&last_two), ["web6", "other6"]);
    let more_than_there = store
        .list_events(&limited(Some(web.clone()), None, 100))
        .await
        .unwrap();
    assert_eq!(more_than_there.len(), 6);
    let after = last_three[0].seq;
    let tail = store
        .list_events(&limited(Some(web.clone()), Some(after), 10))
        .await
        .unwrap();
    assert_eq!(messages(&tail), ["web5", "web6"]);
    assert_eq!(
        store.list_events(&limited(None, None, 0)).await.unwrap(),
        vec![]
    );
}

/// With `limit_from: Oldest`, `limit` keeps the oldest matches after `after_seq`: passing the
/// last `seq` of each page as the next `after_seq` reads the whole (filtered) log once, in
/// order; with a workload filter the pages skip other workloads' events.
pub async fn events_limit_from_oldest_pages_forward(store: &dyn StateStore) {
    let web = WorkloadId::from("web-id");
    let other = WorkloadId::from("other-id");
    let mut batch = Vec::new();
    for i in 1..=7 {
        batch.push(event(Some(&web), &format!("web{i}")));
        batch.push(event(Some(&other), &format!("other{i}")));
    }
    batch.push(event(None, "cluster"));
    store.append_events(batch).await.unwrap();
    let everything = store.list_events(&EventFilter::default()).await.unwrap();

    for (workload_id, limit) in [(None, 1), (None, 4), (Some(web.clone()), 3), (None, 100)] {
        let mut paged: Vec<Event> = Vec::new();
        loop {
            let filter = EventFilter {
                workload_id: workload_id.clone(),
                after_seq: paged.last().map(|e| e.seq),
                limit: Some(limit),
                limit_from: LimitFrom::Oldest,
            };
            let page = store.list_events(&filter).await.unwrap();
            assert!(page.len() <= limit);
            assert!(
                page.windows(2).all(|w| w[0].seq < w[1].seq),
                "a page is oldest first"
            );
            let done = page.len() < limit;
            paged.extend(page);
            if done {
                break;
            }
        }
        let expected: Vec<&Event> = everything
            .iter()
            .filter(|e| workload_id.is_none() || e.workload_id == workload_id)
            .collect();
        assert_eq!(
            paged.iter().collect::<Vec<_>>(),
            expected,
            "pages of {limit} for {workload_id:?}"
        );
    }

    let first_two = EventFilter {
        limit: Some(2),
        limit_from: LimitFrom::Oldest,
        ..Default::default()
    };
    assert_eq!(
        messages(&store.list_events(&first_two).await.unwrap()),
        ["web1", "other1"]
    );
    let past_the_end = EventFilter {
        after_seq: everything.last().map(|e| e.seq),
        limit: Some(5),
        limit_from: LimitFrom::Oldest,
        ..Default::default()
    };
    assert_eq!(store.list_events(&past_the_end).await.unwrap(), vec![]);
    let none = EventFilter {
        limit: Some(0),
        limit_from: LimitFrom::Oldest,
        ..Default::default()
    };
    assert_eq!(store.list_events(&none).await.unwrap(), vec![]);
}

// ---------------------------------------------------------------------------------------------
// Concurrency

/// 20 tasks each increment one counter 5 times by read-modify-write with compare-and-swap,
/// retrying on conflict: no increment is lost, and conflicts are reported as such.
pub async fn concurrent_cas_increments(store: Arc<dyn StateStore>) {
    const TASKS: u64 = 20;
    const INCREMENTS: u64 = 5;
    commit_ok(
        &*store,
        vec![put(Kind::Workload, "counter", "0", Precondition::Absent)],
    )
    .await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..TASKS {
        let store = store.clone();
        tasks.spawn(async move {
            let mut conflicts = 0u64;
            for _ in 0..INCREMENTS {
                loop {
                    let entry = store.get(Kind::Workload, "counter").await.unwrap().unwrap();
                    let n: u64 = String::from_utf8(entry.value).unwrap().parse().unwrap();
                    // Let the others read the same revision, so swaps really race.
                    tokio::task::yield_now().await;
                    let op = put(
                        Kind::Workload,
                        "counter",
                        &(n + 1).to_string(),
                        Precondition::ModRevision(entry.mod_revision),
                    );
                    match store.commit(vec![op]).await {
                        Ok(_) => break,
                        Err(StoreError::Conflict { .. }) => conflicts += 1,
                        Err(e) => panic!("unexpected error: {e}"),
                    }
                }
            }
            conflicts
        });
    }
    let mut conflicts = 0;
    while let Some(result) = tasks.join_next().await {
        conflicts += result.expect("task panicked");
    }
    let total = TASKS * INCREMENTS;
    assert_eq!(
        get_value(&*store, Kind::Workload, "counter")
            .await
            .as_deref(),
        Some(total.to_string().as_str()),
        "every increment counted ({conflicts} conflicts retried)"
    );
}

// ---------------------------------------------------------------------------------------------
// Typed access

/// `StoreExt` round-trips the three stored types through JSON, with the revision for a later
/// compare-and-swap, and lists instances of one workload by prefix.
pub async fn typed_round_trip(store: &dyn StateStore) {
    let mut web = WorkloadDefinition::new("web", 3, ContainerConfig::new("httpd", "busybox:1"));
    web.labels.insert("tier".into(), "front".into());
    let db = WorkloadDefinition::new("db", 1, ContainerConfig::new("pg", "postgres:16"));
    let r_web = store.put_obj(&web, Precondition::Absent).await.unwrap();
    store.put_obj(&db, Precondition::Absent).await.unwrap();

    let got = store
        .get_obj::<WorkloadDefinition>("web")
        .await
        .unwrap()
        .expect("web");
    assert_eq!((got.value.clone(), got.revision), (web.clone(), r_web));
    let names: Vec<String> = store
        .list_obj::<WorkloadDefinition>("")
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.value.name)
        .collect();
    assert_eq!(names, ["db", "web"]);

    let mut instances = Vec::new();
    for i in 0..3 {
        let mut instance =
            WorkloadInstance::new(InstanceId::from(format!("web-{i}")), web.id.clone());
        instance.node_id = Some("n1".into());
        instance.transition(InstanceStatus::Scheduled);
        instances.push(instance);
    }
    let other = WorkloadInstance::new("db-0".into(), db.id.clone());
    let mut ops: Vec<Op> = instances
        .iter()
        .map(|i| put_op(i, Precondition::Absent))
        .collect();
    ops.push(put_op(&other, Precondition::Absent));
    let r_instances = commit_ok(store, ops).await;
    let listed = store
        .list_obj::<WorkloadInstance>(&instance_prefix(&web.id))
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|v| v.value.clone()).collect::<Vec<_>>(),
        instances
    );
    assert!(listed.iter().all(|v| v.revision == r_instances));

    // Compare-and-swap with the revision read.
    let mut running = listed[0].value.clone();
    running.transition(InstanceStatus::Running);
    store
        .put_obj(&running, Precondition::ModRevision(listed[0].revision))
        .await
        .unwrap();
    assert_conflict(
        store
            .put_obj(&running, Precondition::ModRevision(listed[0].revision))
            .await,
        Kind::Instance,
        &format!("{}/web-0", web.id),
    );
    commit_ok(store, vec![delete_op(&other, Precondition::Exists)]).await;
    assert_eq!(
        store
            .get_obj::<WorkloadInstance>(&format!("{}/db-0", db.id))
            .await
            .unwrap(),
        None
    );

    let mut node = Node::new("n1", Resources::new(4000, 8192, 100_000)).with_label("zone", "z1");
    node.status = NodeStatus::NotReady;
    node.unschedulable = true;
    node.address = "10.0.0.1:7000".into();
    let r_node = store.put_obj(&node, Precondition::None).await.unwrap();
    let got = store.get_obj::<Node>("n1").await.unwrap().expect("node");
    assert_eq!((got.value, got.revision), (node, r_node));
}

/// `list_obj_page` decodes one page; the next page starts after the last object's key, and
/// a page with an undecodable value is a `Codec` error like `list_obj`.
pub async fn typed_list_page(store: &dyn StateStore) {
    let names = ["e", "a", "d", "b", "c"];
    for name in names {
        let def = WorkloadDefinition::new(name, 1, ContainerConfig::new("main", "busybox:1"));
        store.put_obj(&def, Precondition::Absent).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let after: Option<String> = seen.last().cloned();
        let page = store
            .list_obj_page::<WorkloadDefinition>("", after.as_deref(), 2)
            .await
            .unwrap();
        pages += 1;
        let done = page.len() < 2;
        seen.extend(page.into_iter().map(|v| v.value.key()));
        if done {
            break;
        }
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);
    assert_eq!(pages, 3, "2 + 2 + 1");

    commit_ok(
        store,
        vec![put(Kind::Workload, "f", "{not json", Precondition::None)],
    )
    .await;
    assert_eq!(
        store
            .list_obj_page::<WorkloadDefinition>("", None, 5)
            .await
            .unwrap()
            .len(),
        5,
        "a page that stops before the bad value decodes"
    );
    assert!(matches!(
        store
            .list_obj_page::<WorkloadDefinition>("", Some("e"), 5)
            .await,
        Err(StoreError::Codec { kind: Kind::Workload, ref key, .. }) if key == "f"
    ));
}

/// A stored value that is not the requested type is a `Codec` error naming the entry, not a
/// panic or a silent default.
pub async fn typed_codec_error(store: &dyn StateStore) {
    commit_ok(
        store,
        vec![put(Kind::Node, "garbled", "{not json", Precondition::None)],
    )
    .await;
    match store.get_obj::<Node>("garbled").await {
        Err(e @ StoreError::Codec { .. }) => {
            assert!(!e.is_transient());
            assert!(
                std::error::Error::source(&e).is_some(),
                "keeps the serde error"
            );
            assert!(
                matches!(e, StoreError::Codec { kind: Kind::Node, ref key, .. } if key == "garbled")
            );
        }
        other => panic!("expected a codec error, got {other:?}"),
    }
    assert!(matches!(
        store.list_obj::<Node>("").await,
        Err(StoreError::Codec { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Coordination

/// TTL of the leases the coordination checks grant.
const LEASE_TTL: Duration = Duration::from_secs(1);

/// Waits until `key` is gone (within 10 s): a lease has ended.
async fn wait_gone(store: &dyn Coordination, kind: Kind, key: &str) {
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    while store.get(kind, key).await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{kind:?} {key:?} outlived its lease"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A key written under a lease that nobody refreshes is deleted after the TTL, and watchers
/// see the delete as an ordinary change.
pub async fn leased_key_disappears_after_ttl(store: &dyn Coordination) {
    let lease = store.grant_lease(LEASE_TTL).await.unwrap();
    let written = store
        .put_leased(
            Kind::Cluster,
            "members/n1",
            b"alive".to_vec(),
            lease,
            Precondition::Absent,
        )
        .await
        .unwrap();
    let mut watch = store.watch(written).await.unwrap();
    assert_eq!(
        get_value(store, Kind::Cluster, "members/n1")
            .await
            .as_deref(),
        Some("alive")
    );
    let gone = next_event(&mut watch).await;
    assert_eq!(
        (gone.kind, gone.key.as_str(), gone.value),
        (Kind::Cluster, "members/n1", None)
    );
    assert!(gone.revision > written);
    assert_eq!(store.get(Kind::Cluster, "members/n1").await.unwrap(), None);
}

/// Refreshing a lease more often than its TTL keeps its key.
pub async fn keep_alive_keeps_a_lease(store: &dyn Coordination) {
    let lease = store.grant_lease(LEASE_TTL).await.unwrap();
    store
        .put_leased(
            Kind::Cluster,
            "leader",
            b"me".to_vec(),
            lease,
            Precondition::Absent,
        )
        .await
        .unwrap();
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        store.keep_alive(lease).await.unwrap();
    }
    assert_eq!(
        get_value(store, Kind::Cluster, "leader").await.as_deref(),
        Some("me"),
        "kept for 2.4 s with a TTL of 1 s"
    );
    store.revoke_lease(lease).await.unwrap();
}

/// Revoking a lease deletes its keys at once; revoking it again is no error; a key written
/// again without the lease is no longer bound to it.
pub async fn revoke_deletes_at_once(store: &dyn Coordination) {
    let lease = store.grant_lease(Duration::from_secs(30)).await.unwrap();
    for key in ["members/a", "members/b"] {
        store
            .put_leased(Kind::Cluster, key, b"x".to_vec(), lease, Precondition::None)
            .await
            .unwrap();
    }
    commit_ok(
        store,
        vec![put(
            Kind::Cluster,
            "members/b",
            "unbound",
            Precondition::Exists,
        )],
    )
    .await;
    store.revoke_lease(lease).await.unwrap();
    assert_eq!(store.get(Kind::Cluster, "members/a").await.unwrap(), None);
    assert_eq!(
        get_value(store, Kind::Cluster, "members/b")
            .await
            .as_deref(),
        Some("unbound"),
        "a write without the lease rebinds the key"
    );
    store.revoke_lease(lease).await.unwrap();
    assert!(matches!(
        store
            .put_leased(
                Kind::Cluster,
                "members/c",
                b"x".to_vec(),
                lease,
                Precondition::None
            )
            .await,
        Err(StoreError::LeaseExpired { .. })
    ));
}

/// `keep_alive` of a lease that has expired fails with `LeaseExpired`.
pub async fn keep_alive_after_expiry_fails(store: &dyn Coordination) {
    let lease = store.grant_lease(LEASE_TTL).await.unwrap();
    store
        .put_leased(
            Kind::Cluster,
            "leader",
            b"me".to_vec(),
            lease,
            Precondition::Absent,
        )
        .await
        .unwrap();
    wait_gone(store, Kind::Cluster, "leader").await;
    match store.keep_alive(lease).await {
        Err(e @ StoreError::LeaseExpired { .. }) => assert!(!e.is_transient()),
        other => panic!("expected LeaseExpired, got {other:?}"),
    }
}

/// `put_leased` honours its precondition like a commit: `Absent` on an existing key conflicts.
pub async fn put_leased_honours_preconditions(store: &dyn Coordination) {
    let lease = store.grant_lease(Duration::from_secs(30)).await.unwrap();
    let first = store
        .put_leased(
            Kind::Cluster,
            "leader",
            b"a".to_vec(),
            lease,
            Precondition::Absent,
        )
        .await
        .unwrap();
    assert_conflict(
        store
            .put_leased(
                Kind::Cluster,
                "leader",
                b"b".to_vec(),
                lease,
                Precondition::Absent,
            )
            .await,
        Kind::Cluster,
        "leader",
    );
    let again = store
        .put_leased(
            Kind::Cluster,
            "leader",
            b"c".to_vec(),
            lease,
            Precondition::ModRevision(first),
        )
        .await
        .unwrap();
    assert!(again > first);
    assert_eq!(
        get_value(store, Kind::Cluster, "leader").await.as_deref(),
        Some("c")
    );
    store.revoke_lease(lease).await.unwrap();
}

/// A leader's fence: batches carrying `fence.check()` commit while its leased key is held,
/// and fail with a conflict the fence recognises once the lease is revoked; a conflict on
/// one of the batch's own keys is not the fence's.
pub async fn fence_holds_while_the_lease_does(store: &dyn Coordination) {
    let lease = store.grant_lease(Duration::from_secs(30)).await.unwrap();
    let revision = store
        .put_leased(
            Kind::Cluster,
            "leader",
            b"me".to_vec(),
            lease,
            Precondition::Absent,
        )
        .await
        .unwrap();
    let fence = crate::Fence {
        kind: Kind::Cluster,
        key: "leader".into(),
        revision,
    };
    commit_ok(
        store,
        vec![
            fence.check(),
            put(Kind::Assignment, "n1/c1", "run", Precondition::Absent),
        ],
    )
    .await;
    let own = store
        .commit(vec![
            fence.check(),
            put(Kind::Assignment, "n1/c1", "again", Precondition::Absent),
        ])
        .await
        .unwrap_err();
    assert!(
        !fence.is_violated_by(&own),
        "a conflict on the batch's own key"
    );
    store.revoke_lease(lease).await.unwrap();
    let deposed = store
        .commit(vec![
            fence.check(),
            put(Kind::Assignment, "n1/c2", "late", Precondition::None),
        ])
        .await
        .unwrap_err();
    assert!(fence.is_violated_by(&deposed), "{deposed:?}");
    assert_eq!(store.get(Kind::Assignment, "n1/c2").await.unwrap(), None);
}
