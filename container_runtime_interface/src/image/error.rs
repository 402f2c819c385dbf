//! [`ImageError`], what went wrong while preparing an image, named after the operation that
//! failed, and [`RegistryError`], why an exchange with a registry failed.
//!
//! Transient: an unreachable, slow or overloaded registry (or token server), and local disk
//! trouble. Permanent: an unknown repository, tag or blob, access denied, a digest or size
//! mismatch, a malformed manifest, config or layer, an unsupported format, no image for this
//! platform. Display messages include their cause's (see [`crate::error`] for why), and are
//! worded for users: the API shows them as an instance's last error.

use reqwest::StatusCode;
use std::path::PathBuf;
use std::time::Duration;

/// What went wrong while preparing an image, by failed operation.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The reference does not parse; `reason` names the bad part.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The image is not on this node and the pull policy forbids pulling it.
    #[error("is not present on this node and its pull policy is Never")]
    NotPresent,
    /// The image source serves local images only, and this one is not among them.
    #[error("is not available locally (this node serves local images only)")]
    NotLocal,
    /// Building the HTTP client failed (TLS backend initialization).
    #[error("cannot build the HTTP client: {}", innermost(source))]
    HttpClient {
        /// reqwest's error.
        #[source]
        source: reqwest::Error,
    },
    /// A registry's CA certificates (`RegistryConfig::ca_certs`) are not usable PEM.
    #[error("the CA certificates for registry {registry} are not usable: {reason}")]
    RegistryCa {
        /// The registry they were given for.
        registry: String,
        /// What is wrong with them.
        reason: String,
    },
    /// Fetching a manifest or index (by tag or digest) from the registry failed.
    #[error("{source}")]
    ResolveManifest {
        /// Why.
        #[source]
        source: RegistryError,
    },
    /// A manifest, index or image config could not be used: malformed, or of an unsupported
    /// kind (Docker schema 1, an unknown media type, an index inside an index, ...).
    #[error("{what}{}", colon_source(source.as_deref()))]
    ParseManifest {
        /// What is wrong, for users.
        what: String,
        /// The parser's error, when one parser said so.
        #[source]
        source: Option<Box<oci_spec::OciSpecError>>,
    },
    /// The image config blob is malformed.
    #[error("the image config is malformed: {}", spec_message(source))]
    ParseConfig {
        /// The parser's error.
        #[source]
        source: oci_spec::OciSpecError,
    },
    /// A multi-platform image has no image for this node's platform.
    #[error(
        "no {wanted} image in this multi-platform image (platforms found: {})",
        found_list(found)
    )]
    UnknownPlatform {
        /// This node's platform (`linux/amd64`).
        wanted: String,
        /// The platforms the index lists (`unknown/unknown` attestation entries left out).
        found: Vec<String>,
    },
    /// A layer's media type cannot be unpacked (zstd, foreign formats).
    #[error("layer media type {media_type:?} is not supported: only gzip, zstd and uncompressed tar layers are")]
    UnsupportedLayer {
        /// The media type.
        media_type: String,
    },
    /// Downloading a blob (config or layer) failed.
    #[error("{source}")]
    FetchBlob {
        /// Why.
        #[source]
        source: RegistryError,
    },
    /// Content did not hash to the digest that named it.
    #[error(
        "digest mismatch for {what} from registry {registry}: expected {expected}, got {actual}"
    )]
    VerifyDigest {
        /// `the manifest`, `blob`, `the linux/amd64 manifest`.
        what: String,
        /// The registry it came from.
        registry: String,
        /// The digest asked for.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// A blob's length differs from the size its descriptor gives.
    #[error("blob {digest} from registry {registry} {}", size_mismatch(*expected, *received))]
    VerifySize {
        /// The blob.
        digest: String,
        /// The registry it came from.
        registry: String,
        /// The size the manifest gives.
        expected: u64,
        /// The bytes received (more than `expected` when the download stopped early).
        received: u64,
    },
    /// Applying a layer to the root filesystem failed.
    #[error("unpacking layer {digest}: {source}")]
    UnpackLayer {
        /// The layer.
        digest: String,
        /// Why.
        #[source]
        source: UnpackError,
    },
    /// Reading or writing the image store on this node failed.
    #[error("{context}: {source}")]
    Store {
        /// What was being done, with the path concerned.
        context: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// A worker task of a pull or prune died (a bug, or the runtime shutting down).
    #[error("{operation} panicked: {source}")]
    Panicked {
        /// What the task did.
        operation: &'static str,
        /// tokio's error.
        #[source]
        source: tokio::task::JoinError,
    },
}

impl ImageError {
    /// Whether retrying the same pull later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            ImageError::ResolveManifest { source, .. } | ImageError::FetchBlob { source, .. } => {
                source.is_transient()
            }
            ImageError::UnpackLayer { source, .. } => source.is_transient(),
            ImageError::Store { source, .. } => crate::error::io_is_transient(source),
            ImageError::InvalidReference { .. }
            | ImageError::NotPresent
            | ImageError::NotLocal
            | ImageError::HttpClient { .. }
            | ImageError::RegistryCa { .. }
            | ImageError::ParseManifest { .. }
            | ImageError::ParseConfig { .. }
            | ImageError::UnknownPlatform { .. }
            | ImageError::UnsupportedLayer { .. }
            | ImageError::VerifyDigest { .. }
            | ImageError::VerifySize { .. }
            | ImageError::Panicked { .. } => false,
        }
    }

    /// The message for users about image `reference`: `image REFERENCE: MESSAGE`, or
    /// `image REFERENCE is not present ...` for the messages that continue the sentence.
    /// [`RuntimeError::Image`](crate::RuntimeError::Image) displays this.
    pub fn describe(&self, reference: &str) -> String {
        match self {
            ImageError::NotPresent | ImageError::NotLocal => format!("image {reference} {self}"),
            _ => format!("image {reference}: {self}"),
        }
    }

    pub(crate) fn store(context: impl Into<String>, source: std::io::Error) -> Self {
        ImageError::Store {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn parse(what: impl Into<String>) -> Self {
        ImageError::ParseManifest {
            what: what.into(),
            source: None,
        }
    }
}

/// Why an exchange with a registry (or its token server) failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry could not be reached, did not answer in time, or broke the connection.
    #[error("{}", unreachable_message(endpoint, source))]
    Unreachable {
        /// `host[:port]` talked to.
        endpoint: String,
        /// reqwest's error.
        #[source]
        source: reqwest::Error,
    },
    /// The registry stopped sending a body half-way.
    #[error("registry {registry} stopped sending blob {digest} (nothing for {after:?})")]
    Stalled {
        /// The registry.
        registry: String,
        /// The blob.
        digest: String,
        /// The silence that was waited out.
        after: Duration,
    },
    /// The repository does not exist.
    #[error("name unknown: repository {repository} not found in registry {registry}")]
    NameUnknown {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
    },
    /// The tag or digest does not exist in the repository (or the repository does not).
    #[error("manifest unknown: repository {repository} or {kind} {reference} not found in registry {registry}")]
    ManifestUnknown {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// `tag` or `digest`.
        kind: &'static str,
        /// The tag or digest.
        reference: String,
    },
    /// The blob does not exist in the repository.
    #[error(
        "blob unknown: blob {digest} of repository {repository} not found in registry {registry}"
    )]
    BlobUnknown {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The blob.
        digest: String,
    },
    /// The registry answered 401 or 403 after the anonymous token.
    #[error(
        "registry {registry} denied access to repository {repository} ({status}{detail}): \
         it may not exist, or it needs credentials, which are not supported yet"
    )]
    Denied {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// 401 or 403.
        status: StatusCode,
        /// `: message` from the registry's error body, or empty.
        detail: String,
    },
    /// The registry wants a user name and password (or an unknown scheme), not a bearer token.
    #[error(
        "registry {registry} refused an anonymous pull of {repository}: {why}; give \
         credentials for {registry} with --registry-auth FILE (a Docker config.json, as \
         `docker login` writes)"
    )]
    CredentialsRequired {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// Which challenge it sent.
        why: &'static str,
    },
    /// The bearer challenge or the token server's answer cannot be used.
    #[error("{message}")]
    BadToken {
        /// What is wrong, for users.
        message: String,
        /// The parser's error, when one said so.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },
    /// The token server refused to hand out an anonymous token.
    #[error("the token server {server} of registry {registry} answered {status} {detail}")]
    TokenRefused {
        /// The token server's host.
        server: String,
        /// The registry.
        registry: String,
        /// Its answer.
        status: StatusCode,
        /// `for scope SCOPE: BODY` (one string: this error stays small, as every `Result`
        /// carrying it does).
        detail: String,
    },
    /// Any other unsuccessful status: transient for 5xx, 408 and 429.
    #[error("{}", status_message(registry, *status, what, detail))]
    Status {
        /// The registry.
        registry: String,
        /// Its answer.
        status: StatusCode,
        /// `manifest TAG of repository REPO` or `blob DIGEST of repository REPO`.
        what: String,
        /// `: message` from the registry's error body, or empty.
        detail: String,
    },
    /// A manifest larger than accepted.
    #[error("the manifest is larger than {limit} bytes")]
    ManifestTooLarge {
        /// The limit.
        limit: usize,
    },
    /// Writing the downloaded bytes to disk failed.
    #[error("writing blob {digest} to {}: {source}", path.display())]
    Write {
        /// The blob.
        digest: String,
        /// The temp file.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
}

impl RegistryError {
    /// Whether asking again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Unreachable { .. } | RegistryError::Stalled { .. } => true,
            RegistryError::TokenRefused { status, .. } | RegistryError::Status { status, .. } => {
                retryable_status(*status)
            }
            RegistryError::Write { source, .. } => crate::error::io_is_transient(source),
            RegistryError::NameUnknown { .. }
            | RegistryError::ManifestUnknown { .. }
            | RegistryError::BlobUnknown { .. }
            | RegistryError::Denied { .. }
            | RegistryError::CredentialsRequired { .. }
            | RegistryError::BadToken { .. }
            | RegistryError::ManifestTooLarge { .. } => false,
        }
    }
}

/// Why a layer could not be applied to a root filesystem.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The layer is malformed or would write outside the root (a `..` or absolute entry, a
    /// hard link to a file of no layer, a path through a non-directory).
    #[error("{0}")]
    Invalid(String),
    /// A read or write failed (the layer file, the root filesystem): `context` says which.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the entry concerned.
        context: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// The kernel lacks `openat2` (Linux < 5.6), which confines every path of a layer to the
    /// root filesystem; unpacking without it is refused rather than done unconfined.
    #[error("the kernel has no openat2 (Linux 5.6 or later is needed to unpack layers safely): {source}")]
    NoOpenat2 {
        /// The system's error (ENOSYS).
        #[source]
        source: std::io::Error,
    },
}

impl UnpackError {
    /// Whether retrying may help (a full disk may; a malformed layer does not).
    pub fn is_transient(&self) -> bool {
        match self {
            UnpackError::Io { source, .. } => crate::error::io_is_transient(source),
            UnpackError::Invalid(_) | UnpackError::NoOpenat2 { .. } => false,
        }
    }

    pub(crate) fn io(context: impl std::fmt::Display, source: std::io::Error) -> Self {
        UnpackError::Io {
            context: context.to_string(),
            source,
        }
    }
}

/// Whether an HTTP status says "try again later".
fn retryable_status(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

fn unreachable_message(endpoint: &str, e: &reqwest::Error) -> String {
    if e.is_timeout() {
        format!(
            "registry {endpoint} did not answer in time: {}",
            innermost(e)
        )
    } else if e.is_connect() {
        format!("cannot connect to registry {endpoint}: {}", innermost(e))
    } else {
        format!("request to registry {endpoint} failed: {}", innermost(e))
    }
}

fn status_message(registry: &str, status: StatusCode, what: &str, detail: &str) -> String {
    if retryable_status(status) {
        format!("registry {registry} answered {status}{detail}")
    } else {
        format!("registry {registry} answered {status} for {what}{detail}")
    }
}

fn size_mismatch(expected: u64, received: u64) -> String {
    if received > expected {
        format!("is larger than the {expected} bytes its manifest says")
    } else {
        format!("has {received} bytes, its manifest says {expected}")
    }
}

fn found_list(found: &[String]) -> String {
    if found.is_empty() {
        "none".to_string()
    } else {
        found.join(", ")
    }
}

fn colon_source(source: Option<&oci_spec::OciSpecError>) -> String {
    source
        .map(|e| format!(": {}", spec_message(e)))
        .unwrap_or_default()
}

/// The message of an `oci-spec` error: the parser's own (`missing field `config` at line 1
/// column 9`) rather than oci-spec's summary ("serde failed").
pub(crate) fn spec_message(e: &oci_spec::OciSpecError) -> String {
    match e {
        oci_spec::OciSpecError::SerDe(e) => e.to_string(),
        oci_spec::OciSpecError::Io(e) => e.to_string(),
        other => other.to_string(),
    }
}

/// The innermost cause of `e` ("Connection refused (os error 111)"), which is what users need
/// (reqwest's own message is only "error sending request for url ...").
pub(crate) fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = e;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    innermost.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_and_permanent_failures() {
        let unknown = ImageError::ResolveManifest {
            source: RegistryError::ManifestUnknown {
                registry: "r".into(),
                repository: "a".into(),
                kind: "tag",
                reference: "1".into(),
            },
        };
        assert!(!unknown.is_transient());
        assert_eq!(
            unknown.to_string(),
            "manifest unknown: repository a or tag 1 not found in registry r"
        );
        let busy = ImageError::FetchBlob {
            source: RegistryError::Status {
                registry: "r".into(),
                status: StatusCode::SERVICE_UNAVAILABLE,
                what: "blob sha256:x of repository a".into(),
                detail: String::new(),
            },
        };
        assert!(busy.is_transient());
        let refused = RegistryError::Status {
            registry: "r".into(),
            status: StatusCode::BAD_REQUEST,
            what: "blob sha256:x of repository a".into(),
            detail: ": no".into(),
        };
        assert!(!refused.is_transient());
        assert_eq!(
            refused.to_string(),
            "registry r answered 400 Bad Request for blob sha256:x of repository a: no"
        );
        let full = ImageError::UnpackLayer {
            digest: "sha256:x".into(),
            source: UnpackError::io("writing file", std::io::Error::from_raw_os_error(28)),
        };
        assert!(full.is_transient());
        let bad = ImageError::UnpackLayer {
            digest: "sha256:x".into(),
            source: UnpackError::Invalid("layer entry \"../x\" contains \"..\"".into()),
        };
        assert!(!bad.is_transient());
        let mismatch = ImageError::VerifyDigest {
            what: "blob".into(),
            registry: "r".into(),
            expected: "sha256:a".into(),
            actual: "sha256:b".into(),
        };
        assert!(!mismatch.is_transient());
        assert!(!ImageError::UnknownPlatform {
            wanted: "linux/amd64".into(),
            found: vec![],
        }
        .is_transient());
    }

    #[test]
    fn sizes_and_platforms_are_worded_for_users() {
        let e = |received| ImageError::VerifySize {
            digest: "sha256:x".into(),
            registry: "r".into(),
            expected: 10,
            received,
        };
        assert_eq!(
            e(11).to_string(),
            "blob sha256:x from registry r is larger than the 10 bytes its manifest says"
        );
        assert_eq!(
            e(9).to_string(),
            "blob sha256:x from registry r has 9 bytes, its manifest says 10"
        );
        let p = ImageError::UnknownPlatform {
            wanted: "linux/amd64".into(),
            found: vec![],
        };
        assert_eq!(
            p.to_string(),
            "no linux/amd64 image in this multi-platform image (platforms found: none)"
        );
    }
}
