//! The rules of [`crate::StateStore`] that do not depend on how a store keeps its data, written
//! once for every implementation: what a batch may contain, when a precondition fails, which
//! writes a batch makes and at which revision, how the event log numbers, keeps and filters
//! events.
//!
//! A store supplies what only it knows (how to look an entry up, how to write, how to scan its
//! log) and gets the same answers, the same errors and the same messages as every other store.
//! The conformance suite checks the result; these functions are why the stores cannot drift
//! apart on the details it does not reach (the text of a conflict, the exact rule for a delete of
//! nothing).
//!
//! # Layout
//! * Paging: [`page_start`].
//! * Batches: [`check_batch`] (a key written twice), [`violated`] and [`check_precondition`]
//!   (one op against the entry it finds), [`plan_commit`] (all of it, turning a batch into the
//!   [`Write`]s of a [`Plan`]).
//! * The event log: [`number_events`], [`last_dropped_seq`] (retention), [`first_seq`] and
//!   [`select_events`] (an [`EventFilter`] over a store's scan).

use crate::{EventFilter, Kind, LimitFrom, Op, Precondition, Revision, StoreError, WatchEvent};
use orchestrator_shared_types::Event;
use std::borrow::Borrow;
use std::ops::Bound;

// ---------------------------------------------------------------------------------------------
// Paging

/// Where a range scan for [`crate::StateStore::list_page`] starts: after the cursor, or at the
/// prefix, whichever is later. Every key with the prefix sorts at or after the prefix, so a
/// cursor before it excludes nothing; the scan stops at the first key without the prefix.
pub fn page_start<'a>(prefix: &'a str, start_after: Option<&'a str>) -> Bound<&'a str> {
    match start_after {
        Some(after) if after >= prefix => Bound::Excluded(after),
        _ => Bound::Included(prefix),
    }
}

// ---------------------------------------------------------------------------------------------
// Batches

/// Fails if `ops` writes the same key twice: etcd refuses such a transaction, so every store
/// does, rather than let code pass on one store and fail on another. Not transient: the same
/// batch fails again.
pub fn check_batch(ops: &[Op]) -> Result<(), StoreError> {
    if ops.len() < 2 {
        return Ok(());
    }
    let mut targets: Vec<(Kind, &str)> = ops
        .iter()
        .filter(|op| op.writes())
        .map(Op::target)
        .collect();
    targets.sort_unstable();
    match targets.windows(2).find(|w| w[0] == w[1]) {
        Some(w) => Err(StoreError::Backend {
            operation: "commit",
            source: format!("{:?} {:?} is written twice in one batch", w[0].0, w[0].1).into(),
        }),
        None => Ok(()),
    }
}

/// Why `precondition` fails against an entry last modified at `current` (`None`: absent), if
/// it does.
pub fn violated(precondition: Precondition, current: Option<Revision>) -> Option<String> {
    match (precondition, current) {
        (Precondition::None, _) => None,
        (Precondition::Absent, None) | (Precondition::Exists, Some(_)) => None,
        (Precondition::Absent, Some(found)) => {
            Some(format!("expected absent, exists (mod revision {found})"))
        }
        (Precondition::Exists, None) => Some("expected to exist, absent".into()),
        (Precondition::ModRevision(want), Some(found)) if found == want => None,
        (Precondition::ModRevision(want), Some(found)) => {
            Some(format!("expected mod revision {want}, found {found}"))
        }
        (Precondition::ModRevision(want), None) => {
            Some(format!("expected mod revision {want}, absent"))
        }
    }
}

/// [`violated`] as the [`StoreError::Conflict`] a commit returns.
pub fn check_precondition(
    kind: Kind,
    key: &str,
    precondition: Precondition,
    current: Option<Revision>,
) -> Result<(), StoreError> {
    match violated(precondition, current) {
        Some(reason) => Err(StoreError::Conflict {
            kind,
            key: key.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// What a store found at a key a batch writes.
#[derive(Debug)]
pub enum Found {
    /// No entry.
    Absent,
    /// An entry with these revisions.
    Present {
        /// Revision of the write that created it.
        create_revision: Revision,
        /// Revision of the write that last modified it.
        mod_revision: Revision,
    },
    /// An entry whose record does not decode, and the error saying so. An unconditional op may
    /// replace or delete it (that is how an operator repairs it); any other fails with this
    /// error, since its precondition cannot be checked.
    Unreadable(StoreError),
}

/// One change a batch makes, in the order of its ops.
#[derive(Debug)]
pub struct Write {
    /// The change as watchers see it (`value` is `None` for a delete), at the plan's revision.
    pub change: WatchEvent,
    /// For a put, the entry's create revision: the old one if it existed, else the plan's.
    pub create_revision: Revision,
}

/// What a batch does, decided before anything is written.
#[derive(Debug)]
pub struct Plan {
    /// The revision to answer with: the next one if the batch changes anything, else the
    /// current one (an empty batch, or only deletes of absent keys).
    pub revision: Revision,
    /// The changes to write, all at `revision`; empty if none.
    pub writes: Vec<Write>,
}

/// Decides what `ops` does to a store at revision `current`, where `find` looks up the entry at
/// a key as it is before the batch (as in an etcd transaction). The outer error is `find`'s own
/// (a storage failure); the inner one is the batch's: a key written twice, a failed
/// precondition ([`StoreError::Conflict`] for the first failing op), or an unreadable entry under
/// a precondition. A delete of an absent key is no change: no write, no revision.
pub fn plan_commit<E>(
    ops: Vec<Op>,
    current: Revision,
    mut find: impl FnMut(Kind, &str) -> Result<Found, E>,
) -> Result<Result<Plan, StoreError>, E> {
    if let Err(e) = check_batch(&ops) {
        return Ok(Err(e));
    }
    // One pass: a failing op ends the plan before anything is written, so deciding the writes
    // while checking costs nothing extra.
    let revision = current + 1;
    let mut writes = Vec::with_capacity(ops.len());
    for op in ops {
        let (kind, key) = op.target();
        let precondition = op.precondition();
        // `exists` apart from the revisions: an unreadable entry under an unconditional op has
        // none to check or keep (a put replaces it as if new) but a delete still removes it.
        let (revisions, exists) = match find(kind, key)? {
            Found::Absent => (None, false),
            Found::Present {
                create_revision,
                mod_revision,
            } => (Some((create_revision, mod_revision)), true),
            Found::Unreadable(_) if precondition == Precondition::None => (None, true),
            Found::Unreadable(e) => return Ok(Err(e)),
        };
        if let Err(e) = check_precondition(kind, key, precondition, revisions.map(|(_, m)| m)) {
            return Ok(Err(e));
        }
        match op {
            Op::Put {
                kind, key, value, ..
            } => writes.push(Write {
                change: WatchEvent {
                    revision,
                    kind,
                    key,
                    value: Some(value),
                },
                create_revision: revisions.map_or(revision, |(create, _)| create),
            }),
            Op::Delete { kind, key, .. } if exists => writes.push(Write {
                change: WatchEvent {
                    revision,
                    kind,
                    key,
                    value: None,
                },
                create_revision: revision,
            }),
            Op::Delete { .. } | Op::Check { .. } => {}
        }
    }
    Ok(Ok(Plan {
        revision: if writes.is_empty() { current } else { revision },
        writes,
    }))
}

// ---------------------------------------------------------------------------------------------
// The event log

/// Gives `events` the sequence numbers after `last_seq`, in order; returns the last one given
/// (`last_seq` if there are none).
pub fn number_events(events: &mut [Event], last_seq: u64) -> u64 {
    let mut seq = last_seq;
    for event in events {
        seq += 1;
        event.seq = seq;
    }
    seq
}

/// The highest `seq` a log keeping its `keep` most recent events drops once `last_seq` is
/// written: events with a `seq` up to it go (0: none do).
pub fn last_dropped_seq(last_seq: u64, keep: u64) -> u64 {
    last_seq.saturating_sub(keep)
}

/// The lowest `seq` `filter` admits, or `None` if it admits none (`after_seq` is `u64::MAX`).
pub fn first_seq(filter: &EventFilter) -> Option<u64> {
    filter.after_seq.unwrap_or(0).checked_add(1)
}

/// The events of `candidates` that `filter` returns, oldest first. `candidates` are a store's
/// scan of its log from [`first_seq`] on, oldest first; it is read from the end `limit` counts
/// from ([`LimitFrom`]) and only as far as the limit, so a store's scan stops early.
pub fn select_events<T: Borrow<Event>, E>(
    filter: &EventFilter,
    candidates: impl DoubleEndedIterator<Item = Result<T, E>>,
) -> Result<Vec<T>, E> {
    let limit = filter.limit.unwrap_or(usize::MAX);
    let wanted = |item: &Result<T, E>| match (item, &filter.workload_id) {
        (Ok(event), Some(workload)) => event.borrow().workload_id.as_ref() == Some(workload),
        // Errors go through, to be returned.
        _ => true,
    };
    match filter.limit_from {
        LimitFrom::Oldest => candidates.filter(wanted).take(limit).collect(),
        LimitFrom::Newest => {
            let mut events = candidates
                .rev()
                .filter(wanted)
                .take(limit)
                .collect::<Result<Vec<T>, E>>()?;
            events.reverse();
            Ok(events)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_shared_types::{EventKind, WorkloadId};
    use std::convert::Infallible;

    fn put(key: &str, precondition: Precondition) -> Op {
        Op::Put {
            kind: Kind::Instance,
            key: key.into(),
            value: key.as_bytes().to_vec(),
            precondition,
        }
    }

    fn delete(key: &str, precondition: Precondition) -> Op {
        Op::Delete {
            kind: Kind::Instance,
            key: key.into(),
            precondition,
        }
    }

    /// `a` exists (created at 2, modified at 5), `bad` does not decode, nothing else exists.
    fn find(_: Kind, key: &str) -> Result<Found, Infallible> {
        Ok(match key {
            "a" => Found::Present {
                create_revision: 2,
                mod_revision: 5,
            },
            "bad" => Found::Unreadable(StoreError::Closed),
            _ => Found::Absent,
        })
    }

    fn plan_of(ops: Vec<Op>) -> Result<Plan, StoreError> {
        let Ok(plan) = plan_commit(ops, 7, find);
        plan
    }

    #[test]
    fn a_plan_writes_at_the_next_revision_keeping_create_revisions() {
        let plan = plan_of(vec![
            put("a", Precondition::ModRevision(5)),
            put("new", Precondition::Absent),
            delete("gone", Precondition::None),
            delete("bad", Precondition::None),
        ])
        .unwrap();
        assert_eq!(plan.revision, 8);
        let writes: Vec<(&str, bool, Revision, Revision)> = plan
            .writes
            .iter()
            .map(|w| {
                (
                    w.change.key.as_str(),
                    w.change.value.is_some(),
                    w.change.revision,
                    w.create_revision,
                )
            })
            .collect();
        assert_eq!(
            writes,
            [("a", true, 8, 2), ("new", true, 8, 8), ("bad", false, 8, 8)],
            "the delete of an absent key is no write; an unreadable entry is deleted"
        );
    }

    #[test]
    fn a_plan_without_changes_keeps_the_revision() {
        let plan = plan_of(vec![delete("gone", Precondition::None)]).unwrap();
        assert_eq!((plan.revision, plan.writes.len()), (7, 0));
        let plan = plan_of(vec![]).unwrap();
        assert_eq!((plan.revision, plan.writes.len()), (7, 0));
    }

    #[test]
    fn the_first_failing_precondition_is_the_conflict() {
        let err = plan_of(vec![
            put("new", Precondition::Absent),
            put("a", Precondition::ModRevision(4)),
            put("other", Precondition::Exists),
        ])
        .unwrap_err();
        match err {
            StoreError::Conflict { key, reason, .. } => {
                assert_eq!(key, "a");
                assert_eq!(reason, "expected mod revision 4, found 5");
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert!(matches!(
            plan_of(vec![delete("gone", Precondition::Exists)]),
            Err(StoreError::Conflict { .. })
        ));
    }

    #[test]
    fn an_unreadable_entry_fails_only_a_conditional_op() {
        assert!(matches!(
            plan_of(vec![put("bad", Precondition::Exists)]),
            Err(StoreError::Closed)
        ));
        let plan = plan_of(vec![put("bad", Precondition::None)]).unwrap();
        assert_eq!(plan.writes[0].create_revision, 8, "replaced as if new");
    }

    #[test]
    fn a_key_written_twice_fails_the_batch_before_any_lookup() {
        let ops = vec![
            put("k", Precondition::None),
            put("x", Precondition::None),
            delete("k", Precondition::None),
        ];
        let mut lookups = 0;
        let outcome = plan_commit(ops, 7, |kind, key| {
            lookups += 1;
            find(kind, key)
        });
        let Ok(outcome) = outcome;
        assert!(
            matches!(&outcome, Err(e @ StoreError::Backend { .. }) if !e.is_transient()),
            "{outcome:?}"
        );
        assert_eq!(lookups, 0);
        // The same key in two kinds is two keys.
        let node = Op::Put {
            kind: Kind::Node,
            key: "k".into(),
            value: vec![],
            precondition: Precondition::None,
        };
        assert!(check_batch(&[put("k", Precondition::None), node]).is_ok());
    }

    #[test]
    fn conflict_messages() {
        assert_eq!(violated(Precondition::None, Some(3)), None);
        assert_eq!(
            violated(Precondition::Absent, Some(3)).as_deref(),
            Some("expected absent, exists (mod revision 3)")
        );
        assert_eq!(
            violated(Precondition::Exists, None).as_deref(),
            Some("expected to exist, absent")
        );
        assert_eq!(
            violated(Precondition::ModRevision(3), None).as_deref(),
            Some("expected mod revision 3, absent")
        );
        assert_eq!(violated(Precondition::ModRevision(3), Some(3)), None);
    }

    fn log() -> Vec<Event> {
        let mut events: Vec<Event> = (0..6)
            .map(|i| {
                let mut e = Event::new(EventKind::Started, format!("e{i}"));
                e.workload_id = Some(WorkloadId(if i % 2 == 0 { "even" } else { "odd" }.into()));
                e
            })
            .collect();
        assert_eq!(number_events(&mut events, 10), 16);
        events
    }

    fn seqs(filter: &EventFilter, events: &[Event]) -> Vec<u64> {
        let first = first_seq(filter).unwrap();
        let candidates = events
            .iter()
            .filter(|e| e.seq >= first)
            .map(Ok::<_, Infallible>);
        let Ok(selected) = select_events(filter, candidates);
        selected.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn events_are_selected_from_the_end_the_limit_counts_from() {
        let events = log();
        let odd = Some(WorkloadId("odd".into()));
        let mut filter = EventFilter {
            limit: Some(2),
            ..EventFilter::default()
        };
        assert_eq!(seqs(&filter, &events), [15, 16]);
        filter.workload_id = odd.clone();
        assert_eq!(seqs(&filter, &events), [14, 16]);
        filter.limit_from = LimitFrom::Oldest;
        filter.after_seq = Some(12);
        assert_eq!(seqs(&filter, &events), [14, 16]);
        filter.workload_id = None;
        assert_eq!(seqs(&filter, &events), [13, 14]);
        filter.limit = Some(0);
        assert_eq!(seqs(&filter, &events), Vec::<u64>::new());
        filter.after_seq = Some(u64::MAX);
        assert_eq!(first_seq(&filter), None);
    }

    #[test]
    fn a_scan_error_is_returned() {
        let candidates = vec![Ok(Event::new(EventKind::Started, "e")), Err("broken")];
        let filter = EventFilter::default();
        assert_eq!(
            select_events(&filter, candidates.into_iter()).unwrap_err(),
            "broken"
        );
    }

    #[test]
    fn a_page_starts_at_the_later_of_prefix_and_cursor() {
        assert_eq!(page_start("b/", None), Bound::Included("b/"));
        assert_eq!(page_start("b/", Some("a")), Bound::Included("b/"));
        assert_eq!(page_start("b/", Some("b/1")), Bound::Excluded("b/1"));
        assert_eq!(page_start("", Some("x")), Bound::Excluded("x"));
    }

    #[test]
    fn retention_keeps_the_most_recent() {
        assert_eq!(last_dropped_seq(5, 3), 2);
        assert_eq!(last_dropped_seq(2, 3), 0);
    }
}
