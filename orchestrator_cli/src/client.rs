//! A small blocking client of the REST API (`docs/api.md`).
//!
//! Blocking on purpose: a CLI does one thing at a time, and a blocking client keeps every command a
//! straight sequence of calls without a runtime. Every failure is a typed [`ClientError`] that keeps
//! the server's `ErrorBody`, so the caller can show the server's message and its field details.

use orchestrator_shared_types::api::{
    ClusterInfo, ErrorBody, ListResponse, NodeView, ScaleRequest, WorkloadDetail, WorkloadView,
};
use orchestrator_shared_types::{Event, WorkloadInstance};
use reqwest::blocking::Client as HttpClient;
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::Read;
use std::time::Duration;

/// How long to wait for a TCP connection: a local daemon answers at once, so a slow connect means
/// a wrong address, and the user should hear about it quickly.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take in total.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error status; `body` is its error (or one made from a body that
    /// was not the API's error shape).
    #[error("{}", body.error.message)]
    Http {
        /// The HTTP status.
        status: u16,
        /// The server's error.
        body: ErrorBody,
    },
    /// No answer: connection refused, DNS failure, timeout.
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
    /// The server answered 2xx with a body that is not the expected shape.
    #[error("cannot decode the server's answer to {request}")]
    Decode {
        /// The request, e.g. `GET /api/v1/workloads`.
        request: String,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// The server URL is not a usable `http://` URL.
    #[error("`{url}` is not a valid server URL: {reason}")]
    BadServerUrl {
        /// What was given.
        url: String,
        /// What is wrong with it.
        reason: String,
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

    /// Whether trying again later may succeed: the server was unreachable or its store was.
    /// Used by `--wait`, which keeps polling through a daemon restart.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Unreachable { .. } => true,
            ClientError::Http { status, .. } => *status == 503,
            _ => false,
        }
    }
}

/// A client of one orchestrator server.
#[derive(Clone, Debug)]
pub struct Client {
    base: Url,
    http: HttpClient,
}

impl Client {
    /// A client of the server at `server`, e.g. `http://127.0.0.1:8080`.
    pub fn new(server: &str) -> Result<Self, ClientError> {
        let bad = |reason: String| ClientError::BadServerUrl {
            url: server.to_owned(),
            reason,
        };
        let base = Url::parse(server).map_err(|e| bad(e.to_string()))?;
        if base.scheme() != "http" {
            // The client is built without TLS (workspace dependency has no TLS feature): say so
            // now rather than fail obscurely on the first request.
            return Err(bad("only http:// is supported".to_owned()));
        }
        if base.cannot_be_a_base() || base.host().is_none() {
            return Err(bad("no host".to_owned()));
        }
        let http = HttpClient::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| bad(innermost(&e)))?;
        Ok(Self { base, http })
    }

    /// The server's base URL as given.
    pub fn server(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// `POST /api/v1/workloads`: creates a workload from a definition (any JSON value: the server
    /// validates it and reports every problem with its field path).
    pub fn create_workload(
        &self,
        definition: &serde_json::Value,
    ) -> Result<WorkloadView, ClientError> {
        self.call(Method::POST, &["workloads"], &[], Some(definition))
    }

    /// `PUT /api/v1/workloads/{name}`: replaces a workload's definition (404 if absent).
    pub fn replace_workload(
        &self,
        name: &str,
        definition: &serde_json::Value,
    ) -> Result<WorkloadView, ClientError> {
        self.call(Method::PUT, &["workloads", name], &[], Some(definition))
    }

    /// `GET /api/v1/workloads`: every workload, sorted by name.
    pub fn list_workloads(&self) -> Result<ListResponse<WorkloadView>, ClientError> {
        self.call(Method::GET, &["workloads"], &[], None::<&()>)
    }

    /// `GET /api/v1/workloads/{name-or-id}`: one workload with instances, events, pending reason.
    pub fn get_workload(&self, name: &str) -> Result<WorkloadDetail, ClientError> {
        self.call(Method::GET, &["workloads", name], &[], None::<&()>)
    }

    /// `DELETE /api/v1/workloads/{name}`: returns the deleted definition.
    pub fn delete_workload(&self, name: &str) -> Result<WorkloadView, ClientError> {
        self.call(Method::DELETE, &["workloads", name], &[], None::<&()>)
    }

    /// `POST /api/v1/workloads/{name}/scale`.
    pub fn scale_workload(&self, name: &str, replicas: u32) -> Result<WorkloadView, ClientError> {
        let body = ScaleRequest { replicas };
        self.call(
            Method::POST,
            &["workloads", name, "scale"],
            &[],
            Some(&body),
        )
    }

    /// `GET /api/v1/nodes`.
    pub fn list_nodes(&self) -> Result<ListResponse<NodeView>, ClientError> {
        self.call(Method::GET, &["nodes"], &[], None::<&()>)
    }

    /// `GET /api/v1/nodes/{name-or-id}`.
    pub fn get_node(&self, name: &str) -> Result<NodeView, ClientError> {
        self.call(Method::GET, &["nodes", name], &[], None::<&()>)
    }

    /// `POST /api/v1/nodes/{name-or-id}/drain` or `.../uncordon`.
    pub fn cordon_node(&self, name: &str, drain: bool) -> Result<NodeView, ClientError> {
        let action = if drain { "drain" } else { "uncordon" };
        self.call(Method::POST, &["nodes", name, action], &[], None::<&()>)
    }

    /// `GET /api/v1/instances?workload=W&node=N`, both filters optional.
    pub fn list_instances(
        &self,
        workload: Option<&str>,
        node: Option<&str>,
    ) -> Result<ListResponse<WorkloadInstance>, ClientError> {
        let mut query = Vec::new();
        if let Some(w) = workload {
            query.push(("workload", w.to_owned()));
        }
        if let Some(n) = node {
            query.push(("node", n.to_owned()));
        }
        self.call(Method::GET, &["instances"], &query, None::<&()>)
    }

    /// `GET /api/v1/events?workload=W&limit=N`: oldest first.
    pub fn list_events(
        &self,
        workload: Option<&str>,
        limit: Option<u32>,
    ) -> Result<ListResponse<Event>, ClientError> {
        let mut query = Vec::new();
        if let Some(w) = workload {
            query.push(("workload", w.to_owned()));
        }
        if let Some(l) = limit {
            query.push(("limit", l.to_string()));
        }
        self.call(Method::GET, &["events"], &query, None::<&()>)
    }

    /// `GET /api/v1/instances/{id}/logs`: an instance's output, to read as it arrives with
    /// [`LogStream::next_piece`]. With `follow`, the server keeps sending until the container is
    /// replaced or removed, so no overall timeout applies.
    pub fn instance_logs(
        &self,
        instance: &str,
        container: Option<&str>,
        tail: Option<usize>,
        since: Option<&str>,
        follow: bool,
    ) -> Result<LogStream, ClientError> {
        let mut query = Vec::new();
        if let Some(c) = container {
            query.push(("container", c.to_owned()));
        }
        if let Some(t) = tail {
            query.push(("tail", t.to_string()));
        }
        if let Some(s) = since {
            query.push(("since", s.to_owned()));
        }
        if follow {
            query.push(("follow", "true".to_owned()));
        }
        let url = self.url(&["instances", instance, "logs"], &query);
        let http = if follow {
            HttpClient::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(None)
                .build()
                .map_err(|e| self.unreachable(&e))?
        } else {
            self.http.clone()
        };
        let response = http.get(url).send().map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().map_err(|e| self.unreachable(&e))?;
            return Err(ClientError::Http {
                status: status.as_u16(),
                body: error_body(status, &text),
            });
        }
        Ok(LogStream {
            response,
            server: self.server().to_owned(),
        })
    }

    /// `GET /api/v1/cluster`.
    pub fn cluster_info(&self) -> Result<ClusterInfo, ClientError> {
        self.call(Method::GET, &["cluster"], &[], None::<&()>)
    }

    /// The URL of `/api/v1/<segments...>?<query>`, each segment percent-encoded so that a name
    /// typed by the user can never change the route.
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

    fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let url = self.url(segments, query);
        let request_name = format!("{method} {}", url.path());
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        let text = response.text().map_err(|e| self.unreachable(&e))?;
        if !status.is_success() {
            return Err(ClientError::Http {
                status: status.as_u16(),
                body: error_body(status, &text),
            });
        }
        serde_json::from_str(&text).map_err(|source| ClientError::Decode {
            request: request_name,
            source,
        })
    }

    fn unreachable(&self, e: &reqwest::Error) -> ClientError {
        let reason = if e.is_timeout() {
            "timed out".to_owned()
        } else {
            innermost(e)
        };
        ClientError::Unreachable {
            url: self.server().to_owned(),
            reason,
        }
    }
}

/// The body of a logs answer, read as it arrives.
#[derive(Debug)]
pub struct LogStream {
    response: reqwest::blocking::Response,
    server: String,
}

impl LogStream {
    /// The next bytes received (as many as have arrived, at most 64 KiB); `None` at the end.
    pub fn next_piece(&mut self) -> Result<Option<Vec<u8>>, ClientError> {
        let mut buf = vec![0; 64 * 1024];
        let n = self
            .response
            .read(&mut buf)
            .map_err(|e| ClientError::Unreachable {
                url: self.server.clone(),
                reason: format!("the logs stopped coming: {}", innermost(&e)),
            })?;
        buf.truncate(n);
        Ok((n > 0).then_some(buf))
    }
}

/// The server's error, or one made from a body that is not the API's error shape (a proxy's HTML
/// page, a plain-text 404 from something that is not orchestratord).
fn error_body(status: StatusCode, text: &str) -> ErrorBody {
    ErrorBody::from_response(
        status.as_u16(),
        status.canonical_reason().unwrap_or("error"),
        text,
    )
}

/// The last error of a source chain, which is the one a person can act on.
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

    #[test]
    fn urls_are_built_under_api_v1_with_encoded_segments() {
        let c = Client::new("http://127.0.0.1:8080/").unwrap();
        assert_eq!(
            c.url(&["workloads", "a/b"], &[]).as_str(),
            "http://127.0.0.1:8080/api/v1/workloads/a%2Fb"
        );
        let q = [("workload", "web".to_owned()), ("limit", "5".to_owned())];
        assert_eq!(
            c.url(&["events"], &q).as_str(),
            "http://127.0.0.1:8080/api/v1/events?workload=web&limit=5"
        );
        assert_eq!(c.server(), "http://127.0.0.1:8080");
    }

    #[test]
    fn bad_server_urls_are_refused() {
        for url in ["127.0.0.1:8080", "https://x", "nonsense"] {
            assert!(
                matches!(Client::new(url), Err(ClientError::BadServerUrl { .. })),
                "{url}"
            );
        }
    }

    #[test]
    fn non_api_error_bodies_become_messages() {
        let b = error_body(StatusCode::BAD_GATEWAY, "<html>oops</html>");
        assert_eq!(b.error.code, "http_502");
        assert_eq!(b.error.message, "HTTP 502 Bad Gateway: <html>oops</html>");
        let b = error_body(
            StatusCode::NOT_FOUND,
            r#"{"error":{"code":"not_found","message":"no workload web"}}"#,
        );
        assert_eq!(b.error.message, "no workload web");
    }
}
