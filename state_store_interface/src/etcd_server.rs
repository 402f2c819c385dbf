//! [`EtcdServer`]: a real etcd for tests (feature `etcd`), on 127.0.0.1 with free ports and
//! its own temporary data dir, killed on drop.
//!
//! The binary is `$ORCHESTRATOR_ETCD`, else `etcd` on the `PATH` (`scripts/setup-cluster.sh`
//! installs it). Without it, [`EtcdServer::start_or_skip`] returns `None` so a test can print
//! "skipped" and return, except under `CI=true`, where a missing etcd is a failure.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What etcd needs of its `--max-txn-ops` for [`crate::EtcdStore`]'s default batches.
pub const MAX_TXN_OPS: usize = crate::etcd_store::DEFAULT_MAX_TXN_OPS;

/// How long etcd may take to answer after its start (it takes about a second; much more on a
/// loaded machine).
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running (or stopped) etcd of a test.
#[derive(Debug)]
pub struct EtcdServer {
    binary: PathBuf,
    dir: tempfile::TempDir,
    /// Bumped by [`EtcdServer::wipe_and_start`]: a new data dir and a new cluster token.
    generation: u32,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

/// The etcd binary: `$ORCHESTRATOR_ETCD`, else `etcd` on the `PATH`.
fn find_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("ORCHESTRATOR_ETCD") {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("etcd"))
            .find(|p| p.is_file())
    })
}

/// A port that is free now, below the kernel's ephemeral range (32768 and up by default):
/// a port the kernel picked for `:0` would be handed out again to the next process that binds
/// `:0` (the daemons of the same test) between this check and etcd's own bind.
fn free_port() -> std::io::Result<u16> {
    for _ in 0..100 {
        let port = 15_000 + (std::process::id() as u16 ^ nanos()) % 15_000;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A cheap varying number (the clock's nanoseconds), to spread the ports of parallel tests.
fn nanos() -> u16 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u16)
}

impl EtcdServer {
    /// Starts etcd, or returns `None` (after printing "skipped: etcd not found") if there is
    /// no etcd binary. Panics under `CI=true` when it is missing, and whenever it will not
    /// start.
    pub fn start_or_skip() -> Option<Self> {
        let Some(binary) = find_binary() else {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "etcd not found (set ORCHESTRATOR_ETCD or put etcd on the PATH): run \
                     scripts/setup-cluster.sh"
                );
            }
            eprintln!("skipped: etcd not found");
            return None;
        };
        Some(Self::start_with(binary).expect("etcd starts"))
    }

    /// Starts the etcd `binary` with a new data dir and free ports; waits until it answers.
    /// Another process may take a port between the check and etcd's bind: then etcd is
    /// started again on other ports (three tries).
    pub fn start_with(binary: PathBuf) -> std::io::Result<Self> {
        let mut server = Self {
            binary,
            dir: tempfile::tempdir()?,
            generation: 0,
            client_port: free_port()?,
            peer_port: free_port()?,
            child: None,
        };
        let mut tries = 0;
        loop {
            match server.start() {
                Ok(()) => return Ok(server),
                Err(e) if tries == 2 => return Err(e),
                Err(e) => {
                    eprintln!("etcd did not start ({e}); trying other ports");
                    server.stop();
                    tries += 1;
                    server.client_port = free_port()?;
                    server.peer_port = free_port()?;
                    server.generation += 1;
                }
            }
        }
    }

    /// The URL clients connect to.
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join(format!("data-{}", self.generation))
    }

    /// Starts etcd (again) on the same data dir and ports, and waits until it answers (at
    /// most 20 s). Does nothing if it runs.
    pub fn start(&mut self) -> std::io::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let client = self.client_url();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::File::create(self.dir.path().join("etcd.log"))?;
        // Through `sh`, which kills etcd when its stdin closes (on `stop()`, and when the test
        // process exits without dropping the server: a `static` shared by a test binary), and
        // exits when etcd does (e.g. a port taken meanwhile), which `wait_ready` then sees. A
        // background list reads /dev/null, so the watcher of stdin reads the pipe kept on fd 3.
        let child = Command::new("sh")
            .arg("-c")
            .arg("exec 3<&0; \"$0\" \"$@\" & pid=$!; { read _ <&3; kill $pid; } & wait $pid")
            .arg(&self.binary)
            .arg("--name=n1")
            .arg(format!("--data-dir={}", self.data_dir().display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=n1={peer}"))
            // A new token per data dir: a wiped etcd is another cluster (another id).
            .arg(format!(
                "--initial-cluster-token=test-{}-{}",
                std::process::id(),
                self.generation
            ))
            .arg(format!("--max-txn-ops={MAX_TXN_OPS}"))
            .arg("--auto-compaction-retention=0")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> std::io::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let health = format!("127.0.0.1:{}", self.client_port);
        loop {
            // The client port accepts once etcd serves; a request through it follows.
            if std::net::TcpStream::connect(&health).is_ok() && self.answers() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    return Err(std::io::Error::other(format!(
                        "etcd exited with {status}: see {}",
                        self.dir.path().join("etcd.log").display()
                    )));
                }
            }
            if Instant::now() > deadline {
                let log =
                    std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                return Err(std::io::Error::other(format!(
                    "etcd did not answer within {} s; the end of its log:\n{}",
                    START_TIMEOUT.as_secs(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether etcd's `/health` says it is ready (HTTP on the client port).
    fn answers(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.client_port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let request = "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.contains("\"health\":\"true\"")
    }

    /// Stops etcd (SIGTERM; the data dir stays) and waits until it has exited.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Closing its stdin makes the shell kill etcd and wait for it.
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }

    /// Kills etcd and starts an empty one on the same ports: another cluster, as after a
    /// wipe or a replacement.
    pub fn wipe_and_start(&mut self) -> std::io::Result<()> {
        self.stop();
        self.generation += 1;
        self.start()
    }

    /// Compacts etcd's history up to `revision` (`etcdctl compact` through its HTTP gateway).
    pub fn compact(&self, revision: u64) -> std::io::Result<()> {
        use std::io::{Read, Write};
        let body = format!("{{\"revision\": {revision}, \"physical\": true}}");
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.client_port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            stream,
            "POST /v3/kv/compaction HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: \
             application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        if answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200") {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "compaction failed: {answer}"
            )))
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
    }
}
