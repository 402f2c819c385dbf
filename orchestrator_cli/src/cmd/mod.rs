//! The commands, one file per command group (in the manner of mini-redis' `cmd/`): each file holds
//! its clap arguments, a `run` function doing the requests, and the rendering of what came back.

pub mod cluster;
pub mod completion;
pub mod events;
pub mod instance;
pub mod node;
pub mod rollout;
pub mod token;
pub mod workload;

use crate::output::OutputFormat;
use orchestrator_client::{Client, Nodes, PageRequest, Workloads};
use orchestrator_shared_types::{NodeId, WorkloadId};
use serde::Serialize;
use std::collections::HashMap;

/// What every command needs: the server and the output format.
#[derive(Debug)]
pub struct Ctx {
    /// The server's client.
    pub client: Client,
    /// `-o`.
    pub format: OutputFormat,
}

/// Names of workloads and nodes by id, so tables show `web` rather than a UUID. Fetched on a
/// best-effort basis: a table with ids is better than no table, so failures are ignored.
#[derive(Debug, Default)]
pub struct Names {
    workloads: HashMap<String, String>,
    nodes: HashMap<String, String>,
}

impl Names {
    /// Fetches workload names if `workloads` and node names if `nodes`.
    pub async fn fetch(client: &Client, workloads: bool, nodes: bool) -> Self {
        let mut names = Names::default();
        if workloads {
            if let Ok(list) = client.list(&Workloads, &PageRequest::default()).await {
                names.workloads = list
                    .items
                    .into_iter()
                    .map(|v| (v.workload.id.0, v.workload.name))
                    .collect();
            }
        }
        if nodes {
            if let Ok(list) = client.list(&Nodes, &PageRequest::default()).await {
                names.nodes = list
                    .items
                    .into_iter()
                    .map(|v| (v.node.id.0, v.node.name))
                    .collect();
            }
        }
        names
    }

    /// The workload's name, or its id when unknown.
    pub fn workload(&self, id: &WorkloadId) -> String {
        self.workloads
            .get(id.as_str())
            .cloned()
            .unwrap_or_else(|| id.0.clone())
    }

    /// The node's name, its id when unknown, `-` when there is none (not placed).
    pub fn node(&self, id: Option<&NodeId>) -> String {
        match id {
            Some(id) => self
                .nodes
                .get(id.as_str())
                .cloned()
                .unwrap_or_else(|| id.0.clone()),
            None => "-".to_owned(),
        }
    }
}

/// An enum as the API spells it (`bin_pack`, `tcp`), for tables that show the same words users
/// write in manifests.
pub fn api_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "?".to_owned(),
    }
}

/// `k=v,k2=v2`, or `<none>`.
pub fn labels(labels: &orchestrator_shared_types::Labels) -> String {
    crate::output::or_none(
        labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    )
}
