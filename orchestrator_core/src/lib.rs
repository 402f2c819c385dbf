//! The control-plane core: one reconciliation loop that converges the cluster toward the desired
//! workloads, driving four pluggable components through their traits: a
//! [`StateStore`](state_store_interface::StateStore), a
//! [`ClusterManager`](cluster_manager_interface::ClusterManager), a
//! [`Scheduler`](scheduler_interface::Scheduler) and a
//! [`ContainerRuntime`](container_runtime_interface::ContainerRuntime).
//!
//! ```text
//!  handle (API/CLI) ──CAS──> store        handle ──"workload changed"──┐
//!                                                                     ▼
//!  ONE tokio::select! loop: commands | membership | container events | timers + resync | shutdown
//!      └─ dirty workloads ─> plan(desired, observed, cluster) ─> execute (bounded tasks) ─┐
//!                               ▲                                     persist (batched)   │
//!                               └────────────────── reports ──────────────────────────────┘
//! ```
//!
//! Rules it keeps (see `DESIGN.md`): reconciliation is level-triggered and idempotent; a workload
//! is never reconciled twice at once; no lock is held across an `.await`; failures back off with
//! jitter and a cap; a restart from the same store adopts what exists and converges without
//! duplicates; the first shutdown request drains and the second forces.
//!
//! # Layout
//! * [`orchestrator`] — [`OrchestratorBuilder`], [`Orchestrator`], the loop and its state.
//! * [`handle`] — [`OrchestratorHandle`]: create / apply / update / scale / delete, and reading
//!   an instance's logs from the runtime.
//! * [`plan`] — the pure planner.
//! * `execute`: runtime operations with bounded concurrency.
//! * `persist`: the batching writer of instance records and events.
//! * [`backoff`] — [`Backoff`] and its policies.
//! * [`metrics`] — counters for `/metrics` and benchmarks.
//! * [`error`] — [`CoreError`].

pub mod backoff;
pub mod error;
mod execute;
pub mod handle;
pub mod metrics;
pub mod orchestrator;
mod persist;
pub mod plan;

pub use backoff::{Backoff, BackoffPolicy};
pub use error::CoreError;
pub use handle::{ApplyOutcome, LogSource, OrchestratorHandle};
pub use metrics::{CoreMetrics, MetricsSnapshot};
pub use orchestrator::{Orchestrator, OrchestratorBuilder, OrchestratorConfig, Summary};
