//! The shared data model of the orchestrator.
//!
//! Every other crate speaks in these types: the store persists them, the scheduler places them, the
//! runtime runs them, and the API, CLI and MCP server show them. They are plain data with serde
//! round-trips for JSON and YAML, plus the few rules that belong to the data itself: validation of
//! user input (every problem, each with its field path) and guarded status transitions.
//!
//! Features: `openapi` derives `utoipa::ToSchema` (the server's OpenAPI document); `schemars`
//! derives `schemars::JsonSchema` on the types the MCP tools take and return (workload
//! definitions, ports, policies, resources, nodes, replica counts), so the tools' JSON schemas
//! and descriptions come from these definitions.
//!
//! # Layout
//! * [`api`] — request and response shapes of the REST API.
//! * [`auth`] — API tokens: roles, the token file, hashing and making tokens.
//! * [`ids`] — typed identifiers (`NodeId`, `WorkloadId`, `InstanceId`, `ContainerId`).
//! * [`resources`] — CPU / memory / disk quantities and their arithmetic.
//! * [`node`] — a machine of the cluster and its readiness.
//! * [`workload`] — what the user asks for (`WorkloadDefinition`, `ContainerConfig`, ports, policies).
//! * [`instance`] — one replica of a workload and its lifecycle (`InstanceStatus`).
//! * [`event`] — what the orchestrator did and why, including typed scheduling rejections.
//! * [`health`] — health checks of containers (liveness, readiness and startup probes).
//! * [`rollout`] — update strategies (rolling, recreate) and template revisions.
//! * [`validation`] — checks that return every problem with its field path.

pub mod api;
pub mod auth;
pub mod event;
pub mod health;
pub mod ids;
pub mod instance;
pub mod node;
pub mod resources;
pub mod rollout;
pub mod validation;
pub mod workload;

pub use event::{Event, EventKind, RejectReason, Unschedulable};
pub use health::{ExecCheck, HttpCheck, Probe, ProbeKind, TcpCheck};
pub use ids::{ContainerId, InstanceId, NodeId, WorkloadId};
pub use instance::{AssignedPort, InstanceStatus, WorkloadInstance};
pub use node::{Node, NodeStatus, PortRange};
pub use resources::Resources;
pub use rollout::{
    Quantity, RollbackError, StrategyKind, TemplateRevision, UpdateStrategy, REVISION_HISTORY,
    ROLLBACK_RESTARTS,
};
pub use validation::{FieldError, ValidationErrors};
pub use workload::{
    ContainerConfig, PlacementStrategy, PortMapping, Protocol, PullPolicy, RestartPolicy,
    WorkloadDefinition, DYNAMIC_PORT_RANGE,
};

/// Labels and selectors: ordered so that serialized output is stable.
pub type Labels = std::collections::BTreeMap<String, String>;
