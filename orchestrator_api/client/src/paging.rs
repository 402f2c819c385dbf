//! The paged lists of the API (`docs/api.md`, "Paging"): which list, with which filters
//! ([`Listing`]), and which page of it ([`PageRequest`]).
//!
//! A response with more items after it carries a `continue` token; the next page is the same
//! request with that token added. [`Client::list`](crate::Client::list) reads one page,
//! [`Client::list_all`](crate::Client::list_all) follows the tokens to the end.

use orchestrator_shared_types::api::{NodeView, WorkloadView};
use orchestrator_shared_types::{Event, WorkloadInstance};
use serde::de::DeserializeOwned;

/// One of the API's lists: its path under `/api/v1`, its item type and its filters.
pub trait Listing {
    /// What the list holds.
    type Item: DeserializeOwned;
    /// The path under `/api/v1`, e.g. `workloads`.
    const PATH: &'static str;
    /// The filters as query parameters, in a fixed order.
    fn filters(&self) -> Vec<(&'static str, String)>;
}

/// `GET /api/v1/workloads`: sorted by name.
#[derive(Clone, Copy, Debug, Default)]
pub struct Workloads;

impl Listing for Workloads {
    type Item = WorkloadView;
    const PATH: &'static str = "workloads";
    fn filters(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}

/// `GET /api/v1/nodes`: sorted by id.
#[derive(Clone, Copy, Debug, Default)]
pub struct Nodes;

impl Listing for Nodes {
    type Item = NodeView;
    const PATH: &'static str = "nodes";
    fn filters(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}

/// `GET /api/v1/instances`: sorted by workload id, then instance id.
#[derive(Clone, Debug, Default)]
pub struct Instances {
    /// Only this workload's (name or id).
    pub workload: Option<String>,
    /// Only those on this node (id or name). Pages may then be short, even empty, and still
    /// have a `continue`.
    pub node: Option<String>,
}

impl Listing for Instances {
    type Item = WorkloadInstance;
    const PATH: &'static str = "instances";
    fn filters(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(w) = &self.workload {
            q.push(("workload", w.clone()));
        }
        if let Some(n) = &self.node {
            q.push(("node", n.clone()));
        }
        q
    }
}

/// `GET /api/v1/events`: oldest first. Without `after` a page is the most recent events (and has
/// no `continue`); with `after` it starts after that `seq` and pages forward.
#[derive(Clone, Debug, Default)]
pub struct Events {
    /// Only this workload's (name or id; names of deleted workloads still find their events).
    pub workload: Option<String>,
    /// Only events with a greater `seq`.
    pub after: Option<u64>,
}

impl Listing for Events {
    type Item = Event;
    const PATH: &'static str = "events";
    fn filters(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(w) = &self.workload {
            q.push(("workload", w.clone()));
        }
        if let Some(a) = self.after {
            q.push(("after", a.to_string()));
        }
        q
    }
}

/// Which page of a list to read. The default asks for no `limit`: every workload, node or
/// instance in one response (events: the most recent 100).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// At most this many items (the server caps it at 1000).
    pub limit: Option<u32>,
    /// The `continue` token of the previous page, passed back unchanged.
    pub cont: Option<String>,
}

impl PageRequest {
    /// The first page of at most `limit` items.
    pub fn first(limit: u32) -> Self {
        PageRequest {
            limit: Some(limit),
            cont: None,
        }
    }

    /// The page of at most `limit` items after the one that returned `cont` (none: the first).
    pub fn after(limit: Option<u32>, cont: Option<String>) -> Self {
        PageRequest { limit, cont }
    }

    /// The query parameters of `listing` for this page: filters, then `limit`, then `continue`.
    pub fn query<L: Listing>(&self, listing: &L) -> Vec<(&'static str, String)> {
        let mut q = listing.filters();
        if let Some(l) = self.limit {
            q.push(("limit", l.to_string()));
        }
        if let Some(c) = &self.cont {
            q.push(("continue", c.clone()));
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_put_filters_then_limit_then_continue() {
        let i = Instances {
            workload: Some("web".into()),
            node: Some("n1".into()),
        };
        let p = PageRequest::after(Some(5), Some("tok".into()));
        assert_eq!(
            p.query(&i),
            [
                ("workload", "web".to_owned()),
                ("node", "n1".to_owned()),
                ("limit", "5".to_owned()),
                ("continue", "tok".to_owned())
            ]
        );
        assert!(PageRequest::default().query(&Workloads).is_empty());
        let e = Events {
            workload: None,
            after: Some(7),
        };
        assert_eq!(
            PageRequest::first(20).query(&e),
            [("after", "7".to_owned()), ("limit", "20".to_owned())]
        );
    }
}
