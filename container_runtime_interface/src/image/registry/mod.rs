//! [`RegistryImages`]: an [`ImageSource`] that pulls images from registries over the OCI
//! distribution API (Docker Hub, GHCR, a local `docker-registry`, ...).
//!
//! A pull resolves the reference to an image manifest (choosing this node's platform in an
//! index), downloads the config and layer blobs it lacks into a content-addressed store shared
//! by every image, and unpacks the layers into a root filesystem named after the manifest
//! digest. Everything is verified against its digest before it is used, and nothing half-done
//! is ever used: blobs and root filesystems are built under temp names and renamed when
//! complete. See `store.rs` for the layout on disk.
//!
//! Pulls of one reference, blob or root filesystem are single-flight: 100 containers of one
//! image starting at once pull it once.
//!
//! # What is kept on disk, and when it is deleted
//! Each reference remembers the image manifest it last resolved to (for an index, the manifest
//! of this node's platform; the index itself is not stored). A manifest named by some reference
//! is kept with its config and layer blobs and its root filesystem; everything else under
//! `blobs/` and `rootfs/` is garbage, removed by [`RegistryImages::prune`]. Containers run from
//! a copy of the root filesystem, so removing an image never touches running containers; an
//! image handed out by a pull within [`RegistryConfig::prune_grace`] is kept anyway, as it may
//! still be being copied. Pruning excludes pulls (a store-wide lock: pulls share it, pruning
//! holds it alone), so it never removes what a pull is writing or about to use. When a pull
//! with policy `Always` moves a reference to another digest, a prune runs by itself once the
//! grace has passed. References are never removed (nothing untags an image yet), so an image
//! stays until its reference is pulled again and moves.
//!
//! # Layout
//! * `mod.rs` — [`RegistryImages`] (the [`ImageSource`]), [`RegistryConfig`], [`Platform`],
//!   [`RegistryStats`], [`PruneReport`]: resolving, single-flight and pruning.
//! * `reference.rs` — [`ImageReference`] parsing and normalization.
//! * `manifest.rs` — manifests, indexes and image configs (`oci-spec`'s types; Docker schema 2
//!   media types too).
//! * `client.rs` — HTTP, anonymous bearer tokens, streamed and verified blob downloads, and
//!   registry answers turned into [`RegistryError`](super::RegistryError)s.
//! * `store.rs` — blobs, references and root filesystems on disk.
//! * `fuzzing.rs` — wrappers for the fuzz targets (feature `fuzzing`).
//! * `unpack.rs` — applying layers (whiteouts, links, ownership), every path resolved by the
//!   kernel inside the root filesystem (`openat2`, `RESOLVE_IN_ROOT`).
//!
//! Errors are [`ImageError`]s, named after the operation that failed.
//!
//! # Not yet
//! Credential helpers (credentials come from a Docker config.json only), extended attributes in
//! layers, removing
//! references (`docker rmi`), and size-based eviction of images still referenced.

mod client;
mod credentials;
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzzing;
mod manifest;
mod reference;
mod store;
mod unpack;

pub use credentials::{parse_docker_config, Credentials};
pub use reference::ImageReference;

use super::{ImageError, ImageSource, PreparedImage};
use async_trait::async_trait;
use client::Client;
use manifest::Kind;
use oci_spec::image::{Descriptor, ImageManifest};
use orchestrator_shared_types::PullPolicy;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};
use store::Store;
use tokio::sync::OwnedMutexGuard;

/// An OS and CPU architecture, in the OCI/Go spelling (`linux`, `amd64`, `arm64`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`, `arm`, `386`, `ppc64le`, `s390x`, `riscv64`, ...
    pub architecture: String,
    /// `v7`, `v8`, ...: when set, an index entry must have this variant; when `None`, any.
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this program was built for (`linux/amd64` on x86-64 Linux).
    pub fn host() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "loongarch64" => "loong64",
            other => other,
        };
        Self {
            os: std::env::consts::OS.to_string(),
            architecture: architecture.to_string(),
            variant: None,
        }
    }

    fn matches(&self, p: &oci_spec::image::Platform) -> bool {
        p.os().to_string() == self.os
            && p.architecture().to_string() == self.architecture
            && self
                .variant
                .as_ref()
                .is_none_or(|v| p.variant().as_ref() == Some(v))
    }
}

impl Default for Platform {
    fn default() -> Self {
        Self::host()
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Settings of [`RegistryImages`].
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// Where blobs, references and root filesystems are kept (e.g. `<data dir>/images`).
    pub dir: PathBuf,
    /// Registries (`host[:port]`, or `host` for every port) reached over plain HTTP. Those on
    /// the loopback interface (`localhost`, 127.0.0.0/8, `::1`) always are, as with Docker.
    pub insecure_registries: Vec<String>,
    /// The platform chosen in multi-platform images.
    pub platform: Platform,
    /// Limit on establishing a connection.
    pub connect_timeout: Duration,
    /// Limit on waiting for the next bytes of an answer (a stalled transfer fails after it).
    pub read_timeout: Duration,
    /// Layers downloaded at once for one image.
    pub max_concurrent_downloads: usize,
    /// How long [`RegistryImages::prune`] keeps an image after a pull handed it out, even
    /// unreferenced (its root filesystem may still be being copied into a bundle); also the
    /// delay before the prune that follows a reference moving to another digest.
    pub prune_grace: Duration,
    /// Credentials by registry (`host[:port]`), for registries that refuse anonymous pulls
    /// ([`parse_docker_config`]).
    pub credentials: HashMap<String, Credentials>,
    /// CA certificates (PEM, one or more) by registry (`host[:port]`), for registries whose
    /// HTTPS certificate the system's CAs do not vouch for (as Docker's
    /// `/etc/docker/certs.d/REGISTRY/ca.crt`). Such a registry is reached over HTTPS, even on
    /// loopback, trusting these CAs besides the system's.
    pub ca_certs: HashMap<String, Vec<u8>>,
}

impl RegistryConfig {
    /// Defaults: no insecure registries besides loopback ones, this build's platform, 10 s to
    /// connect, 30 s of silence before a transfer fails, 3 layers at once, 5 min of grace
    /// before an image handed out may be pruned.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            insecure_registries: Vec::new(),
            platform: Platform::host(),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            max_concurrent_downloads: 3,
            prune_grace: Duration::from_secs(300),
            credentials: HashMap::new(),
            ca_certs: HashMap::new(),
        }
    }
}

/// What a [`RegistryImages`] did since it was created (for metrics and tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegistryStats {
    /// HTTP requests sent to registries and token servers.
    pub requests: u64,
    /// Manifests and indexes fetched.
    pub manifests_fetched: u64,
    /// Blobs downloaded (and verified).
    pub blobs_downloaded: u64,
    /// Bytes of those blobs.
    pub bytes_downloaded: u64,
    /// Root filesystems unpacked.
    pub images_unpacked: u64,
}

/// What [`RegistryImages::prune`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Root filesystems (one per image manifest) removed.
    pub rootfs_removed: u64,
    /// Blobs (manifests, configs, layers) removed.
    pub blobs_removed: u64,
    /// Bytes of the files removed (hard links counted once).
    pub bytes_freed: u64,
}

/// Counters behind [`RegistryStats`].
#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    manifests: AtomicU64,
    blobs: AtomicU64,
    bytes: AtomicU64,
    unpacked: AtomicU64,
}

impl Counters {
    fn add_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    fn add_manifest(&self) {
        self.manifests.fetch_add(1, Ordering::Relaxed);
    }

    fn add_blob(&self, bytes: u64) {
        self.blobs.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// Images pulled from registries over the OCI distribution API, into a content-addressed store
/// under [`RegistryConfig::dir`]: every blob and manifest is verified against its digest, root
/// filesystems are unpacked once per image manifest, and concurrent pulls of one image are
/// single-flight. Anonymous pulls only (with bearer tokens, as Docker Hub needs).
pub struct RegistryImages {
    inner: Arc<Inner>,
}

struct Inner {
    config: RegistryConfig,
    store: Store,
    client: Client,
    counters: Arc<Counters>,
    /// Single-flight locks by key (`ref:`, `rootfs:`, `blob:`). The std lock only guards the map
    /// and is never held across an `.await`; the tokio locks are.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Pulls hold it shared, [`Inner::prune`] exclusively.
    gc: tokio::sync::RwLock<()>,
    /// When a pull last handed out each manifest digest (kept by prune within the grace).
    handed_out: Mutex<HashMap<String, Instant>>,
    /// A prune is scheduled (after a reference moved).
    prune_scheduled: AtomicBool,
}

impl fmt::Debug for RegistryImages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryImages")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl RegistryImages {
    /// Opens (creating) the store in `config.dir`, removing what interrupted pulls of earlier
    /// processes left behind.
    pub fn new(config: RegistryConfig) -> Result<Self, ImageError> {
        let store = Store::open(&config.dir).map_err(|e| {
            ImageError::store(
                format!("cannot prepare the image store {}", config.dir.display()),
                e,
            )
        })?;
        let counters = Arc::new(Counters::default());
        let client = Client::new(
            config.insecure_registries.clone(),
            config.credentials.clone(),
            &config.ca_certs,
            config.connect_timeout,
            config.read_timeout,
            counters.clone(),
        )?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                store,
                client,
                counters,
                locks: Mutex::new(HashMap::new()),
                gc: tokio::sync::RwLock::new(()),
                handed_out: Mutex::new(HashMap::new()),
                prune_scheduled: AtomicBool::new(false),
            }),
        })
    }

    /// Parses `image` the way pulls do (for validating workloads before they are accepted); the
    /// error names the bad part.
    pub fn check_reference(image: &str) -> Result<ImageReference, ImageError> {
        ImageReference::parse(image)
    }

    /// What this source did since it was created.
    pub fn stats(&self) -> RegistryStats {
        let c = &self.inner.counters;
        RegistryStats {
            requests: c.requests.load(Ordering::Relaxed),
            manifests_fetched: c.manifests.load(Ordering::Relaxed),
            blobs_downloaded: c.blobs.load(Ordering::Relaxed),
            bytes_downloaded: c.bytes.load(Ordering::Relaxed),
            images_unpacked: c.unpacked.load(Ordering::Relaxed),
        }
    }

    /// The settings.
    pub fn config(&self) -> &RegistryConfig {
        &self.inner.config
    }

    /// Removes the blobs and root filesystems no reference needs (see the module docs): what
    /// is left of images whose reference moved to another digest, and of interrupted pulls of
    /// this process. Waits for the pulls in progress and holds new ones back meanwhile. Images
    /// handed out within [`RegistryConfig::prune_grace`] are kept. Running containers are not
    /// affected (they run from copies).
    pub async fn prune(&self) -> Result<PruneReport, ImageError> {
        self.inner.prune().await
    }
}

#[async_trait]
impl ImageSource for RegistryImages {
    /// `IfNotPresent` uses what this node already has for the reference (no network), else
    /// pulls; `Always` asks the registry every time (downloading only what changed); `Never`
    /// fails unless the image is present.
    async fn prepare(&self, image: &str, policy: PullPolicy) -> Result<PreparedImage, ImageError> {
        let r = ImageReference::parse(image)?;
        let (image, moved) = self.inner.prepare(&r, policy).await?;
        if moved {
            self.inner.schedule_prune();
        }
        Ok(image)
    }
}

impl Inner {
    async fn lock(&self, key: String) -> OwnedMutexGuard<()> {
        let lock = self
            .locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_default()
            .clone();
        lock.lock_owned().await
    }

    /// The image, and whether the reference moved from another digest.
    async fn prepare(
        self: &Arc<Self>,
        r: &ImageReference,
        policy: PullPolicy,
    ) -> Result<(PreparedImage, bool), ImageError> {
        let key = r.to_string();
        let _no_prune = self.gc.read().await;
        let _pulling = self.lock(format!("ref:{key}")).await;
        let known = self
            .store
            .read_ref(&key)
            .await
            .map_err(|e| ImageError::store("reading the image store", e))?;
        if policy != PullPolicy::Always {
            if let Some(digest) = &known {
                if let Some(image) = self.local(digest).await? {
                    self.hand_out(digest);
                    return Ok((image, false));
                }
            }
            if policy == PullPolicy::Never {
                return Err(ImageError::NotPresent);
            }
        }
        let (digest, manifest) = self.resolve(r).await?;
        let image = self.ensure_image(r, &digest, &manifest).await?;
        self.store
            .write_ref(&key, &digest)
            .await
            .map_err(|e| ImageError::store("writing the image store", e))?;
        self.hand_out(&digest);
        tracing::debug!(image = %r, %digest, "image ready");
        let moved = known.is_some_and(|old| old != digest);
        Ok((image, moved))
    }

    /// Notes that the image of manifest `digest` was just handed out.
    fn hand_out(&self, digest: &str) {
        self.handed_out
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(digest.to_string(), Instant::now());
    }

    /// Prunes once the grace has passed (one scheduled prune at a time), unless the source
    /// is dropped meanwhile.
    fn schedule_prune(self: &Arc<Self>) {
        if self.prune_scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let this: Weak<Self> = Arc::downgrade(self);
        let grace = self.config.prune_grace;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let Some(this) = this.upgrade() else {
                return;
            };
            this.prune_scheduled.store(false, Ordering::Release);
            if let Err(e) = this.prune().await {
                tracing::warn!(error = %e, "pruning the image store failed");
            }
        });
    }

    async fn prune(&self) -> Result<PruneReport, ImageError> {
        let _exclusive = self.gc.write().await;
        let grace = self.config.prune_grace;
        let keep: Vec<String> = {
            let mut handed_out = self
                .handed_out
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            handed_out.retain(|_, at| at.elapsed() < grace);
            handed_out.keys().cloned().collect()
        };
        let store = self.store.clone();
        let report = tokio::task::spawn_blocking(move || store.prune(&keep))
            .await
            .map_err(|source| ImageError::Panicked {
                operation: "pruning",
                source,
            })?
            .map_err(|e| ImageError::store("pruning the image store", e))?;
        if report != PruneReport::default() {
            tracing::info!(
                rootfs_removed = report.rootfs_removed,
                blobs_removed = report.blobs_removed,
                bytes_freed = report.bytes_freed,
                "pruned the image store"
            );
        }
        Ok(report)
    }

    /// The image of manifest `digest` when everything it needs is on disk.
    async fn local(&self, digest: &str) -> Result<Option<PreparedImage>, ImageError> {
        let rootfs = self.store.rootfs(digest);
        if !tokio::fs::try_exists(&rootfs).await.unwrap_or(false) {
            return Ok(None);
        }
        let Ok(bytes) = tokio::fs::read(self.store.blob(digest)).await else {
            return Ok(None);
        };
        let Ok(Kind::Manifest(manifest)) = manifest::parse(&bytes, None) else {
            return Ok(None);
        };
        let Ok(config_digest) = reference::parse_digest(manifest.config().digest().as_ref()) else {
            return Ok(None);
        };
        let Ok(config) = tokio::fs::read(self.store.blob(&config_digest)).await else {
            return Ok(None);
        };
        Ok(Some(PreparedImage {
            rootfs,
            config: manifest::parse_config(&config)?,
        }))
    }

    /// Asks the registry which image manifest `r` names for this platform; the manifest is
    /// verified and stored.
    async fn resolve(
        &self,
        r: &ImageReference,
    ) -> Result<(String, Box<ImageManifest>), ImageError> {
        let fetched = self.fetch_manifest(r, r.manifest_reference()).await?;
        let actual = store::sha256_digest(&fetched.bytes);
        if let Some(expected) = r.digest.as_ref().or(fetched.digest_header.as_ref()) {
            if *expected != actual {
                return Err(ImageError::VerifyDigest {
                    what: "the manifest".into(),
                    registry: r.registry.clone(),
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        let parsed = manifest::parse(&fetched.bytes, fetched.content_type.as_deref())?;
        let (digest, bytes, manifest) = match parsed {
            Kind::Manifest(m) => (actual, fetched.bytes, m),
            Kind::Index(index) => {
                let platform = &self.config.platform;
                let chosen = index
                    .manifests()
                    .iter()
                    .find(|d| d.platform().as_ref().is_some_and(|p| platform.matches(p)));
                let Some(chosen) = chosen else {
                    return Err(ImageError::UnknownPlatform {
                        wanted: platform.to_string(),
                        found: index
                            .manifests()
                            .iter()
                            .filter_map(|d| d.platform().as_ref())
                            .filter(|p| p.os().to_string() != "unknown")
                            .map(manifest::platform_name)
                            .collect(),
                    });
                };
                let digest = reference::parse_digest(chosen.digest().as_ref())
                    .map_err(|e| ImageError::parse(format!("the image index is malformed: {e}")))?;
                let fetched = self.fetch_manifest(r, &digest).await?;
                let actual = store::sha256_digest(&fetched.bytes);
                if actual != digest {
                    return Err(ImageError::VerifyDigest {
                        what: format!("the {platform} manifest"),
                        registry: r.registry.clone(),
                        expected: digest,
                        actual,
                    });
                }
                match manifest::parse(&fetched.bytes, fetched.content_type.as_deref())? {
                    Kind::Manifest(m) => (digest, fetched.bytes, m),
                    Kind::Index(_) => {
                        return Err(ImageError::parse(format!(
                            "the {platform} entry {digest} of the image index is another index"
                        )))
                    }
                }
            }
        };
        self.store
            .write_blob(&digest, &bytes)
            .await
            .map_err(|e| ImageError::store("writing the image store", e))?;
        Ok((digest, manifest))
    }

    /// The manifest or index `reference` (tag or digest) of `r`'s repository, unverified.
    async fn fetch_manifest(
        &self,
        r: &ImageReference,
        reference: &str,
    ) -> Result<client::FetchedManifest, ImageError> {
        self.client
            .manifest(r, reference)
            .await
            .map_err(|source| ImageError::ResolveManifest { source })
    }

    /// The image of `manifest`: its config, and its root filesystem unpacked unless it exists.
    async fn ensure_image(
        self: &Arc<Self>,
        r: &ImageReference,
        digest: &str,
        manifest: &ImageManifest,
    ) -> Result<PreparedImage, ImageError> {
        // Refuse what cannot be unpacked before downloading anything.
        let mut digests = Vec::with_capacity(manifest.layers().len());
        for layer in manifest.layers() {
            manifest::layer_compression(layer.media_type())?;
            digests.push(
                reference::parse_digest(layer.digest().as_ref()).map_err(|e| {
                    ImageError::parse(format!("a layer of the manifest is malformed: {e}"))
                })?,
            );
        }
        let _building = self.lock(format!("rootfs:{digest}")).await;
        let config_path = self.ensure_blob(r, manifest.config()).await?;
        let config_bytes = tokio::fs::read(&config_path)
            .await
            .map_err(|e| ImageError::store("reading the image config", e))?;
        let config = manifest::parse_config(&config_bytes)?;
        let rootfs = self.store.rootfs(digest);
        if tokio::fs::try_exists(&rootfs).await.unwrap_or(false) {
            return Ok(PreparedImage { rootfs, config });
        }
        let layers = self.download_layers(r, manifest.layers()).await?;
        let temp = self.store.rootfs_temp(digest);
        let dest = rootfs.clone();
        tokio::task::spawn_blocking(move || unpack_all(&temp, &dest, &layers, &digests))
            .await
            .map_err(|source| ImageError::Panicked {
                operation: "unpacking",
                source,
            })??;
        self.counters.unpacked.fetch_add(1, Ordering::Relaxed);
        Ok(PreparedImage { rootfs, config })
    }

    /// Downloads the missing layers, a few at a time; their paths in order.
    async fn download_layers(
        self: &Arc<Self>,
        r: &ImageReference,
        layers: &[Descriptor],
    ) -> Result<Vec<PathBuf>, ImageError> {
        let permits = Arc::new(tokio::sync::Semaphore::new(
            self.config.max_concurrent_downloads.max(1),
        ));
        let mut tasks = tokio::task::JoinSet::new();
        for layer in layers {
            let (this, r, layer, permits) =
                (self.clone(), r.clone(), layer.clone(), permits.clone());
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                this.ensure_blob(&r, &layer).await
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.map_err(|source| ImageError::Panicked {
                operation: "a layer download",
                source,
            })??;
        }
        Ok(layers
            .iter()
            .map(|l| self.store.blob(l.digest().as_ref()))
            .collect())
    }

    /// The path of blob `d`, downloaded and verified unless already stored.
    async fn ensure_blob(&self, r: &ImageReference, d: &Descriptor) -> Result<PathBuf, ImageError> {
        let digest = reference::parse_digest(d.digest().as_ref())
            .map_err(|e| ImageError::parse(format!("the manifest is malformed: {e}")))?;
        let path = self.store.blob(&digest);
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(path);
        }
        let _downloading = self.lock(format!("blob:{digest}")).await;
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(path);
        }
        // Removed on error, and when the pull is cancelled mid-download.
        let temp = TempFile(self.store.blob_temp(&digest));
        self.client
            .download_blob(r, &digest, d.size(), &temp.0)
            .await?;
        tokio::fs::rename(&temp.0, &path)
            .await
            .map_err(|e| ImageError::store(format!("storing blob {digest}"), e))?;
        Ok(path)
    }
}

/// A temp file removed when dropped (a no-op once it was renamed).
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Unpacks `layers` in order into `temp`, then renames it to `dest`; `temp` is removed on
/// error (here, as the caller may have been cancelled meanwhile).
fn unpack_all(
    temp: &Path,
    dest: &Path,
    layers: &[PathBuf],
    digests: &[String],
) -> Result<(), ImageError> {
    let result = unpack_into(temp, dest, layers, digests);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(temp);
    }
    result
}

fn unpack_into(
    temp: &Path,
    dest: &Path,
    layers: &[PathBuf],
    digests: &[String],
) -> Result<(), ImageError> {
    use std::os::unix::fs::PermissionsExt;
    let creating = |e| ImageError::store("creating the root filesystem", e);
    std::fs::create_dir(temp).map_err(creating)?;
    std::fs::set_permissions(temp, std::fs::Permissions::from_mode(0o755)).map_err(creating)?;
    for (blob, digest) in layers.iter().zip(digests) {
        unpack::apply_layer_blob(temp, blob).map_err(|source| ImageError::UnpackLayer {
            digest: digest.clone(),
            source,
        })?;
    }
    std::fs::rename(temp, dest).map_err(|e| ImageError::store("storing the root filesystem", e))
}
