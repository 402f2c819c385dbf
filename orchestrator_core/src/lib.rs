//! The control-plane core: one reconciliation loop that converges the cluster toward the desired
//! workloads, driving four pluggable components through their traits: a
//! [`StateStore`](state_store_interface::StateStore), a
//! [`ClusterManager`](cluster_manager_interface::ClusterManager), a
//! [`Scheduler`](scheduler_interface::Scheduler) and a
//! [`ContainerRuntime`](container_runtime_interface::ContainerRuntime).
//!
//! ```text
//!  handle (API/CLI) ──CAS──> store ──watch──┐           readers (API, CLI, MCP)
//!                                           ▼                     ▲ Arc<ClusterView>
//!  driver: ONE tokio::select! loop ── facts ──> model (pure) ── publish ──┘
//!   shutdown | membership | container events | op reports | listings | store watch | timers
//!      ▲                                          │ effects
//!      └──── reports ── executor (bounded, tracked tasks) <─┤ runtime operations
//!                       persister (batched writes) <────────┘ records, events
//! ```
//!
//! Rules it keeps (see `DESIGN.md`): reconciliation is level-triggered and idempotent; a workload
//! is never reconciled twice at once; desired state is learnt from the store's watch, so any
//! writer of the store gets its change reconciled; no lock is held across an `.await`; failures
//! back off with jitter and a cap; a restart from the same store adopts what exists and
//! converges without duplicates; every task the loop starts is tracked, and the first shutdown
//! request drains while the second forces.
//!
//! # Layout
//! * [`orchestrator`] — [`OrchestratorConfig`], [`OrchestratorBuilder`], [`Orchestrator`].
//! * `driver` — the `select!` loop: feeds facts to the model, runs its effects, follows the
//!   store's watch, publishes views, tracks tasks.
//! * `model` — the pure state machine: instances and allocations, the work queue, status
//!   folding, event wording. Its methods record effects instead of performing them.
//! * [`view`] — [`ClusterView`], the immutable snapshot every read is answered from.
//! * [`handle`] — [`OrchestratorHandle`]: create / apply / update / scale / delete (store
//!   writes), reads from the view, and an instance's logs from the runtime.
//! * [`cluster`] — a cluster of daemons on one store: node agents, the leader's election, the
//!   store-fed view of followers.
//! * [`plan`] — the pure planner.
//! * [`rollout`] — rolling updates: how many new replicas may start, which outdated ones go.
//! * `execute`: runtime operations with bounded concurrency.
//! * `persist`: the batching writer of instance records and events.
//! * [`backoff`] — [`Backoff`] and its policies.
//! * [`metrics`] — counters for `/metrics` and benchmarks.
//! * [`error`] — [`CoreError`].

pub mod backoff;
pub mod cluster;
mod driver;
pub mod error;
mod execute;
pub mod handle;
pub mod metrics;
mod model;
pub mod orchestrator;
mod persist;
pub mod plan;
pub mod rollout;
pub mod view;

pub use backoff::{Backoff, BackoffPolicy};
pub use error::CoreError;
pub use handle::{ApplyOutcome, LogSource, OrchestratorHandle};
pub use metrics::{CoreMetrics, MetricsSnapshot};
pub use orchestrator::{Orchestrator, OrchestratorBuilder, OrchestratorConfig, Summary};
pub use view::ClusterView;
