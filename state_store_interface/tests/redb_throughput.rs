//! A quick look at [`RedbStore`] commit throughput, printed (with `--nocapture`), not asserted:
//! sequential commits pay one fsync each; 64 concurrent committers share fsyncs through group
//! commit. Values are 1 KB, as in the etcd measurements of `notes/`. It asserts only that every
//! write landed. For numbers worth quoting run it in release:
//! `cargo test -p state_store_interface --features redb --release --test redb_throughput -- --nocapture`.
#![cfg(feature = "redb")]

use state_store_interface::{Kind, Op, Precondition, RedbStore, StateStore};
use std::sync::Arc;
use std::time::Instant;

const SEQUENTIAL: usize = 500;
const TASKS: usize = 64;
const PER_TASK: usize = 50;

fn put(key: String) -> Op {
    Op::Put {
        kind: Kind::Instance,
        key,
        value: vec![b'x'; 1024],
        precondition: Precondition::None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commit_throughput_sequential_and_concurrent() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RedbStore::open(dir.path()).unwrap());

    let start = Instant::now();
    for i in 0..SEQUENTIAL {
        store.commit(vec![put(format!("seq/{i}"))]).await.unwrap();
    }
    let sequential = SEQUENTIAL as f64 / start.elapsed().as_secs_f64();
    let before = store.writer_stats();

    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let store = store.clone();
        tasks.spawn(async move {
            for i in 0..PER_TASK {
                store
                    .commit(vec![put(format!("par/{t}/{i}"))])
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let concurrent = (TASKS * PER_TASK) as f64 / start.elapsed().as_secs_f64();
    let after = store.writer_stats();

    eprintln!(
        "redb commits (1 KB values, {}): sequential {sequential:.0}/s; {TASKS} concurrent \
         {concurrent:.0}/s ({} commits in {} durable transactions)",
        store.describe(),
        after.requests - before.requests,
        after.transactions - before.transactions,
    );
    assert_eq!(
        store.list(Kind::Instance, "").await.unwrap().len(),
        SEQUENTIAL + TASKS * PER_TASK
    );
}
