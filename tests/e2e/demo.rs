//! `lagesbild demo --once`: five nodes start, all healthy, each reaches every peer,
//! and all stop cleanly; the picture it writes opens in a real headless browser.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn the_demo_brings_up_five_healthy_nodes_that_reach_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("demo");
    let out = common::lagesbild()
        .args(["demo", "--once", "--dir"])
        .arg(&work)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("all 5 nodes healthy"), "{stdout}");
    for org in [
        "polisen",
        "stockholm-stad",
        "amf-fastigheter",
        "svensk-handel",
        "scandic",
    ] {
        let line = format!("{org:<18} reaches 4 of 4 peer nodes");
        assert!(stdout.contains(&line), "{line:?} in {stdout}");
        assert!(work.join(org).join("node.toml").exists());
    }
    // Each org's people sign in as themselves; the home log names the
    // sign-in, the peer's log the person its node asked for.
    assert!(
        stdout.contains("lagesbild login --config") && stdout.contains("--account anna"),
        "{stdout}"
    );
    let home_line = stdout
        .lines()
        .find(|l| l.contains("Picture by anna (local:polisen) (sign-in session:"));
    assert!(home_line.is_some(), "{stdout}");
    assert!(
        stdout.contains("at each org's console") && stdout.contains("https://127.0.0.1:"),
        "{stdout}"
    );
    let peer_line = stdout
        .lines()
        .find(|l| l.contains("ReleaseMany by polisen's node for anna (local:polisen)"));
    assert!(peer_line.is_some(), "{stdout}");
    for org in ["polisen", "scandic"] {
        let client = std::fs::read_to_string(work.join(org).join("client.toml")).unwrap();
        assert!(!client.contains("token_key"), "{client}");
        let people = work.join(org).join("people.txt");
        assert!(std::fs::read_to_string(&people)
            .unwrap()
            .contains("anna  analyst"));
    }
    // Live events: the three new reports arrive at polisen's watch, scrubbed,
    // the violence one with the plan's actions.
    assert!(stdout.contains("all three arrived"), "{stdout}");
    assert!(stdout.contains("ALERT serious violence"), "{stdout}");
    assert!(stdout.contains("[telefonnummer]"), "{stdout}");
    assert!(!stdout.contains("Erik Svensson"), "{stdout}");
    assert!(stdout.contains("all nodes stopped"), "{stdout}");
    assert!(
        work.join("imy/client.toml").exists(),
        "the auditor has tools"
    );
    assert!(
        !work.join("imy/node.toml").exists(),
        "the auditor runs no node"
    );
    let geojson = std::fs::read_to_string(work.join("picture.geojson")).unwrap();
    assert!(geojson.contains("\"FeatureCollection\""), "{geojson:.200}");
    check_page_in_a_browser(&work.join("picture.html"));
}

/// A Chromium-family browser: `LAGESBILD_BROWSER`, or the first on the PATH.
fn browser() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("LAGESBILD_BROWSER") {
        return Some(path.into());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| {
            ["chromium", "chromium-browser", "google-chrome"]
                .into_iter()
                .map(move |name| dir.join(name))
        })
        .find(|candidate| candidate.is_file())
}

/// Runs the browser headless on `page` with `extra` arguments, offline, and
/// returns what it printed.
fn headless(browser: &Path, page: &Path, profile: &Path, extra: &[&str]) -> String {
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-extensions",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=900,1500",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the browser");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the browser did not finish within 120 s");
        }
        #[allow(clippy::disallowed_methods, reason = "a plain test thread")]
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the browser failed: {}", out.status);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The page is self-contained, parses into the map, ranking, hour chart and
/// answers, and renders a heat map: a screenshot holds the map's colours.
fn check_page_in_a_browser(page: &Path) {
    let html = std::fs::read_to_string(page).unwrap();
    for external in ["src=\"http", "href=\"http", "url(http", "@import"] {
        assert!(!html.contains(external), "the page loads {external}…");
    }
    let Some(browser) = browser() else {
        assert!(
            std::env::var_os("LAGESBILD_REQUIRE_BROWSER").is_none(),
            "LAGESBILD_REQUIRE_BROWSER is set but no chromium was found"
        );
        eprintln!("no chromium found: the picture page was not checked in a browser (set LAGESBILD_BROWSER)");
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let dom = headless(
        &browser,
        page,
        &scratch.path().join("profile-dom"),
        &["--dump-dom"],
    );
    let map = dom
        .split("<svg id=\"map\"")
        .nth(1)
        .and_then(|rest| rest.split("</svg>").next())
        .expect("the map is in the parsed page");
    let cells = map.matches("<rect").count();
    assert!(cells > 0, "the map has cells");
    assert!(map.matches("<text").count() > 0, "the map has place labels");
    let ranking = dom.split("<ol id=\"ranking\">").nth(1).expect("ranking");
    assert!(ranking.split("</ol>").next().unwrap().contains("<li>"));
    let hours = dom.split("<svg id=\"hours\"").nth(1).expect("hour chart");
    assert_eq!(
        hours
            .split("</svg>")
            .next()
            .unwrap()
            .matches("<rect")
            .count(),
        24,
        "one bar per hour of the day"
    );
    let answers = dom.split("<table id=\"answers\">").nth(1).expect("answers");
    assert_eq!(
        answers
            .split("</table>")
            .next()
            .unwrap()
            .matches("<tr>")
            .count(),
        6,
        "a header and one row per member"
    );

    let shot = scratch.path().join("picture.png");
    headless(
        &browser,
        page,
        &scratch.path().join("profile-shot"),
        &[&format!("--screenshot={}", shot.display())],
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&shot).expect("a screenshot was written"),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    let channels = frame.color_type.samples();
    let bytes = &pixels[..frame.buffer_size()];
    // Heat: the cells are rgb(255, g, 0) drawn semi-transparent over white, so
    // red stays full and blue shows the opacity; the hour bars (204, 51, 51) and
    // the small legend don't reach the count. One 250 m cell is about 9,000 pixels.
    let heat = bytes
        .chunks(channels)
        .filter(|px| px[0] >= 250 && px[2] < 150 && px[1] < 235)
        .count();
    assert!(
        heat > 10_000,
        "the screenshot shows the heat map ({heat} heat-coloured pixels of {})",
        bytes.len() / channels
    );
}
