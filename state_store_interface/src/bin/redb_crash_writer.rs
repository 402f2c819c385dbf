//! `redb-crash-writer DIR TAG`: the helper process of `tests/redb_crash.rs` (feature `redb`).
//!
//! It opens a [`RedbStore`] in `DIR` and writes to it from 16 concurrent tasks (so the writer
//! thread batches their commits into groups), forever, printing to stdout each write the store
//! acknowledged, as soon as the call returned `Ok`:
//!
//! * `put REV KEY VALUE`: an instance `KEY` created (precondition `Absent`) at revision `REV`;
//! * `counter REV KEY N`: in the same commit, the node `KEY` (one per task) set to `N`, which
//!   only grows;
//! * `event MESSAGE`: an event appended (every 10th iteration).
//!
//! Keys and values contain no spaces. The test SIGKILLs it mid-flight, then checks that the
//! reopened store holds every acknowledged write. It stops by itself only if its stdout closes
//! (the test is gone) or after `MAX_ITERATIONS` per task, so a forgotten child cannot run
//! forever.

use orchestrator_shared_types::{Event, EventKind};
use state_store_interface::{Kind, Op, Precondition, RedbStore, StateStore};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

const TASKS: usize = 16;
const MAX_ITERATIONS: u64 = 50_000;

/// Prints one acknowledgement (one write, so lines do not interleave), or exits if nobody
/// listens any more.
fn ack(line: String) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        std::process::exit(0);
    }
}

async fn write_forever(store: Arc<RedbStore>, tag: String, task: usize) {
    let counter = format!("{tag}-counter-{task}");
    for i in 0..MAX_ITERATIONS {
        let key = format!("{tag}/t{task}/{i}");
        let value = format!("v-{tag}-{task}-{i}");
        let ops = vec![
            Op::Put {
                kind: Kind::Instance,
                key: key.clone(),
                value: value.clone().into_bytes(),
                precondition: Precondition::Absent,
            },
            Op::Put {
                kind: Kind::Node,
                key: counter.clone(),
                value: i.to_string().into_bytes(),
                precondition: Precondition::None,
            },
        ];
        match store.commit(ops).await {
            Ok(revision) => ack(format!(
                "put {revision} {key} {value}\ncounter {revision} {counter} {i}"
            )),
            Err(e) => {
                eprintln!("redb-crash-writer: commit of {key} failed: {e:?}");
                std::process::exit(1);
            }
        }
        if i % 10 == 0 {
            let message = format!("{tag}-e-{task}-{i}");
            match store
                .append_events(vec![Event::new(EventKind::Started, message.clone())])
                .await
            {
                Ok(()) => ack(format!("event {message}")),
                Err(e) => {
                    eprintln!("redb-crash-writer: append of {message} failed: {e:?}");
                    std::process::exit(1);
                }
            }
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, tag] = args.as_slice() else {
        eprintln!("usage: redb-crash-writer DIR TAG");
        return ExitCode::from(2);
    };
    let store = match RedbStore::open(Path::new(dir)) {
        Ok(store) => Arc::new(store),
        Err(e) => {
            eprintln!("redb-crash-writer: {e:?}");
            return ExitCode::FAILURE;
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        tasks.spawn(write_forever(store.clone(), tag.clone(), task));
    }
    while tasks.join_next().await.is_some() {}
    ExitCode::SUCCESS
}
