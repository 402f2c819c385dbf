//! The distribution API over HTTP(S): manifests, blobs streamed to disk while hashed, anonymous
//! bearer tokens, and registry answers turned into [`RegistryError`]s a user can act on (error
//! bodies read as `oci-spec`'s distribution `ErrorResponse`).

use super::super::{ImageError, RegistryError};
use super::credentials::Credentials;
use super::reference::ImageReference;
use super::store::hex;
use super::Counters;
use oci_spec::distribution::{ErrorCode, ErrorResponse};
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// Largest manifest accepted (containerd's limit).
const MAX_MANIFEST: usize = 4 << 20;
/// Largest error body or token response read.
const MAX_SMALL_BODY: usize = 64 << 10;
/// Token lifetime when the token server does not say (the distribution spec's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// A fetched manifest document.
pub(super) struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
    /// `Docker-Content-Digest`, when the registry sent a sha256 one.
    pub digest_header: Option<String>,
}

/// What a request was for, to word its errors.
enum Target<'a> {
    Manifest(&'a str),
    Blob(&'a str),
}

struct Token {
    value: String,
    expires: Instant,
}

/// An HTTP client for registries.
pub(super) struct Client {
    http: reqwest::Client,
    /// Registries served over HTTPS with a CA of their own: a client trusting it (besides the
    /// system's CAs) for each, so that one registry's CA vouches for no other host.
    with_ca: HashMap<String, reqwest::Client>,
    insecure: Vec<String>,
    /// Bearer tokens by (endpoint, repository); a std lock never held across an `.await`.
    tokens: Mutex<HashMap<(String, String), Token>>,
    /// Credentials by registry.
    credentials: HashMap<String, Credentials>,
    /// Registries that asked for `Basic` credentials: sent them at once from then on.
    basic: Mutex<HashSet<String>>,
    counters: Arc<Counters>,
    read_timeout: Duration,
}

impl Client {
    pub fn new(
        insecure: Vec<String>,
        credentials: HashMap<String, Credentials>,
        ca_certs: &HashMap<String, Vec<u8>>,
        connect_timeout: Duration,
        read_timeout: Duration,
        counters: Arc<Counters>,
    ) -> Result<Self, ImageError> {
        let builder = || {
            reqwest::Client::builder()
                .connect_timeout(connect_timeout)
                .read_timeout(read_timeout)
                .user_agent(concat!("orchestrator/", env!("CARGO_PKG_VERSION")))
        };
        let http = builder()
            .build()
            .map_err(|source| ImageError::HttpClient { source })?;
        let mut with_ca = HashMap::new();
        for (registry, pem) in ca_certs {
            let bad_ca = |reason: String| ImageError::RegistryCa {
                registry: registry.clone(),
                reason,
            };
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| bad_ca(super::super::error::innermost(&e)))?;
            if certs.is_empty() {
                return Err(bad_ca("no PEM certificate in them".to_owned()));
            }
            let client = certs
                .into_iter()
                .fold(builder(), |b, cert| b.add_root_certificate(cert))
                .build()
                .map_err(|e| bad_ca(super::super::error::innermost(&e)))?;
            with_ca.insert(registry.clone(), client);
        }
        Ok(Self {
            http,
            with_ca,
            insecure,
            tokens: Mutex::new(HashMap::new()),
            credentials,
            basic: Mutex::new(HashSet::new()),
            counters,
            read_timeout,
        })
    }

    /// `https://` for registries with a CA of their own (even on loopback); else `http://` for
    /// insecure registries (configured, or on the loopback interface as Docker treats them),
    /// else `https://`.
    fn base_url(&self, r: &ImageReference) -> String {
        let endpoint = r.endpoint();
        let scheme =
            if !self.with_ca.contains_key(&r.registry) && is_insecure(endpoint, &self.insecure) {
                "http"
            } else {
                "https"
            };
        format!("{scheme}://{endpoint}")
    }

    /// The HTTP client for `r`'s registry: the one trusting its own CA, if it has one.
    fn http(&self, r: &ImageReference) -> &reqwest::Client {
        self.with_ca.get(&r.registry).unwrap_or(&self.http)
    }

    /// The manifest `reference` (tag or digest) of `r`'s repository.
    pub async fn manifest(
        &self,
        r: &ImageReference,
        reference: &str,
    ) -> Result<FetchedManifest, RegistryError> {
        let url = format!(
            "{}/v2/{}/manifests/{reference}",
            self.base_url(r),
            r.repository
        );
        let mut resp = self.get(r, &url, Some(super::manifest::ACCEPT)).await?;
        if !resp.status().is_success() {
            return Err(self
                .status_error(r, Target::Manifest(reference), resp)
                .await);
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_MANIFEST as u64)
        {
            return Err(RegistryError::ManifestTooLarge {
                limit: MAX_MANIFEST,
            });
        }
        let headers = resp.headers().clone();
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.send_error(r, e))? {
            if bytes.len() + chunk.len() > MAX_MANIFEST {
                return Err(RegistryError::ManifestTooLarge {
                    limit: MAX_MANIFEST,
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        self.counters.add_manifest();
        Ok(FetchedManifest {
            bytes,
            content_type: header(&headers, CONTENT_TYPE.as_str()),
            digest_header: header(&headers, "docker-content-digest")
                .filter(|d| d.starts_with("sha256:")),
        })
    }

    /// Streams the blob `digest` of `size` bytes into `dest` (a new file), hashing it on the
    /// way; a size or digest mismatch is a non-transient error. The caller removes `dest` on
    /// error.
    pub async fn download_blob(
        &self,
        r: &ImageReference,
        digest: &str,
        size: u64,
        dest: &Path,
    ) -> Result<(), ImageError> {
        let fetch = |source| ImageError::FetchBlob { source };
        let size_mismatch = |received| ImageError::VerifySize {
            digest: digest.to_string(),
            registry: r.registry.clone(),
            expected: size,
            received,
        };
        let url = format!("{}/v2/{}/blobs/{digest}", self.base_url(r), r.repository);
        let mut resp = self.get(r, &url, None).await.map_err(fetch)?;
        if !resp.status().is_success() {
            return Err(fetch(
                self.status_error(r, Target::Blob(digest), resp).await,
            ));
        }
        let write_error = |source: std::io::Error| {
            fetch(RegistryError::Write {
                digest: digest.to_string(),
                path: dest.to_path_buf(),
                source,
            })
        };
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dest)
            .await
            .map_err(write_error)?;
        let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
        let mut hasher = Sha256::new();
        let mut received: u64 = 0;
        loop {
            // reqwest's read timeout covers a stalled socket; this also covers a stalled body.
            let chunk = match tokio::time::timeout(self.read_timeout, resp.chunk()).await {
                Err(_) => {
                    return Err(fetch(RegistryError::Stalled {
                        registry: r.registry.clone(),
                        digest: digest.to_string(),
                        after: self.read_timeout,
                    }))
                }
                Ok(chunk) => chunk.map_err(|e| fetch(self.send_error(r, e)))?,
            };
            let Some(chunk) = chunk else { break };
            received += chunk.len() as u64;
            if received > size {
                return Err(size_mismatch(received));
            }
            hasher.update(&chunk);
            out.write_all(&chunk).await.map_err(write_error)?;
        }
        out.flush().await.map_err(write_error)?;
        out.into_inner().sync_all().await.map_err(write_error)?;
        if received != size {
            return Err(size_mismatch(received));
        }
        let actual = format!("sha256:{}", hex(&hasher.finalize()));
        if actual != digest {
            return Err(ImageError::VerifyDigest {
                what: "blob".into(),
                registry: r.registry.clone(),
                expected: digest.to_string(),
                actual,
            });
        }
        self.counters.add_blob(size);
        Ok(())
    }

    /// A GET with the cached token, answering one bearer challenge.
    async fn get(
        &self,
        r: &ImageReference,
        url: &str,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, RegistryError> {
        let key = (r.endpoint().to_string(), r.repository.clone());
        let mut challenged = false;
        loop {
            let token = {
                let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
                tokens.retain(|_, t| t.expires > Instant::now());
                tokens.get(&key).map(|t| t.value.clone())
            };
            let mut request = self.http(r).get(url);
            if let Some(accept) = accept {
                request = request.header(ACCEPT, accept);
            }
            let basic = self
                .basic
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(&r.registry);
            if let Some(token) = &token {
                request = request.bearer_auth(token);
            } else if let Some(c) = self.credentials.get(&r.registry).filter(|_| basic) {
                request = request.basic_auth(&c.username, Some(&c.password));
            }
            self.counters.add_request();
            let resp = request.send().await.map_err(|e| self.send_error(r, e))?;
            if resp.status() != StatusCode::UNAUTHORIZED || challenged {
                return Ok(resp);
            }
            challenged = true;
            let challenge = header(resp.headers(), WWW_AUTHENTICATE.as_str()).unwrap_or_default();
            let Some(params) = bearer_params(&challenge) else {
                let asks_basic = challenge.to_ascii_lowercase().starts_with("basic");
                if asks_basic && self.credentials.contains_key(&r.registry) {
                    self.basic
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(r.registry.clone());
                    continue;
                }
                let why = if asks_basic {
                    "it asks for a user name and password"
                } else {
                    "it sent no bearer challenge"
                };
                return Err(RegistryError::CredentialsRequired {
                    registry: r.registry.clone(),
                    repository: r.repository.clone(),
                    why,
                });
            };
            let token = self.fetch_token(r, &params).await?;
            self.tokens
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key.clone(), token);
        }
    }

    /// A token from the challenge's realm: with this registry's credentials if there are any,
    /// else anonymous.
    async fn fetch_token(
        &self,
        r: &ImageReference,
        params: &HashMap<String, String>,
    ) -> Result<Token, RegistryError> {
        let Some(realm) = params.get("realm") else {
            return Err(RegistryError::BadToken {
                message: format!(
                    "registry {} sent a bearer challenge without a realm",
                    r.registry
                ),
                source: None,
            });
        };
        let mut url = reqwest::Url::parse(realm).map_err(|e| RegistryError::BadToken {
            message: format!(
                "registry {} sent a bad token realm {realm:?}: {e}",
                r.registry
            ),
            source: Some(Box::new(e)),
        })?;
        let scope = params
            .get("scope")
            .cloned()
            .unwrap_or_else(|| format!("repository:{}:pull", r.repository));
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = params.get("service") {
                query.append_pair("service", service);
            }
            query.append_pair("scope", &scope);
        }
        self.counters.add_request();
        let mut request = self.http(r).get(url.clone());
        if let Some(c) = self.credentials.get(&r.registry) {
            request = request.basic_auth(&c.username, Some(&c.password));
        }
        let mut resp = request.send().await.map_err(|e| self.send_error(r, e))?;
        let status = resp.status();
        let body = read_small(&mut resp).await;
        if !status.is_success() {
            return Err(RegistryError::TokenRefused {
                server: url.host_str().unwrap_or(realm).to_string(),
                registry: r.registry.clone(),
                status,
                detail: format!(
                    "for scope {scope}: {}",
                    String::from_utf8_lossy(&body).trim()
                ),
            });
        }
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let parsed: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| RegistryError::BadToken {
                message: format!(
                    "the token server of registry {} sent a bad answer: {e}",
                    r.registry
                ),
                source: Some(Box::new(e)),
            })?;
        let value =
            parsed
                .token
                .or(parsed.access_token)
                .ok_or_else(|| RegistryError::BadToken {
                    message: format!("the token server of registry {} sent no token", r.registry),
                    source: None,
                })?;
        let lifetime = parsed
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        Ok(Token {
            value,
            // Renew a little early.
            expires: Instant::now() + lifetime.saturating_sub(Duration::from_secs(5)),
        })
    }

    /// A failed send: the registry is unreachable or slow (transient).
    fn send_error(&self, r: &ImageReference, source: reqwest::Error) -> RegistryError {
        RegistryError::Unreachable {
            endpoint: r.endpoint().to_string(),
            source,
        }
    }

    /// An unsuccessful answer, as the [`RegistryError`] it means.
    async fn status_error(
        &self,
        r: &ImageReference,
        target: Target<'_>,
        mut resp: reqwest::Response,
    ) -> RegistryError {
        let status = resp.status();
        let body = read_small(&mut resp).await;
        let (codes, detail) = registry_errors(&body);
        let registry = r.registry.clone();
        let repository = r.repository.clone();
        match (status, target) {
            (StatusCode::NOT_FOUND, Target::Manifest(_))
                if codes.contains(&ErrorCode::NameUnknown) =>
            {
                RegistryError::NameUnknown {
                    registry,
                    repository,
                }
            }
            (StatusCode::NOT_FOUND, Target::Manifest(reference)) => {
                RegistryError::ManifestUnknown {
                    registry,
                    repository,
                    kind: if reference.starts_with("sha256:") {
                        "digest"
                    } else {
                        "tag"
                    },
                    reference: reference.to_string(),
                }
            }
            (StatusCode::NOT_FOUND, Target::Blob(digest)) => RegistryError::BlobUnknown {
                registry,
                repository,
                digest: digest.to_string(),
            },
            (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, _) => RegistryError::Denied {
                registry,
                repository,
                status,
                detail,
            },
            (status, target) => RegistryError::Status {
                registry,
                status,
                what: match target {
                    Target::Manifest(m) => format!("manifest {m} of repository {repository}"),
                    Target::Blob(b) => format!("blob {b} of repository {repository}"),
                },
                detail,
            },
        }
    }
}

/// Whether `endpoint` (`host[:port]`) is reached over plain HTTP.
fn is_insecure(endpoint: &str, configured: &[String]) -> bool {
    let host = if let Some(rest) = endpoint.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        endpoint.split(':').next().unwrap_or(endpoint)
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    loopback
        || configured
            .iter()
            .any(|c| c.eq_ignore_ascii_case(endpoint) || c.eq_ignore_ascii_case(host))
}

/// The parameters of a `Bearer` challenge.
fn bearer_params(challenge: &str) -> Option<HashMap<String, String>> {
    let challenge = challenge.trim();
    let (scheme, rest) = challenge.split_once(' ').unwrap_or((challenge, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut params = HashMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            // Quoted: up to the next unescaped quote.
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end.min(quoted.len())..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.insert(key, value);
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    Some(params)
}

/// The `code`s of a registry error body, and its messages as ` : msg; msg` (or empty).
fn registry_errors(body: &[u8]) -> (Vec<ErrorCode>, String) {
    match serde_json::from_slice::<ErrorResponse>(body) {
        Ok(e) if !e.errors().is_empty() => {
            let codes = e.errors().iter().map(|e| e.code().clone()).collect();
            let messages: Vec<String> = e
                .errors()
                .iter()
                .map(|e| match e.message().as_deref() {
                    Some(m) if !m.is_empty() => m.to_string(),
                    _ => e.code().to_string().to_ascii_lowercase(),
                })
                .collect();
            (codes, format!(": {}", messages.join("; ")))
        }
        _ => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() || text.len() > 200 {
                (Vec::new(), String::new())
            } else {
                (Vec::new(), format!(": {text}"))
            }
        }
    }
}

/// Up to [`MAX_SMALL_BODY`] bytes of the body (errors ignored: it is only for messages).
async fn read_small(resp: &mut reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() >= MAX_SMALL_BODY {
            body.truncate(MAX_SMALL_BODY);
            break;
        }
    }
    body
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_parse() {
        let p = bearer_params(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        )
        .unwrap();
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/busybox:pull");
        let p = bearer_params(r#"bearer realm=http://x/t, error="insufficient_scope""#).unwrap();
        assert_eq!(p["realm"], "http://x/t");
        assert_eq!(p["error"], "insufficient_scope");
        assert!(bearer_params(r#"Basic realm="x""#).is_none());
    }

    #[test]
    fn loopback_and_configured_registries_are_insecure() {
        let configured = vec!["reg.lan:5000".to_string(), "other.lan".to_string()];
        for e in [
            "127.0.0.1:5000",
            "127.3.4.5",
            "localhost:80",
            "[::1]:5000",
            "reg.lan:5000",
            "other.lan:9999",
        ] {
            assert!(is_insecure(e, &configured), "{e}");
        }
        for e in [
            "reg.lan",
            "reg.lan:5001",
            "ghcr.io",
            "10.0.0.1:5000",
            "registry-1.docker.io",
        ] {
            assert!(!is_insecure(e, &configured), "{e}");
        }
    }

    #[test]
    fn registry_error_bodies() {
        let (codes, detail) = registry_errors(
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"1"}}]}"#,
        );
        assert_eq!(codes, [ErrorCode::ManifestUnknown]);
        assert_eq!(detail, ": manifest unknown");
        assert_eq!(registry_errors(b"").1, "");
    }
}
