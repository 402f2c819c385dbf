//! The tools, one file per group; each file's `#[tool_router]` block is merged in
//! [`OrchestratorMcp::new`](crate::OrchestratorMcp::new).
//!
//! A tool method only unpacks its arguments and calls a plain async function of its file that
//! returns `Result<Output, ToolError>`; [`OrchestratorMcp::finish`] turns that into the MCP
//! result (structured content, or `isError` with the message) and enforces the byte cap.

pub(crate) mod nodes;
pub(crate) mod observe;
pub(crate) mod rollout;
pub(crate) mod scheduling;
pub(crate) mod workloads;

use crate::output::{how_many_fit, json_len, ToolError};
use crate::{ApiClient, ApiError, OrchestratorMcp};
use orchestrator_client::{Listing, PageRequest};
use rmcp::Json;
use serde::Serialize;

/// Bytes of a result kept for what surrounds a list (field names, `continue`, the note).
const ENVELOPE_BYTES: usize = 1024;

/// Default page size of the workload, node and instance lists.
pub(crate) const DEFAULT_LIST_LIMIT: u32 = 50;
/// Largest page size of those lists.
pub(crate) const MAX_LIST_LIMIT: u32 = 500;

impl OrchestratorMcp {
    /// The MCP result of a tool: its structured output if it fits the byte cap, else an
    /// `isError` result saying how to ask for less.
    pub(crate) fn finish<T: Serialize>(
        &self,
        tool: &str,
        result: Result<T, ToolError>,
    ) -> Result<Json<T>, String> {
        let cap = self.options.max_output_bytes;
        match result {
            Ok(out) => {
                let len = json_len(&out);
                if len > cap {
                    tracing::debug!(tool, len, cap, "result over the byte cap");
                    Err(format!(
                        "the result of {tool} would be {len} bytes, over this server's cap of {cap} bytes; \
                         ask for less: `detail: false`, a smaller `limit`, or a narrower filter"
                    ))
                } else {
                    Ok(Json(out))
                }
            }
            Err(e) => {
                tracing::debug!(tool, error = %e.message, "tool failed");
                Err(e.message)
            }
        }
    }

    /// Bytes a list inside a result may take.
    pub(crate) fn list_budget(&self) -> usize {
        self.options.max_output_bytes.saturating_sub(ENVELOPE_BYTES)
    }

    /// The API client.
    pub(crate) fn api(&self) -> &ApiClient {
        &self.api
    }
}

/// A page size from an optional argument: `default` when absent, at most `max`, never 0.
pub(crate) fn page_size(requested: Option<u32>, default: u32, max: u32) -> Result<u32, ToolError> {
    match requested {
        None => Ok(default),
        Some(0) => Err(ToolError::invalid("`limit` must be at least 1")),
        Some(n) => Ok(n.min(max)),
    }
}

/// Refuses a destructive call without `confirm: true`, saying what it would do.
pub(crate) fn require_confirm(confirm: bool, what: &str) -> Result<(), ToolError> {
    if confirm {
        Ok(())
    } else {
        Err(ToolError::new(format!(
            "not done: {what}. This is destructive, so it needs `confirm: true`. \
             Make sure the user wants it, then call again with confirm: true."
        )))
    }
}

/// One page of a list, shrunk to fit a byte budget.
pub(crate) struct Page<S> {
    /// The items, mapped.
    pub(crate) items: Vec<S>,
    /// The API's token for the next page.
    pub(crate) next: Option<String>,
    /// The page was made smaller than asked so that it fits the byte cap.
    pub(crate) shrunk: bool,
}

/// Reads one page of `listing` (at most `limit` items, after `cont`), mapping each item with
/// `map`. When the mapped items are over `budget` bytes, asks again for only as many as fit:
/// the API then hands back the `continue` token of that shorter page, so nothing is skipped
/// (tokens are opaque and cannot be made up here).
pub(crate) async fn bounded_page<L, S>(
    api: &ApiClient,
    listing: &L,
    limit: u32,
    cont: Option<&str>,
    budget: usize,
    map: impl Fn(&L::Item) -> S,
) -> Result<Page<S>, ApiError>
where
    L: Listing,
    S: Serialize,
{
    let mut limit = limit.max(1);
    let mut shrunk = false;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let request = PageRequest::after(Some(limit), cont.map(str::to_owned));
        let page = api.list(listing, &request).await?;
        let items: Vec<S> = page.items.iter().map(&map).collect();
        let fit = how_many_fit(items.iter().map(json_len), budget);
        // Done when it fits, when one item is all there is to give (the caller's cap check
        // says what to do), or after a few tries in a list that keeps changing.
        if fit >= items.len() || limit == 1 || attempts >= 4 {
            return Ok(Page {
                items,
                next: page.next,
                shrunk,
            });
        }
        limit = u32::try_from(fit.max(1)).unwrap_or(1);
        shrunk = true;
    }
}

/// The note of a paged list: how to get the next page, and why the page is short.
pub(crate) fn paging_note(tool: &str, next: Option<&str>, shrunk: bool) -> String {
    let mut note = String::new();
    if shrunk {
        note.push_str("This page was shortened to fit the size cap. ");
    }
    if let Some(token) = next {
        note.push_str(&format!(
            "More items follow: call {tool} again with the same arguments and continue: \"{token}\"."
        ));
    }
    note.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(None, 50, 500).unwrap(), 50);
        assert_eq!(page_size(Some(9999), 50, 500).unwrap(), 500);
        assert!(page_size(Some(0), 50, 500).is_err());
    }

    #[test]
    fn notes_say_how_to_continue() {
        assert_eq!(paging_note("list_nodes", None, false), "");
        let n = paging_note("list_nodes", Some("abc"), true);
        assert!(n.starts_with("This page was shortened"), "{n}");
        assert!(n.contains("continue: \"abc\""), "{n}");
    }

    #[test]
    fn confirm_is_required() {
        assert!(require_confirm(true, "x").is_ok());
        let e = require_confirm(false, "delete workload web").unwrap_err();
        assert!(e.message.contains("confirm: true"), "{}", e.message);
    }
}
