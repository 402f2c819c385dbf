//! `RegistryImages` over real sockets: against the local `docker-registry` started by
//! `scripts/setup-oci.sh` (127.0.0.1:5000 with `demo/busybox:1`), and against small fake
//! registries served by the tests themselves (digest mismatch, bearer tokens, platforms,
//! unreachable and stalled registries). Without the local registry its tests pass with a note,
//! except under `CI=true` where they fail.
#![cfg(feature = "oci")]

use container_runtime_interface::image::ImageError;
use container_runtime_interface::oci::{
    parse_docker_config, ImageSource, Platform, PruneReport, RegistryConfig, RegistryImages,
    RegistryStats,
};
use orchestrator_shared_types::PullPolicy;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

fn digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The message users see for `e` about image `reference` (what `RuntimeError::Image` shows).
fn message(reference: &str, e: &ImageError) -> String {
    e.describe(reference)
}

fn source(dir: &Path) -> RegistryImages {
    RegistryImages::new(RegistryConfig::new(dir)).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The local registry.

/// `KEY` from the environment, else from the env file written by `scripts/setup-oci.sh`.
fn setting(key: &str) -> Option<String> {
    if let Ok(v) = std::env::var(key) {
        return Some(v);
    }
    let dir = std::env::var("ORCHESTRATOR_OCI_DIR").unwrap_or("/var/lib/orchestrator-oci".into());
    let env = std::fs::read_to_string(Path::new(&dir).join("env")).ok()?;
    env.lines().find_map(|l| {
        let (k, v) = l.strip_prefix("export ")?.split_once('=')?;
        (k == key).then(|| v.trim().to_string())
    })
}

/// The local registry and its test image, or `None` (with a note) when it does not answer.
async fn local_registry() -> Option<(String, String)> {
    let found = match (
        setting("ORCHESTRATOR_TEST_REGISTRY"),
        setting("ORCHESTRATOR_TEST_IMAGE"),
    ) {
        (Some(registry), Some(image)) => {
            let answers = reqwest::Client::new()
                .get(format!("http://{registry}/v2/"))
                .timeout(Duration::from_secs(3))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if answers {
                Ok((registry, image))
            } else {
                Err(format!("the registry {registry} does not answer"))
            }
        }
        _ => Err("ORCHESTRATOR_TEST_REGISTRY / ORCHESTRATOR_TEST_IMAGE are not set".to_string()),
    };
    match found {
        Ok(found) => Some(found),
        Err(why) => {
            let msg = format!("{why} (run scripts/setup-oci.sh)");
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{msg}");
            }
            eprintln!("skipping local registry tests: {msg}");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_the_test_image_and_reuses_it() {
    let Some((_, image)) = local_registry().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let images = source(dir.path());
    let prepared = images
        .prepare(&image, PullPolicy::IfNotPresent)
        .await
        .unwrap();
    let busybox = prepared.rootfs.join("bin/busybox");
    assert!(busybox.is_file(), "{} is missing", busybox.display());
    assert_ne!(std::fs::metadata(&busybox).unwrap().mode() & 0o111, 0);
    assert!(prepared.rootfs.starts_with(dir.path().join("rootfs")));
    assert_eq!(prepared.config.cmd, ["sh"]);
    assert!(prepared.config.env.iter().any(|e| e.starts_with("PATH=")));
    let first = images.stats();
    assert_eq!(first.images_unpacked, 1);
    assert!(first.blobs_downloaded >= 2, "{first:?}");

    // IfNotPresent and Never: no network I/O at all.
    for policy in [PullPolicy::IfNotPresent, PullPolicy::Never] {
        let again = images.prepare(&image, policy).await.unwrap();
        assert_eq!(again, prepared);
    }
    assert_eq!(images.stats(), first);

    // After a restart, from the references kept on disk.
    let restarted = source(dir.path());
    assert_eq!(
        restarted
            .prepare(&image, PullPolicy::IfNotPresent)
            .await
            .unwrap(),
        prepared
    );
    assert_eq!(restarted.stats(), RegistryStats::default());

    // Always asks the registry, but downloads and unpacks nothing that did not change.
    let always = restarted.prepare(&image, PullPolicy::Always).await.unwrap();
    assert_eq!(always, prepared);
    let after = restarted.stats();
    assert!(
        after.requests >= 1 && after.manifests_fetched >= 1,
        "{after:?}"
    );
    assert_eq!((after.blobs_downloaded, after.images_unpacked), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tags_and_repositories_are_permanent_errors() {
    let Some((registry, _)) = local_registry().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let images = source(dir.path());

    let nope = format!("{registry}/demo/nope:1");
    let e = images
        .prepare(&nope, PullPolicy::IfNotPresent)
        .await
        .unwrap_err();
    assert!(!e.is_transient(), "{e}");
    assert_eq!(
        message(&nope, &e),
        format!(
            "image {nope}: manifest unknown: repository demo/nope or tag 1 not found in registry {registry}"
        )
    );

    let tag = format!("{registry}/demo/busybox:no-such-tag");
    let e = images.prepare(&tag, PullPolicy::Always).await.unwrap_err();
    assert!(!e.is_transient(), "{e}");
    assert!(
        message(&tag, &e).contains("repository demo/busybox or tag no-such-tag not found"),
        "{e}"
    );

    let e = images.prepare(&nope, PullPolicy::Never).await.unwrap_err();
    assert!(!e.is_transient());
    assert_eq!(
        message(&nope, &e),
        format!("image {nope} is not present on this node and its pull policy is Never")
    );

    let e = images
        .prepare("127.0.0.1:5000/Demo", PullPolicy::Always)
        .await
        .unwrap_err();
    assert!(!e.is_transient());
    assert!(
        message("127.0.0.1:5000/Demo", &e).contains("must be lowercase"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_prepares_pull_once() {
    let Some((_, image)) = local_registry().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let images = Arc::new(source(dir.path()));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (images, image) = (images.clone(), image.clone());
        tasks.spawn(async move { images.prepare(&image, PullPolicy::IfNotPresent).await });
    }
    let mut rootfs = Vec::new();
    while let Some(done) = tasks.join_next().await {
        rootfs.push(done.unwrap().unwrap().rootfs);
    }
    rootfs.dedup();
    assert_eq!(rootfs.len(), 1);
    let stats = images.stats();
    assert_eq!(stats.manifests_fetched, 1, "{stats:?}");
    assert_eq!(stats.images_unpacked, 1, "{stats:?}");
    // The config and the single layer of the test image.
    assert_eq!(stats.blobs_downloaded, 2, "{stats:?}");
}

/// A tar layer built in memory.
struct Layer(tar::Builder<Vec<u8>>);

impl Layer {
    fn new() -> Self {
        Self(tar::Builder::new(Vec::new()))
    }

    fn add(mut self, kind: tar::EntryType, path: &str, data: &[u8], mode: u32, owner: u64) -> Self {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(owner);
        h.set_gid(owner);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        self.0.append_data(&mut h, path, data).unwrap();
        self
    }

    fn dir(self, path: &str) -> Self {
        self.add(tar::EntryType::Directory, path, b"", 0o755, 0)
    }

    fn file(self, path: &str, data: &str) -> Self {
        self.add(tar::EntryType::Regular, path, data.as_bytes(), 0o644, 0)
    }

    fn link(mut self, kind: tar::EntryType, path: &str, target: &str) -> Self {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(0o777);
        h.set_size(0);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }

    fn tar(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// An image: its blobs (config first) and its manifest.
struct TestImage {
    blobs: Vec<Vec<u8>>,
    manifest: Vec<u8>,
}

impl TestImage {
    /// `layers` as (media type, blob, uncompressed tar).
    fn new(config: serde_json::Value, layers: Vec<(&str, Vec<u8>, Vec<u8>)>) -> Self {
        let mut config = config;
        config["rootfs"] = serde_json::json!({
            "type": "layers",
            "diff_ids": layers.iter().map(|(_, _, tar)| digest(tar)).collect::<Vec<_>>(),
        });
        let config = serde_json::to_vec(&config).unwrap();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digest(&config),
                "size": config.len(),
            },
            "layers": layers.iter().map(|(media_type, blob, _)| serde_json::json!({
                "mediaType": media_type,
                "digest": digest(blob),
                "size": blob.len(),
            })).collect::<Vec<_>>(),
        });
        let mut blobs = vec![config];
        blobs.extend(layers.into_iter().map(|(_, blob, _)| blob));
        Self {
            blobs,
            manifest: serde_json::to_vec(&manifest).unwrap(),
        }
    }

    /// One gzip layer with `hello`.
    fn small() -> Self {
        let tar = Layer::new().file("hello", "world").tar();
        Self::new(
            serde_json::json!({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/hello"]}}),
            vec![(LAYER_GZIP, gzip(&tar), tar)],
        )
    }
}

/// Pulls `reference`, an image made by [`TestImage::small`], and checks its file came out.
async fn pull_small(
    images: &RegistryImages,
    reference: &str,
    policy: PullPolicy,
) -> container_runtime_interface::image::PreparedImage {
    let prepared = images.prepare(reference, policy).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(prepared.rootfs.join("hello")).unwrap(),
        "world"
    );
    prepared
}

/// Pushes `image` through the distribution API (monolithic blob uploads, then the manifest).
async fn push(registry: &str, repository: &str, tag: &str, image: &TestImage) {
    let base = format!("http://{registry}");
    push_with(&reqwest::Client::new(), &base, repository, tag, image).await;
}

/// [`push`] to the registry at `base` (`http(s)://host:port`) with `client`.
async fn push_with(
    client: &reqwest::Client,
    base: &str,
    repository: &str,
    tag: &str,
    image: &TestImage,
) {
    for blob in &image.blobs {
        let started = client
            .post(format!("{base}/v2/{repository}/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        assert_eq!(started.status(), 202, "starting an upload");
        let location = started.headers()["location"].to_str().unwrap().to_string();
        let location = if location.starts_with("http") {
            location
        } else {
            format!("{base}{location}")
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let done = client
            .put(format!("{location}{sep}digest={}", digest(blob)))
            .header("content-type", "application/octet-stream")
            .body(blob.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(done.status(), 201, "uploading a blob");
    }
    let put = client
        .put(format!("{base}/v2/{repository}/manifests/{tag}"))
        .header("content-type", OCI_MANIFEST)
        .body(image.manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        put.status(),
        201,
        "pushing the manifest: {:?}",
        put.text().await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_layers_with_whiteouts_unpack_correctly() {
    let Some((registry, _)) = local_registry().await else {
        return;
    };
    let lower = Layer::new()
        .dir("data")
        .file("data/keep", "keep")
        .file("data/gone", "gone")
        .dir("opq")
        .file("opq/old", "old")
        .dir("opq/sub")
        .file("opq/sub/deep", "deep")
        .link(tar::EntryType::Symlink, "link", "data/keep")
        .link(tar::EntryType::Link, "hard", "data/keep")
        .dir("etc")
        .add(tar::EntryType::Regular, "etc/motd", b"hi", 0o640, 1000)
        .tar();
    let upper = Layer::new()
        .file("data/.wh.gone", "")
        .dir("opq")
        .file("opq/.wh..wh..opq", "")
        .file("opq/new", "new")
        .tar();
    let image = TestImage::new(
        serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Entrypoint": ["/entry"],
                "Cmd": ["a", "b"],
                "Env": ["A=1"],
                "WorkingDir": "/data",
            },
        }),
        vec![
            (LAYER_GZIP, gzip(&lower), lower),
            (LAYER_TAR, upper.clone(), upper),
        ],
    );
    push(&registry, "test/whiteouts", "1", &image).await;

    let dir = tempfile::tempdir().unwrap();
    let images = source(dir.path());
    let reference = format!("{registry}/test/whiteouts:1");
    let prepared = images
        .prepare(&reference, PullPolicy::Always)
        .await
        .unwrap();
    let root = &prepared.rootfs;
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    assert_eq!(read("data/keep"), "keep");
    assert!(!root.join("data/gone").exists());
    assert!(!root.join("data/.wh.gone").exists());
    assert!(!root.join("opq/old").exists());
    assert!(!root.join("opq/sub").exists());
    assert!(!root.join("opq/.wh..wh..opq").exists());
    assert_eq!(read("opq/new"), "new");
    assert_eq!(
        std::fs::read_link(root.join("link")).unwrap(),
        Path::new("data/keep")
    );
    let keep = std::fs::metadata(root.join("data/keep")).unwrap();
    assert_eq!(
        std::fs::metadata(root.join("hard")).unwrap().ino(),
        keep.ino()
    );
    let motd = std::fs::metadata(root.join("etc/motd")).unwrap();
    assert_eq!(motd.mode() & 0o7777, 0o640);
    if is_root() {
        assert_eq!((motd.uid(), motd.gid()), (1000, 1000));
    }
    assert_eq!(prepared.config.entrypoint, ["/entry"]);
    assert_eq!(prepared.config.cmd, ["a", "b"]);
    assert_eq!(prepared.config.env, ["A=1"]);
    assert_eq!(prepared.config.working_dir.as_deref(), Some("/data"));

    // By digest too: the same root filesystem, nothing downloaded again.
    let by_digest = format!("{registry}/test/whiteouts@{}", digest(&image.manifest));
    let before = images.stats();
    assert_eq!(
        images
            .prepare(&by_digest, PullPolicy::IfNotPresent)
            .await
            .unwrap(),
        prepared
    );
    assert_eq!(images.stats().blobs_downloaded, before.blobs_downloaded);
}

/// Images Docker runs: a zstd layer, a layer whose tar lacks its end-of-archive blocks, and a
/// config with an `Entrypoint` but no `Cmd`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zstd_layers_unterminated_tars_and_entrypoint_only_images_pull() {
    let Some((registry, _)) = local_registry().await else {
        return;
    };
    let lower = Layer::new().dir("bin").file("bin/app", "app").tar();
    let upper = Layer::new().file("etc-note", "note").tar();
    let mut end = upper.len();
    while end >= 512 && upper[end - 512..end].iter().all(|b| *b == 0) {
        end -= 512;
    }
    let unterminated = upper[..end].to_vec();
    let image = TestImage::new(
        serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": ["/bin/app", "--serve"]},
        }),
        vec![
            (
                LAYER_ZSTD,
                zstd::stream::encode_all(&lower[..], 3).unwrap(),
                lower,
            ),
            (LAYER_GZIP, gzip(&unterminated), unterminated),
        ],
    );
    push(&registry, "test/docker-shapes", "1", &image).await;
    let dir = tempfile::tempdir().unwrap();
    let prepared = source(dir.path())
        .prepare(
            &format!("{registry}/test/docker-shapes:1"),
            PullPolicy::Always,
        )
        .await
        .unwrap();
    let read = |p: &str| std::fs::read_to_string(prepared.rootfs.join(p)).unwrap();
    assert_eq!(read("bin/app"), "app");
    assert_eq!(read("etc-note"), "note");
    assert_eq!(prepared.config.entrypoint, ["/bin/app", "--serve"]);
    assert!(prepared.config.cmd.is_empty());
}

#[tokio::test]
async fn pruning_a_new_store_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let images = source(dir.path());
    assert_eq!(images.prune().await.unwrap(), PruneReport::default());
    for sub in ["blobs/sha256", "rootfs", "refs"] {
        assert!(dir.path().join(sub).is_dir(), "{sub}");
    }
    assert_eq!(images.stats(), RegistryStats::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_tag_leaves_garbage_that_is_pruned() {
    let Some((registry, _)) = local_registry().await else {
        return;
    };
    let shared = Layer::new().file("shared", "both images").tar();
    let only_old = Layer::new().file("version", "old").tar();
    let only_new = Layer::new().file("version", "new").tar();
    let image = |layer: &[u8], cmd: &str| {
        TestImage::new(
            serde_json::json!({"architecture": "amd64", "os": "linux", "config": {"Cmd": [cmd]}}),
            vec![
                (LAYER_TAR, shared.clone(), shared.clone()),
                (LAYER_TAR, layer.to_vec(), layer.to_vec()),
            ],
        )
    };
    let (old, new) = (image(&only_old, "/old"), image(&only_new, "/new"));
    let reference = format!("{registry}/test/prune:moving");
    let dir = tempfile::tempdir().unwrap();
    let blob = |d: &str| dir.path().join("blobs/sha256").join(&d[7..]);
    let images = RegistryImages::new(RegistryConfig {
        prune_grace: Duration::ZERO,
        ..RegistryConfig::new(dir.path())
    })
    .unwrap();

    push(&registry, "test/prune", "moving", &old).await;
    let first = images
        .prepare(&reference, PullPolicy::Always)
        .await
        .unwrap();
    assert_eq!(first.config.cmd, ["/old"]);
    // Nothing is garbage yet.
    assert_eq!(images.prune().await.unwrap(), PruneReport::default());

    push(&registry, "test/prune", "moving", &new).await;
    let second = images
        .prepare(&reference, PullPolicy::Always)
        .await
        .unwrap();
    assert_eq!(second.config.cmd, ["/new"]);
    assert_ne!(first.rootfs, second.rootfs);

    // The move scheduled a prune (no grace here): the old image goes by itself.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while first.rootfs.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the old image was not pruned"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Wait for that prune to finish (it holds pulls back), then nothing is left to remove.
    assert_eq!(images.prune().await.unwrap(), PruneReport::default());
    for gone in [&old.manifest, &old.blobs[0], &only_old] {
        assert!(!blob(&digest(gone)).exists());
    }
    for kept in [&new.manifest, &new.blobs[0], &only_new, &shared] {
        assert!(blob(&digest(kept)).is_file());
    }
    assert!(second.rootfs.join("shared").is_file());
    assert_eq!(
        std::fs::read_dir(dir.path().join("rootfs"))
            .unwrap()
            .count(),
        1
    );

    // The current image is still served without the network.
    let before = images.stats();
    let again = images
        .prepare(&reference, PullPolicy::IfNotPresent)
        .await
        .unwrap();
    assert_eq!(again, second);
    assert_eq!(images.stats(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_reports_what_it_frees_and_respects_the_grace() {
    let Some((registry, _)) = local_registry().await else {
        return;
    };
    let shared = Layer::new().file("shared", "both").tar();
    let image = |version: &str| {
        let layer = Layer::new().file("version", version).tar();
        TestImage::new(
            serde_json::json!({"architecture": "amd64", "os": "linux", "config": {"Cmd": [version]}}),
            vec![
                (LAYER_TAR, shared.clone(), shared.clone()),
                (LAYER_TAR, layer.clone(), layer),
            ],
        )
    };
    let (old, new) = (image("grace-old"), image("grace-new"));
    let reference = format!("{registry}/test/prune:grace");
    let dir = tempfile::tempdir().unwrap();
    // The default grace: what was just handed out stays.
    let images = source(dir.path());
    push(&registry, "test/prune", "grace", &old).await;
    let first = images
        .prepare(&reference, PullPolicy::Always)
        .await
        .unwrap();
    push(&registry, "test/prune", "grace", &new).await;
    images
        .prepare(&reference, PullPolicy::Always)
        .await
        .unwrap();
    assert_eq!(images.prune().await.unwrap(), PruneReport::default());
    assert!(first.rootfs.is_dir());

    // Another process (nothing handed out): the old image is garbage.
    let restarted = source(dir.path());
    let report = restarted.prune().await.unwrap();
    assert!(!first.rootfs.exists());
    let old_bytes: u64 = [&old.manifest, &old.blobs[0], &old.blobs[2]]
        .iter()
        .map(|b| b.len() as u64)
        .sum();
    assert_eq!((report.rootfs_removed, report.blobs_removed), (1, 3));
    // The blobs, plus the files of the root filesystem (`shared` and `version`).
    let files = "both".len() + "grace-old".len();
    assert_eq!(report.bytes_freed, old_bytes + files as u64);
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

// ---------------------------------------------------------------------------------------------
// Fake registries.

/// A request as the fake registry saw it.
#[derive(Clone, Debug)]
struct Request {
    path: String,
    headers: HashMap<String, String>,
}

/// An answer; `None` from a handler never answers (a stalled registry).
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn ok(content_type: &str, body: Vec<u8>) -> Option<Self> {
        Some(Self {
            status: 200,
            headers: vec![("Content-Type".into(), content_type.into())],
            body,
        })
    }

    fn status(status: u16, body: &str) -> Option<Self> {
        Some(Self {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
        })
    }
}

type Handler = Arc<dyn Fn(&Request) -> Option<Response> + Send + Sync>;

/// A registry on 127.0.0.1:0 answering with `handler`, one request per connection.
struct Fake {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Request>>>,
}

impl Fake {
    async fn start(handler: impl Fn(&Request) -> Option<Response> + Send + Sync + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(handler);
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(answer(socket, handler.clone(), log.clone()));
            }
        });
        Self { addr, seen }
    }

    fn registry(&self) -> String {
        self.addr.to_string()
    }

    fn seen(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }
}

async fn answer(
    mut socket: tokio::net::TcpStream,
    handler: Handler,
    log: Arc<Mutex<Vec<Request>>>,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let path = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("/")
        .to_string();
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let request = Request { path, headers };
    log.lock().unwrap().push(request.clone());
    let Some(response) = handler(&request) else {
        // Stalled: keep the connection open without answering.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        return;
    };
    let mut out = format!(
        "HTTP/1.1 {} Fake\r\nContent-Length: {}\r\nConnection: close\r\n",
        response.status,
        response.body.len()
    );
    for (k, v) in &response.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let _ = socket.write_all(out.as_bytes()).await;
    let _ = socket.write_all(&response.body).await;
    let _ = socket.shutdown().await;
}

/// Serves `image` as `demo/app:1`; `tamper` may change a blob's bytes before serving.
fn serve_image(
    image: &TestImage,
    tamper: impl Fn(&str, Vec<u8>) -> Vec<u8>,
) -> HashMap<String, (String, Vec<u8>)> {
    let mut paths = HashMap::new();
    paths.insert(
        "/v2/demo/app/manifests/1".to_string(),
        (OCI_MANIFEST.to_string(), image.manifest.clone()),
    );
    for blob in &image.blobs {
        let d = digest(blob);
        paths.insert(
            format!("/v2/demo/app/blobs/{d}"),
            (
                "application/octet-stream".to_string(),
                tamper(&d, blob.clone()),
            ),
        );
    }
    paths
}

const NOT_FOUND: &str = r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_not_matching_its_digest_is_refused_and_not_stored() {
    let image = TestImage::small();
    let layer = digest(&image.blobs[1]);
    let paths = serve_image(&image, |d, mut bytes| {
        if d == layer {
            let last = bytes.len() - 1;
            bytes[last] ^= 0xff;
        }
        bytes
    });
    let fake = Fake::start(move |r| match paths.get(&r.path) {
        Some((ct, body)) => Response::ok(ct, body.clone()),
        None => Response::status(404, NOT_FOUND),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let images = source(dir.path());
    let reference = format!("{}/demo/app:1", fake.registry());
    let e = images
        .prepare(&reference, PullPolicy::IfNotPresent)
        .await
        .unwrap_err();
    assert!(!e.is_transient(), "{e}");
    let msg = message(&reference, &e);
    assert!(
        msg.starts_with(&format!("image {reference}: digest mismatch")),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("expected {layer}, got sha256:")),
        "{msg}"
    );
    // Neither the bad blob nor a temp file, nor a root filesystem or a reference, was kept.
    let blobs: Vec<String> = std::fs::read_dir(dir.path().join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !blobs
            .iter()
            .any(|b| layer.ends_with(b.as_str()) || b.starts_with(".tmp")),
        "{blobs:?}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("rootfs"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("refs")).unwrap().count(),
        0
    );

    // A manifest whose Docker-Content-Digest disagrees with its bytes is refused too.
    let manifest = image.manifest.clone();
    let fake = Fake::start(move |_| {
        let mut r = Response::ok(OCI_MANIFEST, manifest.clone()).unwrap();
        r.headers.push((
            "Docker-Content-Digest".into(),
            format!("sha256:{}", "0".repeat(64)),
        ));
        Some(r)
    })
    .await;
    let e = images
        .prepare(
            &format!("{}/demo/app:1", fake.registry()),
            PullPolicy::Always,
        )
        .await
        .unwrap_err();
    assert!(!e.is_transient());
    assert!(
        message("the fake registry's demo/app:1", &e).contains(&format!(
            "expected sha256:{}, got {}",
            "0".repeat(64),
            digest(&image.manifest)
        )),
        "{e}"
    );
}

/// A registry serving `demo/app:1` to the bearer token `t0k3n`, which its token server (on the
/// same address) hands out to anyone, or only to `Basic token_auth`.
async fn token_registry(image: &TestImage, token_auth: Option<&'static str>) -> Fake {
    let paths = serve_image(image, |_, b| b);
    let addr = Arc::new(Mutex::new(String::new()));
    let realm = addr.clone();
    let fake = Fake::start(move |r| {
        if r.path.starts_with("/token?") {
            let given = r.headers.get("authorization").map(String::as_str);
            if token_auth.is_some_and(|a| given != Some(format!("Basic {a}").as_str())) {
                return Response::status(401, r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#);
            }
            return Response::ok("application/json", br#"{"token":"t0k3n","expires_in":300}"#.to_vec());
        }
        if r.headers.get("authorization").map(String::as_str) != Some("Bearer t0k3n") {
            let mut resp = Response::status(401, r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#).unwrap();
            resp.headers.push((
                "WWW-Authenticate".into(),
                format!(
                    r#"Bearer realm="http://{}/token",service="fake.registry",scope="repository:demo/app:pull""#,
                    realm.lock().unwrap()
                ),
            ));
            return Some(resp);
        }
        match paths.get(&r.path) {
            Some((ct, body)) => Response::ok(ct, body.clone()),
            None => Response::status(404, NOT_FOUND),
        }
    })
    .await;
    *addr.lock().unwrap() = fake.registry();
    fake
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_bearer_tokens_are_fetched_and_reused() {
    let image = TestImage::small();
    let fake = token_registry(&image, None).await;
    let dir = tempfile::tempdir().unwrap();
    let images = source(dir.path());
    let prepared = pull_small(
        &images,
        &format!("{}/demo/app:1", fake.registry()),
        PullPolicy::IfNotPresent,
    )
    .await;
    assert_eq!(prepared.config.cmd, ["/hello"]);
    let seen = fake.seen();
    let tokens: Vec<&Request> = seen
        .iter()
        .filter(|r| r.path.starts_with("/token?"))
        .collect();
    assert_eq!(tokens.len(), 1, "one token for the whole pull: {seen:?}");
    assert!(
        tokens[0].path.contains("service=fake.registry"),
        "{}",
        tokens[0].path
    );
    assert!(
        tokens[0]
            .path
            .contains("scope=repository%3Ademo%2Fapp%3Apull"),
        "{}",
        tokens[0].path
    );
    // One refused request, the token, then the manifest and two blobs with the token.
    assert_eq!(seen.len(), 5, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_without_this_platform_lists_the_platforms_found() {
    let image = TestImage::small();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": digest(&image.manifest), "size": image.manifest.len(),
             "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"mediaType": OCI_MANIFEST, "digest": digest(b"x"), "size": 1,
             "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
        ],
    }))
    .unwrap();
    let mut paths = serve_image(&image, |_, b| b);
    paths.insert(
        "/v2/demo/app/manifests/1".into(),
        (OCI_INDEX.to_string(), index),
    );
    paths.insert(
        format!("/v2/demo/app/manifests/{}", digest(&image.manifest)),
        (OCI_MANIFEST.to_string(), image.manifest.clone()),
    );
    let fake = Fake::start(move |r| match paths.get(&r.path) {
        Some((ct, body)) => Response::ok(ct, body.clone()),
        None => Response::status(404, NOT_FOUND),
    })
    .await;
    let reference = format!("{}/demo/app:1", fake.registry());
    let dir = tempfile::tempdir().unwrap();
    let amd64 = RegistryConfig {
        platform: Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        },
        ..RegistryConfig::new(dir.path())
    };
    let e = RegistryImages::new(amd64)
        .unwrap()
        .prepare(&reference, PullPolicy::IfNotPresent)
        .await
        .unwrap_err();
    assert!(!e.is_transient());
    assert_eq!(
        message(&reference, &e),
        format!(
            "image {reference}: no linux/amd64 image in this multi-platform image \
             (platforms found: linux/arm64/v8, linux/arm/v7)"
        )
    );
    // The platform is a setting: an arm64 node pulls the arm64 image.
    let arm64 = RegistryConfig {
        platform: Platform {
            os: "linux".into(),
            architecture: "arm64".into(),
            variant: None,
        },
        ..RegistryConfig::new(dir.path())
    };
    let prepared = RegistryImages::new(arm64)
        .unwrap()
        .prepare(&reference, PullPolicy::IfNotPresent)
        .await
        .unwrap();
    assert!(prepared.rootfs.join("hello").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_schema2_lists_and_manifests_pull() {
    const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    let tar = Layer::new()
        .dir("etc")
        .file("etc/motd", "from docker")
        .tar();
    let layer = gzip(&tar);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/bin/sh"], "Cmd": ["-c", "cat /etc/motd"], "Env": ["D=1"]},
        "rootfs": {"type": "layers", "diff_ids": [digest(&tar)]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "digest": digest(&config), "size": config.len()},
        "layers": [{"mediaType": DOCKER_LAYER, "digest": digest(&layer), "size": layer.len()}],
    }))
    .unwrap();
    let list = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST,
        "manifests": [
            {"mediaType": DOCKER_MANIFEST, "digest": digest(&manifest), "size": manifest.len(),
             "platform": {"os": "linux", "architecture": "amd64"}},
        ],
    }))
    .unwrap();
    let mut paths: HashMap<String, (String, Vec<u8>)> = HashMap::new();
    paths.insert(
        "/v2/demo/app/manifests/1".into(),
        (DOCKER_LIST.into(), list),
    );
    paths.insert(
        format!("/v2/demo/app/manifests/{}", digest(&manifest)),
        (DOCKER_MANIFEST.into(), manifest),
    );
    for blob in [config, layer] {
        paths.insert(
            format!("/v2/demo/app/blobs/{}", digest(&blob)),
            ("application/octet-stream".into(), blob),
        );
    }
    let fake = Fake::start(move |r| match paths.get(&r.path) {
        Some((ct, body)) => Response::ok(ct, body.clone()),
        None => Response::status(404, NOT_FOUND),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let images = RegistryImages::new(RegistryConfig {
        platform: Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        },
        ..RegistryConfig::new(dir.path())
    })
    .unwrap();
    let prepared = images
        .prepare(
            &format!("{}/demo/app:1", fake.registry()),
            PullPolicy::IfNotPresent,
        )
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(prepared.rootfs.join("etc/motd")).unwrap(),
        "from docker"
    );
    assert_eq!(prepared.config.entrypoint, ["/bin/sh"]);
    assert_eq!(prepared.config.cmd, ["-c", "cat /etc/motd"]);
    assert_eq!(prepared.config.env, ["D=1"]);
    // The list, then the manifest; config and layer.
    let stats = images.stats();
    assert_eq!(
        (stats.manifests_fetched, stats.blobs_downloaded),
        (2, 2),
        "{stats:?}"
    );
}

#[tokio::test]
async fn an_unreachable_registry_is_a_transient_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let reference = format!("127.0.0.1:{port}/demo/app:1");
    let e = source(dir.path())
        .prepare(&reference, PullPolicy::IfNotPresent)
        .await
        .unwrap_err();
    assert!(e.is_transient(), "{e}");
    let msg = message(&reference, &e);
    assert!(
        msg.starts_with(&format!(
            "image {reference}: cannot connect to registry 127.0.0.1:{port}: "
        )),
        "{msg}"
    );
    assert!(msg.to_lowercase().contains("refused"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_registry_times_out_transiently() {
    let fake = Fake::start(|_| None).await;
    let dir = tempfile::tempdir().unwrap();
    let config = RegistryConfig {
        read_timeout: Duration::from_millis(500),
        ..RegistryConfig::new(dir.path())
    };
    let started = std::time::Instant::now();
    let e = RegistryImages::new(config)
        .unwrap()
        .prepare(
            &format!("{}/demo/app:1", fake.registry()),
            PullPolicy::Always,
        )
        .await
        .unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert!(
        message("the fake registry's demo/app:1", &e).contains(&format!(
            "registry {} did not answer in time",
            fake.registry()
        )),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// A fake registry serving `demo/app:1` only to `Basic ci:s3cret`.
async fn basic_auth_registry(image: &TestImage) -> Fake {
    let paths = serve_image(image, |_, b| b);
    // base64("ci:s3cret")
    Fake::start(move |r| {
        if r.headers.get("authorization").map(String::as_str) != Some("Basic Y2k6czNjcmV0") {
            let mut resp = Response::status(
                401,
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            )
            .unwrap();
            resp.headers
                .push(("WWW-Authenticate".into(), r#"Basic realm="fake""#.into()));
            return Some(resp);
        }
        match paths.get(&r.path) {
            Some((ct, body)) => Response::ok(ct, body.clone()),
            None => Response::status(404, NOT_FOUND),
        }
    })
    .await
}

fn with_credentials(dir: &Path, registry: &str, auth: &str) -> RegistryImages {
    let text = format!(r#"{{"auths": {{"{registry}": {{"auth": "{auth}"}}}}}}"#);
    let mut config = RegistryConfig::new(dir);
    config.credentials = parse_docker_config(&text).unwrap();
    RegistryImages::new(config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_registries_pull_with_credentials_and_say_what_is_missing() {
    let image = TestImage::small();
    let fake = basic_auth_registry(&image).await;
    let reference = format!("{}/demo/app:1", fake.registry());

    // Without credentials: a permanent error that says how to give them.
    let dir = tempfile::tempdir().unwrap();
    let e = source(dir.path())
        .prepare(&reference, PullPolicy::Always)
        .await
        .unwrap_err();
    assert!(!e.is_transient());
    let msg = message(&reference, &e);
    assert!(
        msg.contains("user name and password") && msg.contains("--registry-auth"),
        "{msg}"
    );

    // Wrong ones: the registry's refusal.
    let wrong = with_credentials(dir.path(), &fake.registry(), "Y2k6d3Jvbmc=");
    let e = wrong
        .prepare(&reference, PullPolicy::Always)
        .await
        .unwrap_err();
    assert!(!e.is_transient());
    assert!(
        message(&reference, &e).contains("authentication required"),
        "{e}"
    );

    // Right ones (a config.json's `auth`): pulled, and sent at once after the first challenge.
    let dir = tempfile::tempdir().unwrap();
    let images = with_credentials(dir.path(), &fake.registry(), "Y2k6czNjcmV0");
    let before = fake.seen().len();
    pull_small(&images, &reference, PullPolicy::Always).await;
    let unauthenticated = fake.seen()[before..]
        .iter()
        .filter(|r| !r.headers.contains_key("authorization"))
        .count();
    assert_eq!(
        unauthenticated, 1,
        "one challenge, then credentials every time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_servers_get_the_credentials() {
    let image = TestImage::small();
    // base64("ci:s3cret")
    let fake = token_registry(&image, Some("Y2k6czNjcmV0")).await;
    let reference = format!("{}/demo/app:1", fake.registry());
    let dir = tempfile::tempdir().unwrap();
    assert!(source(dir.path())
        .prepare(&reference, PullPolicy::Always)
        .await
        .is_err());
    let images = with_credentials(dir.path(), &fake.registry(), "Y2k6czNjcmV0");
    let prepared = images
        .prepare(&reference, PullPolicy::Always)
        .await
        .unwrap();
    assert_eq!(prepared.config.cmd, ["/hello"]);
}

// ---------------------------------------------------------------------------------------------
// An HTTPS registry with a CA of its own: the Debian `docker-registry` of the local registry,
// started here with a certificate from a CA made here.

/// A `docker-registry` serving HTTPS on a free loopback port, stopped on drop.
struct TlsRegistry {
    child: std::process::Child,
    addr: String,
    ca_pem: Vec<u8>,
    _dir: tempfile::TempDir,
}

impl Drop for TlsRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `program args`, panicking with its output when it fails.
fn run_tool(program: &str, args: &[&str], dir: &Path) {
    let out = std::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TlsRegistry {
    /// `None` (a note, or a failure under `CI=true`) without `openssl` or `docker-registry`.
    async fn start() -> Option<Self> {
        for tool in ["openssl", "docker-registry"] {
            let found = std::process::Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success());
            if !found {
                let msg = format!("{tool} not found (run scripts/setup-oci.sh)");
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("{msg}");
                }
                eprintln!("skipping the HTTPS registry test: {msg}");
                return None;
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // A CA, and a certificate for 127.0.0.1 signed by it.
        run_tool(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=test registry CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
            d,
        );
        run_tool(
            "openssl",
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ],
            d,
        );
        std::fs::write(d.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        run_tool(
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                "ext.cnf",
                "-out",
                "server.pem",
            ],
            d,
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: {addr}\n  tls:\n    certificate: {}\n    key: {}\n",
            d.join("data").display(),
            d.join("server.pem").display(),
            d.join("server.key").display(),
        );
        std::fs::write(d.join("config.yml"), config).unwrap();
        let child = std::process::Command::new("docker-registry")
            .arg("serve")
            .arg(d.join("config.yml"))
            .stdout(std::fs::File::create(d.join("registry.log")).unwrap())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting docker-registry");
        let ca_pem = std::fs::read(d.join("ca.pem")).unwrap();
        let registry = Self {
            child,
            addr,
            ca_pem,
            _dir: dir,
        };
        let client = registry.client();
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let up = client
                .get(format!("https://{}/v2/", registry.addr))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if up {
                return Some(registry);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the HTTPS registry did not come up"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A client trusting the registry's CA.
    fn client(&self) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(&self.ca_pem).unwrap();
        reqwest::Client::builder()
            .add_root_certificate(ca)
            .build()
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_registries_with_a_ca_of_their_own_pull_with_that_ca() {
    let Some(registry) = TlsRegistry::start().await else {
        return;
    };
    let image = TestImage::small();
    let base = format!("https://{}", registry.addr);
    push_with(&registry.client(), &base, "demo/tls", "1", &image).await;
    let reference = format!("{}/demo/tls:1", registry.addr);

    // With its CA: over HTTPS, although the registry is on loopback.
    let dir = tempfile::tempdir().unwrap();
    let mut config = RegistryConfig::new(dir.path());
    config
        .ca_certs
        .insert(registry.addr.clone(), registry.ca_pem.clone());
    let images = RegistryImages::new(config).unwrap();
    pull_small(&images, &reference, PullPolicy::Always).await;

    // Another registry's CA does not vouch for it: the handshake fails, and the error says so.
    let other = TlsRegistry::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = RegistryConfig::new(dir.path());
    config
        .ca_certs
        .insert(registry.addr.clone(), other.ca_pem.clone());
    let e = RegistryImages::new(config)
        .unwrap()
        .prepare(&reference, PullPolicy::Always)
        .await
        .unwrap_err();
    let text = message(&reference, &e);
    assert!(text.contains("certificate"), "{text}");

    // Not PEM: refused when the image source is made, naming the registry.
    let mut config = RegistryConfig::new(dir.path());
    config
        .ca_certs
        .insert(registry.addr.clone(), b"not a certificate".to_vec());
    let Err(e) = RegistryImages::new(config) else {
        panic!("a CA that is not PEM was accepted");
    };
    assert!(e.to_string().contains(&registry.addr), "{e}");
}
