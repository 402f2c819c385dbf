//! Cluster membership: the [`ClusterManager`] trait, its error, a lossless node-event
//! subscription, and the [`StaticClusterManager`] whose nodes are added, updated and removed by
//! calls (single node daemon, tests, benchmarks).
//!
//! A subscriber never silently loses events: events travel on a bounded broadcast channel, and a
//! subscriber that falls behind gets one [`ClusterEvent::Resync`] with a full snapshot instead of
//! the events it missed (see [`NodeSubscription`]).
//!
//! # Layout
//! * [`manager`] — the trait, [`ClusterEvent`], [`NodeSubscription`].
//! * [`hub`] — [`NodeHub`], the node table + broadcast + snapshot every implementation can reuse.
//! * [`error`] — [`ClusterError`] with `is_transient()`.
//! * [`static_manager`] — [`StaticClusterManager`], membership changed only by calls.
//! * [`conformance`] — the suite every implementation must pass (feature `conformance`).
//! * `gossip` — `GossipClusterManager`, membership and failure detection over chitchat gossip
//!   (feature `gossip`).

pub mod error;
pub mod hub;
pub mod manager;
pub mod static_manager;

#[cfg(feature = "gossip")]
pub mod gossip;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use error::ClusterError;
pub use hub::NodeHub;
pub use manager::{ClusterEvent, ClusterManager, NodeSubscription};
pub use static_manager::StaticClusterManager;

#[cfg(feature = "gossip")]
pub use gossip::{GossipClusterManager, GossipConfig, Peer, Traffic};

#[cfg(any(test, feature = "mock"))]
pub use manager::MockClusterManager;
