//! Bad input, one table: every case gets its status, its JSON error code and (where there is
//! one) the field path, never a 500 or a panic, and leaves the stored workloads exactly as they
//! were.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::{workload_json, TestApi};
use serde_json::json;

/// One bad request and what must come back.
struct Case {
    what: &'static str,
    req: Req,
    status: StatusCode,
    code: &'static str,
    /// Field paths that must all be in the details.
    fields: &'static [&'static str],
}

/// A request of the table.
struct Req {
    method: Method,
    uri: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
}

fn req(
    method: Method,
    uri: &str,
    content_type: Option<&'static str>,
    body: impl Into<Vec<u8>>,
) -> Req {
    Req {
        method,
        uri: uri.to_owned(),
        content_type,
        body: body.into(),
    }
}

fn case(
    what: &'static str,
    req: Req,
    status: StatusCode,
    code: &'static str,
    fields: &'static [&'static str],
) -> Case {
    Case {
        what,
        req,
        status,
        code,
        fields,
    }
}

const JSON: Option<&str> = Some("application/json");
const YAML: Option<&str> = Some("application/yaml");
const BAD: StatusCode = StatusCode::BAD_REQUEST;

/// A POST of a JSON workload to /api/v1/workloads.
fn post(
    what: &'static str,
    body: serde_json::Value,
    status: StatusCode,
    code: &'static str,
    fields: &'static [&'static str],
) -> Case {
    case(
        what,
        req(
            Method::POST,
            "/api/v1/workloads",
            JSON,
            serde_json::to_vec(&body).unwrap(),
        ),
        status,
        code,
        fields,
    )
}

/// `w` with the member at `pointer` (JSON pointer) set to `value`, added if absent.
fn with(mut w: serde_json::Value, pointer: &str, value: serde_json::Value) -> serde_json::Value {
    let (parent, key) = pointer.rsplit_once('/').expect("a JSON pointer");
    let parent = w
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("no {parent}"));
    match parent {
        serde_json::Value::Object(map) => {
            map.insert(key.to_owned(), value);
        }
        serde_json::Value::Array(items) => items[key.parse::<usize>().unwrap()] = value,
        other => panic!("cannot set {key} in {other}"),
    }
    w
}

/// One row per case, kept on one line each so the table reads as a table.
#[rustfmt::skip]
fn cases(existing_revision: u64) -> Vec<Case> {
    let ok = workload_json("fresh", 1, 100);
    let two_mib = vec![b' '; 2 * 1024 * 1024];
    let deep_json = "[".repeat(100_000);
    let deep_yaml = "- ".repeat(10_000) + "x";
    let mut duplicate = ok.clone();
    duplicate["containers"] = json!([
        {"name": "app", "image": "i"},
        {"name": "app", "image": "i"}
    ]);
    vec![
        // Malformed documents.
        case("malformed JSON", req(Method::POST, "/api/v1/workloads", JSON, r#"{"name": "x","#), BAD, "bad_request", &[]),
        case("malformed YAML", req(Method::POST, "/api/v1/workloads", YAML, "name: [unclosed\nreplicas: 1"), BAD, "bad_request", &[]),
        case("YAML with tabs", req(Method::POST, "/api/v1/workloads", YAML, "name: x\n\treplicas: 1"), BAD, "bad_request", &[]),
        case("JSON array instead of object", req(Method::POST, "/api/v1/workloads", JSON, "[]"), BAD, "bad_request", &[]),
        case("JSON with trailing garbage", req(Method::POST, "/api/v1/workloads", JSON, format!("{ok} {{}}")), BAD, "bad_request", &[]),
        case("not UTF-8", req(Method::POST, "/api/v1/workloads", JSON, vec![0xff, 0xfe, b'{']), BAD, "bad_request", &[]),
        case("deeply nested JSON", req(Method::POST, "/api/v1/workloads", JSON, deep_json), BAD, "bad_request", &[]),
        case("deeply nested YAML", req(Method::POST, "/api/v1/workloads", YAML, deep_yaml), BAD, "bad_request", &[]),
        case("YAML aliases", req(Method::POST, "/api/v1/workloads", YAML, "name: w\nreplicas: 1\ncontainers:\n  - name: a\n    image: i\n    command: &a [x, x, x, x, x, x, x, x]\n    args: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n    env: {A: *b}\n"), BAD, "bad_request", &["containers[0].args[0]"]),
        case("two YAML documents", req(Method::POST, "/api/v1/workloads", YAML, format!("{}---\n{}", serde_norway::to_string(&ok).unwrap(), serde_norway::to_string(&ok).unwrap())), BAD, "bad_request", &[]),
        // Fields: unknown, missing, wrong type, out of range.
        post("unknown field", with(ok.clone(), "/colour", json!("red")), BAD, "bad_request", &["colour"]),
        post("unknown container field", with(ok.clone(), "/containers/0/colour", json!("red")), BAD, "bad_request", &["containers[0].colour"]),
        case("unknown field in YAML", req(Method::POST, "/api/v1/workloads", YAML, "name: w\nreplicas: 1\ncontainers:\n  - name: a\n    image: i\n    resources: {cpu_millicores: 1, memory_mb: 1, gpus: 1}\n"), BAD, "bad_request", &["containers[0].resources.gpus"]),
        post("missing field", json!({"name": "w", "replicas": 1}), BAD, "bad_request", &["containers"]),
        case("missing field in YAML", req(Method::POST, "/api/v1/workloads", YAML, "name: w\nreplicas: 1\ncontainers:\n  - name: a\n"), BAD, "bad_request", &["containers[0].image"]),
        post("wrong type", with(ok.clone(), "/replicas", json!("three")), BAD, "bad_request", &["replicas"]),
        post("wrong nested type", with(ok.clone(), "/containers/0/resources/memory_mb", json!("64Mi")), BAD, "bad_request", &["containers[0].resources.memory_mb"]),
        post("negative replicas", with(ok.clone(), "/replicas", json!(-1)), BAD, "bad_request", &["replicas"]),
        post("overflowing replicas", with(ok.clone(), "/replicas", json!(4_294_967_296_u64)), BAD, "bad_request", &["replicas"]),
        case("overflowing u64", req(Method::POST, "/api/v1/workloads", JSON, r#"{"name":"w","replicas":1,"containers":[{"name":"a","image":"i","resources":{"memory_mb":18446744073709551616}}]}"#), BAD, "bad_request", &["containers[0].resources.memory_mb"]),
        post("port out of range", with(ok.clone(), "/containers/0/ports", json!([{"container_port": 70000}])), BAD, "bad_request", &["containers[0].ports[0].container_port"]),
        post("unknown enum value", with(ok.clone(), "/restart_policy", json!("Sometimes")), BAD, "bad_request", &["restart_policy"]),
        // Well-formed but breaking the rules: every problem listed.
        post("replicas over the max", with(ok.clone(), "/replicas", json!(10_001)), BAD, "validation_failed", &["replicas"]),
        post("non-DNS name", with(ok.clone(), "/name", json!("Bad_Name")), BAD, "validation_failed", &["name"]),
        post("64-character name", with(ok.clone(), "/name", json!("a".repeat(64))), BAD, "validation_failed", &["name"]),
        post("empty name", with(ok.clone(), "/name", json!("")), BAD, "validation_failed", &["name"]),
        post("duplicate container names", duplicate, BAD, "validation_failed", &["containers[1].name"]),
        post("no containers", with(ok.clone(), "/containers", json!([])), BAD, "validation_failed", &["containers"]),
        post(
            "several problems at once",
            with(with(with(ok.clone(), "/name", json!("-x-")), "/replicas", json!(20_000)), "/containers/0/resources/memory_mb", json!(0)),
            BAD,
            "validation_failed",
            &["name", "replicas", "containers[0].resources.memory_mb"],
        ),
        // Health checks and the update strategy.
        post("probe port not in the container", with(ok.clone(), "/containers/0/readiness_probe", json!({"http": {"path": "/", "port": 9999}})), BAD, "validation_failed", &["containers[0].readiness_probe.http.port"]),
        post("zero probe period and threshold", with(with(ok.clone(), "/containers/0/ports", json!([{"container_port": 80}])), "/containers/0/liveness_probe", json!({"tcp": {"port": 80}, "period_seconds": 0, "failure_threshold": 0})), BAD, "validation_failed", &["containers[0].liveness_probe.period_seconds", "containers[0].liveness_probe.failure_threshold"]),
        post("negative probe period", with(ok.clone(), "/containers/0/readiness_probe", json!({"exec": {"command": ["true"]}, "period_seconds": -1})), BAD, "bad_request", &["containers[0].readiness_probe.period_seconds"]),
        post("exec probe with an empty command", with(ok.clone(), "/containers/0/startup_probe", json!({"exec": {"command": []}})), BAD, "validation_failed", &["containers[0].startup_probe.exec.command"]),
        post("probe with two checks", with(ok.clone(), "/containers/0/readiness_probe", json!({"exec": {"command": ["true"]}, "tcp": {"port": 80}})), BAD, "validation_failed", &["containers[0].readiness_probe"]),
        post("surge and unavailability both 0", with(ok.clone(), "/strategy", json!({"max_surge": 0, "max_unavailable": "0%"})), BAD, "validation_failed", &["strategy.max_unavailable"]),
        post("a percentage over 100", with(ok.clone(), "/strategy", json!({"max_surge": "150%"})), BAD, "validation_failed", &["strategy.max_surge"]),
        post("unknown strategy type", with(ok.clone(), "/strategy", json!({"type": "BlueGreen"})), BAD, "bad_request", &["strategy.type"]),
        case("undo to an unknown revision", req(Method::POST, "/api/v1/workloads/existing/rollout/undo", JSON, r#"{"to_revision": 7}"#), BAD, "validation_failed", &["to_revision"]),
        case("undo with an unknown field", req(Method::POST, "/api/v1/workloads/existing/rollout/undo", JSON, r#"{"revision": 1}"#), BAD, "bad_request", &["revision"]),
        case("rollout of an unknown workload", req(Method::GET, "/api/v1/workloads/nope/rollout", None, ""), StatusCode::NOT_FOUND, "not_found", &[]),
        case("invalid preview", req(Method::POST, "/api/v1/preview", JSON, serde_json::to_vec(&with(ok.clone(), "/name", json!("UPPER"))).unwrap()), BAD, "validation_failed", &["name"]),
        // Bodies: empty, too large, wrong type.
        case("empty body", req(Method::POST, "/api/v1/workloads", JSON, ""), BAD, "bad_request", &[]),
        case("blank body", req(Method::POST, "/api/v1/workloads", YAML, "  \n\t\n"), BAD, "bad_request", &[]),
        case("empty body without content type", req(Method::POST, "/api/v1/workloads", None, ""), BAD, "bad_request", &[]),
        case("2 MiB body", req(Method::POST, "/api/v1/workloads", JSON, two_mib.clone()), StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", &[]),
        case("2 MiB YAML on PUT", req(Method::PUT, "/api/v1/workloads/existing", YAML, two_mib.clone()), StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", &[]),
        case("text/plain", req(Method::POST, "/api/v1/workloads", Some("text/plain"), serde_json::to_vec(&ok).unwrap()), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", &[]),
        case("form data", req(Method::POST, "/api/v1/workloads", Some("application/x-www-form-urlencoded"), "name=x"), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", &[]),
        // Conflicts and absences.
        post("name conflict", workload_json("existing", 5, 100), StatusCode::CONFLICT, "already_exists", &[]),
        case("unknown workload", req(Method::GET, "/api/v1/workloads/nope", None, ""), StatusCode::NOT_FOUND, "not_found", &[]),
        case("update of an unknown workload", req(Method::PUT, "/api/v1/workloads/nope", JSON, serde_json::to_vec(&workload_json("nope", 1, 100)).unwrap()), StatusCode::NOT_FOUND, "not_found", &[]),
        case("delete of an unknown workload", req(Method::DELETE, "/api/v1/workloads/nope", None, ""), StatusCode::NOT_FOUND, "not_found", &[]),
        case("scale of an unknown workload", req(Method::POST, "/api/v1/workloads/nope/scale", JSON, r#"{"replicas": 1}"#), StatusCode::NOT_FOUND, "not_found", &[]),
        case("explain of an unknown workload", req(Method::GET, "/api/v1/workloads/nope/explain", None, ""), StatusCode::NOT_FOUND, "not_found", &[]),
        case("unknown route", req(Method::GET, "/api/v1/nope", None, ""), StatusCode::NOT_FOUND, "not_found", &[]),
        case("unknown route outside the API", req(Method::POST, "/", JSON, "{}"), StatusCode::NOT_FOUND, "not_found", &[]),
        case("method not allowed", req(Method::DELETE, "/api/v1/workloads", None, ""), StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", &[]),
        // Updates.
        case("PUT with another name", req(Method::PUT, "/api/v1/workloads/existing", JSON, serde_json::to_vec(&workload_json("other", 1, 100)).unwrap()), BAD, "bad_request", &["name"]),
        case("PUT at a stale revision", req(Method::PUT, &format!("/api/v1/workloads/existing?revision={}", existing_revision + 100), JSON, serde_json::to_vec(&workload_json("existing", 3, 100)).unwrap()), StatusCode::CONFLICT, "stale_revision", &[]),
        case("PUT with a bad revision", req(Method::PUT, "/api/v1/workloads/existing?revision=latest", JSON, serde_json::to_vec(&workload_json("existing", 3, 100)).unwrap()), BAD, "bad_request", &[]),
        case("PUT with an invalid body", req(Method::PUT, "/api/v1/workloads/existing", JSON, serde_json::to_vec(&workload_json("existing", 100_000, 100)).unwrap()), BAD, "validation_failed", &["replicas"]),
        // Scale.
        case("negative scale", req(Method::POST, "/api/v1/workloads/existing/scale", JSON, r#"{"replicas": -3}"#), BAD, "bad_request", &["replicas"]),
        case("scale over the max", req(Method::POST, "/api/v1/workloads/existing/scale", JSON, r#"{"replicas": 20000}"#), BAD, "validation_failed", &["replicas"]),
        case("scale with an unknown field", req(Method::POST, "/api/v1/workloads/existing/scale", JSON, r#"{"replicas": 1, "force": true}"#), BAD, "bad_request", &["force"]),
        case("scale without replicas", req(Method::POST, "/api/v1/workloads/existing/scale", JSON, "{}"), BAD, "bad_request", &["replicas"]),
        case("scale in YAML", req(Method::POST, "/api/v1/workloads/existing/scale", YAML, "replicas: 1"), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", &[]),
        case("scale with an empty body", req(Method::POST, "/api/v1/workloads/existing/scale", JSON, ""), BAD, "bad_request", &[]),
        // Query strings.
        case("non-numeric limit", req(Method::GET, "/api/v1/events?limit=many", None, ""), BAD, "bad_request", &["limit"]),
        case("negative limit", req(Method::GET, "/api/v1/events?limit=-1", None, ""), BAD, "bad_request", &["limit"]),
        case("unknown instance filter", req(Method::GET, "/api/v1/instances?colour=red", None, ""), BAD, "bad_request", &[]),
    ]
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let api = TestApi::start().await;
    let created = api
        .send_json(
            Method::POST,
            "/api/v1/workloads",
            &workload_json("existing", 1, 100),
        )
        .await
        .expect(StatusCode::CREATED)
        .json();
    let revision = created["revision"].as_u64().unwrap();
    let before = api.stored_workloads().await;

    let mut failures = Vec::new();
    for c in cases(revision) {
        let Req {
            method,
            uri,
            content_type,
            body,
        } = c.req;
        let reply = api.call(method, &uri, content_type, body).await;
        let problem = if reply.status != c.status {
            Some(format!("status {} (want {})", reply.status, c.status))
        } else if serde_json::from_slice::<serde_json::Value>(&reply.body).is_err() {
            Some("body is not JSON".to_owned())
        } else if reply.code() != c.code {
            Some(format!("code {} (want {})", reply.code(), c.code))
        } else {
            let fields = reply.fields();
            c.fields
                .iter()
                .find(|f| !fields.iter().any(|g| g == *f))
                .map(|f| format!("field {f} not in details {fields:?}"))
        };
        if let Some(problem) = problem {
            failures.push(format!("{}: {problem}\n    body: {}", c.what, reply.text()));
        }
        assert_eq!(
            api.stored_workloads().await,
            before,
            "{}: the store changed",
            c.what
        );
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// The body limit answers in JSON whichever layer catches it: tower-http's, from a declared
/// `Content-Length`, or the extractor's, while reading a body whose length was not declared
/// (the socket test sends one chunked).
#[tokio::test]
async fn oversized_bodies_get_a_json_413_either_way() {
    let api = TestApi::start().await;
    let two_mib = vec![b'x'; 2 * 1024 * 1024];
    let declared = Request::post("/api/v1/workloads")
        .header("content-type", "application/json")
        .header("content-length", two_mib.len())
        .body(Body::from(two_mib.clone()))
        .unwrap();
    let undeclared = Request::post("/api/v1/workloads")
        .header("content-type", "application/json")
        .body(Body::from(two_mib))
        .unwrap();
    for req in [declared, undeclared] {
        let reply = api.send(req).await.expect(StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(reply.code(), "payload_too_large");
        assert_eq!(reply.headers["content-type"], "application/json");
    }
    assert!(api.stored_workloads().await.is_empty());
}
