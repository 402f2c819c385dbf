//! [`Daemon`]: a real `orchestratord` process on a free port.
//!
//! It listens on `127.0.0.1:0` and logs JSON; its "orchestratord ready" line says which port
//! it got, and then `/readyz` is polled until it answers 200. Its log is read all along (a
//! daemon never blocks on a full pipe) and the last lines are kept for failure messages, and
//! printed when the test panics. `E2E_DAEMON_LOG=1` echoes every line as it comes.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Flags of a daemon on the simulated runtime: node `node-1` with 16 CPUs and 32 GB.
pub const SIMULATED_ARGS: [&str; 8] = [
    "--runtime",
    "simulated",
    "--node-name",
    "node-1",
    "--cpu-millicores",
    "16000",
    "--memory-mb",
    "32768",
];

/// How many log lines are kept for failure messages.
const LOG_TAIL: usize = 400;

/// The `admin` API token of the kit's token file ([`tokens_file`]); the kit's own requests
/// ([`http`] and the methods of [`Daemon`]) always send it, which daemons without tokens ignore.
pub const ADMIN_TOKEN: &str = "orc_testkit-admin";

/// The `read-only` API token of the kit's token file.
pub const READ_ONLY_TOKEN: &str = "orc_testkit-reader";

/// A token file (made once per test process, in the temporary directory) accepting
/// [`ADMIN_TOKEN`] as `admin` and [`READ_ONLY_TOKEN`] as `reader`, for `orchestratord --tokens`.
/// Daemons that listen beyond loopback ([`DaemonBuilder::on_host`]) are given it.
pub fn tokens_file() -> &'static Path {
    use orchestrator_shared_types::auth::{hash_token, Role, TokenEntry};
    static FILE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let path = std::env::temp_dir().join(format!(
            "orchestrator-testkit-tokens-{}.yaml",
            std::process::id()
        ));
        let entry = |name: &str, role, token| TokenEntry {
            name: name.to_owned(),
            role,
            sha256: hash_token(token),
        };
        let file = serde_json::json!({"tokens": [
            entry("admin", Role::Admin, ADMIN_TOKEN),
            entry("reader", Role::ReadOnly, READ_ONLY_TOKEN),
        ]});
        // JSON is YAML.
        std::fs::write(&path, file.to_string()).expect("writing the kit's token file");
        path
    })
}

/// How long a daemon may take to be ready, unless told otherwise.
const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a SIGTERMed daemon may take to drain and exit.
const TERMINATE_TIMEOUT: Duration = Duration::from_secs(60);

/// What to start: flags, data dir, environment. [`DaemonBuilder::start`] starts it.
#[derive(Clone, Debug)]
pub struct DaemonBuilder {
    exe: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    ready_timeout: Duration,
    listen: Option<SocketAddr>,
    netns: Option<String>,
}

impl Default for DaemonBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl DaemonBuilder {
    /// A daemon with only the kit's own flags (`--listen 127.0.0.1:0 --log-format json
    /// --data-dir DIR`): the runtime is the daemon's default (youki) unless flags say otherwise.
    pub fn new() -> Self {
        Self {
            exe: None,
            data_dir: None,
            args: Vec::new(),
            envs: Vec::new(),
            ready_timeout: DEFAULT_READY_TIMEOUT,
            listen: None,
            netns: None,
        }
    }

    /// Adds [`SIMULATED_ARGS`].
    pub fn simulated(self) -> Self {
        self.args(SIMULATED_ARGS)
    }

    /// The data directory (created by the daemon if missing); without it, a fresh temporary
    /// one that lives as long as the [`Daemon`].
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Adds one flag or value.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds flags and values.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable of the daemon (`RUST_LOG` is `info` unless set here).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// The binary to run instead of [`crate::bins::daemon_exe`].
    pub fn exe(mut self, exe: impl Into<PathBuf>) -> Self {
        self.exe = Some(exe.into());
        self
    }

    /// The API's address instead of `127.0.0.1:0` (port 0: a free one, again at each restart).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }

    /// Runs the daemon inside the network namespace `name` (`/var/run/netns/NAME`), through
    /// `nsenter --net=` (its mounts, `/sys` and cgroups stay the machine's, which youki needs).
    /// Give it an address of that namespace with [`DaemonBuilder::listen`].
    pub fn netns(mut self, name: impl Into<String>) -> Self {
        self.netns = Some(name.into());
        self
    }

    /// On `host` of a [`crate::netns::NetHosts`]: in its namespace, the API on its address
    /// (a free port).
    /// Beyond loopback the daemon needs API tokens: it gets the kit's ([`tokens_file`]).
    pub fn on_host(self, host: &crate::netns::NetHost) -> Self {
        self.netns(host.name.clone())
            .listen(SocketAddr::new(host.ip.into(), 0))
            .arg("--tokens")
            .arg(tokens_file())
    }

    /// How long to wait for readiness (default 30 s).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Starts the daemon and waits until it is ready; panics with its log if it exits first or
    /// is not ready in time.
    pub fn start(self) -> Daemon {
        let (data_dir, temp) = match self.data_dir.clone() {
            Some(dir) => (dir, None),
            None => {
                let temp = tempfile::tempdir().expect("a temporary directory");
                (temp.path().join("data"), Some(temp))
            }
        };
        let mut daemon = Daemon {
            exe: self.exe.unwrap_or_else(crate::bins::daemon_exe),
            args: self.args,
            envs: self.envs,
            ready_timeout: self.ready_timeout,
            listen: self.listen,
            netns: self.netns,
            data_dir,
            _temp: temp,
            child: None,
            reader: None,
            addr: None,
            log: Arc::new(Mutex::new(VecDeque::new())),
        };
        daemon.spawn();
        daemon
    }
}

/// A running (or stopped) `orchestratord`. Dropping it kills the process (SIGKILL) and never
/// panics, so a test that already fails shows its own message, followed by the daemon's log.
#[derive(Debug)]
pub struct Daemon {
    exe: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    ready_timeout: Duration,
    /// `--listen`; `None`: `127.0.0.1:0`.
    listen: Option<SocketAddr>,
    /// The network namespace it runs in, if not the test's.
    netns: Option<String>,
    data_dir: PathBuf,
    /// The temporary directory holding `data_dir`, when the kit made it.
    _temp: Option<tempfile::TempDir>,
    child: Option<Child>,
    /// The thread reading the log; ends when the process's stderr closes.
    reader: Option<JoinHandle<()>>,
    /// Where the current (or last) process listened.
    addr: Option<SocketAddr>,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl Daemon {
    /// A daemon on the simulated runtime ([`SIMULATED_ARGS`]) in a fresh temporary data dir.
    pub fn simulated() -> Daemon {
        DaemonBuilder::new().simulated().start()
    }

    /// What to start, to be completed.
    pub fn builder() -> DaemonBuilder {
        DaemonBuilder::new()
    }

    /// The address it listens on (that of its last run once stopped).
    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("the daemon was started")
    }

    /// `http://ADDR`, for clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The network namespace it runs in ([`DaemonBuilder::netns`]), if any.
    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The last lines it logged (at most 400), oldest first.
    pub fn log(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// `GET path` over a fresh connection (HTTP/1.0, no client library): status and body.
    pub fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        http(self.addr(), "GET", path, None)
    }

    /// `GET path` over a fresh connection: status, headers (names lower-cased, in order) and
    /// body.
    pub fn get_with_headers(&self, path: &str) -> std::io::Result<HttpAnswer> {
        http_with_headers(self.addr(), "GET", path, None)
    }

    /// `METHOD path` with a JSON body (if any) over a fresh connection: status and body.
    pub fn send_json(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> std::io::Result<(u16, String)> {
        let bytes = body.map(|b| b.to_string().into_bytes());
        http(
            self.addr(),
            method,
            path,
            bytes.as_deref().map(|b| ("application/json", b)),
        )
    }

    /// SIGKILL, and waits for the process to be gone. Nothing is drained or flushed: what the
    /// daemon acknowledged must survive this.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL the daemon");
            child.wait().expect("waiting for the killed daemon");
        }
        self.join_reader();
    }

    /// Waits (at most `timeout`) for the process to exit by itself; its exit status, or
    /// `None` if it still runs (or was not running).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            let child = self.child.as_mut()?;
            if let Some(status) = child.try_wait().expect("waiting for the daemon") {
                break status;
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        self.child = None;
        self.join_reader();
        Some(status)
    }

    /// SIGTERM, then waits (at most a minute) for the graceful exit; panics with the log
    /// unless it exits successfully. Returns the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the daemon is running");
        let pid = rustix::process::Pid::from_child(&child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
        let deadline = Instant::now() + TERMINATE_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("waiting for the daemon") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.join_reader();
                panic!(
                    "orchestratord did not exit within {TERMINATE_TIMEOUT:?} of SIGTERM; its log:\n{}",
                    self.log().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.join_reader();
        assert!(
            status.success(),
            "orchestratord exited with {status}; its log:\n{}",
            self.log().join("\n")
        );
        status
    }

    /// Starts it again with the same flags on the same data dir (on a new port: see
    /// [`Daemon::url`]), killing it first (SIGKILL) if it still runs.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Starts the process and waits for readiness.
    fn spawn(&mut self) {
        assert!(self.child.is_none(), "the daemon is already running");
        let mut cmd = match &self.netns {
            // nsenter execs the daemon (no fork without a pid namespace): the child is the
            // daemon, and kill -9 kills it.
            Some(ns) => {
                let mut cmd = Command::new("nsenter");
                cmd.arg(format!("--net=/var/run/netns/{ns}"))
                    .arg("--")
                    .arg(&self.exe);
                cmd
            }
            None => Command::new(&self.exe),
        };
        let listen = self
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        cmd.arg("--listen")
            .arg(listen.to_string())
            .args(["--log-format", "json"])
            .args(&self.args)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.exe.display()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let (ready_tx, ready_rx) = mpsc::channel();
        let log = self.log.clone();
        self.reader = Some(std::thread::spawn(move || read_log(stderr, &log, ready_tx)));
        self.child = Some(child);

        let started = Instant::now();
        let addr = match ready_rx.recv_timeout(self.ready_timeout) {
            Ok(addr) => addr,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // The log ended: the process exited.
                self.kill9();
                panic!(
                    "orchestratord exited before it was ready; its log:\n{}",
                    self.log().join("\n")
                );
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.kill9();
                panic!(
                    "orchestratord did not report ready within {:?}; its log:\n{}",
                    self.ready_timeout,
                    self.log().join("\n")
                );
            }
        };
        self.addr = Some(addr);
        // With TLS the kit cannot speak to it (it has no TLS client): the caller waits for
        // readiness its own way.
        if self.args.iter().any(|a| a == "--tls-cert") {
            return;
        }
        // "Ready" is logged once the listener is bound; `/readyz` says the store and the loop
        // answer too.
        let deadline = started + self.ready_timeout;
        loop {
            match http(addr, "GET", "/readyz", None) {
                Ok((200, _)) => return,
                Ok(_) | Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => {
                    self.kill9();
                    panic!(
                        "orchestratord on {addr} not ready within {:?} ({other:?}); its log:\n{}",
                        self.ready_timeout,
                        self.log().join("\n")
                    );
                }
            }
        }
    }

    /// Waits (briefly) for the log reader to end after the process is gone. A reader still
    /// running then (a grandchild holding the pipe open) is left to end with the pipe.
    fn join_reader(&mut self) {
        let Some(reader) = self.reader.take() else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(2);
        while !reader.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if reader.is_finished() {
            let _ = reader.join();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.join_reader();
        if std::thread::panicking() {
            // Only the test's own failure is reported as a panic; the log helps explain it.
            eprintln!(
                "--- orchestratord log (last lines, data dir {}):\n{}\n---",
                self.data_dir.display(),
                self.log().join("\n")
            );
        }
    }
}

/// Reads the daemon's JSON log: keeps its tail, sends the listen address of the "ready" line.
fn read_log(stderr: impl Read, log: &Mutex<VecDeque<String>>, ready: mpsc::Sender<SocketAddr>) {
    let echo = std::env::var_os("E2E_DAEMON_LOG").is_some();
    let mut sent = false;
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if !sent {
            if let Some(addr) = ready_address(&line) {
                let _ = ready.send(addr);
                sent = true;
            }
        }
        if echo {
            eprintln!("[orchestratord] {line}");
        }
        let mut tail = log.lock().unwrap_or_else(PoisonError::into_inner);
        if tail.len() == LOG_TAIL {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}

/// The `listen` address of the daemon's "orchestratord ready" log line.
fn ready_address(line: &str) -> Option<SocketAddr> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v["fields"]["message"] != "orchestratord ready" {
        return None;
    }
    v["fields"]["listen"].as_str()?.parse().ok()
}

/// `METHOD path` with a bare HTTP/1.0 request (the answer ends when the server closes), with a
/// body of the given content type if any: the status and the body.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<(&str, &[u8])>,
) -> std::io::Result<(u16, String)> {
    http_with_headers(addr, method, path, body).map(|a| (a.status, a.body))
}

/// An HTTP answer with its headers.
#[derive(Clone, Debug)]
pub struct HttpAnswer {
    /// The status code.
    pub status: u16,
    /// The headers, names lower-cased, in the order sent.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

impl HttpAnswer {
    /// The first value of header `name` (any case), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// [`http`], keeping the headers.
pub fn http_with_headers(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<(&str, &[u8])>,
) -> std::io::Result<HttpAnswer> {
    http_as(Some(ADMIN_TOKEN), addr, method, path, body)
}

/// [`http_with_headers`] with `token` as the bearer token, or none.
pub fn http_as(
    token: Option<&str>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<(&str, &[u8])>,
) -> std::io::Result<HttpAnswer> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n").into_bytes();
    if let Some(token) = token {
        request.extend_from_slice(format!("Authorization: Bearer {token}\r\n").as_bytes());
    }
    if let Some((content_type, bytes)) = body {
        request.extend_from_slice(
            format!(
                "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
                bytes.len()
            )
            .as_bytes(),
        );
        request.extend_from_slice(b"\r\n");
        request.extend_from_slice(bytes);
    } else {
        request.extend_from_slice(b"\r\n");
    }
    s.write_all(&request)?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {answer:?}")))?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or((answer.as_str(), ""));
    let headers = head
        .split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(HttpAnswer {
        status,
        headers,
        body: body.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_line_gives_the_address() {
        let line = r#"{"timestamp":"t","level":"INFO","fields":{"message":"orchestratord ready","listen":"127.0.0.1:4321","data_dir":"/d"},"target":"orchestratord"}"#;
        assert_eq!(ready_address(line), Some("127.0.0.1:4321".parse().unwrap()));
        assert_eq!(
            ready_address(r#"{"fields":{"message":"API listening"}}"#),
            None
        );
        assert_eq!(ready_address("not json"), None);
    }

    #[test]
    fn the_log_keeps_its_tail_and_reports_ready() {
        let mut text = String::new();
        for i in 0..LOG_TAIL + 10 {
            text.push_str(&format!("line {i}\n"));
        }
        text.push_str(r#"{"fields":{"message":"orchestratord ready","listen":"127.0.0.1:9"}}"#);
        let log = Mutex::new(VecDeque::new());
        let (tx, rx) = mpsc::channel();
        read_log(text.as_bytes(), &log, tx);
        assert_eq!(rx.try_recv().unwrap(), "127.0.0.1:9".parse().unwrap());
        let log = log.into_inner().unwrap();
        assert_eq!(log.len(), LOG_TAIL);
        assert_eq!(log[0], "line 11");
    }
}
