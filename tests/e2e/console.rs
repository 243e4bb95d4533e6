//! The console's HTTP JSON API against real nodes: the picture it gives a
//! signed-in person equals the gRPC picture for the same query, it goes
//! through the authorisation table (a role that may not is refused) and the
//! access log (the call names the person), and the document that describes
//! it is served.

use crate::common::{now, TestFederation, PURPOSE, TESTER, TESTER_PASSWORD};
use lagesbild_proto::v1::picture_service_client::PictureServiceClient;
use lagesbild_proto::v1::report_service_client::ReportServiceClient;
use lagesbild_proto::v1::{
    BucketKind, Category, PictureRequest, Position, ReleaseRequest, Report, Source,
    SubmitBatchRequest, Tlp,
};
use prost_types::Timestamp;
use serde_json::Value;
use std::collections::BTreeSet;

const HOME: &str = "polisen";
const PEER: &str = "scandic";

fn policy(peers: &[&str]) -> String {
    let mut text = String::from("version = 1\n");
    for peer in peers {
        text.push_str(&format!(
            "[peer.{peer}]\nscopes = [\"aggregate:read\", \"events:read\"]\npurposes = [\"{PURPOSE}\"]\ncategories = [\"all\"]\nfinest_cell = 250\nfinest_bucket = \"hour\"\nk = 3\nmax_tlp = \"amber\"\ntext = true\nrate_limit = 1000\n"
        ));
    }
    text
}

fn reports(org: usize, base: i64) -> Vec<Report> {
    (0..90)
        .map(|i| Report {
            id: format!("c-{org}-{i}"),
            observed_at: Some(Timestamp {
                seconds: base + (i as i64 % 3) * 3600 + 60,
                nanos: 0,
            }),
            position: Some(Position {
                lat: 59.3320 + ((i * (org + 1)) % 4) as f64 * 0.0015,
                lon: 18.0620 + (i % 2) as f64 * 0.003,
            }),
            category: [Category::Violence, Category::DarkArea][(i + org) % 2] as i32,
            severity: 1 + (i % 4) as u32,
            source: Source::Staff as i32,
            tlp: Tlp::Green as i32,
            text: "Händelse".into(),
            ..Report::default()
        })
        .collect()
}

/// (easting, northing, bucket start, category, count) of each cell.
type Cells = BTreeSet<(u64, u64, String, String, u64)>;

fn api_cells(picture: &Value) -> Cells {
    picture["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["easting"].as_u64().unwrap(),
                c["northing"].as_u64().unwrap(),
                c["bucket_start"].as_str().unwrap().to_owned(),
                c["category"].as_str().unwrap().to_owned(),
                c["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Moves the page's hour slider to `index`, as a person dragging it would.
async fn slide_to(browser: &crate::common::browser::Browser, index: usize) {
    browser
        .execute(
            "var s = document.getElementById('hour'); s.value = String(arguments[0]); s.dispatchEvent(new Event('input'));",
            serde_json::json!([index]),
            false,
        )
        .await;
}

/// GET `url` with the session `session`; its JSON answer.
async fn get_json(https: &reqwest::Client, url: &str, session: &str) -> Value {
    https
        .get(url)
        .bearer_auth(session)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Both members with a policy for each other, and `HOME`'s node with a
/// console (`console` is its node.toml table) on a port the system picks.
struct WithConsole {
    fed: TestFederation,
    port: u16,
    /// The tester's session (every role).
    session: String,
    /// HTTPS that trusts `HOME`'s CA.
    https: reqwest::Client,
}

async fn with_console(console: &str) -> WithConsole {
    let mut fed = TestFederation::start(&[HOME, PEER]).await;
    fed.kill(HOME);
    let config = fed.org_dir(HOME).join("node.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(console);
    std::fs::write(&config, text).unwrap();
    for org in [HOME, PEER] {
        std::fs::write(fed.org_dir(org).join("policy.toml"), policy(&[HOME, PEER])).unwrap();
    }
    fed.restart(HOME).await;
    let port = fed.console_port(HOME).await;
    let session = std::fs::read_to_string(fed.login(HOME, TESTER, TESTER_PASSWORD).unwrap())
        .unwrap()
        .trim()
        .to_owned();
    let ca = std::fs::read(fed.org_dir(HOME).join("ca.pem")).unwrap();
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    WithConsole {
        fed,
        port,
        session,
        https,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_api_gives_a_person_the_grpc_picture_through_the_same_checks() {
    // A basemap on loopback (nothing answers there): the page names it and
    // its policy lets its images in, and nothing else.
    let WithConsole {
        fed,
        port,
        session,
        https,
    } = with_console(
        "\n[console]\nlisten = \"127.0.0.1:0\"\ntiles = { url = \"https://127.0.0.1:9/{z}/{x}/{y}.png\", attribution = \"Test <tiles>\" }\n",
    )
    .await;
    let base = (now() / 3600 - 20) * 3600;
    for (i, org) in [HOME, PEER].iter().enumerate() {
        let stored = ReportServiceClient::new(fed.authed(org, org, &["report:write"]))
            .submit_batch(SubmitBatchRequest {
                reports: reports(i, base),
                validate_only: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(stored.stored, 90);
    }
    let iso = |seconds: i64| {
        time::OffsetDateTime::from_unix_timestamp(seconds)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let (from, to) = (base - 3600, base + 6 * 3600);
    let url = format!(
        "https://127.0.0.1:{port}/api/v1/picture?bucket=hour&cell=250&from={}&to={}",
        iso(from),
        iso(to)
    );
    let answer = https.get(&url).bearer_auth(&session).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    let picture: Value = answer.json().await.unwrap();

    // The same query over gRPC.
    let grpc = PictureServiceClient::new(fed.authed(HOME, HOME, &["aggregate:read"]))
        .picture(PictureRequest {
            columnar: false,
            filters: Some(ReleaseRequest {
                from: Some(Timestamp {
                    seconds: from,
                    nanos: 0,
                }),
                to: Some(Timestamp {
                    seconds: to,
                    nanos: 0,
                }),
                cell_size_m: 250,
                bucket: BucketKind::Hour as i32,
                ..ReleaseRequest::default()
            }),
            top: 10,
            deadline_ms: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let grpc_cells: Cells = grpc
        .cells
        .iter()
        .map(|c| {
            let v = c.value.as_ref().unwrap();
            let cell = v.cell.as_ref().unwrap();
            (
                u64::from(cell.easting),
                u64::from(cell.northing),
                iso(v.bucket_start.as_ref().unwrap().seconds),
                Category::try_from(v.category)
                    .unwrap()
                    .as_str_name()
                    .trim_start_matches("CATEGORY_")
                    .to_ascii_lowercase(),
                v.count,
            )
        })
        .collect();
    let cells = api_cells(&picture);
    assert!(!cells.is_empty(), "{picture}");
    assert_eq!(cells, grpc_cells);
    let answered: BTreeSet<&str> = picture["answers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["status"] == "ok")
        .map(|a| a["org"].as_str().unwrap())
        .collect();
    assert_eq!(answered, BTreeSet::from([HOME, PEER]));

    // The access log: the API call is a Picture call of the person.
    let log = crate::common::log_entries(&fed, HOME, HOME);
    let by_tester = log.iter().filter(|e| {
        e["call"] == "/lagesbild.v1.PictureService/Picture"
            && e["token"]["sub"] == "tester (local:polisen)"
            && e["decision"] == "allowed"
    });
    assert_eq!(by_tester.count(), 1);

    // A person whose role may not: refused by the table, by name.
    fed.add_account_and_wait(HOME, "dora", &["duty-officer"], "dora's long password")
        .await;
    let dora = std::fs::read_to_string(fed.login(HOME, "dora", "dora's long password").unwrap())
        .unwrap()
        .trim()
        .to_owned();
    let refused = https.get(&url).bearer_auth(&dora).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("needs the role analyst; dora (local:polisen) has duty-officer"),
        "{body}"
    );
    // No session at all.
    let anonymous = https.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    // A bad query is named.
    let bad = https
        .get(format!(
            "https://127.0.0.1:{port}/api/v1/picture?categories=violense"
        ))
        .bearer_auth(&session)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    // The map page, with the session cookie: the basemap and its policy.
    let home = https
        .get(format!("https://127.0.0.1:{port}/"))
        .header("cookie", format!("lagesbild_session={session}"))
        .send()
        .await
        .unwrap();
    let policy = home.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        policy.contains("img-src 'self' data: https://127.0.0.1:9;"),
        "{policy}"
    );
    let page = home.text().await.unwrap();
    assert!(
        page.contains("data-tiles=\"https://127.0.0.1:9/{z}/{x}/{y}.png\"")
            && page.contains("data-attribution=\"Test &lt;tiles&gt;\""),
        "{page}"
    );
    // The document that describes the API is served as checked in.
    let served = https
        .get(format!("https://127.0.0.1:{port}/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(served, lagesbild_console::OPENAPI);

    // Partners: the privacy budget each peer has left here today. Exact
    // counts first; then a policy with noise, and one release spent.
    let partners = || {
        let https = https.clone();
        let url = format!("https://127.0.0.1:{port}/api/v1/partners");
        let session = session.clone();
        async move {
            let status: Value = get_json(&https, &url, &session).await;
            let scandic = status["peers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["org"] == PEER)
                .unwrap()
                .clone();
            (
                scandic["budget_per_day"].as_f64().unwrap(),
                scandic["budget_left_today"].as_f64().unwrap(),
            )
        }
    };
    assert_eq!(partners().await, (0.0, 0.0), "exact counts: no budget");
    let noisy = self::policy(&[HOME, PEER]).replace(
        &format!("[peer.{PEER}]\n"),
        &format!("[peer.{PEER}]\nepsilon_per_query = 0.5\nepsilon_per_day = 2.0\n"),
    );
    assert_ne!(noisy, self::policy(&[HOME, PEER]));
    std::fs::write(fed.org_dir(HOME).join("policy.toml"), &noisy).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while partners().await.0 != 2.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the new policy was not read"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    lagesbild_proto::v1::aggregate_service_client::AggregateServiceClient::new(fed.authed(
        HOME,
        PEER,
        &["aggregate:read"],
    ))
    .release(ReleaseRequest {
        from: Some(Timestamp {
            seconds: now() - 86_400,
            nanos: 0,
        }),
        to: Some(Timestamp {
            seconds: now(),
            nanos: 0,
        }),
        cell_size_m: 250,
        bucket: BucketKind::Day as i32,
        ..ReleaseRequest::default()
    })
    .await
    .unwrap();
    assert_eq!(partners().await, (2.0, 1.5), "one query of 0.5 spent");
    std::fs::write(
        fed.org_dir(HOME).join("policy.toml"),
        self::policy(&[HOME, PEER]),
    )
    .unwrap();
    while partners().await.0 != 0.0 {
        assert!(std::time::Instant::now() < deadline + std::time::Duration::from_secs(30));
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // In a real browser: signed in through the form, the map draws the
    // cells the API gives for its default view (a month, 250 m).
    let month = get_json(
        &https,
        &format!(
            "https://127.0.0.1:{port}/api/v1/picture?bucket=day&cell=250&from={}&to={}",
            iso(now() - 30 * 86_400),
            iso(now() + 60)
        ),
        &session,
    )
    .await;
    let distinct: BTreeSet<(u64, u64)> = api_cells(&month)
        .into_iter()
        .map(|(e, n, _, _, _)| (e, n))
        .collect();
    assert!(!distinct.is_empty());
    let Some(browser) = crate::common::browser::for_node(&fed, HOME).await else {
        return;
    };
    browser.open(&format!("https://127.0.0.1:{port}/")).await;
    browser.type_into("input[name=account]", TESTER).await;
    browser
        .type_into("input[name=password]", TESTER_PASSWORD)
        .await;
    browser.click("form[action='/login'] button").await;
    let drawn = browser.attribute("body", "data-cells").await;
    assert_eq!(drawn, distinct.len().to_string());
    let partners = browser.attribute("body", "data-partners").await;
    assert_eq!(partners, "2", "polisen sees scandic and the auditor");
    let table = browser.text("#partners").await;
    assert!(table.contains("scandic"), "{table}");
    let shown = browser.text("#answers").await;
    assert!(
        shown.contains("polisen: ok") && shown.contains("scandic: ok"),
        "{shown}"
    );

    // Hour by hour: the slider's hour shows the cells the API's hourly
    // columns hold for that hour, for the window the page asked.
    browser.click("#by-hour").await;
    browser.find("#hour:not([disabled])").await;
    browser.find("body[data-cells]").await;
    let window = browser
        .execute(
            "var s = window.lagesbild.shown(); return { from: s.from, to: s.to, hours: s.hours };",
            serde_json::json!([]),
            false,
        )
        .await;
    let hourly = get_json(&https, &format!(
            "https://127.0.0.1:{port}/api/v1/picture?form=columns&bucket=hour&cell=250&from={}&to={}",
            window["from"].as_str().unwrap(),
            window["to"].as_str().unwrap()
        ), &session).await;
    let values = &hourly["values"];
    let buckets: Vec<i64> = values["bucket"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_i64().unwrap())
        .collect();
    let cells_in = |hour: i64| -> BTreeSet<u64> {
        buckets
            .iter()
            .zip(values["cell"].as_array().unwrap())
            .filter(|(b, _)| **b == hour)
            .map(|(_, c)| c.as_u64().unwrap())
            .collect()
    };
    let hours: Vec<i64> = window["hours"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_i64().unwrap())
        .collect();
    let busiest = *buckets
        .iter()
        .max_by_key(|b| buckets.iter().filter(|x| x == b).count())
        .unwrap();
    let expected = cells_in(busiest);
    let index = hours
        .iter()
        .position(|h| *h == busiest)
        .expect("the busiest hour is on the slider");
    slide_to(&browser, index).await;
    assert_eq!(
        browser.attribute("body", "data-cells").await,
        expected.len().to_string(),
        "the cells of hour {busiest}"
    );
    assert!(!browser.text("#hour-label").await.is_empty());
    // Another hour, another count: the slider is what is drawn (positive control).
    let other = hours
        .iter()
        .position(|h| cells_in(*h).len() != expected.len())
        .expect("an hour with another number of cells");
    slide_to(&browser, other).await;
    assert_eq!(
        browser.attribute("body", "data-cells").await,
        cells_in(hours[other]).len().to_string()
    );

    // From the keyboard: the map centred on a cell, Enter opens that cell's
    // detail, with its weeks' trend.
    browser.click("#by-hour").await;
    browser.find("#hour[disabled]").await;
    browser.find("body[data-cells]").await;
    let key = browser
        .execute(
            "var c = window.lagesbild.cells._cells[0]; var lat = 0, lon = 0;             c.corners.forEach(function (p) { lat += p[0] / 4; lon += p[1] / 4; });             window.lagesbild.map.setView([lat, lon], 16, { animate: false }); return c.key;",
            serde_json::json!([]),
            false,
        )
        .await;
    let key = key.as_str().unwrap().to_owned();
    browser
        .execute(
            "document.getElementById('map').focus();",
            serde_json::json!([]),
            false,
        )
        .await;
    browser.type_into("#map", "\u{E007}").await;
    assert_eq!(browser.attribute(".cell-detail", "data-cell").await, key);
    let weeks = browser.attribute(".trend[data-weeks]", "data-weeks").await;
    assert!(!weeks.is_empty(), "the cell's last weeks");

    // On a tablet (768 × 1024): nothing wider than the screen, the map shown.
    browser.window_size(768, 1024).await;
    browser.open(&format!("https://127.0.0.1:{port}/")).await;
    browser.find("body[data-cells]").await;
    let fits = browser
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth, document.getElementById('map').getBoundingClientRect().height];",
            serde_json::json!([]),
            false,
        )
        .await;
    let (wide, screen, map) = (
        fits[0].as_f64().unwrap(),
        fits[1].as_f64().unwrap(),
        fits[2].as_f64().unwrap(),
    );
    assert!(wide <= screen, "{wide} px wide on a {screen} px screen");
    assert!(map > 300.0, "the map is {map} px high");
}

/// A policy admin sees what a peer would receive under a draft before it is
/// saved; saving goes through the file's checks and puts it in force; others
/// can't.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_admins_preview_a_draft_before_it_is_saved() {
    let WithConsole {
        fed,
        port,
        session,
        https,
    } = with_console("\n[console]\nlisten = \"127.0.0.1:0\"\n").await;
    let policy_file = fed.org_dir(HOME).join("policy.toml");
    let api = |path: &str| format!("https://127.0.0.1:{port}/api/v1/{path}");
    let explain = |who: String| {
        let https = https.clone();
        let url = api(&format!("policy/explain?peer={PEER}"));
        async move {
            let answer: Value = get_json(&https, &url, &who).await;
            answer
        }
    };
    let before = explain(session.clone()).await;
    assert_eq!(before["explanation"]["named"], true, "{before}");
    let current: Value = get_json(&https, &api("policy"), &session).await;
    assert_eq!(current["text"], policy(&[HOME, PEER]).as_str());

    // A draft that names only the node's own org: scandic would get nothing.
    let draft = policy(&[HOME]);
    let previewed: Value = https
        .post(api("policy/preview"))
        .bearer_auth(&session)
        .json(&serde_json::json!({ "draft": draft, "peer": PEER }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(previewed["explanation"]["named"], false, "{previewed}");
    // Nothing changed by a preview.
    assert_eq!(explain(session.clone()).await["explanation"]["named"], true);
    assert_eq!(
        std::fs::read_to_string(&policy_file).unwrap(),
        policy(&[HOME, PEER])
    );

    // A draft that fails the file's checks is named and not saved.
    let bad = https
        .put(api("policy"))
        .bearer_auth(&session)
        .json(&serde_json::json!({ "draft": "version = 1\n[peer.scandic]\nscopes = [\"aggregate:reed\"]\n" }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let message: Value = bad.json().await.unwrap();
    assert!(
        message["error"]
            .as_str()
            .unwrap()
            .contains("aggregate:reed"),
        "{message}"
    );
    assert_eq!(
        std::fs::read_to_string(&policy_file).unwrap(),
        policy(&[HOME, PEER])
    );

    // Saved: the file is the draft and it is in force.
    let saved: Value = https
        .put(api("policy"))
        .bearer_auth(&session)
        .json(&serde_json::json!({ "draft": draft }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(saved["peers"], 1, "{saved}");
    assert_eq!(std::fs::read_to_string(&policy_file).unwrap(), draft);
    assert_eq!(
        explain(session.clone()).await["explanation"]["named"],
        false
    );

    // Someone without the role can't look, let alone save.
    fed.add_account_and_wait(HOME, "ana", &["analyst"], "ana's long password")
        .await;
    let ana = std::fs::read_to_string(fed.login(HOME, "ana", "ana's long password").unwrap())
        .unwrap()
        .trim()
        .to_owned();
    let refused = https
        .put(api("policy"))
        .bearer_auth(&ana)
        .json(&serde_json::json!({ "draft": policy(&[HOME, PEER]) }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(std::fs::read_to_string(&policy_file).unwrap(), draft);
    // The save is in the log, by name.
    let log = crate::common::log_entries(&fed, HOME, HOME);
    let saves: Vec<&Value> = log
        .iter()
        .filter(|e| e["call"] == "/lagesbild.v1.PolicyService/Save")
        .collect();
    let by: Vec<(&str, &str)> = saves
        .iter()
        .map(|e| {
            (
                e["decision"].as_str().unwrap(),
                e["token"]["sub"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        by,
        vec![
            ("failed", "tester (local:polisen)"),
            ("allowed", "tester (local:polisen)"),
            ("refused", "")
        ]
    );
}

/// In a real browser, each person sees what their role allows: a duty
/// officer sees a report stored at the other member arrive without a reload
/// and go on its recall; an analyst is refused the access log by name; the
/// auditor sees there the calls just made, the checkpoints checked and the
/// peers witnessed; the page switches language.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_see_live_events_and_the_access_log_as_their_roles_allow() {
    use lagesbild_proto::v1::event_service_client::EventServiceClient;
    use lagesbild_proto::v1::{RecallReason, RecallRequest};
    let WithConsole { fed, port, .. } =
        with_console("\n[console]\nlisten = \"127.0.0.1:0\"\n").await;
    for (name, roles) in [
        ("dora", &["duty-officer"][..]),
        ("ana", &["analyst"][..]),
        ("rut", &["auditor"][..]),
    ] {
        fed.add_account_and_wait(HOME, name, roles, &format!("{name}'s long password"))
            .await;
    }
    let Some(browser) = crate::common::browser::for_node(&fed, HOME).await else {
        return;
    };
    let page = |path: &str| format!("https://127.0.0.1:{port}{path}");
    let sign_in = |name: &'static str| {
        let browser = &browser;
        let page = page("/");
        async move {
            browser.open(&page).await;
            browser.type_into("input[name=account]", name).await;
            browser
                .type_into("input[name=password]", &format!("{name}'s long password"))
                .await;
            browser.click("form[action='/login'] button").await;
            browser.find("#who").await;
        }
    };
    let sign_out = || async {
        browser.open(&page("/")).await;
        browser.click("form[action='/logout'] button").await;
        browser.find("input[name=account]").await;
    };

    // The duty officer: a report at scandic arrives on the open page, its
    // recall takes it away.
    sign_in("dora").await;
    browser.find("body[data-live=open]").await;
    let mut report = reports(1, now() - 600).remove(0);
    report.id = "live-one".into();
    report.text = "Bråk vid entrén".into();
    ReportServiceClient::new(fed.authed(PEER, PEER, &["report:write"]))
        .submit_batch(SubmitBatchRequest {
            reports: vec![report],
            validate_only: false,
        })
        .await
        .unwrap();
    browser.find("#events li[data-shown-at]").await;
    let shown = browser.text("#events").await;
    assert!(
        shown.contains("scandic") && shown.contains("Bråk vid entrén"),
        "{shown}"
    );
    EventServiceClient::new(fed.authed(PEER, PEER, &["report:write"]))
        .recall(RecallRequest {
            report_id: "live-one".into(),
            reason: RecallReason::EnteredInError as i32,
        })
        .await
        .unwrap();
    browser.wait_gone("#events li[data-shown-at]").await;
    sign_out().await;

    // The analyst may not read the access log: refused by name.
    sign_in("ana").await;
    browser.find("body[data-cells]").await;
    browser.open(&page("/audit")).await;
    browser.find("body[data-error]").await;
    let refused = browser.text("#status").await;
    assert!(
        refused.contains("ana (local:polisen)") && refused.contains("auditor"),
        "{refused}"
    );
    assert_eq!(browser.count("#entries tbody tr").await, 0);
    sign_out().await;

    // The auditor sees the analyst's picture call just made, every kept
    // checkpoint signed and consistent with the latest, and scandic witnessed.
    sign_in("rut").await;
    browser.open(&page("/audit")).await;
    browser.find("#entries tbody tr").await;
    let entries = browser.text("#entries").await;
    assert!(
        entries.contains("ana (local:polisen)") && entries.contains("PictureService/Picture"),
        "{entries}"
    );
    browser.find("body[data-checkpoints]").await;
    let kept = browser.text("#kept tbody").await;
    assert!(
        !kept.is_empty() && !kept.contains("did not") && kept.contains("ok"),
        "{kept}"
    );
    assert!(browser.text("#latest").await.contains("ok"));
    let witnessed = browser.text("#witnessed").await;
    assert!(witnessed.contains("scandic"), "{witnessed}");

    // The other language, and back.
    let before = browser.text("h1").await;
    let switch = if before.contains("access log") {
        "/lang/sv"
    } else {
        "/lang/en"
    };
    browser.open(&page(switch)).await;
    browser.open(&page("/audit")).await;
    assert_ne!(browser.text("h1").await, before);
}
