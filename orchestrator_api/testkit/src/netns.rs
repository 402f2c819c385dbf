//! [`NetHosts`]: several "machines" on this one, each a network namespace of its own on a bridge
//! the test creates, so that cluster tests can cut one machine off the network, or kill one,
//! while the others go on.
//!
//! ```no_run
//! use orchestrator_testkit::netns::NetHosts;
//!
//! let Some(mut hosts) = NetHosts::create(3) else { return }; // skipped when not root
//! let h1 = hosts.host(1).clone(); // name `on…h1`, ip 10.X.Y.12
//! let registry = hosts.forward("127.0.0.1:5000".parse().unwrap()); // 10.X.Y.1:PORT
//! hosts.cut(1); // h1 reaches nothing, nothing reaches h1
//! hosts.heal(1);
//! // Dropping `hosts` removes the namespaces, the bridge, the veths, the rules and the proxies.
//! ```
//!
//! # How
//! * Addresses: a /24 of its own per `NetHosts` (10.X.Y.0/24, X.Y from the process id and a
//!   counter, so that parallel test binaries and parallel tests do not collide): the bridge is
//!   10.X.Y.1, host `i` is 10.X.Y.(11+i), with `lo` up and its default route via the bridge.
//! * Docker on these machines sets the FORWARD policy to DROP and bridged frames go through
//!   iptables: one `FORWARD -i BRIDGE -o BRIDGE -j ACCEPT` rule lets the hosts talk.
//! * [`NetHosts::cut`] sets the host-side end of the host's veth down: no frame passes either
//!   way (to the other hosts, to the root namespace, to the forwarded services); connections
//!   hang as on a pulled cable. [`NetHosts::heal`] sets it up again.
//! * [`NetHosts::forward`]: services of the root namespace that listen on loopback only (the
//!   local registry, the kit's etcd) are reached through a small TCP proxy (threads) listening
//!   on the bridge address.
//! * Processes run inside with `nsenter --net=/var/run/netns/NAME` ([`NetHosts::enter`]), not
//!   `ip netns exec`, which remounts `/sys` and hides the cgroup hierarchies from youki. Rust
//!   code runs inside with [`NetHosts::run_in`] (a thread moved into the namespace).

use crate::prerequisite_missing;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// Where `ip netns add` makes the namespaces' handles.
const NETNS_DIR: &str = "/var/run/netns";

/// One host: its network namespace and address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetHost {
    /// Index among the [`NetHosts`] (0-based).
    pub index: usize,
    /// Name of its network namespace (`/var/run/netns/NAME`).
    pub name: String,
    /// Its address on the bridge.
    pub ip: Ipv4Addr,
    /// The root-namespace end of its veth pair (what [`NetHosts::cut`] sets down).
    pub veth: String,
}

impl NetHost {
    /// `/var/run/netns/NAME`, for `nsenter --net=`.
    pub fn netns_path(&self) -> String {
        format!("{NETNS_DIR}/{}", self.name)
    }

    /// The `nsenter` flag that enters its network namespace only.
    pub fn nsenter_arg(&self) -> String {
        format!("--net={}", self.netns_path())
    }
}

/// A TCP proxy of [`NetHosts::forward`]: a listener thread and the connections it carries.
struct Proxy {
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    /// Both ends of every connection, shut down on drop so their copy threads end.
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        for s in self
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// Network namespaces on a bridge of their own; see the module docs. Dropping it removes all
/// of it, also after a failed test (nothing in the drop panics).
pub struct NetHosts {
    /// The tag in every name (`ob{tag}`, `on{tag}h{i}`, `ov{tag}h{i}`).
    tag: u32,
    /// The first three octets of the subnet.
    net: [u8; 3],
    hosts: Vec<NetHost>,
    /// The iptables rules added (the arguments after `-I CHAIN 1` / `-D CHAIN`).
    rules: Vec<(String, Vec<String>)>,
    proxies: Vec<Proxy>,
}

impl NetHosts {
    /// Creates `n` hosts; `None` (the test is skipped; a panic under `CI=true`) when not root
    /// or without `ip`, `iptables` or `nsenter`. Panics if the set-up itself fails.
    pub fn create(n: usize) -> Option<NetHosts> {
        assert!(n <= 200, "at most 200 hosts on one /24");
        if !rustix::process::geteuid().is_root() {
            return prerequisite_missing("network namespaces need root");
        }
        for tool in ["ip", "iptables", "nsenter"] {
            let found = Command::new(tool)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok();
            if !found {
                return prerequisite_missing(format!(
                    "{tool} not found (apt-get install iproute2 iptables util-linux)"
                ));
            }
        }
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let (tag, net) = loop {
            // 16 per process, 64 × 256 subnets from 10.160.0.0 to 10.223.255.0: parallel test
            // binaries (other pids) and parallel tests (the counter) get different ones.
            let key = (std::process::id().wrapping_mul(16) + NEXT.fetch_add(1, Ordering::Relaxed))
                % (64 * 256);
            let net = [10, 160 + (key / 256) as u8, (key % 256) as u8];
            let in_use = !run_output(&["ip", "-4", "route", "show", &subnet_of(net)])
                .unwrap_or_default()
                .trim()
                .is_empty();
            if !in_use {
                break (key, net);
            }
        };
        let mut hosts = NetHosts {
            tag,
            net,
            hosts: Vec::new(),
            rules: Vec::new(),
            proxies: Vec::new(),
        };
        // Leftovers of a killed test process that had the same tag (a reused pid).
        hosts.remove_devices();
        hosts
            .set_up(n)
            .unwrap_or_else(|e| panic!("setting up {n} netns hosts: {e}"));
        Some(hosts)
    }

    fn set_up(&mut self, n: usize) -> Result<(), String> {
        let bridge = self.bridge();
        let gateway = self.gateway().to_string();
        run(&["ip", "link", "add", &bridge, "type", "bridge"])?;
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{gateway}/24"),
            "dev",
            &bridge,
        ])?;
        run(&["ip", "link", "set", &bridge, "up"])?;
        self.add_rule("FORWARD", &["-i", &bridge, "-o", &bridge, "-j", "ACCEPT"])?;
        for index in 0..n {
            let host = NetHost {
                index,
                name: format!("on{}h{index}", self.tag),
                ip: Ipv4Addr::new(self.net[0], self.net[1], self.net[2], 11 + index as u8),
                veth: format!("ov{}h{index}", self.tag),
            };
            let peer = format!("op{}h{index}", self.tag);
            run(&["ip", "netns", "add", &host.name])?;
            // Pushed now, so that a failure below still removes the namespace.
            self.hosts.push(host.clone());
            run(&[
                "ip", "link", "add", &host.veth, "type", "veth", "peer", "name", &peer,
            ])?;
            run(&["ip", "link", "set", &host.veth, "master", &bridge])?;
            run(&["ip", "link", "set", &host.veth, "up"])?;
            run(&["ip", "link", "set", &peer, "netns", &host.name])?;
            let ns = |args: &[&str]| {
                let mut all = vec!["ip", "-n", host.name.as_str()];
                all.extend_from_slice(args);
                run(&all)
            };
            ns(&["link", "set", &peer, "name", "eth0"])?;
            ns(&["addr", "add", &format!("{}/24", host.ip), "dev", "eth0"])?;
            ns(&["link", "set", "eth0", "up"])?;
            ns(&["link", "set", "lo", "up"])?;
            ns(&["route", "add", "default", "via", &gateway])?;
        }
        Ok(())
    }

    /// Inserts an iptables rule at the top of `chain` and remembers it for the drop.
    fn add_rule(&mut self, chain: &str, rule: &[&str]) -> Result<(), String> {
        let mut args = vec!["iptables", "-w", "-I", chain, "1"];
        args.extend_from_slice(rule);
        run(&args)?;
        self.rules.push((
            chain.to_owned(),
            rule.iter().map(|s| (*s).to_owned()).collect(),
        ));
        Ok(())
    }

    /// The bridge's name.
    pub fn bridge(&self) -> String {
        format!("ob{}", self.tag)
    }

    /// The bridge's address (the hosts' gateway), which the root namespace has.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.net[0], self.net[1], self.net[2], 1)
    }

    /// The subnet, `10.X.Y.0/24`.
    pub fn subnet(&self) -> String {
        subnet_of(self.net)
    }

    /// Host `i` (0-based).
    pub fn host(&self, i: usize) -> &NetHost {
        &self.hosts[i]
    }

    /// Every host.
    pub fn hosts(&self) -> &[NetHost] {
        &self.hosts
    }

    /// How many hosts there are.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Cuts host `i` off from everything (the other hosts, the root namespace, the forwarded
    /// services), both ways: its veth's root end goes down. Panics if `ip` fails.
    pub fn cut(&self, i: usize) {
        run(&["ip", "link", "set", &self.hosts[i].veth, "down"])
            .unwrap_or_else(|e| panic!("cutting host {i}: {e}"));
    }

    /// Undoes [`NetHosts::cut`]. Panics if `ip` fails.
    pub fn heal(&self, i: usize) {
        run(&["ip", "link", "set", &self.hosts[i].veth, "up"])
            .unwrap_or_else(|e| panic!("healing host {i}: {e}"));
    }

    /// A command that runs `program` inside host `i`'s network namespace only (through
    /// `nsenter --net=`; the mounts, `/sys` and the cgroups stay those of the machine).
    pub fn enter(&self, i: usize, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(self.hosts[i].nsenter_arg()).arg("--").arg(program);
        cmd
    }

    /// Runs `f` on a thread moved into host `i`'s network namespace, and returns what it
    /// returns: sockets it makes belong to that namespace, whichever thread uses them later.
    pub fn run_in<T: Send + 'static>(&self, i: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = self.hosts[i].netns_path();
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&ns),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .unwrap_or_else(|e| panic!("setns {path}: {e}"));
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// Makes `target` (a service of the root namespace, e.g. on loopback) reachable from the
    /// hosts: a TCP proxy listening on the bridge address, on a free port; returns that
    /// address. It lives as long as `self`.
    pub fn forward(&mut self, target: SocketAddr) -> SocketAddr {
        let listener = TcpListener::bind(SocketAddrV4::new(self.gateway(), 0))
            .unwrap_or_else(|e| panic!("binding a proxy on {}: {e}", self.gateway()));
        let addr = listener.local_addr().expect("the proxy's address");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let accept = {
            let (stop, open) = (stop.clone(), open.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((client, _)) => carry(client, target, &open),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        self.proxies.push(Proxy {
            stop,
            accept: Some(accept),
            open,
        });
        addr
    }

    /// Removes the devices and namespaces of this tag (the veths go with their namespace's
    /// end or with the root end; deleting the root end now does not wait for the asynchronous
    /// `ip netns del`).
    fn remove_devices(&self) {
        let names: Vec<(String, String)> = if self.hosts.is_empty() {
            (0..200)
                .map(|i| (format!("on{}h{i}", self.tag), format!("ov{}h{i}", self.tag)))
                .filter(|(ns, _)| std::path::Path::new(NETNS_DIR).join(ns).exists())
                .collect()
        } else {
            self.hosts
                .iter()
                .map(|h| (h.name.clone(), h.veth.clone()))
                .collect()
        };
        for (ns, veth) in names {
            let _ = run_quiet(&["ip", "link", "del", &veth]);
            let _ = run_quiet(&["ip", "netns", "del", &ns]);
        }
        let _ = run_quiet(&["ip", "link", "del", &self.bridge()]);
    }
}

impl Drop for NetHosts {
    fn drop(&mut self) {
        // Nothing here may panic: this also runs while a failed test unwinds.
        self.proxies.clear();
        for (chain, rule) in self.rules.drain(..) {
            let mut args = vec!["iptables", "-w", "-D", chain.as_str()];
            args.extend(rule.iter().map(String::as_str));
            let _ = run_quiet(&args);
        }
        self.remove_devices();
    }
}

/// Connects to `target` and copies both ways between it and `client`, on two threads.
fn carry(client: TcpStream, target: SocketAddr, open: &Arc<Mutex<Vec<TcpStream>>>) {
    let _ = client.set_nonblocking(false);
    let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(5)) else {
        return; // dropping `client` closes it: the caller sees the target is down
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    {
        let mut open = open.lock().unwrap_or_else(PoisonError::into_inner);
        // Forget the connections that ended (both halves shut down by their copy threads).
        open.retain(|s| s.peer_addr().is_ok());
        if let (Ok(a), Ok(b)) = (client.try_clone(), server.try_clone()) {
            open.push(a);
            open.push(b);
        }
    }
    std::thread::spawn(move || pipe(client, s2));
    std::thread::spawn(move || pipe(server, c2));
}

/// Copies `from` to `to` until `from` ends, then ends `to`'s writing half.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

/// `10.X.Y.0/24`.
fn subnet_of(net: [u8; 3]) -> String {
    format!("{}.{}.{}.0/24", net[0], net[1], net[2])
}

/// Runs a command; its stdout, or what failed (with its stderr).
fn run_output(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs a command; what failed, if it did.
fn run(args: &[&str]) -> Result<(), String> {
    run_output(args).map(|_| ())
}

/// Runs a command, whatever it says (clean-up of what may not exist).
fn run_quiet(args: &[&str]) -> std::io::Result<std::process::ExitStatus> {
    Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
}
