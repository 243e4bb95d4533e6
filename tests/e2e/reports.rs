//! Reports: durable, atomic, idempotent writes by the org's own tools only, and
//! the `ingest` command on files with good and bad lines.

use crate::common;

use crate::common::TestFederation;
use lagesbild_auth::AuthChannel;
use lagesbild_proto::v1::report_service_client::ReportServiceClient;
use lagesbild_proto::v1::{Category, Position, Report, Source, SubmitBatchRequest, Tlp};
use lagesbild_store::{CounterFamily, Store, StoreOptions};
use std::time::UNIX_EPOCH;
use tonic_types::StatusExt;

fn report(id: &str, minutes_ago: i64) -> Report {
    let now = lagesbild_vocabulary::SystemClock
        .now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    Report {
        id: id.into(),
        observed_at: Some(prost_types::Timestamp {
            seconds: now - minutes_ago * 60,
            nanos: 0,
        }),
        position: Some(Position {
            lat: 59.3324 + (minutes_ago % 7) as f64 * 0.001,
            lon: 18.0645,
        }),
        category: Category::Violence as i32,
        severity: 3,
        source: Source::Patrol as i32,
        tlp: Tlp::Amber as i32,
        text: "Bråk vid entrén".into(),
        ..Report::default()
    }
}

fn writer(fed: &TestFederation, as_org: &str, node: &str) -> ReportServiceClient<AuthChannel> {
    ReportServiceClient::new(fed.authed(node, as_org, &["report:write"]))
}

async fn submit(
    client: &mut ReportServiceClient<AuthChannel>,
    reports: Vec<Report>,
) -> Result<(u64, u64), tonic::Status> {
    let summary = client
        .submit_batch(SubmitBatchRequest {
            reports,
            validate_only: false,
        })
        .await?
        .into_inner();
    Ok((summary.stored, summary.duplicates))
}

/// Opens the dead node's sled files and checks its counters against a recount.
async fn assert_counters_match_recount(fed: &TestFederation, org: &str, expected_reports: usize) {
    let store = Store::open(&fed.store_dir(org), StoreOptions::default()).unwrap();
    assert_eq!(store.report_count(), expected_reports);
    for family in [CounterFamily::M100, CounterFamily::M250] {
        let kept: std::collections::BTreeMap<_, _> = store.counters(family, 0, u32::MAX).collect();
        assert_eq!(kept, store.recount(family).unwrap(), "{family:?} counters");
        let total: u64 = kept.values().map(|v| v.count).sum();
        assert_eq!(total, expected_reports as u64);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_reports_survive_kill_9() {
    let mut fed = TestFederation::start(&["alpha"]).await;
    let mut client = writer(&fed, "alpha", "alpha");
    let mut acknowledged = Vec::new();
    for batch in 0..20 {
        let reports: Vec<_> = (0..50)
            .map(|i| report(&format!("k-{batch}-{i}"), (batch * 50 + i) as i64))
            .collect();
        assert_eq!(submit(&mut client, reports.clone()).await.unwrap(), (50, 0));
        acknowledged.extend(reports);
    }
    fed.kill("alpha"); // SIGKILL right after the last acknowledgement
    fed.restart("alpha").await;

    // Every acknowledged report is there: resubmitting them all stores nothing.
    let mut client = writer(&fed, "alpha", "alpha");
    for chunk in acknowledged.chunks(500) {
        let (stored, duplicates) = submit(&mut client, chunk.to_vec()).await.unwrap();
        assert_eq!((stored, duplicates), (0, chunk.len() as u64));
    }
    fed.kill("alpha");
    assert_counters_match_recount(&fed, "alpha", acknowledged.len()).await;
}

/// A power cut, not a crash: the node's data folder is on a loop device, and
/// the disk as it stood at the last acknowledgement (a copy of the device's
/// image, without the page cache) is what the node starts from again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_reports_survive_a_power_cut() {
    if !common::LoopDisk::available() {
        return;
    }
    let mut fed = TestFederation::start(&["alpha"]).await;
    fed.kill("alpha");
    let work = tempfile::tempdir().unwrap();
    let disk = common::LoopDisk::create(&work.path().join("disk.img"), &work.path().join("disk"));
    let data = disk.mount.join("data");
    fed.move_data_dir("alpha", &data);
    fed.restart("alpha").await;

    let mut client = writer(&fed, "alpha", "alpha");
    let mut acknowledged = Vec::new();
    for batch in 0..20 {
        let reports: Vec<_> = (0..50)
            .map(|i| report(&format!("p-{batch}-{i}"), (batch * 50 + i) as i64))
            .collect();
        assert_eq!(submit(&mut client, reports.clone()).await.unwrap(), (50, 0));
        acknowledged.extend(reports);
    }
    // Control: a write nobody synced, made last, must be missing from the copy.
    std::fs::write(disk.mount.join("unsynced"), b"only in the page cache").unwrap();
    let after_cut = work.path().join("after-cut.img");
    disk.power_cut(&after_cut);
    fed.kill("alpha");
    drop(disk);

    let restored = common::LoopDisk::mount(&after_cut, &work.path().join("restored"));
    let unsynced = std::fs::read(restored.mount.join("unsynced")).unwrap_or_default();
    assert!(
        unsynced.is_empty(),
        "the copied image kept a write that was never synced, so it cannot show a power cut"
    );
    fed.move_data_dir("alpha", &restored.mount.join("data"));
    fed.restart("alpha").await;
    let mut client = writer(&fed, "alpha", "alpha");
    for chunk in acknowledged.chunks(500) {
        let (stored, duplicates) = submit(&mut client, chunk.to_vec()).await.unwrap();
        assert_eq!((stored, duplicates), (0, chunk.len() as u64));
    }
    // The access log recorded every acknowledged call before it answered.
    let logged = common::log_entries(&fed, "alpha", "alpha");
    let submits = logged
        .iter()
        .filter(|e| e["call"] == "/lagesbild.v1.ReportService/SubmitBatch" && e["code"] == 0)
        .count();
    assert!(submits >= 20 + 2, "{submits} submits logged");
    fed.kill("alpha");
    let store = Store::open(&restored.mount.join("data/store"), StoreOptions::default()).unwrap();
    assert_eq!(store.report_count(), acknowledged.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_batch_stores_nothing_and_names_each_problem() {
    let mut fed = TestFederation::start(&["alpha"]).await;
    let mut client = writer(&fed, "alpha", "alpha");
    let mut bad = report("bad", 5);
    bad.severity = 7;
    bad.position = Some(Position {
        lat: 57.70,
        lon: 11.97,
    }); // Göteborg: outside coverage
    let mut future = report("future", -60);
    future.category = 0;
    future.id = "f".repeat(300);
    let batch = vec![report("good-1", 1), bad, report("good-2", 2), future];
    let status = submit(&mut client, batch).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let violations: Vec<_> = status
        .get_details_bad_request()
        .expect("BadRequest details")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(
        violations,
        [
            "reports[1].position",
            "reports[1].severity",
            "reports[3].id",
            "reports[3].observed_at",
            "reports[3].category"
        ]
    );
    // "; " separates problems and nothing else: each part names one.
    let listed = status.message().split_once(": ").unwrap().1;
    let parts: Vec<&str> = listed.split("; ").collect();
    assert_eq!(parts.len(), 5, "{}", status.message());
    assert!(
        parts.iter().all(|p| p.starts_with("report ")),
        "{}",
        status.message()
    );
    assert!(
        status
            .message()
            .contains("report 1 severity: 7 is outside 1..5"),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("outside this node's coverage"),
        "{}",
        status.message()
    );

    // Nothing of the refused batch was stored: its good reports are new.
    assert_eq!(
        submit(&mut client, vec![report("good-1", 1), report("good-2", 2)])
            .await
            .unwrap(),
        (2, 0)
    );
    fed.kill("alpha");
    assert_counters_match_recount(&fed, "alpha", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubmitting_counts_once() {
    let mut fed = TestFederation::start(&["alpha"]).await;
    let mut client = writer(&fed, "alpha", "alpha");
    let batch: Vec<_> = (0..10).map(|i| report(&format!("d-{i}"), i)).collect();
    assert_eq!(submit(&mut client, batch.clone()).await.unwrap(), (10, 0));
    assert_eq!(submit(&mut client, batch.clone()).await.unwrap(), (0, 10));
    let mut twice = batch[..2].to_vec();
    twice.push(report("d-new", 3));
    twice.push(report("d-new", 3));
    assert_eq!(submit(&mut client, twice).await.unwrap(), (1, 3));
    fed.kill("alpha");
    assert_counters_match_recount(&fed, "alpha", 11).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_cannot_write_into_another_orgs_node() {
    let mut fed = TestFederation::start(&["alpha", "beta"]).await;
    let mut as_beta = writer(&fed, "beta", "alpha");
    let refused = submit(&mut as_beta, vec![report("from-beta", 1)])
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("beta"), "{}", refused.message());
    // beta's node certificate gets no further than beta's people.
    let node_cert = lagesbild_identity::TlsFiles {
        cert: fed.org_dir("beta").join("node.pem"),
        key: fed.org_dir("beta").join("node.key"),
    };
    let (chain, key) = node_cert.load().unwrap();
    let tls = lagesbild_identity::tls::client_config(&fed.federation, "alpha", chain, key).unwrap();
    let mut as_beta_node = ReportServiceClient::with_interceptor(
        fed.channel("alpha", tls),
        fed.bearer("beta", "alpha", &["report:write"]),
    );
    let refused = submit(&mut as_beta_node, vec![report("from-beta-node", 1)])
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);

    // The org's own token, but for a purpose writes don't serve: refused,
    // nothing stored, and the refusal is in the access log.
    for purpose in ["marketing", ""] {
        let token = fed.token("alpha", "alpha", &["report:write"], purpose);
        let mut off_purpose = ReportServiceClient::new(AuthChannel::new(
            fed.channel("alpha", fed.operator_tls("alpha")),
            lagesbild_auth::Bearer::new(&token).unwrap(),
        ));
        let refused = submit(&mut off_purpose, vec![report("off-purpose", 1)])
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
        assert!(
            refused.message().contains(&format!("{purpose:?}"))
                && refused.message().contains("accepted: ingest, recall"),
            "{}",
            refused.message()
        );
    }
    let logged = common::log_entries(&fed, "audit", "alpha");
    assert!(
        logged.iter().any(|e| e["token"]["purpose"] == "marketing"
            && e["call"] == "/lagesbild.v1.ReportService/SubmitBatch"
            && e["decision"] == "refused"),
        "{logged:#?}"
    );

    let mut as_alpha = writer(&fed, "alpha", "alpha");
    assert_eq!(
        submit(&mut as_alpha, vec![report("own", 1)]).await.unwrap(),
        (1, 0)
    );
    fed.kill("alpha");
    assert_counters_match_recount(&fed, "alpha", 1).await;
}

fn ingest(
    fed: &TestFederation,
    file: &std::path::Path,
    format: &str,
    extra: &[&str],
) -> (bool, String, String) {
    let config = fed.org_dir("alpha").join("client.toml");
    let mut args = vec![
        "ingest",
        "--config",
        config.to_str().unwrap(),
        "--file",
        file.to_str().unwrap(),
        "--format",
        format,
    ];
    args.extend(extra);
    let out = fed.run_as("alpha", &args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_loads_csv_only_when_every_line_is_good_unless_told() {
    let fed = TestFederation::start(&["alpha"]).await;
    let now = time::OffsetDateTime::from(lagesbild_vocabulary::SystemClock.now())
        - time::Duration::hours(2);
    let at = now
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let header = "id,observed_at,lat,lon,category,severity,source,tlp,place_name,text,persons,vehicle_plates\n";
    let good =
        |id: &str| format!("{id},{at},59.3324,18.0645,violence,3,guard,amber,Plattan,Bråk,,\n");
    let file = fed.dir.path().join("reports.csv");
    let text = format!(
        "{header}{}{}c3,{at},59.3324,18.0645,violence,9,guard,,,,,\n{}c5,not-a-time,59.3,18.0,theft,2,guard,,,,,\n",
        good("c1"),
        good("c2"),
        good("c4")
    );
    std::fs::write(&file, &text).unwrap();

    // A malformed line: clear error with its number, nothing loaded.
    let (ok, _, stderr) = ingest(&fed, &file, "csv", &[]);
    assert!(!ok);
    assert!(stderr.contains("reports.csv:6:"), "{stderr}");
    assert!(stderr.contains("nothing was loaded"), "{stderr}");

    // Without the malformed line, the node still refuses line 4: nothing loaded.
    let without_5: String = text.lines().take(5).map(|l| format!("{l}\n")).collect();
    std::fs::write(&file, &without_5).unwrap();
    let (ok, _, stderr) = ingest(&fed, &file, "csv", &[]);
    assert!(!ok);
    assert!(
        stderr.contains("reports.csv:4: severity: 9 is outside 1..5"),
        "{stderr}"
    );

    // Asked to, it loads the rest and says what it left out.
    std::fs::write(&file, &text).unwrap();
    let (ok, stdout, stderr) = ingest(&fed, &file, "csv", &["--skip-invalid"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(
            "3 stored, 0 duplicates (0 already stored, 0 repeated in the file), 2 rejected, 0 skipped, of 5 read"
        ),
        "{stdout}"
    );

    // Nothing before was half-loaded: c1, c2, c4 were new just now, and are there now.
    let (ok, stdout, _) = ingest(&fed, &file, "csv", &["--skip-invalid"]);
    assert!(ok);
    assert!(
        stdout.contains("0 stored, 3 duplicates (3 already stored, 0 repeated in the file)"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_reads_json_lines_and_the_police_feed() {
    // The police sample is from March 2026; keep it within retention whenever this runs.
    let fed = TestFederation::start_with(&["alpha"], &["--retention-days", "36500"]).await;
    let jsonl = fed.dir.path().join("reports.jsonl");
    let at = (time::OffsetDateTime::from(lagesbild_vocabulary::SystemClock.now())
        - time::Duration::hours(1))
    .format(&time::format_description::well_known::Rfc3339)
    .unwrap();
    std::fs::write(
        &jsonl,
        format!(
            "{{\"id\":\"j1\",\"observed_at\":\"{at}\",\"lat\":59.3345,\"lon\":18.0735,\"category\":\"theft\",\"severity\":2,\"source\":\"staff\",\"persons\":[{{\"name\":\"Anna Svensson\",\"personal_identity_number\":\"19800101-1234\"}}]}}\n\
             {{\"id\":\"j2\",\"observed_at\":\"{at}\",\"lat\":59.3345,\"lon\":18.0735,\"category\":\"shoplifting\",\"severity\":1,\"source\":\"staff\"}}\n"
        ),
    )
    .unwrap();
    let (ok, stdout, stderr) = ingest(&fed, &jsonl, "jsonl", &[]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("2 stored"), "{stdout}");

    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/reports/tests/data/polisen-events-sample.json");
    let (ok, _, stderr) = ingest(&fed, &sample, "polisen", &[]);
    assert!(!ok, "an event without a scene is not loaded silently");
    assert!(stderr.contains("centroid"), "{stderr}");
    let (ok, stdout, stderr) = ingest(&fed, &sample, "polisen", &["--skip-invalid"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("3 stored, 0 duplicates (0 already stored, 0 repeated in the file), 1 rejected, 0 skipped, of 4 read"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_police_import_counts_every_event_once_and_lists_every_rejection() {
    let mut fed = TestFederation::start_with(&["alpha"], &["--retention-days", "36500"]).await;
    let event = |id: u32, kind: &str, summary: &str, datetime: &str| {
        format!(
            r#"{{"id": {id}, "datetime": "{datetime}", "name": "20 mars 22.15, {kind}, Stockholm", "summary": "{summary}", "type": "{kind}", "location": {{"name": "Stockholm", "gps": "59.329324,18.068581"}}}}"#
        )
    };
    let at = "2026-03-20 22:41:05 +01:00";
    let events = [
        event(
            501,
            "Misshandel",
            "En man har misshandlats vid Sergels torg.",
            at,
        ),
        event(
            502,
            "Larm Inbrott",
            "Inbrottslarm i butik på Drottninggatan.",
            at,
        ),
        event(
            501,
            "Misshandel",
            "En man har misshandlats vid Sergels torg.",
            at,
        ),
        event(504, "Stöld", "Stöld någonstans i länet.", at),
        event(505, "Rån", "Rån vid Sergels torg.", "igår kväll"),
        event(506, "Sammanfattning natt", "Lugn natt.", at),
        event(507, "Djur skadat/omhändertaget", "Ett rådjur i länet.", at),
    ];
    let file = fed.dir.path().join("polisen.json");
    std::fs::write(&file, format!("[{}]", events.join(",\n"))).unwrap();
    let rejected = fed.dir.path().join("rejected.jsonl");
    let (ok, stdout, stderr) = ingest(
        &fed,
        &file,
        "polisen",
        &["--skip-invalid", "--rejected", rejected.to_str().unwrap()],
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(
            "2 stored, 1 duplicates (0 already stored, 1 repeated in the file), 3 rejected, 1 skipped, of 7 read"
        ),
        "{stdout}"
    );
    // The unplaced animal event was not sent, so it is not said to be stored.
    assert!(!stdout.contains("Djur"), "{stdout}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&rejected)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let listed: Vec<(u64, &str)> = lines
        .iter()
        .map(|l| (l["line"].as_u64().unwrap(), l["id"].as_str().unwrap()))
        .collect();
    assert_eq!(
        listed,
        [(4, "polisen-504"), (5, "polisen-505"), (7, "polisen-507")]
    );
    assert!(lines
        .iter()
        .all(|l| !l["reason"].as_str().unwrap().is_empty()));

    // The alarm is stored as `other`, not as a theft.
    fed.kill("alpha");
    let store = Store::open(&fed.store_dir("alpha"), StoreOptions::default()).unwrap();
    let categories: std::collections::BTreeSet<u8> = store
        .counters(CounterFamily::M250, 0, u32::MAX)
        .map(|(key, _)| key.category)
        .collect();
    assert_eq!(
        categories,
        [Category::Violence as u8, Category::Other as u8].into()
    );
}
