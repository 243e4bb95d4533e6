//! The federated picture across real nodes: merged counts are the sum of what
//! each member released; a killed peer is reported unavailable within the
//! deadline; a peer without a policy for the caller is reported denied.

use crate::common::{now, TestFederation, PURPOSE};
use lagesbild_proto::v1::aggregate_service_client::AggregateServiceClient;
use lagesbild_proto::v1::picture_service_client::PictureServiceClient;
use lagesbild_proto::v1::report_service_client::ReportServiceClient;
use lagesbild_proto::v1::{
    AnswerStatus, BucketKind, Category, PictureRequest, Position, ReleaseManyRequest,
    ReleaseRequest, Report, Source, SubmitBatchRequest, Tlp,
};
use prost_types::Timestamp;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const MEMBERS: [&str; 5] = [
    "polisen",
    "stockholm-stad",
    "amf-fastigheter",
    "svensk-handel",
    "scandic",
];

fn policy(except: &[&str]) -> String {
    let mut text = String::from("version = 1\n");
    for m in MEMBERS.iter().filter(|m| !except.contains(m)) {
        text.push_str(&format!(
            "[peer.{m}]\nscopes = [\"aggregate:read\"]\npurposes = [\"{PURPOSE}\"]\ncategories = [\"all\"]\nfinest_cell = 250\nfinest_bucket = \"hour\"\nk = 3\nrate_limit = 1000\n"
        ));
    }
    text
}

/// Deterministic reports around Sergels torg: each org a different mix.
fn reports(org_index: usize) -> Vec<Report> {
    let base = (now() / 3600 - 30) * 3600;
    (0..120)
        .map(|i| Report {
            id: format!("r-{org_index}-{i}"),
            observed_at: Some(Timestamp {
                seconds: base + (i as i64 % 4) * 3600 + 60,
                nanos: 0,
            }),
            position: Some(Position {
                lat: 59.3320 + ((i * (org_index + 1)) % 5) as f64 * 0.0015,
                lon: 18.0620 + (i % 3) as f64 * 0.003,
            }),
            category: [Category::Violence, Category::Theft, Category::DarkArea][(i + org_index) % 3]
                as i32,
            severity: 1 + (i % 5) as u32,
            source: Source::Staff as i32,
            tlp: Tlp::Green as i32,
            text: "Händelse".into(),
            ..Report::default()
        })
        .collect()
}

fn filters() -> ReleaseRequest {
    ReleaseRequest {
        unless_digest: Vec::new(),
        columnar: false,
        purpose: String::new(),
        from: Some(Timestamp {
            seconds: now() - 3 * 86_400,
            nanos: 0,
        }),
        to: Some(Timestamp {
            seconds: now(),
            nanos: 0,
        }),
        categories: vec![],
        area: None,
        cell_size_m: 250,
        bucket: BucketKind::Day as i32,
        totals_only: false,
    }
}

/// A released value's (bucket start, category, easting, northing).
type AtomKey = (i64, i32, u32, u32);
type Atoms = BTreeMap<AtomKey, u64>;

fn atom_key(v: &lagesbild_proto::v1::ReleasedCount) -> AtomKey {
    let cell = v.cell.unwrap();
    (
        v.bucket_start.unwrap().seconds,
        v.category,
        cell.easting,
        cell.northing,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_picture_is_the_sum_of_the_releases_and_says_who_did_not_answer() {
    let mut fed = TestFederation::start(&MEMBERS).await;
    for (i, org) in MEMBERS.iter().enumerate() {
        // scandic gives stockholm-stad nothing.
        let except: &[&str] = if *org == "scandic" {
            &["stockholm-stad"]
        } else {
            &[]
        };
        std::fs::write(fed.org_dir(org).join("policy.toml"), policy(except)).unwrap();
        let mut writer = ReportServiceClient::new(fed.authed(org, org, &["report:write"]));
        writer
            .submit_batch(SubmitBatchRequest {
                reports: reports(i),
                validate_only: false,
            })
            .await
            .unwrap();
    }

    // What each member releases to stockholm-stad on its own.
    let home = "stockholm-stad";
    let mut expected: Atoms = BTreeMap::new();
    // Who released each value, and which categories each org covers.
    let mut released_by: BTreeMap<AtomKey, BTreeSet<String>> = BTreeMap::new();
    let mut covers: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for org in MEMBERS.iter().filter(|o| **o != "scandic") {
        let mut client = AggregateServiceClient::new(fed.authed(org, home, &["aggregate:read"]));
        let release = client.release(filters()).await.unwrap().into_inner();
        // Asked for columns, the same values in the same order.
        let columnar = client
            .release(ReleaseRequest {
                columnar: true,
                ..filters()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(columnar.counts.is_empty());
        assert_eq!(
            columnar.columns,
            Some(lagesbild_proto::columns::columns_of(&release.counts))
        );
        covers.insert(org.to_string(), release.categories.clone());
        for v in release.counts {
            let key = atom_key(&v);
            *expected.entry(key).or_default() += v.count;
            released_by.entry(key).or_default().insert(org.to_string());
        }
    }
    assert!(!expected.is_empty());

    // Totals: per bucket, exactly the sum of what the same release sends in full.
    let mut client = AggregateServiceClient::new(fed.authed("polisen", home, &["aggregate:read"]));
    let profile = ReleaseRequest {
        bucket: BucketKind::HourOfDay as i32,
        cell_size_m: 1000,
        ..filters()
    };
    let requests = vec![
        filters(),
        ReleaseRequest {
            totals_only: true,
            ..filters()
        },
        profile.clone(),
        ReleaseRequest {
            totals_only: true,
            ..profile
        },
    ];
    let outcomes = client
        .release_many(ReleaseManyRequest { requests })
        .await
        .unwrap()
        .into_inner()
        .outcomes;
    let released: Vec<_> = outcomes
        .into_iter()
        .map(|o| {
            assert_eq!(o.code, 0, "{}", o.message);
            o.release.unwrap().counts
        })
        .collect();
    for (full, totals) in [(&released[0], &released[1]), (&released[2], &released[3])] {
        let mut summed: BTreeMap<(Option<i64>, u32), u64> = BTreeMap::new();
        for v in full.iter() {
            *summed
                .entry((v.bucket_start.map(|t| t.seconds), v.slot))
                .or_default() += v.count;
        }
        let sent: BTreeMap<(Option<i64>, u32), u64> = totals
            .iter()
            .map(|v| {
                assert!(v.cell.is_none() && v.category == 0, "{v:?}");
                ((v.bucket_start.map(|t| t.seconds), v.slot), v.count)
            })
            .collect();
        assert!(!sent.is_empty());
        assert_eq!(sent, summed);
    }

    let mut pictures = PictureServiceClient::new(fed.authed(home, home, &["aggregate:read"]));
    let request = PictureRequest {
        columnar: false,
        filters: Some(filters()),
        top: 5,
        // Generous for a debug build on a busy machine; the kill below checks
        // that a dead peer does not hold the picture past it.
        deadline_ms: 5000,
    };
    let picture = pictures
        .picture(request.clone())
        .await
        .unwrap()
        .into_inner();
    let got: Atoms = picture
        .cells
        .iter()
        .map(|c| {
            let v = c.value.unwrap();
            (atom_key(&v), v.count)
        })
        .collect();
    assert_eq!(
        got, expected,
        "merged counts must equal the sum of the releases"
    );
    // Each value names the orgs that released it, and the orgs that answered,
    // cover its category and withheld it; by their index among the answers.
    let names = |indices: &[u32]| -> BTreeSet<String> {
        indices
            .iter()
            .map(|&i| picture.answers[i as usize].org.clone())
            .collect()
    };
    let mut withheld_somewhere = 0;
    for c in &picture.cells {
        let v = c.value.unwrap();
        let key = atom_key(&v);
        let contributors = names(&c.contributors);
        assert_eq!(contributors, released_by[&key], "{key:?}");
        let withheld: BTreeSet<String> = covers
            .iter()
            .filter(|(org, categories)| {
                categories.contains(&v.category) && !contributors.contains(*org)
            })
            .map(|(org, _)| org.clone())
            .collect();
        assert_eq!(names(&c.withheld_by), withheld, "{key:?}");
        withheld_somewhere += usize::from(!withheld.is_empty());
    }
    assert!(withheld_somewhere > 0, "no value was withheld by anyone");
    let status = |p: &lagesbild_proto::v1::SituationPicture, org: &str| {
        let a = p.answers.iter().find(|a| a.org == org).unwrap();
        (AnswerStatus::try_from(a.status).unwrap(), a.reason.clone())
    };
    let (denied, reason) = status(&picture, "scandic");
    assert_eq!(denied, AnswerStatus::Denied);
    assert!(reason.contains("gives stockholm-stad nothing"), "{reason}");
    assert_eq!(status(&picture, "polisen").0, AnswerStatus::Ok);
    assert_eq!(picture.ranking.len(), 5);
    assert!(picture.ranking.windows(2).all(|w| w[0].score >= w[1].score));
    assert!(!picture.ranking[0].place_name.is_empty());
    assert_eq!(picture.hour_of_day.len(), 24);
    assert!(picture.hour_of_day.iter().sum::<u64>() > 0);

    // The same picture in columns: the same values, contributors and
    // withholders, in the same order; each answer counts the same values.
    let columnar = pictures
        .picture(PictureRequest {
            columnar: true,
            ..request.clone()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(columnar.cells.is_empty(), "columns instead of rows");
    let columns = columnar.columns.as_ref().expect("columns asked for");
    assert_eq!(columns.checked_len(), Some(picture.cells.len()));
    assert_eq!(
        lagesbild_proto::columns::picture_rows(
            columns,
            picture.cell_size_m,
            false,
            &columnar.answers
        ),
        picture.cells
    );
    let counted = |p: &lagesbild_proto::v1::SituationPicture| -> Vec<(String, u32)> {
        p.answers
            .iter()
            .map(|a| (a.org.clone(), a.values))
            .collect()
    };
    assert_eq!(counted(&columnar), counted(&picture));
    assert_eq!(columnar.ranking, picture.ranking);

    // That second picture asked each peer for the release this node already
    // held (same request, same digest): the peer said so and sent no values,
    // and the picture above, made from the held release, equals the first.
    let from_polisen = || -> Vec<u64> {
        crate::common::log_entries(&fed, home, home)
            .iter()
            .filter(|e| {
                e["direction"] == "outbound"
                    && e["peer_org"] == "polisen"
                    && e["call"] == "/lagesbild.v1.AggregateService/ReleaseMany"
            })
            .map(|e| e["released"]["values"].as_u64().unwrap())
            .collect()
    };
    let sent = from_polisen();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent[0] > 0 && sent[1] == 0, "{sent:?}");
    // A new value at polisen (three reports in one cell and hour, k = 3): its
    // release changes, so it is sent whole, and the picture has the value.
    let mut more = reports(0);
    more.truncate(3);
    for (i, r) in more.iter_mut().enumerate() {
        r.id = format!("more-{i}");
        r.observed_at = Some(Timestamp {
            seconds: (now() / 3600 - 10) * 3600 + 60,
            nanos: 0,
        });
        r.category = Category::Violence as i32;
        r.position = Some(Position {
            lat: 59.3400,
            lon: 18.0500,
        });
    }
    ReportServiceClient::new(fed.authed("polisen", "polisen", &["report:write"]))
        .submit_batch(SubmitBatchRequest {
            reports: more,
            validate_only: false,
        })
        .await
        .unwrap();
    let changed = pictures
        .picture(PictureRequest {
            columnar: true,
            ..request.clone()
        })
        .await
        .unwrap()
        .into_inner();
    let values_of = |p: &lagesbild_proto::v1::SituationPicture, org: &str| {
        p.answers.iter().find(|a| a.org == org).unwrap().values
    };
    assert_eq!(
        values_of(&changed, "polisen"),
        values_of(&columnar, "polisen") + 1
    );
    let sent = from_polisen();
    assert!(sent.len() == 3 && sent[2] > sent[0], "{sent:?}");

    // A killed peer: the picture still comes, within the deadline, that peer unavailable.
    fed.kill("amf-fastigheter");
    let started = Instant::now();
    let picture = pictures
        .picture(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(
        started.elapsed() < Duration::from_millis(2 * request.deadline_ms as u64),
        "a dead peer held the picture for {:?}",
        started.elapsed()
    );
    let (down, _) = status(&picture, "amf-fastigheter");
    assert!(
        matches!(down, AnswerStatus::Unavailable | AnswerStatus::Timeout),
        "{down:?}"
    );
    assert_eq!(status(&picture, "polisen").0, AnswerStatus::Ok);

    // Only the node's own analysts may ask it for a picture.
    let mut foreign = PictureServiceClient::new(fed.authed(home, "polisen", &["aggregate:read"]));
    let refused = foreign
        .picture(PictureRequest {
            columnar: false,
            filters: Some(filters()),
            top: 5,
            deadline_ms: 500,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
}
