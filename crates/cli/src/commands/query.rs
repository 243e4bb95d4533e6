//! `lagesbild query`: the federated situation picture, as a table, JSON,
//! GeoJSON or a self-contained HTML page.

use crate::client::Client;
use anyhow::{bail, Context, Result};
use lagesbild_geo::{Cell, CellSize};
use lagesbild_proto::v1::picture_service_client::PictureServiceClient;
use lagesbild_proto::v1::{
    AnswerStatus, BucketKind, Category, PictureRequest, ReleaseRequest, SituationPicture,
};
use lagesbild_reports::category::{category_name, parse_category};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::PathBuf;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum Format {
    Table,
    Json,
    Geojson,
    Html,
}

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The org's client configuration (client.toml).
    #[arg(long)]
    config: PathBuf,
    /// Start, RFC 3339 (default: 30 days ago).
    #[arg(long)]
    from: Option<String>,
    /// End, RFC 3339 (default: now).
    #[arg(long)]
    to: Option<String>,
    /// Categories (repeat); default every category each peer allows.
    #[arg(long = "category")]
    categories: Vec<String>,
    /// Cell size in metres: 100, 250, 500, 1000.
    #[arg(long, default_value_t = 250)]
    cell: u32,
    /// hour, day, week, hour-of-day, hour-of-week.
    #[arg(long, default_value = "day")]
    bucket: String,
    /// Places to rank.
    #[arg(long, default_value_t = 10)]
    top: u32,
    /// The purpose the token claims.
    #[arg(long, default_value = "situation-picture")]
    purpose: String,
    /// How long to wait for each peer, milliseconds.
    #[arg(long, default_value_t = 2000)]
    deadline_ms: u32,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

impl Args {
    /// The defaults of the command line, for `config`.
    pub(crate) fn defaults(config: PathBuf) -> Self {
        Self {
            config,
            from: None,
            to: None,
            categories: vec![],
            cell: 250,
            bucket: "day".into(),
            top: 10,
            purpose: "situation-picture".into(),
            deadline_ms: 2000,
            format: Format::Table,
        }
    }
}

fn timestamp(text: &str, flag: &str) -> Result<prost_types::Timestamp> {
    let t = OffsetDateTime::parse(text, &Rfc3339).with_context(|| {
        format!("--{flag} {text:?}: expected RFC 3339, e.g. 2026-11-01T00:00:00+01:00")
    })?;
    Ok(prost_types::Timestamp {
        seconds: t.unix_timestamp(),
        nanos: 0,
    })
}

fn bucket_kind(name: &str) -> Result<BucketKind> {
    Ok(match name {
        "hour" => BucketKind::Hour,
        "day" => BucketKind::Day,
        "week" => BucketKind::Week,
        "hour-of-day" => BucketKind::HourOfDay,
        "hour-of-week" => BucketKind::HourOfWeek,
        _ => bail!("--bucket {name:?}: expected hour, day, week, hour-of-day or hour-of-week"),
    })
}

/// Asks the org's own node for the federated picture.
pub(crate) async fn picture(client: &Client, args: &Args) -> Result<SituationPicture> {
    let now = OffsetDateTime::from(lagesbild_vocabulary::SystemClock.now()).unix_timestamp();
    let from = match &args.from {
        Some(t) => timestamp(t, "from")?,
        None => prost_types::Timestamp {
            seconds: now - 30 * 86_400,
            nanos: 0,
        },
    };
    let to = match &args.to {
        Some(t) => timestamp(t, "to")?,
        None => prost_types::Timestamp {
            seconds: now,
            nanos: 0,
        },
    };
    let mut categories = Vec::new();
    for name in &args.categories {
        let c = parse_category(name)
            .with_context(|| format!("--category {name:?} is not a category"))?;
        categories.push(c as i32);
    }
    let filters = ReleaseRequest {
        unless_digest: Vec::new(),
        purpose: args.purpose.clone(),
        from: Some(from),
        to: Some(to),
        categories,
        area: None,
        cell_size_m: args.cell,
        bucket: bucket_kind(&args.bucket)? as i32,
        totals_only: false,
        columnar: false,
    };
    let mut service = PictureServiceClient::new(client.own_node_as(&args.purpose)?)
        .max_decoding_message_size(256 << 20);
    let picture = service
        .picture(PictureRequest {
            filters: Some(filters),
            top: args.top,
            deadline_ms: args.deadline_ms,
            // Columns are several times smaller on the wire; the rows are
            // made here.
            columnar: true,
        })
        .await
        .with_context(|| {
            format!(
                "asking {}'s node for the situation picture",
                client.config.org
            )
        })?;
    let mut picture = picture.into_inner();
    if let Some(columns) = picture.columns.take() {
        if columns.checked_len().is_none() {
            bail!("the node's picture is malformed: its columns differ in length");
        }
        let profile = matches!(
            BucketKind::try_from(picture.bucket),
            Ok(BucketKind::HourOfDay | BucketKind::HourOfWeek)
        );
        picture.cells = lagesbild_proto::columns::picture_rows(
            &columns,
            picture.cell_size_m,
            profile,
            &picture.answers,
        );
    }
    Ok(picture)
}

pub(crate) async fn run(args: Args) -> Result<()> {
    let client = Client::load(&args.config)?;
    let picture = picture(&client, &args).await?;
    let out = match args.format {
        Format::Table => table(&picture),
        Format::Json => serde_json::to_string_pretty(&to_json(&picture))?,
        Format::Geojson => serde_json::to_string_pretty(&geojson(&picture))?,
        Format::Html => html(&picture),
    };
    println!("{out}");
    Ok(())
}

fn status_name(status: i32) -> &'static str {
    match AnswerStatus::try_from(status) {
        Ok(AnswerStatus::Ok) => "ok",
        Ok(AnswerStatus::Denied) => "denied",
        Ok(AnswerStatus::Unavailable) => "unavailable",
        Ok(AnswerStatus::Timeout) => "timeout",
        Ok(AnswerStatus::BudgetExhausted) => "budget exhausted",
        _ => "error",
    }
}

fn category(code: i32) -> &'static str {
    Category::try_from(code).map_or("unknown", category_name)
}

/// The picture in words and columns.
pub(crate) fn table(p: &SituationPicture) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Situation picture from {} ({} m cells):",
        p.home_org, p.cell_size_m
    );
    let _ = writeln!(
        out,
        "\n  {:<18} {:<17} {:>7} {:>4} {:>8}  reason",
        "org", "answer", "values", "k", "latency"
    );
    for a in &p.answers {
        let _ = writeln!(
            out,
            "  {:<18} {:<17} {:>7} {:>4} {:>6.1}ms  {}",
            a.org,
            status_name(a.status),
            a.values,
            a.k,
            a.latency_micros as f64 / 1000.0,
            a.reason
        );
    }
    let _ = writeln!(out, "\n  Most unsafe places (released severity):");
    for (i, r) in p.ranking.iter().enumerate() {
        let cell = r.cell.unwrap_or_default();
        let _ = writeln!(
            out,
            "  {:>2}. {:<28} score {:>6}  reports {:>5}  cell {}m:{}:{}",
            i + 1,
            format!("{} ({} m)", r.place_name, r.place_distance_m),
            r.score,
            r.count,
            cell.size_m,
            cell.easting,
            cell.northing
        );
    }
    let max = p.hour_of_day.iter().copied().max().unwrap_or(0).max(1);
    let _ = writeln!(out, "\n  Hour of day (local), released counts:");
    for (hour, n) in p.hour_of_day.iter().enumerate() {
        let bar = "#".repeat((n * 40 / max) as usize);
        let _ = writeln!(out, "  {hour:02} {n:>6} {bar}");
    }
    let withheld = p.cells.iter().filter(|c| !c.withheld_by.is_empty()).count();
    let _ = write!(
        out,
        "\n  {} values in the picture; {} of them with an org that withheld its part (below its k).",
        p.cells.len(),
        withheld
    );
    out
}

fn cell_of(size: u32, easting: u32, northing: u32) -> Cell {
    Cell {
        size: CellSize::from_metres(size).unwrap_or(CellSize::M250),
        easting,
        northing,
    }
}

/// The orgs of the picture's answers at `indices` (a cell's contributors or
/// withholders); an index with no answer is named as such.
fn org_names<'a>(p: &'a SituationPicture, indices: &[u32]) -> Vec<&'a str> {
    indices
        .iter()
        .map(|&i| {
            p.answers
                .get(i as usize)
                .map_or("(no such answer)", |a| a.org.as_str())
        })
        .collect()
}

fn to_json(p: &SituationPicture) -> Value {
    json!({
        "home_org": p.home_org,
        "from": p.from.map(|t| t.seconds),
        "to": p.to.map(|t| t.seconds),
        "cell_size_m": p.cell_size_m,
        "answers": p.answers.iter().map(|a| json!({
            "org": a.org, "status": status_name(a.status), "reason": a.reason,
            "k": a.k, "epsilon": a.epsilon, "values": a.values,
            "categories": a.categories.iter().map(|&c| category(c)).collect::<Vec<_>>(),
            "latency_ms": a.latency_micros as f64 / 1000.0,
        })).collect::<Vec<_>>(),
        "cells": p.cells.iter().map(|c| {
            let v = c.value.unwrap_or_default();
            let g = v.cell.unwrap_or_default();
            json!({
                "cell": {"size_m": g.size_m, "easting": g.easting, "northing": g.northing},
                "bucket_start": v.bucket_start.map(|t| t.seconds), "slot": v.slot,
                "category": category(v.category), "count": v.count, "severity_sum": v.severity_sum,
                "contributors": org_names(p, &c.contributors), "withheld_by": org_names(p, &c.withheld_by),
            })
        }).collect::<Vec<_>>(),
        "ranking": p.ranking.iter().map(|r| json!({
            "place": r.place_name, "place_distance_m": r.place_distance_m, "score": r.score,
            "count": r.count, "lat": r.centre_lat, "lon": r.centre_lon,
        })).collect::<Vec<_>>(),
        "hour_of_day": p.hour_of_day,
        "hour_of_week": p.hour_of_week,
    })
}

/// One cell's totals over buckets and categories.
#[derive(Debug, Default)]
struct CellTotal {
    count: u64,
    severity: u64,
    categories: Vec<String>,
    orgs: Vec<String>,
}

/// Per cell (size, easting, northing), totals over buckets.
fn cell_totals(p: &SituationPicture) -> Vec<((u32, u32, u32), CellTotal)> {
    let mut totals: std::collections::BTreeMap<(u32, u32, u32), CellTotal> = Default::default();
    for c in &p.cells {
        let v = c.value.unwrap_or_default();
        let g = v.cell.unwrap_or_default();
        let t = totals.entry((g.size_m, g.easting, g.northing)).or_default();
        t.count += v.count;
        t.severity += v.severity_sum;
        let name = category(v.category).to_string();
        if !t.categories.contains(&name) {
            t.categories.push(name);
        }
        for org in org_names(p, &c.contributors) {
            if !t.orgs.iter().any(|o| o == org) {
                t.orgs.push(org.to_owned());
            }
        }
    }
    totals.into_iter().collect()
}

/// WGS84 polygons of the cells, with totals as properties (loads in QGIS).
pub(crate) fn geojson(p: &SituationPicture) -> Value {
    let features: Vec<Value> = cell_totals(p)
        .into_iter()
        .map(|((size, e, n), t)| {
            let corners = cell_of(size, e, n).corners_wgs84();
            let mut ring: Vec<[f64; 2]> = corners.iter().map(|&(lon, lat)| [lon, lat]).collect();
            ring.push(ring[0]);
            json!({
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {
                    "cell": format!("{size}m:{e}:{n}"), "count": t.count, "severity_sum": t.severity,
                    "categories": t.categories.join(","), "contributors": t.orgs.join(","),
                },
            })
        })
        .collect();
    json!({"type": "FeatureCollection", "features": features})
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One self-contained page: heat map (SVG), ranking, hour-of-day chart, answers.
pub(crate) fn html(p: &SituationPicture) -> String {
    let totals = cell_totals(p);
    let (width, height): (f64, f64) = (720.0, 560.0);
    let (mut min_e, mut min_n, mut max_e, mut max_n) = (u32::MAX, u32::MAX, 0, 0);
    for ((size, e, n), _) in &totals {
        min_e = min_e.min(*e);
        min_n = min_n.min(*n);
        max_e = max_e.max(e + size);
        max_n = max_n.max(n + size);
    }
    let span = f64::from(
        max_e
            .saturating_sub(min_e)
            .max(max_n.saturating_sub(min_n))
            .max(1),
    );
    let scale = (width.min(height) - 40.0) / span;
    let max_score = totals
        .iter()
        .map(|(_, t)| t.severity)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let mut svg = String::new();
    for ((size, e, n), t) in &totals {
        let (count, severity) = (t.count, t.severity);
        let x = 20.0 + f64::from(e - min_e) * scale;
        let y = 20.0 + f64::from(max_n - n - size) * scale;
        let side = f64::from(*size) * scale;
        let heat = severity as f64 / max_score;
        let _ = write!(
            svg,
            r##"<rect x="{x:.1}" y="{y:.1}" width="{side:.1}" height="{side:.1}" fill="rgb(255,{g},0)" fill-opacity="{o:.2}" stroke="#444" stroke-width="0.3"><title>{e}/{n}: {count} reports, severity {severity}; {c}; from {orgs}</title></rect>"##,
            g = (220.0 * (1.0 - heat)) as u8,
            o = 0.25 + 0.7 * heat,
            c = escape(&t.categories.join(", ")),
            orgs = escape(&t.orgs.join(", ")),
        );
    }
    for r in &p.ranking {
        let g = r.cell.unwrap_or_default();
        let x = 20.0 + f64::from(g.easting - min_e.min(g.easting)) * scale;
        let y = 20.0 + f64::from(max_n.saturating_sub(g.northing + g.size_m)) * scale;
        let _ = write!(
            svg,
            r##"<text x="{x:.1}" y="{y:.1}" font-size="11" fill="#000">{}</text>"##,
            escape(&r.place_name)
        );
    }
    let mut ranking = String::new();
    for r in &p.ranking {
        let _ = write!(
            ranking,
            "<li>{} ({} m) — score {}, {} reports</li>",
            escape(&r.place_name),
            r.place_distance_m,
            r.score,
            r.count
        );
    }
    let max_hour = p.hour_of_day.iter().copied().max().unwrap_or(1).max(1) as f64;
    let mut chart = String::new();
    for (h, n) in p.hour_of_day.iter().enumerate() {
        let bar = 120.0 * *n as f64 / max_hour;
        let _ = write!(
            chart,
            r##"<rect x="{x}" y="{y:.1}" width="16" height="{bar:.1}" fill="#c33"><title>{h:02}:00 {n}</title></rect><text x="{x}" y="140" font-size="9">{h:02}</text>"##,
            x = 10 + h * 20,
            y = 125.0 - bar
        );
    }
    let mut answers = String::new();
    for a in &p.answers {
        let _ = write!(
            answers,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&a.org),
            status_name(a.status),
            a.values,
            a.k,
            escape(&a.reason)
        );
    }
    format!(
        r##"<!DOCTYPE html>
<html lang="sv"><head><meta charset="utf-8"><title>Lägesbild — {home}</title>
<style>body{{font-family:sans-serif;margin:1em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 6px}}</style></head>
<body><h1>Lägesbild</h1><p>Federated situation picture asked by {home}; {size} m cells. Colour: released severity (yellow low, red high); hover a cell for details. Values an organisation withheld (below its k) are not shown.</p>
<svg id="map" width="{width}" height="{height}" viewBox="0 0 {width} {height}">{svg}</svg>
<p>Legend: <span style="background:rgb(255,220,0)">&nbsp;low&nbsp;</span> <span style="background:rgb(255,0,0);color:#fff">&nbsp;high&nbsp;</span></p>
<h2>Most unsafe places</h2><ol id="ranking">{ranking}</ol>
<h2>Hour of day (local)</h2><svg id="hours" width="500" height="150">{chart}</svg>
<h2>Who answered</h2><table id="answers"><tr><th>org</th><th>answer</th><th>values</th><th>k</th><th>reason</th></tr>{answers}</table>
</body></html>"##,
        home = escape(&p.home_org),
        size = p.cell_size_m,
    )
}
