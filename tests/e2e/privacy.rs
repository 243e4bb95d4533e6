//! Privacy end to end: real nodes, real mTLS, real stores. Nothing a peer can
//! obtain (releases, events, recalls, what its own node took in) carries a
//! canary; windows that differ by one report release the same; the privacy
//! budget holds across a restart; a new policy takes effect on the
//! next call and a broken one never does.

use crate::common::{now, run, TestFederation};
use lagesbild_auth::AuthChannel;
use lagesbild_proto::v1::aggregate_service_client::AggregateServiceClient;
use lagesbild_proto::v1::event_service_client::EventServiceClient;
use lagesbild_proto::v1::node_service_client::NodeServiceClient;
use lagesbild_proto::v1::picture_service_client::PictureServiceClient;
use lagesbild_proto::v1::policy_service_client::PolicyServiceClient;
use lagesbild_proto::v1::report_service_client::ReportServiceClient;
use lagesbild_proto::v1::{
    feed_item, FeedItem, RecallReason, RecallRequest, SubscribeRequest, WatchRequest,
};
use lagesbild_proto::v1::{
    Area, BucketKind, Category, ExplainRequest, FederationStatusRequest, InfoRequest, Person,
    PictureRequest, Position, ReleaseManyRequest, ReleaseRequest, Report, Source,
    SubmitBatchRequest, Tlp,
};
use prost::Message;
use prost_types::Timestamp;
use std::path::Path;
use std::time::Duration;
use tonic::Code;

const HOLDER: &str = "polisen";
const PEER: &str = "scandic";
const NOISY_PEER: &str = "svensk-handel";
use crate::common::PURPOSE;

/// Canaries: what must never cross the wire.
const NAME: &str = "Ingegerd Zetterqvist";
const PNR: &str = "811218-9876";
const PHONE: &str = "070-123 45 67";
const PLATE: &str = "KBT 62X";
const EMAIL: &str = "ingegerd.z@example.se";
const ID_PREFIX: &str = "canary-report-";
/// A person the text names but the report does not list.
const WITNESS: &str = "Johan Andersson";
const LAT: f64 = 59.334_171_3;
const LON: f64 = 18.063_112_7;

/// Start of the hour three hours ago: canaries go in it, the lone report two
/// hours later.
fn base_hour_start() -> i64 {
    (now() / 3600 - 3) * 3600
}

fn canary(n: usize, seconds: i64, category: Category) -> Report {
    Report {
        id: format!("{ID_PREFIX}{n:04}"),
        observed_at: Some(Timestamp { seconds, nanos: 0 }),
        position: Some(Position { lat: LAT, lon: LON }),
        place_name: "Sergels torg".into(),
        category: category as i32,
        severity: 4,
        text: {
            let grid = lagesbild_geo::project(LAT, LON);
            format!(
                "{NAME} ({PNR}), tel {PHONE}, {EMAIL}, bil {PLATE}, vid {LAT}, {LON} (SWEREF 99 TM {:.0}, {:.0}). {WITNESS} såg allt.",
                grid.northing, grid.easting
            )
        },
        persons: vec![Person {
            name: NAME.into(),
            personal_identity_number: PNR.into(),
        }],
        vehicle_plates: vec![PLATE.into()],
        source: Source::Patrol as i32,
        tlp: Tlp::Red as i32,
    }
}

/// Five violence reports at odd seconds in the base hour, and one theft alone
/// two hours later.
fn canaries() -> (Vec<Report>, Vec<i64>) {
    let base = base_hour_start();
    let times: Vec<i64> = (0..5).map(|i| base + 137 + i * 611).collect();
    let mut reports: Vec<Report> = times
        .iter()
        .enumerate()
        .map(|(i, &t)| canary(i, t, Category::Violence))
        .collect();
    let lone = base + 2 * 3600 + 1_213;
    reports.push(canary(99, lone, Category::Theft));
    let mut all_times = times;
    all_times.push(lone);
    (reports, all_times)
}

fn write_policy(fed: &TestFederation, org: &str, text: &str) {
    let path = fed.org_dir(org).join("policy.toml");
    let tmp = path.with_extension("toml.new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
}

const POLICY: &str = r#"version = 1

[peer.scandic]
scopes = ["aggregate:read", "events:read"]
purposes = ["situation-picture"]
categories = ["all"]
finest_cell = 100
finest_bucket = "hour"
k = 3
rate_limit = 1000
max_tlp = "red"
text = true

[peer.svensk-handel]
scopes = ["aggregate:read", "events:read"]
purposes = ["situation-picture"]
categories = ["violence", "theft"]
finest_cell = 100
finest_bucket = "hour"
k = 3
epsilon_per_query = 1.0
epsilon_per_day = 2.0
rate_limit = 1000
"#;

async fn load_canaries(fed: &TestFederation) -> Vec<i64> {
    let (reports, times) = canaries();
    let mut writer = ReportServiceClient::new(fed.authed(HOLDER, HOLDER, &["report:write"]));
    let summary = writer
        .submit_batch(SubmitBatchRequest {
            reports,
            validate_only: false,
        })
        .await
        .expect("own org writes reports")
        .into_inner();
    assert_eq!(summary.stored, 6);
    times
}

fn aggregates(fed: &TestFederation, as_org: &str) -> AggregateServiceClient<AuthChannel> {
    AggregateServiceClient::new(fed.authed(HOLDER, as_org, &["aggregate:read"]))
}

fn request(from: i64, to: i64, cell: u32, bucket: BucketKind) -> ReleaseRequest {
    ReleaseRequest {
        unless_digest: Vec::new(),
        columnar: false,
        purpose: PURPOSE.into(),
        from: Some(Timestamp {
            seconds: from,
            nanos: 0,
        }),
        to: Some(Timestamp {
            seconds: to,
            nanos: 0,
        }),
        categories: vec![],
        area: None,
        cell_size_m: cell,
        bucket: bucket as i32,
        totals_only: false,
    }
}

/// Everything a peer got back from one call: the encoded response, or the
/// status message and details.
fn wire_bytes<T: Message>(result: Result<tonic::Response<T>, tonic::Status>) -> Vec<u8> {
    match result {
        Ok(response) => response.into_inner().encode_to_vec(),
        Err(status) => {
            let mut bytes = status.message().as_bytes().to_vec();
            bytes.extend_from_slice(status.details());
            bytes
        }
    }
}

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every form in which a canary could appear in a response.
fn canary_patterns(times: &[i64]) -> Vec<(String, Vec<u8>)> {
    let mut patterns: Vec<(String, Vec<u8>)> = Vec::new();
    let mut text = |label: &str, s: String| {
        patterns.push((format!("{label} {s:?}"), s.clone().into_bytes()));
        patterns.push((
            format!("{label} {s:?} (lower case)"),
            s.to_lowercase().into_bytes(),
        ));
    };
    text("name", NAME.into());
    text("surname", "Zetterqvist".into());
    text("witness", WITNESS.into());
    text("witness's first name", "Johan".into());
    text("witness's surname", "Andersson".into());
    text("identity number", PNR.into());
    text("identity number", PNR.replace('-', ""));
    text("identity number", format!("19{}", PNR.replace('-', "")));
    text("phone", PHONE.into());
    text("phone", PHONE.replace(['-', ' '], ""));
    text("plate", PLATE.into());
    text("plate", PLATE.replace(' ', ""));
    text("e-mail", EMAIL.into());
    text("report id", ID_PREFIX.into());
    text("latitude", format!("{LAT}"));
    text("longitude", format!("{LON}"));
    text("latitude", "59.33417".into());
    text("longitude", "18.06311".into());
    for t in times {
        text("timestamp", t.to_string());
    }
    for (label, v) in [("latitude", LAT), ("longitude", LON)] {
        patterns.push((format!("{label} as a double"), v.to_le_bytes().to_vec()));
        patterns.push((
            format!("{label} as a float"),
            (v as f32).to_le_bytes().to_vec(),
        ));
    }
    let exact = lagesbild_geo::project(LAT, LON);
    for (label, v) in [("easting", exact.easting), ("northing", exact.northing)] {
        patterns.push((
            format!("exact {label} as a double"),
            v.to_le_bytes().to_vec(),
        ));
        patterns.push((
            format!("exact {label} {v:.0}"),
            format!("{v:.0}").into_bytes(),
        ));
    }
    for t in times {
        // google.protobuf.Timestamp { seconds: t }: field 1, varint.
        let mut encoded = vec![0x08];
        encoded.extend(varint(*t as u64));
        patterns.push((format!("timestamp {t} as a protobuf Timestamp"), encoded));
    }
    patterns
}

#[tokio::test(flavor = "multi_thread")]
async fn no_canary_reaches_a_peer_through_any_call() {
    let fed = TestFederation::start(&[HOLDER, PEER, NOISY_PEER]).await;
    write_policy(&fed, HOLDER, POLICY);
    let times = load_canaries(&fed).await;
    let (from, to) = (base_hour_start() - 86_400 * 2, now() + 3600);

    let mut responses: Vec<(String, Vec<u8>)> = Vec::new();
    let mut released_values = 0;
    for peer in [PEER, NOISY_PEER, "audit"] {
        let mut client = aggregates(&fed, peer);
        for cell in [100, 250, 500, 1000] {
            let mut many = Vec::new();
            for bucket in [
                BucketKind::Hour,
                BucketKind::Day,
                BucketKind::Week,
                BucketKind::HourOfDay,
                BucketKind::HourOfWeek,
            ] {
                let mut req = request(from, to, cell, bucket);
                if cell == 250 {
                    req.area = Some(Area {
                        south: LAT - 0.001,
                        west: LON - 0.002,
                        north: LAT + 0.001,
                        east: LON + 0.002,
                    });
                    req.categories = vec![Category::Violence as i32];
                }
                many.push(req.clone());
                let result = client.release(req).await;
                if let Ok(r) = &result {
                    released_values += r.get_ref().counts.len();
                }
                responses.push((
                    format!("{peer} release {cell} m {bucket:?}"),
                    wire_bytes(result),
                ));
            }
            // Totals of a profile too.
            many.push(ReleaseRequest {
                totals_only: true,
                ..request(from, to, cell, BucketKind::HourOfWeek)
            });
            // The same requests in one call, as a federated picture asks them.
            let result = client
                .release_many(ReleaseManyRequest { requests: many })
                .await;
            if let Ok(r) = &result {
                released_values += r
                    .get_ref()
                    .outcomes
                    .iter()
                    .filter_map(|o| o.release.as_ref())
                    .map(|r| r.counts.len())
                    .sum::<usize>();
            }
            responses.push((format!("{peer} release-many {cell} m"), wire_bytes(result)));
        }
        let mut node = NodeServiceClient::new(fed.authed(HOLDER, peer, &[]));
        responses.push((
            format!("{peer} info"),
            wire_bytes(node.info(InfoRequest {}).await),
        ));
        responses.push((
            format!("{peer} federation status"),
            wire_bytes(
                node.federation_status(FederationStatusRequest { timeout_ms: 500 })
                    .await,
            ),
        ));
        let mut policy = PolicyServiceClient::new(fed.authed(HOLDER, peer, &["policy:admin"]));
        let explain = policy.explain(ExplainRequest { peer: peer.into() }).await;
        assert_eq!(
            explain.as_ref().unwrap_err().code(),
            Code::PermissionDenied,
            "{peer}"
        );
        responses.push((format!("{peer} explain"), wire_bytes(explain)));
        let mut writer = ReportServiceClient::new(fed.authed(HOLDER, peer, &["report:write"]));
        let write = writer
            .submit_batch(SubmitBatchRequest {
                reports: vec![canary(500, now() - 60, Category::Violence)],
                validate_only: true,
            })
            .await;
        assert_eq!(
            write.as_ref().unwrap_err().code(),
            Code::PermissionDenied,
            "{peer}"
        );
        responses.push((format!("{peer} submit"), wire_bytes(write)));
    }
    // Events: the peer's feed on the holder (the finest cells, text and every
    // marking its policy allows), what the peer's own node took into its
    // inbox, a recall, and the refusals of peers that may not subscribe.
    let mut feed = EventServiceClient::new(fed.authed(HOLDER, PEER, &["events:read"]))
        .subscribe(SubscribeRequest { after: 0 })
        .await
        .expect("the peer subscribes")
        .into_inner();
    let mut events = 0;
    let mut texts = 0;
    for _ in 0..6 {
        let item = tokio::time::timeout(Duration::from_secs(30), feed.message())
            .await
            .expect("six events within 30 s")
            .unwrap()
            .unwrap();
        if let Some(feed_item::Item::Event(e)) = &item.item {
            events += 1;
            texts += usize::from(!e.text.is_empty());
        }
        responses.push((
            format!("{PEER} event feed item {}", item.seq),
            item.encode_to_vec(),
        ));
    }
    assert_eq!(
        (events, texts),
        (6, 6),
        "every canary makes an event with text"
    );
    let recalled = EventServiceClient::new(fed.authed(HOLDER, HOLDER, &["report:write"]))
        .recall(RecallRequest {
            report_id: format!("{ID_PREFIX}0000"),
            reason: RecallReason::EnteredInError as i32,
        })
        .await
        .expect("the holder recalls");
    assert_eq!(recalled.get_ref().recipients, 1);
    let item = tokio::time::timeout(Duration::from_secs(30), feed.message())
        .await
        .expect("the recall within 30 s")
        .unwrap()
        .unwrap();
    assert!(matches!(item.item, Some(feed_item::Item::Recall(_))));
    responses.push((format!("{PEER} event feed recall"), item.encode_to_vec()));
    let mut inbox = EventServiceClient::new(fed.authed(PEER, PEER, &["events:read"]))
        .watch(WatchRequest { after: 0 })
        .await
        .expect("the peer watches its own node")
        .into_inner();
    for _ in 0..7 {
        let item = tokio::time::timeout(Duration::from_secs(30), inbox.message())
            .await
            .expect("the peer's node took the events and the recall within 30 s")
            .unwrap()
            .unwrap();
        responses.push((
            format!("{PEER} watch item {}", item.seq),
            item.encode_to_vec(),
        ));
    }
    for (peer, scopes) in [
        (NOISY_PEER, &["events:read"][..]),
        ("audit", &["events:read"][..]),
        (PEER, &["aggregate:read"][..]),
    ] {
        let subscribed = EventServiceClient::new(fed.authed(HOLDER, peer, scopes))
            .subscribe(SubscribeRequest { after: 0 })
            .await;
        let bytes = match subscribed {
            // Red canaries make no events for a peer whose ceiling is green.
            Ok(stream) => {
                let mut stream = stream.into_inner();
                let next = tokio::time::timeout(Duration::from_secs(1), stream.message()).await;
                assert!(
                    !matches!(next, Ok(Ok(Some(_)))),
                    "{peer} received an event above its TLP"
                );
                Vec::new()
            }
            Err(status) => wire_bytes::<FeedItem>(Err(status)),
        };
        responses.push((format!("{peer} subscribe"), bytes));
    }

    // The check is only worth something if values were actually released.
    assert!(
        released_values > 20,
        "only {released_values} values released"
    );

    let patterns = canary_patterns(&times);
    // The scan finds the canaries where they are: in the reports themselves.
    let (reports, _) = canaries();
    let raw: Vec<u8> = reports.iter().flat_map(|r| r.encode_to_vec()).collect();
    for must_find in [
        "name \"",
        "identity number \"811218",
        "phone \"070-",
        "plate \"KBT 62X\"",
        "e-mail \"",
        "report id \"",
        "latitude as a double",
        "longitude as a double",
        "as a protobuf Timestamp",
    ] {
        assert!(
            patterns
                .iter()
                .any(|(what, p)| what.contains(must_find) && contains(&raw, p)),
            "the scan would not see {must_find}"
        );
    }
    for (call, bytes) in &responses {
        for (what, pattern) in &patterns {
            assert!(!contains(bytes, pattern), "{what} leaked in {call}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn releases_follow_the_policy_and_windows_differing_by_one_report_match() {
    let fed = TestFederation::start(&[HOLDER, PEER]).await;
    write_policy(&fed, HOLDER, POLICY);
    let times = load_canaries(&fed).await;
    let mut client = aggregates(&fed, PEER);
    let base = base_hour_start();

    let narrow = client
        .release(request(base, base + 2 * 3600, 100, BucketKind::Hour))
        .await
        .unwrap()
        .into_inner();
    // The five violence reports share one 100 m cell and one hour: released.
    assert_eq!(narrow.counts.len(), 1, "{narrow:?}");
    let value = &narrow.counts[0];
    assert_eq!((value.count, value.severity_sum), (5, 20));
    assert_eq!(value.category, Category::Violence as i32);
    assert_eq!(value.bucket_start.as_ref().unwrap().seconds, base);
    let cell = value.cell.as_ref().unwrap();
    assert_eq!((cell.easting % 100, cell.northing % 100), (0, 0));
    assert_eq!((narrow.k, narrow.epsilon), (3, 0.0));

    // Reaching one second past the lone theft adds exactly that report.
    let lone = times[5];
    let wide = client
        .release(request(base, lone + 1, 100, BucketKind::Hour))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        wide.counts, narrow.counts,
        "one report more changed the release"
    );
    assert!(wide.to.as_ref().unwrap().seconds > narrow.to.as_ref().unwrap().seconds);

    // Finer than allowed, purposes not listed, categories not allowed: refused.
    write_policy(
        &fed,
        HOLDER,
        &POLICY.replace(
            "finest_cell = 100\nfinest_bucket = \"hour\"\nk = 3\nrate_limit = 1000\nmax_tlp = \"red\"\ntext = true\n\n[peer.svensk",
            "finest_cell = 500\nfinest_bucket = \"day\"\nk = 3\nrate_limit = 1000\nmax_tlp = \"red\"\ntext = true\n\n[peer.svensk",
        ),
    );
    let refused = client
        .release(request(base, base + 3600, 250, BucketKind::Day))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(refused.message().contains("500 m"), "{}", refused.message());
    let refused = client
        .release(request(base, base + 3600, 500, BucketKind::HourOfDay))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let mut wrong_purpose = request(base, base + 3600, 500, BucketKind::Day);
    wrong_purpose.purpose = "marketing".into();
    let refused = client.release(wrong_purpose).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(
        refused.message().contains("marketing"),
        "{}",
        refused.message()
    );
    let day = client
        .release(request(base, base + 3600, 500, BucketKind::Day))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(day.cell_size_m, 500);
    assert!(day.counts.iter().all(|v| v.count >= 3));

    // Bad filters are INVALID_ARGUMENT naming the field.
    let bad = client
        .release(request(base, base + 3600, 300, BucketKind::Day))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("cell_size_m"), "{}", bad.message());
    let bad = client
        .release(request(base + 3600, base, 500, BucketKind::Day))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("to"), "{}", bad.message());
}

fn explain_json(config: &Path, peer: &str) -> serde_json::Value {
    let out = run(&[
        "policy",
        "explain",
        "--config",
        &config.display().to_string(),
        "--peer",
        peer,
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A peer allowed 100 m cells and hours, with k = 4 and no noise.
const FINE_PEER_POLICY: &str = r#"version = 1

[peer.scandic]
scopes = ["aggregate:read"]
purposes = ["situation-picture"]
categories = ["all"]
finest_cell = 100
finest_bucket = "hour"
k = 4
rate_limit = 10000
"#;

/// A position in the same 1000 m cell as the canaries' but another 100 m cell.
fn nearby() -> (f64, f64) {
    use lagesbild_geo::{Cell, CellSize};
    let at = |lat: f64, lon: f64, size| Cell::containing(lat, lon, size).unwrap();
    [(0.0, 0.003), (0.0, -0.003), (0.0015, 0.0), (-0.0015, 0.0)]
        .into_iter()
        .map(|(dlat, dlon)| (LAT + dlat, LON + dlon))
        .find(|&(lat, lon)| {
            at(lat, lon, CellSize::M1000) == at(LAT, LON, CellSize::M1000)
                && at(lat, lon, CellSize::M100) != at(LAT, LON, CellSize::M100)
        })
        .expect("one of the offsets stays in the 1000 m cell")
}

#[tokio::test(flavor = "multi_thread")]
async fn no_shape_a_peer_may_ask_gives_away_a_withheld_report() {
    let fed = TestFederation::start(&[HOLDER, PEER]).await;
    write_policy(&fed, HOLDER, FINE_PEER_POLICY);
    // Five violence reports in one spot and one nearby, in one hour.
    let base = base_hour_start();
    let mut reports: Vec<Report> = (0..5)
        .map(|i| canary(i, base + 60 + i as i64 * 300, Category::Violence))
        .collect();
    let (lat, lon) = nearby();
    reports.push(Report {
        position: Some(Position { lat, lon }),
        ..canary(5, base + 2_000, Category::Violence)
    });
    let mut writer = ReportServiceClient::new(fed.authed(HOLDER, HOLDER, &["report:write"]));
    writer
        .submit_batch(SubmitBatchRequest {
            reports,
            validate_only: false,
        })
        .await
        .unwrap();

    // Every shape the peer may ask sums to the five: the lone report is in
    // none of them, so no difference between them shows it.
    let mut client = aggregates(&fed, PEER);
    let (from, to) = (base - 86_400 * 40, now() + 3600);
    let area = Area {
        south: LAT - 0.01,
        west: LON - 0.02,
        north: LAT + 0.01,
        east: LON + 0.02,
    };
    let mut shapes = 0;
    for cell in [100, 500, 1000] {
        for bucket in [
            BucketKind::Hour,
            BucketKind::Day,
            BucketKind::Week,
            BucketKind::HourOfDay,
            BucketKind::HourOfWeek,
        ] {
            for totals_only in [false, true] {
                for (categories, area) in [
                    (vec![], None),
                    (vec![Category::Violence as i32], Some(area)),
                ] {
                    let asked = ReleaseRequest {
                        totals_only,
                        categories,
                        area,
                        ..request(from, to, cell, bucket)
                    };
                    let release = client.release(asked).await.unwrap().into_inner();
                    let sum = release
                        .counts
                        .iter()
                        .fold((0, 0), |t, v| (t.0 + v.count, t.1 + v.severity_sum));
                    assert_eq!(sum, (5, 20), "{cell} m {bucket:?} totals {totals_only}");
                    shapes += 1;
                }
            }
        }
    }
    assert_eq!(shapes, 60);
    // 250 m cells are not made of 100 m cells: refused, in words.
    let refused = client
        .release(request(from, to, 250, BucketKind::Day))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(
        refused.message().contains("250 m") && refused.message().contains("100 m"),
        "{}",
        refused.message()
    );

    // The peer's own federated picture, merged from what the holder released
    // to it, and its profiles: five, at every cell size.
    let mut pictures = PictureServiceClient::new(fed.authed(PEER, PEER, &["aggregate:read"]));
    for cell in [100, 500, 1000] {
        let picture = pictures
            .picture(PictureRequest {
                columnar: false,
                filters: Some(request(from, to, cell, BucketKind::Day)),
                top: 5,
                deadline_ms: 5000,
            })
            .await
            .unwrap()
            .into_inner();
        let holder = picture
            .answers
            .iter()
            .find(|a| a.org == HOLDER)
            .expect("the holder answered");
        assert_eq!(
            holder.status,
            lagesbild_proto::v1::AnswerStatus::Ok as i32,
            "{holder:?}"
        );
        let merged: u64 = picture
            .cells
            .iter()
            .map(|c| c.value.as_ref().unwrap().count)
            .sum();
        assert_eq!(merged, 5, "{cell} m picture");
        assert_eq!(picture.hour_of_day.iter().sum::<u64>(), 5);
        assert_eq!(picture.hour_of_week.iter().sum::<u64>(), 5);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spent_budget_is_refused_and_a_restart_does_not_refill_it() {
    let mut fed = TestFederation::start(&[HOLDER, NOISY_PEER]).await;
    write_policy(&fed, HOLDER, POLICY);
    load_canaries(&fed).await;
    let base = base_hour_start();
    let mut client = aggregates(&fed, NOISY_PEER);
    for expected_left in [1.0, 0.0] {
        let release = client
            .release(request(base, base + 3600, 100, BucketKind::Hour))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(release.epsilon, 1.0);
        assert_eq!(release.budget_left_today, expected_left);
        assert!(release.counts.iter().all(|v| v.count >= 3));
    }
    let spent = client
        .release(request(base, base + 3600, 100, BucketKind::Hour))
        .await
        .unwrap_err();
    assert_eq!(spent.code(), Code::ResourceExhausted);
    assert!(
        spent.message().contains("0 of 2 left"),
        "{}",
        spent.message()
    );
    assert!(
        spent.message().contains("refills at"),
        "{}",
        spent.message()
    );

    let config = fed.org_dir(HOLDER).join("node.toml");
    let explained = explain_json(&config, NOISY_PEER);
    assert_eq!(explained["noise"]["left_today"], 0.0);
    assert_eq!(explained["noise"]["queries_left_today"], 0);

    fed.kill(HOLDER);
    // With the node down, explain reads the policy file and the store itself.
    let offline = explain_json(&config, NOISY_PEER);
    assert_eq!(offline["noise"]["spent_today"], 2.0);
    fed.restart(HOLDER).await;
    let mut client = aggregates(&fed, NOISY_PEER);
    let still_spent = client
        .release(request(base, base + 3600, 100, BucketKind::Hour))
        .await
        .unwrap_err();
    assert_eq!(
        still_spent.code(),
        Code::ResourceExhausted,
        "restart refilled the budget"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_policy_takes_effect_on_the_next_call_and_a_broken_one_never() {
    let fed = TestFederation::start(&[HOLDER, PEER]).await;
    let base = base_hour_start();
    let mut client = aggregates(&fed, PEER);
    let denied = client
        .release(request(base, base + 3600, 1000, BucketKind::Week))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(
        denied.message().contains("gives scandic nothing"),
        "{}",
        denied.message()
    );

    write_policy(&fed, HOLDER, POLICY);
    client
        .release(request(base, base + 3600, 1000, BucketKind::Week))
        .await
        .expect("allowed by the new policy on the next call");

    let broken = POLICY.replace(
        "k = 3\nrate_limit = 1000\nmax_tlp = \"red\"\ntext = true\n\n[peer.svensk",
        "k = 2\nrate_limit = 1000\nmax_tlp = \"red\"\ntext = true\n\n[peer.svensk",
    );
    let broken_path = fed.dir.path().join("broken.toml");
    std::fs::write(&broken_path, &broken).unwrap();
    let check = run(&["policy", "check", &broken_path.display().to_string()]);
    assert!(!check.status.success());
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(
        stderr.contains("line 9, peer.scandic.k") && stderr.contains("minimum of 3"),
        "{stderr}"
    );

    write_policy(&fed, HOLDER, &broken);
    let still = client
        .release(request(base, base + 3600, 100, BucketKind::Hour))
        .await
        .expect("the previous policy stays in force")
        .into_inner();
    assert_eq!(still.k, 3);
    let log = fed
        .nodes
        .iter()
        .find(|n| n.org() == HOLDER)
        .unwrap()
        .log_text();
    assert!(log.contains("new policy refused"), "{log}");

    let good = run(&[
        "policy",
        "check",
        &fed.org_dir(HOLDER)
            .join("../federation.toml")
            .display()
            .to_string(),
    ]);
    assert!(!good.status.success(), "a federation file is not a policy");
    std::fs::write(&broken_path, POLICY).unwrap();
    let ok = run(&[
        "policy",
        "check",
        &broken_path.display().to_string(),
        "--federation",
        &fed.dir.path().join("federation.toml").display().to_string(),
    ]);
    // svensk-handel is not a member of this two-org federation.
    assert!(!ok.status.success());
    assert!(String::from_utf8_lossy(&ok.stderr).contains("svensk-handel"));
}

#[test]
fn scrub_shows_what_a_text_becomes_and_which_rule_removed_what() {
    let out = run(&[
        "scrub",
        "--json",
        "Johan Andersson och Anna Karlsson bråkade i lobbyn. Exakt position 59.310693, 18.105558 vid personalingången.",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        shown["scrubbed"],
        "[namn] och [namn] bråkade i lobbyn. Exakt position [position] vid personalingången."
    );
    let removed: Vec<(String, String)> = shown["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["placeholder"].as_str().unwrap().to_owned(),
                r["removed"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for expected in [
        ("[namn]", "Johan Andersson"),
        ("[namn]", "Anna Karlsson"),
        ("[position]", "59.310693, 18.105558"),
    ] {
        assert!(
            removed.contains(&(expected.0.into(), expected.1.into())),
            "{removed:?}"
        );
    }
    assert_eq!(removed.len(), 3, "{removed:?}");

    // An ordinary sentence with a street named after a person stays as it is.
    let plain = "Det var mörkt i trappan vid Birger Jarlsgatan i natt.";
    let out = run(&["scrub", plain]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with(plain), "{text}");
    assert!(text.contains("Nothing was removed."), "{text}");

    let out = run(&["scrub", "  "]);
    assert!(!out.status.success());
    let error = String::from_utf8(out.stderr).unwrap();
    assert_eq!(error.lines().count(), 1, "{error}");
    assert!(error.contains("no text to scrub"), "{error}");
}
