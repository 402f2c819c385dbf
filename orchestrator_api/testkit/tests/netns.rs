//! `NetHosts` itself: hosts reach each other and the root namespace, a forwarded loopback
//! service, a cut stops traffic both ways and a heal restores it, and the drop leaves nothing.
//!
//! Needs root (skipped otherwise, a failure under `CI=true`).

use orchestrator_testkit::netns::NetHosts;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

/// A listener in host `i` on its address, answering "hello from hN" to every connection.
fn serve(hosts: &NetHosts, i: usize) -> SocketAddr {
    let ip = hosts.host(i).ip;
    let listener = hosts.run_in(i, move || {
        TcpListener::bind((ip, 0)).expect("bind in the netns")
    });
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let _ = s.write_all(format!("hello from h{i}").as_bytes());
        }
    });
    addr
}

/// What `addr` says to a connection made from host `from` (`None`: the root namespace),
/// within 2 s; the error otherwise.
fn greet(hosts: &NetHosts, from: Option<usize>, addr: SocketAddr) -> Result<String, String> {
    let connect = move || -> std::io::Result<String> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        Ok(text)
    };
    match from {
        Some(i) => hosts.run_in(i, connect),
        None => connect(),
    }
    .map_err(|e| e.to_string())
}

fn links() -> String {
    let out = Command::new("ip").args(["-o", "link"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn hosts_talk_a_cut_stops_both_ways_a_heal_restores_and_drop_cleans_up() {
    let Some(mut hosts) = NetHosts::create(3) else {
        return;
    };
    let gateway = hosts.gateway();
    assert_eq!(hosts.host(0).ip.octets()[3], 11);
    assert_eq!(hosts.host(2).ip.octets()[3], 13);
    let servers: Vec<SocketAddr> = (0..3).map(|i| serve(&hosts, i)).collect();

    // Every host reaches every other one, and the root namespace reaches each.
    for from in 0..3 {
        for (to, addr) in servers.iter().enumerate() {
            assert_eq!(
                greet(&hosts, Some(from), *addr).as_deref(),
                Ok(format!("hello from h{to}").as_str()),
                "h{from} -> h{to}"
            );
        }
    }
    for (to, addr) in servers.iter().enumerate() {
        assert_eq!(greet(&hosts, None, *addr), Ok(format!("hello from h{to}")));
    }

    // A loopback-only service of the root namespace, through the bridge address.
    let local = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let local_addr = local.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in local.incoming().flatten() {
            let _ = s.write_all(b"hello from the root namespace");
        }
    });
    let forwarded = hosts.forward(local_addr);
    assert_eq!(forwarded.ip(), gateway);
    for from in 0..3 {
        assert_eq!(
            greet(&hosts, Some(from), forwarded).as_deref(),
            Ok("hello from the root namespace")
        );
        // The loopback address itself is the namespace's own loopback: nothing there.
        assert!(greet(&hosts, Some(from), local_addr).is_err());
    }

    // A command inside (nsenter --net): it sees the host's address.
    let out = hosts
        .enter(1, "ip")
        .args(["-4", "-o", "addr", "show", "eth0"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&hosts.host(1).ip.to_string()), "{text}");

    // Cut h1: nothing in, nothing out; the others still talk.
    hosts.cut(1);
    assert!(greet(&hosts, Some(0), servers[1]).is_err(), "h0 -> cut h1");
    assert!(greet(&hosts, None, servers[1]).is_err(), "root -> cut h1");
    assert!(greet(&hosts, Some(1), servers[0]).is_err(), "cut h1 -> h0");
    assert!(
        greet(&hosts, Some(1), forwarded).is_err(),
        "cut h1 -> proxy"
    );
    assert_eq!(
        greet(&hosts, Some(0), servers[2]),
        Ok("hello from h2".into())
    );
    assert_eq!(
        greet(&hosts, Some(2), forwarded).as_deref(),
        Ok("hello from the root namespace")
    );

    // Heal: all back (the neighbour tables may take a moment).
    hosts.heal(1);
    let mut ok = false;
    for _ in 0..50 {
        ok = greet(&hosts, Some(0), servers[1]).is_ok()
            && greet(&hosts, Some(1), servers[0]).is_ok()
            && greet(&hosts, Some(1), forwarded).is_ok()
            && greet(&hosts, None, servers[1]).is_ok();
        if ok {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ok, "h1 reachable again after heal");

    // Drop: namespaces, bridge, veths, the FORWARD rule and the proxy are gone.
    let bridge = hosts.bridge();
    let names: Vec<String> = hosts.hosts().iter().map(|h| h.name.clone()).collect();
    let veths: Vec<String> = hosts.hosts().iter().map(|h| h.veth.clone()).collect();
    drop(hosts);
    let after = links();
    assert!(!after.contains(&format!(" {bridge}:")), "{after}");
    for v in &veths {
        assert!(!after.contains(&format!(" {v}@")), "{after}");
    }
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let netns = String::from_utf8_lossy(&netns.stdout);
    for n in &names {
        assert!(!netns.contains(n.as_str()), "{netns}");
    }
    let rules = Command::new("iptables")
        .args(["-S", "FORWARD"])
        .output()
        .unwrap();
    let rules = String::from_utf8_lossy(&rules.stdout);
    assert!(!rules.contains(&bridge), "{rules}");
    assert!(TcpStream::connect_timeout(&forwarded, Duration::from_secs(1)).is_err());
}
