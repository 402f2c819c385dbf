//! Applying layer tars to a root filesystem: whiteouts, opaque directories, links, devices,
//! permissions and ownership, confined to the root by the kernel.
//!
//! Every path of a layer is looked up with `openat2(2)` and `RESOLVE_IN_ROOT` on a descriptor
//! of the root filesystem directory: the kernel resolves symbolic links and `..` as if that
//! directory were `/`, so an image's `bin -> /usr/bin` works and nothing, however the layer's
//! links are laid out, resolves outside it. Entries are then created, replaced and removed with
//! the `*at` calls relative to their (confined) parent directory and a single-component name,
//! never through a path string. Without `openat2` (Linux < 5.6) unpacking fails rather than
//! falling back to unconfined lookups.
//!
//! The walk in [`resolve_dir`] follows links one at a time (each lookup confined) so that it
//! can create directories missing behind a link, and refuse, naming the link, an entry that
//! a relative link would lead above the root (the kernel would clamp it to the root, writing
//! somewhere the image did not mean).

use super::super::UnpackError;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timestamps};
use rustix::io::Errno;
use std::cell::Cell;
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Prefix of whiteout entries.
const WHITEOUT: &str = ".wh.";
/// Name of the opaque-directory marker.
const OPAQUE: &str = ".wh..wh..opq";
/// Symbolic links followed while resolving one path (Linux's `MAXSYMLINKS`).
const MAX_HOPS: usize = 40;

/// Applies the layer read from `blob` (gzip, zstd or plain tar, told by its first bytes) on
/// `root`.
pub(super) fn apply_layer_blob(root: &Path, blob: &Path) -> Result<(), UnpackError> {
    let file = fs::File::open(blob).map_err(|e| UnpackError::io("opening the layer blob", e))?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let magic = reader
        .fill_buf()
        .map_err(|e| UnpackError::io("reading the layer blob", e))?;
    if magic.starts_with(&[0x1f, 0x8b]) {
        apply_layer(root, flate2::read::MultiGzDecoder::new(reader))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let zstd = zstd::stream::read::Decoder::with_buffer(reader)
            .map_err(|e| UnpackError::io("starting the zstd decoder", e))?;
        apply_layer(root, zstd)
    } else {
        apply_layer(root, reader)
    }
}

/// The root filesystem being written: a descriptor of its directory, the base of every lookup.
struct Root {
    fd: OwnedFd,
}

impl Root {
    /// Opens `path` and checks that the kernel has `openat2`.
    fn open(path: &Path) -> Result<Self, UnpackError> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| UnpackError::io(format!("opening the root filesystem {path:?}"), e.into()))?;
        let root = Self { fd };
        root.open_in(Path::new(""), OFlags::PATH | OFlags::DIRECTORY)
            .map_err(|e| e.for_entry("opening the root filesystem".into()))?;
        Ok(root)
    }

    /// `rel` opened with `flags`, resolved by the kernel inside the root.
    fn open_in(&self, rel: &Path, flags: OFlags) -> Result<OwnedFd, OpenError> {
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        rustix::fs::openat2(
            &self.fd,
            rel,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(OpenError)
    }

    /// The directory `rel` (already free of links), for `*at` calls.
    fn dir(&self, rel: &Path, entry: &Path) -> Result<OwnedFd, UnpackError> {
        self.open_in(rel, OFlags::PATH | OFlags::DIRECTORY)
            .map_err(|e| e.for_entry(format!("opening directory {rel:?} for {entry:?}")))
    }
}

/// A failed confined lookup.
struct OpenError(Errno);

impl OpenError {
    /// The error to report: ENOSYS means the kernel has no openat2, which is fatal.
    fn for_entry(self, context: String) -> UnpackError {
        if self.0 == Errno::NOSYS {
            UnpackError::NoOpenat2 {
                source: self.0.into(),
            }
        } else {
            UnpackError::io(context, self.0.into())
        }
    }
}

impl From<OpenError> for io::Error {
    fn from(e: OpenError) -> Self {
        e.0.into()
    }
}

/// Most bytes the tar reader may read while looking for the next entry: its header block and
/// the extension headers before it (GNU long names and long link targets, PAX records, sparse
/// maps), which the `tar` crate holds in memory whole. Real ones are a few KiB; a layer whose
/// headers claim more is refused rather than read into memory.
pub(super) const MAX_HEADER_BYTES: u64 = 1024 * 1024;

/// How much the tar reader may still read before the next entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Meter {
    /// Reading an entry's content: unbounded (it is streamed to disk).
    Off,
    /// Looking for the next entry: this many bytes left.
    On(u64),
    /// A read was refused: the headers of one entry went over [`MAX_HEADER_BYTES`].
    Exceeded,
}

/// The layer stream, metered while the tar reader reads headers (see [`MAX_HEADER_BYTES`]).
struct Metered<'m, R> {
    inner: R,
    meter: &'m Cell<Meter>,
}

impl<R: Read> Read for Metered<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.meter.get() {
            Meter::Off => self.inner.read(buf),
            Meter::On(0) | Meter::Exceeded => {
                self.meter.set(Meter::Exceeded);
                Err(io::Error::other("too many header bytes before one entry"))
            }
            Meter::On(left) => {
                let len = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let n = self.inner.read(&mut buf[..len])?;
                self.meter.set(Meter::On(left - n as u64));
                Ok(n)
            }
        }
    }
}

/// What one layer has done so far, for what comes after its last entry.
#[derive(Default)]
struct LayerState {
    /// Physical paths (relative to the root) this layer wrote, with their ancestors: an opaque
    /// marker hides only what lower layers put in its directory.
    written: HashSet<PathBuf>,
    opaque_dirs: Vec<PathBuf>,
    dir_times: Vec<(PathBuf, OsString, i64)>,
}

/// Applies one layer tar on `root`.
pub(super) fn apply_layer(root_path: &Path, reader: impl Read) -> Result<(), UnpackError> {
    let root = Root::open(root_path)?;
    let meter = Cell::new(Meter::Off);
    let mut archive = tar::Archive::new(Metered {
        inner: reader,
        meter: &meter,
    });
    let mut layer = LayerState::default();
    let mut entries = archive
        .entries()
        .map_err(|e| UnpackError::io("reading the layer", e))?;
    loop {
        meter.set(Meter::On(MAX_HEADER_BYTES));
        let next = entries.next();
        let exceeded = meter.get() == Meter::Exceeded;
        meter.set(Meter::Off);
        let mut entry = match next {
            None => break,
            Some(Ok(entry)) => entry,
            Some(Err(_)) if exceeded => {
                return Err(UnpackError::Invalid(format!(
                    "the layer has more than {MAX_HEADER_BYTES} bytes of headers (long names, \
                     PAX records, sparse maps) before one entry"
                )))
            }
            Some(Err(e)) => return Err(UnpackError::io("reading the layer", e)),
        };
        apply_entry(&root, &mut entry, &mut layer)?;
        // Read what the entry left (a directory's or a skipped entry's content): the tar
        // reader would skip it while metered, counting it as header bytes.
        io::copy(&mut entry, &mut io::sink())
            .map_err(|e| UnpackError::io("reading the layer", e))?;
    }
    let LayerState {
        written,
        opaque_dirs,
        dir_times,
    } = layer;
    for dir in &opaque_dirs {
        prune_lower(&root, dir, &written)
            .map_err(|e| UnpackError::io(format!("clearing the opaque directory {dir:?}"), e))?;
    }
    // Directory times last: creating their entries changed them.
    for (parent, name, mtime) in dir_times.iter().rev() {
        if let Ok(dir) = root.open_in(parent, OFlags::PATH | OFlags::DIRECTORY) {
            let t = rustix::fs::Timespec {
                tv_sec: *mtime,
                tv_nsec: 0,
            };
            let times = Timestamps {
                last_access: t,
                last_modification: t,
            };
            let _ = rustix::fs::utimensat(&dir, name, &times, AtFlags::SYMLINK_NOFOLLOW);
        }
    }
    Ok(())
}

/// Applies one entry of a layer.
fn apply_entry<R: Read>(
    root: &Root,
    entry: &mut tar::Entry<'_, R>,
    layer: &mut LayerState,
) -> Result<(), UnpackError> {
    let raw = entry
        .path()
        .map_err(|e| UnpackError::io("reading an entry's path", e))?
        .into_owned();
    let rel = sanitize(&raw)?;
    let kind = entry.header().entry_type();
    let Some(name) = rel.file_name().map(OsString::from) else {
        // The root itself: only its metadata.
        if kind.is_dir() {
            set_owner_and_mode(&root.fd, entry.header(), &raw)?;
        }
        return Ok(());
    };
    let parent_rel = rel.parent().unwrap_or(Path::new(""));
    if let Some(hidden) = name.to_str().and_then(|n| n.strip_prefix(WHITEOUT)) {
        let Some((parent, parent_phys)) = resolve_dir(root, parent_rel, false, &raw)? else {
            return Ok(());
        };
        if name == OPAQUE {
            mark_written(&mut layer.written, &parent_phys);
            layer.opaque_dirs.push(parent_phys);
        } else if hidden == "." || hidden == ".." {
            return Err(UnpackError::Invalid(format!(
                "whiteout {raw:?} names {hidden:?}, which is not an entry"
            )));
        } else if !hidden.is_empty() && !layer.written.contains(&parent_phys.join(hidden)) {
            remove_existing(parent.as_fd(), OsStr::new(hidden))
                .map_err(|e| UnpackError::io(format!("whiteout {raw:?}"), e))?;
        }
        return Ok(());
    }
    let Some((parent, parent_phys)) = resolve_dir(root, parent_rel, true, &raw)? else {
        return Ok(());
    };
    let parent = parent.as_fd();
    let name = name.as_os_str();
    let dest_phys = parent_phys.join(name);
    let header = entry.header().clone();
    let ctx = |what: &str| format!("{what} {raw:?}");
    let replace = |e| UnpackError::io(ctx("replacing"), e);
    match kind {
        tar::EntryType::Directory => {
            match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {}
                Ok(_) => {
                    remove_existing(parent, name).map_err(replace)?;
                    mkdir(parent, name)
                        .map_err(|e| UnpackError::io(ctx("creating directory"), e))?;
                }
                Err(_) => mkdir(parent, name)
                    .map_err(|e| UnpackError::io(ctx("creating directory"), e))?,
            }
            // By name, not through a descriptor: a lower layer's mode 000 directory must
            // stay changeable. It is a directory (just checked or made), so nothing is
            // followed.
            set_owner_at(parent, name, &header, &raw)?;
            rustix::fs::chmodat(parent, name, mode_of(&header, &raw)?, AtFlags::empty())
                .map_err(|e| UnpackError::io(format!("setting the mode of {raw:?}"), e.into()))?;
            if let Ok(mtime) = header.mtime() {
                layer
                    .dir_times
                    .push((parent_phys.clone(), name.to_os_string(), mtime as i64));
            }
        }
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            remove_existing(parent, name).map_err(replace)?;
            // O_EXCL and O_NOFOLLOW: a new file, never something a link points to.
            let fd = rustix::fs::openat(
                parent,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .map_err(|e| UnpackError::io(ctx("creating file"), e.into()))?;
            let mut file = fs::File::from(fd);
            io::copy(entry, &mut file).map_err(|e| UnpackError::io(ctx("writing file"), e))?;
            set_owner_and_mode(&file, &header, &raw)?;
            if let Some(t) = timestamps(&header) {
                let _ = rustix::fs::futimens(&file, &t);
            }
        }
        tar::EntryType::Symlink => {
            let target = entry
                .link_name()
                .map_err(|e| UnpackError::io(ctx("reading the target of"), e))?
                .ok_or_else(|| {
                    UnpackError::Invalid(format!("symbolic link {raw:?} has no target"))
                })?
                .into_owned();
            remove_existing(parent, name).map_err(replace)?;
            // The target is stored as written: it is only ever resolved inside a root.
            rustix::fs::symlinkat(&target, parent, name)
                .map_err(|e| UnpackError::io(ctx("creating symbolic link"), e.into()))?;
            set_owner_at(parent, name, &header, &raw)?;
            if let Some(t) = timestamps(&header) {
                let _ = rustix::fs::utimensat(parent, name, &t, AtFlags::SYMLINK_NOFOLLOW);
            }
        }
        tar::EntryType::Link => {
            let target_raw = entry
                .link_name()
                .map_err(|e| UnpackError::io(ctx("reading the target of"), e))?
                .ok_or_else(|| UnpackError::Invalid(format!("hard link {raw:?} has no target")))?
                .into_owned();
            let target_rel = sanitize(&target_raw)
                .map_err(|e| UnpackError::Invalid(format!("hard link {raw:?}: its target: {e}")))?;
            let not_a_file = || {
                UnpackError::Invalid(format!(
                    "hard link {raw:?} points to {target_raw:?}, which is not a file of the image"
                ))
            };
            let (Some(file), Some(dir)) = (target_rel.file_name(), target_rel.parent()) else {
                return Err(not_a_file());
            };
            let Some((target_dir, target_phys)) = resolve_dir(root, dir, false, &target_raw)?
            else {
                return Err(not_a_file());
            };
            let is_file = rustix::fs::statat(&target_dir, file, AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) != FileType::Directory);
            if !is_file {
                return Err(not_a_file());
            }
            if target_phys.join(file) != dest_phys {
                remove_existing(parent, name).map_err(replace)?;
                // No AT_SYMLINK_FOLLOW: a link to a symbolic link links the link itself.
                rustix::fs::linkat(&target_dir, file, parent, name, AtFlags::empty())
                    .map_err(|e| UnpackError::io(ctx("creating hard link"), e.into()))?;
            }
        }
        tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
            remove_existing(parent, name).map_err(replace)?;
            if let Err(e) = make_node(parent, name, &header) {
                // Unprivileged or in a user namespace: the runtime provides /dev anyway.
                tracing::debug!(entry = ?raw, error = %e, "skipping a device node");
                return Ok(());
            }
            set_owner_at(parent, name, &header, &raw)?;
            // A node just made here, not a link: following is not a concern.
            rustix::fs::chmodat(parent, name, mode_of(&header, &raw)?, AtFlags::empty())
                .map_err(|e| UnpackError::io(format!("setting the mode of {raw:?}"), e.into()))?;
        }
        other => {
            tracing::debug!(entry = ?raw, kind = ?other, "skipping a tar entry of this kind");
            return Ok(());
        }
    }
    mark_written(&mut layer.written, &dest_phys);
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
                return Err(UnpackError::Invalid(format!(
                    "layer entry {raw:?} is an absolute path; entries must be relative to the image root"
                )))
            }
            Component::ParentDir => {
                return Err(UnpackError::Invalid(format!(
                    "layer entry {raw:?} contains \"..\" and could leave the image root"
                )))
            }
        }
    }
    Ok(rel)
}

/// The directory `rel` names inside the root, opened (`O_PATH`), with its physical path
/// relative to the root: symbolic links on the way are followed with `/` meaning the root;
/// missing directories are created when `create` (else `None` when one is missing). Every
/// lookup and creation is confined by the kernel (see the module docs).
fn resolve_dir(
    root: &Root,
    rel: &Path,
    create: bool,
    entry: &Path,
) -> Result<Option<(OwnedFd, PathBuf)>, UnpackError> {
    let mut pending: Vec<OsString> = rel
        .components()
        .rev()
        .map(|c| c.as_os_str().to_os_string())
        .collect();
    let mut resolved = PathBuf::new();
    let mut hops = 0;
    while let Some(component) = pending.pop() {
        if component == ".." {
            if !resolved.pop() {
                return Err(UnpackError::Invalid(format!(
                    "layer entry {entry:?} leads outside the image root through a symbolic link"
                )));
            }
            continue;
        }
        if component == "." || component.is_empty() || component == "/" {
            continue;
        }
        let path = resolved.join(&component);
        let found = match root.open_in(&path, OFlags::PATH | OFlags::NOFOLLOW) {
            Ok(fd) => Some(fd),
            Err(OpenError(Errno::NOENT)) => None,
            Err(e) => return Err(e.for_entry(format!("inspecting {path:?} for {entry:?}"))),
        };
        let Some(fd) = found else {
            if !create {
                return Ok(None);
            }
            let parent = root.dir(&resolved, entry)?;
            mkdir(parent.as_fd(), &component)
                .map_err(|e| UnpackError::io(format!("creating directory {path:?}"), e))?;
            resolved.push(component);
            continue;
        };
        let st = rustix::fs::fstat(&fd)
            .map_err(|e| UnpackError::io(format!("inspecting {path:?}"), e.into()))?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => resolved.push(component),
            FileType::Symlink => {
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(UnpackError::Invalid(format!(
                        "layer entry {entry:?}: too many levels of symbolic links"
                    )));
                }
                // An O_PATH descriptor of the link itself: readlinkat reads it with "".
                let target = rustix::fs::readlinkat(&fd, "", Vec::new())
                    .map_err(|e| UnpackError::io(format!("reading the link {path:?}"), e.into()))?;
                let target = PathBuf::from(OsStr::from_bytes(target.as_bytes()));
                if target.is_absolute() {
                    resolved.clear();
                }
                // The kernel would clamp a climb above the root; refuse it instead, naming the
                // link (the image meant something else, and writing at the root is not it).
                let mut depth = resolved.components().count() as isize;
                for c in target.components() {
                    match c {
                        Component::ParentDir => depth -= 1,
                        Component::Normal(_) => depth += 1,
                        _ => {}
                    }
                    if depth < 0 {
                        return Err(UnpackError::Invalid(format!(
                            "layer entry {entry:?} would be written outside the image root \
                             through the symbolic link {path:?} -> {target:?}"
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
            _ => {
                return Err(UnpackError::Invalid(format!(
                    "layer entry {entry:?}: {path:?} is not a directory"
                )))
            }
        }
    }
    let fd = root.dir(&resolved, entry)?;
    Ok(Some((fd, resolved)))
}

/// `mkdir name` in `parent`, mode 0755 whatever the umask.
fn mkdir(parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o755))?;
    rustix::fs::chmodat(parent, name, Mode::from_raw_mode(0o755), AtFlags::empty())?;
    Ok(())
}

/// Records `path` and its ancestors (relative to the root) as written by this layer.
fn mark_written(written: &mut HashSet<PathBuf>, path: &Path) {
    let mut rel = path;
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

/// Removes what lower layers left in `dir` (relative to the root), keeping what this layer
/// wrote.
fn prune_lower(root: &Root, dir: &Path, written: &HashSet<PathBuf>) -> io::Result<()> {
    let fd = root.open_in(dir, OFlags::RDONLY | OFlags::DIRECTORY)?;
    for name in entry_names(&fd)? {
        let rel = dir.join(&name);
        if !written.contains(&rel) {
            remove_existing(fd.as_fd(), &name)?;
        } else if rustix::fs::statat(&fd, &name, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
        {
            prune_lower(root, &rel, written)?;
        }
    }
    Ok(())
}

/// The names in directory `fd`, without `.` and `..` (read in full before anything is removed).
fn entry_names(fd: &OwnedFd) -> io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(fd)? {
        let entry = entry?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name != "." && name != ".." {
            names.push(name.to_os_string());
        }
    }
    Ok(names)
}

/// Removes whatever `name` is in `parent` (a directory with its content; a link, not its
/// target). `name` is one component, never `.` or `..`.
fn remove_existing(parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    debug_assert!(name != "." && name != ".." && !name.as_bytes().contains(&b'/'));
    match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
            let dir = rustix::fs::openat(
                parent,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            for child in entry_names(&dir)? {
                remove_existing(dir.as_fd(), &child)?;
            }
            rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR)?;
            Ok(())
        }
        Ok(_) => Ok(rustix::fs::unlinkat(parent, name, AtFlags::empty())?),
        Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The owner of the entry, when it can be set: `None` for ids outside the kernel's range.
fn owner(header: &tar::Header) -> (Option<rustix::fs::Uid>, Option<rustix::fs::Gid>) {
    let valid = |id: u64| u32::try_from(id).ok().filter(|&id| id != u32::MAX);
    (
        header
            .uid()
            .ok()
            .and_then(valid)
            .map(rustix::fs::Uid::from_raw),
        header
            .gid()
            .ok()
            .and_then(valid)
            .map(rustix::fs::Gid::from_raw),
    )
}

fn mode_of(header: &tar::Header, raw: &Path) -> Result<Mode, UnpackError> {
    let mode = header
        .mode()
        .map_err(|e| UnpackError::io(format!("reading the mode of {raw:?}"), e))?;
    Ok(Mode::from_raw_mode(mode & 0o7777))
}

/// Whether a chown failed only because this process may not give files away (not root).
fn not_permitted(e: Errno) -> bool {
    e == Errno::PERM || e == Errno::ACCESS
}

/// Owner, then mode (chown clears set-id bits), on an open file or directory.
fn set_owner_and_mode(fd: impl AsFd, header: &tar::Header, raw: &Path) -> Result<(), UnpackError> {
    let (uid, gid) = owner(header);
    if let Err(e) = rustix::fs::fchown(&fd, uid, gid) {
        if !not_permitted(e) {
            return Err(UnpackError::io(
                format!("setting the owner of {raw:?}"),
                e.into(),
            ));
        }
        // Not root: the files stay ours.
        tracing::debug!(entry = ?raw, "cannot change the owner (not root)");
    }
    rustix::fs::fchmod(&fd, mode_of(header, raw)?)
        .map_err(|e| UnpackError::io(format!("setting the mode of {raw:?}"), e.into()))
}

/// The owner of `name` in `parent`, not following it (symbolic links, device nodes).
fn set_owner_at(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    header: &tar::Header,
    raw: &Path,
) -> Result<(), UnpackError> {
    let (uid, gid) = owner(header);
    match rustix::fs::chownat(parent, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(()) => Ok(()),
        Err(e) if not_permitted(e) => {
            tracing::debug!(entry = ?raw, "cannot change the owner (not root)");
            Ok(())
        }
        Err(e) => Err(UnpackError::io(
            format!("setting the owner of {raw:?}"),
            e.into(),
        )),
    }
}

/// Access and modification time: the entry's mtime.
fn timestamps(header: &tar::Header) -> Option<Timestamps> {
    let t = rustix::fs::Timespec {
        tv_sec: header.mtime().ok()? as i64,
        tv_nsec: 0,
    };
    Some(Timestamps {
        last_access: t,
        last_modification: t,
    })
}

fn make_node(parent: BorrowedFd<'_>, name: &OsStr, header: &tar::Header) -> io::Result<()> {
    let file_type = match header.entry_type() {
        tar::EntryType::Char => FileType::CharacterDevice,
        tar::EntryType::Block => FileType::BlockDevice,
        _ => FileType::Fifo,
    };
    let major = header.device_major()?.unwrap_or(0);
    let minor = header.device_minor()?.unwrap_or(0);
    let mode = Mode::from_raw_mode(header.mode()? & 0o7777);
    rustix::fs::mknodat(
        parent,
        name,
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
            assert!(!e.is_transient(), "{e}");
            assert!(e.to_string().contains(needle), "{needle}: {e}");
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

    /// Every file under `dir`, relative to it (to prove nothing else appeared there).
    fn tree(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut pending = vec![dir.to_path_buf()];
        while let Some(d) = pending.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
                if fs::symlink_metadata(&p).unwrap().is_dir() {
                    pending.push(p);
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn a_symlink_to_slash_in_the_parent_stays_in_the_root() {
        // The host's /etc/x must not appear (and a pre-existing one is not ours to check).
        let host = Path::new("/etc/x");
        let existed = host.exists();
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        fs::create_dir(&root).unwrap();
        Layer::new()
            .link(tar::EntryType::Symlink, "a", "/")
            .file("a/etc/x", "inside")
            .apply(&root)
            .unwrap();
        assert_eq!(read(&root, "etc/x"), "inside");
        assert_eq!(existed, host.exists(), "the host's /etc/x was touched");
        // Nothing beside the root, in the directory holding it.
        assert_eq!(tree(t.path()).len(), tree(&root).len() + 1);

        // The same through an absolute link into a host directory that exists, and through
        // a chain of links: the file lands inside the root, the host directory stays empty.
        let outside = tempfile::tempdir().unwrap();
        let host_dir = outside.path().to_str().unwrap().to_string();
        let root2 = t.path().join("root2");
        fs::create_dir(&root2).unwrap();
        Layer::new()
            .link(tar::EntryType::Symlink, "a", "/")
            .link(tar::EntryType::Symlink, "b", "a")
            .file(&format!("b{host_dir}/evil"), "x")
            .apply(&root2)
            .unwrap();
        assert!(
            tree(outside.path()).is_empty(),
            "{:?}",
            tree(outside.path())
        );
        assert!(root2
            .join(host_dir.trim_start_matches('/'))
            .join("evil")
            .is_file());
    }

    #[test]
    fn lookups_are_confined_to_the_root_by_the_kernel() {
        // Links the resolver in `resolve_dir` would refuse: here the kernel alone resolves
        // them, and every one ends at the root, never above it.
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        fs::create_dir_all(root.join("d")).unwrap();
        std::os::unix::fs::symlink("../../..", root.join("up")).unwrap();
        std::os::unix::fs::symlink("/", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../up/../abs/..", root.join("d/chain")).unwrap();
        let r = Root::open(&root).unwrap();
        let root_ino = fs::metadata(&root).unwrap().ino();
        for path in ["up", "abs", "up/..", "abs/../..", "d/chain", "d/chain/d/.."] {
            let fd = r
                .open_in(Path::new(path), OFlags::PATH | OFlags::DIRECTORY)
                .map_err(io::Error::from)
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(rustix::fs::fstat(&fd).unwrap().st_ino, root_ino, "{path}");
        }
        // And a name that exists only above the root is not found through them.
        let above = t.path().file_name().unwrap().to_str().unwrap().to_string();
        let e = r
            .open_in(Path::new(&format!("up/{above}")), OFlags::PATH)
            .map_err(io::Error::from)
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_kernel_without_openat2_fails_clearly() {
        let e = OpenError(Errno::NOSYS).for_entry("opening the root filesystem".into());
        assert!(matches!(e, UnpackError::NoOpenat2 { .. }), "{e:?}");
        assert!(!e.is_transient());
        assert!(e.to_string().contains("openat2"), "{e}");
        // Other failures stay io errors of the entry.
        let e = OpenError(Errno::NOSPC).for_entry("opening directory \"a\"".into());
        assert!(e.is_transient());
        assert!(
            e.to_string().starts_with("opening directory \"a\": "),
            "{e}"
        );
    }

    #[test]
    fn a_symlink_climbing_out_of_the_root_writes_nothing_outside() {
        for target in ["../../..", "../..", "..", "/..", "x/../../.."] {
            let t = tempfile::tempdir().unwrap();
            let root = t.path().join("root");
            fs::create_dir(&root).unwrap();
            let e = Layer::new()
                .dir("x")
                .link(tar::EntryType::Symlink, "a", target)
                .file("a/evil", "x")
                .apply(&root)
                .unwrap_err();
            assert!(!e.is_transient(), "{e}");
            assert!(
                e.to_string().contains("outside the image root"),
                "{target}: {e}"
            );
            assert_eq!(
                tree(t.path()),
                [
                    PathBuf::from("root"),
                    PathBuf::from("root/a"),
                    PathBuf::from("root/x")
                ],
                "{target}"
            );
        }
    }

    #[test]
    fn links_and_whiteouts_through_symlinks_stay_in_the_root() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("victim"), "host").unwrap();
        let host_dir = outside.path().to_str().unwrap().to_string();
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        // A hard link whose target goes through a link to a host directory names a file of
        // the root (absent here), never the host's file.
        let e = Layer::new()
            .link(tar::EntryType::Symlink, "l", &host_dir)
            .link(tar::EntryType::Link, "h", "l/victim")
            .apply(root)
            .unwrap_err();
        assert!(e.to_string().contains("not a file of the image"), "{e}");
        // A whiteout through the same link removes the root's file, not the host's.
        Layer::new()
            .file(
                &format!("{}/victim", host_dir.trim_start_matches('/')),
                "image",
            )
            .apply(root)
            .unwrap();
        Layer::new().file("l/.wh.victim", "").apply(root).unwrap();
        assert_eq!(
            fs::read_to_string(outside.path().join("victim")).unwrap(),
            "host"
        );
        assert!(!root
            .join(host_dir.trim_start_matches('/'))
            .join("victim")
            .exists());
        // A whiteout may not name the directory itself or its parent.
        let e = Layer::new()
            .dir("d")
            .file("d/.wh..", "")
            .apply(root)
            .unwrap_err();
        assert!(e.to_string().contains("not an entry"), "{e}");
        assert!(root.join("d").is_dir());
        assert_eq!(
            fs::read_to_string(outside.path().join("victim")).unwrap(),
            "host"
        );
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
        // zstd, and a truncated zstd stream is an error, not a partial layer taken as whole.
        let zst = zstd::stream::encode_all(&tar[..], 3).unwrap();
        fs::write(&blob, &zst).unwrap();
        let zroot = t.path().join("zroot");
        fs::create_dir(&zroot).unwrap();
        apply_layer_blob(&zroot, &blob).unwrap();
        assert_eq!(read(&zroot, "hello"), "world");
        fs::write(&blob, &zst[..zst.len() / 2]).unwrap();
        assert!(apply_layer_blob(&t.path().join("zroot"), &blob).is_err());
    }

    /// A PAX extended header (`x`) holding `records`, then a regular file `name`.
    fn pax_layer(records: &[u8], name: &str) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_path("PaxHeaders/x").unwrap();
        h.set_mode(0o644);
        h.set_size(records.len() as u64);
        h.set_cksum();
        b.append(&h, records).unwrap();
        let mut f = Layer::header(tar::EntryType::Regular, 0o644);
        f.set_size(1);
        b.append_data(&mut f, name, &b"x"[..]).unwrap();
        b.into_inner().unwrap()
    }

    /// One PAX record, `<length> <key>=<value>\n`, its length counting itself.
    fn pax_record(key: &str, value: &str) -> Vec<u8> {
        let body = format!(" {key}={value}\n");
        let mut len = body.len() + 1;
        while format!("{len}{body}").len() != len {
            len += 1;
        }
        format!("{len}{body}").into_bytes()
    }

    /// The `tar` crate reads a GNU long name whole into memory, so a layer could declare one of
    /// gigabytes (from a few KiB of gzip) before its first entry and exhaust memory. Past
    /// `MAX_HEADER_BYTES` the layer is refused; real long names still work.
    #[test]
    fn a_huge_gnu_long_name_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let long = format!("d/{}", "n".repeat(200));
        Layer::new().file(&long, "ok").apply(t.path()).unwrap();
        assert_eq!(read(t.path(), &long), "ok");

        let huge = "a".repeat(MAX_HEADER_BYTES as usize + 1);
        let e = Layer::new().file(&huge, "x").apply(t.path()).unwrap_err();
        assert!(matches!(e, UnpackError::Invalid(_)), "{e:?}");
        assert!(!e.is_transient());
        assert!(e.to_string().contains("bytes of headers"), "{e}");
        // A long link target is bounded the same way.
        let e = Layer::new()
            .link(tar::EntryType::Symlink, "l", &huge)
            .apply(t.path())
            .unwrap_err();
        assert!(e.to_string().contains("bytes of headers"), "{e}");
        assert!(!t.path().join("l").exists());
    }

    /// The same for PAX records (`x` headers), which the `tar` crate also holds whole; and a
    /// large entry content, which is streamed, is not limited.
    #[test]
    fn a_huge_pax_header_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let small = pax_layer(&pax_record("path", "from-pax"), "ignored");
        apply_layer(t.path(), small.as_slice()).unwrap();
        assert_eq!(read(t.path(), "from-pax"), "x");

        let comment = "c".repeat(MAX_HEADER_BYTES as usize);
        let huge = pax_layer(&pax_record("comment", &comment), "f");
        let e = apply_layer(t.path(), huge.as_slice()).unwrap_err();
        assert!(matches!(e, UnpackError::Invalid(_)), "{e:?}");
        assert!(e.to_string().contains("bytes of headers"), "{e}");
        assert!(!t.path().join("f").exists());

        let big = "b".repeat(2 * MAX_HEADER_BYTES as usize);
        Layer::new()
            .dir("dir")
            .file("big", &big)
            .apply(t.path())
            .unwrap();
        assert_eq!(read(t.path(), "big").len(), big.len());
    }

    /// Some image builders end a layer's tar without the two zero blocks that close an archive;
    /// Docker (Go's tar reader) accepts such a layer, and so does this unpacker.
    #[test]
    fn a_tar_without_its_end_of_archive_blocks_unpacks() {
        let t = tempfile::tempdir().unwrap();
        let tar = Layer::new()
            .file("first", "1")
            .file("second", "2")
            .0
            .into_inner()
            .unwrap();
        // tar-rs pads the archive to its record size after the two end blocks: strip every
        // trailing zero block.
        let mut end = tar.len();
        while end >= 512 && tar[end - 512..end].iter().all(|b| *b == 0) {
            end -= 512;
        }
        assert!(end < tar.len(), "the test tar had end blocks to strip");
        let blob = t.path().join("blob");
        fs::write(&blob, &tar[..end]).unwrap();
        let root = t.path().join("root");
        fs::create_dir(&root).unwrap();
        apply_layer_blob(&root, &blob).unwrap();
        assert_eq!(read(&root, "first"), "1");
        assert_eq!(read(&root, "second"), "2");
    }
}
