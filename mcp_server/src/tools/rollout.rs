//! Rollout tools: rollout_status, rollback_workload.

use super::workloads::UNKNOWN_WORKLOAD;
use crate::output::{Hint, ToolError};
use crate::OrchestratorMcp;
use orchestrator_shared_types::api::RolloutStatus;
use orchestrator_shared_types::TemplateRevision;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::schemars::{self, JsonSchema};
use rmcp::{tool, tool_router, Json};
use serde::{Deserialize, Serialize};

/// Arguments of rollout_status.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutArgs {
    /// The workload's name or id.
    pub name: String,
}

/// Arguments of rollback_workload.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackArgs {
    /// The workload's name.
    pub name: String,
    /// The template revision to return to (see rollout_status's `revisions`); the previous
    /// one when absent.
    #[serde(default)]
    pub to_revision: Option<u64>,
    /// Must be true: a rollback replaces the running replicas.
    #[serde(default)]
    pub confirm: bool,
}

/// Where a rollout stands, with the revisions it can return to.
#[derive(Debug, Serialize, JsonSchema)]
pub struct RolloutReport {
    /// Counts, completion, and why it waits (which replica, which probe, its output).
    pub status: RolloutStatus,
    /// The earlier template revisions, oldest first (their images; a failed one says why).
    pub revisions: Vec<RevisionSummary>,
    /// What to do next.
    pub note: String,
}

/// One earlier template revision, in short.
#[derive(Debug, Serialize, JsonSchema)]
pub struct RevisionSummary {
    /// Its number.
    pub revision: u64,
    /// `container=image` of each container.
    pub images: Vec<String>,
    /// Who made it current.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<String>,
    /// Why a rollout to it failed, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

impl From<&TemplateRevision> for RevisionSummary {
    fn from(r: &TemplateRevision) -> Self {
        Self {
            revision: r.revision,
            images: r
                .containers
                .iter()
                .map(|c| format!("{}={}", c.name, c.image))
                .collect(),
            changed_by: r.changed_by.clone(),
            failed: r.failed.clone(),
        }
    }
}

/// What a rollback did.
#[derive(Debug, Serialize, JsonSchema)]
pub struct RolledBack {
    /// The workload.
    pub name: String,
    /// The revision it was at.
    pub from_revision: u64,
    /// Its new revision (the old template under a new number).
    pub revision: u64,
    /// What happens next.
    pub note: String,
}

#[tool_router(router = rollout_tools, vis = "pub(crate)")]
impl OrchestratorMcp {
    /// Where a workload's rollout (rolling update after a template change) stands: replicas
    /// updated, ready, available and still outdated, whether it is complete, and when it waits,
    /// why (which replica, which probe failing and its output, or the last error). Also lists
    /// the earlier revisions it can be rolled back to and the last failed one. A rollout that
    /// misses its progress deadline, or whose new replicas keep failing, is rolled back by
    /// itself unless the workload's strategy has auto_rollback: false.
    #[tool(annotations(
        title = "Rollout status",
        read_only_hint = true,
        open_world_hint = false
    ))]
    async fn rollout_status(
        &self,
        Parameters(args): Parameters<RolloutArgs>,
    ) -> Result<Json<RolloutReport>, String> {
        self.finish("rollout_status", rollout_status(self, &args.name).await)
    }

    /// Return a workload to an earlier template revision (the previous one by default, or
    /// `to_revision`): the old template becomes current under a new revision number and is
    /// rolled out like any change, replacing the running replicas. Needs `confirm: true`.
    #[tool(annotations(
        title = "Roll back a workload",
        read_only_hint = false,
        destructive_hint = true,
        idempotent_hint = false,
        open_world_hint = false
    ))]
    async fn rollback_workload(
        &self,
        Parameters(args): Parameters<RollbackArgs>,
    ) -> Result<Json<RolledBack>, String> {
        self.finish(
            "rollback_workload",
            rollback_workload(self, &args.name, args.to_revision, args.confirm).await,
        )
    }
}

async fn rollout_status(mcp: &OrchestratorMcp, name: &str) -> Result<RolloutReport, ToolError> {
    let status = mcp
        .api()
        .rollout_status(name)
        .await
        .hint(404, UNKNOWN_WORKLOAD)?;
    let history = mcp
        .api()
        .rollout_history(name)
        .await
        .hint(404, UNKNOWN_WORKLOAD)?;
    let revisions = history
        .revisions
        .iter()
        .filter(|r| r.revision != history.current)
        .map(RevisionSummary::from)
        .collect();
    let note = if status.complete {
        "Complete: every replica runs the current template and is available.".to_owned()
    } else if status.waiting_for.is_empty() {
        "In progress: call again to follow it.".to_owned()
    } else {
        "In progress; `waiting_for` says what holds it. get_logs on that instance shows its \
         output; rollback_workload returns to an earlier revision."
            .to_owned()
    };
    Ok(RolloutReport {
        status,
        revisions,
        note,
    })
}

async fn rollback_workload(
    mcp: &OrchestratorMcp,
    name: &str,
    to_revision: Option<u64>,
    confirm: bool,
) -> Result<RolledBack, ToolError> {
    let before = mcp
        .api()
        .rollout_history(name)
        .await
        .hint(404, UNKNOWN_WORKLOAD)?;
    if !confirm {
        let target = to_revision.map_or_else(
            || "the previous revision".to_owned(),
            |r| format!("revision {r}"),
        );
        crate::tools::require_confirm(
            false,
            &format!(
                "rolling {name} back from revision {} to {target} replaces its running replicas",
                before.current
            ),
        )?;
    }
    let view = mcp
        .api()
        .rollout_undo(name, to_revision)
        .await
        // Its existence was checked above.
        .hint(
            400,
            "rollout_status lists the revisions that can be returned to.",
        )?;
    Ok(RolledBack {
        name: view.workload.name.clone(),
        from_revision: before.current,
        revision: view.workload.revision,
        note: "Rolling out the earlier template in the background: call rollout_status to \
               follow it."
            .to_owned(),
    })
}
