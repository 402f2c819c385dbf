//! `workload create|apply|list|get|describe|scale|delete` (and `rollout`, in `rollout.rs`).

use super::{api_name, labels, Ctx, Names};
use crate::duration::format_age;
use crate::error::CliError;
use crate::manifest::{self, Manifest};
use crate::output::{indent, or_none, print_structured, table, Fields};
use crate::wait::{wait_until_ready, WaitArgs};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use orchestrator_client::{ClientError, Instances, PageRequest, Workloads};
use orchestrator_shared_types::api::{ListResponse, ReplicaCounts, WorkloadDetail, WorkloadView};
use orchestrator_shared_types::{ContainerConfig, WorkloadDefinition, WorkloadInstance};
use std::collections::HashMap;
use std::io::{Read, Write};

/// `workload ...`
#[derive(Debug, Subcommand)]
pub enum WorkloadCommand {
    /// Create workloads from manifests (fails if a name is taken).
    Create(ManifestArgs),
    /// Create or update workloads from manifests (replace each one, create it when absent).
    Apply(ManifestArgs),
    /// List workloads.
    #[command(visible_alias = "ls")]
    List,
    /// Show one workload as a table row (or the server's object with -o json|yaml).
    Get {
        /// Name or id.
        name: String,
    },
    /// Show everything about one workload: spec, instances, recent events, why replicas pend.
    Describe {
        /// Name or id.
        name: String,
    },
    /// Change the number of replicas.
    Scale {
        /// Name.
        name: String,
        /// The new replica count.
        #[arg(long)]
        replicas: u32,
        /// --wait and --timeout.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Delete a workload; its instances are stopped and removed.
    #[command(visible_alias = "rm")]
    Delete {
        /// Name.
        name: String,
    },
    /// Follow, list or undo template changes (rolling updates).
    #[command(subcommand)]
    Rollout(super::rollout::RolloutCommand),
}

/// `-f FILE...` and `--wait` of `create` and `apply`.
#[derive(Debug, Args)]
pub struct ManifestArgs {
    /// Manifest file, YAML (documents separated by ---) or JSON (object or array); `-` reads
    /// stdin. May be repeated.
    #[arg(short = 'f', long = "filename", value_name = "FILE", required = true)]
    pub files: Vec<String>,
    /// --wait and --timeout.
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// Runs a `workload` command. `stdin` serves `-f -`.
pub async fn run(
    ctx: &Ctx,
    command: WorkloadCommand,
    out: &mut dyn Write,
    stdin: &mut dyn Read,
) -> Result<(), CliError> {
    match command {
        WorkloadCommand::Create(args) => submit(ctx, &args, false, out, stdin).await,
        WorkloadCommand::Apply(args) => submit(ctx, &args, true, out, stdin).await,
        WorkloadCommand::List => list(ctx, out).await,
        WorkloadCommand::Get { name } => get(ctx, &name, out).await,
        WorkloadCommand::Describe { name } => describe(ctx, &name, out).await,
        WorkloadCommand::Scale {
            name,
            replicas,
            wait,
        } => scale(ctx, &name, replicas, &wait, out).await,
        WorkloadCommand::Rollout(command) => super::rollout::run(ctx, command, out).await,
        WorkloadCommand::Delete { name } => {
            let view = ctx.client.delete_workload(&name).await?;
            if ctx.format.is_structured() {
                print_structured(out, ctx.format, &view)
            } else {
                writeln!(out, "workload/{} deleted", view.workload.name)?;
                Ok(())
            }
        }
    }
}

/// `create` (POST each document) or `apply` (PUT each document, POST when the server says 404).
async fn submit(
    ctx: &Ctx,
    args: &ManifestArgs,
    apply: bool,
    out: &mut dyn Write,
    stdin: &mut dyn Read,
) -> Result<(), CliError> {
    // Every document is parsed before anything is sent, so a typo in the third one does not leave
    // the first two created.
    let manifests = manifest::load(&args.files, stdin)?;
    let mut done = Vec::new();
    let mut failure = None;
    for m in &manifests {
        let result = if apply {
            apply_one(ctx, m).await
        } else {
            ctx.client
                .create_workload(&m.body)
                .await
                .map(|v| (v, "created"))
                .map_err(|e| ("creating", e))
        };
        match result {
            Ok((view, verb)) => {
                if !ctx.format.is_structured() {
                    writeln!(out, "workload/{} {verb}", view.workload.name)?;
                }
                done.push(view);
            }
            Err((action, source)) => {
                failure = Some(CliError::Workload {
                    action,
                    target: m.describe(),
                    source,
                });
                break;
            }
        }
    }
    // What was done is printed even when a later document failed, so the user knows the state.
    if ctx.format.is_structured() && !done.is_empty() {
        if done.len() == 1 {
            print_structured(out, ctx.format, &done[0])?;
        } else {
            print_structured(out, ctx.format, &ListResponse::new(done.clone()))?;
        }
    }
    if let Some(err) = failure {
        return Err(err);
    }
    if args.wait.wait {
        out.flush()?;
        let names: Vec<String> = done.iter().map(|v| v.workload.name.clone()).collect();
        wait_until_ready(&ctx.client, &names, args.wait.timeout).await?;
    }
    Ok(())
}

/// PUT, and POST if the workload does not exist. A document without a name cannot be PUT: it is
/// POSTed so that the server reports the missing name with its field path.
async fn apply_one(
    ctx: &Ctx,
    m: &Manifest,
) -> Result<(WorkloadView, &'static str), (&'static str, ClientError)> {
    let Some(name) = m.name().filter(|n| !n.is_empty()) else {
        return ctx
            .client
            .create_workload(&m.body)
            .await
            .map(|v| (v, "created"))
            .map_err(|e| ("creating", e));
    };
    match ctx.client.replace_workload(name, &m.body, None).await {
        Ok(view) => Ok((view, "configured")),
        Err(e) if e.status() == Some(404) => ctx
            .client
            .create_workload(&m.body)
            .await
            .map(|v| (v, "created"))
            .map_err(|e| ("creating", e)),
        Err(e) => Err(("updating", e)),
    }
}

async fn list(ctx: &Ctx, out: &mut dyn Write) -> Result<(), CliError> {
    let list = ctx.client.list(&Workloads, &PageRequest::default()).await?;
    if ctx.format.is_structured() {
        return print_structured(out, ctx.format, &list);
    }
    if list.items.is_empty() {
        eprintln!("No workloads found.");
        return Ok(());
    }
    // Restarts and age come from the instances, which the list does not carry: one more request
    // for the whole table rather than one per workload.
    let instances = ctx
        .client
        .list(&Instances::default(), &PageRequest::default())
        .await?
        .items;
    let mut by_workload: HashMap<&str, Vec<&WorkloadInstance>> = HashMap::new();
    for i in &instances {
        by_workload
            .entry(i.workload_id.as_str())
            .or_default()
            .push(i);
    }
    let rows: Vec<Row<'_>> = list
        .items
        .iter()
        .map(|v| Row {
            workload: &v.workload,
            replicas: &v.replicas,
            instances: by_workload
                .get(v.workload.id.as_str())
                .cloned()
                .unwrap_or_default(),
        })
        .collect();
    out.write_all(workloads_table(&rows, ctx.format.is_wide(), Utc::now()).as_bytes())?;
    Ok(())
}

async fn get(ctx: &Ctx, name: &str, out: &mut dyn Write) -> Result<(), CliError> {
    let detail = ctx.client.get_workload(name).await?;
    if ctx.format.is_structured() {
        return print_structured(out, ctx.format, &detail);
    }
    let row = Row::of_detail(&detail);
    out.write_all(workloads_table(&[row], ctx.format.is_wide(), Utc::now()).as_bytes())?;
    Ok(())
}

async fn describe(ctx: &Ctx, name: &str, out: &mut dyn Write) -> Result<(), CliError> {
    let detail = ctx.client.get_workload(name).await?;
    if ctx.format.is_structured() {
        return print_structured(out, ctx.format, &detail);
    }
    let names = Names::fetch(&ctx.client, false, true).await;
    out.write_all(describe_text(&detail, &names, Utc::now()).as_bytes())?;
    Ok(())
}

async fn scale(
    ctx: &Ctx,
    name: &str,
    replicas: u32,
    wait: &WaitArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let view = ctx.client.scale_workload(name, replicas).await?;
    if ctx.format.is_structured() {
        print_structured(out, ctx.format, &view)?;
    } else {
        writeln!(
            out,
            "workload/{} scaled to {} replicas",
            view.workload.name, view.replicas.desired
        )?;
    }
    if wait.wait {
        out.flush()?;
        wait_until_ready(&ctx.client, &[view.workload.name], wait.timeout).await?;
    }
    Ok(())
}

/// One workload of a table with its instances.
#[derive(Debug)]
pub struct Row<'a> {
    /// The definition.
    pub workload: &'a WorkloadDefinition,
    /// Its replica counts.
    pub replicas: &'a ReplicaCounts,
    /// Its instances (for restarts and age).
    pub instances: Vec<&'a WorkloadInstance>,
}

impl<'a> Row<'a> {
    /// The row of a `GET /workloads/{name}` answer.
    pub fn of_detail(d: &'a WorkloadDetail) -> Self {
        Row {
            workload: &d.workload,
            replicas: &d.replicas,
            instances: d.instances.iter().collect(),
        }
    }
}

/// NAME, READY (running/desired), PENDING, RESTARTS, AGE; wide adds ID, IMAGE, STRATEGY.
///
/// The API gives no creation time for workloads, so AGE is the age of the oldest instance (`-`
/// when there is none).
pub fn workloads_table(rows: &[Row<'_>], wide: bool, now: DateTime<Utc>) -> String {
    let mut header = vec!["NAME", "READY", "PENDING", "RESTARTS", "AGE"];
    if wide {
        header.extend(["ID", "IMAGE", "STRATEGY"]);
    }
    let body = rows.iter().map(|r| {
        let restarts: u32 = r.instances.iter().map(|i| i.restart_count).sum();
        let age = r
            .instances
            .iter()
            .map(|i| i.created_at)
            .min()
            .map_or_else(|| "-".to_owned(), |t| format_age(t, now));
        let mut cells = vec![
            r.workload.name.clone(),
            format!("{}/{}", r.replicas.running, r.replicas.desired),
            r.replicas.pending.to_string(),
            restarts.to_string(),
            age,
        ];
        if wide {
            cells.extend([
                r.workload.id.0.clone(),
                images(&r.workload.containers),
                api_name(&r.workload.placement),
            ]);
        }
        cells
    });
    table(&header, body)
}

fn images(containers: &[ContainerConfig]) -> String {
    containers
        .iter()
        .map(|c| c.image.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// The text of `workload describe`.
pub fn describe_text(d: &WorkloadDetail, names: &Names, now: DateTime<Utc>) -> String {
    let w = &d.workload;
    let r = &d.replicas;
    let mut f = Fields::new();
    f.field("Name", &w.name)
        .field("ID", &w.id)
        .field("Revision", d.revision)
        .field("Labels", labels(&w.labels))
        .field(
            "Replicas",
            format!(
                "{} desired | {} running | {} starting | {} pending | {} failed | {} succeeded | {} stopping",
                r.desired, r.running, r.starting, r.pending, r.failed, r.succeeded, r.stopping
            ),
        )
        .field("Placement", api_name(&w.placement))
        .field("Restart policy", format!("{:?}", w.restart_policy))
        .field("Node selector", labels(&w.node_selector));
    let containers: String = w.containers.iter().map(container_text).collect();
    f.section("Containers", &containers);
    let pending = match (&d.pending_reason, r.pending) {
        (Some(reason), _) => format!("{reason} ({} unplaced)", reason.unplaced),
        (None, 0) => "<none>".to_owned(),
        (None, n) => format!("{n} replicas not placed yet"),
    };
    f.field("Pending", pending);
    if let Some(rollout) = d.rollout.as_ref().filter(|r| !r.complete) {
        let mut text = rollout.message.clone();
        for why in &rollout.waiting_for {
            text.push_str(&format!("\n  waiting for {why}"));
        }
        f.field("Rollout", text);
    }

    let mut instances: Vec<&WorkloadInstance> = d.instances.iter().collect();
    instances.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    // A PORTS column only when some instance holds host ports.
    let with_ports = instances.iter().any(|i| !i.ports.is_empty());
    let instances_text = if instances.is_empty() {
        "<none>\n".to_owned()
    } else {
        let mut header = vec!["NAME", "NODE", "STATUS", "READY", "RESTARTS", "AGE"];
        if with_ports {
            header.push("PORTS");
        }
        header.push("LAST ERROR");
        table(
            &header,
            instances.iter().map(|i| {
                let mut cells = vec![
                    i.id.0.clone(),
                    names.node(i.node_id.as_ref()),
                    i.status.to_string(),
                    super::instance::ready_text(i).to_owned(),
                    i.restart_count.to_string(),
                    format_age(i.created_at, now),
                ];
                if with_ports {
                    cells.push(super::instance::ports_text(i));
                }
                cells.push(super::instance::problem_text(i).unwrap_or_default());
                cells
            }),
        )
    };
    f.section("Instances", &instances_text);
    let events_text = if d.events.is_empty() {
        "<none>\n".to_owned()
    } else {
        table(
            &["AGE", "KIND", "NODE", "MESSAGE"],
            d.events.iter().map(|e| {
                vec![
                    format_age(e.time, now),
                    format!("{:?}", e.kind),
                    names.node(e.node_id.as_ref()),
                    e.message.clone(),
                ]
            }),
        )
    };
    f.section("Events", &events_text);
    f.finish()
}

fn container_text(c: &ContainerConfig) -> String {
    let mut f = Fields::new();
    f.field("Image", &c.image);
    if !c.command.is_empty() {
        f.field("Command", c.command.join(" "));
    }
    if !c.args.is_empty() {
        f.field("Args", c.args.join(" "));
    }
    let ports: Vec<String> = c
        .ports
        .iter()
        .map(|p| {
            let proto = api_name(&p.protocol);
            match p.host_port {
                Some(0) => format!("dynamic->{}/{proto}", p.container_port),
                Some(host) => format!("{host}->{}/{proto}", p.container_port),
                None => format!("{}/{proto}", p.container_port),
            }
        })
        .collect();
    f.field("Ports", or_none(ports.join(", ")));
    f.field("Resources", c.resources);
    let env: Vec<String> = c.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    f.field("Env", or_none(env.join(", ")));
    format!("{}:\n{}", c.name, indent(&f.finish(), 2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_shared_types::{
        Event, EventKind, InstanceStatus, NodeId, PortMapping, Protocol, RejectReason,
        Unschedulable,
    };

    fn now() -> DateTime<Utc> {
        "2026-01-10T12:00:00Z".parse().unwrap()
    }

    fn sample() -> WorkloadDetail {
        let mut c = ContainerConfig::new("web", "nginx:1.27");
        c.ports.push(PortMapping {
            container_port: 80,
            host_port: Some(8080),
            protocol: Protocol::Tcp,
        });
        let mut w = WorkloadDefinition::new("web", 3, c);
        w.id = "3f2a".into();
        w.labels.insert("app".into(), "web".into());
        let mut running = WorkloadInstance::new("web-aaaa".into(), w.id.clone());
        running.status = InstanceStatus::Running;
        running.node_id = Some(NodeId::from("node-1"));
        running.restart_count = 2;
        running.created_at = now() - chrono::Duration::minutes(3);
        let mut pending = WorkloadInstance::new("web-bbbb".into(), w.id.clone());
        pending.created_at = now() - chrono::Duration::seconds(5);
        let instances = vec![running, pending];
        let mut event = Event::new(EventKind::Unschedulable, "1 replica cannot be placed");
        event.time = now() - chrono::Duration::seconds(4);
        WorkloadDetail {
            replicas: ReplicaCounts::of(3, &instances),
            workload: w,
            revision: 7,
            instances,
            events: vec![event],
            rollout: None,
            pending_reason: Some(Unschedulable {
                nodes_total: 1,
                reasons: [(RejectReason::InsufficientMemory, 1)]
                    .into_iter()
                    .collect(),
                unplaced: 2,
            }),
        }
    }

    #[test]
    fn list_table_columns() {
        let d = sample();
        let text = workloads_table(&[Row::of_detail(&d)], false, now());
        assert_eq!(
            text,
            "NAME   READY   PENDING   RESTARTS   AGE\n\
             web    1/3     1         2          3m\n"
        );
    }

    #[test]
    fn wide_table_adds_id_image_strategy() {
        let d = sample();
        let view = WorkloadView {
            workload: d.workload.clone(),
            revision: d.revision,
            replicas: d.replicas.clone(),
        };
        let row = Row {
            workload: &view.workload,
            replicas: &view.replicas,
            instances: Vec::new(),
        };
        let text = workloads_table(&[row], true, now());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["NAME", "READY", "PENDING", "RESTARTS", "AGE", "ID", "IMAGE", "STRATEGY"]
        );
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            [
                "web",
                "1/3",
                "1",
                "0",
                "-",
                "3f2a",
                "nginx:1.27",
                "bin_pack"
            ]
        );
    }

    #[test]
    fn describe_shows_instance_ports() {
        let mut d = sample();
        d.workload.containers[0].ports[0].host_port = Some(0);
        d.instances[0].ports = vec![orchestrator_shared_types::AssignedPort {
            container: "web".into(),
            container_port: 80,
            host_port: 20001,
            protocol: Protocol::Tcp,
        }];
        let text = describe_text(&d, &Names::default(), now());
        for expected in [
            "    Ports:          dynamic->80/tcp\n",
            "  NAME       NODE     STATUS    READY   RESTARTS   AGE   PORTS           LAST ERROR\n",
            "  web-aaaa   node-1   Running   no      2          3m    20001->80/tcp\n",
            "  web-bbbb   -        Pending   -       0          5s    -\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
    }

    #[test]
    fn describe_shows_spec_instances_events_and_why_pending() {
        let text = describe_text(&sample(), &Names::default(), now());
        for expected in [
            "Name:           web\n",
            "Labels:         app=web\n",
            "Replicas:       3 desired | 1 running | 0 starting | 1 pending",
            "Placement:      bin_pack\n",
            "Containers:\n  web:\n    Image:          nginx:1.27\n",
            "    Ports:          8080->80/tcp\n",
            "    Resources:      cpu=100m memory=64MB disk=0MB\n",
            "Pending:        0/1 nodes fit: 1 insufficient memory (2 unplaced)\n",
            "Instances:\n  NAME       NODE     STATUS    READY   RESTARTS   AGE   LAST ERROR\n",
            "  web-aaaa   node-1   Running   no      2          3m\n",
            "  web-bbbb   -        Pending   -       0          5s\n",
            "Events:\n  AGE   KIND            NODE   MESSAGE\n",
            "  4s    Unschedulable   -      1 replica cannot be placed\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
    }
}
