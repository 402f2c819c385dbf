//! Images: where a container's root filesystem and image configuration come from.
//!
//! The boundary of the image subsystem is the [`ImageSource`] trait: the OCI runtime asks it
//! to make an image reference available on this node under a pull policy and gets back a
//! [`PreparedImage`] (a root filesystem directory to copy, and how to run its process), or an
//! [`ImageError`] saying which operation failed and whether retrying may help. Two sources:
//! [`RegistryImages`] pulls from registries over the OCI distribution API into a
//! content-addressed store; [`LocalImages`] maps references to directories already here.
//!
//! Manifests, indexes and image configs are `oci-spec`'s image types (Docker schema 2 media
//! types included); layers are unpacked with every path resolved by the kernel inside the
//! root filesystem (`openat2` with `RESOLVE_IN_ROOT`).
//!
//! # Layout
//! * `mod.rs` — [`ImageSource`], [`ImageConfig`], [`PreparedImage`], [`LocalImages`].
//! * `error.rs` — [`ImageError`] (by failed operation, with `is_transient()`),
//!   [`RegistryError`] (a failed exchange with a registry) and [`UnpackError`].
//! * `registry/` — [`RegistryImages`]: references, the HTTP client, manifests, the store on
//!   disk and layer unpacking (see its own overview).
//!
//! Everything here needs the crate feature `oci`.

mod error;
mod registry;

pub(crate) use error::spec_message as spec_error_message;
pub use error::{ImageError, RegistryError, UnpackError};
#[cfg(feature = "fuzzing")]
pub(crate) use registry::fuzzing;
pub use registry::{
    parse_docker_config, Credentials, ImageReference, Platform, PruneReport, RegistryConfig,
    RegistryImages, RegistryStats,
};

use async_trait::async_trait;
use orchestrator_shared_types::PullPolicy;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

/// The part of an OCI image configuration that decides how its process runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// `Entrypoint`: replaced by the container's `command` when that is not empty.
    pub entrypoint: Vec<String>,
    /// `Cmd`: replaced by the container's `args` when those are not empty, dropped when the
    /// container overrides the entrypoint.
    pub cmd: Vec<String>,
    /// `Env`, as `KEY=value` strings; the container's environment is added on top.
    pub env: Vec<String>,
    /// `WorkingDir`; `/` when `None`.
    pub working_dir: Option<String>,
    /// `User`: `uid`, `uid:gid`, `name` or `name:group` (names looked up in the image's
    /// `/etc/passwd` and `/etc/group`); root when `None`.
    pub user: Option<String>,
}

/// An image ready to be copied into a bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedImage {
    /// A directory holding the image's root filesystem; it is copied (never modified) for each
    /// container.
    pub rootfs: PathBuf,
    /// How to run it.
    pub config: ImageConfig,
}

/// Turns an image reference into a root filesystem on this machine.
#[async_trait]
pub trait ImageSource: Send + Sync {
    /// Makes `image` available locally, pulling it as `policy` says. An unknown image is a
    /// non-transient error.
    async fn prepare(&self, image: &str, policy: PullPolicy) -> Result<PreparedImage, ImageError>;
}

/// Images already unpacked on this machine, by reference; never pulled (registries are
/// [`RegistryImages`]'s job).
#[derive(Debug, Default)]
pub struct LocalImages {
    images: Mutex<HashMap<String, PreparedImage>>,
}

impl LocalImages {
    /// No images.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) `reference`, builder style.
    pub fn with_image(
        self,
        reference: impl Into<String>,
        rootfs: impl Into<PathBuf>,
        config: ImageConfig,
    ) -> Self {
        self.insert(reference, rootfs, config);
        self
    }

    /// Adds (or replaces) `reference`.
    pub fn insert(
        &self,
        reference: impl Into<String>,
        rootfs: impl Into<PathBuf>,
        config: ImageConfig,
    ) {
        self.images
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                reference.into(),
                PreparedImage {
                    rootfs: rootfs.into(),
                    config,
                },
            );
    }
}

#[async_trait]
impl ImageSource for LocalImages {
    /// Local images are never pulled: the policy is ignored.
    async fn prepare(&self, image: &str, _policy: PullPolicy) -> Result<PreparedImage, ImageError> {
        let found = self
            .images
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(image)
            .cloned();
        found.ok_or(ImageError::NotLocal)
    }
}
