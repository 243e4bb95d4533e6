//! The console in a real browser: five loaded nodes, each with its console;
//! polisen's analyst signs in in headless Chromium. Measured: the first
//! picture on the map after navigation, the picture call the map makes,
//! frames while 10,000 cells pan and zoom, and how long a report stored at
//! another member takes to be on polisen's page.

use crate::picture::{loaded_federation, MEMBERS};
use crate::{free_port, ANALYST};
use anyhow::{bail, Context, Result};
use lagesbild_harness::browser::{spki_hash, Browser};
use lagesbild_proto::v1::report_service_client::ReportServiceClient;
use lagesbild_proto::v1::{Category, Position, Report, Source, SubmitBatchRequest, Tlp};
use serde_json::{json, Value};
use std::time::{Duration, UNIX_EPOCH};

/// The picture bench's policy, and events of every category for polisen.
fn policy() -> String {
    let mut text = crate::picture::policy();
    text = text.replace(
        "[peer.polisen]\nscopes = [\"aggregate:read\"]\npurposes = [\"bench\"]",
        "[peer.polisen]\nscopes = [\"aggregate:read\", \"events:read\"]\npurposes = [\"bench\", \"situation-picture\"]\nmax_tlp = \"red\"\ntext = true",
    );
    text.replace(
        "purposes = [\"bench\"]",
        "purposes = [\"bench\", \"situation-picture\"]",
    )
}

fn probe(i: usize) -> Report {
    let now = lagesbild_vocabulary::SystemClock
        .now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    Report {
        id: format!("console-probe-{i}"),
        observed_at: Some(prost_types::Timestamp {
            seconds: now,
            nanos: 0,
        }),
        position: Some(Position {
            lat: 59.3326 + (i % 20) as f64 * 0.0004,
            lon: 18.0649,
        }),
        place_name: String::new(),
        category: Category::Violence as i32,
        severity: 4,
        text: format!("probe {i}"),
        persons: vec![],
        vehicle_plates: vec![],
        source: Source::Guard as i32,
        tlp: Tlp::Green as i32,
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summary(name: &str, mut values: Vec<f64>) -> String {
    values.sort_by(f64::total_cmp);
    format!(
        "{name}: n {}, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        values.len(),
        percentile(&values, 0.5),
        percentile(&values, 0.99),
        percentile(&values, 1.0)
    )
}

/// Draws 10,000 cells (a 100 × 100 block of 100 m cells over the city), then
/// pans and zooms the map for six seconds while every animation frame is
/// timed; the long animation frames the browser reports are collected too.
const PAN_AND_ZOOM: &str = r"
var done = arguments[arguments.length - 1];
var map = window.lagesbild.map, layer = window.lagesbild.cells;
var cells = [];
for (var r = 0; r < 100; r++) {
  for (var c = 0; c < 100; c++) {
    var lat = 59.300 + r * 0.0009, lon = 17.980 + c * 0.00175;
    cells.push({ key: r + ':' + c, corners: [[lat, lon], [lat, lon + 0.00175], [lat + 0.0009, lon + 0.00175], [lat + 0.0009, lon]],
                 count: 1, categories: {}, contributors: {}, withheld: {}, step: (r + c) % 8 });
  }
}
map.setView([59.3340, 18.0630], 14, { animate: false });
layer.setCells(cells);
var long = [];
try {
  new PerformanceObserver(function (list) {
    list.getEntries().forEach(function (e) { long.push(e.duration); });
  }).observe({ type: 'long-animation-frame' });
} catch (e) { long = null; }
requestAnimationFrame(function () {
  var redraw = performance.now();
  layer._renderer._redraw();
  redraw = performance.now() - redraw;
  var frames = [], start = performance.now();
  var moves = [
    function () { map.panBy([300, 0]); }, function () { map.panBy([0, 200]); },
    function () { map.zoomIn(); }, function () { map.panBy([-300, 0]); },
    function () { map.zoomOut(); }, function () { map.panBy([0, -200]); },
    function () { map.zoomOut(); }, function () { map.zoomIn(); },
    function () { map.panBy([200, 200]); }, function () { map.panBy([-200, -200]); }
  ];
  moves.forEach(function (move, i) { setTimeout(move, 300 + i * 500); });
  function tick(t) {
    frames.push(t);
    if (t - start < 6000) { requestAnimationFrame(tick); return; }
    var gaps = [];
    for (var i = 1; i < frames.length; i++) { gaps.push(frames[i] - frames[i - 1]); }
    done({ drawn: layer._cells.length, redraw_ms: redraw, gaps: gaps, long_frames: long });
  }
  requestAnimationFrame(tick);
});
";

pub async fn run(reports: usize, paints: usize, events: usize) -> Result<()> {
    let mut federation =
        loaded_federation(reports, lagesbild_vocabulary::SystemClock.now()).await?;
    // Every node gets its console; polisen may receive everyone's events.
    let home = MEMBERS[0];
    let port = free_port()?;
    for org in MEMBERS {
        let dir = federation.dir.path().join(org);
        let listen = if org == home {
            format!("127.0.0.1:{port}")
        } else {
            "127.0.0.1:0".to_owned()
        };
        let config = dir.join("node.toml");
        let mut text = std::fs::read_to_string(&config)?;
        text.push_str(&format!("\n[console]\nlisten = \"{listen}\"\n"));
        std::fs::write(&config, text)?;
        std::fs::write(dir.join("policy.toml"), policy())?;
    }
    // The bench's analyst at polisen also watches live events (a duty
    // officer's part).
    let out = std::process::Command::new(crate::lagesbild()?)
        .args(["users", "roles", "--config"])
        .arg(federation.dir.path().join(home).join("node.toml"))
        .args(["--role", "analyst", "--role", "duty-officer", ANALYST.0])
        .output()?;
    if !out.status.success() {
        bail!("users roles: {}", String::from_utf8_lossy(&out.stderr));
    }
    federation.restart_all(&crate::lagesbild()?).await?;

    let cert = std::fs::read_to_string(federation.dir.path().join(home).join("node.pem"))?;
    let profile = federation.dir.path().join("browser");
    std::fs::create_dir_all(&profile)?;
    let Some(browser) = Browser::start(&spki_hash(&cert), &profile, free_port()?).await else {
        bail!("the console bench needs chromium and chromedriver on the PATH");
    };
    browser.script_timeout(Duration::from_secs(60)).await;
    let base = format!("https://127.0.0.1:{port}");
    browser.open(&format!("{base}/")).await;
    browser.type_into("input[name=account]", ANALYST.0).await;
    browser.type_into("input[name=password]", ANALYST.1).await;
    browser.click("form[action='/login'] button").await;
    browser.find("body[data-first-paint]").await;
    println!(
        "console bench: 5 nodes x {reports} reports; {home}'s analyst in headless Chromium, the map's default (the last 30 days, 250 m x day, all categories)"
    );

    // First picture on the map, from navigation start, and the call it made.
    let (mut paint, mut call) = (Vec::new(), Vec::new());
    let mut cells = String::new();
    for _ in 0..paints {
        browser.open(&format!("{base}/")).await;
        browser.find("body[data-first-paint]").await;
        paint.push(
            browser
                .attribute("body", "data-first-paint")
                .await
                .parse::<f64>()?,
        );
        cells = browser.attribute("body", "data-cells").await;
        let took = browser
            .execute(
                "var e = performance.getEntriesByType('resource').filter(function (r) { return r.name.indexOf('/api/v1/picture') >= 0; }); return e.length ? e[0].duration : null;",
                json!([]),
                false,
            )
            .await;
        call.push(
            took.as_f64()
                .context("the map's picture call was not timed")?,
        );
    }
    println!(
        "  map with {cells} cells drawn; {}",
        summary("first picture on the map after navigation", paint)
    );
    println!(
        "  {}",
        summary("its picture call (browser's resource timing)", call)
    );

    // 10,000 cells, panned and zoomed.
    let frames = browser.execute(PAN_AND_ZOOM, json!([]), true).await;
    let gaps: Vec<f64> = frames["gaps"]
        .as_array()
        .context("no frames")?
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    let dropped = gaps.iter().filter(|g| **g > 1000.0 / 60.0 * 1.5).count();
    let long = match frames["long_frames"].as_array() {
        Some(long) => format!("{} long animation frames (over 50 ms)", long.len()),
        None => "long animation frames not reported by this browser".to_owned(),
    };
    println!(
        "  {} cells: one full redraw {:.1} ms; 6 s of pans and zooms: {} frames, {} over 25 ms (dropped), longest {:.1} ms; {long}",
        frames["drawn"],
        frames["redraw_ms"].as_f64().unwrap_or(f64::NAN),
        gaps.len() + 1,
        dropped,
        gaps.iter().copied().fold(0.0, f64::max),
    );

    // A report stored at scandic, on polisen's page: from scandic's
    // acknowledgement to the moment the page put it on screen.
    browser.open(&format!("{base}/")).await;
    browser.find("body[data-live=open]").await;
    let origin = "scandic";
    let mut writer =
        ReportServiceClient::new(federation.authed(origin, origin, &["report:write"])?);
    let mut latencies = Vec::new();
    for i in 0..events {
        let before = browser.count("#events li[data-shown-at]").await;
        writer
            .submit_batch(SubmitBatchRequest {
                reports: vec![probe(i)],
                validate_only: false,
            })
            .await?;
        let acknowledged = lagesbild_vocabulary::SystemClock
            .now()
            .duration_since(UNIX_EPOCH)?
            .as_secs_f64()
            * 1e3;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while browser.count("#events li[data-shown-at]").await == before {
            if std::time::Instant::now() > deadline {
                bail!("report {i} never reached the page");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let shown = browser
            .attribute("#events li[data-shown-at]", "data-shown-at")
            .await
            .parse::<f64>()?;
        latencies.push(shown - acknowledged);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "  {}",
        summary(
            "a report at scandic on polisen's page after scandic acknowledged it",
            latencies
        )
    );
    Ok(())
}
