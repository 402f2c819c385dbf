//! The persister: one task that mirrors the loop's instance records and events into the store.
//!
//! The loop is the only writer of instance records, so it keeps the authoritative copy in memory
//! and hands every change to this task instead of awaiting the store itself. The task batches
//! what arrives together into one commit (the embedded and etcd stores are far faster per batch
//! than per write) and keeps only the last write per key within a batch. Writes for one key are
//! applied in the order they were sent. Transient store errors are retried with backoff;
//! permanent ones are logged and counted, and the next resync repairs the difference.

use crate::backoff::{Backoff, BackoffPolicy};
use crate::execute::spawn_tracked;
use crate::metrics::CoreMetrics;
use orchestrator_shared_types::{Event, WorkloadDefinition, WorkloadInstance};
use state_store_interface::typed::{delete_op, put_op};
use state_store_interface::{Op, Precondition, StateStore, StoreError, StoreExt};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Most messages taken into one batch.
const MAX_BATCH: usize = 4096;

/// Most operations per commit: etcd refuses bigger transactions than it is configured for
/// (`--max-txn-ops`, 128 by default), and a leader adds its fence to each. A batch needs no atomicity (each key appears once), so it is cut.
const MAX_COMMIT_OPS: usize = 100;

/// A change for the store.
#[derive(Debug)]
pub(crate) enum PersistMsg {
    /// Create or replace an instance record.
    Put(Arc<WorkloadInstance>),
    /// Remove an instance record.
    Delete(Arc<WorkloadInstance>),
    /// Append an event.
    Event(Box<Event>),
    /// Return workload `name`, whose rollout to template revision `revision` failed, to its
    /// last good template (the automatic rollback), unless its template changed meanwhile.
    Rollback {
        name: String,
        revision: u64,
        reason: String,
    },
    /// Reply once everything sent before is committed (or given up).
    Flush(oneshot::Sender<()>),
}

/// The sending side, owned by the driver.
#[derive(Clone, Debug)]
pub(crate) struct Persister {
    tx: mpsc::UnboundedSender<PersistMsg>,
}

impl Persister {
    /// Starts the task, tracked by `tasks`. It ends once every sender is dropped and what they
    /// sent is written, or at once when `cancel` fires (a forced stop).
    pub(crate) fn spawn(
        store: Arc<dyn StateStore>,
        metrics: Arc<CoreMetrics>,
        tasks: &TaskTracker,
        cancel: CancellationToken,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        spawn_tracked(tasks, &cancel, run(store, rx, metrics));
        Self { tx }
    }

    /// A sender whose task is gone: what it is sent is dropped. Replacing the driver's
    /// sender with it lets the task end.
    pub(crate) fn closed() -> Self {
        let (tx, _) = mpsc::unbounded_channel();
        Self { tx }
    }

    /// Queues a change.
    pub(crate) fn send(&self, msg: PersistMsg) {
        let _ = self.tx.send(msg);
    }

    /// Waits until everything sent so far is committed.
    pub(crate) async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(PersistMsg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

async fn run(
    store: Arc<dyn StateStore>,
    mut rx: mpsc::UnboundedReceiver<PersistMsg>,
    metrics: Arc<CoreMetrics>,
) {
    let mut batch: Vec<PersistMsg> = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(msg) => batch.push(msg),
                Err(_) => break,
            }
        }
        let mut ops: Vec<Op> = Vec::new();
        // Last write per key wins within a batch; remember where each key's op sits.
        let mut slot: HashMap<String, usize> = HashMap::new();
        let mut events = Vec::new();
        let mut rollbacks = Vec::new();
        let mut flushes = Vec::new();
        for msg in batch.drain(..) {
            let op = match msg {
                PersistMsg::Put(i) => put_op(i.as_ref(), Precondition::None),
                PersistMsg::Delete(i) => delete_op(i.as_ref(), Precondition::None),
                PersistMsg::Event(e) => {
                    events.push(*e);
                    continue;
                }
                PersistMsg::Rollback {
                    name,
                    revision,
                    reason,
                } => {
                    rollbacks.push((name, revision, reason));
                    continue;
                }
                PersistMsg::Flush(reply) => {
                    flushes.push(reply);
                    continue;
                }
            };
            let key = op.target().1.to_owned();
            match slot.get(&key) {
                Some(&at) => ops[at] = op,
                None => {
                    slot.insert(key, ops.len());
                    ops.push(op);
                }
            }
        }
        for chunk in ops.chunks(MAX_COMMIT_OPS) {
            retrying("commit", &metrics, || store.commit(chunk.to_vec())).await;
            metrics.add_persisted(chunk.len() as u64);
        }
        if !events.is_empty() {
            retrying("append_events", &metrics, || {
                store.append_events(events.clone())
            })
            .await;
        }
        for (name, revision, reason) in rollbacks {
            roll_back(store.as_ref(), &metrics, &name, revision, &reason).await;
        }
        for reply in flushes {
            let _ = reply.send(());
        }
    }
}

/// Who an automatic rollback is attributed to in `changed_by` and events.
pub(crate) const ROLLBACK_ACTOR: &str = "auto-rollback";

/// The automatic rollback of [`PersistMsg::Rollback`]: a compare-and-swap of the workload's
/// definition, so a change made meanwhile (by a user, or an earlier rollback) wins and this one
/// is dropped; the loop sees the new template through the store's watch like any change.
async fn roll_back(
    store: &dyn StateStore,
    metrics: &CoreMetrics,
    name: &str,
    revision: u64,
    reason: &str,
) {
    let mut backoff = Backoff::new(BackoffPolicy::errors());
    for _ in 0..5 {
        let current = match store.get_obj::<WorkloadDefinition>(name).await {
            Ok(Some(current)) if current.value.revision == revision => current,
            Ok(_) => return,
            Err(e) if e.is_transient() => {
                tokio::time::sleep(backoff.fail(Duration::ZERO)).await;
                continue;
            }
            Err(e) => {
                metrics.add_persist_failure();
                tracing::error!(workload = name, error = %e, "reading a workload to roll it back failed");
                return;
            }
        };
        let mut next = match current.value.rolled_back(None, Some(reason.to_owned())) {
            Ok(next) => next,
            Err(e) => {
                tracing::warn!(workload = name, error = %e, "no revision to roll back to");
                return;
            }
        };
        next.changed_by = Some(ROLLBACK_ACTOR.to_owned());
        match store
            .put_obj(&next, Precondition::ModRevision(current.revision))
            .await
        {
            Ok(_) => return,
            // Changed in between: look again (it may no longer need the rollback).
            Err(StoreError::Conflict { .. }) => {}
            Err(e) if e.is_transient() => tokio::time::sleep(backoff.fail(Duration::ZERO)).await,
            Err(e) => {
                metrics.add_persist_failure();
                tracing::error!(workload = name, error = %e, "writing a rollback failed");
                return;
            }
        }
    }
}

/// Runs `op` until it succeeds or fails permanently; transient failures back off.
async fn retrying<T, F, Fut>(what: &'static str, metrics: &CoreMetrics, mut op: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, state_store_interface::StoreError>>,
{
    let mut backoff = Backoff::new(BackoffPolicy::errors());
    loop {
        match op().await {
            Ok(_) => return,
            Err(e) if e.is_transient() => {
                let delay = backoff.fail(Duration::ZERO);
                tracing::warn!(error = %e, ?delay, "store {what} failed; retrying");
                tokio::time::sleep(delay).await;
            }
            Err(e) => {
                metrics.add_persist_failure();
                tracing::error!(error = %e, "store {what} failed permanently; the next resync repairs it");
                return;
            }
        }
    }
}
