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

use crate::{LogChunk, LogRequest};
use orchestrator_shared_types::ContainerId;
use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// How often the rotator checks the sizes of the logs.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long the logs of a container that no longer exists are kept (for `logs` of a crashed or
/// replaced container) before the rotator deletes them.
const KEEP_REMOVED: Duration = Duration::from_secs(3600);
/// Checks between two sweeps for logs of containers that no longer exist.
const SWEEP_EVERY: u32 = 60;

/// The logs of one runtime's containers.
pub(super) struct Logs {
    dir: PathBuf,
    max_bytes: u64,
    /// Held by a rotation and by reads, so that a read never sees a half-rotated pair.
    lock: Mutex<()>,
}

impl Logs {
    /// Logs in `dir`, rotated past `max_bytes` (at least 1).
    pub(super) fn new(dir: PathBuf, max_bytes: u64) -> Self {
        Self {
            dir,
            max_bytes: max_bytes.max(1),
            lock: Mutex::new(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The live log of `id`, which its container appends to.
    pub(super) fn live(&self, id: &ContainerId) -> PathBuf {
        self.dir.join(format!("{id}.log"))
    }

    fn rotated(&self, id: &ContainerId) -> PathBuf {
        self.dir.join(format!("{id}.log.1"))
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
        OpenOptions::new().write(true).open(&live)?.set_len(0)?;
        Ok(true)
    }

    /// Starts a thread that rotates, every second, the logs of the containers `known` names,
    /// until `known` returns `None` (its runtime is gone).
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
                    logs.rotate_all(ids);
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
            let Some(id) = name
                .strip_suffix(".log")
                .or_else(|| name.strip_suffix(".log.1"))
            else {
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

    /// Rotates the logs of `ids` that are over the cap.
    fn rotate_all(&self, ids: Vec<ContainerId>) {
        for id in ids {
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
                // The last `limit_bytes` of `.log.1` + `.log`, then the tail of that.
                let old_len = len_of(old.as_ref())?;
                let total = old_len + live_len;
                let want = request
                    .limit_bytes
                    .map_or(total, |l| total.min(u64::try_from(l).unwrap_or(u64::MAX)));
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
    use std::io::Write;

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
        for name in ["gone.log", "gone.log.1", "kept.log", "other.txt"] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        logs.sweep(&[ContainerId::from("kept")], Duration::from_secs(3600));
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            4,
            "nothing idle yet"
        );
        logs.sweep(&[ContainerId::from("kept")], Duration::ZERO);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["kept.log", "other.txt"]);
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
