//! Paging of the list endpoints: `limit` and `continue` walk every item once, in order; without
//! `limit` the answer is what it was before paging existed; bad values are 400s naming the
//! parameter.

mod common;

use axum::http::{Method, StatusCode};
use common::{eventually, workload_json, TestApi};
use serde_json::Value;

/// Every page of `uri` (which has a `?`), following `continue` until it is absent: the pages'
/// items, and how many items each page held.
async fn walk(api: &TestApi, uri: &str) -> (Vec<Value>, Vec<usize>) {
    let mut items = Vec::new();
    let mut sizes = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let page_uri = match &next {
            Some(token) => format!("{uri}&continue={token}"),
            None => uri.to_owned(),
        };
        let page = api.get(&page_uri).await.expect(StatusCode::OK).json();
        let page_items = page["items"].as_array().unwrap().clone();
        sizes.push(page_items.len());
        items.extend(page_items);
        match page.get("continue") {
            Some(token) => next = Some(token.as_str().expect("a string token").to_owned()),
            None => return (items, sizes),
        }
        assert!(sizes.len() < 1000, "the walk of {uri} ends");
    }
}

/// The `items` of an unpaged list, checking that it has no `continue`.
async fn everything(api: &TestApi, uri: &str) -> Vec<Value> {
    let list = api.get(uri).await.expect(StatusCode::OK).json();
    assert_eq!(
        list.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["items"],
        "an unpaged list is exactly as before paging: {list}"
    );
    list["items"].as_array().unwrap().clone()
}

/// 25 one-replica workloads, `w00` to `w24`, each replica running.
async fn api_with_25_workloads() -> TestApi {
    let api = TestApi::start().await;
    // Created out of order: pages follow names, not creation.
    for i in (0..25).rev() {
        api.send_json(
            Method::POST,
            "/api/v1/workloads",
            &workload_json(&format!("w{i:02}"), 1, 10),
        )
        .await
        .expect(StatusCode::CREATED);
    }
    eventually("every replica running", || async {
        let list = everything(&api, "/api/v1/workloads").await;
        list.iter()
            .all(|w| w["replicas"]["running"] == 1)
            .then_some(())
    })
    .await;
    api
}

fn names(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|w| w["workload"]["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn workloads_page_by_ten() {
    let api = api_with_25_workloads().await;
    let all = everything(&api, "/api/v1/workloads").await;
    let expected: Vec<String> = (0..25).map(|i| format!("w{i:02}")).collect();
    assert_eq!(names(&all), expected);

    // Page by page: 10, 10, 5, with a token on the first two only.
    let first = api
        .get("/api/v1/workloads?limit=10")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(names(first["items"].as_array().unwrap()), expected[..10]);
    let token = first["continue"].as_str().expect("more follow");
    let second = api
        .get(&format!("/api/v1/workloads?limit=10&continue={token}"))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(names(second["items"].as_array().unwrap()), expected[10..20]);
    let token = second["continue"].as_str().expect("more follow");
    let third = api
        .get(&format!("/api/v1/workloads?limit=10&continue={token}"))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(names(third["items"].as_array().unwrap()), expected[20..]);
    assert!(third.get("continue").is_none(), "the last page: {third}");

    // Pages hold the same views as the whole list, replica counts included.
    let (paged, sizes) = walk(&api, "/api/v1/workloads?limit=10").await;
    assert_eq!(sizes, [10, 10, 5]);
    assert_eq!(paged, all);
    for limit in [1, 7, 24, 25, 26] {
        let (paged, _) = walk(&api, &format!("/api/v1/workloads?limit={limit}")).await;
        assert_eq!(paged, all, "pages of {limit}");
    }
    // Exactly one full page: no `continue` (the extra item read says nothing follows).
    let exact = api.get("/api/v1/workloads?limit=25").await.json();
    assert!(exact.get("continue").is_none());

    // A limit over the cap is lowered, not refused; `continue` without `limit` gives the rest.
    let capped = api
        .get("/api/v1/workloads?limit=1000000")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(capped["items"].as_array().unwrap().len(), 25);
    assert!(capped.get("continue").is_none());
    let rest = api
        .get(&format!(
            "/api/v1/workloads?continue={}",
            first["continue"].as_str().unwrap()
        ))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(names(rest["items"].as_array().unwrap()), expected[10..]);
    assert!(rest.get("continue").is_none());

    // Deleting the item a token ends at does not lose or repeat anything.
    let token = first["continue"].as_str().unwrap();
    api.call(
        Method::DELETE,
        "/api/v1/workloads/w09",
        None,
        axum::body::Body::empty(),
    )
    .await
    .expect(StatusCode::OK);
    let after_delete = api
        .get(&format!("/api/v1/workloads?limit=10&continue={token}"))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        names(after_delete["items"].as_array().unwrap()),
        expected[10..20]
    );
}

#[tokio::test]
async fn instances_page_with_and_without_filters() {
    let api = api_with_25_workloads().await;
    let all = everything(&api, "/api/v1/instances").await;
    assert_eq!(all.len(), 25);
    for limit in [1, 4, 10, 25] {
        let (paged, sizes) = walk(&api, &format!("/api/v1/instances?limit={limit}")).await;
        assert_eq!(paged, all, "pages of {limit}");
        assert!(sizes.iter().all(|&n| n <= limit));
    }
    let one = everything(&api, "/api/v1/instances?workload=w03").await;
    assert_eq!(one.len(), 1);
    let (paged, sizes) = walk(&api, "/api/v1/instances?workload=w03&limit=1").await;
    assert_eq!((paged, sizes), (one, vec![1]));

    // The node filter is a scan of the store; its pages still cover every match once.
    for node in ["node-a", "alpha", "node-b", "beta"] {
        let on_node = everything(&api, &format!("/api/v1/instances?node={node}")).await;
        for limit in [1, 3, 100] {
            let (paged, sizes) = walk(
                &api,
                &format!("/api/v1/instances?node={node}&limit={limit}"),
            )
            .await;
            assert_eq!(paged, on_node, "{node}, pages of {limit}");
            assert!(sizes.iter().all(|&n| n <= limit));
        }
    }
    let on_a = everything(&api, "/api/v1/instances?node=node-a").await;
    let on_b = everything(&api, "/api/v1/instances?node=node-b").await;
    assert_eq!(on_a.len() + on_b.len(), 25);
}

#[tokio::test]
async fn nodes_page() {
    let api = TestApi::start().await;
    let all = everything(&api, "/api/v1/nodes").await;
    assert_eq!(all.len(), 2);
    let first = api
        .get("/api/v1/nodes?limit=1")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(first["items"][0]["node"]["id"], "node-a");
    let token = first["continue"].as_str().expect("node-b follows");
    let second = api
        .get(&format!("/api/v1/nodes?limit=1&continue={token}"))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(second["items"][0]["node"]["id"], "node-b");
    assert!(second.get("continue").is_none());
    let (paged, sizes) = walk(&api, "/api/v1/nodes?limit=1").await;
    assert_eq!((paged, sizes), (all, vec![1, 1]));
}

#[tokio::test]
async fn events_page_forward_with_after_or_continue() {
    let api = api_with_25_workloads().await;
    let log = everything(&api, "/api/v1/events?limit=1000").await;
    assert!(log.len() > 25, "{} events", log.len());
    let seqs = |items: &[Value]| -> Vec<u64> {
        items.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
    };
    // The tail of the log never has a `continue`, as before.
    everything(&api, "/api/v1/events?limit=3").await;

    // From the start of the log, 7 at a time: the whole log once, in order.
    let (paged, sizes) = walk(&api, "/api/v1/events?after=0&limit=7").await;
    assert_eq!(seqs(&paged), seqs(&log));
    assert!(sizes.iter().all(|&n| n <= 7));
    // From the middle, by `after`.
    let middle = log[10]["seq"].as_u64().unwrap();
    let (paged, _) = walk(&api, &format!("/api/v1/events?after={middle}&limit=5")).await;
    assert_eq!(seqs(&paged), seqs(&log[11..]));
    // One workload's events, by name.
    let mine = everything(&api, "/api/v1/events?workload=w07").await;
    assert!(mine.len() >= 2, "{mine:?}");
    let (paged, sizes) = walk(&api, "/api/v1/events?workload=w07&after=0&limit=1").await;
    assert_eq!(paged, mine);
    assert_eq!(
        sizes.len(),
        mine.len(),
        "one per page, and no empty page at the end"
    );
    // A deleted workload's events page too.
    api.call(
        Method::DELETE,
        "/api/v1/workloads/w07",
        None,
        axum::body::Body::empty(),
    )
    .await
    .expect(StatusCode::OK);
    let gone = everything(&api, "/api/v1/events?workload=w07").await;
    let (paged, _) = walk(&api, "/api/v1/events?workload=w07&after=0&limit=2").await;
    assert_eq!(paged, gone);
}

#[tokio::test]
async fn bad_paging_parameters_are_400_naming_them() {
    let api = TestApi::start().await;
    let workloads_token = api_token(&api).await;
    for uri in [
        "/api/v1/workloads?limit=abc".to_owned(),
        "/api/v1/workloads?limit=-1".to_owned(),
        "/api/v1/workloads?limit=0".to_owned(),
        "/api/v1/workloads?limit=".to_owned(),
        "/api/v1/nodes?limit=many".to_owned(),
        "/api/v1/nodes?limit=0".to_owned(),
        "/api/v1/instances?limit=-5".to_owned(),
        "/api/v1/instances?node=node-a&limit=0".to_owned(),
        "/api/v1/events?limit=0".to_owned(),
        "/api/v1/events?limit=1.5".to_owned(),
    ] {
        let reply = api.get(&uri).await.expect(StatusCode::BAD_REQUEST);
        assert_eq!(reply.code(), "bad_request", "{uri}");
        assert_eq!(reply.fields(), ["limit"], "{uri}: {}", reply.text());
    }
    for uri in [
        "/api/v1/workloads?continue=not-a-token".to_owned(),
        "/api/v1/workloads?limit=2&continue=%25%25".to_owned(),
        // A token of another list.
        format!("/api/v1/nodes?limit=1&continue={workloads_token}"),
        format!("/api/v1/instances?limit=1&continue={workloads_token}"),
        format!("/api/v1/events?limit=1&continue={workloads_token}"),
        "/api/v1/events?after=3&continue=x".to_owned(),
        // A well-formed events token whose position is not a seq: not one of ours.
        format!("/api/v1/events?continue={}", "ZXZlbnRzOm5vdC1hLXNlcQ"),
    ] {
        let reply = api.get(&uri).await.expect(StatusCode::BAD_REQUEST);
        assert_eq!(reply.code(), "bad_request", "{uri}");
        assert_eq!(reply.fields(), ["continue"], "{uri}: {}", reply.text());
    }
    let reply = api
        .get("/api/v1/events?after=-1")
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(reply.fields(), ["after"], "{}", reply.text());
}

/// A genuine `continue` token of `GET /api/v1/workloads`.
async fn api_token(api: &TestApi) -> String {
    for name in ["a", "b"] {
        api.send_json(
            Method::POST,
            "/api/v1/workloads",
            &workload_json(name, 0, 10),
        )
        .await
        .expect(StatusCode::CREATED);
    }
    let page = api.get("/api/v1/workloads?limit=1").await.json();
    page["continue"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn openapi_describes_paging() {
    let api = TestApi::start().await;
    let doc = api.get("/api/v1/openapi.json").await.json();
    for path in [
        "/api/v1/workloads",
        "/api/v1/nodes",
        "/api/v1/instances",
        "/api/v1/events",
    ] {
        let params: Vec<&str> = doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("{path} has parameters"))
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert!(
            params.contains(&"limit") && params.contains(&"continue"),
            "{path}: {params:?}"
        );
    }
    let list = &doc["components"]["schemas"]["ListResponse_WorkloadView"];
    assert!(
        list.to_string().contains("\"continue\""),
        "ListResponse has `continue`: {list}"
    );
}
