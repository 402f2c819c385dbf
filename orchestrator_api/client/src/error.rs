//! [`ClientError`]: why a request, or the reading of a manifest, failed.

use orchestrator_shared_types::api::ErrorBody;

/// Why a call to the REST API failed, or why a manifest could not be read as workloads.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error status; `body` is its error (or one made from a body
    /// that was not the API's error shape). Shown as the server's message alone: callers print
    /// `body.error.details` (every field problem) as they see fit.
    #[error("{}", body.error.message)]
    Http {
        /// The HTTP status.
        status: u16,
        /// The server's error.
        body: ErrorBody,
    },
    /// No answer: connection refused, DNS failure, timeout, or the answer broke off.
    // `reason` is the innermost cause as text rather than a `#[source]`: reqwest's chain has four
    // links ("error sending request", "client error (Connect)", ...) that only bury the one that
    // matters ("Connection refused").
    #[error("cannot reach the orchestrator server at {url}: {reason} (is orchestratord running? set --server or ORCHESTRATOR_SERVER)")]
    Unreachable {
        /// The server's base URL.
        url: String,
        /// The innermost cause, e.g. `Connection refused (os error 111)`.
        reason: String,
    },
    /// The server answered 2xx with a body that is not the expected shape (another version?).
    #[error("cannot decode the server's answer to {request}")]
    Decode {
        /// The request, e.g. `GET /api/v1/workloads`.
        request: String,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// The server answered 2xx without a header the answer needs (another version?).
    #[error("the server's answer to {request} has no valid `{header}` header")]
    MissingHeader {
        /// The request, e.g. `GET /api/v1/agent/containers/c/logs`.
        request: String,
        /// The header.
        header: &'static str,
    },
    /// The certificates to trust (`--ca-cert`) cannot be used.
    #[error("cannot use the CA certificate: {reason}")]
    BadCa {
        /// What is wrong with it.
        reason: String,
    },
    /// The server URL is not a usable `http://` or `https://` URL.
    #[error("`{url}` is not a valid server URL: {reason}")]
    BadServerUrl {
        /// What was given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A YAML document of a manifest is not valid YAML.
    #[error("cannot parse {file}, document {document}, as YAML")]
    ManifestYaml {
        /// Where the manifest came from: a path, `<stdin>`, ...
        file: String,
        /// Position of the document, from 1.
        document: usize,
        /// What the YAML parser said (with line and column).
        #[source]
        source: serde_norway::Error,
    },
    /// A JSON manifest is not valid JSON.
    #[error("cannot parse {file} as JSON")]
    ManifestJson {
        /// Where the manifest came from.
        file: String,
        /// What serde said (with line and column).
        #[source]
        source: serde_json::Error,
    },
    /// A document of a manifest is valid but is not a mapping (a workload is an object with
    /// `name`, `containers`, ...).
    #[error("{file}, document {document}: expected a workload (a mapping), found {found}")]
    NotAWorkload {
        /// Where the manifest came from.
        file: String,
        /// Position of the document, from 1.
        document: usize,
        /// What was found, e.g. `a string`.
        found: &'static str,
    },
    /// A manifest holds nothing but empty documents.
    #[error("{file} contains no workload")]
    EmptyManifest {
        /// Where the manifest came from.
        file: String,
    },
}

impl ClientError {
    /// The HTTP status, when the server answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's error, when it answered with one.
    pub fn body(&self) -> Option<&ErrorBody> {
        match self {
            ClientError::Http { body, .. } => Some(body),
            _ => None,
        }
    }

    /// The server's error code (`not_found`, `validation_failed`, ...), when it answered.
    pub fn code(&self) -> Option<&str> {
        self.body().map(|b| b.error.code.as_str())
    }

    /// The server's message, when it answered.
    pub fn message(&self) -> Option<&str> {
        self.body().map(|b| b.error.message.as_str())
    }

    /// Whether trying again later may succeed: the server was unreachable, or answered 503
    /// (its store is unavailable, or its loop is starting or stopping). `--wait` keeps polling
    /// through these.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Unreachable { .. } => true,
            ClientError::Http { status, .. } => *status == 503,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unreachable_and_503_are_transient() {
        let http = |status| ClientError::Http {
            status,
            body: ErrorBody::from_response(status, "x", ""),
        };
        assert!(http(503).is_transient());
        assert!(!http(404).is_transient());
        let down = ClientError::Unreachable {
            url: "http://127.0.0.1:9".into(),
            reason: "Connection refused".into(),
        };
        assert!(down.is_transient());
        assert_eq!(down.status(), None);
        assert_eq!(http(404).status(), Some(404));
        assert_eq!(http(404).code(), Some("http_404"));
    }
}
