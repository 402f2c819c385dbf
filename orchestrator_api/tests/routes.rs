//! Every route of `docs/api.md` on its happy path, in-process through the router, against a
//! real orchestrator on in-memory twins (two nodes).

mod common;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use common::{eventually, workload_json, TestApi};
use serde_json::{json, Value};

/// Replicas of `name` running, per the API.
async fn running(api: &TestApi, name: &str) -> u64 {
    let detail = api.get(&format!("/api/v1/workloads/{name}")).await.json();
    detail["replicas"]["running"].as_u64().unwrap()
}

#[tokio::test]
async fn workload_lifecycle() {
    let api = TestApi::start().await;

    // Create, in JSON and in YAML.
    let created = api
        .send_json(
            Method::POST,
            "/api/v1/workloads",
            &workload_json("web", 2, 100),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(created.headers["location"], "/api/v1/workloads/web");
    let view = created.json();
    assert_eq!(view["workload"]["name"], "web");
    assert_eq!(view["replicas"]["desired"], 2);
    let id = view["workload"]["id"].as_str().unwrap().to_owned();
    assert!(!id.is_empty(), "the server assigns an id");

    let yaml = "name: api\nreplicas: 1\ncontainers:\n  - name: main\n    image: example/api:1\n";
    let created = api
        .call(
            Method::POST,
            "/api/v1/workloads",
            Some("application/yaml"),
            yaml,
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(
        created.json()["workload"]["containers"][0]["image"],
        "example/api:1"
    );

    // No Content-Type with a body: JSON.
    let body = serde_json::to_vec(&workload_json("batch", 1, 100)).unwrap();
    api.call(Method::POST, "/api/v1/workloads", None, body)
        .await
        .expect(StatusCode::CREATED);

    // List, sorted by name.
    let list = api
        .get("/api/v1/workloads")
        .await
        .expect(StatusCode::OK)
        .json();
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["workload"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["api", "batch", "web"]);

    // Get by name and by id; the replicas come up.
    eventually("web runs 2 replicas", || async {
        (running(&api, "web").await == 2).then_some(())
    })
    .await;
    let by_name = api
        .get("/api/v1/workloads/web")
        .await
        .expect(StatusCode::OK)
        .json();
    let by_id = api
        .get(&format!("/api/v1/workloads/{id}"))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(by_name["workload"], by_id["workload"]);
    assert_eq!(by_name["instances"].as_array().unwrap().len(), 2);
    assert!(by_name["pending_reason"].is_null());
    let kinds: Vec<&str> = by_name["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"Updated"),
        "creation is an event: {kinds:?}"
    );
    let revision = by_name["revision"].as_u64().unwrap();

    // Update without a revision, then with a stale one, then with the current one.
    let updated = api
        .send_json(
            Method::PUT,
            "/api/v1/workloads/web",
            &workload_json("web", 3, 100),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(updated["workload"]["replicas"], 3);
    assert_eq!(
        updated["workload"]["id"],
        id.as_str(),
        "an update keeps the id"
    );
    let new_revision = updated["revision"].as_u64().unwrap();
    assert!(new_revision > revision);
    let stale = api
        .send_json(
            Method::PUT,
            &format!("/api/v1/workloads/web?revision={revision}"),
            &workload_json("web", 1, 100),
        )
        .await
        .expect(StatusCode::CONFLICT);
    assert_eq!(stale.code(), "stale_revision");
    api.send_json(
        Method::PUT,
        &format!("/api/v1/workloads/web?revision={new_revision}"),
        &workload_json("web", 1, 100),
    )
    .await
    .expect(StatusCode::OK);

    // Scale.
    let scaled = api
        .send_json(
            Method::POST,
            "/api/v1/workloads/web/scale",
            &json!({"replicas": 4}),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(scaled["workload"]["replicas"], 4);
    eventually("web runs 4 replicas", || async {
        (running(&api, "web").await == 4).then_some(())
    })
    .await;

    // Instances, filtered by workload (name or id) and node (id or name).
    let all = api
        .get("/api/v1/instances")
        .await
        .expect(StatusCode::OK)
        .json();
    assert!(all["items"].as_array().unwrap().len() >= 4);
    for key in ["web", id.as_str()] {
        let of_web = api
            .get(&format!("/api/v1/instances?workload={key}"))
            .await
            .expect(StatusCode::OK)
            .json();
        let items = of_web["items"].as_array().unwrap();
        assert!(items.iter().all(|i| i["workload_id"] == id.as_str()));
        assert!(items.len() >= 4, "{of_web}");
    }
    let mut per_node = 0;
    for (id, name) in [("node-a", "alpha"), ("node-b", "beta")] {
        let by_id = api
            .get(&format!("/api/v1/instances?workload=web&node={id}"))
            .await
            .json();
        let by_name = api
            .get(&format!("/api/v1/instances?workload=web&node={name}"))
            .await
            .json();
        assert_eq!(by_id, by_name);
        let items = by_id["items"].as_array().unwrap();
        assert!(items.iter().all(|i| i["node_id"] == id));
        per_node += items.iter().filter(|i| i["status"] == "Running").count();
    }
    assert_eq!(
        per_node, 4,
        "every running replica is on one of the two nodes"
    );
    let none = api
        .get("/api/v1/instances?workload=no-such-thing")
        .await
        .json();
    assert_eq!(none["items"], json!([]));

    // Delete: the definition comes back, then it is gone and its instances go.
    let deleted = api
        .call(Method::DELETE, "/api/v1/workloads/web", None, Body::empty())
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(deleted["workload"]["id"], id.as_str());
    assert_eq!(
        api.get("/api/v1/workloads/web")
            .await
            .expect(StatusCode::NOT_FOUND)
            .code(),
        "not_found"
    );
    eventually("web's instances are removed", || async {
        let left = api
            .get(&format!("/api/v1/instances?workload={id}"))
            .await
            .json();
        left["items"].as_array().unwrap().is_empty().then_some(())
    })
    .await;
    // Its events stay readable by name.
    let events = api
        .get("/api/v1/events?workload=web")
        .await
        .expect(StatusCode::OK)
        .json();
    let kinds: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.last(), Some(&"Deleted"), "{kinds:?}");
}

#[tokio::test]
async fn unschedulable_workloads_explain_themselves() {
    let api = TestApi::start().await;
    // More CPU than either node has.
    api.send_json(
        Method::POST,
        "/api/v1/workloads",
        &workload_json("huge", 1, common::NODE_A_CPU * 10),
    )
    .await
    .expect(StatusCode::CREATED);

    let event = eventually("an Unschedulable event", || async {
        let events = api.get("/api/v1/events?workload=huge").await.json();
        events["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == "Unschedulable")
            .cloned()
    })
    .await;
    assert_eq!(event["workload_name"], "huge");
    assert_eq!(event["unschedulable"]["nodes_total"], 2);
    assert_eq!(event["unschedulable"]["reasons"]["insufficient_cpu"], 2);
    assert_eq!(event["unschedulable"]["unplaced"], 1);

    let explained = api
        .get("/api/v1/workloads/huge/explain")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(explained["nodes_total"], 2);
    assert_eq!(explained["reasons"], json!({"insufficient_cpu": 2}));

    let detail = eventually("a pending replica", || async {
        let d = api.get("/api/v1/workloads/huge").await.json();
        (d["replicas"]["pending"] == 1).then_some(d)
    })
    .await;
    assert_eq!(detail["pending_reason"]["reasons"]["insufficient_cpu"], 2);

    // Only the most recent `limit` events, oldest first.
    let one = api
        .get("/api/v1/events?limit=1")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(one["items"].as_array().unwrap().len(), 1);
    let all = api
        .get("/api/v1/events?limit=100000")
        .await
        .expect(StatusCode::OK)
        .json();
    let seqs: Vec<u64> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {seqs:?}"
    );
    assert_eq!(one["items"][0]["seq"].as_u64(), seqs.last().copied());
}

#[tokio::test]
async fn nodes_by_id_and_name() {
    let api = TestApi::start().await;
    let list = api.get("/api/v1/nodes").await.expect(StatusCode::OK).json();
    let ids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["node-a", "node-b"]);
    let by_id = api
        .get("/api/v1/nodes/node-b")
        .await
        .expect(StatusCode::OK)
        .json();
    let by_name = api
        .get("/api/v1/nodes/beta")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(by_id, by_name);
    assert_eq!(
        by_id["node"]["capacity"]["cpu_millicores"],
        common::NODE_A_CPU / 2
    );
    assert_eq!(by_id["instances"], 0);
    let missing = api
        .get("/api/v1/nodes/gamma")
        .await
        .expect(StatusCode::NOT_FOUND);
    assert_eq!(missing.code(), "not_found");
}

#[tokio::test]
async fn preview_changes_nothing() {
    let api = TestApi::start().await;
    api.send_json(
        Method::POST,
        "/api/v1/workloads",
        &workload_json("web", 1, 100),
    )
    .await
    .expect(StatusCode::CREATED);
    eventually("web runs", || async {
        (running(&api, "web").await == 1).then_some(())
    })
    .await;
    let before = api.stored_workloads().await;

    // Three 1.5-core replicas: two fit on node-a, one on node-b.
    let preview = api
        .send_json(
            Method::POST,
            "/api/v1/preview",
            &workload_json("new", 3, 1500),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    let placed: u64 = preview["placements"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(placed, 3, "{preview}");
    assert!(preview["unschedulable"].is_null(), "{preview}");

    // Too much: the preview says why, still changing nothing.
    let yaml = "name: big\nreplicas: 1\ncontainers:\n  - name: m\n    image: i\n    resources: {cpu_millicores: 100000, memory_mb: 1}\n";
    let preview = api
        .call(Method::POST, "/api/v1/preview", Some("text/yaml"), yaml)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(preview["unschedulable"]["reasons"]["insufficient_cpu"], 2);

    assert_eq!(api.stored_workloads().await, before);
    // The loop keeps logging web's life, but nothing about the previewed workloads.
    let events = api.get("/api/v1/events").await.json();
    assert!(
        events["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["workload_name"] == "web"),
        "{events}"
    );
    assert_eq!(
        api.get("/api/v1/workloads/new").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn cluster_info_and_probes() {
    let api = TestApi::start().await;
    api.send_json(
        Method::POST,
        "/api/v1/workloads",
        &workload_json("web", 2, 100),
    )
    .await
    .expect(StatusCode::CREATED);
    let info = eventually("the loop counts the workload", || async {
        let info = api
            .get("/api/v1/cluster")
            .await
            .expect(StatusCode::OK)
            .json();
        (info["workloads"] == 1).then_some(info)
    })
    .await;
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(info["nodes"], 2);
    assert_eq!(info["store"], "memory");
    assert_eq!(info["runtime"], "simulated");

    let health = api.get("/healthz").await.expect(StatusCode::OK);
    assert_eq!(health.text(), "ok");
    let ready = api.get("/readyz").await.expect(StatusCode::OK);
    assert_eq!(ready.text(), "ready");

    // Once the loop is gone the server is not ready, and says so in JSON; reads of the store
    // still work.
    let TestApi {
        router,
        orchestrator,
        ..
    } = api;
    orchestrator.expect("running").shutdown().await;
    let ready = send(&router, "/readyz").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.code(), "unavailable");
    let list = send(&router, "/api/v1/workloads").await;
    assert_eq!(list.status, StatusCode::OK);
    let cluster = send(&router, "/api/v1/cluster").await;
    assert_eq!(cluster.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(cluster.code(), "unavailable");
    let metrics = send(&router, "/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(metrics.text().contains("orchestrator_loop_up 0"));
}

/// A GET through a bare router (for after the harness was taken apart).
async fn send(router: &axum::Router, uri: &str) -> common::Reply {
    use tower::ServiceExt;
    let response = router
        .clone()
        .oneshot(axum::http::Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    common::Reply {
        status: response.status(),
        headers: response.headers().clone(),
        body: axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap(),
    }
}

#[tokio::test]
async fn metrics_expose_the_series() {
    let api = TestApi::start().await;
    api.send_json(
        Method::POST,
        "/api/v1/workloads",
        &workload_json("web", 2, 100),
    )
    .await
    .expect(StatusCode::CREATED);
    api.get("/api/v1/nope").await.expect(StatusCode::NOT_FOUND);
    eventually("web runs", || async {
        (running(&api, "web").await == 2).then_some(())
    })
    .await;

    let reply = api.get("/metrics").await.expect(StatusCode::OK);
    assert!(reply.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = reply.text();
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .parse()
            .unwrap()
    };
    assert_eq!(value("orchestrator_loop_up"), 1.0);
    assert_eq!(value("orchestrator_workloads"), 1.0);
    assert_eq!(value("orchestrator_nodes"), 2.0);
    assert_eq!(value("orchestrator_instances{status=\"Running\"}"), 2.0);
    assert!(value("orchestrator_reconciles_total") >= 1.0);
    assert!(value("orchestrator_reconcile_seconds_total") > 0.0);
    // The histogram that replaced the average gauge: plans observed, their time summed (not
    // compared with the counter: a scrape racing a plan may see one ahead of the other).
    assert!(value("orchestrator_reconcile_duration_seconds_count") >= 1.0);
    assert!(value("orchestrator_reconcile_duration_seconds_sum") > 0.0);
    assert!(value("orchestrator_placements_total") >= 2.0);
    value("orchestrator_unschedulable_plans_total");
    value("orchestrator_restarts_total");
    assert_eq!(
        value("orchestrator_http_requests_total{method=\"POST\",status=\"201\"}"),
        1.0
    );
    assert_eq!(
        value("orchestrator_http_requests_total{method=\"GET\",status=\"404\"}"),
        1.0
    );
    // The latency histogram is per route template and status class: summed over them, it
    // counted every request so far (the POST, the 404, the polls).
    let total = |prefix: &str| -> f64 {
        let values: Vec<f64> = text
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert!(!values.is_empty(), "no {prefix} in\n{text}");
        values.iter().sum()
    };
    assert!(total("orchestrator_http_request_duration_seconds_count{") >= 3.0);
    let inf: f64 = text
        .lines()
        .filter(|l| {
            l.starts_with("orchestrator_http_request_duration_seconds_bucket{")
                && l.contains("le=\"+Inf\"")
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert!(inf >= 3.0, "{text}");
    assert_eq!(
        value("orchestrator_http_request_duration_seconds_count{route=\"/api/v1/workloads\",status=\"2xx\"}"),
        1.0,
        "the POST"
    );
    assert_eq!(
        value(
            "orchestrator_http_request_duration_seconds_count{route=\"unmatched\",status=\"4xx\"}"
        ),
        1.0,
        "the 404 of an unknown path"
    );
    total("orchestrator_http_request_duration_seconds_sum{");
}

#[tokio::test]
async fn openapi_document_lists_every_path() {
    let api = TestApi::start().await;
    let doc: Value = api
        .get("/api/v1/openapi.json")
        .await
        .expect(StatusCode::OK)
        .json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/v1/workloads", "get"),
        ("/api/v1/workloads", "post"),
        ("/api/v1/workloads/{name}", "get"),
        ("/api/v1/workloads/{name}", "put"),
        ("/api/v1/workloads/{name}", "delete"),
        ("/api/v1/workloads/{name}/scale", "post"),
        ("/api/v1/workloads/{name}/explain", "get"),
        ("/api/v1/preview", "post"),
        ("/api/v1/nodes", "get"),
        ("/api/v1/nodes/{name}", "get"),
        ("/api/v1/instances", "get"),
        ("/api/v1/events", "get"),
        ("/api/v1/cluster", "get"),
        ("/api/v1/agent/containers/{container_id}/logs", "get"),
        ("/api/v1/openapi.json", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing from {:?}",
            paths.keys().collect::<Vec<_>>()
        );
    }
    // Generators name client methods after operation ids: they must be unique.
    let mut ids: Vec<&str> = paths
        .values()
        .flat_map(|p| p.as_object().unwrap().values())
        .map(|op| op["operationId"].as_str().unwrap())
        .collect();
    let count = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), count, "duplicate operation ids");
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for schema in [
        "WorkloadDefinition",
        "WorkloadView",
        "WorkloadDetail",
        "ErrorBody",
        "Unschedulable",
        "ClusterInfo",
        "Membership",
        "LeaderInfo",
        "MemberInfo",
        "StoreHealth",
    ] {
        assert!(schemas.contains_key(schema), "schema {schema} missing");
    }
    // Fields a client needs are described, with the right requiredness.
    let def = &schemas["WorkloadDefinition"];
    let required: Vec<&str> = def["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(required.contains(&"name") && required.contains(&"containers"));
    assert!(!required.contains(&"id"), "the server assigns the id");
}

#[tokio::test]
async fn method_not_allowed_is_json_and_says_what_is() {
    let api = TestApi::start().await;
    let reply = api
        .call(Method::PATCH, "/api/v1/workloads", None, Body::empty())
        .await
        .expect(StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.code(), "method_not_allowed");
    let allow = reply.headers["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
}

#[tokio::test]
async fn drain_moves_instances_and_uncordon_reopens_the_node() {
    let api = TestApi::start().await;
    api.send_json(
        Method::POST,
        "/api/v1/workloads",
        &common::workload_json("mv", 2, 100),
    )
    .await
    .expect(StatusCode::CREATED);
    // Best fit puts both on the smaller node-b.
    let on = |node: &'static str| {
        let api = &api;
        async move {
            let list = api
                .get(&format!("/api/v1/instances?workload=mv&node={node}"))
                .await
                .expect(StatusCode::OK)
                .json();
            let items = list["items"].as_array().unwrap().clone();
            let running = items.iter().filter(|i| i["status"] == "Running").count();
            (items.len(), running)
        }
    };
    common::eventually("both running on node-b", || async {
        (on("node-b").await == (2, 2)).then_some(())
    })
    .await;

    let drained = api
        .send_json(
            Method::POST,
            "/api/v1/nodes/beta/drain",
            &serde_json::json!({}),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(drained["node"]["unschedulable"], true);
    common::eventually("both moved to node-a", || async {
        (on("node-a").await == (2, 2) && on("node-b").await.0 == 0).then_some(())
    })
    .await;
    let events = api.get("/api/v1/events?workload=mv").await.json();
    assert!(
        events["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["message"].as_str().unwrap().contains("node drained")),
        "{events}"
    );

    let reopened = api
        .send_json(
            Method::POST,
            "/api/v1/nodes/node-b/uncordon",
            &serde_json::json!({}),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(reopened["node"]["unschedulable"], false);
    assert_eq!(on("node-a").await, (2, 2), "what moved stays where it is");
    let missing = api
        .send_json(
            Method::POST,
            "/api/v1/nodes/nope/drain",
            &serde_json::json!({}),
        )
        .await
        .expect(StatusCode::NOT_FOUND);
    assert_eq!(missing.code(), "not_found");
}
