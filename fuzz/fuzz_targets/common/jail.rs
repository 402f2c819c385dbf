//! A root filesystem to unpack layers into, surrounded by directories that must stay as they
//! are: after every input, [`Jail::check`] asserts that nothing was created, linked or written
//! outside the root.
//!
//! ```text
//! /tmp/orchestrator-fuzz/            base: only `outside` and `work-<pid>` directories
//!   outside/canary                   a fixed absolute path for layers to aim at; its only
//!                                    file keeps its content, mode and single link
//!   work-<pid>/blob                  the input, for targets that go through the blob path
//!   work-<pid>/jail/root/            the root filesystem; `jail` holds nothing else
//! ```
//!
//! Files are limited to 64 MiB (`RLIMIT_FSIZE`, with `SIGXFSZ` ignored so that a write past it
//! fails with `EFBIG`): a sparse entry may declare any size and the unpacker writes it out in
//! full (a known limitation, see docs/security.md), which would otherwise fill the disk.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The fixed base directory (seeds name `outside` by its absolute path).
pub const BASE: &str = "/tmp/orchestrator-fuzz";
const CANARY: &[u8] = b"canary\n";
const MAX_FILE_SIZE: u64 = 64 * 1024 * 1024;

pub struct Jail {
    base: PathBuf,
    outside: PathBuf,
    work: PathBuf,
    jail: PathBuf,
    /// The root filesystem, empty after [`Jail::reset`].
    pub root: PathBuf,
    /// Where a target may write its input as a layer blob.
    #[allow(dead_code)] // Not every target uses it.
    pub blob: PathBuf,
}

/// The process's jail, created on first use.
pub fn jail() -> &'static Jail {
    static JAIL: OnceLock<Jail> = OnceLock::new();
    JAIL.get_or_init(Jail::create)
}

impl Jail {
    fn create() -> Self {
        // SAFETY: plain libc calls with valid arguments, before any other thread uses files.
        unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: MAX_FILE_SIZE,
                rlim_max: MAX_FILE_SIZE,
            };
            assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
        }
        let base = PathBuf::from(BASE);
        let outside = base.join("outside");
        let work = base.join(format!("work-{}", std::process::id()));
        let jail = work.join("jail");
        let _ = remove_all(&work);
        fs::create_dir_all(&outside).unwrap();
        let canary = outside.join("canary");
        let _ = fs::remove_file(&canary);
        fs::write(&canary, CANARY).unwrap();
        fs::set_permissions(&canary, fs::Permissions::from_mode(0o644)).unwrap();
        fs::create_dir_all(&jail).unwrap();
        let j = Jail {
            root: jail.join("root"),
            blob: work.join("blob"),
            base,
            outside,
            work,
            jail,
        };
        j.reset();
        j
    }

    /// An empty root again.
    pub fn reset(&self) {
        if self.root.symlink_metadata().is_ok() {
            remove_all(&self.root).unwrap_or_else(|e| panic!("cleaning {:?}: {e}", self.root));
        }
        fs::create_dir(&self.root).unwrap();
    }

    /// Panics if anything outside the root changed.
    pub fn check(&self) {
        assert!(
            self.root.symlink_metadata().unwrap().is_dir(),
            "the root is no longer a directory"
        );
        assert_eq!(names(&self.jail), ["root"], "beside the root");
        let mut work = names(&self.work);
        work.retain(|n| n != "blob");
        assert_eq!(work, ["jail"], "in the work directory");
        for name in names(&self.base) {
            assert!(
                name == "outside" || name.starts_with("work-"),
                "{name:?} appeared in {:?}",
                self.base
            );
        }
        assert_eq!(names(&self.outside), ["canary"], "in the outside directory");
        let canary = self.outside.join("canary");
        let meta = canary.symlink_metadata().unwrap();
        assert!(meta.is_file(), "the canary was replaced");
        assert_eq!(meta.nlink(), 1, "the canary was hard-linked");
        assert_eq!(meta.mode() & 0o7777, 0o644, "the canary's mode changed");
        assert_eq!(fs::read(&canary).unwrap(), CANARY, "the canary was written");
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {dir:?}: {e}"))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `remove_dir_all`, making directories writable first if it fails (modes come from the
/// layer, and without root a mode 000 directory cannot be emptied).
fn remove_all(path: &Path) -> std::io::Result<()> {
    if fs::remove_dir_all(path).is_ok() {
        return Ok(());
    }
    let mut pending = vec![path.to_path_buf()];
    while let Some(dir) = pending.pop() {
        if dir.symlink_metadata()?.is_dir() {
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
            for e in fs::read_dir(&dir)? {
                pending.push(e?.path());
            }
        }
    }
    fs::remove_dir_all(path)
}
