//! A node under a mixed load keeps answering: budgeted `ReleaseMany` and
//! `Release` calls from several peers at once, large ingests, federated
//! pictures and event streams, for a bounded time, while health checks and
//! every call must come back throughout.

use crate::common;

use crate::common::{now, TestFederation, PURPOSE};
use lagesbild_proto::v1::aggregate_service_client::AggregateServiceClient;
use lagesbild_proto::v1::event_service_client::EventServiceClient;
use lagesbild_proto::v1::picture_service_client::PictureServiceClient;
use lagesbild_proto::v1::report_service_client::ReportServiceClient;
use lagesbild_proto::v1::{
    AnswerStatus, BucketKind, Category, PictureRequest, Position, ReleaseManyRequest,
    ReleaseRequest, Report, Source, SubmitBatchRequest, Tlp, WatchRequest,
};
use prost_types::Timestamp;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_stream::StreamExt;

const HOLDER: &str = "polisen";
const PEERS: [&str; 3] = ["scandic", "svensk-handel", "amf-fastigheter"];
/// How long the load runs.
const LOAD: Duration = Duration::from_secs(12);
/// How long one call may take before the node counts as stalled: far above
/// what any of these calls takes on a loaded debug build.
const STALLED: Duration = Duration::from_secs(20);

/// Every peer may read aggregates with noise from a budget it never exhausts
/// here: each release spends from the ledger, as a federated picture does.
fn policy() -> String {
    let mut text = String::from("version = 1\n");
    for peer in PEERS.iter().chain([&HOLDER]) {
        text.push_str(&format!(
            "[peer.{peer}]\nscopes = [\"aggregate:read\", \"events:read\"]\npurposes = [\"{PURPOSE}\"]\ncategories = [\"all\"]\nfinest_cell = 250\nfinest_bucket = \"hour\"\nk = 3\nepsilon_per_query = 0.0001\nepsilon_per_day = 100\nrate_limit = 100000\nmax_tlp = \"amber\"\n"
        ));
    }
    text
}

fn reports(round: u64, count: usize) -> Vec<Report> {
    let base = (now() / 3600 - 20) * 3600;
    (0..count)
        .map(|i| Report {
            id: format!("load-{round}-{i}"),
            observed_at: Some(Timestamp {
                seconds: base + (i as i64 % 20) * 3600 + 60,
                nanos: 0,
            }),
            position: Some(Position {
                lat: 59.3300 + (i % 7) as f64 * 0.0012,
                lon: 18.0600 + (i % 5) as f64 * 0.002,
            }),
            category: [Category::Violence, Category::Theft, Category::DarkArea][i % 3] as i32,
            severity: 1 + (i % 5) as u32,
            source: Source::Staff as i32,
            tlp: Tlp::Green as i32,
            text: "Händelse vid entrén".into(),
            ..Report::default()
        })
        .collect()
}

fn release(bucket: BucketKind, cell: u32) -> ReleaseRequest {
    ReleaseRequest {
        unless_digest: Vec::new(),
        columnar: false,
        purpose: PURPOSE.into(),
        from: Some(Timestamp {
            seconds: now() - 2 * 86_400,
            nanos: 0,
        }),
        to: Some(Timestamp {
            seconds: now(),
            nanos: 0,
        }),
        categories: vec![],
        area: None,
        cell_size_m: cell,
        bucket: bucket as i32,
        totals_only: false,
    }
}

/// What went wrong during the load, by kind of call.
#[derive(Default)]
struct Failures(Mutex<Vec<String>>);

impl Failures {
    fn note(&self, what: impl Into<String>) {
        self.0.lock().unwrap().push(what.into());
    }
}

/// Runs `call` again and again until the load ends; every call must come back
/// within [`STALLED`] and succeed.
async fn keep_calling<F, Fut>(
    name: String,
    until: Instant,
    done: Arc<AtomicU64>,
    failures: Arc<Failures>,
    mut call: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), tonic::Status>>,
{
    while Instant::now() < until {
        match tokio::time::timeout(STALLED, call()).await {
            Ok(Ok(())) => {
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(status)) => {
                failures.note(format!("{name}: {:?} {}", status.code(), status.message()));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(_) => {
                failures.note(format!("{name}: no answer within {STALLED:?}"));
                return;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_keeps_answering_under_budgeted_releases_ingest_pictures_and_streams() {
    let members: Vec<&str> = [HOLDER].into_iter().chain(PEERS).collect();
    let fed = Arc::new(TestFederation::start(&members).await);
    for org in &members {
        std::fs::write(fed.org_dir(org).join("policy.toml"), policy()).unwrap();
    }
    let mut seed = ReportServiceClient::new(fed.authed(HOLDER, HOLDER, &["report:write"]));
    seed.submit_batch(SubmitBatchRequest {
        reports: reports(0, 3_000),
        validate_only: false,
    })
    .await
    .unwrap();

    let until = Instant::now() + LOAD;
    let failures = Arc::new(Failures::default());
    let mut tasks = Vec::new();
    let mut counters: Vec<(String, Arc<AtomicU64>)> = Vec::new();
    let mut spawn =
        |name: String, task: Box<dyn FnOnce(Arc<AtomicU64>) -> tokio::task::JoinHandle<()>>| {
            let done = Arc::new(AtomicU64::new(0));
            counters.push((name, done.clone()));
            tasks.push(task(done));
        };

    for peer in PEERS {
        // ReleaseMany of 8 requests, as a peer's picture asks.
        let channel = fed.authed(HOLDER, peer, &["aggregate:read"]);
        let f = failures.clone();
        spawn(
            format!("{peer} ReleaseMany"),
            Box::new(move |done| {
                tokio::spawn(keep_calling(
                    format!("{peer} ReleaseMany"),
                    until,
                    done,
                    f,
                    move || {
                        let mut client = AggregateServiceClient::new(channel.clone());
                        async move {
                            let requests = [
                                (BucketKind::Hour, 250),
                                (BucketKind::Day, 250),
                                (BucketKind::Hour, 1000),
                                (BucketKind::HourOfDay, 1000),
                            ]
                            .iter()
                            .flat_map(|&(b, c)| {
                                [
                                    release(b, c),
                                    ReleaseRequest {
                                        totals_only: true,
                                        ..release(b, c)
                                    },
                                ]
                            })
                            .collect();
                            let outcomes = client
                                .release_many(ReleaseManyRequest { requests })
                                .await?
                                .into_inner()
                                .outcomes;
                            match outcomes.iter().find(|o| o.code != 0) {
                                Some(o) => Err(tonic::Status::internal(format!(
                                    "an outcome failed: {}",
                                    o.message
                                ))),
                                None => Ok(()),
                            }
                        }
                    },
                ))
            }),
        );
        // Single releases alongside.
        let channel = fed.authed(HOLDER, peer, &["aggregate:read"]);
        let f = failures.clone();
        spawn(
            format!("{peer} Release"),
            Box::new(move |done| {
                tokio::spawn(keep_calling(
                    format!("{peer} Release"),
                    until,
                    done,
                    f,
                    move || {
                        let mut client = AggregateServiceClient::new(channel.clone());
                        async move {
                            client.release(release(BucketKind::Hour, 250)).await?;
                            Ok(())
                        }
                    },
                ))
            }),
        );
        // The peer's own picture, which asks the holder with a delegation token.
        let channel = fed.authed(peer, peer, &["aggregate:read"]);
        let f = failures.clone();
        spawn(
            format!("{peer} Picture"),
            Box::new(move |done| {
                tokio::spawn(keep_calling(
                    format!("{peer} Picture"),
                    until,
                    done,
                    f,
                    move || {
                        let mut client = PictureServiceClient::new(channel.clone());
                        async move {
                            let picture = client
                                .picture(PictureRequest {
                                    columnar: false,
                                    filters: Some(release(BucketKind::Day, 250)),
                                    top: 5,
                                    deadline_ms: 15_000,
                                })
                                .await?
                                .into_inner();
                            let holder = picture.answers.iter().find(|a| a.org == HOLDER);
                            match holder {
                                Some(a) if a.status == AnswerStatus::Ok as i32 => Ok(()),
                                other => Err(tonic::Status::internal(format!(
                                    "the holder's answer in the picture: {other:?}"
                                ))),
                            }
                        }
                    },
                ))
            }),
        );
    }

    // Batches of 3,000 reports, one after the other.
    let channel = fed.authed(HOLDER, HOLDER, &["report:write"]);
    let f = failures.clone();
    let round = Arc::new(AtomicU64::new(1));
    spawn(
        "ingest".into(),
        Box::new(move |done| {
            tokio::spawn(keep_calling("ingest".into(), until, done, f, move || {
                let mut client = ReportServiceClient::new(channel.clone());
                let r = round.fetch_add(1, Ordering::Relaxed);
                async move {
                    let summary = client
                        .submit_batch(SubmitBatchRequest {
                            reports: reports(r, 3_000),
                            validate_only: false,
                        })
                        .await?
                        .into_inner();
                    if summary.stored == 3_000 {
                        Ok(())
                    } else {
                        Err(tonic::Status::internal(format!(
                            "stored {}",
                            summary.stored
                        )))
                    }
                }
            }))
        }),
    );

    // The holder's own people watching the inbox, which the followers fill.
    let channel = fed.authed(HOLDER, HOLDER, &["events:read"]);
    let f = failures.clone();
    spawn(
        "watch".into(),
        Box::new(move |done| {
            tokio::spawn(async move {
                let mut client = EventServiceClient::new(channel);
                let mut stream =
                    match tokio::time::timeout(STALLED, client.watch(WatchRequest { after: 0 }))
                        .await
                    {
                        Ok(Ok(response)) => response.into_inner(),
                        Ok(Err(status)) => return f.note(format!("watch: {status}")),
                        Err(_) => return f.note("watch: no answer"),
                    };
                while Instant::now() < until {
                    match tokio::time::timeout(Duration::from_millis(500), stream.next()).await {
                        Ok(Some(Ok(_))) => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Some(Err(status))) => return f.note(format!("watch: {status}")),
                        Ok(None) => return f.note("watch: the stream ended"),
                        Err(_) => {}
                    }
                }
            })
        }),
    );

    // Health, over a fresh TLS connection each time, as a load balancer checks.
    let f = failures.clone();
    let checker = fed.clone();
    spawn(
        "health".into(),
        Box::new(move |done| {
            tokio::spawn(async move {
                while Instant::now() < until {
                    let tls = checker.client_tls(HOLDER, HOLDER);
                    match checker.health(HOLDER, tls).await {
                        Ok(_) => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(status) => f.note(format!("health: {status}")),
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        }),
    );

    for task in tasks {
        task.await.unwrap();
    }
    let failures = failures.0.lock().unwrap().clone();
    let done: Vec<(String, u64)> = counters
        .iter()
        .map(|(name, n)| (name.clone(), n.load(Ordering::Relaxed)))
        .collect();
    let node_log = fed
        .nodes
        .iter()
        .find(|n| n.org() == HOLDER)
        .unwrap()
        .log_text();
    assert!(
        failures.is_empty(),
        "calls failed under load: {failures:#?}\ncompleted: {done:?}\n{HOLDER}'s log tail:\n{}",
        node_log
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Every kind of call came back, more than once.
    for (name, n) in &done {
        assert!(*n >= 2, "{name} completed only {n} times: {done:?}");
    }
    // The spends were recorded, not skipped: each peer's budget went down.
    let explain = common::run(&[
        "policy",
        "explain",
        "--config",
        fed.org_dir(HOLDER).join("node.toml").to_str().unwrap(),
        "--peer",
        PEERS[0],
        "--json",
    ]);
    let explained: serde_json::Value = serde_json::from_slice(&explain.stdout).unwrap();
    assert!(
        explained["noise"]["spent_today"].as_f64().unwrap() > 0.0,
        "{explained}"
    );
}
