//! Workload tools: list_workloads, get_workload, deploy_workload, apply_manifest,
//! scale_workload, delete_workload.

use super::{
    bounded_page, page_size, paging_note, require_confirm, DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT,
};
use crate::output::{
    describe, join_notes, json_len, EventSummary, Hint, InstanceSummary, SchedulingProblem,
    ToolError, WorkloadSummary,
};
use crate::{ApiError, OrchestratorMcp};
use orchestrator_client::Workloads;
use orchestrator_shared_types::api::{ReplicaCounts, RolloutStatus, WorkloadView};
use orchestrator_shared_types::{
    InstanceStatus, PlacementStrategy, PortMapping, RestartPolicy, WorkloadDefinition,
};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::schemars::{self, JsonSchema};
use rmcp::{tool, tool_router, Json};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Hint added to a 404 on a workload.
pub(crate) const UNKNOWN_WORKLOAD: &str =
    "Call list_workloads to see the names of existing workloads.";
/// Most documents one apply_manifest call takes.
const MAX_DOCUMENTS: usize = 50;

// ---------------------------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------------------------

/// Arguments of a paged list.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PageArgs {
    /// Items per page (default 50, at most 500).
    #[serde(default)]
    pub limit: Option<u32>,
    /// The `continue` token returned with the previous page, to get the next one. Pass it back
    /// unchanged, with the same other arguments.
    #[serde(default, rename = "continue")]
    pub cont: Option<String>,
    /// Include each item's full record (default false: a compact summary).
    #[serde(default)]
    pub detail: bool,
}

/// Arguments naming one workload.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetWorkloadArgs {
    /// The workload's name (or id).
    pub name: String,
    /// Include the full definition (env, commands, every field) and more instances and events
    /// (default false).
    #[serde(default)]
    pub detail: bool,
}

/// A workload with one container, described field by field.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkloadFields {
    /// Unique name: lowercase letters, digits and '-', starting with a letter, at most 63
    /// characters (a DNS-1123 label). Also the name of its one container.
    pub name: String,
    /// Container image, e.g. "nginx:1.27" or "127.0.0.1:5000/demo/app:1".
    pub image: String,
    /// Replicas to run (default 1).
    #[serde(default)]
    pub replicas: Option<u32>,
    /// Command replacing the image's entrypoint, e.g. ["sleep", "3600"].
    #[serde(default)]
    pub command: Vec<String>,
    /// Arguments replacing the image's.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Ports the container listens on: `container_port`, optional `host_port` (0 picks a free
    /// one per replica, passed as $PORT), `protocol` tcp (default) or udp.
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    /// CPU each replica reserves, in millicores: 1000 is one core (default 100).
    #[serde(default)]
    pub cpu_millicores: Option<u64>,
    /// Memory each replica reserves, in MB (default 64).
    #[serde(default)]
    pub memory_mb: Option<u64>,
    /// Disk each replica reserves, in MB (default 0).
    #[serde(default)]
    pub disk_mb: Option<u64>,
    /// Free-form labels of the workload.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Only nodes carrying all these labels may run it (see list_nodes for node labels).
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    /// bin_pack (default), spread or one_per_node.
    #[serde(default)]
    pub placement: Option<PlacementStrategy>,
    /// Always (default), OnFailure or Never.
    #[serde(default)]
    pub restart_policy: Option<RestartPolicy>,
}

impl WorkloadFields {
    /// The workload definition as the API's JSON (the server validates it and reports every
    /// problem with its field path; the container is `containers[0]`).
    pub(crate) fn to_definition(&self) -> serde_json::Value {
        let mut def = serde_json::json!({
            "name": self.name,
            "replicas": self.replicas.unwrap_or(1),
            "labels": self.labels,
            "node_selector": self.node_selector,
            "containers": [{
                "name": self.name,
                "image": self.image,
                "command": self.command,
                "args": self.args,
                "env": self.env,
                "ports": self.ports,
                "resources": {
                    "cpu_millicores": self.cpu_millicores.unwrap_or(100),
                    "memory_mb": self.memory_mb.unwrap_or(64),
                    "disk_mb": self.disk_mb.unwrap_or(0),
                },
            }],
        });
        if let Some(p) = self.placement {
            def["placement"] = serde_json::to_value(p).unwrap_or_default();
        }
        if let Some(r) = self.restart_policy {
            def["restart_policy"] = serde_json::to_value(r).unwrap_or_default();
        }
        def
    }
}

/// Arguments of apply_manifest.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyArgs {
    /// YAML text of one or more workload definitions separated by `---`, e.g.
    /// "name: web\nreplicas: 3\ncontainers:\n  - name: web\n    image: nginx:1.27\n    resources: {cpu_millicores: 250, memory_mb: 128}\n".
    /// Fields: name, replicas, labels, node_selector, restart_policy (Always|OnFailure|Never),
    /// placement (bin_pack|spread|one_per_node), containers (name, image, command, args, env,
    /// ports [{container_port, host_port, protocol}], resources {cpu_millicores, memory_mb,
    /// disk_mb}).
    pub manifest: String,
    /// Needed only when the manifest sets replicas to 0 on a workload that has some.
    #[serde(default)]
    pub confirm: bool,
}

/// Arguments of scale_workload.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScaleArgs {
    /// The workload's name.
    pub name: String,
    /// The new number of replicas.
    pub replicas: u32,
    /// Must be true to scale to 0 (that stops every replica).
    #[serde(default)]
    pub confirm: bool,
}

/// Arguments of delete_workload.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteArgs {
    /// The workload's name.
    pub name: String,
    /// Must be true: deleting stops and removes every replica.
    #[serde(default)]
    pub confirm: bool,
}

// ---------------------------------------------------------------------------------------------
// Outputs
// ---------------------------------------------------------------------------------------------

/// A page of workloads.
#[derive(Debug, Serialize, JsonSchema)]
pub struct WorkloadList {
    /// The workloads, sorted by name.
    pub workloads: Vec<WorkloadSummary>,
    /// Present when more workloads follow: pass it as `continue` for the next page.
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// How to get the rest, when this is not everything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One container of a workload, in short.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct ContainerSummary {
    /// Container name.
    pub name: String,
    /// Image.
    pub image: String,
    /// CPU reserved per replica, in millicores.
    pub cpu_millicores: u64,
    /// Memory reserved per replica, in MB.
    pub memory_mb: u64,
    /// Disk reserved per replica, in MB.
    #[serde(skip_serializing_if = "is_zero")]
    pub disk_mb: u64,
    /// Ports as "container_port/protocol", or "host_port->container_port/protocol".
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A workload's definition, in short.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct SpecSummary {
    /// Containers of each replica.
    pub containers: Vec<ContainerSummary>,
    /// bin_pack, spread or one_per_node.
    pub placement: String,
    /// Always, OnFailure or Never.
    pub restart_policy: String,
    /// Labels a node must carry to run it.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// The workload's labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl From<&WorkloadDefinition> for SpecSummary {
    fn from(w: &WorkloadDefinition) -> Self {
        SpecSummary {
            containers: w
                .containers
                .iter()
                .map(|c| ContainerSummary {
                    name: c.name.clone(),
                    image: c.image.clone(),
                    cpu_millicores: c.resources.cpu_millicores,
                    memory_mb: c.resources.memory_mb,
                    disk_mb: c.resources.disk_mb,
                    ports: c
                        .ports
                        .iter()
                        .map(|p| {
                            let proto = serde_json::to_value(p.protocol)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_owned))
                                .unwrap_or_default();
                            match p.host_port {
                                Some(h) => format!("{h}->{}/{proto}", p.container_port),
                                None => format!("{}/{proto}", p.container_port),
                            }
                        })
                        .collect(),
                })
                .collect(),
            placement: serde_json::to_value(w.placement)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            restart_policy: format!("{:?}", w.restart_policy),
            node_selector: w.node_selector.clone(),
            labels: w.labels.clone(),
        }
    }
}

/// Everything about one workload.
#[derive(Debug, Serialize, JsonSchema)]
pub struct WorkloadReport {
    /// Name.
    pub name: String,
    /// Id (changes if the workload is deleted and created again).
    pub id: String,
    /// Store revision it was last changed at.
    pub revision: u64,
    /// One line: how many replicas run, and why the others do not.
    pub status: String,
    /// Replica counts.
    pub replicas: ReplicaCounts,
    /// The definition, in short.
    pub spec: SpecSummary,
    /// The full definition, only with `detail: true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub definition: Option<WorkloadDefinition>,
    /// Its instances, the troubled ones (not Running) first.
    pub instances: Vec<InstanceSummary>,
    /// How many instances it has in all (more than listed when the list was cut).
    pub instances_total: usize,
    /// Its most recent events, oldest first.
    pub events: Vec<EventSummary>,
    /// Why replicas are pending, when some are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_reason: Option<SchedulingProblem>,
    /// A rollout under way (after a template change): counts and what it waits for (which
    /// replica, which probe, its output). Absent when every replica runs the current template
    /// and is available.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
    /// What was left out and how to get it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The result of deploy_workload.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Deployed {
    /// The new workload.
    pub workload: WorkloadSummary,
    /// What happens next.
    pub note: String,
}

/// What apply_manifest did to one workload.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Applied {
    /// The workload's name.
    pub name: String,
    /// created, updated or unchanged.
    pub action: String,
    /// Store revision after the change.
    pub revision: u64,
    /// Replicas asked for.
    pub replicas: u32,
}

/// The result of apply_manifest.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ApplyReport {
    /// One entry per document, in order.
    pub applied: Vec<Applied>,
    /// What happens next.
    pub note: String,
}

/// The result of scale_workload.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Scaled {
    /// The workload.
    pub name: String,
    /// Replicas asked for before.
    pub from: u32,
    /// Replicas asked for now.
    pub to: u32,
    /// Replica counts right after the change (the loop then converges).
    pub replicas: ReplicaCounts,
    /// What happens next.
    pub note: String,
}

/// The result of delete_workload.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Deleted {
    /// The workload deleted.
    pub name: String,
    /// Replicas it asked for, now being stopped and removed.
    pub replicas_stopped: u32,
    /// What happens next.
    pub note: String,
}

// ---------------------------------------------------------------------------------------------
// Tools
// ---------------------------------------------------------------------------------------------

#[tool_router(router = workload_tools, vis = "pub(crate)")]
impl OrchestratorMcp {
    /// List the workloads of the cluster, sorted by name: for each, its replica counts
    /// (desired, running, pending, failed, ...), images and revision. Use it first to find
    /// names, or to spot workloads whose running count is below desired. Paged: at most
    /// `limit` (default 50) per call; when `continue` is returned, call again with it for the
    /// next page. `detail: true` adds each full definition (larger).
    #[tool(annotations(
        title = "List workloads",
        read_only_hint = true,
        open_world_hint = false
    ))]
    async fn list_workloads(
        &self,
        Parameters(args): Parameters<PageArgs>,
    ) -> Result<Json<WorkloadList>, String> {
        self.finish("list_workloads", list_workloads(self, args).await)
    }

    /// Show one workload: a status line, replica counts, its definition in short (images,
    /// CPU/memory per replica, ports, selector, placement), its instances (troubled ones
    /// first: node, status, restarts, exit code, last error), its recent events and, when
    /// replicas are pending, the scheduler's reasons. Use it to check on a deployment or to
    /// start a diagnosis. Lists are cut to fit (20 instances and 10 events by default; more
    /// with `detail: true`, which also adds the full definition); list_instances and
    /// list_events page through the rest.
    #[tool(annotations(
        title = "Get a workload",
        read_only_hint = true,
        open_world_hint = false
    ))]
    async fn get_workload(
        &self,
        Parameters(args): Parameters<GetWorkloadArgs>,
    ) -> Result<Json<WorkloadReport>, String> {
        self.finish(
            "get_workload",
            get_workload(self, &args.name, args.detail).await,
        )
    }

    /// Create a new workload of one container from fields (name, image, replicas, command,
    /// env, ports, CPU and memory per replica, node selector, placement, restart policy). The
    /// orchestrator places and starts the replicas in the background: follow with
    /// get_workload. Fails if the name is taken (use scale_workload or apply_manifest to change
    /// an existing workload); invalid fields come back with every problem and its field path
    /// (the container is `containers[0]`). To check first where it would fit, use
    /// plan_deployment; for several containers per replica use apply_manifest.
    #[tool(annotations(
        title = "Deploy a workload",
        read_only_hint = false,
        destructive_hint = false,
        idempotent_hint = false,
        open_world_hint = false
    ))]
    async fn deploy_workload(
        &self,
        Parameters(args): Parameters<WorkloadFields>,
    ) -> Result<Json<Deployed>, String> {
        self.finish("deploy_workload", deploy_workload(self, &args).await)
    }

    /// Create or update workloads from a YAML manifest (one or more documents separated by
    /// `---`, like `orchestrator-cli workload apply`): each workload that exists is replaced
    /// by its new definition (changed containers replace its replicas), the others are created.
    /// Every document is validated before anything is applied; the result says per workload
    /// whether it was created, updated or unchanged. Setting replicas to 0 on a workload that
    /// has some needs `confirm: true`. At most 50 documents per call.
    #[tool(annotations(
        title = "Apply a manifest",
        read_only_hint = false,
        destructive_hint = true,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn apply_manifest(
        &self,
        Parameters(args): Parameters<ApplyArgs>,
    ) -> Result<Json<ApplyReport>, String> {
        self.finish(
            "apply_manifest",
            apply_manifest(self, &args.manifest, args.confirm).await,
        )
    }

    /// Change how many replicas a workload runs. Scaling up places new replicas (check
    /// explain_pending if some stay pending); scaling down stops the extra ones. Scaling to 0
    /// stops every replica and needs `confirm: true`. Returns the replica count before and
    /// after.
    #[tool(annotations(
        title = "Scale a workload",
        read_only_hint = false,
        destructive_hint = true,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn scale_workload(
        &self,
        Parameters(args): Parameters<ScaleArgs>,
    ) -> Result<Json<Scaled>, String> {
        self.finish(
            "scale_workload",
            scale_workload(self, &args.name, args.replicas, args.confirm).await,
        )
    }

    /// Delete a workload: its definition is removed and every replica is stopped and removed.
    /// Irreversible, so it needs `confirm: true`; without it nothing happens and the answer
    /// says what would be deleted. Its events stay readable with list_events.
    #[tool(annotations(
        title = "Delete a workload",
        read_only_hint = false,
        destructive_hint = true,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn delete_workload(
        &self,
        Parameters(args): Parameters<DeleteArgs>,
    ) -> Result<Json<Deleted>, String> {
        self.finish(
            "delete_workload",
            delete_workload(self, &args.name, args.confirm).await,
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Implementations
// ---------------------------------------------------------------------------------------------

pub(crate) async fn list_workloads(
    mcp: &OrchestratorMcp,
    args: PageArgs,
) -> Result<WorkloadList, ToolError> {
    let limit = page_size(args.limit, DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT)?;
    let page = bounded_page(
        mcp.api(),
        &Workloads,
        limit,
        args.cont.as_deref(),
        mcp.list_budget(),
        |w: &WorkloadView| WorkloadSummary::of(w, args.detail),
    )
    .await?;
    let note = paging_note("list_workloads", page.next.as_deref(), page.shrunk);
    Ok(WorkloadList {
        workloads: page.items,
        next: page.next,
        note: join_notes([note]),
    })
}

/// "3/3 running", or "1/3 running, 2 pending (0/1 nodes fit: 1 insufficient memory)".
pub(crate) fn status_line(r: &ReplicaCounts, pending: Option<&SchedulingProblem>) -> String {
    let mut s = format!("{}/{} running", r.running, r.desired);
    for (n, what) in [
        (r.starting, "starting"),
        (r.pending, "pending"),
        (r.failed, "failed"),
        (r.succeeded, "succeeded"),
        (r.stopping, "stopping"),
    ] {
        if n > 0 {
            s.push_str(&format!(", {n} {what}"));
        }
    }
    if let Some(p) = pending.filter(|_| r.pending > 0) {
        s.push_str(&format!(" ({})", p.summary));
    }
    s
}

pub(crate) async fn get_workload(
    mcp: &OrchestratorMcp,
    name: &str,
    detail: bool,
) -> Result<WorkloadReport, ToolError> {
    let d = mcp
        .api()
        .get_workload(name)
        .await
        .hint(404, UNKNOWN_WORKLOAD)?;
    let replicas = d.replicas.clone();
    let pending_reason = d.pending_reason.as_ref().map(SchedulingProblem::from);
    let (max_instances, max_events) = if detail { (100, 20) } else { (20, 10) };

    // Troubled instances first: they are what a diagnosis needs when the list is cut.
    let mut instances: Vec<_> = d.instances.iter().collect();
    instances.sort_by_key(|i| (i.status == InstanceStatus::Running, i.id.clone()));
    let instances_total = instances.len();
    let mut shown: Vec<InstanceSummary> = instances
        .into_iter()
        .take(max_instances)
        .map(InstanceSummary::from)
        .collect();
    let skip = d.events.len().saturating_sub(max_events);
    let mut events: Vec<EventSummary> = d.events[skip..]
        .iter()
        .map(|e| EventSummary::of(e, detail))
        .collect();

    let mut report = WorkloadReport {
        name: d.workload.name.clone(),
        id: d.workload.id.to_string(),
        revision: d.revision,
        status: status_line(&replicas, pending_reason.as_ref()),
        replicas,
        spec: SpecSummary::from(&d.workload),
        definition: detail.then(|| d.workload.clone()),
        instances: Vec::new(),
        instances_total,
        events: Vec::new(),
        pending_reason,
        rollout: d.rollout.clone().filter(|r| !r.complete),
        note: None,
    };
    // Within the cap: drop the oldest events, then the last instances, then the definition.
    let budget = mcp.list_budget();
    let mut dropped_definition = false;
    loop {
        report.instances = std::mem::take(&mut shown);
        report.events = std::mem::take(&mut events);
        let fits = json_len(&report) <= budget;
        shown = std::mem::take(&mut report.instances);
        events = std::mem::take(&mut report.events);
        if fits {
            break;
        }
        if events.len() > 1 {
            events.remove(0);
        } else if shown.len() > 1 {
            shown.pop();
        } else if report.definition.is_some() {
            report.definition = None;
            dropped_definition = true;
        } else {
            break;
        }
    }
    let mut notes = Vec::new();
    if shown.len() < instances_total {
        notes.push(format!(
            "{} of {instances_total} instances shown; list_instances with workload: \"{}\" pages through all.",
            shown.len(),
            report.name
        ));
    }
    if events.len() < d.events.len() {
        notes.push(format!(
            "{} most recent events shown; list_events with workload: \"{}\" has more.",
            events.len(),
            report.name
        ));
    }
    if dropped_definition {
        notes.push(
            "The full definition was left out to fit the size cap; read the resource orchestrator://workloads/NAME for it."
                .to_owned(),
        );
    }
    report.instances = shown;
    report.events = events;
    report.note = join_notes(notes);
    Ok(report)
}

async fn deploy_workload(
    mcp: &OrchestratorMcp,
    fields: &WorkloadFields,
) -> Result<Deployed, ToolError> {
    let def = fields.to_definition();
    let view = mcp.api().create_workload(&def).await.hint(
        409,
        "A workload with this name exists: use scale_workload to change its replicas, \
             apply_manifest to change its definition, or pick another name.",
    )?;
    let note = format!(
        "Created {}: {} replica(s) asked for; the orchestrator places and starts them in the \
         background. Call get_workload with name \"{}\" to follow them; if some stay pending, \
         explain_pending says why.",
        view.workload.name, view.workload.replicas, view.workload.name
    );
    Ok(Deployed {
        workload: WorkloadSummary::of(&view, false),
        note,
    })
}

/// The documents of a manifest (YAML documents separated by `---`, or JSON) as JSON values,
/// empty documents skipped; split by `orchestrator_client`, as the CLI splits its files.
pub(crate) fn parse_manifest(text: &str) -> Result<Vec<serde_json::Value>, ToolError> {
    let docs = orchestrator_client::manifest::parse("manifest", text).map_err(|e| match e {
        ApiError::ManifestYaml {
            document, source, ..
        } => ToolError::invalid(format!("manifest document {document}: not valid YAML: {source}")),
        ApiError::ManifestJson { source, .. } => {
            ToolError::invalid(format!("the manifest is not valid JSON: {source}"))
        }
        ApiError::NotAWorkload { document, .. } => ToolError::invalid(format!(
            "manifest document {document} is not a mapping of fields (name, replicas, containers, ...)"
        )),
        ApiError::EmptyManifest { .. } => ToolError::invalid("the manifest holds no workload"),
        other => ToolError::from(other),
    })?;
    let docs: Vec<serde_json::Value> = docs.into_iter().map(|m| m.body).collect();
    if docs.len() > MAX_DOCUMENTS {
        return Err(ToolError::invalid(format!(
            "the manifest holds {} documents; at most {MAX_DOCUMENTS} per call",
            docs.len()
        )));
    }
    Ok(docs)
}

async fn apply_manifest(
    mcp: &OrchestratorMcp,
    manifest: &str,
    confirm: bool,
) -> Result<ApplyReport, ToolError> {
    let docs = parse_manifest(manifest)?;
    let mut names = Vec::new();
    // Validate every document before applying any, so a typo in the third does not leave the
    // first two applied. The dry run validates exactly as creation does.
    for (i, doc) in docs.iter().enumerate() {
        let Some(name) = doc.get("name").and_then(|n| n.as_str()) else {
            return Err(ToolError::invalid(format!(
                "manifest document {} has no `name`",
                i + 1
            )));
        };
        if names.contains(&name) {
            return Err(ToolError::invalid(format!(
                "workload {name:?} appears twice in the manifest"
            )));
        }
        names.push(name);
        mcp.api().preview(doc).await.map_err(|e| {
            ToolError::new(format!(
                "nothing applied: manifest document {} ({name}) is invalid: {}",
                i + 1,
                describe(&e)
            ))
        })?;
    }
    let mut applied = Vec::new();
    for (doc, name) in docs.iter().zip(names) {
        let done = apply_one(mcp, name, doc, confirm).await.map_err(|e| {
            let before = if applied.is_empty() {
                "nothing applied before it".to_owned()
            } else {
                let list: Vec<String> = applied
                    .iter()
                    .map(|a: &Applied| format!("{} {}", a.name, a.action))
                    .collect();
                format!("already applied: {}", list.join(", "))
            };
            ToolError::new(format!("applying {name} failed ({before}): {}", e.message))
        })?;
        applied.push(done);
    }
    Ok(ApplyReport {
        applied,
        note: "The orchestrator converges in the background: call get_workload to follow each \
               workload."
            .to_owned(),
    })
}

async fn apply_one(
    mcp: &OrchestratorMcp,
    name: &str,
    doc: &serde_json::Value,
    confirm: bool,
) -> Result<Applied, ToolError> {
    let api = mcp.api();
    let current: Option<WorkloadView> = match api.get_workload(name).await {
        Ok(d) => Some(WorkloadView {
            workload: d.workload,
            revision: d.revision,
            replicas: d.replicas,
        }),
        Err(e) if e.status() == Some(404) => None,
        Err(e) => return Err(e.into()),
    };
    let Some(current) = current else {
        let view = api.create_workload(doc).await?;
        return Ok(Applied {
            name: view.workload.name,
            action: "created".into(),
            revision: view.revision,
            replicas: view.workload.replicas,
        });
    };
    // Unchanged definitions are not written again: applying twice is a no-op.
    if let Ok(mut wanted) = serde_json::from_value::<WorkloadDefinition>(doc.clone()) {
        wanted.id = current.workload.id.clone();
        if wanted.same_desired_state(&current.workload) {
            return Ok(Applied {
                name: name.to_owned(),
                action: "unchanged".into(),
                revision: current.revision,
                replicas: current.workload.replicas,
            });
        }
    }
    let new_replicas = doc.get("replicas").and_then(|r| r.as_u64());
    if new_replicas == Some(0) && current.workload.replicas > 0 {
        require_confirm(
            confirm,
            &format!(
                "the manifest scales {name} from {} replicas to 0",
                current.workload.replicas
            ),
        )?;
    }
    // Conditional on the revision read above: a concurrent change is reported, not lost.
    let view = api
        .replace_workload(name, doc, Some(current.revision))
        .await
        .hint(
            409,
            "The workload changed meanwhile: call apply_manifest again to apply over the new version.",
        )?;
    Ok(Applied {
        name: view.workload.name,
        action: "updated".into(),
        revision: view.revision,
        replicas: view.workload.replicas,
    })
}

async fn scale_workload(
    mcp: &OrchestratorMcp,
    name: &str,
    replicas: u32,
    confirm: bool,
) -> Result<Scaled, ToolError> {
    let before = mcp
        .api()
        .get_workload(name)
        .await
        .hint(404, UNKNOWN_WORKLOAD)?;
    if replicas == 0 && before.workload.replicas > 0 {
        require_confirm(
            confirm,
            &format!(
                "scaling {name} to 0 stops all its {} replicas",
                before.workload.replicas
            ),
        )?;
    }
    let view = mcp
        .api()
        .scale_workload(name, replicas)
        .await
        .hint(404, UNKNOWN_WORKLOAD)?;
    let from = before.workload.replicas;
    let note = if replicas > from {
        format!("Placing {} more replica(s) in the background: call get_workload to follow; explain_pending says why any stay pending.", replicas - from)
    } else if replicas < from {
        format!("Stopping {} replica(s) in the background.", from - replicas)
    } else {
        "Nothing to do: it already asked for that many.".to_owned()
    };
    Ok(Scaled {
        name: view.workload.name.clone(),
        from,
        to: view.workload.replicas,
        replicas: view.replicas.clone(),
        note,
    })
}

async fn delete_workload(
    mcp: &OrchestratorMcp,
    name: &str,
    confirm: bool,
) -> Result<Deleted, ToolError> {
    if !confirm {
        // Say what would go, so the user can decide.
        let d = mcp
            .api()
            .get_workload(name)
            .await
            .hint(404, UNKNOWN_WORKLOAD)?;
        require_confirm(
            false,
            &format!(
                "deleting {} would stop and remove its {} replica(s) ({} running)",
                d.workload.name, d.workload.replicas, d.replicas.running
            ),
        )?;
    }
    let view = mcp
        .api()
        .delete_workload(name)
        .await
        .hint(404, UNKNOWN_WORKLOAD)?;
    Ok(Deleted {
        name: view.workload.name,
        replicas_stopped: view.workload.replicas,
        note: "Deleted; its replicas are being stopped and removed in the background. Its \
               events stay readable with list_events."
            .to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_become_a_definition_the_api_accepts() {
        let fields: WorkloadFields = serde_json::from_value(serde_json::json!({
            "name": "web", "image": "nginx:1", "replicas": 3,
            "ports": [{"container_port": 80, "host_port": 8080}],
            "placement": "spread", "restart_policy": "OnFailure", "memory_mb": 128
        }))
        .unwrap();
        let def: WorkloadDefinition = serde_json::from_value(fields.to_definition()).unwrap();
        assert_eq!(def.name, "web");
        assert_eq!(def.replicas, 3);
        assert_eq!(def.containers[0].resources.cpu_millicores, 100);
        assert_eq!(def.containers[0].resources.memory_mb, 128);
        assert_eq!(def.containers[0].ports[0].host_port, Some(8080));
        assert!(def.validate().is_ok());
        let spec = SpecSummary::from(&def);
        assert_eq!(spec.placement, "spread");
        assert_eq!(spec.restart_policy, "OnFailure");
        assert_eq!(spec.containers[0].ports, vec!["8080->80/tcp".to_owned()]);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = serde_json::from_value::<WorkloadFields>(serde_json::json!({
            "name": "web", "image": "x", "replica": 3
        }))
        .unwrap_err();
        assert!(e.to_string().contains("replica"), "{e}");
    }

    #[test]
    fn manifests_split_into_documents() {
        let docs =
            parse_manifest("name: a\nreplicas: 1\n---\n---\nname: b\nreplicas: 2\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1]["name"], "b");
        assert!(parse_manifest("").is_err());
        assert!(parse_manifest("- a\n- b\n").is_err());
        assert!(parse_manifest("name: [unclosed").is_err());
    }

    #[test]
    fn status_lines() {
        let r = ReplicaCounts {
            desired: 3,
            running: 1,
            pending: 2,
            ..Default::default()
        };
        let p = SchedulingProblem {
            summary: "0/1 nodes fit: 1 insufficient memory".into(),
            nodes_total: 1,
            nodes_fit: 0,
            unplaced: 2,
            reasons: vec![],
        };
        assert_eq!(
            status_line(&r, Some(&p)),
            "1/3 running, 2 pending (0/1 nodes fit: 1 insufficient memory)"
        );
    }
}
