//! [`WorkQueue`]: which workloads need a reconcile, and when.
//!
//! The rules it keeps: a workload is queued at most once; a workload with runtime operations in
//! flight is never planned again until they all report back (it is remembered and queued then),
//! so two reconciles of one workload never overlap; timers (backoffs, requeues) queue a workload
//! at a given time; workloads whose replicas fit nowhere wait until room appears.
//!
//! Pure bookkeeping: the caller passes the time in, so the model's tests need no clock.

use orchestrator_shared_types::WorkloadId;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use tokio::time::Instant;

/// The model's queue of work.
#[derive(Debug, Default)]
pub(crate) struct WorkQueue {
    dirty: VecDeque<WorkloadId>,
    dirty_set: HashSet<WorkloadId>,
    /// Operations in flight per workload.
    in_flight: HashMap<WorkloadId, usize>,
    /// Workloads made dirty while in flight: queued when their operations finish.
    rerun: HashSet<WorkloadId>,
    timers: BinaryHeap<Reverse<(Instant, WorkloadId)>>,
    /// Workloads with replicas that fit nowhere: queued again when room appears.
    waiting_for_room: HashSet<WorkloadId>,
}

impl WorkQueue {
    /// Queues `workload` (or remembers it for after its operations in flight).
    pub(crate) fn mark_dirty(&mut self, workload: WorkloadId) {
        if self.in_flight.contains_key(&workload) {
            self.rerun.insert(workload);
        } else if self.dirty_set.insert(workload.clone()) {
            self.dirty.push_back(workload);
        }
    }

    /// The next workload to plan now, if any. A workload whose operations are in flight is
    /// deferred until they finish instead.
    pub(crate) fn pop(&mut self) -> Option<WorkloadId> {
        while let Some(w) = self.dirty.pop_front() {
            self.dirty_set.remove(&w);
            if self.in_flight.contains_key(&w) {
                self.rerun.insert(w);
            } else {
                return Some(w);
            }
        }
        None
    }

    /// An operation of `workload` started.
    pub(crate) fn op_started(&mut self, workload: &WorkloadId) {
        *self.in_flight.entry(workload.clone()).or_default() += 1;
    }

    /// An operation of `workload` finished; when it was the last one, a deferred reconcile is
    /// queued.
    pub(crate) fn op_finished(&mut self, workload: &WorkloadId) {
        let Some(n) = self.in_flight.get_mut(workload) else {
            return;
        };
        *n -= 1;
        if *n == 0 {
            self.in_flight.remove(workload);
            if self.rerun.remove(workload) {
                self.mark_dirty(workload.clone());
            }
        }
    }

    /// Workloads with operations in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Queues `workload` at `at`.
    pub(crate) fn schedule(&mut self, at: Instant, workload: WorkloadId) {
        self.timers.push(Reverse((at, workload)));
    }

    /// When the earliest timer fires.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// Queues every workload whose timer is due at `now`.
    pub(crate) fn fire_timers(&mut self, now: Instant) {
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            if let Some(Reverse((_, w))) = self.timers.pop() {
                self.mark_dirty(w);
            }
        }
    }

    /// Records whether `workload` has replicas that fit nowhere.
    pub(crate) fn set_waiting_for_room(&mut self, workload: &WorkloadId, waiting: bool) {
        if waiting {
            self.waiting_for_room.insert(workload.clone());
        } else {
            self.waiting_for_room.remove(workload);
        }
    }

    /// Room appeared: every workload waiting for it is queued.
    pub(crate) fn wake_waiting(&mut self) {
        for w in std::mem::take(&mut self.waiting_for_room) {
            self.mark_dirty(w);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn w(name: &str) -> WorkloadId {
        WorkloadId::from(name)
    }

    #[test]
    fn a_workload_is_queued_once() {
        let mut q = WorkQueue::default();
        q.mark_dirty(w("a"));
        q.mark_dirty(w("a"));
        q.mark_dirty(w("b"));
        assert_eq!(q.pop(), Some(w("a")));
        assert_eq!(q.pop(), Some(w("b")));
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn a_workload_in_flight_is_deferred_until_its_operations_finish() {
        let mut q = WorkQueue::default();
        q.op_started(&w("a"));
        q.op_started(&w("a"));
        q.mark_dirty(w("a"));
        assert_eq!(q.pop(), None, "never planned while in flight");
        q.op_finished(&w("a"));
        assert_eq!(q.pop(), None, "one operation is still in flight");
        q.op_finished(&w("a"));
        assert_eq!(q.pop(), Some(w("a")), "queued once the last one finished");
        assert_eq!(q.in_flight(), 0);
    }

    #[test]
    fn timers_fire_in_order_at_their_time() {
        let mut q = WorkQueue::default();
        let t0 = Instant::now();
        q.schedule(t0 + Duration::from_secs(2), w("late"));
        q.schedule(t0 + Duration::from_secs(1), w("early"));
        assert_eq!(q.next_deadline(), Some(t0 + Duration::from_secs(1)));
        q.fire_timers(t0);
        assert_eq!(q.pop(), None);
        q.fire_timers(t0 + Duration::from_secs(1));
        assert_eq!(q.pop(), Some(w("early")));
        assert_eq!(q.pop(), None);
        q.fire_timers(t0 + Duration::from_secs(5));
        assert_eq!(q.pop(), Some(w("late")));
        assert_eq!(q.next_deadline(), None);
    }

    #[test]
    fn waiting_workloads_wake_when_room_appears() {
        let mut q = WorkQueue::default();
        q.set_waiting_for_room(&w("a"), true);
        q.set_waiting_for_room(&w("b"), true);
        q.set_waiting_for_room(&w("b"), false);
        q.wake_waiting();
        assert_eq!(q.pop(), Some(w("a")));
        assert_eq!(q.pop(), None);
        q.wake_waiting();
        assert_eq!(q.pop(), None, "woken once");
    }
}
