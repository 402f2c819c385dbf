//! An async client of the orchestrator's REST API (`docs/api.md`), for the tools.
//!
//! Every failure is an [`ApiError`] that keeps the server's error body, so a tool can hand the
//! model the server's own message with every field problem (`containers[0].image: ...`).

use orchestrator_shared_types::api::{ErrorBody, ErrorInfo};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Write as _;
use std::time::Duration;

/// How long to wait for a TCP connection: a local daemon answers at once.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take in total (the API itself gives up after 30 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(35);

/// Why a request to the REST API failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The server answered with an error status and (usually) its JSON error body.
    #[error("{}", describe_http(*status, body))]
    Http {
        /// The HTTP status.
        status: u16,
        /// The server's error, or one made up from a body that was not the API's shape.
        body: ErrorBody,
    },
    /// No answer at all: connection refused, DNS failure, timeout.
    #[error("cannot reach the orchestrator API at {url}: {reason} (is orchestratord running, and is --server / ORCHESTRATOR_SERVER right?)")]
    Unreachable {
        /// The server's base URL.
        url: String,
        /// The innermost cause, e.g. `Connection refused (os error 111)`.
        reason: String,
    },
    /// A 2xx answer whose body is not the expected shape (a different server version?).
    #[error("cannot decode the orchestrator's answer to {request}: {reason}")]
    Decode {
        /// The request, e.g. `GET /api/v1/workloads`.
        request: String,
        /// What serde said.
        reason: String,
    },
    /// The server URL is not a usable `http://` URL.
    #[error("`{url}` is not a valid orchestrator server URL: {reason}")]
    BadServerUrl {
        /// What was given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl ApiError {
    /// The HTTP status, when the server answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's error code (`not_found`, `validation_failed`, ...), when it answered.
    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::Http { body, .. } => Some(&body.error.code),
            _ => None,
        }
    }

    /// The server's message, when it answered.
    pub fn message(&self) -> Option<&str> {
        match self {
            ApiError::Http { body, .. } => Some(&body.error.message),
            _ => None,
        }
    }
}

/// `HTTP 400 validation_failed: invalid workload: 2 problems` and one line per field problem.
fn describe_http(status: u16, body: &ErrorBody) -> String {
    let ErrorInfo {
        code,
        message,
        details,
    } = &body.error;
    let mut text = format!("the orchestrator API answered HTTP {status} {code}: {message}");
    for d in details {
        let _ = write!(text, "\n- {}: {}", d.field, d.message);
    }
    text
}

/// A client of one orchestrator server. Cheap to clone (the connection pool is shared).
#[derive(Clone, Debug)]
pub struct ApiClient {
    base: Url,
    http: reqwest::Client,
    token: Option<String>,
}

impl ApiClient {
    /// A client of the server at `server` (e.g. `http://127.0.0.1:8080`), sending `token` as
    /// `Authorization: Bearer` when given.
    pub fn new(server: &str, token: Option<String>) -> Result<Self, ApiError> {
        let bad = |reason: String| ApiError::BadServerUrl {
            url: server.to_owned(),
            reason,
        };
        let base = Url::parse(server).map_err(|e| bad(e.to_string()))?;
        if base.scheme() != "http" {
            // reqwest is built without TLS in this workspace: say so now, not on the first call.
            return Err(bad("only http:// is supported".to_owned()));
        }
        if base.cannot_be_a_base() || base.host().is_none() {
            return Err(bad("no host".to_owned()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| bad(innermost(&e)))?;
        Ok(Self {
            base,
            http,
            token: token.filter(|t| !t.is_empty()),
        })
    }

    /// The server's base URL as given, without a trailing slash.
    pub fn server(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// `GET /api/v1/<segments>?<query>`, decoded as JSON.
    pub async fn get<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<T, ApiError> {
        self.call(Method::GET, segments, query, None::<&()>).await
    }

    /// A request with an optional JSON body, decoded as JSON.
    pub async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&B>,
    ) -> Result<T, ApiError> {
        let (request, _, text) = self.raw(method, segments, query, body).await?;
        serde_json::from_str(&text).map_err(|e| ApiError::Decode {
            request,
            reason: e.to_string(),
        })
    }

    /// A request whose answer is returned as text with its content type (for logs, which are
    /// plain text).
    pub async fn get_text(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<(String, String), ApiError> {
        let (_, content_type, text) = self.raw(Method::GET, segments, query, None::<&()>).await?;
        Ok((content_type, text))
    }

    async fn raw<B: Serialize + ?Sized>(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&B>,
    ) -> Result<(String, String, String), ApiError> {
        let url = self.url(segments, query);
        let request_name = format!("{method} {}", url.path());
        tracing::debug!(request = %request_name, query = url.query().unwrap_or(""), "calling the API");
        let mut request = self.http.request(method, url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let text = response.text().await.map_err(|e| self.unreachable(&e))?;
        if !status.is_success() {
            tracing::debug!(request = %request_name, status = status.as_u16(), "the API refused");
            return Err(ApiError::Http {
                status: status.as_u16(),
                body: error_body(status, &text),
            });
        }
        Ok((request_name, content_type, text))
    }

    /// The URL of `/api/v1/<segments...>?<query>`, each segment percent-encoded so that a name
    /// chosen by a model can never change the route.
    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["api", "v1"]).extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        url
    }

    fn unreachable(&self, e: &reqwest::Error) -> ApiError {
        let reason = if e.is_timeout() {
            "timed out".to_owned()
        } else {
            innermost(e)
        };
        ApiError::Unreachable {
            url: self.server().to_owned(),
            reason,
        }
    }
}

/// The server's error, or one made from a body that is not the API's error shape (a proxy's
/// page, a plain-text 404 from something that is not orchestratord).
fn error_body(status: StatusCode, text: &str) -> ErrorBody {
    ErrorBody::from_response(
        status.as_u16(),
        status.canonical_reason().unwrap_or("error"),
        text,
    )
}

/// The last error of a source chain: the one a person (or a model) can act on.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last: &dyn std::error::Error = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_shared_types::FieldError;

    #[test]
    fn urls_are_built_under_api_v1_with_encoded_segments() {
        let c = ApiClient::new("http://127.0.0.1:8080/", None).unwrap();
        assert_eq!(
            c.url(&["workloads", "a/b"], &[]).as_str(),
            "http://127.0.0.1:8080/api/v1/workloads/a%2Fb"
        );
        let q = [("limit", "5".to_owned()), ("continue", "x=".to_owned())];
        assert_eq!(
            c.url(&["events"], &q).as_str(),
            "http://127.0.0.1:8080/api/v1/events?limit=5&continue=x%3D"
        );
        assert_eq!(c.server(), "http://127.0.0.1:8080");
    }

    #[test]
    fn bad_server_urls_are_refused() {
        for url in ["127.0.0.1:8080", "https://x", "nonsense"] {
            assert!(
                matches!(
                    ApiClient::new(url, None),
                    Err(ApiError::BadServerUrl { .. })
                ),
                "{url}"
            );
        }
    }

    #[test]
    fn http_errors_keep_every_field_problem() {
        let body = ErrorBody {
            error: ErrorInfo {
                code: "validation_failed".into(),
                message: "invalid workload: 2 problems".into(),
                details: vec![
                    FieldError {
                        field: "name".into(),
                        message: "must be a DNS-1123 label".into(),
                    },
                    FieldError {
                        field: "containers[0].resources.memory_mb".into(),
                        message: "must be greater than 0".into(),
                    },
                ],
            },
        };
        let e = ApiError::Http { status: 400, body };
        assert_eq!(
            e.to_string(),
            "the orchestrator API answered HTTP 400 validation_failed: invalid workload: 2 problems\n\
             - name: must be a DNS-1123 label\n\
             - containers[0].resources.memory_mb: must be greater than 0"
        );
        assert_eq!(e.code(), Some("validation_failed"));
    }

    #[test]
    fn bodies_that_are_not_the_api_shape_become_errors_too() {
        let b = error_body(StatusCode::BAD_GATEWAY, "<html>proxy</html>");
        assert_eq!(b.error.code, "http_502");
        assert!(b.error.message.contains("proxy"), "{}", b.error.message);
    }
}
