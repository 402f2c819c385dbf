//! Acknowledged writes survive `kill -9`.
//!
//! Each round runs the `redb-crash-writer` binary of this package (built by cargo for
//! integration tests with `--features redb`, found through `CARGO_BIN_EXE_redb-crash-writer`)
//! on one data directory. It commits from 16 concurrent tasks, so commits are group-committed,
//! and prints every write as soon as the store acknowledged it. After a few hundred
//! acknowledgements the test SIGKILLs it (`Child::kill`), reads what the pipe still holds, and
//! reopens the directory: the file passes redb's integrity check, every acknowledged write is
//! there with its revision and value, the revision counter is at least the highest acknowledged
//! one, and the watch history replays them. The next round writes into the same, crashed,
//! directory, so recovery is exercised again and earlier rounds' writes must still be there.
//!
//! No sleeps and no timing: the test waits on the child's output only.
#![cfg(feature = "redb")]

use state_store_interface::{EventFilter, Kind, Op, Precondition, RedbStore, Revision, StateStore};
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const WRITER: &str = env!("CARGO_BIN_EXE_redb-crash-writer");

/// Kills the writer if the test fails before it does.
struct Writer(Child);

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Everything the writers acknowledged, over all rounds.
#[derive(Default)]
struct Acked {
    /// Key → (revision, value) of each acknowledged create.
    puts: BTreeMap<String, (Revision, String)>,
    /// Counter key → (revision, value) of its highest acknowledged update.
    counters: BTreeMap<String, (Revision, u64)>,
    events: HashSet<String>,
    max_revision: Revision,
}

impl Acked {
    fn record(&mut self, line: &str) {
        let fields: Vec<&str> = line.split(' ').collect();
        match fields.as_slice() {
            ["put", revision, key, value] => {
                let revision: Revision = revision.parse().expect("a revision");
                self.max_revision = self.max_revision.max(revision);
                let previous = self
                    .puts
                    .insert(key.to_string(), (revision, value.to_string()));
                assert!(previous.is_none(), "{key} acknowledged twice");
            }
            ["counter", revision, key, n] => {
                let revision: Revision = revision.parse().expect("a revision");
                let n: u64 = n.parse().expect("a count");
                let slot = self.counters.entry(key.to_string()).or_insert((0, 0));
                if revision > slot.0 {
                    *slot = (revision, n);
                }
            }
            ["event", message] => {
                self.events.insert(message.to_string());
            }
            _ => panic!("unexpected line from the writer: {line:?}"),
        }
    }
}

/// Runs the writer on `dir` until it acknowledged `puts_before_kill` creates, SIGKILLs it, and
/// records every acknowledgement it printed before dying.
fn crash_round(dir: &Path, tag: &str, puts_before_kill: usize, acked: &mut Acked) -> usize {
    let mut writer = Writer(
        Command::new(WRITER)
            .arg(dir)
            .arg(tag)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the writer starts"),
    );
    let stdout = writer.0.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout);
    let mut line = String::new();
    let mut puts = 0;
    let mut killed = false;
    loop {
        line.clear();
        // Returns 0 at end of file: once the killed writer's pipe is drained (or if it died).
        if lines.read_line(&mut line).expect("reading the writer") == 0 {
            break;
        }
        // A line cut by the kill is not an acknowledgement we can rely on (a single `write` of
        // a few dozen bytes to a pipe is atomic, so this should not happen; be safe anyway).
        let Some(complete) = line.strip_suffix('\n') else {
            break;
        };
        acked.record(complete);
        puts += usize::from(complete.starts_with("put "));
        if !killed && puts >= puts_before_kill {
            writer.0.kill().expect("SIGKILL the writer");
            killed = true;
        }
    }
    let status = writer.0.wait().expect("the writer is reaped");
    assert!(
        killed,
        "the writer stopped by itself after {puts} writes: {status:?}"
    );
    assert_eq!(status.signal(), Some(9), "killed by SIGKILL: {status:?}");
    puts
}

/// Reopens `dir` after a crash and checks that everything acknowledged is there.
async fn verify(dir: &Path, acked: &Acked) {
    // The file is sound: redb recovers on open, then a full check (checksums of every page,
    // allocator state) passes without needing a repair.
    {
        let mut db = redb::Database::open(dir.join("state.redb")).expect("the file opens");
        assert!(
            db.check_integrity().expect("the integrity check runs"),
            "the file needed a repair beyond crash recovery"
        );
    }
    let store = RedbStore::open(dir).expect("the store reopens after kill -9");
    let revision = store.revision().await.unwrap();
    assert!(
        revision >= acked.max_revision,
        "revision {revision} is behind the acknowledged {}",
        acked.max_revision
    );
    for (key, (acked_revision, value)) in &acked.puts {
        let entry = store
            .get(Kind::Instance, key)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged {key} at {acked_revision} is lost"));
        assert_eq!(entry.value, value.as_bytes(), "{key}");
        assert_eq!(
            (entry.create_revision, entry.mod_revision),
            (*acked_revision, *acked_revision),
            "{key}"
        );
    }
    for (key, (acked_revision, n)) in &acked.counters {
        let entry = store.get(Kind::Node, key).await.unwrap().expect("counter");
        let stored: u64 = String::from_utf8(entry.value).unwrap().parse().unwrap();
        // Later writes may have become durable without being acknowledged; never fewer.
        assert!(stored >= *n, "{key}: {stored} < acknowledged {n}");
        assert!(entry.mod_revision >= *acked_revision, "{key}");
    }
    let events = store.list_events(&EventFilter::default()).await.unwrap();
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    let logged: HashSet<&str> = events.iter().map(|e| e.message.as_str()).collect();
    for message in &acked.events {
        assert!(logged.contains(message.as_str()), "event {message} is lost");
    }

    // The watch history holds the acknowledged creates at their revisions, in order. A
    // sentinel written now marks where the replay ends.
    let sentinel = format!("sentinel-{revision}");
    let sentinel_revision = store
        .commit(vec![Op::Put {
            kind: Kind::Workload,
            key: sentinel.clone(),
            value: b"end".to_vec(),
            precondition: Precondition::Absent,
        }])
        .await
        .unwrap();
    assert_eq!(sentinel_revision, revision + 1, "the counter continues");
    let mut watch = store.watch(0).await.expect("the history is all kept");
    let mut replayed = 0;
    let mut last = 0;
    loop {
        let change = tokio::time::timeout(Duration::from_secs(30), watch.next())
            .await
            .expect("the replay answers")
            .expect("the watch goes on")
            .expect("the replay decodes");
        assert!(change.revision >= last, "replay in revision order");
        last = change.revision;
        if change.key == sentinel {
            break;
        }
        if let Some((acked_revision, value)) = acked.puts.get(&change.key) {
            assert_eq!(change.revision, *acked_revision, "{}", change.key);
            assert_eq!(change.value.as_deref(), Some(value.as_bytes()));
            replayed += 1;
        }
    }
    assert_eq!(
        replayed,
        acked.puts.len(),
        "every acknowledged create replays"
    );
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut acked = Acked::default();
    for (round, puts_before_kill) in [200, 500, 800, 300, 1000].into_iter().enumerate() {
        let puts = crash_round(
            dir.path(),
            &format!("r{round}"),
            puts_before_kill,
            &mut acked,
        );
        eprintln!(
            "round {round}: killed after {puts} acknowledged creates; {} in all, highest revision {}",
            acked.puts.len(),
            acked.max_revision
        );
        runtime.block_on(verify(dir.path(), &acked));
    }
}
