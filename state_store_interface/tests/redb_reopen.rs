//! [`RedbStore`] keeps everything across a close and reopen of its data directory: entries with
//! their revisions, the revision counter, the event log and its `seq`, the watch history and
//! what was compacted from it. And one directory is open in one store at a time.
#![cfg(feature = "redb")]

use orchestrator_shared_types::{
    ContainerConfig, Event, EventKind, InstanceId, Node, Resources, WorkloadDefinition,
    WorkloadInstance,
};
use state_store_interface::redb_store::{RedbOptions, STATE_FILE};
use state_store_interface::typed::{delete_op, put_op};
use state_store_interface::{
    Entry, EventFilter, Kind, Op, Precondition, RedbStore, Revision, StateStore, StoreError,
    StoreExt, Watch, WatchEvent,
};
use std::time::Duration;

async fn next(watch: &mut Watch) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("a change within 10 s")
        .expect("the watch goes on")
        .expect("the change decodes")
}

async fn everything(store: &RedbStore) -> Vec<Entry> {
    let mut all = Vec::new();
    for kind in Kind::ALL {
        all.extend(store.list(kind, "").await.unwrap());
    }
    all
}

/// The whole error chain, as `anyhow`'s `{:#}` would print it.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[tokio::test]
async fn reopening_keeps_entries_revisions_events_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data"); // created by `open`
    let (entries, revision, events, history) = {
        let store = RedbStore::open(&data).unwrap();
        assert_eq!(
            store.describe(),
            format!("redb:{}", data.join(STATE_FILE).display())
        );
        let web = WorkloadDefinition::new("web", 2, ContainerConfig::new("httpd", "busybox:1"));
        let db = WorkloadDefinition::new("db", 1, ContainerConfig::new("pg", "postgres:16"));
        store.put_obj(&web, Precondition::Absent).await.unwrap();
        store.put_obj(&db, Precondition::Absent).await.unwrap();
        let instances: Vec<WorkloadInstance> = (0..3)
            .map(|i| WorkloadInstance::new(InstanceId::from(format!("web-{i}")), web.id.clone()))
            .collect();
        let ops = instances
            .iter()
            .map(|i| put_op(i, Precondition::Absent))
            .collect();
        store.commit(ops).await.unwrap();
        store
            .commit(vec![delete_op(&instances[2], Precondition::Exists)])
            .await
            .unwrap();
        let node = Node::new("n1", Resources::new(4000, 8192, 100_000));
        store.put_obj(&node, Precondition::None).await.unwrap();
        let mut web2 = web.clone();
        web2.replicas = 3;
        store.put_obj(&web2, Precondition::Exists).await.unwrap();
        let events = (0..5)
            .map(|i| {
                let mut e = Event::new(EventKind::Started, format!("e{i}"));
                e.workload_id = Some(web.id.clone());
                e
            })
            .collect();
        store.append_events(events).await.unwrap();

        // 2 + 3 + 1 + 1 + 1 changes.
        let mut watch = store.watch(0).await.unwrap();
        let mut history = Vec::new();
        for _ in 0..8 {
            history.push(next(&mut watch).await);
        }
        (
            everything(&store).await,
            store.revision().await.unwrap(),
            store.list_events(&EventFilter::default()).await.unwrap(),
            history,
        )
    };
    assert_eq!(revision, 6);
    assert_eq!(entries.len(), 5);

    let store = RedbStore::open(&data).expect("reopens at once after drop");
    assert_eq!(
        everything(&store).await,
        entries,
        "same entries and revisions"
    );
    assert_eq!(store.revision().await.unwrap(), revision);
    assert_eq!(
        store.list_events(&EventFilter::default()).await.unwrap(),
        events
    );

    // The history replays as before, from the start and from a past revision, then goes live
    // with the counter continuing.
    let mut from_start = store.watch(0).await.unwrap();
    for want in &history {
        assert_eq!(&next(&mut from_start).await, want);
    }
    let mut from_past = store.watch(3).await.unwrap();
    for want in history.iter().filter(|c| c.revision > 3) {
        assert_eq!(&next(&mut from_past).await, want);
    }
    let r = store
        .commit(vec![Op::Put {
            kind: Kind::Node,
            key: "n2".into(),
            value: b"{}".to_vec(),
            precondition: Precondition::Absent,
        }])
        .await
        .unwrap();
    assert_eq!(r, revision + 1);
    for watch in [&mut from_start, &mut from_past] {
        let live = next(watch).await;
        assert_eq!((live.revision, live.key.as_str()), (r, "n2"));
    }

    store
        .append_events(vec![Event::new(EventKind::Stopped, "after reopen")])
        .await
        .unwrap();
    let listed = store.list_events(&EventFilter::default()).await.unwrap();
    assert_eq!(listed.len(), 6);
    assert_eq!(listed[5].seq, events[4].seq + 1, "seq continues");
}

#[tokio::test]
async fn compaction_and_limits_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let options = RedbOptions {
        history_limit: 5,
        event_limit: 4,
        ..RedbOptions::default()
    };
    let put = |i: u64| Op::Put {
        kind: Kind::Instance,
        key: "w/hot".into(),
        value: i.to_string().into_bytes(),
        precondition: Precondition::None,
    };
    let oldest = {
        let store = RedbStore::open_with(dir.path(), options.clone()).unwrap();
        for i in 1..=10 {
            store.commit(vec![put(i)]).await.unwrap();
        }
        store
            .append_events(
                (0..10)
                    .map(|i| Event::new(EventKind::Started, format!("e{i}")))
                    .collect(),
            )
            .await
            .unwrap();
        match store.watch(0).await {
            Err(StoreError::Compacted { oldest, .. }) => oldest,
            other => panic!("expected Compacted, got {other:?}"),
        }
    };
    assert_eq!(oldest, 6, "revisions 6..=10 kept");

    let store = RedbStore::open_with(dir.path(), options).unwrap();
    assert!(matches!(
        store.watch(0).await,
        Err(StoreError::Compacted {
            requested: 0,
            oldest: 6
        })
    ));
    let mut watch = store.watch(oldest - 1).await.unwrap();
    for revision in 6..=10 {
        assert_eq!(next(&mut watch).await.revision, revision);
    }
    let events = store.list_events(&EventFilter::default()).await.unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [7, 8, 9, 10]);

    // Reopening with a larger history keeps what was compacted compacted.
    drop(store);
    let store = RedbStore::open(dir.path()).unwrap();
    assert!(matches!(
        store.watch(4).await,
        Err(StoreError::Compacted { oldest: 6, .. })
    ));
    assert_eq!(store.commit(vec![put(11)]).await.unwrap(), 11);
}

#[tokio::test]
async fn a_data_dir_is_open_in_one_store_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let first = RedbStore::open(dir.path()).unwrap();
    first
        .commit(vec![Op::Put {
            kind: Kind::Node,
            key: "n".into(),
            value: b"v".to_vec(),
            precondition: Precondition::None,
        }])
        .await
        .unwrap();
    let err = RedbStore::open(dir.path()).expect_err("the file is locked");
    assert!(matches!(
        err,
        StoreError::Backend {
            operation: "open",
            ..
        }
    ));
    assert!(!err.is_transient());
    let text = chain(&err);
    let path = dir.path().join(STATE_FILE).display().to_string();
    assert!(
        text.contains(&path) && text.contains("is another orchestratord running"),
        "{text}"
    );

    drop(first);
    let second = RedbStore::open(dir.path()).expect("free again once the first is dropped");
    assert_eq!(second.revision().await.unwrap(), 1);
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(STATE_FILE),
        b"not a redb file, but long enough to look at",
    )
    .unwrap();
    let err = RedbStore::open(dir.path()).expect_err("not a database");
    assert!(matches!(
        err,
        StoreError::Backend {
            operation: "open",
            ..
        }
    ));
    assert!(chain(&err).contains(STATE_FILE), "{err:?}");
}

/// Watches started at arbitrary moments while 8 tasks commit never miss or repeat a change:
/// each sees exactly the revisions after its start, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watches_started_during_commits_see_every_change_once() {
    const WRITERS: u64 = 8;
    const COMMITS: u64 = 60;
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(RedbStore::open(dir.path()).unwrap());
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let store = store.clone();
        writers.spawn(async move {
            for i in 0..COMMITS {
                store
                    .commit(vec![Op::Put {
                        kind: Kind::Instance,
                        key: format!("w{w}/{i}"),
                        value: b"v".to_vec(),
                        precondition: Precondition::Absent,
                    }])
                    .await
                    .unwrap();
            }
        });
    }
    // Start watches while the writers run, from the current revision and from a bit before.
    let mut watches: Vec<(Revision, Watch)> = Vec::new();
    while watches.len() < 40 {
        let now = store.revision().await.unwrap();
        let after = now.saturating_sub(watches.len() as u64 % 3);
        watches.push((after, store.watch(after).await.unwrap()));
        tokio::task::yield_now().await;
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    let last = WRITERS * COMMITS;
    assert_eq!(store.revision().await.unwrap(), last);
    for (after, mut watch) in watches {
        for revision in after + 1..=last {
            assert_eq!(next(&mut watch).await.revision, revision, "from {after}");
        }
    }
    let stats = store.writer_stats();
    eprintln!(
        "{} commits in {} transactions",
        stats.requests, stats.transactions
    );
}
