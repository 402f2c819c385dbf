//! Applying layer tars to a root filesystem: whiteouts, opaque directories, links, devices,
//! permissions and ownership, refusing entries that would land outside the root.
//!
//! Paths are resolved inside the root the way containerd does: a symbolic link met on the way
//! is followed with `/` meaning the root (so an image's `bin -> /usr/bin` works), and a link
//! whose `..` climbs above the root is an error rather than an escape.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Prefix of whiteout entries.
const WHITEOUT: &str = ".wh.";
/// Name of the opaque-directory marker.
const OPAQUE: &str = ".wh..wh..opq";
/// Symbolic links followed while resolving one path (Linux's `MAXSYMLINKS`).
const MAX_HOPS: usize = 40;

/// Why a layer could not be applied.
#[derive(Debug)]
pub(super) struct UnpackError {
    /// Shown to users.
    pub message: String,
    /// Whether retrying may help (a full disk may; a malformed layer does not).
    pub transient: bool,
}

impl UnpackError {
    fn invalid(message: String) -> Self {
        Self {
            message,
            transient: false,
        }
    }

    fn io(context: impl std::fmt::Display, e: io::Error) -> Self {
        let transient = !matches!(
            e.kind(),
            io::ErrorKind::InvalidData
                | io::ErrorKind::InvalidInput
                | io::ErrorKind::UnexpectedEof
                | io::ErrorKind::NotADirectory
                | io::ErrorKind::AlreadyExists
        );
        Self {
            message: format!("{context}: {e}"),
            transient,
        }
    }
}

/// Applies the layer read from `blob` (gzip or plain tar, told by its first bytes) on `root`.
pub(super) fn apply_layer_blob(root: &Path, blob: &Path) -> Result<(), UnpackError> {
    let file = fs::File::open(blob).map_err(|e| UnpackError::io("opening the layer blob", e))?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let magic = reader
        .fill_buf()
        .map_err(|e| UnpackError::io("reading the layer blob", e))?;
    if magic.starts_with(&[0x1f, 0x8b]) {
        apply_layer(root, flate2::read::MultiGzDecoder::new(reader))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Err(UnpackError::invalid(
            "the layer is zstd-compressed, which is not supported (only gzip and plain tar are)"
                .into(),
        ))
    } else {
        apply_layer(root, reader)
    }
}

/// Applies one layer tar on `root`.
pub(super) fn apply_layer(root: &Path, reader: impl Read) -> Result<(), UnpackError> {
    let mut archive = tar::Archive::new(reader);
    // Physical paths (relative to the root) this layer wrote, with their ancestors: an opaque
    // marker hides only what lower layers put in its directory.
    let mut written: HashSet<PathBuf> = HashSet::new();
    let mut opaque_dirs: Vec<PathBuf> = Vec::new();
    let mut dir_times: Vec<(PathBuf, filetime::FileTime)> = Vec::new();
    let entries = archive
        .entries()
        .map_err(|e| UnpackError::io("reading the layer", e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| UnpackError::io("reading the layer", e))?;
        let raw = entry
            .path()
            .map_err(|e| UnpackError::io("reading an entry's path", e))?
            .into_owned();
        let rel = sanitize(&raw)?;
        let kind = entry.header().entry_type();
        let Some(name) = rel.file_name().map(OsString::from) else {
            // The root itself: only its metadata.
            if kind.is_dir() {
                apply_metadata(root, entry.header(), &raw)?;
            }
            continue;
        };
        let parent_rel = rel.parent().unwrap_or(Path::new(""));
        if let Some(hidden) = name.to_str().and_then(|n| n.strip_prefix(WHITEOUT)) {
            let Some(parent) = resolve_dir(root, parent_rel, false, &raw)? else {
                continue;
            };
            if name == OPAQUE {
                mark_written(&mut written, root, &parent);
                opaque_dirs.push(parent);
            } else if !hidden.is_empty() {
                let target = parent.join(hidden);
                if !written.contains(target.strip_prefix(root).unwrap_or(&target)) {
                    remove_existing(&target)
                        .map_err(|e| UnpackError::io(format!("whiteout {raw:?}"), e))?;
                }
            }
            continue;
        }
        let Some(parent) = resolve_dir(root, parent_rel, true, &raw)? else {
            continue;
        };
        let dest = parent.join(&name);
        let header = entry.header().clone();
        let ctx = |what: &str| format!("{what} {raw:?}");
        match kind {
            tar::EntryType::Directory => {
                match fs::symlink_metadata(&dest) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        remove_existing(&dest).map_err(|e| UnpackError::io(ctx("replacing"), e))?;
                        fs::create_dir(&dest)
                            .map_err(|e| UnpackError::io(ctx("creating directory"), e))?;
                    }
                    Err(_) => fs::create_dir(&dest)
                        .map_err(|e| UnpackError::io(ctx("creating directory"), e))?,
                }
                apply_metadata(&dest, &header, &raw)?;
                if let Ok(mtime) = header.mtime() {
                    dir_times.push((
                        dest.clone(),
                        filetime::FileTime::from_unix_time(mtime as i64, 0),
                    ));
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                remove_existing(&dest).map_err(|e| UnpackError::io(ctx("replacing"), e))?;
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&dest)
                    .map_err(|e| UnpackError::io(ctx("creating file"), e))?;
                io::copy(&mut entry, &mut file)
                    .map_err(|e| UnpackError::io(ctx("writing file"), e))?;
                drop(file);
                apply_metadata(&dest, &header, &raw)?;
                set_mtime(&dest, &header);
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| UnpackError::io(ctx("reading the target of"), e))?
                    .ok_or_else(|| {
                        UnpackError::invalid(format!("symbolic link {raw:?} has no target"))
                    })?
                    .into_owned();
                remove_existing(&dest).map_err(|e| UnpackError::io(ctx("replacing"), e))?;
                std::os::unix::fs::symlink(&target, &dest)
                    .map_err(|e| UnpackError::io(ctx("creating symbolic link"), e))?;
                apply_metadata(&dest, &header, &raw)?;
                set_mtime(&dest, &header);
            }
            tar::EntryType::Link => {
                let target_raw = entry
                    .link_name()
                    .map_err(|e| UnpackError::io(ctx("reading the target of"), e))?
                    .ok_or_else(|| {
                        UnpackError::invalid(format!("hard link {raw:?} has no target"))
                    })?
                    .into_owned();
                let target_rel = sanitize(&target_raw).map_err(|e| {
                    UnpackError::invalid(format!("hard link {raw:?}: its target: {}", e.message))
                })?;
                let target = match (target_rel.file_name(), target_rel.parent()) {
                    (Some(file), Some(dir)) => {
                        resolve_dir(root, dir, false, &target_raw)?.map(|d| d.join(file))
                    }
                    _ => None,
                };
                let target = target
                    .filter(|t| fs::symlink_metadata(t).is_ok_and(|m| !m.is_dir()))
                    .ok_or_else(|| {
                        UnpackError::invalid(format!(
                            "hard link {raw:?} points to {target_raw:?}, which is not a file of the image"
                        ))
                    })?;
                if target != dest {
                    remove_existing(&dest).map_err(|e| UnpackError::io(ctx("replacing"), e))?;
                    fs::hard_link(&target, &dest)
                        .map_err(|e| UnpackError::io(ctx("creating hard link"), e))?;
                }
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                remove_existing(&dest).map_err(|e| UnpackError::io(ctx("replacing"), e))?;
                if let Err(e) = make_node(&dest, &header) {
                    // Unprivileged or in a user namespace: the runtime provides /dev anyway.
                    tracing::debug!(entry = ?raw, error = %e, "skipping a device node");
                    continue;
                }
                apply_metadata(&dest, &header, &raw)?;
            }
            other => {
                tracing::debug!(entry = ?raw, kind = ?other, "skipping a tar entry of this kind");
                continue;
            }
        }
        mark_written(&mut written, root, &dest);
    }
    for dir in &opaque_dirs {
        prune_lower(root, dir, &written)
            .map_err(|e| UnpackError::io(format!("clearing the opaque directory {dir:?}"), e))?;
    }
    // Directory times last: creating their entries changed them.
    for (dir, mtime) in dir_times.iter().rev() {
        let _ = filetime::set_file_mtime(dir, *mtime);
    }
    Ok(())
}

/// The entry's path as normal components; absolute paths and `..` are errors, except `/`
/// alone, the root itself (umoci writes it).
fn sanitize(raw: &Path) -> Result<PathBuf, UnpackError> {
    let mut rel = PathBuf::new();
    if raw == Path::new("/") {
        return Ok(rel);
    }
    for component in raw.components() {
        match component {
            Component::Normal(c) => rel.push(c),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(UnpackError::invalid(format!(
                    "layer entry {raw:?} is an absolute path; entries must be relative to the image root"
                )))
            }
            Component::ParentDir => {
                return Err(UnpackError::invalid(format!(
                    "layer entry {raw:?} contains \"..\" and could leave the image root"
                )))
            }
        }
    }
    Ok(rel)
}

/// The physical directory `rel` names inside `root`, following symbolic links inside the root
/// and creating missing directories when `create` (else `None` when one is missing).
fn resolve_dir(
    root: &Path,
    rel: &Path,
    create: bool,
    entry: &Path,
) -> Result<Option<PathBuf>, UnpackError> {
    let mut pending: Vec<OsString> = rel
        .components()
        .rev()
        .map(|c| c.as_os_str().to_os_string())
        .collect();
    let mut resolved: Vec<OsString> = Vec::new();
    let mut hops = 0;
    let here = |resolved: &[OsString]| {
        let mut p = root.to_path_buf();
        p.extend(resolved);
        p
    };
    while let Some(component) = pending.pop() {
        if component == ".." {
            if resolved.pop().is_none() {
                return Err(UnpackError::invalid(format!(
                    "layer entry {entry:?} leads outside the image root through a symbolic link"
                )));
            }
            continue;
        }
        if component == "." || component.is_empty() || component == "/" {
            continue;
        }
        let mut path = here(&resolved);
        path.push(&component);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(UnpackError::invalid(format!(
                        "layer entry {entry:?}: too many levels of symbolic links"
                    )));
                }
                let target = fs::read_link(&path)
                    .map_err(|e| UnpackError::io(format!("reading the link {path:?}"), e))?;
                if target.is_absolute() {
                    resolved.clear();
                }
                let link_rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
                // Check the climb now, to name the link in the error.
                let mut depth = resolved.len() as isize;
                for c in target.components() {
                    match c {
                        Component::ParentDir => depth -= 1,
                        Component::Normal(_) => depth += 1,
                        _ => {}
                    }
                    if depth < 0 {
                        return Err(UnpackError::invalid(format!(
                            "layer entry {entry:?} would be written outside the image root \
                             through the symbolic link {link_rel:?} -> {target:?}"
                        )));
                    }
                }
                pending.extend(
                    target
                        .components()
                        .rev()
                        .map(|c| c.as_os_str().to_os_string()),
                );
            }
            Ok(m) if m.is_dir() => resolved.push(component),
            Ok(_) => {
                return Err(UnpackError::invalid(format!(
                    "layer entry {entry:?}: {:?} is not a directory",
                    path.strip_prefix(root).unwrap_or(&path)
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !create {
                    return Ok(None);
                }
                fs::create_dir(&path)
                    .map_err(|e| UnpackError::io(format!("creating directory {path:?}"), e))?;
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                    .map_err(|e| UnpackError::io(format!("creating directory {path:?}"), e))?;
                resolved.push(component);
            }
            Err(e) => return Err(UnpackError::io(format!("inspecting {path:?}"), e)),
        }
    }
    Ok(Some(here(&resolved)))
}

/// Records `path` and its ancestors (relative to `root`) as written by this layer.
fn mark_written(written: &mut HashSet<PathBuf>, root: &Path, path: &Path) {
    let mut rel = path.strip_prefix(root).unwrap_or(path);
    loop {
        if !written.insert(rel.to_path_buf()) {
            return;
        }
        match rel.parent() {
            Some(p) if !p.as_os_str().is_empty() => rel = p,
            _ => return,
        }
    }
}

/// Removes what lower layers left in `dir`, keeping what this layer wrote.
fn prune_lower(root: &Path, dir: &Path, written: &HashSet<PathBuf>) -> io::Result<()> {
    for child in fs::read_dir(dir)? {
        let path = child?.path();
        let rel = path.strip_prefix(root).unwrap_or(&path);
        if !written.contains(rel) {
            remove_existing(&path)?;
        } else if fs::symlink_metadata(&path)?.is_dir() {
            prune_lower(root, &path, written)?;
        }
    }
    Ok(())
}

/// Removes whatever is at `path` (a directory with its content; a link, not its target).
fn remove_existing(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Owner, then mode (chown clears set-id bits); the mode of a symbolic link is left alone.
fn apply_metadata(path: &Path, header: &tar::Header, raw: &Path) -> Result<(), UnpackError> {
    let uid = header.uid().ok().and_then(|u| u32::try_from(u).ok());
    let gid = header.gid().ok().and_then(|g| u32::try_from(g).ok());
    if let Err(e) = std::os::unix::fs::lchown(path, uid, gid) {
        if e.kind() != io::ErrorKind::PermissionDenied {
            return Err(UnpackError::io(format!("setting the owner of {raw:?}"), e));
        }
        // Not root: the files stay ours.
        tracing::debug!(entry = ?raw, "cannot change the owner (not root)");
    }
    let is_symlink = header.entry_type() == tar::EntryType::Symlink;
    if !is_symlink {
        let mode = header
            .mode()
            .map_err(|e| UnpackError::io(format!("reading the mode of {raw:?}"), e))?;
        fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o7777))
            .map_err(|e| UnpackError::io(format!("setting the mode of {raw:?}"), e))?;
    }
    Ok(())
}

fn set_mtime(path: &Path, header: &tar::Header) {
    if let Ok(mtime) = header.mtime() {
        let t = filetime::FileTime::from_unix_time(mtime as i64, 0);
        let _ = filetime::set_symlink_file_times(path, t, t);
    }
}

fn make_node(path: &Path, header: &tar::Header) -> io::Result<()> {
    use rustix::fs::{FileType, Mode, CWD};
    let file_type = match header.entry_type() {
        tar::EntryType::Char => FileType::CharacterDevice,
        tar::EntryType::Block => FileType::BlockDevice,
        _ => FileType::Fifo,
    };
    let major = header.device_major()?.unwrap_or(0);
    let minor = header.device_minor()?.unwrap_or(0);
    let mode = Mode::from_bits_truncate(header.mode()? & 0o7777);
    rustix::fs::mknodat(
        CWD,
        path,
        file_type,
        mode,
        rustix::fs::makedev(major, minor),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// Builds a tar in memory.
    struct Layer(tar::Builder<Vec<u8>>);

    impl Layer {
        fn new() -> Self {
            Self(tar::Builder::new(Vec::new()))
        }

        fn header(kind: tar::EntryType, mode: u32) -> tar::Header {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_700_000_000);
            h.set_size(0);
            h
        }

        fn dir(mut self, path: &str) -> Self {
            let mut h = Self::header(tar::EntryType::Directory, 0o755);
            self.0.append_data(&mut h, path, io::empty()).unwrap();
            self
        }

        fn file(self, path: &str, data: &str) -> Self {
            self.file_owned(path, data, 0o644, 0, 0)
        }

        fn file_owned(mut self, path: &str, data: &str, mode: u32, uid: u64, gid: u64) -> Self {
            let mut h = Self::header(tar::EntryType::Regular, mode);
            h.set_uid(uid);
            h.set_gid(gid);
            h.set_size(data.len() as u64);
            self.0.append_data(&mut h, path, data.as_bytes()).unwrap();
            self
        }

        fn link(mut self, kind: tar::EntryType, path: &str, target: &str) -> Self {
            let mut h = Self::header(kind, 0o777);
            self.0.append_link(&mut h, path, target).unwrap();
            self
        }

        /// An entry whose name is written raw (the builder refuses `..` and absolute paths).
        fn raw(mut self, name: &str, data: &str) -> Self {
            let mut h = Self::header(tar::EntryType::Regular, 0o644);
            h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_size(data.len() as u64);
            h.set_cksum();
            self.0.append(&h, data.as_bytes()).unwrap();
            self
        }

        /// `/`, as umoci writes the root directory.
        fn slash(mut self) -> Self {
            let mut h = Self::header(tar::EntryType::Directory, 0o751);
            h.as_gnu_mut().unwrap().name[0] = b'/';
            h.set_cksum();
            self.0.append(&h, io::empty()).unwrap();
            self
        }

        fn apply(self, root: &Path) -> Result<(), UnpackError> {
            let bytes = self.0.into_inner().unwrap();
            apply_layer(root, bytes.as_slice())
        }
    }

    fn read(root: &Path, p: &str) -> String {
        fs::read_to_string(root.join(p)).unwrap()
    }

    #[test]
    fn whiteouts_and_opaque_directories_hide_lower_content() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        Layer::new()
            .slash()
            .dir("a")
            .file("a/keep", "k")
            .file("a/gone", "g")
            .dir("a/sub")
            .file("a/sub/gone", "g")
            .dir("o")
            .file("o/old", "old")
            .dir("o/d")
            .file("o/d/old", "old")
            .apply(root)
            .unwrap();
        Layer::new()
            .file("a/.wh.gone", "")
            .file("a/.wh.sub", "")
            // The marker after this layer's own entries: they must survive it.
            .dir("o")
            .file("o/new", "new")
            .file("o/d/new", "new")
            .file("o/.wh..wh..opq", "")
            .file("a/.wh.never-existed", "")
            .apply(root)
            .unwrap();
        assert_eq!(fs::metadata(root).unwrap().mode() & 0o777, 0o751);
        assert_eq!(read(root, "a/keep"), "k");
        assert!(!root.join("a/gone").exists());
        assert!(!root.join("a/sub").exists());
        assert!(!root.join("o/old").exists());
        assert!(!root.join("o/d/old").exists());
        assert_eq!(read(root, "o/new"), "new");
        assert_eq!(read(root, "o/d/new"), "new");
        assert!(!root.join("o/.wh..wh..opq").exists());
        assert!(!root.join("a/.wh.never-existed").exists());
    }

    #[test]
    fn links_permissions_ownership_and_replacement() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        Layer::new()
            .dir("bin")
            .file_owned("bin/tool", "#!", 0o4755, 0, 0)
            .link(tar::EntryType::Symlink, "bin/sh", "tool")
            .link(tar::EntryType::Link, "bin/hard", "bin/tool")
            .file_owned("secret", "s", 0o600, 1000, 1001)
            .dir("usr/bin")
            .link(tar::EntryType::Symlink, "sbin", "/usr/bin")
            .apply(root)
            .unwrap();
        let tool = fs::metadata(root.join("bin/tool")).unwrap();
        assert_eq!(tool.mode() & 0o7777, 0o4755);
        assert_eq!(tool.nlink(), 2);
        assert_eq!(
            fs::metadata(root.join("bin/hard")).unwrap().ino(),
            tool.ino()
        );
        assert_eq!(
            fs::read_link(root.join("bin/sh")).unwrap(),
            Path::new("tool")
        );
        let secret = fs::metadata(root.join("secret")).unwrap();
        assert_eq!(secret.mode() & 0o777, 0o600);
        if rustix::process::geteuid().is_root() {
            assert_eq!((secret.uid(), secret.gid()), (1000, 1001));
        }
        // Writing through an absolute link stays inside the root.
        Layer::new()
            .file("sbin/init", "i")
            // Replacing a hard-linked file leaves the other name alone.
            .file("bin/hard", "new")
            // A file replaces a link, never writing through it.
            .file("bin/sh", "not a link")
            .apply(root)
            .unwrap();
        assert_eq!(read(root, "usr/bin/init"), "i");
        assert_eq!(read(root, "bin/tool"), "#!");
        assert_eq!(read(root, "bin/hard"), "new");
        assert!(!fs::symlink_metadata(root.join("bin/sh"))
            .unwrap()
            .is_symlink());
    }

    #[test]
    fn entries_escaping_the_root_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        let cases: Vec<(Layer, &str)> = vec![
            (Layer::new().raw("../evil", "x"), "contains \"..\""),
            (Layer::new().raw("a/../../evil", "x"), "contains \"..\""),
            (Layer::new().raw("/etc/evil", "x"), "absolute path"),
            (
                Layer::new()
                    .link(tar::EntryType::Symlink, "up", "../../..")
                    .file("up/evil", "x"),
                "outside the image root through the symbolic link \"up\"",
            ),
            (
                Layer::new()
                    .dir("d")
                    .link(tar::EntryType::Symlink, "d/l", "../..")
                    .file("d/l/evil", "x"),
                "through the symbolic link \"d/l\"",
            ),
            (
                Layer::new()
                    .file("f", "x")
                    .link(tar::EntryType::Link, "h", "../outside"),
                "hard link \"h\"",
            ),
            (
                Layer::new().link(tar::EntryType::Link, "h", "missing"),
                "not a file of the image",
            ),
        ];
        for (layer, needle) in cases {
            let t = tempfile::tempdir().unwrap();
            let root = t.path().join("root");
            fs::create_dir(&root).unwrap();
            let e = layer.apply(&root).unwrap_err();
            assert!(!e.transient, "{}", e.message);
            assert!(e.message.contains(needle), "{needle}: {}", e.message);
            assert!(!t.path().join("evil").exists());
        }
        // An absolute link to a host directory: writing through it stays inside the root.
        let t = tempfile::tempdir().unwrap();
        let target = outside.path().to_str().unwrap().to_string();
        Layer::new()
            .link(tar::EntryType::Symlink, "host", &target)
            .file("host/evil", "x")
            .apply(t.path())
            .unwrap();
        assert!(!outside.path().join("evil").exists());
        assert!(t
            .path()
            .join(target.trim_start_matches('/'))
            .join("evil")
            .exists());
    }

    #[test]
    fn gzip_layers_are_recognized() {
        use std::io::Write;
        let t = tempfile::tempdir().unwrap();
        let tar = Layer::new().file("hello", "world").0.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let blob = t.path().join("blob");
        fs::write(&blob, gz.finish().unwrap()).unwrap();
        let root = t.path().join("root");
        fs::create_dir(&root).unwrap();
        apply_layer_blob(&root, &blob).unwrap();
        assert_eq!(read(&root, "hello"), "world");
        fs::write(&blob, [0x28, 0xb5, 0x2f, 0xfd, 0, 0]).unwrap();
        assert!(apply_layer_blob(&root, &blob)
            .unwrap_err()
            .message
            .contains("zstd"));
    }
}
