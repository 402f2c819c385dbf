//! [`Client`]: one method per endpoint of `docs/api.md` that the CLI or the MCP server uses,
//! each returning the shared types' DTOs.

use crate::paging::{Listing, PageRequest};
use crate::ClientError;
use orchestrator_shared_types::api::{
    ClusterInfo, ErrorBody, ListResponse, NodeView, PlacementPreview, RolloutHistory,
    RolloutStatus, ScaleRequest, UndoRequest, WorkloadDetail, WorkloadView,
};
use orchestrator_shared_types::Unschedulable;
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// The header a server puts on reads answered from a view that may be behind its store (a
/// cluster daemon cut off from etcd), with the reason; see [`Client::on_stale`].
pub const STALE_HEADER: &str = "x-orchestrator-stale";

/// What [`Client::on_stale`] calls.
type StaleHook = Arc<dyn Fn(&str) + Send + Sync>;

/// How long to wait for a TCP connection: a local daemon answers at once, so a slow connect
/// means a wrong address, and the user should hear about it quickly.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take in total: a little more than the API's own 30 s limit, so that
/// its `503 unavailable` arrives rather than a timeout of ours.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(35);

/// What `GET /api/v1/instances/{id}/logs` is asked for; every field is optional.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogsQuery {
    /// The container, by its name in the workload (default: the instance's first).
    pub container: Option<String>,
    /// Only the last N lines.
    pub tail: Option<usize>,
    /// Only what was written in this last span, e.g. `10m`.
    pub since: Option<String>,
    /// Keep the answer open and send new output as it is written.
    pub follow: bool,
}

impl LogsQuery {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(c) = &self.container {
            q.push(("container", c.clone()));
        }
        if let Some(t) = self.tail {
            q.push(("tail", t.to_string()));
        }
        if let Some(s) = &self.since {
            q.push(("since", s.clone()));
        }
        if self.follow {
            q.push(("follow", "true".to_owned()));
        }
        q
    }
}

/// How a [`Client`] authenticates and whom it trusts.
#[derive(Clone, Default)]
pub struct ClientOptions {
    /// Sent as `Authorization: Bearer` when given and not empty.
    pub token: Option<String>,
    /// PEM certificates (a CA, or the server's own self-signed certificate) trusted for
    /// `https://` servers, besides the system's.
    pub ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("ca_pem", &self.ca_pem.as_ref().map(Vec::len))
            .finish()
    }
}

/// An async client of one orchestrator server. Cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct Client {
    base: Url,
    http: reqwest::Client,
    token: Option<String>,
    /// Told when an answer says it may be out of date.
    on_stale: Option<StaleHook>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of the server at `server` (e.g. `http://127.0.0.1:8080`), sending `token` as
    /// `Authorization: Bearer` when given and not empty.
    pub fn new(server: &str, token: Option<String>) -> Result<Self, ClientError> {
        Self::with_options(
            server,
            ClientOptions {
                token,
                ..ClientOptions::default()
            },
        )
    }

    /// A client of the server at `server` (`http://` or `https://`) with `options`.
    pub fn with_options(server: &str, options: ClientOptions) -> Result<Self, ClientError> {
        let bad = |reason: String| ClientError::BadServerUrl {
            url: server.to_owned(),
            reason,
        };
        let base = Url::parse(server).map_err(|e| bad(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(bad("the scheme must be http:// or https://".to_owned()));
        }
        if base.cannot_be_a_base() || base.host().is_none() {
            return Err(bad("no host".to_owned()));
        }
        // No overall timeout on the client: each request sets its own, except a followed log,
        // which may rightly stay open for hours.
        let mut http = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT);
        if let Some(pem) = &options.ca_pem {
            let certs =
                reqwest::Certificate::from_pem_bundle(pem).map_err(|e| ClientError::BadCa {
                    reason: innermost(&e),
                })?;
            if certs.is_empty() {
                return Err(ClientError::BadCa {
                    reason: "no PEM certificate in it".to_owned(),
                });
            }
            for cert in certs {
                http = http.add_root_certificate(cert);
            }
        }
        let http = http.build().map_err(|e| bad(innermost(&e)))?;
        Ok(Self {
            base,
            http,
            token: options.token.filter(|t| !t.is_empty()),
            on_stale: None,
        })
    }

    /// This client (same server and connections) sending `token` instead of its own: the MCP
    /// endpoint passes each caller's token on this way.
    pub fn with_token(&self, token: Option<String>) -> Self {
        Self {
            token: token.filter(|t| !t.is_empty()),
            ..self.clone()
        }
    }

    /// This client, calling `hook` with the reason whenever the server says that what it
    /// answered may be out of date (header [`STALE_HEADER`]: the answering daemon lost its
    /// store and answers from the last state it saw). The answer itself is returned as usual.
    pub fn on_stale(mut self, hook: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.on_stale = Some(Arc::new(hook));
        self
    }

    /// Calls the stale hook if `response` is marked.
    fn note_stale(&self, response: &reqwest::Response) {
        if let (Some(hook), Some(reason)) = (
            &self.on_stale,
            response
                .headers()
                .get(STALE_HEADER)
                .and_then(|v| v.to_str().ok()),
        ) {
            hook(reason);
        }
    }

    /// The server's base URL as given, without a trailing slash.
    pub fn server(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// Whether requests carry a token (an empty one is none).
    #[cfg(test)]
    pub(crate) fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// `POST /api/v1/workloads`: creates a workload from a definition (any serializable value:
    /// the server validates it and reports every problem with its field path).
    pub async fn create_workload<B: Serialize + ?Sized>(
        &self,
        definition: &B,
    ) -> Result<WorkloadView, ClientError> {
        self.call(Method::POST, &["workloads"], &[], Some(definition))
            .await
    }

    /// `PUT /api/v1/workloads/{name}[?revision=N]`: replaces a workload's definition (404 if
    /// absent). With `revision`, only if the workload is still at it (409 `stale_revision`).
    pub async fn replace_workload<B: Serialize + ?Sized>(
        &self,
        name: &str,
        definition: &B,
        revision: Option<u64>,
    ) -> Result<WorkloadView, ClientError> {
        let query: Vec<_> = revision
            .map(|r| ("revision", r.to_string()))
            .into_iter()
            .collect();
        self.call(Method::PUT, &["workloads", name], &query, Some(definition))
            .await
    }

    /// `GET /api/v1/workloads/{name-or-id}`: one workload with instances, events, pending reason.
    pub async fn get_workload(&self, name: &str) -> Result<WorkloadDetail, ClientError> {
        self.get(&["workloads", name], &[]).await
    }

    /// `DELETE /api/v1/workloads/{name}`: returns the deleted definition.
    pub async fn delete_workload(&self, name: &str) -> Result<WorkloadView, ClientError> {
        self.call(Method::DELETE, &["workloads", name], &[], None::<&()>)
            .await
    }

    /// `POST /api/v1/workloads/{name}/scale`.
    pub async fn scale_workload(
        &self,
        name: &str,
        replicas: u32,
    ) -> Result<WorkloadView, ClientError> {
        let body = ScaleRequest { replicas };
        self.call(
            Method::POST,
            &["workloads", name, "scale"],
            &[],
            Some(&body),
        )
        .await
    }

    /// `GET /api/v1/workloads/{name-or-id}/rollout`: where its rollout stands and why it waits.
    pub async fn rollout_status(&self, name: &str) -> Result<RolloutStatus, ClientError> {
        self.get(&["workloads", name, "rollout"], &[]).await
    }

    /// `GET /api/v1/workloads/{name-or-id}/rollout/history`: its template revisions.
    pub async fn rollout_history(&self, name: &str) -> Result<RolloutHistory, ClientError> {
        self.get(&["workloads", name, "rollout", "history"], &[])
            .await
    }

    /// `POST /api/v1/workloads/{name}/rollout/undo`: back to revision `to_revision` (the
    /// previous one when `None`), rolled out like any change.
    pub async fn rollout_undo(
        &self,
        name: &str,
        to_revision: Option<u64>,
    ) -> Result<WorkloadView, ClientError> {
        let body = UndoRequest { to_revision };
        self.call(
            Method::POST,
            &["workloads", name, "rollout", "undo"],
            &[],
            Some(&body),
        )
        .await
    }

    /// `GET /api/v1/workloads/{name-or-id}/explain`: why a replica would not fit now, per node.
    pub async fn explain_workload(&self, name: &str) -> Result<Unschedulable, ClientError> {
        self.get(&["workloads", name, "explain"], &[]).await
    }

    /// `POST /api/v1/preview`: where a definition's replicas would go; changes nothing. The
    /// server validates the definition exactly as creation does.
    pub async fn preview<B: Serialize + ?Sized>(
        &self,
        definition: &B,
    ) -> Result<PlacementPreview, ClientError> {
        self.call(Method::POST, &["preview"], &[], Some(definition))
            .await
    }

    /// `GET /api/v1/nodes/{name-or-id}`.
    pub async fn get_node(&self, name: &str) -> Result<NodeView, ClientError> {
        self.get(&["nodes", name], &[]).await
    }

    /// `POST /api/v1/nodes/{name-or-id}/drain`: cordons the node and moves its instances away.
    pub async fn drain_node(&self, name: &str) -> Result<NodeView, ClientError> {
        self.call(Method::POST, &["nodes", name, "drain"], &[], None::<&()>)
            .await
    }

    /// `POST /api/v1/nodes/{name-or-id}/uncordon`: makes the node schedulable again.
    pub async fn uncordon_node(&self, name: &str) -> Result<NodeView, ClientError> {
        self.call(Method::POST, &["nodes", name, "uncordon"], &[], None::<&()>)
            .await
    }

    /// `GET /api/v1/cluster`.
    pub async fn cluster_info(&self) -> Result<ClusterInfo, ClientError> {
        self.get(&["cluster"], &[]).await
    }

    /// One page of a list (`GET /api/v1/workloads`, `nodes`, `instances` or `events`, see
    /// [`paging`](crate::paging)); its `next` is the token of the page after it.
    pub async fn list<L: Listing>(
        &self,
        listing: &L,
        page: &PageRequest,
    ) -> Result<ListResponse<L::Item>, ClientError> {
        self.get(&[L::PATH], &page.query(listing)).await
    }

    /// Every item of a list, read `page_size` at a time (following `continue` until a page has
    /// none, never stopping on a short page); `None` asks for everything in one response.
    pub async fn list_all<L: Listing>(
        &self,
        listing: &L,
        page_size: Option<u32>,
    ) -> Result<Vec<L::Item>, ClientError> {
        let mut page = PageRequest::after(page_size, None);
        let mut items = Vec::new();
        loop {
            let answer = self.list(listing, &page).await?;
            items.extend(answer.items);
            match answer.next {
                Some(token) => page.cont = Some(token),
                None => return Ok(items),
            }
        }
    }

    /// `GET /api/v1/instances/{id}/logs`: an instance's output, to read as it arrives with
    /// [`LogStream::next_chunk`]. With `follow`, the server keeps sending until the container
    /// is replaced or removed, so no overall timeout applies.
    pub async fn logs(&self, instance: &str, query: &LogsQuery) -> Result<LogStream, ClientError> {
        let url = self.url(&["instances", instance, "logs"], &query.query());
        let mut request = self.request(Method::GET, url);
        if !query.follow {
            request = request.timeout(REQUEST_TIMEOUT);
        }
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        self.note_stale(&response);
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.map_err(|e| self.unreachable(&e))?;
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

    /// The whole answer of `GET /api/v1/instances/{id}/logs` (not followed) as text; bytes that
    /// are not UTF-8 become U+FFFD.
    pub async fn logs_text(
        &self,
        instance: &str,
        query: &LogsQuery,
    ) -> Result<String, ClientError> {
        let query = LogsQuery {
            follow: false,
            ..query.clone()
        };
        let mut stream = self.logs(instance, &query).await?;
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next_chunk().await? {
            bytes.extend_from_slice(&chunk);
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// `GET /api/v1/<segments>?<query>`, decoded as JSON.
    async fn get<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<T, ClientError> {
        self.call(Method::GET, segments, query, None::<&()>).await
    }

    /// A request with an optional JSON body, its answer decoded as JSON.
    async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let url = self.url(segments, query);
        let request_name = format!("{method} {}", url.path());
        tracing::debug!(request = %request_name, query = url.query().unwrap_or(""), "calling the API");
        let mut request = self.request(method, url).timeout(REQUEST_TIMEOUT);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        self.note_stale(&response);
        let status = response.status();
        let text = response.text().await.map_err(|e| self.unreachable(&e))?;
        if !status.is_success() {
            tracing::debug!(request = %request_name, status = status.as_u16(), "the API refused");
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

    pub(crate) fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let request = self.http.request(method, url);
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// The URL of `/api/v1/<segments...>?<query>`, each segment percent-encoded so that a name
    /// typed by a user (or chosen by a model) can never change the route.
    pub(crate) fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
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

    pub(crate) fn unreachable(&self, e: &reqwest::Error) -> ClientError {
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
    response: reqwest::Response,
    server: String,
}

impl LogStream {
    /// The next bytes received (as many as have arrived); `None` at the end.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, ClientError> {
        match self.response.chunk().await {
            Ok(chunk) => Ok(chunk.map(|c| c.to_vec())),
            Err(e) => Err(ClientError::Unreachable {
                url: self.server.clone(),
                reason: format!("the logs stopped coming: {}", innermost(&e)),
            }),
        }
    }
}

/// The server's error, or one made from a body that is not the API's error shape (a proxy's
/// page, a plain-text 404 from something that is not orchestratord).
pub(crate) fn error_body(status: StatusCode, text: &str) -> ErrorBody {
    ErrorBody::from_response(
        status.as_u16(),
        status.canonical_reason().unwrap_or("error"),
        text,
    )
}

/// The last error of a source chain: the one a person (or a model) can act on.
pub(crate) fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
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
        let c = Client::new("http://127.0.0.1:8080/", None).unwrap();
        assert_eq!(
            c.url(&["workloads", "a/b"], &[]).as_str(),
            "http://127.0.0.1:8080/api/v1/workloads/a%2Fb"
        );
        let q = [("workload", "web".to_owned()), ("limit", "5".to_owned())];
        assert_eq!(
            c.url(&["events"], &q).as_str(),
            "http://127.0.0.1:8080/api/v1/events?workload=web&limit=5"
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
        for url in ["127.0.0.1:8080", "ftp://x", "nonsense"] {
            assert!(
                matches!(
                    Client::new(url, None),
                    Err(ClientError::BadServerUrl { .. })
                ),
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

    #[test]
    fn logs_queries_name_only_what_is_set() {
        assert!(LogsQuery::default().query().is_empty());
        let q = LogsQuery {
            container: Some("c".into()),
            tail: Some(3),
            since: Some("10m".into()),
            follow: true,
        };
        let keys: Vec<&str> = q.query().iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["container", "tail", "since", "follow"]);
    }
}
