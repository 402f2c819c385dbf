//! The conformance suite every [`ClusterManager`] must pass, whatever moves its membership
//! (calls for [`crate::StaticClusterManager`], real nodes joining and leaving for gossip).
//!
//! The suite drives membership through a [`ClusterDriver`], so the same checks run against the
//! static manager (whose driver is the manager itself) and against a gossip implementation (whose
//! driver starts, changes and stops real nodes). Each check is a `pub async fn` taking a fresh
//! driver; [`cluster_manager_conformance!`](crate::cluster_manager_conformance) expands into one
//! `#[tokio::test]` per check.
//!
//! # What the suite expects
//! * `nodes()` is sorted by id and complete; `node(id)` agrees with it.
//! * A change produces its event: `NodeAdded` for a join, `NodeUpdated` for a change (including
//!   `set_unschedulable`), `NodeRemoved` for a leave; an identical upsert produces nothing.
//! * Events of one subscription arrive in the order of the changes.
//! * A subscriber that falls behind the channel gets one `Resync` equal to `nodes()`, then live
//!   events again.
//!
//! Distributed implementations converge rather than jump, so the checks accept extra
//! `NodeUpdated` events *about the node being changed* on the way to its final state (e.g. a
//! node seen `Down` for a gossip round before it is `Ready`, or marked `Down` before it is
//! removed); an event about any other node, a missing event or a wrong final state fails. The
//! nodes the manager knows before a check starts (a gossip node sees itself) are taken as the
//! baseline; the suite's own nodes have ids starting with `conformance-`.

use crate::{ClusterError, ClusterEvent, ClusterManager, NodeSubscription, StaticClusterManager};
use async_trait::async_trait;
use orchestrator_shared_types::{Node, NodeId, NodeStatus, Resources};
use std::time::Duration;

/// Moves the membership of the manager under test, the way its real cluster would.
#[async_trait]
pub trait ClusterDriver: Send + Sync {
    /// The manager under test.
    fn manager(&self) -> &dyn ClusterManager;

    /// Makes `node` a member, or changes the member with its id to equal `node`. Returns once
    /// the manager has published the change: a subscription taken before the call receives the
    /// change's event(s) without any further action of the driver, and `nodes()` shows it.
    async fn add(&self, node: Node);

    /// Makes the node leave for good. Returns once the manager has published the removal.
    async fn remove(&self, id: &NodeId);

    /// How many changes, made while a subscriber does not receive, surely overflow that
    /// subscriber's buffer (so it must get a `Resync`).
    fn events_to_overflow(&self) -> usize;

    /// How long to wait for an event before failing. Ten seconds by default; a gossip driver
    /// may want more.
    fn event_timeout(&self) -> Duration {
        Duration::from_secs(10)
    }
}

/// The static manager drives itself: `add` is `upsert_node`, `remove` is `remove_node`.
#[async_trait]
impl ClusterDriver for StaticClusterManager {
    fn manager(&self) -> &dyn ClusterManager {
        self
    }

    async fn add(&self, node: Node) {
        self.upsert_node(node);
    }

    async fn remove(&self, id: &NodeId) {
        self.remove_node(id);
    }

    fn events_to_overflow(&self) -> usize {
        self.event_capacity() * 2 + 1
    }
}

/// Expands into one `#[tokio::test]` per check of [`crate::conformance`], each with a fresh
/// driver.
///
/// `$factory` is anything callable with no argument that returns a future of a
/// [`ClusterDriver`]: a closure returning an `async` block, or the path of an `async fn`. It is
/// called once per test, so every test gets its own cluster. Invoke the macro once per module
/// (wrap it in `mod` to run it against several configurations). Apart from the lag check, the
/// suite makes up to 5 changes before it receives, so subscriptions must buffer at least 8
/// events. The calling crate needs
/// `tokio` with the `macros` and `rt` features as a dev-dependency, and this crate with the
/// `conformance` feature.
///
/// ```ignore
/// use cluster_manager_interface::StaticClusterManager;
///
/// cluster_manager_interface::cluster_manager_conformance!(|| async {
///     StaticClusterManager::with_capacity(8)
/// });
/// ```
#[macro_export]
macro_rules! cluster_manager_conformance {
    ($factory:expr) => {
        $crate::cluster_manager_conformance!(@tests $factory;
            nodes_sorted_and_complete,
            add_delivers_node_added,
            update_delivers_node_updated,
            identical_add_is_silent,
            set_unschedulable_cordons_and_uncordons,
            remove_delivers_node_removed,
            events_arrive_in_order_to_every_subscriber,
            lagging_subscriber_resyncs_then_follows,
        );
    };
    (@tests $factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let driver = ($factory)().await;
                $crate::conformance::$name(&driver).await;
            }
        )*
    };
}

fn node(id: &str, cpu: u64) -> Node {
    Node::new(
        format!("conformance-{id}"),
        Resources::new(cpu, cpu * 2, 10_000),
    )
    .with_label("suite", "conformance")
}

async fn baseline(driver: &dyn ClusterDriver) -> Vec<Node> {
    driver.manager().nodes().await.expect("nodes() works")
}

/// `base` plus `added`, sorted by id: what `nodes()` must return.
fn expected(base: &[Node], added: &[&Node]) -> Vec<Node> {
    let mut all: Vec<Node> = base.to_vec();
    all.extend(added.iter().map(|n| (*n).clone()));
    all.sort_by(|a, b| a.id.cmp(&b.id));
    all
}

async fn next(
    driver: &dyn ClusterDriver,
    sub: &mut NodeSubscription,
    waiting_for: &str,
) -> ClusterEvent {
    match tokio::time::timeout(driver.event_timeout(), sub.recv()).await {
        Ok(Some(event)) => event,
        Ok(None) => panic!("subscription ended while waiting for {waiting_for}"),
        Err(_) => panic!(
            "no event within {:?} while waiting for {waiting_for}",
            driver.event_timeout()
        ),
    }
}

fn about(event: &ClusterEvent) -> Option<&NodeId> {
    match event {
        ClusterEvent::NodeAdded(n) | ClusterEvent::NodeUpdated(n) => Some(&n.id),
        ClusterEvent::NodeRemoved(id) => Some(id),
        ClusterEvent::Resync(_) => None,
    }
}

/// Waits until `want` has joined: the first event about it must be `NodeAdded`, and updates of
/// it may follow until it equals `want`. Any event about another node fails.
async fn expect_added(driver: &dyn ClusterDriver, sub: &mut NodeSubscription, want: &Node) {
    let what = format!("NodeAdded({})", want.id);
    match next(driver, sub, &what).await {
        ClusterEvent::NodeAdded(n) if n == *want => return,
        ClusterEvent::NodeAdded(n) if n.id == want.id => {}
        other => panic!("expected {what}, got {other:?}"),
    }
    expect_updated(driver, sub, want).await;
}

/// Waits for `NodeUpdated` events of `want.id` until one equals `want`.
async fn expect_updated(driver: &dyn ClusterDriver, sub: &mut NodeSubscription, want: &Node) {
    let what = format!("NodeUpdated({}) to {want:?}", want.id);
    loop {
        match next(driver, sub, &what).await {
            ClusterEvent::NodeUpdated(n) if n == *want => return,
            ClusterEvent::NodeUpdated(n) if n.id == want.id => continue,
            other => panic!("expected {what}, got {other:?}"),
        }
    }
}

/// Waits for `NodeRemoved(id)`, accepting updates of that node (e.g. to `Down`) first.
async fn expect_removed(driver: &dyn ClusterDriver, sub: &mut NodeSubscription, id: &NodeId) {
    let what = format!("NodeRemoved({id})");
    loop {
        match next(driver, sub, &what).await {
            ClusterEvent::NodeRemoved(removed) if removed == *id => return,
            ClusterEvent::NodeUpdated(n) if n.id == *id => continue,
            other => panic!("expected {what}, got {other:?}"),
        }
    }
}

/// `nodes()` returns every node, sorted by id, exactly as added; `node(id)` agrees; an unknown id
/// is `None`, not an error.
pub async fn nodes_sorted_and_complete(driver: &dyn ClusterDriver) {
    let base = baseline(driver).await;
    let c = node("c", 4000).with_label("zone", "z2");
    let a = node("a", 1000);
    let mut b = node("b", 2000);
    b.address = "10.0.0.2:7000".into();
    for n in [&c, &a, &b] {
        driver.add(n.clone()).await;
    }
    let m = driver.manager();
    let nodes = m.nodes().await.unwrap();
    assert_eq!(nodes, expected(&base, &[&a, &b, &c]));
    assert!(
        nodes.windows(2).all(|w| w[0].id < w[1].id),
        "sorted by id: {nodes:?}"
    );
    for n in [&a, &b, &c] {
        assert_eq!(m.node(&n.id).await.unwrap().as_ref(), Some(n));
    }
    let missing = NodeId::from("conformance-missing");
    assert_eq!(m.node(&missing).await.unwrap(), None);
}

/// A subscription taken before a node joins receives `NodeAdded` with the node.
pub async fn add_delivers_node_added(driver: &dyn ClusterDriver) {
    let mut sub = driver.manager().subscribe();
    let a = node("a", 1000);
    driver.add(a.clone()).await;
    expect_added(driver, &mut sub, &a).await;
}

/// Changing a member (labels, status, resources) delivers `NodeUpdated` with the new node, and
/// `nodes()` shows it.
pub async fn update_delivers_node_updated(driver: &dyn ClusterDriver) {
    let base = baseline(driver).await;
    let a = node("a", 1000);
    driver.add(a.clone()).await;
    let mut sub = driver.manager().subscribe();
    let mut changed = a.clone().with_label("disk", "ssd");
    changed.status = NodeStatus::NotReady;
    changed.allocatable = Resources::new(900, 1800, 9000);
    driver.add(changed.clone()).await;
    expect_updated(driver, &mut sub, &changed).await;
    assert_eq!(
        driver.manager().nodes().await.unwrap(),
        expected(&base, &[&changed])
    );
}

/// Re-adding a node exactly as it is produces no event: the next event is about the next change.
pub async fn identical_add_is_silent(driver: &dyn ClusterDriver) {
    let a = node("a", 1000);
    driver.add(a.clone()).await;
    let mut sub = driver.manager().subscribe();
    driver.add(a.clone()).await;
    let b = node("b", 1000);
    driver.add(b.clone()).await;
    expect_added(driver, &mut sub, &b).await;
}

/// `set_unschedulable` cordons and uncordons a node (each a `NodeUpdated`), leaves the rest of
/// the node alone, and answers `NodeNotFound` (not transient) for an unknown node.
pub async fn set_unschedulable_cordons_and_uncordons(driver: &dyn ClusterDriver) {
    let a = node("a", 1000).with_label("zone", "z1");
    driver.add(a.clone()).await;
    let m = driver.manager();
    let mut sub = m.subscribe();

    m.set_unschedulable(&a.id, true).await.expect("cordon");
    let mut cordoned = a.clone();
    cordoned.unschedulable = true;
    expect_updated(driver, &mut sub, &cordoned).await;
    assert_eq!(m.node(&a.id).await.unwrap(), Some(cordoned.clone()));
    assert!(!m.node(&a.id).await.unwrap().unwrap().is_schedulable());

    m.set_unschedulable(&a.id, false).await.expect("uncordon");
    expect_updated(driver, &mut sub, &a).await;
    assert_eq!(m.node(&a.id).await.unwrap(), Some(a.clone()));

    let missing = NodeId::from("conformance-missing");
    match m.set_unschedulable(&missing, true).await {
        Err(e @ ClusterError::NodeNotFound(_)) => {
            assert!(!e.is_transient(), "an unknown node stays unknown");
            assert!(matches!(e, ClusterError::NodeNotFound(id) if id == missing));
        }
        other => panic!("expected NodeNotFound, got {other:?}"),
    }
}

/// A node leaving delivers `NodeRemoved` and disappears from `nodes()` and `node()`.
pub async fn remove_delivers_node_removed(driver: &dyn ClusterDriver) {
    let base = baseline(driver).await;
    let a = node("a", 1000);
    let b = node("b", 1000);
    driver.add(a.clone()).await;
    driver.add(b.clone()).await;
    let mut sub = driver.manager().subscribe();
    driver.remove(&a.id).await;
    expect_removed(driver, &mut sub, &a.id).await;
    let m = driver.manager();
    assert_eq!(m.nodes().await.unwrap(), expected(&base, &[&b]));
    assert_eq!(m.node(&a.id).await.unwrap(), None);
}

/// Every subscriber sees the events of a sequence of changes, in the order of the changes.
pub async fn events_arrive_in_order_to_every_subscriber(driver: &dyn ClusterDriver) {
    let m = driver.manager();
    let mut first = m.subscribe();
    let mut second = m.subscribe();
    let a = node("a", 1000);
    let b = node("b", 2000);
    let c = node("c", 3000);
    let a2 = a.clone().with_label("tier", "gold");
    driver.add(a.clone()).await;
    driver.add(b.clone()).await;
    driver.add(a2.clone()).await;
    driver.remove(&b.id).await;
    driver.add(c.clone()).await;
    for sub in [&mut first, &mut second] {
        expect_added(driver, sub, &a).await;
        expect_added(driver, sub, &b).await;
        expect_updated(driver, sub, &a2).await;
        expect_removed(driver, sub, &b.id).await;
        expect_added(driver, sub, &c).await;
    }
}

/// A subscriber that does not receive while more changes happen than its buffer holds gets one
/// `Resync` equal to `nodes()` (never a silent gap), then live events again.
pub async fn lagging_subscriber_resyncs_then_follows(driver: &dyn ClusterDriver) {
    let m = driver.manager();
    let a = node("a", 1000);
    driver.add(a.clone()).await;
    let mut sub = m.subscribe();
    let changes = driver.events_to_overflow();
    assert!(changes > 0, "events_to_overflow must be positive");
    for generation in 0..changes {
        driver
            .add(a.clone().with_label("generation", &generation.to_string()))
            .await;
    }
    match next(driver, &mut sub, "a Resync").await {
        ClusterEvent::Resync(nodes) => {
            assert_eq!(
                nodes,
                m.nodes().await.unwrap(),
                "the resync is the full node list"
            );
            let last = a
                .clone()
                .with_label("generation", &(changes - 1).to_string());
            assert!(
                nodes.contains(&last),
                "the resync has the latest change: {nodes:?}"
            );
        }
        other => panic!("a lagging subscriber must get a Resync, got {other:?}"),
    }
    // Live again: events still in flight about `a` may precede it, but the next event about a
    // new node must be its NodeAdded.
    let b = node("b", 1000);
    driver.add(b.clone()).await;
    loop {
        let event = next(driver, &mut sub, "NodeAdded after the resync").await;
        if about(&event) == Some(&b.id) {
            match event {
                ClusterEvent::NodeAdded(n) if n == b => break,
                ClusterEvent::NodeAdded(_) => {
                    expect_updated(driver, &mut sub, &b).await;
                    break;
                }
                other => panic!("expected NodeAdded({}), got {other:?}", b.id),
            }
        }
        assert!(
            matches!(&event, ClusterEvent::NodeUpdated(n) if n.id == a.id),
            "only late updates of the changed node may come first, got {event:?}"
        );
    }
}
