//! The CLI's error type and how errors are shown.
//!
//! Every error prints as one `error: ...` line (the error and its causes joined with `: `), then
//! indented detail lines: the server's per-field problems (`  containers[0].image: must not be
//! empty`) or, after `--wait` timed out, what each workload is still waiting for.

use crate::duration::format_duration;
use orchestrator_client::ClientError;
use std::error::Error;
use std::time::Duration;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A request failed (its message is the server's, or names the unreachable URL), or a
    /// manifest did not parse.
    #[error(transparent)]
    Request(#[from] ClientError),
    /// A manifest file (or stdin) could not be read.
    #[error("cannot read {file}")]
    ReadManifest {
        /// The path, or `<stdin>`.
        file: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A request about one workload of a manifest failed: says which one.
    #[error("{action} {target}")]
    Workload {
        /// What was being done, e.g. `creating`.
        action: &'static str,
        /// Which workload, e.g. `workload web` or `document 2 of app.yaml`.
        target: String,
        /// The failed request.
        #[source]
        source: ClientError,
    },
    /// `--wait` ran out of time.
    #[error("timed out after {} waiting for {}", format_duration(*.after), names(.pending))]
    WaitTimeout {
        /// The `--timeout` that elapsed.
        after: Duration,
        /// Each workload that is not ready, with what it waits for.
        pending: Vec<(String, String)>,
    },
    /// The CLI's config file is unreadable or does not say what was asked.
    #[error("config file {}: {message}", .path.display())]
    Config {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Options that do not go together, or a local file a command needs is unusable.
    #[error("{0}")]
    Usage(String),
    /// Writing to stdout failed (e.g. a closed pipe).
    #[error("cannot write the output")]
    WriteOutput(#[source] std::io::Error),
    /// A rollout being watched failed (and was rolled back, when the workload asks for it).
    #[error("rollout of workload {name} failed: {reason}")]
    RolloutFailed {
        /// The workload.
        name: String,
        /// What the server said.
        reason: String,
    },
    /// Rendering the server's object as JSON or YAML failed.
    #[error("cannot render the output as {format}")]
    Render {
        /// `json` or `yaml`.
        format: &'static str,
        /// What serde said.
        #[source]
        source: Box<dyn Error + Send + Sync>,
    },
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        // The only I/O of a command outside manifests (which have their own error) is its output.
        CliError::WriteOutput(e)
    }
}

fn names(pending: &[(String, String)]) -> String {
    pending
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl CliError {
    /// The detail lines shown under the `error:` line, as `(label, message)`.
    pub fn details(&self) -> Vec<(String, String)> {
        match self {
            CliError::Request(e) | CliError::Workload { source: e, .. } => client_details(e),
            CliError::WaitTimeout { pending, .. } => pending.clone(),
            _ => Vec::new(),
        }
    }
}

/// The server's per-field problems carried by a client error.
pub fn client_details(e: &ClientError) -> Vec<(String, String)> {
    match e {
        ClientError::Http { body, .. } => body
            .error
            .details
            .iter()
            .map(|d| (d.field.clone(), d.message.clone()))
            .collect(),
        _ => Vec::new(),
    }
}

/// Renders an error chain (outermost first, as `anyhow::Error::chain` yields it): `error: a: b: c`
/// then the details of the first link that has any, one per line.
pub fn render_chain<'a>(chain: impl IntoIterator<Item = &'a (dyn Error + 'static)>) -> String {
    let mut messages = Vec::new();
    let mut details = Vec::new();
    for link in chain {
        messages.push(link.to_string());
        if details.is_empty() {
            if let Some(e) = link.downcast_ref::<CliError>() {
                details = e.details();
            } else if let Some(e) = link.downcast_ref::<ClientError>() {
                details = client_details(e);
            }
        }
    }
    let mut out = format!("error: {}\n", messages.join(": "));
    for (label, message) in details {
        out.push_str(&format!("  {label}: {message}\n"));
    }
    out
}

/// Renders one error and its sources.
pub fn render_error(err: &(dyn Error + 'static)) -> String {
    render_chain(chain(err))
}

/// `err` and its sources, outermost first.
pub fn chain<'a>(
    err: &'a (dyn Error + 'static),
) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(err), |e: &&'a (dyn Error + 'static)| (*e).source())
}

/// Whether the error is only that stdout was closed (`orchestrator-cli ... | head`), which is not
/// worth a message.
pub fn is_broken_pipe<'a>(chain: impl IntoIterator<Item = &'a (dyn Error + 'static)>) -> bool {
    chain.into_iter().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_shared_types::api::{ErrorBody, ErrorInfo};
    use orchestrator_shared_types::FieldError;

    fn validation_error() -> ClientError {
        ClientError::Http {
            status: 400,
            body: ErrorBody {
                error: ErrorInfo {
                    code: "validation_failed".into(),
                    message: "invalid workload: 2 problems".into(),
                    details: vec![
                        FieldError {
                            field: "name".into(),
                            message: "must not be empty".into(),
                        },
                        FieldError {
                            field: "containers[0].resources.memory_mb".into(),
                            message: "must be greater than 0".into(),
                        },
                    ],
                },
            },
        }
    }

    #[test]
    fn server_message_and_every_detail_are_printed() {
        let err = CliError::from(validation_error());
        assert_eq!(
            render_error(&err),
            "error: invalid workload: 2 problems\n  name: must not be empty\n  \
             containers[0].resources.memory_mb: must be greater than 0\n"
        );
    }

    #[test]
    fn the_workload_concerned_prefixes_the_message() {
        let err = CliError::Workload {
            action: "creating",
            target: "document 2 of app.yaml".into(),
            source: validation_error(),
        };
        let text = render_error(&err);
        assert!(
            text.starts_with(
                "error: creating document 2 of app.yaml: invalid workload: 2 problems\n"
            ),
            "{text}"
        );
        assert!(text.contains("\n  name: must not be empty\n"));
    }

    #[test]
    fn unreachable_names_the_url() {
        let err = CliError::from(ClientError::Unreachable {
            url: "http://127.0.0.1:9".into(),
            reason: "Connection refused (os error 111)".into(),
        });
        let text = render_error(&err);
        assert!(text.contains("cannot reach the orchestrator server at http://127.0.0.1:9"));
        assert!(text.contains("Connection refused"));
        assert_eq!(text.lines().count(), 1);
    }

    #[test]
    fn wait_timeout_lists_what_is_pending() {
        let err = CliError::WaitTimeout {
            after: Duration::from_secs(60),
            pending: vec![(
                "web".into(),
                "1/3 running, 2 pending (0/1 nodes fit: 1 insufficient memory)".into(),
            )],
        };
        assert_eq!(
            render_error(&err),
            "error: timed out after 1m waiting for web\n  \
             web: 1/3 running, 2 pending (0/1 nodes fit: 1 insufficient memory)\n"
        );
    }

    #[test]
    fn broken_pipe_is_recognised() {
        let err = CliError::WriteOutput(std::io::ErrorKind::BrokenPipe.into());
        assert!(is_broken_pipe(chain(&err)));
    }
}
