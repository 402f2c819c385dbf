//! The socket handed to chitchat: opened by the manager before chitchat starts (so the bound
//! port of a port-0 listen address is known before it must be advertised), and wrapped to count
//! the traffic.

use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport};
use chitchat::ChitchatEnvelope;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Gossip traffic of one manager so far: valid chitchat datagrams and their bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Bytes handed to the transport by chitchat.
    pub bytes_sent: u64,
    /// Bytes of the datagrams chitchat decoded.
    pub bytes_received: u64,
    /// Datagrams sent.
    pub datagrams_sent: u64,
    /// Datagrams received and decoded (junk and other protocols are not counted).
    pub datagrams_received: u64,
}

impl Traffic {
    /// The traffic between `earlier` and `self` (saturating, so a swapped pair gives zeros).
    pub fn since(&self, earlier: &Traffic) -> Traffic {
        Traffic {
            bytes_sent: self.bytes_sent.saturating_sub(earlier.bytes_sent),
            bytes_received: self.bytes_received.saturating_sub(earlier.bytes_received),
            datagrams_sent: self.datagrams_sent.saturating_sub(earlier.datagrams_sent),
            datagrams_received: self
                .datagrams_received
                .saturating_sub(earlier.datagrams_received),
        }
    }
}

/// The counters behind [`Traffic`], shared by the socket and the manager.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    datagrams_sent: AtomicU64,
    datagrams_received: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> Traffic {
        Traffic {
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
            datagrams_sent: self.datagrams_sent.load(Ordering::Relaxed),
            datagrams_received: self.datagrams_received.load(Ordering::Relaxed),
        }
    }
}

/// A transport whose only socket is already open: `open` hands it out once, counted.
/// (Chitchat's `Transport` must be `'static`, so it cannot borrow the caller's transport.)
pub(crate) struct PreOpened {
    socket: Mutex<Option<Box<dyn Socket>>>,
    counters: Arc<Counters>,
}

impl PreOpened {
    pub fn new(socket: Box<dyn Socket>, counters: Arc<Counters>) -> Self {
        Self {
            socket: Mutex::new(Some(socket)),
            counters,
        }
    }
}

#[async_trait::async_trait]
impl Transport for PreOpened {
    async fn open(&self, _listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let socket = self
            .socket
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or_else(|| anyhow::anyhow!("the gossip socket was already handed out"))?;
        Ok(Box::new(CountingSocket {
            inner: socket,
            counters: self.counters.clone(),
        }))
    }
}

struct CountingSocket {
    inner: Box<dyn Socket>,
    counters: Arc<Counters>,
}

#[async_trait::async_trait]
impl Socket for CountingSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.inner.local_addr()
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        let outcome = self.inner.send(to, envelope).await?;
        let c = &self.counters;
        c.bytes_sent
            .fetch_add(outcome.num_bytes_sent as u64, Ordering::Relaxed);
        c.datagrams_sent.fetch_add(1, Ordering::Relaxed);
        Ok(outcome)
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        let outcome = self.inner.recv().await?;
        let c = &self.counters;
        c.bytes_received
            .fetch_add(outcome.num_bytes_received as u64, Ordering::Relaxed);
        c.datagrams_received.fetch_add(1, Ordering::Relaxed);
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_subtracts_and_saturates() {
        let earlier = Traffic {
            bytes_sent: 10,
            bytes_received: 20,
            datagrams_sent: 1,
            datagrams_received: 2,
        };
        let later = Traffic {
            bytes_sent: 15,
            bytes_received: 50,
            datagrams_sent: 2,
            datagrams_received: 5,
        };
        assert_eq!(
            later.since(&earlier),
            Traffic {
                bytes_sent: 5,
                bytes_received: 30,
                datagrams_sent: 1,
                datagrams_received: 3
            }
        );
        assert_eq!(earlier.since(&later), Traffic::default());
    }
}
