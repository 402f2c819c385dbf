//! Fan-out of committed changes to the watchers of one process, written once for the stores
//! that keep their watchers in-process ([`crate::InMemoryStore`], `RedbStore`; an etcd store can
//! feed one etcd watch into a hub to serve many local watchers).
//!
//! The contract of [`crate::Watch`] lives here: a watcher gets every change after the revision
//! it asked for exactly once, in order, or its stream ends (`None`) and it must re-list. A
//! watcher is never skipped ahead:
//! * [`WatchHub::subscribe`] queues the replay (the kept changes up to the last published
//!   revision) and registers the watcher for what follows, in one step under the caller's lock,
//!   so a change published meanwhile is neither missed nor repeated;
//! * [`WatchHub::publish`] drops a watcher whose channel is full (it fell more than its buffer
//!   behind) or closed, so its stream ends after the changes it already holds;
//! * [`check_kept`] refuses a watch from before what a bounded history still keeps.
//!
//! The hub is not synchronised itself: a store keeps it under the lock that orders its commits
//! with its watches, and never awaits while holding it (sending is `try_send`).
//!
//! # Layout
//! * [`WatchHub`] — the watchers and the last published revision.
//! * [`ToEvent`] — what a store publishes: its own change type, turned into [`WatchEvent`]s
//!   only for the watchers that want them.
//! * [`check_kept`] — the compaction rule.

use crate::{Kind, KindSet, Revision, StoreError, Watch, WatchEvent};
use tokio::sync::mpsc;

/// A change a store publishes to its watchers.
pub trait ToEvent {
    /// Revision of the commit that made it.
    fn revision(&self) -> Revision;
    /// The collection it changed.
    fn kind(&self) -> Kind;
    /// The event a watcher receives.
    fn to_event(&self) -> WatchEvent;
}

impl ToEvent for WatchEvent {
    fn revision(&self) -> Revision {
        self.revision
    }

    fn kind(&self) -> Kind {
        self.kind
    }

    fn to_event(&self) -> WatchEvent {
        self.clone()
    }
}

struct Watcher {
    tx: mpsc::Sender<Result<WatchEvent, StoreError>>,
    /// Only changes after this revision are sent: its replay covered the ones before (or it
    /// asked to start in the future).
    after: Revision,
    /// The collections it follows.
    kinds: KindSet,
}

/// The watchers of a store and the last revision published to them.
pub struct WatchHub {
    watchers: Vec<Watcher>,
    published: Revision,
}

impl WatchHub {
    /// A hub with no watchers whose changes up to `published` are already committed (those are
    /// what a watch replays).
    pub fn new(published: Revision) -> Self {
        Self {
            watchers: Vec::new(),
            published,
        }
    }

    /// The last revision whose changes were published.
    pub fn published(&self) -> Revision {
        self.published
    }

    /// How many watchers are registered.
    pub fn watchers(&self) -> usize {
        self.watchers.len()
    }

    /// A watch of every change to `kinds` after `after`: `replay` must be the kept changes in
    /// `(after, published]`, in order (the caller checked [`check_kept`]); later changes come
    /// from [`WatchHub::publish`]. The watcher may fall `buffer` live changes behind before it
    /// is dropped.
    pub fn subscribe(
        &mut self,
        after: Revision,
        replay: impl Iterator<Item = WatchEvent>,
        buffer: usize,
        kinds: KindSet,
    ) -> Watch {
        let replay: Vec<WatchEvent> = replay.filter(|c| kinds.contains(c.kind)).collect();
        // Room for the whole replay on top of the live buffer, so replaying never drops the
        // watcher and its replay is queued in order before any live change. tokio allocates
        // slots lazily, so a large capacity costs nothing up front.
        let (tx, rx) = mpsc::channel(replay.len() + buffer.max(1));
        for change in replay {
            // Cannot fail: the channel has room for the replay and `rx` is alive.
            let _ = tx.try_send(Ok(change));
        }
        self.watchers.push(Watcher {
            tx,
            after: after.max(self.published),
            kinds,
        });
        Watch::new(rx)
    }

    /// Sends `changes` (committed, in revision order) to the watchers that want them and
    /// records `revision` as published. A watcher whose channel is full or closed is dropped,
    /// never skipped ahead: its stream ends after what it holds, which tells it to re-list.
    pub fn publish<C: ToEvent>(&mut self, changes: &[C], revision: Revision) {
        if !changes.is_empty() {
            self.watchers.retain(|w| {
                changes
                    .iter()
                    .filter(|c| c.revision() > w.after && w.kinds.contains(c.kind()))
                    .all(|c| w.tx.try_send(Ok(c.to_event())).is_ok())
            });
        }
        self.published = revision;
    }

    /// Ends every watch (`None` after what each holds): the store closes, or can no longer
    /// promise that no change was missed.
    pub fn close(&mut self) {
        self.watchers.clear();
    }
}

/// Fails with [`StoreError::Compacted`] unless every change after `after` is still kept, given
/// that `compacted` is the highest revision of a change a bounded history dropped (0: none).
pub fn check_kept(after: Revision, compacted: Revision) -> Result<(), StoreError> {
    if after < compacted {
        return Err(StoreError::Compacted {
            requested: after,
            oldest: compacted + 1,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Kind;
    use tokio::sync::mpsc::error::TryRecvError;

    fn change(revision: Revision) -> WatchEvent {
        WatchEvent {
            revision,
            kind: Kind::Node,
            key: format!("k{revision}"),
            value: None,
        }
    }

    /// What the watch holds now: revisions, then `None` if its stream has ended.
    fn drain(watch: &mut Watch) -> Vec<Option<Revision>> {
        let mut seen = Vec::new();
        loop {
            match watch.try_next() {
                Ok(item) => seen.push(Some(item.unwrap().revision)),
                Err(TryRecvError::Disconnected) => {
                    seen.push(None);
                    return seen;
                }
                Err(TryRecvError::Empty) => return seen,
            }
        }
    }

    #[test]
    fn replay_then_live_without_gaps_or_repeats() {
        let mut hub = WatchHub::new(3);
        let mut watch = hub.subscribe(1, [change(2), change(3)].into_iter(), 4, KindSet::ALL);
        // A late publish of what the replay had is not repeated.
        hub.publish(&[change(3), change(4)], 4);
        assert_eq!(drain(&mut watch), [Some(2), Some(3), Some(4)]);
        assert_eq!(hub.published(), 4);
    }

    #[test]
    fn a_watch_from_the_future_waits_for_it() {
        let mut hub = WatchHub::new(1);
        let mut watch = hub.subscribe(5, std::iter::empty(), 4, KindSet::ALL);
        hub.publish(&[change(5)], 5);
        hub.publish(&[change(6)], 6);
        assert_eq!(drain(&mut watch), [Some(6)]);
    }

    #[test]
    fn a_full_watcher_is_dropped_and_its_stream_ends() {
        let mut hub = WatchHub::new(0);
        let mut slow = hub.subscribe(0, std::iter::empty(), 1, KindSet::ALL);
        let mut fast = hub.subscribe(0, std::iter::empty(), 8, KindSet::ALL);
        hub.publish(&[change(1)], 1);
        assert_eq!(drain(&mut fast), [Some(1)]);
        hub.publish(&[change(2)], 2);
        assert_eq!(hub.watchers(), 1);
        assert_eq!(
            drain(&mut slow),
            [Some(1), None],
            "ends instead of skipping 2"
        );
        hub.close();
        assert_eq!(drain(&mut fast), [Some(2), None]);
    }

    #[test]
    fn compaction_rule() {
        assert!(check_kept(3, 3).is_ok());
        assert!(check_kept(0, 0).is_ok());
        assert!(matches!(
            check_kept(1, 3),
            Err(StoreError::Compacted {
                requested: 1,
                oldest: 4
            })
        ));
    }
}
