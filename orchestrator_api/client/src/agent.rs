//! [`AgentClient`]: a daemon's client of another daemon's node agent (`/api/v1/agent/...`), to
//! read the output of containers on that node.

use crate::client::{error_body, innermost, parse_server, CONNECT_TIMEOUT, REQUEST_TIMEOUT};
use crate::ClientError;
use container_runtime_interface::{LogChunk, LogRequest};
use orchestrator_shared_types::ContainerId;
use reqwest::Url;
use std::time::UNIX_EPOCH;

/// The header of an agent's logs answer holding the cursor after its bytes.
pub const LOG_NEXT_HEADER: &str = "x-log-next";

/// A client of one daemon's agent routes, sending the cluster token when there is one. Cheap to
/// clone (the connection pool is shared).
#[derive(Clone)]
pub struct AgentClient {
    base: Url,
    http: reqwest::Client,
    token: Option<String>,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token: clients end up in logs.
        f.debug_struct("AgentClient")
            .field("base", &self.base.as_str())
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish_non_exhaustive()
    }
}

impl AgentClient {
    /// A client of the daemon at `server` (its API's base URL, e.g. `http://10.0.0.5:8080`),
    /// sending `token` (the cluster's token) as `Authorization: Bearer` when given and not
    /// empty.
    pub fn new(server: &str, token: Option<String>) -> Result<Self, ClientError> {
        let base = parse_server(server)?;
        let bad = |reason: String| ClientError::BadServerUrl {
            url: server.to_owned(),
            reason,
        };
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

    /// The daemon's base URL, without a trailing slash.
    pub fn server(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// `GET /api/v1/agent/containers/{id}/logs`: what container `id` of the agent's node wrote,
    /// selected as `req` says (the agent caps a chunk at 1 MiB), with the cursor to read on
    /// from. An unknown container is a 404 `ClientError::Http`; a wrong token a 401.
    pub async fn container_logs(
        &self,
        id: &ContainerId,
        req: &LogRequest,
    ) -> Result<LogChunk, ClientError> {
        let url = self.logs_url(id, req);
        let request_name = format!("GET {}", url.path());
        let mut request = self.http.get(url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.map_err(|e| self.unreachable(&e))?;
            return Err(ClientError::Http {
                status: status.as_u16(),
                body: error_body(status, &text),
            });
        }
        let next = response
            .headers()
            .get(LOG_NEXT_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or(ClientError::MissingHeader {
                request: request_name,
                header: LOG_NEXT_HEADER,
            })?;
        let data = response
            .bytes()
            .await
            .map_err(|e| self.unreachable(&e))?
            .to_vec();
        Ok(LogChunk { data, next })
    }

    /// The URL of the logs of `id` with the query of `req` (`since` in milliseconds since the
    /// Unix epoch), the id percent-encoded.
    fn logs_url(&self, id: &ContainerId, req: &LogRequest) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty()
                .extend(["api", "v1", "agent", "containers", id.as_str(), "logs"]);
        }
        let mut query = Vec::new();
        if let Some(from) = req.from {
            query.push(("from", from.to_string()));
        }
        if let Some(tail) = req.tail {
            query.push(("tail", tail.to_string()));
        }
        if let Some(limit) = req.limit_bytes {
            query.push(("limit_bytes", limit.to_string()));
        }
        if let Some(since) = req.since {
            // Before the epoch cannot be said in the query; the epoch itself selects the same.
            let ms = since
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis();
            query.push(("since", ms.to_string()));
        }
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        url
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn logs_urls_carry_the_request() {
        let c = AgentClient::new("http://10.0.0.5:8080/", Some(String::new())).unwrap();
        assert!(c.token.is_none(), "an empty token is no token");
        let id = ContainerId::from("web-1/main");
        assert_eq!(
            c.logs_url(&id, &LogRequest::default()).as_str(),
            "http://10.0.0.5:8080/api/v1/agent/containers/web-1%2Fmain/logs"
        );
        let req = LogRequest {
            from: Some(7),
            tail: Some(3),
            limit_bytes: Some(100),
            since: Some(UNIX_EPOCH + Duration::from_millis(1_500)),
        };
        assert_eq!(
            c.logs_url(&id, &req).query(),
            Some("from=7&tail=3&limit_bytes=100&since=1500")
        );
    }
}
