//! Federated picture latency: five real nodes, each holding its own reports; an
//! analyst of the first asks for the picture again and again.

use crate::{start_node, OneNode};
use anyhow::{bail, Result};
use lagesbild_proto::v1::picture_service_client::PictureServiceClient;
use lagesbild_proto::v1::report_service_client::ReportServiceClient;
use lagesbild_proto::v1::{
    AnswerStatus, BucketKind, PictureRequest, SituationPicture, SubmitBatchRequest,
};
use lagesbild_reports::synthetic;
use prost::Message;
use std::time::{Duration, Instant, SystemTime};

pub(crate) const MEMBERS: [&str; 5] = [
    "polisen",
    "stockholm-stad",
    "amf-fastigheter",
    "svensk-handel",
    "scandic",
];

/// Every member may ask every node (its own included) for 250 m × hour, k = 3,
/// for the purpose "bench", far more often than the bench asks.
pub(crate) fn policy() -> String {
    let mut text = String::from("version = 1\n");
    for member in MEMBERS {
        text.push_str(&format!(
            "\n[peer.{member}]\nscopes = [\"aggregate:read\"]\npurposes = [\"bench\"]\ncategories = [\"all\"]\nfinest_cell = 250\nfinest_bucket = \"hour\"\nk = 3\nrate_limit = 100000000\n"
        ));
    }
    text
}

/// Five nodes, each loaded with `reports` synthetic reports of 30 days up to
/// `end` (member i with seed i).
pub(crate) async fn loaded_federation(reports: usize, end: SystemTime) -> Result<OneNode> {
    let mut federation = start_node(&MEMBERS).await?;
    let policy = policy();
    for org in MEMBERS {
        std::fs::write(federation.dir.path().join(org).join("policy.toml"), &policy)?;
    }
    for org in &MEMBERS[1..] {
        federation.start_other(org).await?;
    }
    for (seed, org) in MEMBERS.iter().enumerate() {
        eprintln!("loading {reports} reports into {org}'s node ...");
        load(&federation, org, seed as u64, reports, end).await?;
    }
    Ok(federation)
}

/// How the bench runs: which windows, how many pictures, in which form, and
/// which other build (if any) to run alternately on the same data.
pub struct PictureRun<'a> {
    /// Reports in each node.
    pub reports: usize,
    /// Pictures asked per window and turn.
    pub queries: usize,
    /// Windows, hours back from now.
    pub windows: &'a [u32],
    /// The bucket of the pictures.
    pub bucket: BucketKind,
    /// Ask for the picture as rows (`PictureCell`s) instead of columns.
    pub rows: bool,
    /// Another build's `lagesbild`: its nodes and this build's take turns
    /// on the same data, `turns` times each.
    pub against: Option<&'a std::path::Path>,
    /// Turns of each build when comparing.
    pub turns: usize,
}

pub async fn run(bench: PictureRun<'_>) -> Result<()> {
    let home = MEMBERS[0];
    let loading = Instant::now();
    let mut federation =
        loaded_federation(bench.reports, lagesbild_vocabulary::SystemClock.now()).await?;
    println!(
        "picture bench: 5 nodes x {} reports over 30 days (loaded in {:.0} s); {home}'s analyst asks, 250 m x {}, all categories, one picture at a time, as {}",
        bench.reports,
        loading.elapsed().as_secs_f64(),
        bench.bucket.as_str_name().trim_start_matches("BUCKET_KIND_").to_ascii_lowercase(),
        if bench.rows { "rows" } else { "columns" },
    );
    let Some(other) = bench.against else {
        return measure(&federation, &bench).await;
    };
    let this = crate::lagesbild()?;
    for turn in 0..bench.turns {
        // Each build goes first in every other turn.
        let order = if turn % 2 == 0 {
            [("this build", this.as_path()), ("the other build", other)]
        } else {
            [("the other build", other), ("this build", this.as_path())]
        };
        for (name, exe) in order {
            federation.restart_all(exe).await?;
            println!("turn {}, {name} ({}):", turn + 1, exe.display());
            measure(&federation, &bench).await?;
        }
    }
    Ok(())
}

/// Asks the picture of each window `queries` times and prints what it took.
async fn measure(federation: &OneNode, bench: &PictureRun<'_>) -> Result<()> {
    let home = MEMBERS[0];
    let mut client =
        PictureServiceClient::new(federation.authed(home, home, &["aggregate:read"])?)
            .max_decoding_message_size(256 << 20);
    for &hours in bench.windows {
        let mut request = picture_request(hours);
        request.columnar = !bench.rows;
        if let Some(filters) = request.filters.as_mut() {
            filters.bucket = bench.bucket as i32;
        }
        let first = warm_picture(&mut client, &request).await?;
        let released: u32 = first.answers.iter().map(|a| a.values).sum();
        let merged = first
            .columns
            .as_ref()
            .and_then(|c| c.checked_len())
            .unwrap_or(first.cells.len());
        let mut latencies = Vec::with_capacity(bench.queries);
        let mut slowest_answers = Vec::with_capacity(bench.queries);
        // CPU of every process over the timed pictures: where a picture's work goes.
        let pids: Vec<u32> = std::iter::once(&federation.node)
            .chain(&federation.others)
            .map(|n| n.pid())
            .chain(std::iter::once(std::process::id()))
            .collect();
        let cpu = || -> Result<Vec<f64>> { pids.iter().map(|&p| crate::cpu_seconds(p)).collect() };
        let cpu_before = cpu()?;
        for _ in 0..bench.queries {
            let started = Instant::now();
            let picture = client.picture(request.clone()).await?.into_inner();
            latencies.push(started.elapsed());
            slowest_answers.push(Duration::from_micros(
                picture
                    .answers
                    .iter()
                    .map(|a| a.latency_micros)
                    .max()
                    .unwrap_or(0),
            ));
            if picture.answers.len() != MEMBERS.len() {
                bail!(
                    "{} answers, expected {}",
                    picture.answers.len(),
                    MEMBERS.len()
                );
            }
        }
        let cpu_ms: Vec<f64> = cpu()?
            .iter()
            .zip(&cpu_before)
            .map(|(after, before)| (after - before) * 1e3 / bench.queries as f64)
            .collect();
        latencies.sort_unstable();
        slowest_answers.sort_unstable();
        let at = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
        println!(
            "  last {hours} h: {merged} merged values from {released} released values, {:.1} kB; {} pictures: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; slowest member's answer (of the main query) p50 {:.2} ms",
            first.encoded_len() as f64 / 1e3,
            bench.queries,
            ms(at(0.50)),
            ms(at(0.99)),
            ms(at(1.0)),
            ms(slowest_answers[slowest_answers.len() / 2]),
        );
        let (home_cpu, rest) = cpu_ms.split_first().expect("the home node");
        let (client_cpu, peers_cpu) = rest.split_last().expect("the client");
        println!(
            "    CPU a picture: home node {home_cpu:.1} ms, peers {} ms, client {client_cpu:.1} ms; in all {:.1} ms on 2 cores",
            peers_cpu
                .iter()
                .map(|c| format!("{c:.1}"))
                .collect::<Vec<_>>()
                .join(" / "),
            cpu_ms.iter().sum::<f64>()
        );
    }
    Ok(())
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One picture to warm the peer channels, which every member must have
/// answered: a figure with a member missing would measure another picture.
pub(crate) async fn warm_picture(
    client: &mut PictureServiceClient<lagesbild_auth::AuthChannel>,
    request: &PictureRequest,
) -> Result<SituationPicture> {
    let first = client.picture(request.clone()).await?.into_inner();
    let refused: Vec<String> = first
        .answers
        .iter()
        .filter(|a| a.status != AnswerStatus::Ok as i32)
        .map(|a| format!("{}: {}", a.org, a.reason))
        .collect();
    if !refused.is_empty() {
        bail!("peers did not answer: {}", refused.join("; "));
    }
    Ok(first)
}

pub(crate) fn picture_request(hours: u32) -> PictureRequest {
    PictureRequest {
        filters: Some(crate::last_hours_at_250m(hours)),
        top: 10,
        deadline_ms: 0,
        columnar: true,
    }
}

/// Streams `count` synthetic reports of `org` into its node.
async fn load(
    federation: &OneNode,
    org: &str,
    seed: u64,
    count: usize,
    end: SystemTime,
) -> Result<()> {
    let mut reports = synthetic::generate(org, seed, count, 30, end);
    for (i, r) in reports.iter_mut().enumerate() {
        r.id = format!("bench-{i}");
    }
    let batches: Vec<SubmitBatchRequest> = reports
        .chunks(2_000)
        .map(|chunk| SubmitBatchRequest {
            reports: chunk.to_vec(),
            validate_only: false,
        })
        .collect();
    drop(reports);
    let mut writer = ReportServiceClient::new(federation.authed(org, org, &["report:write"])?)
        .max_encoding_message_size(64 << 20);
    let summary = writer
        .submit_stream(tokio_stream::iter(batches))
        .await?
        .into_inner();
    if summary.stored != count as u64 {
        bail!("{org}: stored {} of {count}", summary.stored);
    }
    Ok(())
}
