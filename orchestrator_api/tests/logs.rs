//! `GET /api/v1/instances/{id}/logs`, in-process through the router, against a real
//! orchestrator on the simulated runtime, whose containers log their lifecycle.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::{eventually, workload_json, TestApi};
use futures_util::StreamExt;
use orchestrator_shared_types::{ContainerId, NodeId};
use std::time::Duration;
use tower::ServiceExt;

/// The running instance of a new one-replica workload `name`: its id, node and container.
async fn running_instance(api: &TestApi, name: &str) -> (String, NodeId, ContainerId) {
    api.send_json(
        Method::POST,
        "/api/v1/workloads",
        &workload_json(name, 1, 100),
    )
    .await
    .expect(StatusCode::CREATED);
    eventually("the instance runs", || async {
        let list = api
            .get(&format!("/api/v1/instances?workload={name}"))
            .await
            .json();
        let i = &list["items"][0];
        (i["status"] == "Running").then(|| {
            (
                i["id"].as_str().unwrap().to_owned(),
                NodeId::from(i["node_id"].as_str().unwrap()),
                ContainerId::from(i["container_ids"][0].as_str().unwrap()),
            )
        })
    })
    .await
}

#[tokio::test]
async fn logs_of_a_running_instance_and_their_tail() {
    let api = TestApi::start().await;
    let (id, node, container) = running_instance(&api, "web").await;
    let reply = api
        .get(&format!("/api/v1/instances/{id}/logs"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(reply.headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(
        reply.text(),
        "started: image example/app:1, its default command\n"
    );

    api.runtime
        .write_output(&node, &container, b"one\ntwo\nthree\n")
        .unwrap();
    let tail = api
        .get(&format!("/api/v1/instances/{id}/logs?tail=2"))
        .await;
    assert_eq!(tail.expect(StatusCode::OK).text(), "two\nthree\n");
    let by_name = api
        .get(&format!(
            "/api/v1/instances/{id}/logs?container=main&tail=1"
        ))
        .await;
    assert_eq!(by_name.expect(StatusCode::OK).text(), "three\n");
    let none = api
        .get(&format!("/api/v1/instances/{id}/logs?tail=0"))
        .await;
    assert_eq!(none.expect(StatusCode::OK).text(), "");
}

/// `since` leaves out what was written before that span (the simulated runtime dates every
/// write), with `tail` on top, and with `follow` sends what follows.
#[tokio::test]
async fn since_leaves_out_older_output() {
    let api = TestApi::start().await;
    let (id, node, container) = running_instance(&api, "web").await;
    api.runtime
        .write_output(&node, &container, b"old\n")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    api.runtime
        .write_output(&node, &container, b"new\nnewer\n")
        .unwrap();
    let get = async |query: &str| {
        api.get(&format!("/api/v1/instances/{id}/logs?{query}"))
            .await
            .expect(StatusCode::OK)
            .text()
    };
    assert_eq!(get("since=1s").await, "new\nnewer\n");
    assert_eq!(get("since=1s&tail=1").await, "newer\n");
    assert!(get("since=1h").await.starts_with("started: "), "all of it");
    assert_eq!(get("since=2d&tail=2").await, "new\nnewer\n");

    let req = Request::get(format!("/api/v1/instances/{id}/logs?since=1s&follow=true"))
        .body(Body::empty())
        .unwrap();
    let response = api.router.clone().oneshot(req).await.unwrap();
    let mut body = response.into_body().into_data_stream();
    let first = body.next().await.unwrap().unwrap();
    assert_eq!(first, "new\nnewer\n");
    api.runtime
        .write_output(&node, &container, b"newest\n")
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), body.next()).await;
    assert_eq!(next.unwrap().unwrap().unwrap(), "newest\n");
}

#[tokio::test]
async fn follow_sends_new_output_until_the_container_is_gone() {
    let api = TestApi::start().await;
    let (id, node, container) = running_instance(&api, "web").await;
    let req = Request::get(format!("/api/v1/instances/{id}/logs?follow=true&tail=1"))
        .body(Body::empty())
        .unwrap();
    let response = api.router.clone().oneshot(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body().into_data_stream();
    let mut received = String::new();
    let mut wait_for = async |needle: &str| {
        tokio::time::timeout(Duration::from_secs(10), async {
            while !received.contains(needle) {
                let piece = body.next().await.expect("the stream goes on").unwrap();
                received.push_str(&String::from_utf8_lossy(&piece));
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{needle:?} never came; received {received:?}"));
    };
    wait_for("started: image example/app:1").await;
    api.runtime
        .write_output(&node, &container, b"written later\n")
        .unwrap();
    wait_for("written later\n").await;

    // Deleting the workload stops its container (which logs it) and removes it: the stream
    // sends those last lines, then ends.
    api.call(Method::DELETE, "/api/v1/workloads/web", None, Body::empty())
        .await
        .expect(StatusCode::OK);
    wait_for("exited with code 143\n").await;
    let end = tokio::time::timeout(Duration::from_secs(10), body.next()).await;
    assert!(
        matches!(end, Ok(None)),
        "the stream ends once the instance is gone: {end:?}"
    );
}

#[tokio::test]
async fn a_followed_log_ends_when_the_server_shuts_down() {
    let api = TestApi::start().await;
    let (id, _, _) = running_instance(&api, "web").await;
    let req = Request::get(format!("/api/v1/instances/{id}/logs?follow=true"))
        .body(Body::empty())
        .unwrap();
    let response = api.router.clone().oneshot(req).await.unwrap();
    let mut body = response.into_body().into_data_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with("started:"));
    api.state.end_streams();
    let end = tokio::time::timeout(Duration::from_secs(5), body.next()).await;
    assert!(matches!(end, Ok(None)), "{end:?}");
}

#[tokio::test]
async fn errors_say_what_is_wrong() {
    let api = TestApi::start().await;
    let (id, _, _) = running_instance(&api, "web").await;

    let reply = api.get("/api/v1/instances/nope-123/logs").await;
    let reply = reply.expect(StatusCode::NOT_FOUND);
    assert_eq!(reply.code(), "not_found");
    assert!(reply.text().contains("nope-123"), "{}", reply.text());

    for (query, field) in [
        ("tail=abc", "tail"),
        ("tail=-1", "tail"),
        ("follow=yes", "follow"),
    ] {
        let reply = api
            .get(&format!("/api/v1/instances/{id}/logs?{query}"))
            .await;
        let reply = reply.expect(StatusCode::BAD_REQUEST);
        assert_eq!(reply.code(), "bad_request");
        assert_eq!(reply.fields(), [field], "{query}: {}", reply.text());
    }
    for bad in ["10", "abc", "1w", "-1m", "1.5h"] {
        let reply = api
            .get(&format!("/api/v1/instances/{id}/logs?since={bad}"))
            .await
            .expect(StatusCode::BAD_REQUEST);
        assert_eq!(reply.fields(), ["since"], "{bad}: {}", reply.text());
        assert!(
            reply.text().contains("a number and a unit (s, m, h or d)"),
            "{}",
            reply.text()
        );
    }

    let reply = api
        .get(&format!("/api/v1/instances/{id}/logs?container=sidecar"))
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(reply.fields(), ["container"]);
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("\"sidecar\"") && message.contains("its containers: main"),
        "{message}"
    );

    // Placed nowhere: no container to read yet.
    let mut huge = workload_json("huge", 1, 100);
    huge["containers"][0]["resources"]["memory_mb"] = 1_000_000.into();
    api.send_json(Method::POST, "/api/v1/workloads", &huge)
        .await
        .expect(StatusCode::CREATED);
    let pending = eventually("a pending instance", || async {
        let list = api.get("/api/v1/instances?workload=huge").await.json();
        list["items"][0]["id"].as_str().map(str::to_owned)
    })
    .await;
    let reply = api
        .get(&format!("/api/v1/instances/{pending}/logs"))
        .await
        .expect(StatusCode::CONFLICT);
    assert_eq!(reply.code(), "no_container");
    assert!(
        reply.text().contains(&format!(
            "instance {pending} is Pending: it has no container yet"
        )),
        "{}",
        reply.text()
    );
}

#[tokio::test]
async fn the_openapi_document_describes_logs() {
    let api = TestApi::start().await;
    let doc = api.get("/api/v1/openapi.json").await.json();
    let op = &doc["paths"]["/api/v1/instances/{id}/logs"]["get"];
    assert_eq!(op["operationId"], "instance_logs");
    let params: Vec<&str> = op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(params, ["id", "container", "tail", "since", "follow"]);
    assert!(op["responses"]["200"]["content"]
        .get("text/plain; charset=utf-8")
        .is_some());
}
