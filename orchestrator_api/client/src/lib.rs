//! An async client of the orchestrator's REST API (`docs/api.md`), shared by `orchestrator-cli`
//! and `orchestrator-mcp` so that both build URLs, read errors, page lists and split manifests
//! the same way.
//!
//! * Every endpoint either of them calls is a method of [`Client`] returning the DTOs of
//!   `orchestrator_shared_types` (`WorkloadView`, `WorkloadDetail`, `NodeView`, ...).
//! * Every failure is a [`ClientError`]: the server's error status with its `ErrorBody` (message
//!   and every field problem), an unreachable server (its address and the innermost cause), an
//!   answer that does not decode, a bad server URL, or a manifest that does not parse.
//! * Lists are paged as the API pages them: [`Client::list`] reads one page of a [`Listing`]
//!   ([`Workloads`], [`Nodes`], [`Instances`], [`Events`]) and [`Client::list_all`] follows the
//!   `continue` tokens to the end.
//! * An answer read from a daemon that may be out of date carries a reason, which
//!   [`Client::on_stale`] passes to a hook (the CLI warns on stderr).
//! * [`AgentClient`] is a daemon's client of another daemon's node agent: the output of the
//!   containers on that node, behind the cluster token.
//! * [`manifest::parse`] splits a manifest (multi-document YAML, or JSON) into workloads.
//!
//! ```no_run
//! # async fn demo() -> Result<(), orchestrator_client::ClientError> {
//! use orchestrator_client::{Client, PageRequest, Workloads};
//! let client = Client::new("http://127.0.0.1:8080", None)?;
//! let first = client.list(&Workloads, &PageRequest::first(50)).await?;
//! let everything = client.list_all(&Workloads, Some(100)).await?;
//! # let _ = (first, everything);
//! # Ok(()) }
//! ```
//!
//! # Layout
//! * [`client`] — [`Client`]: one method per endpoint; logs as a [`LogStream`].
//! * [`agent`] — [`AgentClient`]: container logs from another daemon's agent.
//! * [`paging`] — [`Listing`] (which list, which filters) and [`PageRequest`] (which page).
//! * [`manifest`] — splitting and parsing manifests into [`Manifest`]s.
//! * [`error`] — [`ClientError`].

pub mod agent;
pub mod client;
pub mod error;
pub mod manifest;
pub mod paging;

pub use agent::{AgentClient, LOG_NEXT_HEADER};
pub use client::{
    Client, ClientOptions, LogStream, LogsQuery, CONNECT_TIMEOUT, REQUEST_TIMEOUT, STALE_HEADER,
};
pub use error::ClientError;
pub use manifest::Manifest;
pub use paging::{Events, Instances, Listing, Nodes, PageRequest, Workloads};
