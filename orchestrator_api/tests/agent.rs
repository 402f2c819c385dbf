//! The agent routes (`/api/v1/agent/...`): a daemon's local container logs for the other daemons
//! of its cluster, behind the cluster token; and `AgentClient` against the real router on a
//! socket.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::TestApi;
use container_runtime_interface::{
    ContainerRuntime, ContainerSpec, LogRequest, SimulatedRuntime, SimulatedRuntimeConfig,
};
use orchestrator_api::{AgentApi, LOG_NEXT_HEADER};
use orchestrator_client::{AgentClient, ClientError};
use orchestrator_shared_types::{ContainerConfig, ContainerId, NodeId};
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "s3cret-cluster-token";
const LOGS: &str = "/api/v1/agent/containers/c-1/logs";

/// A local runtime of node `node-a` running container `c-1`, which wrote `hello\n`.
async fn local_runtime() -> Arc<SimulatedRuntime> {
    let runtime = Arc::new(SimulatedRuntime::new(SimulatedRuntimeConfig {
        start_delay: Duration::ZERO,
        ..Default::default()
    }));
    let node = NodeId::from("node-a");
    let spec = ContainerSpec {
        id: ContainerId::from("c-1"),
        instance_id: "web-1".into(),
        workload_id: "w".into(),
        config: ContainerConfig::new("main", "example/app:1"),
    };
    runtime.create_and_start(&node, &spec).await.unwrap();
    runtime.write_output(&node, &spec.id, b"hello\n").unwrap();
    runtime
}

/// The harness's API, serving the agent routes of `node-a` with `token`.
async fn agent_api(token: Option<&str>) -> (TestApi, Arc<SimulatedRuntime>) {
    let harness = TestApi::start().await;
    let runtime = local_runtime().await;
    let state = harness.state.clone().with_agent(AgentApi {
        node: "node-a".into(),
        runtime: runtime.clone(),
        cluster_token: token.map(str::to_owned),
    });
    (TestApi::with_state(state), runtime)
}

async fn get_with(api: &TestApi, uri: &str, authorization: Option<&str>) -> common::Reply {
    let mut req = Request::get(uri);
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    api.send(req.body(Body::empty()).unwrap()).await
}

#[tokio::test]
async fn without_an_agent_the_routes_are_404() {
    let api = TestApi::start().await;
    let reply = api.get(LOGS).await.expect(StatusCode::NOT_FOUND);
    assert_eq!(reply.code(), "not_found");
    assert_eq!(
        reply.json()["error"]["message"],
        "this daemon is not a cluster agent"
    );
}

#[tokio::test]
async fn logs_of_a_local_container_with_their_cursor() {
    let (api, runtime) = agent_api(None).await;
    let reply = api.get(LOGS).await.expect(StatusCode::OK);
    assert_eq!(reply.headers["content-type"], "application/octet-stream");
    assert!(reply.text().ends_with("hello\n"), "{}", reply.text());
    let next: u64 = reply.headers[LOG_NEXT_HEADER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(next, reply.body.len() as u64);

    // Reading on from the cursor gets only what was written since.
    runtime
        .write_output(&"node-a".into(), &"c-1".into(), b"more\n")
        .unwrap();
    let reply = api
        .get(&format!("{LOGS}?from={next}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(reply.text(), "more\n");

    let reply = api
        .get(&format!("{LOGS}?tail=1&limit_bytes=3&since=0"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        reply.text(),
        "re\n",
        "the last line, cut to its last 3 bytes"
    );

    let reply = api
        .get("/api/v1/agent/containers/nope/logs")
        .await
        .expect(StatusCode::NOT_FOUND);
    assert_eq!(reply.code(), "not_found");
    assert!(reply.text().contains("nope"), "{}", reply.text());

    let reply = api
        .get(&format!("{LOGS}?tail=x"))
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(reply.code(), "bad_request");
}

#[tokio::test]
async fn a_cluster_token_is_required_when_set() {
    let (api, _runtime) = agent_api(Some(TOKEN)).await;
    for authorization in [
        None,
        Some("Bearer wrong"),
        Some("Bearer s3cret-cluster-toke"),
        Some(TOKEN),
        Some("Basic czNjcmV0"),
    ] {
        let reply = get_with(&api, LOGS, authorization).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{authorization:?}");
        assert_eq!(reply.code(), "unauthorized");
        assert!(
            reply.text().contains("Authorization: Bearer"),
            "{}",
            reply.text()
        );
        assert!(!reply.text().contains(TOKEN), "the token never leaks");
    }
    let ok = get_with(&api, LOGS, Some(&format!("Bearer {TOKEN}")))
        .await
        .expect(StatusCode::OK);
    assert!(ok.text().ends_with("hello\n"));
    // The token guards the agent routes only.
    api.get("/api/v1/cluster").await.expect(StatusCode::OK);
}

#[tokio::test]
async fn the_agent_client_reads_logs_over_a_socket() {
    let (api, runtime) = agent_api(Some(TOKEN)).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(orchestrator_api::serve(
        listener,
        api.state.clone(),
        async {
            let _ = stopped.await;
        },
    ));
    let url = format!("http://{addr}");

    let client = AgentClient::new(&url, Some(TOKEN.to_owned())).unwrap();
    let id = ContainerId::from("c-1");
    let first = client
        .container_logs(&id, &LogRequest::default())
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&first.data).ends_with("hello\n"));
    runtime
        .write_output(&"node-a".into(), &id, b"more\n")
        .unwrap();
    let on = LogRequest {
        from: Some(first.next),
        ..LogRequest::default()
    };
    let second = client.container_logs(&id, &on).await.unwrap();
    assert_eq!(second.data, b"more\n");
    assert_eq!(second.next, first.next + 5);

    let missing = client
        .container_logs(&ContainerId::from("nope"), &LogRequest::default())
        .await
        .unwrap_err();
    assert_eq!(missing.status(), Some(404));

    let wrong = AgentClient::new(&url, Some("wrong".to_owned())).unwrap();
    let refused = wrong
        .container_logs(&id, &LogRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.status(), Some(401));
    assert_eq!(refused.code(), Some("unauthorized"));

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    let down = client
        .container_logs(&id, &LogRequest::default())
        .await
        .unwrap_err();
    assert!(matches!(down, ClientError::Unreachable { .. }), "{down:?}");
}
