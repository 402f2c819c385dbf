//! Container logs on disk, size-capped by rotation and read as one stream.
//!
//! A container writes its stdout and stderr straight to `logs/{id}.log`, through a descriptor
//! opened with `O_APPEND` that it inherits, so its output survives a daemon restart and never
//! passes through the daemon. When that file grows past the cap, the rotator copies it to
//! `{id}.log.1` (replacing the previous copy) and truncates it (copytruncate): with `O_APPEND`
//! the container's next write lands at the new end, so nothing needs to reopen anything. Output
//! written between the copy and the truncation is lost (a few bytes at most: both take place
//! within one check). At most twice the cap is kept per container.
//!
//! Reads see `{id}.log.1` followed by `{id}.log` as one stream. A cursor is an offset in the live
//! `{id}.log`: after a rotation truncated it below the cursor, reading restarts at its start.
//!
//! # Dating output (`since`)
//! Lines carry no time: the container writes them straight to the file. So each check also
//! dates the log: when `{id}.log` grew since the last check, it appends one entry to
//! `{id}.log.idx`: (Unix time in ms, the log's size), two little-endian `u64`s, meaning
//! "everything before this offset was written at or before this time". A rotation moves the
//! index to `{id}.log.1.idx` with the log and starts a fresh one; sweeps delete indexes with
//! their logs. Reading since `T` starts at the offset of the entry before the first entry dated
//! at or after `T`: nothing written at or after `T` is left out, and up to about one check
//! (a second) of older output may be included. Before every entry: everything; after the last
//! one: what follows it. Output written while the daemon was down is dated when it next checks.

use crate::{LogChunk, LogRequest};
use orchestrator_shared_types::ContainerId;
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

/// How often the rotator checks the sizes of the logs.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long the logs of a container that no longer exists are kept (for `logs` of a crashed or
/// replaced container) before the rotator deletes them.
const KEEP_REMOVED: Duration = Duration::from_secs(3600);
/// Checks between two sweeps for logs of containers that no longer exist.
const SWEEP_EVERY: u32 = 60;
/// Bytes of one index entry: the time in ms since the Unix epoch, then the log's size, both
/// little-endian `u64`.
const ENTRY_BYTES: usize = 16;
/// The suffixes of the files of a container's log, after its id.
const SUFFIXES: [&str; 4] = [".log", ".log.1", ".log.idx", ".log.1.idx"];

/// The logs of one runtime's containers.
pub(super) struct Logs {
    dir: PathBuf,
    max_bytes: u64,
    /// Held by a rotation and by reads, so that a read never sees a half-rotated pair.
    lock: Mutex<()>,
    /// The size of each live log at its last index entry (0 after a rotation).
    indexed: Mutex<HashMap<ContainerId, u64>>,
}

impl Logs {
    /// Logs in `dir`, rotated past `max_bytes` (at least 1).
    pub(super) fn new(dir: PathBuf, max_bytes: u64) -> Self {
        Self {
            dir,
            max_bytes: max_bytes.max(1),
            lock: Mutex::new(()),
            indexed: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn indexed(&self) -> MutexGuard<'_, HashMap<ContainerId, u64>> {
        self.indexed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The live log of `id`, which its container appends to.
    pub(super) fn live(&self, id: &ContainerId) -> PathBuf {
        self.dir.join(format!("{id}.log"))
    }

    fn rotated(&self, id: &ContainerId) -> PathBuf {
        self.dir.join(format!("{id}.log.1"))
    }

    fn live_index(&self, id: &ContainerId) -> PathBuf {
        self.dir.join(format!("{id}.log.idx"))
    }

    fn rotated_index(&self, id: &ContainerId) -> PathBuf {
        self.dir.join(format!("{id}.log.1.idx"))
    }

    /// Dates the live log of `id` at `now` if it grew since its last entry (see the module
    /// docs).
    fn index(&self, id: &ContainerId, now: SystemTime) -> io::Result<()> {
        let size = match std::fs::metadata(self.live(id)) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let path = self.live_index(id);
        let mut indexed = self.indexed();
        let last = match indexed.get(id) {
            Some(last) => *last,
            // First seen by this process: where the index (if any) left off.
            None => read_index(&path)?.last().map_or(0, |e| e.1),
        };
        if size < last {
            // Truncated by something else than a rotation: its entries no longer apply.
            let _ = std::fs::remove_file(&path);
        }
        if size != last {
            let mut entry = [0u8; ENTRY_BYTES];
            entry[..8].copy_from_slice(&unix_ms(now).to_le_bytes());
            entry[8..].copy_from_slice(&size.to_le_bytes());
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?
                .write_all(&entry)?;
        }
        indexed.insert(id.clone(), size);
        Ok(())
    }

    /// Rotates the log of `id` if it is over the cap; whether it did.
    pub(super) fn rotate_if_needed(&self, id: &ContainerId) -> io::Result<bool> {
        let live = self.live(id);
        match std::fs::metadata(&live) {
            Ok(m) if m.len() > self.max_bytes => {}
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        }
        let _guard = self.lock();
        // Copied aside then renamed, so `.log.1` is always a whole copy.
        let tmp = self.dir.join(format!("{id}.log.1.tmp"));
        std::fs::copy(&live, &tmp)?;
        std::fs::rename(&tmp, self.rotated(id))?;
        // The index goes with its log (or the old one goes, when the log had none).
        match std::fs::rename(self.live_index(id), self.rotated_index(id)) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let _ = std::fs::remove_file(self.rotated_index(id));
            }
            other => other?,
        }
        OpenOptions::new().write(true).open(&live)?.set_len(0)?;
        self.indexed().insert(id.clone(), 0);
        Ok(true)
    }

    /// Starts a thread that dates and rotates, every second, the logs of the containers `known`
    /// names, until `known` returns `None` (its runtime is gone).
    pub(super) fn spawn_rotator(
        self: &Arc<Self>,
        mut known: impl FnMut() -> Option<Vec<ContainerId>> + Send + 'static,
    ) -> io::Result<()> {
        let logs = Arc::clone(self);
        std::thread::Builder::new()
            .name("oci-log-rotation".into())
            .spawn(move || {
                for n in 1.. {
                    std::thread::sleep(CHECK_EVERY);
                    let Some(ids) = known() else { return };
                    if n % SWEEP_EVERY == 0 {
                        logs.sweep(&ids, KEEP_REMOVED);
                    }
                    logs.check_all(ids, SystemTime::now());
                }
            })
            .map(|_| ())
    }

    /// Deletes the logs of containers not in `known` that nothing wrote to for `keep`.
    fn sweep(&self, known: &[ContainerId], keep: Duration) {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = SUFFIXES.iter().find_map(|s| name.strip_suffix(s)) else {
                continue;
            };
            if known.iter().any(|k| k.as_str() == id) {
                continue;
            }
            let idle = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok());
            if idle.is_some_and(|idle| idle > keep) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Dates the logs of `ids` at `now` and rotates those over the cap.
    fn check_all(&self, ids: Vec<ContainerId>, now: SystemTime) {
        let known: HashSet<&ContainerId> = ids.iter().collect();
        self.indexed().retain(|id, _| known.contains(id));
        for id in ids {
            if let Err(e) = self.index(&id, now) {
                tracing::warn!(container = %id, error = %e, "cannot date the log");
            }
            match self.rotate_if_needed(&id) {
                Ok(true) => tracing::debug!(container = %id, "log rotated"),
                Ok(false) => {}
                Err(e) => tracing::warn!(container = %id, error = %e, "cannot rotate the log"),
            }
        }
    }

    /// What `request` selects of the log of `id`; `None` when `id` has no log at all.
    pub(super) fn read(
        &self,
        id: &ContainerId,
        request: &LogRequest,
    ) -> io::Result<Option<LogChunk>> {
        let _guard = self.lock();
        let live = open_if_exists(&self.live(id))?;
        let old = open_if_exists(&self.rotated(id))?;
        if live.is_none() && old.is_none() {
            return Ok(None);
        }
        let live_len = len_of(live.as_ref())?;
        let chunk = match request.from {
            Some(from) => {
                // Past the end: the file was truncated by a rotation since.
                let start = if from <= live_len { from } else { 0 };
                let end = request.limit_bytes.map_or(live_len, |l| {
                    live_len.min(start.saturating_add(u64::try_from(l).unwrap_or(u64::MAX)))
                });
                let data = read_range(live.as_ref(), start, end)?;
                LogRequest {
                    from: Some(start),
                    ..request.clone()
                }
                .select(&data, start)
            }
            None => {
                // What `.log.1` + `.log` hold since `since`, at most its last `limit_bytes`,
                // then the tail of that.
                let old_len = len_of(old.as_ref())?;
                let total = old_len + live_len;
                let start = match request.since {
                    Some(since) => self.start_since(id, since, old_len, live_len)?,
                    None => 0,
                };
                let want = request.limit_bytes.map_or(total - start, |l| {
                    (total - start).min(u64::try_from(l).unwrap_or(u64::MAX))
                });
                let from_live = want.min(live_len);
                let from_old = want - from_live;
                let mut data = read_range(old.as_ref(), old_len - from_old, old_len)?;
                data.extend(read_range(live.as_ref(), live_len - from_live, live_len)?);
                LogChunk {
                    next: live_len,
                    ..request.select(&data, 0)
                }
            }
        };
        Ok(Some(chunk))
    }

    /// Where output written at or after `since` starts in the stream `.log.1` + `.log` (of
    /// `old_len` and `live_len` bytes), by their indexes (see the module docs).
    fn start_since(
        &self,
        id: &ContainerId,
        since: SystemTime,
        old_len: u64,
        live_len: u64,
    ) -> io::Result<u64> {
        let mut entries: Vec<(u64, u64)> = read_index(&self.rotated_index(id))?
            .into_iter()
            .map(|(at, offset)| (at, offset.min(old_len)))
            .collect();
        entries.extend(
            read_index(&self.live_index(id))?
                .into_iter()
                .map(|(at, offset)| (at, old_len + offset.min(live_len))),
        );
        let since = unix_ms(since);
        Ok(match entries.iter().position(|(at, _)| *at >= since) {
            Some(0) => 0,
            Some(i) => entries[i - 1].1,
            None => entries.last().map_or(0, |e| e.1),
        })
    }
}

/// Milliseconds since the Unix epoch (0 before it).
fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The entries (time in ms, offset) of an index; none when it does not exist. A last entry cut
/// short (being written) is left out.
fn read_index(path: &Path) -> io::Result<Vec<(u64, u64)>> {
    let data = match std::fs::read(path) {
        Ok(data) => data,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or_default());
    Ok(data
        .chunks_exact(ENTRY_BYTES)
        .map(|e| (word(&e[..8]), word(&e[8..])))
        .collect())
}

fn open_if_exists(path: &std::path::Path) -> io::Result<Option<File>> {
    match File::open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn len_of(file: Option<&File>) -> io::Result<u64> {
    file.map_or(Ok(0), |f| f.metadata().map(|m| m.len()))
}

/// Bytes `from..to` of `file` (fewer if it is shorter).
fn read_range(file: Option<&File>, from: u64, to: u64) -> io::Result<Vec<u8>> {
    let Some(mut file) = file.filter(|_| to > from) else {
        return Ok(Vec::new());
    };
    file.seek(SeekFrom::Start(from))?;
    let mut data = Vec::with_capacity(usize::try_from(to - from).unwrap_or(0));
    file.take(to - from).read_to_end(&mut data)?;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(chunk: &LogChunk) -> &str {
        std::str::from_utf8(&chunk.data).unwrap()
    }

    /// A small cap: writing past it and rotating keeps the old part in `.log.1`; a tail reads
    /// across both files, a cursor from before the rotation restarts at the new start, and the
    /// writer's `O_APPEND` descriptor keeps writing at the new end.
    #[test]
    fn sweeps_delete_only_idle_logs_of_unknown_containers() {
        let dir = tempfile::tempdir().unwrap();
        let logs = Logs::new(dir.path().to_owned(), 1024);
        for name in [
            "gone.log",
            "gone.log.1",
            "gone.log.idx",
            "gone.log.1.idx",
            "kept.log",
            "kept.log.idx",
            "other.txt",
        ] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        logs.sweep(&[ContainerId::from("kept")], Duration::from_secs(3600));
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            7,
            "nothing idle yet"
        );
        logs.sweep(&[ContainerId::from("kept")], Duration::ZERO);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["kept.log", "kept.log.idx", "other.txt"]);
    }

    /// Each check dates what the log grew by; `since` starts at the entry before the first one
    /// at or after it, across a rotation (the index moves with the log) and a restart.
    #[test]
    fn since_reads_by_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let logs = Logs::new(dir.path().to_owned(), 8);
        let id = ContainerId::from("c1");
        let at = |s: f64| SystemTime::UNIX_EPOCH + Duration::from_secs_f64(1000.0 + s);
        let mut writer = OpenOptions::new()
            .create(true)
            .append(true)
            .open(logs.live(&id))
            .unwrap();
        let since = |t: f64, tail: Option<usize>| {
            let request = LogRequest {
                since: Some(at(t)),
                tail,
                ..LogRequest::default()
            };
            let chunk = logs.read(&id, &request).unwrap().unwrap();
            String::from_utf8(chunk.data).unwrap()
        };
        let check = |t: f64| logs.check_all(vec![id.clone()], at(t));
        let index_len = |path: PathBuf| std::fs::metadata(path).map_or(0, |m| m.len());

        writer.write_all(b"a1\n").unwrap();
        check(1.0);
        check(2.0);
        assert_eq!(index_len(logs.live_index(&id)), 16, "no growth, no entry");
        writer.write_all(b"b2\n").unwrap();
        check(3.0);
        writer.write_all(b"c3\n").unwrap();
        assert_eq!(since(0.0, None), "a1\nb2\nc3\n", "before every entry");
        assert_eq!(since(1.0, None), "a1\nb2\nc3\n", "a1 may be from 1.0");
        assert_eq!(since(2.0, None), "b2\nc3\n");
        assert_eq!(since(2.0, Some(1)), "c3\n");
        assert_eq!(since(4.0, None), "c3\n", "after every entry: what follows");

        check(5.0); // 9 bytes: dated, then rotated.
        assert_eq!(index_len(logs.rotated_index(&id)), 48);
        assert_eq!(index_len(logs.live_index(&id)), 0);
        writer.write_all(b"d6\n").unwrap();
        check(6.0);
        assert_eq!(since(4.0, None), "c3\nd6\n", "across the rotation");
        assert_eq!(since(7.0, None), "");

        // A restarted daemon continues the index: no entry without growth.
        let logs = Logs::new(dir.path().to_owned(), 8);
        logs.check_all(vec![id.clone()], at(7.5));
        assert_eq!(index_len(logs.live_index(&id)), 16);
        writer.write_all(b"e7\n").unwrap();
        let request = LogRequest {
            since: Some(at(7.0)),
            ..LogRequest::default()
        };
        assert_eq!(logs.read(&id, &request).unwrap().unwrap().data, b"e7\n");
        let cursor = LogRequest {
            from: Some(0),
            ..request
        };
        assert_eq!(
            logs.read(&id, &cursor).unwrap().unwrap().data,
            b"d6\ne7\n",
            "a cursor wins over `since`"
        );
    }

    #[test]
    fn rotation_keeps_a_readable_stream() {
        let dir = tempfile::tempdir().unwrap();
        let logs = Logs::new(dir.path().to_owned(), 16);
        let id = ContainerId::from("c1");
        assert!(logs.read(&id, &LogRequest::default()).unwrap().is_none());
        let mut writer = OpenOptions::new()
            .create(true)
            .append(true)
            .open(logs.live(&id))
            .unwrap();
        writer.write_all(b"one\ntwo\nthree\n").unwrap();
        assert!(
            !logs.rotate_if_needed(&id).unwrap(),
            "14 bytes are under the cap"
        );
        let before = logs.read(&id, &LogRequest::default()).unwrap().unwrap();
        assert_eq!((text(&before), before.next), ("one\ntwo\nthree\n", 14));

        writer.write_all(b"four\n").unwrap();
        assert!(logs.rotate_if_needed(&id).unwrap());
        assert_eq!(std::fs::metadata(logs.live(&id)).unwrap().len(), 0);
        writer.write_all(b"five\nsix\n").unwrap();

        let all = logs.read(&id, &LogRequest::default()).unwrap().unwrap();
        assert_eq!(text(&all), "one\ntwo\nthree\nfour\nfive\nsix\n");
        assert_eq!(all.next, 9, "cursors are offsets in the live file");
        let tail = LogRequest {
            tail: Some(3),
            ..LogRequest::default()
        };
        let tail = logs.read(&id, &tail).unwrap().unwrap();
        assert_eq!(
            text(&tail),
            "four\nfive\nsix\n",
            "the tail spans both files"
        );
        let last = LogRequest {
            limit_bytes: Some(11),
            ..LogRequest::default()
        };
        assert_eq!(
            text(&logs.read(&id, &last).unwrap().unwrap()),
            "r\nfive\nsix\n"
        );
        // 14 is past the truncated file's end: from its start.
        let follow = LogRequest {
            from: Some(before.next),
            ..LogRequest::default()
        };
        let follow = logs.read(&id, &follow).unwrap().unwrap();
        assert_eq!((text(&follow), follow.next), ("five\nsix\n", 9));
        let page = LogRequest {
            from: Some(5),
            limit_bytes: Some(2),
            ..LogRequest::default()
        };
        let page = logs.read(&id, &page).unwrap().unwrap();
        assert_eq!((text(&page), page.next), ("si", 7));

        // Rotating again replaces `.log.1`.
        writer.write_all(b"seven-eight-nine\n").unwrap();
        assert!(logs.rotate_if_needed(&id).unwrap());
        let all = logs.read(&id, &LogRequest::default()).unwrap().unwrap();
        assert_eq!((text(&all), all.next), ("five\nsix\nseven-eight-nine\n", 0));
    }
}
