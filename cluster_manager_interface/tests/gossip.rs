//! Black-box tests of `GossipClusterManager` over real UDP on 127.0.0.1, port 0 (and one over
//! chitchat's in-memory transport). They assert eventual states with generous deadlines, never
//! timings: the machine may be loaded.

use chitchat::transport::ChannelTransport;
use cluster_manager_interface::{
    ClusterError, ClusterEvent, ClusterManager, GossipClusterManager, GossipConfig,
    NodeSubscription,
};
use orchestrator_shared_types::{Node, NodeId, NodeStatus, Resources};
use std::future::Future;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);

fn node(id: &str) -> Node {
    Node::new(id, Resources::new(4000, 8192, 100_000))
}

fn config(id: &str, cluster: &str, seeds: &[&GossipClusterManager]) -> GossipConfig {
    let mut config = GossipConfig::new(node(id), cluster, "127.0.0.1:0".parse().unwrap());
    config.seeds = seeds.iter().map(|m| m.gossip_addr().to_string()).collect();
    config
}

async fn start(id: &str, seeds: &[&GossipClusterManager]) -> GossipClusterManager {
    GossipClusterManager::start(config(id, "test", seeds))
        .await
        .expect("starts")
}

/// Polls `check` until it is true; panics with `what` after the deadline.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {DEADLINE:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn status_of(m: &GossipClusterManager, id: &str) -> Option<NodeStatus> {
    m.node(&NodeId::from(id)).await.unwrap().map(|n| n.status)
}

async fn ids(m: &GossipClusterManager) -> Vec<String> {
    let nodes = m.nodes().await.unwrap();
    nodes.into_iter().map(|n| n.id.0).collect()
}

/// Every event received so far, without waiting.
fn drain(sub: &mut NodeSubscription) -> Vec<ClusterEvent> {
    let mut events = Vec::new();
    while let Some(Some(event)) = sub_try_recv(sub) {
        events.push(event);
    }
    events
}

fn sub_try_recv(sub: &mut NodeSubscription) -> Option<Option<ClusterEvent>> {
    use std::task::{Context, Poll};
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    let fut = std::pin::pin!(sub.recv());
    match fut.poll(&mut cx) {
        Poll::Ready(event) => Some(event),
        Poll::Pending => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_see_each_other_then_a_killed_one_goes_down() {
    let a = start("a", &[]).await;
    assert_ne!(a.gossip_addr().port(), 0, "the bound port is advertised");
    let mut a_events = a.subscribe();
    let b = start("b", &[&a]).await;
    let c = start("c", &[&a]).await;
    for m in [&a, &b, &c] {
        eventually(&format!("{} sees a, b, c Ready", m.node_id()), || async {
            let nodes = m.nodes().await.unwrap();
            nodes.len() == 3 && nodes.iter().all(|n| n.status == NodeStatus::Ready)
        })
        .await;
        assert_eq!(ids(m).await, ["a", "b", "c"]);
    }
    // A joining node is never reported Down first.
    for event in drain(&mut a_events) {
        if let ClusterEvent::NodeAdded(n) | ClusterEvent::NodeUpdated(n) = &event {
            assert_eq!(n.status, NodeStatus::Ready, "{event:?}");
        }
    }
    let peers = a.peers().await;
    assert_eq!(peers.len(), 2);
    assert!(peers.iter().all(|p| p.live && !p.store_reachable));

    // kill -9: dropped, no shutdown and no leave.
    drop(c);
    for m in [&a, &b] {
        eventually(&format!("{} sees c Down", m.node_id()), || async {
            status_of(m, "c").await == Some(NodeStatus::Down)
        })
        .await;
    }
    assert_eq!(status_of(&a, "b").await, Some(NodeStatus::Ready));
    let c_peer = a.peers().await.into_iter().find(|p| p.node.as_str() == "c");
    assert!(!c_peer.expect("c is still a peer, dead").live);
    let events = drain(&mut a_events);
    assert!(
        events.iter().any(
            |e| matches!(e, ClusterEvent::NodeUpdated(n) if n.id.as_str() == "c" && n.status == NodeStatus::Down)
        ),
        "a Down event about c: {events:?}"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_is_a_new_generation_folded_into_one_entry() {
    let a = start("a", &[]).await;
    let b = start("b", &[&a]).await;
    eventually("a sees b Ready", || async {
        status_of(&a, "b").await == Some(NodeStatus::Ready)
    })
    .await;
    let first = a.peers().await[0].generation;
    b.shutdown().await;
    eventually("a sees b Down", || async {
        status_of(&a, "b").await == Some(NodeStatus::Down)
    })
    .await;

    let mut restarted = config("b", "test", &[&a]);
    restarted.node = node("b").with_label("boot", "2");
    let b = GossipClusterManager::start(restarted).await.unwrap();
    eventually("a sees the new b Ready", || async {
        a.node(&"b".into()).await.unwrap() == Some(node("b").with_label("boot", "2"))
    })
    .await;
    assert_eq!(ids(&a).await, ["a", "b"], "one entry per node id");
    let peers = a.peers().await;
    assert_eq!(peers.len(), 1);
    assert!(peers[0].live);
    assert!(
        peers[0].generation > first,
        "{} > {first}",
        peers[0].generation
    );
    eventually("b sees a", || async {
        status_of(&b, "a").await == Some(NodeStatus::Ready)
    })
    .await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_of_another_cluster_never_appears() {
    let a = start("a", &[]).await;
    let mut a_events = a.subscribe();
    let stranger = GossipClusterManager::start(config("stranger", "other", &[&a]))
        .await
        .unwrap();
    let b = start("b", &[&a]).await;
    eventually("a and b see each other", || async {
        ids(&a).await == ["a", "b"] && ids(&b).await == ["a", "b"]
    })
    .await;
    // Let the stranger knock for a while longer.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(ids(&a).await, ["a", "b"]);
    assert_eq!(ids(&b).await, ["a", "b"]);
    assert_eq!(ids(&stranger).await, ["stranger"]);
    assert!(stranger.peers().await.is_empty());
    for event in drain(&mut a_events) {
        assert!(
            !format!("{event:?}").contains("stranger"),
            "the stranger showed up: {event:?}"
        );
    }
    for m in [a, b, stranger] {
        m.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_changes_store_flag_and_cordon_propagate() {
    let a = start("a", &[]).await;
    let b = start("b", &[&a]).await;
    eventually("a sees b", || async { ids(&a).await == ["a", "b"] }).await;

    let mut changed = node("b").with_label("disk", "ssd");
    changed.status = NodeStatus::NotReady;
    changed.allocatable = Resources::new(3000, 4096, 50_000);
    b.set_node(changed.clone()).await;
    assert_eq!(
        b.node(&"b".into()).await.unwrap(),
        Some(changed.clone()),
        "at once locally"
    );
    eventually("a sees b's new labels and status", || async {
        a.node(&"b".into()).await.unwrap() == Some(changed.clone())
    })
    .await;

    assert!(!a.peers().await[0].store_reachable, "false until set");
    b.set_store_reachable(true).await;
    eventually("a sees b's store flag", || async {
        a.peers().await[0].store_reachable
    })
    .await;
    b.set_store_reachable(false).await;
    eventually("a sees b's store flag cleared", || async {
        !a.peers().await[0].store_reachable
    })
    .await;

    // Cordon: of itself, gossiped; of another daemon's node, refused; of an unknown node, not
    // found.
    b.set_unschedulable(&"b".into(), true).await.unwrap();
    eventually("a sees b cordoned", || async {
        a.node(&"b".into())
            .await
            .unwrap()
            .is_some_and(|n| n.unschedulable)
    })
    .await;
    let err = a.set_unschedulable(&"b".into(), false).await.unwrap_err();
    assert!(matches!(err, ClusterError::Unsupported { .. }), "{err}");
    assert!(!err.is_transient());
    let err = a.set_unschedulable(&"zz".into(), true).await.unwrap_err();
    assert!(matches!(err, ClusterError::NodeNotFound(_)), "{err}");
    b.set_unschedulable(&"b".into(), false).await.unwrap();
    eventually("a sees b uncordoned", || async {
        a.node(&"b".into()).await.unwrap() == Some(changed.clone())
    })
    .await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_counters_grow() {
    let a = start("a", &[]).await;
    assert_eq!(a.traffic().datagrams_received, 0);
    let b = start("b", &[&a]).await;
    eventually("a sees b", || async { ids(&a).await == ["a", "b"] }).await;
    let earlier = a.traffic();
    assert!(
        earlier.bytes_sent > 0 && earlier.datagrams_sent > 0,
        "{earlier:?}"
    );
    assert!(
        earlier.bytes_received > 0 && earlier.datagrams_received > 0,
        "{earlier:?}"
    );
    eventually("more traffic", || async {
        let since = a.traffic().since(&earlier);
        since.datagrams_sent > 0 && since.datagrams_received > 0 && since.bytes_sent > 0
    })
    .await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn bad_configurations_do_not_start() {
    let unspecified = GossipConfig::new(node("a"), "test", "0.0.0.0:0".parse().unwrap());
    let err = GossipClusterManager::start(unspecified.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, ClusterError::Start { .. }), "{err}");
    let mut advertised = unspecified.clone();
    advertised.advertise = Some("127.0.0.1:7946".parse().unwrap());
    let m = GossipClusterManager::start(advertised).await.unwrap();
    assert_eq!(m.gossip_addr(), "127.0.0.1:7946".parse().unwrap());
    // An advertised port 0 is the port bound.
    let mut any_port = unspecified;
    any_port.advertise = Some("127.0.0.1:0".parse().unwrap());
    let any = GossipClusterManager::start(any_port).await.unwrap();
    assert_eq!(any.gossip_addr().ip().to_string(), "127.0.0.1");
    assert_ne!(any.gossip_addr().port(), 0);
    any.shutdown().await;

    // A port already in use.
    let busy = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let taken = GossipConfig::new(node("b"), "test", busy.local_addr().unwrap());
    let err = GossipClusterManager::start(taken).await.unwrap_err();
    assert!(matches!(err, ClusterError::Start { .. }), "{err}");
    assert!(
        std::error::Error::source(&err).is_some(),
        "keeps its source"
    );

    let mut zero = GossipConfig::new(node("c"), "test", "127.0.0.1:0".parse().unwrap());
    zero.gossip_interval = Duration::ZERO;
    assert!(GossipClusterManager::start(zero).await.is_err());
    m.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_subscriptions() {
    let a = start("a", &[]).await;
    let mut sub = a.subscribe();
    a.shutdown().await;
    drop(a);
    let end = tokio::time::timeout(DEADLINE, sub.recv()).await.unwrap();
    assert_eq!(end, None);
}

/// Many nodes in one process over chitchat's in-memory transport: all converge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_nodes_converge_over_the_in_memory_transport() {
    let transport = ChannelTransport::default();
    let mut managers: Vec<GossipClusterManager> = Vec::new();
    for i in 0..8 {
        let mut config = GossipConfig::new(
            node(&format!("n{i}")),
            "test",
            "127.0.0.1:0".parse().unwrap(),
        );
        if let Some(first) = managers.first() {
            config.seeds = vec![first.gossip_addr().to_string()];
        }
        managers.push(
            GossipClusterManager::start_with_transport(config, &transport)
                .await
                .unwrap(),
        );
    }
    for m in &managers {
        eventually(&format!("{} sees all 8", m.node_id()), || async {
            let nodes = m.nodes().await.unwrap();
            nodes.len() == 8 && nodes.iter().all(|n| n.status == NodeStatus::Ready)
        })
        .await;
    }
    assert!(managers[0].traffic().datagrams_received > 0);
    for m in managers {
        m.shutdown().await;
    }
}

/// Two daemons that started without seeds meet once one is told the other's address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemons_started_without_seeds_meet_when_told() {
    let a = start("a", &[]).await;
    let b = start("b", &[]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(a.peers().await.is_empty(), "no seeds: nobody met yet");
    a.gossip_with(&[b.gossip_addr()]);
    for (m, other) in [(&a, "b"), (&b, "a")] {
        eventually(&format!("{} sees {other} Ready", m.node_id()), || async {
            status_of(m, other).await == Some(NodeStatus::Ready)
        })
        .await;
    }
    a.shutdown().await;
    b.shutdown().await;
}
