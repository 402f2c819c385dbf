//! `cluster info`.

use super::node::status_name;
use super::Ctx;
use crate::error::CliError;
use crate::output::{print_structured, table, Fields};
use clap::Subcommand;
use orchestrator_shared_types::api::{ClusterInfo, Membership, StoreHealth};
use std::io::Write;

/// `cluster ...`
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// What the cluster is made of: version, store, runtime, counts, the leader, the members
    /// and the store's health.
    Info,
}

/// Runs a `cluster` command.
pub async fn run(ctx: &Ctx, command: ClusterCommand, out: &mut dyn Write) -> Result<(), CliError> {
    let ClusterCommand::Info = command;
    let info = ctx.client.cluster_info().await?;
    if ctx.format.is_structured() {
        return print_structured(out, ctx.format, &info);
    }
    out.write_all(info_text(ctx.client.server(), &info).as_bytes())?;
    Ok(())
}

/// The text of `cluster info`.
pub fn info_text(server: &str, info: &ClusterInfo) -> String {
    let instances: Vec<String> = info
        .instances
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(status, n)| format!("{n} {status}"))
        .collect();
    let mut f = Fields::new();
    f.field("Server", server)
        .field("Version", &info.version)
        .field("Store", &info.store)
        .field("Runtime", &info.runtime)
        .field("Nodes", info.nodes)
        .field("Workloads", info.workloads)
        .field(
            "Instances",
            if instances.is_empty() {
                "0".to_owned()
            } else {
                instances.join(", ")
            },
        );
    // A server from before clusters sends no membership: nothing more to say.
    if !info.membership.mode.is_empty() {
        membership_fields(&mut f, &info.membership);
    }
    f.finish()
}

/// The leader, the store's health and the members of `m`.
fn membership_fields(f: &mut Fields, m: &Membership) {
    f.field("Mode", &m.mode);
    if let Some(id) = &m.cluster_id {
        f.field("Cluster ID", id);
    }
    f.field("This node", &m.this_node);
    f.field(
        "Leader",
        match &m.leader {
            Some(l) if l.address.is_empty() => {
                format!("{} (since revision {})", l.node, l.since_revision)
            }
            Some(l) => format!(
                "{} at {} (since revision {})",
                l.node, l.address, l.since_revision
            ),
            None => {
                "<none> (no daemon is elected: changes are stored but not carried out)".to_owned()
            }
        },
    );
    f.field("Store health", store_health(&m.store_health));
    let body = if m.members.is_empty() {
        "<none>\n".to_owned()
    } else {
        table(
            &["NODE", "ADDRESS", "STATUS", "LEADER"],
            m.members.iter().map(|member| {
                vec![
                    member.node.to_string(),
                    if member.address.is_empty() {
                        "-".to_owned()
                    } else {
                        member.address.clone()
                    },
                    status_name(member.status).to_owned(),
                    if member.leader { "yes" } else { "" }.to_owned(),
                ]
            }),
        )
    };
    f.section(&format!("Members ({})", m.members.len()), &body);
}

/// `reachable (revision 42)`, or `UNREACHABLE: <what failed>`.
fn store_health(h: &StoreHealth) -> String {
    let mut text = if h.reachable {
        match h.revision {
            Some(r) => format!("reachable (revision {r})"),
            None => "reachable".to_owned(),
        }
    } else {
        "UNREACHABLE".to_owned()
    };
    if let Some(message) = &h.message {
        text.push_str(&format!(": {message}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_shared_types::api::{LeaderInfo, MemberInfo};
    use orchestrator_shared_types::{InstanceStatus, NodeStatus};

    #[test]
    fn info_lists_counts() {
        let info = ClusterInfo {
            version: "0.1.0".into(),
            nodes: 1,
            workloads: 2,
            instances: [(InstanceStatus::Running, 3), (InstanceStatus::Pending, 1)]
                .into_iter()
                .collect(),
            store: "redb:/var/lib/orchestrator".into(),
            runtime: "youki".into(),
            membership: Default::default(),
        };
        let text = info_text("http://127.0.0.1:8080", &info);
        assert!(
            text.contains("Instances:      1 Pending, 3 Running\n"),
            "{text}"
        );
        assert!(text.starts_with("Server:         http://127.0.0.1:8080\n"));
        assert!(!text.contains("Leader"), "no membership from an old server");
    }

    #[test]
    fn info_shows_the_leader_members_and_store_health() {
        let member = |node: &str, address: &str, status, leader| MemberInfo {
            node: node.into(),
            address: address.into(),
            status,
            leader,
        };
        let info = ClusterInfo {
            version: "0.1.0".into(),
            nodes: 2,
            store: "etcd:http://10.0.0.9:2379".into(),
            runtime: "youki".into(),
            membership: Membership {
                mode: "etcd".into(),
                cluster_id: Some("c-1".into()),
                this_node: "node-b".into(),
                leader: Some(LeaderInfo {
                    node: "node-a".into(),
                    address: "10.0.0.1:8080".into(),
                    since_revision: 42,
                }),
                members: vec![
                    member("node-a", "10.0.0.1:8080", NodeStatus::Ready, true),
                    member("node-b", "", NodeStatus::Down, false),
                ],
                store_health: StoreHealth {
                    reachable: true,
                    revision: Some(50),
                    message: None,
                },
            },
            ..Default::default()
        };
        let text = info_text("http://127.0.0.1:8080", &info);
        for expected in [
            "Store:          etcd:http://10.0.0.9:2379\n",
            "Mode:           etcd\n",
            "Cluster ID:     c-1\n",
            "This node:      node-b\n",
            "Leader:         node-a at 10.0.0.1:8080 (since revision 42)\n",
            "Store health:   reachable (revision 50)\n",
            "Members (2):\n  NODE     ADDRESS         STATUS   LEADER\n",
            "  node-a   10.0.0.1:8080   Ready    yes\n",
            "  node-b   -               Down\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }

        let mut down = info.membership.clone();
        down.leader = None;
        down.store_health = StoreHealth {
            reachable: false,
            revision: None,
            message: Some("store unavailable during revision".into()),
        };
        let text = info_text(
            "http://x",
            &ClusterInfo {
                membership: down,
                ..info
            },
        );
        assert!(
            text.contains("Leader:         <none> (no daemon is elected"),
            "{text}"
        );
        assert!(
            text.contains("Store health:   UNREACHABLE: store unavailable during revision\n"),
            "{text}"
        );
    }
}
