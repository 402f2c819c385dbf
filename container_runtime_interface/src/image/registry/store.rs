//! The on-disk layout of pulled images, shared by every image:
//! * `blobs/sha256/<hex>` — manifests, configs and layers, by digest (written through a temp
//!   file in the same directory, renamed once verified);
//! * `rootfs/<manifest hex>/` — unpacked root filesystems (built under a temp name, renamed
//!   when complete, never modified afterwards);
//! * `refs/<escaped reference>` — the manifest digest each reference last resolved to, so
//!   `IfNotPresent` works across restarts without the network.
//!
//! Temp entries are named `.tmp-<hex>-<pid>-<n>`; those of dead processes are removed on start.
//!
//! [`Store::prune`] removes the blobs and root filesystems no reference needs (a root filesystem
//! is first renamed to a temp name, so a crash mid-removal never leaves a partial one behind).

use super::manifest::{self, Kind};
use super::PruneReport;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Makes temp names unique within the process.
static NEXT_TMP: AtomicU64 = AtomicU64::new(0);

/// `sha256:<hex>` of `bytes`.
pub(super) fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

/// Lowercase hex.
pub(super) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The hex part of a validated `sha256:<hex>` digest.
fn digest_hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// Paths of the store rooted at a directory.
#[derive(Clone, Debug)]
pub(super) struct Store {
    dir: PathBuf,
}

impl Store {
    /// Creates the directories and removes temp files left by dead processes.
    pub fn open(dir: &Path) -> io::Result<Self> {
        let store = Self {
            dir: dir.to_path_buf(),
        };
        for d in [store.blobs_dir(), store.rootfs_dir(), store.refs_dir()] {
            std::fs::create_dir_all(&d)?;
            remove_stale_temps(&d);
        }
        Ok(store)
    }

    fn blobs_dir(&self) -> PathBuf {
        self.dir.join("blobs").join("sha256")
    }

    fn rootfs_dir(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    fn refs_dir(&self) -> PathBuf {
        self.dir.join("refs")
    }

    /// Where the blob `digest` (already validated) lives.
    pub fn blob(&self, digest: &str) -> PathBuf {
        self.blobs_dir().join(digest_hex(digest))
    }

    /// A fresh temp path beside the blob `digest`.
    pub fn blob_temp(&self, digest: &str) -> PathBuf {
        self.blobs_dir().join(temp_name(digest_hex(digest)))
    }

    /// The unpacked root filesystem of the image manifest `digest`.
    pub fn rootfs(&self, digest: &str) -> PathBuf {
        self.rootfs_dir().join(digest_hex(digest))
    }

    /// A fresh temp directory path beside the root filesystem of `digest`.
    pub fn rootfs_temp(&self, digest: &str) -> PathBuf {
        self.rootfs_dir().join(temp_name(digest_hex(digest)))
    }

    /// The manifest digest `reference` last resolved to.
    pub async fn read_ref(&self, reference: &str) -> io::Result<Option<String>> {
        match tokio::fs::read_to_string(self.refs_dir().join(escape(reference))).await {
            Ok(s) => Ok(super::reference::parse_digest(s.trim()).ok()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Remembers that `reference` resolved to `digest` (atomically: temp file, then rename).
    pub async fn write_ref(&self, reference: &str, digest: &str) -> io::Result<()> {
        let name = escape(reference);
        let tmp = self.refs_dir().join(temp_name(&name));
        tokio::fs::write(&tmp, format!("{digest}\n")).await?;
        let renamed = tokio::fs::rename(&tmp, self.refs_dir().join(&name)).await;
        if renamed.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        renamed
    }

    /// Stores `bytes`, whose digest is `digest`, unless present.
    pub async fn write_blob(&self, digest: &str, bytes: &[u8]) -> io::Result<()> {
        let path = self.blob(digest);
        if tokio::fs::try_exists(&path).await? {
            return Ok(());
        }
        let tmp = self.blob_temp(digest);
        tokio::fs::write(&tmp, bytes).await?;
        let renamed = tokio::fs::rename(&tmp, &path).await;
        if renamed.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        renamed
    }
}

impl Store {
    /// Removes every blob and root filesystem not needed by a reference in `refs/` or by one of
    /// the manifest digests `keep`: a needed manifest keeps its blob, its root filesystem, its
    /// config and layer blobs (an index keeps the manifests it lists, and theirs). Temp entries
    /// (pulls in progress) are left alone. Blocking: call it off the async threads, with no
    /// pull running.
    pub fn prune(&self, keep: &[String]) -> io::Result<PruneReport> {
        let mut roots: Vec<String> = keep.to_vec();
        for entry in std::fs::read_dir(self.refs_dir())? {
            let entry = entry?;
            if is_temp(&entry.file_name().to_string_lossy()) {
                continue;
            }
            let text = std::fs::read_to_string(entry.path())?;
            if let Ok(digest) = super::reference::parse_digest(text.trim()) {
                roots.push(digest);
            }
        }
        // Hex digests of the blobs and root filesystems to keep.
        let mut live: HashSet<String> = HashSet::new();
        let mut manifests = roots;
        while let Some(digest) = manifests.pop() {
            if !live.insert(digest_hex(&digest).to_string()) {
                continue;
            }
            let bytes = match std::fs::read(self.blob(&digest)) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            // What cannot be parsed keeps only itself.
            match manifest::parse(&bytes, None) {
                Ok(Kind::Manifest(m)) => {
                    for d in manifest::blobs(&m) {
                        if let Ok(d) = super::reference::parse_digest(d.digest().as_ref()) {
                            live.insert(digest_hex(&d).to_string());
                        }
                    }
                }
                Ok(Kind::Index(index)) => manifests.extend(
                    index
                        .manifests()
                        .iter()
                        .filter_map(|d| super::reference::parse_digest(d.digest().as_ref()).ok()),
                ),
                Err(_) => {}
            }
        }
        let mut report = PruneReport::default();
        for entry in std::fs::read_dir(self.blobs_dir())? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_temp(&name) || live.contains(&name) {
                continue;
            }
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    report.blobs_removed += 1;
                    report.bytes_freed += size;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        for entry in std::fs::read_dir(self.rootfs_dir())? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_temp(&name) || live.contains(&name) {
                continue;
            }
            // Out of sight first: a half-removed root filesystem must never look complete.
            let doomed = self.rootfs_dir().join(temp_name(&name));
            std::fs::rename(entry.path(), &doomed)?;
            let size = tree_size(&doomed, &mut HashSet::new());
            if doomed.is_dir() {
                std::fs::remove_dir_all(&doomed)?;
            } else {
                std::fs::remove_file(&doomed)?;
            }
            report.rootfs_removed += 1;
            report.bytes_freed += size;
        }
        Ok(report)
    }
}

/// Whether `name` is a temp entry (`.tmp-...`).
fn is_temp(name: &str) -> bool {
    name.starts_with(".tmp-")
}

/// Bytes of the regular files under `path` (hard links counted once, symlinks not followed).
fn tree_size(path: &Path, seen: &mut HashSet<(u64, u64)>) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_dir() {
        let Ok(entries) = std::fs::read_dir(path) else {
            return 0;
        };
        return entries.flatten().map(|e| tree_size(&e.path(), seen)).sum();
    }
    if !meta.is_file() || (meta.nlink() > 1 && !seen.insert((meta.dev(), meta.ino()))) {
        return 0;
    }
    meta.len()
}

/// `.tmp-<base>-<pid>-<n>`.
fn temp_name(base: &str) -> String {
    let n = NEXT_TMP.fetch_add(1, Ordering::Relaxed);
    format!(".tmp-{base}-{}-{n}", std::process::id())
}

/// Removes `.tmp-*` entries of `dir` whose process is gone (never this process's own).
fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(".tmp-") else {
            continue;
        };
        let pid = rest.rsplit('-').nth(1).and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|p| {
            p == std::process::id() || Path::new("/proc").join(p.to_string()).exists()
        });
        if !alive {
            let path = entry.path();
            let removed = if path.is_dir() && !path.is_symlink() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            if let Err(e) = removed {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a stale temp entry");
            }
        }
    }
}

/// A file name for `reference`: letters, digits, `.`, `_` and `-` kept, others `%XX`; the
/// digest of the reference when that would be too long for a file name.
fn escape(reference: &str) -> String {
    let mut out = String::with_capacity(reference.len() * 2);
    for b in reference.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.len() > 200 || out.starts_with('.') {
        return format!(
            "sha256-{}",
            digest_hex(&sha256_digest(reference.as_bytes()))
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_and_escaping() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            escape("127.0.0.1:5000/demo/busybox:1"),
            "127.0.0.1%3A5000%2Fdemo%2Fbusybox%3A1"
        );
        assert!(escape(&"a".repeat(300)).starts_with("sha256-"));
    }

    #[tokio::test]
    async fn refs_survive_reopening_and_stale_temps_go() {
        let t = tempfile::tempdir().unwrap();
        let d = sha256_digest(b"x");
        let store = Store::open(t.path()).unwrap();
        assert_eq!(store.read_ref("r.io/a:1").await.unwrap(), None);
        store.write_ref("r.io/a:1", &d).await.unwrap();
        // A temp of a process that no longer exists (pid 0 is never a user process's).
        let stale = t.path().join("blobs/sha256/.tmp-abc-0-1");
        std::fs::write(&stale, b"partial").unwrap();
        let mine = store.blob_temp(&d);
        std::fs::write(&mine, b"in progress").unwrap();
        let store = Store::open(t.path()).unwrap();
        assert_eq!(store.read_ref("r.io/a:1").await.unwrap(), Some(d));
        assert!(!stale.exists());
        assert!(mine.exists());
    }

    /// Stores `bytes` as a blob; its digest.
    async fn put(store: &Store, bytes: &[u8]) -> String {
        let d = sha256_digest(bytes);
        store.write_blob(&d, bytes).await.unwrap();
        d
    }

    /// A manifest of `config` and `layers`, stored, with its root filesystem.
    async fn image(store: &Store, config: &str, layers: &[&str]) -> String {
        let descriptor = |d: &str| serde_json::json!({"mediaType": "x", "digest": d, "size": 1});
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": descriptor(config),
            "layers": layers.iter().map(|l| descriptor(l)).collect::<Vec<_>>(),
        });
        let d = put(store, manifest.to_string().as_bytes()).await;
        std::fs::create_dir_all(store.rootfs(&d).join("etc")).unwrap();
        std::fs::write(store.rootfs(&d).join("etc/file"), b"12345").unwrap();
        d
    }

    #[tokio::test]
    async fn prune_keeps_what_references_need_and_removes_the_rest() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(t.path()).unwrap();
        assert_eq!(store.prune(&[]).unwrap(), PruneReport::default());

        let shared = put(&store, b"shared layer").await;
        let (old_config, old_layer) = (put(&store, b"old config").await, put(&store, b"old").await);
        let old = image(&store, &old_config, &[&shared, &old_layer]).await;
        let (new_config, new_layer) = (put(&store, b"new config").await, put(&store, b"new").await);
        let new = image(&store, &new_config, &[&shared, &new_layer]).await;
        let kept = image(&store, &put(&store, b"kept config").await, &[]).await;
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": kept, "size": 1, "platform": {"os": "linux", "architecture": "amd64"}}],
        });
        let index = put(&store, index.to_string().as_bytes()).await;
        let pulling = store.blob_temp(&sha256_digest(b"in progress"));
        std::fs::write(&pulling, b"partial").unwrap();
        let building = store.rootfs_temp(&sha256_digest(b"building"));
        std::fs::create_dir(&building).unwrap();

        store.write_ref("r.io/app:1", &old).await.unwrap();
        store.write_ref("r.io/app:1", &new).await.unwrap();
        let manifest_size = std::fs::metadata(store.blob(&old)).unwrap().len();
        let report = store.prune(std::slice::from_ref(&index)).unwrap();
        assert_eq!((report.rootfs_removed, report.blobs_removed), (1, 3));
        // The manifest, config and layer blobs, and the 5 bytes of `etc/file`.
        let freed = manifest_size + "old config".len() as u64 + "old".len() as u64 + 5;
        assert_eq!(report.bytes_freed, freed);
        for gone in [&old, &old_config, &old_layer] {
            assert!(!store.blob(gone).exists(), "{gone}");
        }
        assert!(!store.rootfs(&old).exists());
        for live in [&new, &new_config, &new_layer, &shared, &kept, &index] {
            assert!(store.blob(live).exists(), "{live}");
        }
        assert!(store.rootfs(&new).join("etc/file").is_file());
        assert!(store.rootfs(&kept).is_dir());
        assert!(pulling.exists() && building.exists());
        // Nothing is left to remove: the kept-by-caller index is garbage once released.
        assert_eq!(
            store.prune(std::slice::from_ref(&index)).unwrap(),
            PruneReport::default()
        );
        let report = store.prune(&[]).unwrap();
        assert_eq!((report.rootfs_removed, report.blobs_removed), (1, 3));
        assert!(store.rootfs(&new).is_dir() && !store.rootfs(&kept).exists());
    }
}
