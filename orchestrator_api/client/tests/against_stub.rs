//! The client against a stub server: a few lines of `std::net` on 127.0.0.1:0 answering canned
//! responses and recording each request's line and `Authorization` header, so these tests see
//! exactly what goes over the wire (URLs, query order, paging, the token) and how every kind of
//! answer comes back (DTOs, the server's error body, undecodable bodies, no server at all).

use orchestrator_client::{
    Client, ClientError, Events, Instances, Listing, LogsQuery, PageRequest, Workloads,
};
use orchestrator_shared_types::api::{ErrorBody, ErrorInfo, ListResponse};
use orchestrator_shared_types::{Event, EventKind, FieldError};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// `(status, content type, body)` for a request target (`/api/v1/...?query`).
type Routes = fn(&str, &str) -> (u16, &'static str, String);

struct Stub {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Stub {
    fn start(routes: Routes) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        // Lives as long as the test process; only this test's client talks to it.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = answer(stream, routes, &log);
            }
        });
        Stub { url, seen }
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// Reads one request, records `METHOD target [auth]`, answers and closes the connection.
fn answer(stream: TcpStream, routes: Routes, seen: &Mutex<Vec<String>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("").to_owned(),
        parts.next().unwrap_or("").to_owned(),
    );
    let (mut length, mut auth) = (0, String::new());
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        if header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
            if name.eq_ignore_ascii_case("authorization") {
                auth = format!(" [{}]", value.trim());
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    seen.lock()
        .unwrap()
        .push(format!("{method} {target}{auth}"));
    let (status, content_type, text) = routes(&method, &target);
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} Canned\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{text}",
        text.len()
    )?;
    stream.flush()
}

const JSON: &str = "application/json";

fn event(seq: u64) -> Event {
    let mut e = Event::new(EventKind::Scheduled, format!("event {seq}"));
    e.seq = seq;
    e
}

fn page(seqs: &[u64], next: Option<&str>) -> String {
    serde_json::to_string(&ListResponse {
        items: seqs.iter().map(|s| event(*s)).collect(),
        next: next.map(str::to_owned),
    })
    .unwrap()
}

fn routes(method: &str, target: &str) -> (u16, &'static str, String) {
    match (method, target) {
        // Three pages, the middle one empty but not the last (as `node` filters can give).
        ("GET", "/api/v1/events?workload=web&after=0&limit=2") => {
            (200, JSON, page(&[1, 2], Some("t1")))
        }
        ("GET", "/api/v1/events?workload=web&after=0&limit=2&continue=t1") => {
            (200, JSON, page(&[], Some("t2")))
        }
        ("GET", "/api/v1/events?workload=web&after=0&limit=2&continue=t2") => {
            (200, JSON, page(&[3], None))
        }
        ("POST", "/api/v1/workloads") => {
            let body = ErrorBody {
                error: ErrorInfo {
                    code: "validation_failed".into(),
                    message: "invalid workload: 1 problem".into(),
                    details: vec![FieldError {
                        field: "containers[0].image".into(),
                        message: "must not be empty".into(),
                    }],
                },
            };
            (400, JSON, serde_json::to_string(&body).unwrap())
        }
        ("GET", "/api/v1/workloads/proxied") => {
            (502, "text/html", "<html>bad gateway</html>".into())
        }
        ("GET", "/api/v1/cluster") => (200, JSON, r#"{"nodes": "many"}"#.into()),
        // The stub writes the content type raw: a second header rides along after it.
        ("GET", "/api/v1/nodes/stale") => (
            200,
            "application/json\r\nx-orchestrator-stale: the store is unreachable since 12:00:03",
            serde_json::to_string(&orchestrator_shared_types::api::NodeView {
                node: orchestrator_shared_types::Node::new(
                    "stale",
                    orchestrator_shared_types::Resources::new(1000, 1024, 0),
                ),
                allocated: Default::default(),
                instances: 0,
            })
            .unwrap(),
        ),
        ("GET", "/api/v1/instances/web-1/logs?tail=2") => {
            (200, "text/plain; charset=utf-8", "a\nb\n".into())
        }
        _ => (
            404,
            JSON,
            r#"{"error":{"code":"not_found","message":"no route"}}"#.into(),
        ),
    }
}

#[tokio::test]
async fn list_all_follows_continue_to_the_end_not_to_a_short_page() {
    let stub = Stub::start(routes);
    let client = Client::new(&stub.url, None).unwrap();
    let events = Events {
        workload: Some("web".into()),
        after: Some(0),
    };
    let all = client.list_all(&events, Some(2)).await.unwrap();
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(stub.requests().len(), 3, "{:?}", stub.requests());

    // One page at a time: the token comes back as `next`.
    let first = client.list(&events, &PageRequest::first(2)).await.unwrap();
    assert_eq!(first.next.as_deref(), Some("t1"));
    assert_eq!(first.items.len(), 2);
}

#[tokio::test]
async fn http_errors_keep_the_servers_body_and_every_field() {
    let stub = Stub::start(routes);
    let client = Client::new(&stub.url, None).unwrap();
    let err = client
        .create_workload(&serde_json::json!({"name": "web"}))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert_eq!(err.code(), Some("validation_failed"));
    assert_eq!(err.to_string(), "invalid workload: 1 problem");
    let details = &err.body().unwrap().error.details;
    assert_eq!(details[0].field, "containers[0].image");
    assert!(!err.is_transient());

    // Not the API's shape (a proxy's page): still an error with the status and the text.
    let err = client.get_workload("proxied").await.unwrap_err();
    assert_eq!(err.code(), Some("http_502"));
    assert!(err.to_string().contains("bad gateway"), "{err}");
}

#[tokio::test]
async fn answers_of_the_wrong_shape_are_decode_errors_naming_the_request() {
    let stub = Stub::start(routes);
    let client = Client::new(&stub.url, None).unwrap();
    let err = client.cluster_info().await.unwrap_err();
    let ClientError::Decode { request, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(request, "GET /api/v1/cluster");
    assert!(std::error::Error::source(&err).is_some());
}

#[tokio::test]
async fn no_server_is_unreachable_with_the_address_and_the_cause() {
    // A port that was just free: nothing listens there once the listener is dropped.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let client = Client::new(&url, None).unwrap();
    let err = client
        .list(&Workloads, &PageRequest::default())
        .await
        .unwrap_err();
    let ClientError::Unreachable { url: u, reason } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(u, &url);
    // The innermost cause, not reqwest's wrappers.
    assert!(!reason.contains("error sending request"), "{reason}");
    assert!(reason.to_lowercase().contains("refused"), "{reason}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn the_token_is_sent_as_a_bearer_and_names_are_encoded() {
    let stub = Stub::start(routes);
    let client = Client::new(&stub.url, Some("s3cret".into())).unwrap();
    let err = client.get_workload("a/b").await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    assert_eq!(
        stub.requests(),
        ["GET /api/v1/workloads/a%2Fb [Bearer s3cret]"]
    );
    let anonymous = Client::new(&stub.url, Some(String::new())).unwrap();
    let _ = anonymous.get_node("n").await;
    assert_eq!(stub.requests()[1], "GET /api/v1/nodes/n");
}

#[tokio::test]
async fn logs_come_as_text_or_as_a_stream() {
    let stub = Stub::start(routes);
    let client = Client::new(&stub.url, None).unwrap();
    let query = LogsQuery {
        tail: Some(2),
        ..LogsQuery::default()
    };
    assert_eq!(client.logs_text("web-1", &query).await.unwrap(), "a\nb\n");
    let mut stream = client.logs("web-1", &query).await.unwrap();
    let mut got = Vec::new();
    while let Some(chunk) = stream.next_chunk().await.unwrap() {
        got.extend(chunk);
    }
    assert_eq!(got, b"a\nb\n");
    let err = client
        .logs("nope", &LogsQuery::default())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404));
}

#[test]
fn instance_filters_are_query_parameters() {
    let i = Instances {
        workload: Some("web".into()),
        node: None,
    };
    assert_eq!(i.filters(), [("workload", "web".to_owned())]);
}

#[tokio::test]
async fn answers_marked_stale_reach_the_hook() {
    let stub = Stub::start(routes);
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = Arc::clone(&seen);
    let client = Client::new(&stub.url, None)
        .unwrap()
        .on_stale(move |reason| log.lock().unwrap().push(reason.to_owned()));
    let node = client.get_node("stale").await.unwrap();
    assert_eq!(
        node.node.id.as_str(),
        "stale",
        "the answer is returned as usual"
    );
    assert_eq!(
        *seen.lock().unwrap(),
        ["the store is unreachable since 12:00:03"]
    );
    // Unmarked answers (here an error) do not call it.
    let _ = client.get_node("fresh").await.unwrap_err();
    assert_eq!(seen.lock().unwrap().len(), 1);
}
