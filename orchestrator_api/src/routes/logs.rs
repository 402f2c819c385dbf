//! `/api/v1/instances/{id}/logs`: what an instance's container wrote (stdout and stderr), as
//! plain text; with `follow=true`, a response that stays open and carries new output as it is
//! written.

use crate::extract::ApiQuery;
use crate::{ApiError, ApiState};
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use container_runtime_interface::LogRequest;
use orchestrator_core::LogSource;
use orchestrator_shared_types::api::{parse_log_since, ErrorBody};
use serde::Deserialize;
use std::convert::Infallible;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// Most bytes in one answer (and in one piece of a followed answer): the newest ones.
pub(crate) const MAX_LOG_BYTES: usize = 1024 * 1024;

/// How often a followed log is read for new output.
const FOLLOW_POLL: Duration = Duration::from_millis(250);

/// The query of `GET /api/v1/instances/{id}/logs`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct LogsQuery {
    /// The container, by its name in the workload; default: the instance's first.
    container: Option<String>,
    /// Only the last N lines (of the newest 1 MiB). `0` sends none: with `follow`, only what is
    /// written from now on.
    tail: Option<usize>,
    /// Only what was written in this last span of time: a number and a unit, `s`, `m`, `h` or
    /// `d` (`30s`, `10m`, `2h`, `1d`). About a second of older output may be included (the
    /// youki runtime dates its log files once a second). With `tail`, the last lines of that.
    #[param(example = "10m", pattern = r"^[0-9]+[smhd]$")]
    since: Option<String>,
    /// Keep the response open and send new output as it is written, until the client hangs up,
    /// the instance's container is replaced or removed, or the server shuts down.
    #[serde(default)]
    follow: bool,
}

/// An instance's output: the newest 1 MiB, or its last `tail` lines, or what it wrote `since`;
/// streamed with `follow`.
#[utoipa::path(
    get,
    path = "/api/v1/instances/{id}/logs",
    operation_id = "instance_logs",
    tag = "instances",
    params(("id" = String, Path, description = "Instance id"), LogsQuery),
    responses(
        (status = 200, description = "The output as the container wrote it (stdout and stderr interleaved); with `follow`, a stream that goes on", body = String, content_type = "text/plain; charset=utf-8"),
        (status = 400, description = "Bad query string, or a container the instance does not have (the message lists its containers)", body = ErrorBody),
        (status = 404, description = "No such instance", body = ErrorBody),
        (status = 409, description = "The instance has no container yet (Pending, or being created)", body = ErrorBody),
        (status = 503, description = "The orchestrator or the instance's node cannot be reached", body = ErrorBody)
    )
)]
pub(crate) async fn logs(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<LogsQuery>,
) -> Result<Response, ApiError> {
    let since = match query.since.as_deref().map(parse_log_since) {
        None => None,
        Some(Ok(ago)) => Some(
            SystemTime::now()
                .checked_sub(ago)
                .unwrap_or(SystemTime::UNIX_EPOCH),
        ),
        Some(Err(e)) => return Err(ApiError::bad_field("since", format!("`since` {e}"))),
    };
    let handle = state.handle();
    let source = handle.log_source(&id, query.container.as_deref()).await?;
    let request = LogRequest {
        from: None,
        tail: query.tail,
        limit_bytes: Some(MAX_LOG_BYTES),
        since,
    };
    let first = handle.read_logs(&source, request).await?;
    let body = if query.follow {
        let follow = Follow {
            ended: state.streams_ended(),
            state,
            instance: id,
            container: query.container,
            source,
            next: first.next,
            pending: Some(first.data),
            last: false,
        };
        Body::from_stream(futures_util::stream::unfold(follow, Follow::step))
    } else {
        Body::from(first.data)
    };
    Ok(([(CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response())
}

/// A followed log: what was sent and what to check.
struct Follow {
    state: ApiState,
    instance: String,
    container: Option<String>,
    source: LogSource,
    /// The cursor after what was sent.
    next: u64,
    /// Read, not sent yet.
    pending: Option<Vec<u8>>,
    /// The container was replaced or removed: one last read, then the end.
    last: bool,
    ended: watch::Receiver<bool>,
}

impl Follow {
    /// The next piece of output, waiting for it; `None` ends the response.
    async fn step(mut self) -> Option<(Result<Bytes, Infallible>, Self)> {
        if let Some(data) = self.pending.take().filter(|d| !d.is_empty()) {
            return Some((Ok(data.into()), self));
        }
        let handle = self.state.handle().clone();
        loop {
            let request = LogRequest {
                from: Some(self.next),
                tail: None,
                limit_bytes: Some(MAX_LOG_BYTES),
                since: None,
            };
            // Any error (the container is gone, the node or the loop is unreachable) ends the
            // stream: the client has had everything that could be read.
            let chunk = handle.read_logs(&self.source, request).await.ok()?;
            self.next = chunk.next;
            if !chunk.data.is_empty() {
                return Some((Ok(chunk.data.into()), self));
            }
            if self.last {
                return None;
            }
            let current = handle
                .log_source(&self.instance, self.container.as_deref())
                .await;
            if !matches!(&current, Ok(s) if s.container == self.source.container) {
                // Read once more what it wrote between the last read and its end.
                self.last = true;
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(FOLLOW_POLL) => {}
                _ = self.ended.wait_for(|ended| *ended) => return None,
            }
        }
    }
}
