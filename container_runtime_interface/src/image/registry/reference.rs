//! Image references: `[host[:port]/]path[:tag][@sha256:digest]`, normalized the way Docker does.

use super::super::ImageError;
use std::fmt;
use std::str::FromStr;

/// The registry of references without a host.
pub const DOCKER_HUB: &str = "docker.io";
/// The host serving [`DOCKER_HUB`]'s API.
const DOCKER_HUB_ENDPOINT: &str = "registry-1.docker.io";
/// Longest repository name (distribution's `NameTotalLengthMax`).
const MAX_NAME_LEN: usize = 255;
/// Longest tag.
const MAX_TAG_LEN: usize = 128;

/// A parsed, normalized image reference: `busybox` is `docker.io/library/busybox:latest`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageReference {
    /// Registry as written (`127.0.0.1:5000`, `ghcr.io`), or `docker.io` when none was.
    pub registry: String,
    /// Repository path inside the registry (`library/busybox`, `demo/app`).
    pub repository: String,
    /// Tag; `latest` when neither a tag nor a digest was given.
    pub tag: Option<String>,
    /// `sha256:<64 hex>` when the reference pins a digest.
    pub digest: Option<String>,
}

impl ImageReference {
    /// Parses and normalizes `reference`; the error names the part that is wrong.
    pub fn parse(reference: &str) -> Result<Self, ImageError> {
        parse(reference).map_err(|reason| ImageError::InvalidReference {
            reference: reference.to_string(),
            reason,
        })
    }

    /// The host (and port) to talk to: `registry-1.docker.io` for Docker Hub, else the registry.
    pub fn endpoint(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_ENDPOINT
        } else {
            &self.registry
        }
    }

    /// What to ask the registry for: the digest when pinned, else the tag.
    pub fn manifest_reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for ImageReference {
    type Err = ImageError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

fn parse(reference: &str) -> Result<ImageReference, String> {
    if reference.is_empty() {
        return Err("the reference is empty".into());
    }
    if let Some(c) = reference
        .chars()
        .find(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!("it contains the character {c:?}"));
    }
    let (rest, digest) = match reference.split_once('@') {
        Some((rest, digest)) => (rest, Some(parse_digest(digest)?)),
        None => (reference, None),
    };
    // A tag follows the last `:` after the last `/` (a `:` before it belongs to a port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => {
            let tag = &rest[last_slash + i + 1..];
            check_tag(tag)?;
            (&rest[..last_slash + i], Some(tag.to_string()))
        }
        None => (rest, None),
    };
    if name.is_empty() {
        return Err("the repository name is empty".into());
    }
    let (registry, path) = match name.split_once('/') {
        Some((first, path))
            if first.contains(['.', ':']) || first == "localhost" || first.starts_with('[') =>
        {
            check_registry(first)?;
            (first.to_string(), path)
        }
        _ => (DOCKER_HUB.to_string(), name),
    };
    let registry = match registry.as_str() {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
        _ => registry,
    };
    check_repository(path)?;
    let repository = if registry == DOCKER_HUB && !path.contains('/') {
        format!("library/{path}")
    } else {
        path.to_string()
    };
    if repository.len() > MAX_NAME_LEN {
        return Err(format!(
            "repository {repository:?} is longer than {MAX_NAME_LEN} characters"
        ));
    }
    let tag = match (tag, &digest) {
        (None, None) => Some("latest".to_string()),
        (tag, _) => tag,
    };
    Ok(ImageReference {
        registry,
        repository,
        tag,
        digest,
    })
}

/// `sha256:<64 lowercase hex>`; other algorithms are refused.
pub(super) fn parse_digest(digest: &str) -> Result<String, String> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err(format!(
            "digest {digest:?} must look like sha256:<64 hex digits>"
        ));
    };
    if algorithm != "sha256" {
        return Err(format!(
            "digest {digest:?} uses algorithm {algorithm:?}; only sha256 is supported"
        ));
    }
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!(
            "digest {digest:?} must have 64 lowercase hex digits after sha256:"
        ));
    }
    Ok(digest.to_string())
}

fn check_tag(tag: &str) -> Result<(), String> {
    let valid_first = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let valid = |c: char| valid_first(c) || c == '.' || c == '-';
    if tag.is_empty() {
        return Err("the tag after ':' is empty".into());
    }
    if tag.len() > MAX_TAG_LEN || !tag.starts_with(valid_first) || !tag.chars().all(valid) {
        return Err(format!(
            "tag {tag:?} is invalid (up to {MAX_TAG_LEN} letters, digits, '_', '.', '-', not starting with '.' or '-')"
        ));
    }
    Ok(())
}

fn check_registry(registry: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("registry {registry:?} is invalid: {why}"));
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        let Some((ip, after)) = rest.split_once(']') else {
            return bad("missing ']' after the IPv6 address");
        };
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return bad("bad IPv6 address");
        }
        match after {
            "" => (None, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return bad("unexpected text after ']'"),
            },
        }
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(registry), None),
        }
    };
    if let Some(port) = port {
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return bad(&format!("port {port:?} is not a number from 1 to 65535"));
        }
    }
    if let Some(host) = host {
        let label_ok = |l: &str| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        };
        if !host.split('.').all(label_ok) {
            return bad(&format!(
                "host {host:?} must be dot-separated labels of letters, digits and '-'"
            ));
        }
    }
    Ok(())
}

/// Path components: lowercase letters and digits, separated by `.`, `_`, `__` or dashes.
fn check_repository(path: &str) -> Result<(), String> {
    for component in path.split('/') {
        let bad = |why: &str| {
            Err(format!(
                "repository {path:?} is invalid: component {component:?} {why}"
            ))
        };
        if component.is_empty() {
            return Err(format!(
                "repository {path:?} is invalid: it has an empty component"
            ));
        }
        if component.chars().any(|c| c.is_ascii_uppercase()) {
            return bad("must be lowercase");
        }
        let bytes = component.as_bytes();
        let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        if let Some(c) = component
            .chars()
            .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c)))
        {
            return bad(&format!("contains the invalid character {c:?}"));
        }
        if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
            return bad("must start and end with a lowercase letter or digit");
        }
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if alnum(b) {
                i += 1;
                continue;
            }
            // A separator: `.`, `_`, `__` or one or more `-`.
            let run = bytes[i..].iter().take_while(|&&c| c == b).count();
            let ok = match b {
                b'.' => run == 1,
                b'_' => run <= 2,
                b'-' => true,
                _ => unreachable!("checked above"),
            };
            if !ok {
                return bad("has an invalid separator (use '.', '_', '__' or '-')");
            }
            i += run;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_and_normalizes() {
        /// Input, registry, repository, tag, digest.
        type Case<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, Option<&'a str>);
        let cases: &[Case] = &[
            (
                "busybox",
                "docker.io",
                "library/busybox",
                Some("latest"),
                None,
            ),
            (
                "busybox:1.36",
                "docker.io",
                "library/busybox",
                Some("1.36"),
                None,
            ),
            ("user/app", "docker.io", "user/app", Some("latest"), None),
            (
                "docker.io/busybox",
                "docker.io",
                "library/busybox",
                Some("latest"),
                None,
            ),
            (
                "index.docker.io/user/app:v1",
                "docker.io",
                "user/app",
                Some("v1"),
                None,
            ),
            ("localhost/app", "localhost", "app", Some("latest"), None),
            (
                "localhost:5000/a/b:t",
                "localhost:5000",
                "a/b",
                Some("t"),
                None,
            ),
            (
                "127.0.0.1:5000/demo/busybox:1",
                "127.0.0.1:5000",
                "demo/busybox",
                Some("1"),
                None,
            ),
            ("ghcr.io/o/r/x", "ghcr.io", "o/r/x", Some("latest"), None),
            ("[::1]:5000/app", "[::1]:5000", "app", Some("latest"), None),
            (
                "my-reg.example.com/a_b/c__d/e--f.g",
                "my-reg.example.com",
                "a_b/c__d/e--f.g",
                Some("latest"),
                None,
            ),
            (
                &format!("busybox@{D}"),
                "docker.io",
                "library/busybox",
                None,
                Some(D),
            ),
            (
                &format!("r.io:443/x:tag@{D}"),
                "r.io:443",
                "x",
                Some("tag"),
                Some(D),
            ),
        ];
        for (input, registry, repository, tag, digest) in cases {
            let r = ImageReference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.registry, *registry, "{input}");
            assert_eq!(r.repository, *repository, "{input}");
            assert_eq!(r.tag.as_deref(), *tag, "{input}");
            assert_eq!(r.digest.as_deref(), *digest, "{input}");
            // Display round-trips.
            assert_eq!(ImageReference::parse(&r.to_string()).unwrap(), r, "{input}");
        }
        assert_eq!(
            ImageReference::parse("busybox").unwrap().to_string(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            ImageReference::parse("busybox").unwrap().endpoint(),
            "registry-1.docker.io"
        );
        assert_eq!(
            ImageReference::parse(&format!("a:b@{D}"))
                .unwrap()
                .manifest_reference(),
            D
        );
    }

    #[test]
    fn errors_name_the_bad_part() {
        let cases = [
            ("", "empty"),
            ("Busybox", "must be lowercase"),
            ("busybox:", "tag after ':' is empty"),
            ("busybox:-x", "tag \"-x\" is invalid"),
            ("busybox@sha256:abc", "64 lowercase hex"),
            ("busybox@md5:abc", "only sha256"),
            ("busybox@nodigest", "sha256:<64 hex digits>"),
            ("reg.io:99999/app", "port \"99999\""),
            ("reg..io/app", "host \"reg..io\""),
            ("reg.io/a//b", "empty component"),
            ("reg.io/a/b$", "invalid character '$'"),
            ("reg.io/a/.b", "must start and end"),
            ("reg.io/a/b...c", "invalid separator"),
            ("reg.io/", "empty component"),
            ("busy box", "character ' '"),
        ];
        for (input, needle) in cases {
            let e = ImageReference::parse(input).unwrap_err();
            assert!(!e.is_transient());
            let msg = e.to_string();
            assert!(msg.contains(needle), "{input:?}: {msg}");
            assert!(msg.contains(&format!("{input:?}")), "{input:?}: {msg}");
        }
        let long = format!("reg.io/{}", "a".repeat(300));
        assert!(ImageReference::parse(&long)
            .unwrap_err()
            .to_string()
            .contains("longer than"));
    }
}
