//! Errors of a [`crate::Scheduler`].
//!
//! Not fitting is not an error (it is a [`crate::PlacementOutcome`] with reasons); these are
//! requests the scheduler cannot evaluate at all.

/// A request the scheduler cannot evaluate.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SchedulerError {
    /// The request asks for nothing (zero resources) or is otherwise malformed.
    #[error("invalid placement request: {0}")]
    InvalidRequest(String),
}

impl SchedulerError {
    /// Whether retrying may help (never: the same request fails the same way).
    pub fn is_transient(&self) -> bool {
        false
    }
}
