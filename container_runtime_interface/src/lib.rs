//! Running containers on nodes: the [`ContainerRuntime`] trait, its error, and the
//! [`SimulatedRuntime`] twin used by tests and benchmarks (never by the daemon by default).
//!
//! The trait is node-aware: every call names the node the container lives on, so one object can
//! drive containers on this machine (youki) and, in a cluster, on other machines (their agents).
//! Container ids are chosen by the caller ([`container_id_for`]) so that creating is idempotent:
//! after a crash between "create" and "persist", a retry finds the container instead of making
//! a second one.
//!
//! # Layout
//! * [`runtime`] — the trait and its types (`ContainerSpec`, `ContainerState`, `ContainerInfo`,
//!   `ContainerEvent`, `LogRequest`, `LogChunk`).
//! * [`error`] — [`RuntimeError`] with `is_transient()`.
//! * [`simulated`] — [`SimulatedRuntime`], in-process containers with programmable failures.
//! * `fuzzing` — entry points for the fuzz targets of `fuzz/` (feature `fuzzing`, hidden).
//! * [`conformance`] — the suite every implementation must pass (feature `conformance`).
//! * `oci` — `OciRuntime`, containers on this node through youki or runc (feature `oci`).
//! * `probe` — `ProbingRuntime`, which wraps a runtime and runs the liveness, readiness and
//!   startup probes of its containers on this node (feature `oci`).
//! * `image` — the image subsystem behind the `ImageSource` trait: `RegistryImages` (pulls from
//!   registries), `LocalImages`, and their typed `ImageError` (feature `oci`).

pub mod error;
pub mod runtime;
pub mod simulated;

#[cfg(feature = "oci")]
pub mod image;
#[cfg(feature = "oci")]
pub mod oci;
#[cfg(feature = "oci")]
pub mod probe;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

/// Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, which implies `oci`): the
/// layer unpacker, whose functions are otherwise private. Not an API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::image::fuzzing::{apply_layer, apply_layer_blob, MAX_HEADER_BYTES};
}

pub use error::RuntimeError;
pub use runtime::{
    container_id_for, last_lines_start, ContainerEvent, ContainerInfo, ContainerRuntime,
    ContainerSpec, ContainerState, ExecOutput, Health, LogChunk, LogRequest,
};
pub use simulated::{SimulatedRuntime, SimulatedRuntimeConfig};

#[cfg(feature = "oci")]
pub use image::{ImageError, RegistryConfig, RegistryImages};
#[cfg(feature = "oci")]
pub use oci::{OciConfig, OciRuntime};
#[cfg(feature = "oci")]
pub use probe::{ProbingConfig, ProbingRuntime};

#[cfg(any(test, feature = "mock"))]
pub use runtime::MockContainerRuntime;
