//! `lagesbild watch` and `lagesbild recall`: live events and alerts from the
//! whole federation, as the org's own node received them; recalling the
//! events of a report entered in error.

use crate::client::Client;
use anyhow::{bail, Context, Result};
use lagesbild_proto::v1::event_service_client::EventServiceClient;
use lagesbild_proto::v1::{
    watch_item, Category, RecallReason, RecallRequest, SituationEvent, Tlp, WatchItem, WatchRequest,
};
use lagesbild_reports::category::{category_name, tlp_name};
use std::path::PathBuf;
use std::time::Duration;
use tonic::Code;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The org's client configuration (client.toml).
    #[arg(long)]
    config: PathBuf,
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
    /// Start after this item (the `seq` of the last one seen); 0 shows
    /// everything the node still keeps.
    #[arg(long, default_value_t = 0)]
    after: u64,
    /// Stop after this many items (default: follow until interrupted).
    #[arg(long)]
    count: Option<u64>,
}

/// What a tool claims when it watches.
const PURPOSE: &str = "situation-picture";

pub(crate) async fn run(args: Args) -> Result<()> {
    let client = Client::load(&args.config)?;
    let mut after = args.after;
    let mut left = args.count;
    let mut waiting = false;
    loop {
        if left == Some(0) {
            return Ok(());
        }
        let events = client.own_node_as(PURPOSE)?;
        let opened = EventServiceClient::new(events)
            .watch(WatchRequest { after })
            .await;
        let mut stream = match opened {
            Ok(stream) => stream.into_inner(),
            Err(status) if status.code() == Code::Unavailable => {
                if !waiting {
                    eprintln!("{}'s node is not answering; retrying", client.config.org);
                    waiting = true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(status) => {
                bail!(
                    "watching {}'s node: {:?}: {}",
                    client.config.org,
                    status.code(),
                    status.message()
                )
            }
        };
        waiting = false;
        // The stream ends when its token does; the loop asks again with a new one.
        loop {
            match stream.message().await {
                Ok(Some(item)) => {
                    after = item.seq;
                    if args.json {
                        println!("{}", serde_json::to_string(&json(&item))?);
                    } else {
                        print!("{}", render(&item));
                    }
                    if let Some(n) = left.as_mut() {
                        *n -= 1;
                        if *n == 0 {
                            return Ok(());
                        }
                    }
                }
                Ok(None) => break,
                Err(status)
                    if status.code() == Code::Unavailable || status.code() == Code::Unknown =>
                {
                    break;
                }
                Err(status) => bail!("watching: {:?}: {}", status.code(), status.message()),
            }
        }
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct RecallArgs {
    /// The org's client configuration (client.toml).
    #[arg(long)]
    config: PathBuf,
    /// The id of the report, as it was submitted.
    #[arg(long)]
    report_id: String,
    /// Why: entered-in-error or duplicate.
    #[arg(long, default_value = "entered-in-error")]
    reason: String,
}

pub(crate) async fn recall(args: RecallArgs) -> Result<()> {
    let reason = match args.reason.as_str() {
        "entered-in-error" => RecallReason::EnteredInError,
        "duplicate" => RecallReason::Duplicate,
        other => bail!("--reason {other:?}: entered-in-error or duplicate"),
    };
    let client = Client::load(&args.config)?;
    let channel = client.own_node_as("recall")?;
    let answer = EventServiceClient::new(channel)
        .recall(RecallRequest {
            report_id: args.report_id.clone(),
            reason: reason as i32,
        })
        .await
        .with_context(|| format!("recalling the events of report {:?}", args.report_id))?
        .into_inner();
    if answer.already_recalled {
        println!(
            "the events of report {:?} were recalled before",
            args.report_id
        );
    } else {
        println!(
            "recalled the events of report {:?} from {} feed(s)",
            args.report_id, answer.recipients
        );
    }
    Ok(())
}

/// Local (Swedish) clock time of a Unix time, HH:MM.
fn local_time(seconds: i64) -> String {
    let hour = u32::try_from(seconds.max(0) / 3600).unwrap_or(0);
    let local = seconds + i64::from(lagesbild_privacy::calendar::offset_hours(hour)) * 3600;
    let of_day = local.rem_euclid(86_400);
    format!("{:02}:{:02}", of_day / 3600, of_day % 3600 / 60)
}

fn local_seconds(seconds: i64) -> String {
    let of_day = seconds.rem_euclid(60);
    format!("{}:{of_day:02}", local_time(seconds))
}

fn category_of(event: &SituationEvent) -> &'static str {
    Category::try_from(event.category).map_or("unknown", category_name)
}

fn tlp_of(event: &SituationEvent) -> &'static str {
    Tlp::try_from(event.tlp).map_or("unknown", tlp_name)
}

fn reason_name(reason: i32) -> &'static str {
    match RecallReason::try_from(reason) {
        Ok(RecallReason::EnteredInError) => "entered in error",
        Ok(RecallReason::Duplicate) => "duplicate",
        _ => "no reason given",
    }
}

fn cell_name(event: &SituationEvent) -> String {
    event.cell.map_or_else(
        || "-".to_owned(),
        |c| format!("{}m:{}:{}", c.size_m, c.easting, c.northing),
    )
}

/// One item as terminal lines.
pub(crate) fn render(item: &WatchItem) -> String {
    let received = item.received_at.map_or(0, |t| t.seconds);
    let mut out = format!("#{:<5} {} ", item.seq, local_seconds(received));
    match &item.item {
        Some(watch_item::Item::Event(event)) => {
            let slot = |t: Option<prost_types::Timestamp>| local_time(t.map_or(0, |t| t.seconds));
            out.push_str(&format!(
                "{:<16} {:<15} severity {}  {}{}  {}–{}  expires {}  TLP:{}  id {}\n",
                event.org,
                category_of(event),
                event.severity,
                cell_name(event),
                if item.near.is_empty() {
                    String::new()
                } else {
                    format!(" (near {})", item.near)
                },
                slot(event.slot_start),
                slot(event.slot_end),
                slot(event.expires_at),
                tlp_of(event).to_uppercase(),
                &event.id[..event.id.len().min(12)],
            ));
            if !event.text.is_empty() {
                out.push_str(&format!("         \"{}\"\n", event.text));
            }
            for alert in &item.alerts {
                out.push_str(&format!(
                    "         ALERT {} -> playbook {}:\n",
                    alert.rule, alert.playbook
                ));
                for (i, action) in alert.actions.iter().enumerate() {
                    out.push_str(&format!("           {}. {action}\n", i + 1));
                }
            }
        }
        Some(watch_item::Item::Recall(recall)) => out.push_str(&format!(
            "{:<16} RECALLED        id {} ({}): drop this event\n",
            recall.org,
            &recall.id[..recall.id.len().min(12)],
            reason_name(recall.reason),
        )),
        None => out.push_str("(an item this version does not know)\n"),
    }
    out
}

/// One item as a JSON object.
pub(crate) fn json(item: &WatchItem) -> serde_json::Value {
    let received = item.received_at.map_or(0, |t| t.seconds);
    match &item.item {
        Some(watch_item::Item::Event(event)) => serde_json::json!({
            "seq": item.seq,
            "received_at": received,
            "kind": "event",
            "id": event.id,
            "org": event.org,
            "category": category_of(event),
            "severity": event.severity,
            "cell": cell_name(event),
            "near": item.near,
            "slot_start": event.slot_start.map_or(0, |t| t.seconds),
            "slot_end": event.slot_end.map_or(0, |t| t.seconds),
            "expires_at": event.expires_at.map_or(0, |t| t.seconds),
            "tlp": tlp_of(event),
            "text": event.text,
            "alerts": item.alerts.iter().map(|a| serde_json::json!({
                "rule": a.rule,
                "playbook": a.playbook,
                "actions": a.actions,
            })).collect::<Vec<_>>(),
        }),
        Some(watch_item::Item::Recall(recall)) => serde_json::json!({
            "seq": item.seq,
            "received_at": received,
            "kind": "recall",
            "id": recall.id,
            "org": recall.org,
            "reason": reason_name(recall.reason),
        }),
        None => serde_json::json!({ "seq": item.seq, "kind": "unknown" }),
    }
}
