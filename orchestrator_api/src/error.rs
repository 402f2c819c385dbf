//! [`ApiError`]: every way a request can fail, and the one place that turns it into a status code
//! and the JSON [`ErrorBody`] of `docs/api.md`.
//!
//! Client errors (4xx) say precisely what was wrong. Server errors (500, 503) are logged with
//! their full cause chain and answered with a fixed sentence: store paths, backend messages and
//! the like never reach the client.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use orchestrator_core::CoreError;
use orchestrator_shared_types::api::{ErrorBody, ErrorInfo};
use orchestrator_shared_types::{FieldError, ValidationErrors};
use state_store_interface::StoreError;
use std::error::Error as StdError;

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed input: bad JSON or YAML, unknown field, wrong type, empty body, name mismatch.
    #[error("{message}")]
    BadRequest {
        /// What was wrong.
        message: String,
        /// The field concerned, when known.
        details: Vec<FieldError>,
    },
    /// A well-formed definition that breaks the rules; every problem with its field path.
    #[error("invalid workload: {} problem(s)", .0 .0.len())]
    Validation(ValidationErrors),
    /// No such workload, node or route.
    #[error("{0}")]
    NotFound(String),
    /// The request lacks the credentials the route wants: an API token, or the agent routes'
    /// cluster token.
    #[error("{0}")]
    Unauthorized(String),
    /// The caller's token does not allow this request (a `read-only` token asking for a
    /// change).
    #[error("{0}")]
    Forbidden(String),
    /// The instance has no container to read yet (Pending, or being created).
    #[error("{0}")]
    NoContainer(String),
    /// A workload with this name exists.
    #[error("workload {name:?} already exists")]
    AlreadyExists {
        /// The name.
        name: String,
    },
    /// The workload changed since the revision the client read.
    #[error("workload {name:?} changed since revision {expected}; read it again")]
    StaleRevision {
        /// The name.
        name: String,
        /// The revision the client passed.
        expected: u64,
    },
    /// The method is not served on this path.
    #[error("method not allowed on this path")]
    MethodNotAllowed,
    /// The body is over [`crate::MAX_BODY_BYTES`].
    #[error("request body is larger than {} bytes", crate::MAX_BODY_BYTES)]
    PayloadTooLarge,
    /// The body is neither JSON nor (where accepted) YAML.
    #[error("unsupported content type {got:?}; expected {expected}")]
    UnsupportedMediaType {
        /// The `Content-Type` received.
        got: String,
        /// What the route accepts.
        expected: &'static str,
    },
    /// Well-formed but unusable (reserved by the contract).
    #[error("{0}")]
    Unprocessable(String),
    /// The store cannot be reached; retrying later may work. (Boxed, as the other boxed
    /// sources: a core error is large, and every handler returns this type.) The message names
    /// the operation that failed, never the store's own words (addresses, paths).
    #[error(
        "the state store is unreachable: {} failed; retry later",
        store_operation(.0)
    )]
    StoreUnavailable(#[source] Box<CoreError>),
    /// The orchestrator is not running (starting, shutting down) or did not answer in time.
    #[error("the orchestrator is not available; retry later")]
    Unavailable(#[source] Option<Box<CoreError>>),
    /// A bug.
    #[error("internal error")]
    Internal(#[source] Box<dyn StdError + Send + Sync>),
}

impl ApiError {
    /// A 400 `bad_request` with no field.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// A 400 `bad_request` about one field.
    pub fn bad_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError::BadRequest {
            details: vec![FieldError {
                field: field.into(),
                message: message.clone(),
            }],
            message,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } | ApiError::Validation(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::AlreadyExists { .. }
            | ApiError::StaleRevision { .. }
            | ApiError::NoContainer(_) => StatusCode::CONFLICT,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::StoreUnavailable(_) | ApiError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "bad_request",
            ApiError::Validation(_) => "validation_failed",
            ApiError::NotFound(_) => "not_found",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::AlreadyExists { .. } => "already_exists",
            ApiError::NoContainer(_) => "no_container",
            ApiError::StaleRevision { .. } => "stale_revision",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::UnsupportedMediaType { .. } => "unsupported_media_type",
            ApiError::Unprocessable(_) => "unprocessable",
            ApiError::StoreUnavailable(_) => "store_unavailable",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorBody {
        let details = match self {
            ApiError::BadRequest { details, .. } => details.clone(),
            ApiError::Validation(errors) => errors.0.clone(),
            _ => Vec::new(),
        };
        ErrorBody {
            error: ErrorInfo {
                code: self.code().to_owned(),
                message: self.to_string(),
                details,
            },
        }
    }

    /// An internal error from anything, for the rare reads that can fail in unexpected ways.
    pub fn internal(source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        ApiError::Internal(source.into())
    }
}

/// What was being done when the store failed, as the core names it (`create workload`, `read`).
fn store_operation(e: &CoreError) -> &'static str {
    match e {
        CoreError::Store { operation, .. } => operation,
        _ => "a store call",
    }
}

/// The error and every cause under it, for the log.
pub(crate) fn chain(error: &dyn StdError) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            // The client gets a fixed sentence; the operator gets the cause.
            tracing::error!(status = status.as_u16(), error = %chain(&self), "request failed");
        } else {
            tracing::debug!(status = status.as_u16(), error = %self, "request refused");
        }
        (status, Json(self.body())).into_response()
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::Invalid(errors) => ApiError::Validation(errors),
            CoreError::NotFound { name } => {
                ApiError::NotFound(format!("workload {name:?} not found"))
            }
            CoreError::NodeNotFound { node } => {
                ApiError::NotFound(format!("node {node:?} not found"))
            }
            CoreError::InstanceNotFound { .. } => ApiError::NotFound(e.to_string()),
            CoreError::UnknownContainer { .. } => ApiError::bad_field("container", e.to_string()),
            CoreError::NoContainer { message, .. } => ApiError::NoContainer(message),
            CoreError::AlreadyExists { name } => ApiError::AlreadyExists { name },
            CoreError::StaleRevision { name, expected } => {
                ApiError::StaleRevision { name, expected }
            }
            CoreError::Stopped => ApiError::Unavailable(Some(Box::new(e))),
            CoreError::Store { .. } if e.is_transient() => ApiError::StoreUnavailable(Box::new(e)),
            e if e.is_transient() => ApiError::Unavailable(Some(Box::new(e))),
            e => ApiError::Internal(Box::new(e)),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(source: StoreError) -> Self {
        ApiError::from(CoreError::Store {
            operation: "read",
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable() -> StoreError {
        StoreError::unavailable("get", "connection refused to 10.0.0.7:2379")
    }

    #[test]
    fn core_errors_map_to_the_contract() {
        let cases: Vec<(CoreError, u16, &str)> = vec![
            (CoreError::NotFound { name: "w".into() }, 404, "not_found"),
            (
                CoreError::AlreadyExists { name: "w".into() },
                409,
                "already_exists",
            ),
            (
                CoreError::StaleRevision {
                    name: "w".into(),
                    expected: 3,
                },
                409,
                "stale_revision",
            ),
            (
                CoreError::Invalid(ValidationErrors::default()),
                400,
                "validation_failed",
            ),
            (
                CoreError::Store {
                    operation: "get",
                    source: unavailable(),
                },
                503,
                "store_unavailable",
            ),
            (CoreError::Stopped, 503, "unavailable"),
            (
                CoreError::InstanceNotFound { id: "i".into() },
                404,
                "not_found",
            ),
            (
                CoreError::UnknownContainer {
                    instance: "i".into(),
                    name: "x".into(),
                    names: vec!["app".into()],
                },
                400,
                "bad_request",
            ),
            (
                CoreError::NoContainer {
                    instance: "i".into(),
                    message: "instance i is Pending: it has no container yet".into(),
                },
                409,
                "no_container",
            ),
            (
                CoreError::Store {
                    operation: "get",
                    source: StoreError::Closed,
                },
                500,
                "internal",
            ),
        ];
        for (core, status, code) in cases {
            let api = ApiError::from(core);
            assert_eq!(api.status().as_u16(), status, "{api:?}");
            assert_eq!(api.code(), code);
        }
    }

    #[test]
    fn server_errors_do_not_leak_internals() {
        let api = ApiError::from(CoreError::Store {
            operation: "get",
            source: unavailable(),
        });
        let body = serde_json::to_string(&api.body()).unwrap();
        assert!(!body.contains("10.0.0.7"), "{body}");
        assert_eq!(
            api.body().error.message,
            "the state store is unreachable: get failed; retry later"
        );
        assert!(chain(&api).contains("10.0.0.7"), "the log keeps the cause");
    }
}
