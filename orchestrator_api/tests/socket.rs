//! Black-box test over a real socket: `serve` on 127.0.0.1:0, spoken to in raw HTTP/1.1 over a
//! `TcpStream` (no HTTP client library), then shut down gracefully.

mod common;

use common::{workload_json, TestApi};
use serde_json::Value;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A response: status, lower-cased headers, body (de-chunked).
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// One request on a fresh connection (`Connection: close`, so the response ends at EOF).
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Response {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .await
        .expect("reads the response");
    parse(&raw)
}

fn parse(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = std::str::from_utf8(&raw[..split]).expect("ASCII headers");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    let status = status_line[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').expect("name: value");
            (k.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

/// Decodes a chunked body: `size-in-hex\r\ndata\r\n` ... `0\r\n\r\n`.
fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size_text = std::str::from_utf8(&data[..line_end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[tokio::test]
async fn serves_over_a_real_socket_and_shuts_down_gracefully() {
    let api = TestApi::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(orchestrator_api::serve(
        listener,
        api.state.clone(),
        async {
            let _ = stopped.await;
        },
    ));

    let health = request(addr, "GET", "/healthz", None, b"").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.body, b"ok");

    let body = serde_json::to_vec(&workload_json("web", 1, 100)).unwrap();
    let created = request(
        addr,
        "POST",
        "/api/v1/workloads",
        Some("application/json"),
        &body,
    )
    .await;
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    assert_eq!(created.header("location"), Some("/api/v1/workloads/web"));
    assert_eq!(created.header("content-type"), Some("application/json"));
    let id = created.json()["workload"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let yaml = b"name: api\nreplicas: 1\ncontainers:\n  - name: main\n    image: example/api:1\n";
    let created = request(
        addr,
        "POST",
        "/api/v1/workloads",
        Some("application/x-yaml"),
        yaml,
    )
    .await;
    assert_eq!(created.status, 201);

    let got = request(addr, "GET", "/api/v1/workloads/web", None, b"").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["workload"]["id"], id.as_str());
    let got = request(addr, "GET", &format!("/api/v1/workloads/{id}"), None, b"").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["workload"]["name"], "web");

    let bad = request(
        addr,
        "POST",
        "/api/v1/workloads",
        Some("application/json"),
        br#"{"name": "Not A Label", "replicas": 1, "containers": []}"#,
    )
    .await;
    assert_eq!(bad.status, 400);
    let error = bad.json();
    assert_eq!(error["error"]["code"], "validation_failed");
    let fields: Vec<&str> = error["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["name", "containers"]);

    let malformed = request(
        addr,
        "POST",
        "/api/v1/workloads",
        Some("application/json"),
        b"{",
    )
    .await;
    assert_eq!(malformed.status, 400);
    assert_eq!(malformed.json()["error"]["code"], "bad_request");

    let missing = request(addr, "GET", "/no/such/route", None, b"").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"]["code"], "not_found");

    let list = request(addr, "GET", "/api/v1/workloads", None, b"").await;
    assert_eq!(list.json()["items"].as_array().unwrap().len(), 2);

    // Graceful shutdown: serve returns, and the port stops answering.
    stop.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .expect("serve returns after shutdown")
        .unwrap()
        .expect("serve ends cleanly");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "nothing listens any more"
    );
}
