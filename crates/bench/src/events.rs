//! Live event latency: five real nodes; reports arrive at the first at a fixed
//! rate, and the four others each watch what their own node takes in. Each
//! event's latency runs from the moment its report was sent to the origin to
//! the moment a peer's watch client has it: the origin's durable write and
//! release, the stream to the peer's node, its durable write, and its watch.

use crate::start_node;
use anyhow::{bail, Context, Result};
use lagesbild_proto::v1::event_service_client::EventServiceClient;
use lagesbild_proto::v1::report_service_client::ReportServiceClient;
use lagesbild_proto::v1::{
    watch_item, Category, Position, Report, Source, SubmitBatchRequest, Tlp, WatchRequest,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

const MEMBERS: [&str; 5] = [
    "polisen",
    "stockholm-stad",
    "amf-fastigheter",
    "svensk-handel",
    "scandic",
];

/// The origin gives every peer events of every category and marking, with
/// scrubbed text, so each report makes four events and the scrubber runs.
fn origin_policy() -> String {
    let mut text = String::from("version = 1\n");
    for member in &MEMBERS[1..] {
        text.push_str(&format!(
            "\n[peer.{member}]\nscopes = [\"events:read\"]\npurposes = [\"situation-picture\"]\ncategories = [\"all\"]\nfinest_cell = 250\nmax_tlp = \"red\"\ntext = true\n"
        ));
    }
    text
}

fn report(i: usize, now: i64) -> Report {
    Report {
        id: format!("live-{i}"),
        observed_at: Some(prost_types::Timestamp {
            seconds: now,
            nanos: 0,
        }),
        position: Some(Position {
            lat: 59.3326 + (i % 50) as f64 * 0.0004,
            lon: 18.0649 + (i % 37) as f64 * 0.0005,
        }),
        place_name: String::new(),
        category: [Category::Violence, Category::Theft, Category::Disorder][i % 3] as i32,
        severity: 1 + (i % 5) as u32,
        // The probe number survives scrubbing and names the report at the peers.
        text: format!("probe {i}: bråk utanför entrén, vakt tillkallad, ring 070-123 45 67"),
        persons: vec![],
        vehicle_plates: vec![],
        source: Source::Guard as i32,
        tlp: Tlp::Green as i32,
    }
}

pub async fn run(rate: usize, seconds: u64, batch: usize) -> Result<()> {
    let origin = MEMBERS[0];
    let mut federation = start_node(&MEMBERS).await?;
    std::fs::write(
        federation.dir.path().join(origin).join("policy.toml"),
        origin_policy(),
    )?;
    for org in &MEMBERS[1..] {
        federation.start_other(org).await?;
    }
    let total = rate * seconds as usize;
    let batch = batch.max(1);
    let sent: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; total]));

    // Each peer's own people watch their node; a warm-up report shows that
    // every peer's node follows the origin before the clock starts.
    let mut watchers = Vec::new();
    for peer in &MEMBERS[1..] {
        let stream = EventServiceClient::new(federation.authed(peer, peer, &["events:read"])?)
            .watch(WatchRequest { after: 0 })
            .await?
            .into_inner();
        watchers.push((peer.to_string(), stream));
    }
    let mut writer =
        ReportServiceClient::new(federation.authed(origin, origin, &["report:write"])?);
    let now = || {
        lagesbild_vocabulary::SystemClock
            .now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    };
    writer
        .submit_batch(SubmitBatchRequest {
            reports: vec![Report {
                id: "warm-up".into(),
                ..report(0, now())
            }],
            validate_only: false,
        })
        .await?;
    for (peer, stream) in &mut watchers {
        tokio::time::timeout(Duration::from_secs(60), stream.message())
            .await
            .with_context(|| format!("{peer} did not receive the warm-up event"))??
            .context("watch ended")?;
    }

    let tasks: Vec<_> = watchers
        .into_iter()
        .map(|(peer, mut stream)| {
            let sent = sent.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(total);
                while latencies.len() < total {
                    let item = tokio::time::timeout(Duration::from_secs(30), stream.message())
                        .await
                        .with_context(|| {
                            format!("{peer}: no event for 30 s after {}", latencies.len())
                        })??
                        .context("watch ended")?;
                    let arrived = Instant::now();
                    let Some(watch_item::Item::Event(event)) = item.item else {
                        bail!("{peer}: an item that is not an event");
                    };
                    let probe: usize = event
                        .text
                        .strip_prefix("probe ")
                        .and_then(|t| t.split(':').next())
                        .and_then(|n| n.parse().ok())
                        .with_context(|| format!("{peer}: no probe number in {:?}", event.text))?;
                    let at = sent.lock().expect("sent lock")[probe]
                        .with_context(|| format!("{peer}: probe {probe} was never sent"))?;
                    latencies.push(arrived.duration_since(at));
                }
                Ok::<_, anyhow::Error>((peer, latencies))
            })
        })
        .collect();

    // Open loop: a call starts on every tick whatever the earlier ones are
    // doing (up to a bound), so a slow answer shows as latency, not as a lower rate.
    let tick = Duration::from_secs_f64(batch as f64 / rate as f64);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(256));
    let mut next = tokio::time::Instant::now();
    let started = Instant::now();
    let mut calls = Vec::new();
    let mut i = 0;
    while i < total {
        tokio::time::sleep_until(next).await;
        next += tick;
        let permit = in_flight.clone().acquire_owned().await?;
        let at = now();
        let reports: Vec<Report> = (i..(i + batch).min(total)).map(|k| report(k, at)).collect();
        {
            let mut sent = sent.lock().expect("sent lock");
            let moment = Instant::now();
            for k in i..i + reports.len() {
                sent[k] = Some(moment);
            }
        }
        i += reports.len();
        let mut writer = writer.clone();
        calls.push(tokio::spawn(async move {
            let stored = writer
                .submit_batch(SubmitBatchRequest {
                    reports,
                    validate_only: false,
                })
                .await?
                .into_inner();
            drop(permit);
            if stored.duplicates > 0 {
                bail!("duplicates in the bench's own reports");
            }
            Ok(())
        }));
    }
    for call in calls {
        call.await??;
    }
    let sending = started.elapsed();
    let mut all = Vec::new();
    println!(
        "events bench: {total} reports at {origin} at {rate}/s ({batch} a call, calls started on a fixed clock; {:.0}/s achieved), each an event for 4 peers; latency from sending the report to the peer's watch client",
        total as f64 / sending.as_secs_f64()
    );
    for task in tasks {
        let (peer, mut latencies) = task.await??;
        latencies.sort_unstable();
        let at = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
        println!(
            "  {peer:<16} {} events: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            latencies.len(),
            ms(at(0.50)),
            ms(at(0.99)),
            ms(at(1.0))
        );
        all.extend(latencies);
    }
    all.sort_unstable();
    let at = |p: f64| all[((all.len() - 1) as f64 * p).round() as usize];
    println!(
        "  all 4 peers      {} deliveries: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        all.len(),
        ms(at(0.50)),
        ms(at(0.99)),
        ms(at(1.0))
    );
    let pids = std::iter::once(federation.node.pid())
        .chain(federation.others.iter().map(|c| c.pid()))
        .map(|pid| crate::proc_status_kib(pid, "VmRSS:").map(|kib| kib / 1024))
        .collect::<Result<Vec<_>>>()?;
    println!("  resident memory of the nodes afterwards, MB: {pids:?}");
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
