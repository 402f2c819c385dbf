//! Errors of a [`crate::ContainerRuntime`].
//!
//! Every variant that wraps a lower-level failure keeps it as its `#[source]` (an io error, the
//! image subsystem's [`ImageError`](crate::image::ImageError), ...), so callers can walk
//! [`std::error::Error::source`] for the typed cause. Display messages also include the
//! cause's message, in the style of kube-runtime's watcher errors: the core and the API show
//! only `to_string()` of the top-level error (an instance's last error, an event), and that
//! text must say what went wrong without a chain walk.

use orchestrator_shared_types::{ContainerId, NodeId};
use std::path::PathBuf;

/// A boxed cause of a [`RuntimeError::StartFailed`].
pub type BoxedCause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong with a runtime operation.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No container with this id on this node.
    #[error("container {id} not found on node {node}")]
    NotFound {
        /// Node.
        node: NodeId,
        /// Container.
        id: ContainerId,
    },
    /// A container with this id already exists on this node.
    #[error("container {id} already exists on node {node}")]
    AlreadyExists {
        /// Node.
        node: NodeId,
        /// Container.
        id: ContainerId,
    },
    /// The container could not be created or started (bad image, bad command, limits, ...).
    /// Retrying the same spec is expected to fail the same way, so the instance fails and the
    /// restart policy decides.
    #[error("starting container {id} on node {node} failed: {message}")]
    StartFailed {
        /// Node.
        node: NodeId,
        /// Container.
        id: ContainerId,
        /// The runtime's own message, shown to users.
        message: String,
        /// The typed cause, when there is one (e.g. a [`RuntimeError::Image`] for an image
        /// that cannot be pulled); `None` when the runtime only gave text (youki's log).
        #[source]
        source: Option<BoxedCause>,
    },
    /// The node or its runtime cannot be reached right now.
    #[error("node {node} unreachable during {operation}")]
    NodeUnreachable {
        /// Node.
        node: NodeId,
        /// What was being done.
        operation: &'static str,
    },
    /// Preparing the image of a container failed (parsing its reference, pulling, verifying or
    /// unpacking it). Transient exactly when the [`ImageError`](crate::image::ImageError) is.
    #[cfg(feature = "oci")]
    #[error("{}", source.describe(reference))]
    Image {
        /// The image reference, as the container spec wrote it.
        reference: String,
        /// What failed.
        #[source]
        source: crate::image::ImageError,
    },
    /// A file or process operation of the runtime on this machine failed (creating a bundle,
    /// reading a log, spawning a thread, ...): usually transient (a full disk, a busy system).
    #[error("runtime failed during {operation}: {context}: {source}")]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The step that failed, with the path it concerned.
        context: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// The OCI runtime binary could not be run at all (missing, not executable).
    #[error(
        "runtime failed during {operation}: {}",
        spawn_message(binary, source, install_hint)
    )]
    Spawn {
        /// What was being done.
        operation: &'static str,
        /// The binary.
        binary: PathBuf,
        /// How to install it (shown when it is missing).
        install_hint: &'static str,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// Any other failure of the runtime while doing `operation`, known only by its message
    /// (the runtime CLI's own output, a state it cannot be in, ...).
    #[error("runtime failed during {operation}: {message}")]
    Failed {
        /// What was being done.
        operation: &'static str,
        /// The runtime's message.
        message: String,
        /// Whether retrying may help.
        transient: bool,
    },
}

impl RuntimeError {
    /// Whether retrying the same operation later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            RuntimeError::NodeUnreachable { .. } => true,
            RuntimeError::Failed { transient, .. } => *transient,
            #[cfg(feature = "oci")]
            RuntimeError::Image { source, .. } => source.is_transient(),
            RuntimeError::Io { source, .. } => io_is_transient(source),
            RuntimeError::NotFound { .. }
            | RuntimeError::AlreadyExists { .. }
            | RuntimeError::StartFailed { .. }
            | RuntimeError::Spawn { .. } => false,
        }
    }

    /// A [`RuntimeError::Io`] for `operation`, failing at `context`.
    pub fn io(operation: &'static str, context: impl Into<String>, source: std::io::Error) -> Self {
        RuntimeError::Io {
            operation,
            context: context.into(),
            source,
        }
    }
}

/// Whether an io error may go away by itself: a malformed input or a missing permission does
/// not; a full disk, an interrupted call or a busy resource may.
pub(crate) fn io_is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    !matches!(
        e.kind(),
        ErrorKind::InvalidData
            | ErrorKind::InvalidInput
            | ErrorKind::UnexpectedEof
            | ErrorKind::NotADirectory
            | ErrorKind::IsADirectory
            | ErrorKind::AlreadyExists
            | ErrorKind::PermissionDenied
            | ErrorKind::Unsupported
    )
}

fn spawn_message(binary: &std::path::Path, e: &std::io::Error, install_hint: &str) -> String {
    if e.kind() == std::io::ErrorKind::NotFound {
        format!(
            "OCI runtime binary {} not found; install youki with `{install_hint}`",
            binary.display()
        )
    } else {
        format!("cannot run {}: {e}", binary.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn io_errors_keep_their_source_and_say_what_failed() {
        let e = RuntimeError::io(
            "create_and_start",
            "create bundle /x",
            std::io::Error::from_raw_os_error(28),
        );
        assert!(e.is_transient());
        assert!(e
            .to_string()
            .starts_with("runtime failed during create_and_start: create bundle /x: "));
        let source = e
            .source()
            .unwrap()
            .downcast_ref::<std::io::Error>()
            .unwrap();
        assert_eq!(source.raw_os_error(), Some(28));
        let denied = RuntimeError::io(
            "list",
            "read bundles",
            std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        );
        assert!(!denied.is_transient());
    }

    #[cfg(feature = "oci")]
    #[test]
    fn image_errors_are_wrapped_with_their_reference_and_transience() {
        use crate::image::{ImageError, RegistryError};
        let never = RuntimeError::Image {
            reference: "r.io/a:1".into(),
            source: ImageError::NotPresent,
        };
        assert_eq!(
            never.to_string(),
            "image r.io/a:1 is not present on this node and its pull policy is Never"
        );
        assert!(!never.is_transient());
        let stalled = RuntimeError::Image {
            reference: "r.io/a:1".into(),
            source: ImageError::FetchBlob {
                source: RegistryError::Stalled {
                    registry: "r.io".into(),
                    digest: "sha256:x".into(),
                    after: std::time::Duration::from_secs(30),
                },
            },
        };
        assert!(stalled.is_transient());
        assert_eq!(
            stalled.to_string(),
            "image r.io/a:1: registry r.io stopped sending blob sha256:x (nothing for 30s)"
        );
        // The typed cause is reachable through the chain.
        let image = stalled
            .source()
            .unwrap()
            .downcast_ref::<ImageError>()
            .unwrap();
        assert!(matches!(image, ImageError::FetchBlob { .. }));
        assert!(image
            .source()
            .unwrap()
            .downcast_ref::<RegistryError>()
            .is_some());
    }

    #[test]
    fn errors_stay_small_and_cross_threads() {
        // Every runtime call returns one: unboxed causes must not make it large (clippy's
        // result_large_err limit is 128 bytes), and the core sends it between tasks.
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<RuntimeError>();
        assert!(std::mem::size_of::<RuntimeError>() < 128);
    }

    #[test]
    fn a_missing_binary_names_the_install_command() {
        let e = RuntimeError::Spawn {
            operation: "state",
            binary: "/no/youki".into(),
            install_hint: "cargo install youki",
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert!(!e.is_transient());
        assert_eq!(
            e.to_string(),
            "runtime failed during state: OCI runtime binary /no/youki not found; install youki with `cargo install youki`"
        );
        assert!(e.source().is_some());
    }
}
