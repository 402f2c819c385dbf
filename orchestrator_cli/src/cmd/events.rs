//! `events [--workload W] [--limit N]`.

use super::{Ctx, Names};
use crate::duration::format_age;
use crate::error::CliError;
use crate::output::{print_structured, table};
use chrono::{DateTime, Utc};
use clap::Args;
use orchestrator_client::{Events, PageRequest};
use orchestrator_shared_types::Event;
use std::io::Write;

/// `events` arguments.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only this workload's events (name or id).
    #[arg(long)]
    pub workload: Option<String>,
    /// How many of the most recent events (the server's default is 100, its maximum 1000).
    #[arg(long)]
    pub limit: Option<u32>,
}

/// Runs `events`.
pub async fn run(ctx: &Ctx, args: EventsArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let events = Events {
        workload: args.workload,
        after: None,
    };
    let list = ctx
        .client
        .list(&events, &PageRequest::after(args.limit, None))
        .await?;
    if ctx.format.is_structured() {
        return print_structured(out, ctx.format, &list);
    }
    if list.items.is_empty() {
        eprintln!("No events found.");
        return Ok(());
    }
    // Events keep the workload's name; only node ids need resolving.
    let names = Names::fetch(&ctx.client, false, true).await;
    out.write_all(events_table(&list.items, &names, ctx.format.is_wide(), Utc::now()).as_bytes())?;
    Ok(())
}

/// AGE, KIND, WORKLOAD, MESSAGE, oldest first; wide adds INSTANCE, NODE, SEQ before MESSAGE.
pub fn events_table(events: &[Event], names: &Names, wide: bool, now: DateTime<Utc>) -> String {
    let mut header = vec!["AGE", "KIND", "WORKLOAD"];
    if wide {
        header.extend(["INSTANCE", "NODE", "SEQ"]);
    }
    // MESSAGE stays last: it is the long column, and the others stay aligned before it.
    header.push("MESSAGE");
    let rows = events.iter().map(|e| {
        let mut cells = vec![
            format_age(e.time, now),
            format!("{:?}", e.kind),
            e.workload_name.clone().unwrap_or_else(|| "-".to_owned()),
        ];
        if wide {
            cells.extend([
                e.instance_id
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |i| i.0.clone()),
                names.node(e.node_id.as_ref()),
                e.seq.to_string(),
            ]);
        }
        cells.push(e.message.clone());
        cells
    });
    table(&header, rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_shared_types::EventKind;

    #[test]
    fn events_read_oldest_first() {
        let now = Utc::now();
        let mut e = Event::new(EventKind::Scheduled, "placed web-1 on n1");
        e.time = now - chrono::Duration::seconds(30);
        e.workload_name = Some("web".into());
        assert_eq!(
            events_table(&[e], &Names::default(), false, now),
            "AGE   KIND        WORKLOAD   MESSAGE\n30s   Scheduled   web        placed web-1 on n1\n"
        );
    }
}
