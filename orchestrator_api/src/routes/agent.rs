//! `/api/v1/agent/...`: what a cluster daemon serves, as its node's agent, to the other daemons
//! of its cluster. A daemon answers `logs` of an instance on another node by reading them from
//! that node's agent, which reads its local runtime.
//!
//! Enabled by [`ApiState::with_agent`]; without it every agent route answers 404. With a cluster
//! token, a request must carry `Authorization: Bearer <token>` (compared in constant time).

use crate::extract::ApiQuery;
use crate::routes::logs::MAX_LOG_BYTES;
use crate::state::AgentApi;
use crate::{ApiError, ApiState};
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Path, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{Extensions, HeaderMap};
use axum::response::{IntoResponse, Response};
use container_runtime_interface::{LogRequest, RuntimeError};
use orchestrator_core::CoreError;
use orchestrator_shared_types::api::ErrorBody;
use orchestrator_shared_types::ContainerId;
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

/// The header of an agent's logs answer holding the cursor after its bytes.
pub const LOG_NEXT_HEADER: &str = "x-log-next";

/// The query of `GET /api/v1/agent/containers/{container_id}/logs`: the fields of the runtime's
/// `LogRequest`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AgentLogsQuery {
    /// Start after this cursor (an earlier answer's `x-log-next`); absent reads the end.
    from: Option<u64>,
    /// Only the last N lines of what is selected.
    tail: Option<usize>,
    /// At most this many bytes (and never more than 1 MiB).
    #[param(maximum = 1048576)]
    limit_bytes: Option<usize>,
    /// Only what was written at or after this time, in milliseconds since the Unix epoch.
    since: Option<u64>,
}

/// The output of a container of this daemon's node, read from its local runtime: the bytes as
/// written, and the cursor to read on from in `x-log-next`.
#[utoipa::path(
    get,
    path = "/api/v1/agent/containers/{container_id}/logs",
    operation_id = "agent_container_logs",
    tag = "agent",
    params(("container_id" = String, Path, description = "The runtime's container id"), AgentLogsQuery),
    responses(
        (status = 200, description = "The bytes the container wrote; header `x-log-next` is the cursor after them", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 400, description = "Bad query string", body = ErrorBody),
        (status = 401, description = "Missing or wrong cluster token", body = ErrorBody),
        (status = 404, description = "No such container on this node, or this daemon is not a cluster agent", body = ErrorBody),
        (status = 503, description = "The local runtime cannot be reached", body = ErrorBody)
    )
)]
pub(crate) async fn container_logs(
    State(state): State<ApiState>,
    Path(container_id): Path<String>,
    headers: HeaderMap,
    extensions: Extensions,
    ApiQuery(query): ApiQuery<AgentLogsQuery>,
) -> Result<Response, ApiError> {
    let agent = authorized(&state, &headers, &extensions)?;
    let id = ContainerId::from(container_id);
    let request = LogRequest {
        from: query.from,
        tail: query.tail,
        limit_bytes: Some(
            query
                .limit_bytes
                .unwrap_or(MAX_LOG_BYTES)
                .min(MAX_LOG_BYTES),
        ),
        since: query
            .since
            .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms)),
    };
    let chunk = agent
        .runtime
        .logs(&agent.node, &id, request)
        .await
        .map_err(|e| match e {
            RuntimeError::NotFound { .. } => {
                ApiError::NotFound(format!("container {id} not found on node {}", agent.node))
            }
            source => ApiError::from(CoreError::Runtime {
                operation: "read logs",
                source: Box::new(source),
            }),
        })?;
    Ok((
        [
            (CONTENT_TYPE, "application/octet-stream".to_owned()),
            (
                LOG_NEXT_HEADER.parse().expect("a valid header name"),
                chunk.next.to_string(),
            ),
        ],
        chunk.data,
    )
        .into_response())
}

/// The agent of this daemon, if the request may use it: 404 when this daemon is no agent, 401
/// when a cluster token is set and the request does not carry it.
fn authorized<'a>(
    state: &'a ApiState,
    headers: &HeaderMap,
    extensions: &Extensions,
) -> Result<&'a AgentApi, ApiError> {
    let agent = state
        .agent()
        .ok_or_else(|| ApiError::NotFound("this daemon is not a cluster agent".to_owned()))?;
    let Some(token) = agent.cluster_token.as_deref().filter(|t| !t.is_empty()) else {
        return Ok(agent);
    };
    let given = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(given) if same_secret(given.as_bytes(), token.as_bytes()) => Ok(agent),
        _ => {
            let peer = extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or_else(|| "an unknown peer".to_owned(), |c| c.0.to_string());
            tracing::warn!(%peer, "agent API: request with a wrong cluster token from {peer}");
            Err(ApiError::Unauthorized(
                "the agent API needs the cluster's token: send `Authorization: Bearer <token>` \
                 with the token every daemon of the cluster is started with"
                    .to_owned(),
            ))
        }
    }
}

/// Whether two secrets are equal, in a time that depends on their lengths only (not on where
/// they first differ), so that timing answers cannot guess a token byte by byte.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cret", b"s3creT"));
        assert!(!same_secret(b"s3cret", b"s3cre"));
        assert!(!same_secret(b"", b"x"));
        assert!(same_secret(b"", b""));
    }
}
