//! Prompts: ready-made starts of a conversation, filled with the cluster's current state.
//!
//! * `diagnose_workload` — why a workload is not healthy, and what to do about it.
//! * `plan_capacity` — whether the cluster can take a new workload of a given size.

use crate::tools::{observe, scheduling, workloads};
use crate::OrchestratorMcp;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{GetPromptResult, PromptMessage, Role};
use rmcp::schemars::{self, JsonSchema};
use rmcp::{prompt, prompt_router};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Arguments of diagnose_workload.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct DiagnoseArgs {
    /// The name of the workload to diagnose.
    pub name: String,
}

/// Arguments of plan_capacity (prompt arguments are text).
#[derive(Debug, Deserialize, JsonSchema)]
pub struct CapacityArgs {
    /// Replicas the new workload needs, e.g. "3".
    pub replicas: String,
    /// CPU per replica in millicores (1000 = one core), e.g. "500".
    pub cpu_millicores: String,
    /// Memory per replica in MB, e.g. "1024".
    pub memory_mb: String,
    /// Name of the new workload (optional).
    #[serde(default)]
    pub name: Option<String>,
    /// Labels nodes must carry, as key=value pairs separated by commas, e.g. "disk=ssd"
    /// (optional).
    #[serde(default)]
    pub node_selector: Option<String>,
}

/// `value` as pretty JSON, or the error.
fn snapshot<T: Serialize>(result: Result<T, crate::output::ToolError>) -> String {
    match result {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
        Err(e) => format!("(could not be read: {})", e.message),
    }
}

// `#[prompt]` generates public `*_prompt_attr` functions without docs.
#[allow(missing_docs)]
#[prompt_router(vis = "pub(crate)")]
impl OrchestratorMcp {
    /// Diagnose a workload that is not healthy (replicas pending, failing or restarting):
    /// starts from its current state and walks through the tools to a root cause and a fix.
    #[prompt(name = "diagnose_workload")]
    async fn diagnose_workload(
        &self,
        Parameters(args): Parameters<DiagnoseArgs>,
    ) -> GetPromptResult {
        let name = args.name;
        let state = workloads::get_workload(self, &name, false).await;
        let pending = state.as_ref().is_ok_and(|w| w.replicas.pending > 0);
        let mut facts = format!(
            "Current state of workload `{name}` (get_workload):\n```json\n{}\n```\n",
            snapshot(state)
        );
        if pending {
            facts.push_str(&format!(
                "\nWhy replicas are pending (explain_pending):\n```json\n{}\n```\n",
                snapshot(scheduling::explain_pending(self, &name).await)
            ));
        }
        let text = format!(
            "Diagnose why the workload `{name}` is not healthy on our container orchestrator, and \
             propose a fix.\n\n{facts}\n\
             Work through it with the tools:\n\
             1. Compare desired and running replicas. For pending replicas, use explain_pending: \
             it gives the scheduler's reasons per node (insufficient cpu/memory, selector \
             mismatch, cordoned nodes, host port conflicts).\n\
             2. For failed or restarting instances, look at exit codes and last errors in \
             get_workload, then list_events with workload: \"{name}\" for the sequence of events, \
             and get_logs for a failing instance (what its container wrote before it exited).\n\
             3. Check the nodes involved with describe_node or list_nodes (Ready? cordoned? free \
             memory?).\n\
             4. Before proposing a new size or placement, check it with plan_deployment (a dry \
             run).\n\n\
             Answer with: the root cause in one sentence, the evidence, and the fix as exact tool \
             calls. Do not change anything without my go-ahead; delete, drain and scaling to 0 \
             need confirm: true."
        );
        GetPromptResult::new(vec![PromptMessage::new_text(Role::User, text)])
            .with_description(format!("Diagnose workload {name}"))
    }

    /// Plan capacity for a new workload: whether the cluster can run the given replicas of the
    /// given size, where they would go, and what to change if they do not fit.
    #[prompt(name = "plan_capacity")]
    async fn plan_capacity(&self, Parameters(args): Parameters<CapacityArgs>) -> GetPromptResult {
        let name = args.name.unwrap_or_else(|| "new-workload".to_owned());
        let selector: BTreeMap<String, String> = args
            .node_selector
            .as_deref()
            .unwrap_or("")
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let status = snapshot(observe::cluster_status(self).await);
        let text = format!(
            "I want to run a new workload `{name}`: {} replicas of {} millicores of CPU and {} MB \
             of memory each{}. Can the cluster take it?\n\n\
             Current cluster status (cluster_status):\n```json\n{status}\n```\n\n\
             Steps:\n\
             1. Call plan_deployment with workload: {{\"name\": \"{name}\", \"image\": \
             \"placeholder:1\", \"replicas\": {}, \"cpu_millicores\": {}, \"memory_mb\": {}{}}} \
             to see where each replica would go and what would not fit (it changes nothing).\n\
             2. If some replicas do not fit, use list_nodes to see free CPU and memory per node \
             and the hints of plan_deployment; work out the largest replica count or size that \
             fits, and what would have to change (smaller replicas, scaling other workloads \
             down, more nodes).\n\
             3. Report: fits or not, replicas per node, the headroom left on the cluster \
             afterwards, and your recommendation. Do not deploy anything without my go-ahead.",
            args.replicas,
            args.cpu_millicores,
            args.memory_mb,
            if selector.is_empty() {
                String::new()
            } else {
                format!(" on nodes labelled {selector:?}")
            },
            args.replicas.trim(),
            args.cpu_millicores.trim(),
            args.memory_mb.trim(),
            if selector.is_empty() {
                String::new()
            } else {
                format!(
                    ", \"node_selector\": {}",
                    serde_json::to_string(&selector).unwrap_or_default()
                )
            },
        );
        GetPromptResult::new(vec![PromptMessage::new_text(Role::User, text)])
            .with_description(format!("Plan capacity for {name}"))
    }
}
