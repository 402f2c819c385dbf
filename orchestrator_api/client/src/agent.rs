//! [`AgentClient`]: a daemon's client of another daemon's node agent (`/api/v1/agent/...`), to
//! read the output of containers on that node.

use crate::client::{error_body, REQUEST_TIMEOUT};
use crate::{Client, ClientError};
use container_runtime_interface::{LogChunk, LogRequest};
use orchestrator_shared_types::ContainerId;
use reqwest::{Method, Url};
use std::time::UNIX_EPOCH;

/// The header of an agent's logs answer holding the cursor after its bytes.
pub const LOG_NEXT_HEADER: &str = "x-log-next";

/// A client of one daemon's agent routes, sending the cluster token when there is one: the
/// REST [`Client`] (its URL checks, token, URL building and errors) on other routes. Cheap to
/// clone (the connection pool is shared).
#[derive(Clone, Debug)]
pub struct AgentClient {
    client: Client,
}

impl AgentClient {
    /// A client of the daemon at `server` (its API's base URL, e.g. `http://10.0.0.5:8080`),
    /// sending `token` (the cluster's token) as `Authorization: Bearer` when given and not
    /// empty.
    pub fn new(server: &str, token: Option<String>) -> Result<Self, ClientError> {
        Ok(Self {
            client: Client::new(server, token)?,
        })
    }

    /// The daemon's base URL, without a trailing slash.
    pub fn server(&self) -> &str {
        self.client.server()
    }

    /// `GET /api/v1/agent/containers/{id}/logs`: what container `id` of the agent's node wrote,
    /// selected as `req` says (the agent caps a chunk at 1 MiB), with the cursor to read on
    /// from. An unknown container is a 404 `ClientError::Http`; a wrong token a 401.
    pub async fn container_logs(
        &self,
        id: &ContainerId,
        req: &LogRequest,
    ) -> Result<LogChunk, ClientError> {
        let c = &self.client;
        let url = self.logs_url(id, req);
        let request_name = format!("GET {}", url.path());
        let request = c.request(Method::GET, url).timeout(REQUEST_TIMEOUT);
        let response = request.send().await.map_err(|e| c.unreachable(&e))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.map_err(|e| c.unreachable(&e))?;
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
            .map_err(|e| c.unreachable(&e))?
            .to_vec();
        Ok(LogChunk { data, next })
    }

    /// The URL of the logs of `id` with the query of `req` (`since` in milliseconds since the
    /// Unix epoch), the id percent-encoded.
    fn logs_url(&self, id: &ContainerId, req: &LogRequest) -> Url {
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
        self.client
            .url(&["agent", "containers", id.as_str(), "logs"], &query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn logs_urls_carry_the_request() {
        let c = AgentClient::new("http://10.0.0.5:8080/", Some(String::new())).unwrap();
        assert!(!c.client.has_token(), "an empty token is no token");
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
