//! Bearer-token authentication and roles ([`Tokens`], the [`authenticate`] middleware).
//!
//! With tokens configured ([`ApiState::with_tokens`]) every request but the probes
//! (`/healthz`, `/readyz`) and the OpenAPI document must carry `Authorization: Bearer TOKEN`
//! with a token of the table: without one it is answered 401, and a `read-only` token asking
//! for a change 403, both with the JSON error body. The caller ([`Caller`]) rides in the
//! request's extensions, so that handlers stamp who changed what; every change is written to
//! the audit log (target `orchestrator::audit`) with the caller's name, never the token.
//!
//! The agent routes (`/api/v1/agent/...`) are for the other daemons of the cluster and check
//! the cluster token themselves when one is set. `/mcp` takes any valid token: the MCP endpoint
//! passes it on to the REST calls its tools make, which check the role.
//!
//! Without tokens the API is open, as for the one-command quick start on loopback; the daemon
//! refuses to listen beyond loopback that way.

use crate::middleware::AGENT_PREFIX;
use crate::{ApiError, ApiState};
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use orchestrator_shared_types::auth::{hash_token, Role, TokenFile};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Who made a request: the name and role of its token. In the request's extensions once
/// [`authenticate`] let it through (absent when the API runs without tokens).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The token's name in the token file.
    pub name: Arc<str>,
    /// What it may do.
    pub role: Role,
}

/// The tokens the API accepts, replaceable while it runs (`SIGHUP` reloads the file). Readers
/// take a read lock for one hash lookup; never held across an `.await`.
pub struct Tokens {
    /// SHA-256 (hex) of each token → its caller.
    by_hash: RwLock<HashMap<String, Caller>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names and roles only: hashes stay out of logs too.
        f.debug_struct("Tokens")
            .field("count", &self.len())
            .finish_non_exhaustive()
    }
}

impl Tokens {
    /// The tokens of `file`, which must have no [`TokenFile::problems`] (the caller checked).
    pub fn new(file: &TokenFile) -> Self {
        Self {
            by_hash: RwLock::new(Self::table(file)),
        }
    }

    fn table(file: &TokenFile) -> HashMap<String, Caller> {
        file.tokens
            .iter()
            .map(|entry| {
                (
                    entry.sha256.clone(),
                    Caller {
                        name: entry.name.as_str().into(),
                        role: entry.role,
                    },
                )
            })
            .collect()
    }

    /// Replaces every token by those of `file` (a reload): requests from now on see the new
    /// table, requests in flight keep the caller they were given.
    pub fn replace(&self, file: &TokenFile) {
        let table = Self::table(file);
        *self.by_hash.write().unwrap_or_else(|e| e.into_inner()) = table;
    }

    /// How many tokens are accepted.
    pub fn len(&self) -> usize {
        self.by_hash.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no token is accepted (every request is refused).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The caller holding `token`, if any. The lookup is by the token's SHA-256, so its timing
    /// says nothing useful about the token itself.
    pub fn caller(&self, token: &str) -> Option<Caller> {
        let hash = hash_token(token);
        self.by_hash
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&hash)
            .cloned()
    }
}

/// Whether a request needs no token at all: the probes, which load balancers and orchestrators
/// call without credentials, and the OpenAPI document, which is public.
fn is_public(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/api/v1/openapi.json")
}

/// Whether a `read-only` caller may make this request: reads, placement previews (which change
/// nothing), and MCP, whose tools pass the token on to the REST routes that decide.
fn is_read(method: &Method, path: &str) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        || (method == Method::POST && path == "/api/v1/preview")
        || path == "/mcp"
        || path.starts_with("/mcp/")
}

/// The token of an `Authorization: Bearer TOKEN` value; the scheme's case does not matter
/// (RFC 7235).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The middleware: checks the bearer token when the API has [`Tokens`], refuses what the
/// caller's role does not allow, puts the [`Caller`] in the request, and writes changes to the
/// audit log.
pub(crate) async fn authenticate(
    State(state): State<ApiState>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(tokens) = state.tokens() else {
        return next.run(req).await;
    };
    let path = req.uri().path().to_owned();
    let agent_with_token = path.starts_with(AGENT_PREFIX)
        && state
            .agent()
            .is_some_and(|a| a.cluster_token.as_deref().is_some_and(|t| !t.is_empty()));
    if is_public(&path) || agent_with_token {
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    let caller = match presented {
        None => return unauthorized("this API needs a token: send `Authorization: Bearer TOKEN` (orchestrator-cli --token, or ORCHESTRATOR_TOKEN)"),
        Some(token) => match tokens.caller(token) {
            Some(caller) => caller,
            None => {
                tracing::warn!(target: "orchestrator::audit", method = %req.method(), %path, "refused: unknown token");
                return unauthorized("the token is not valid: it is unknown to this server (revoked, mistyped, or for another cluster)");
            }
        },
    };
    let method = req.method().clone();
    let read = is_read(&method, &path);
    if !read && caller.role != Role::Admin {
        tracing::warn!(target: "orchestrator::audit", who = %caller.name, role = %caller.role, %method, %path, "refused: role");
        return ApiError::Forbidden(format!(
            "the token {:?} is {}: it may read, not {method} {path}; use an admin token",
            &*caller.name, caller.role
        ))
        .into_response();
    }
    let name = caller.name.clone();
    req.extensions_mut().insert(caller);
    let response = next.run(req).await;
    if !read {
        tracing::info!(target: "orchestrator::audit", who = %name, %method, %path, status = response.status().as_u16(), "change");
    }
    response
}

/// `router` with [`authenticate`] in front of its routes: for services mounted beside the
/// API's own router (the daemon's `/mcp`), which must be guarded the same way.
pub fn protect(router: axum::Router, state: &ApiState) -> axum::Router {
    router.layer(axum::middleware::from_fn_with_state(
        state.clone(),
        authenticate,
    ))
}

/// A 401 with `WWW-Authenticate: Bearer`, as RFC 6750 wants.
fn unauthorized(message: &str) -> Response {
    let mut response = ApiError::Unauthorized(message.to_owned()).into_response();
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_changes_are_told_apart() {
        assert!(is_read(&Method::GET, "/api/v1/workloads"));
        assert!(is_read(&Method::POST, "/api/v1/preview"));
        assert!(is_read(&Method::POST, "/mcp"));
        assert!(!is_read(&Method::POST, "/api/v1/workloads"));
        assert!(!is_read(&Method::DELETE, "/api/v1/workloads/web"));
        assert!(!is_read(&Method::POST, "/mcpx"));
        assert!(is_public("/healthz") && !is_public("/metrics"));
    }

    #[test]
    fn bearer_tokens_are_read_whatever_the_scheme_s_case() {
        assert_eq!(bearer_token("Bearer orc_1"), Some("orc_1"));
        assert_eq!(bearer_token("bearer  orc_1 "), Some("orc_1"));
        assert_eq!(bearer_token("BEARER orc_1"), Some("orc_1"));
        assert_eq!(bearer_token("Basic dXNlcjpwdw=="), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer "), None);
    }

    #[test]
    fn tokens_are_found_by_hash_and_replaced() {
        use orchestrator_shared_types::auth::TokenEntry;
        let file = |token: &str, role| TokenFile {
            tokens: vec![TokenEntry {
                name: "alice".into(),
                role,
                sha256: hash_token(token),
            }],
        };
        let tokens = Tokens::new(&file("one", Role::Admin));
        assert_eq!(tokens.caller("one").unwrap().role, Role::Admin);
        assert!(tokens.caller("two").is_none());
        tokens.replace(&file("two", Role::ReadOnly));
        assert!(tokens.caller("one").is_none());
        assert_eq!(tokens.caller("two").unwrap().role, Role::ReadOnly);
        assert!(!format!("{tokens:?}").contains(&hash_token("two")));
    }
}
