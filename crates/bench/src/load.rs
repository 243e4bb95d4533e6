//! Three nodes under mixed load for a while: ingest at every node (small
//! batches, and a batch of 3,000 reports every few seconds), pictures, budgeted
//! `ReleaseMany` and `Release` calls from every node to every other, every node
//! following the others' events, auditors reading logs, and health checks over
//! fresh connections that must keep answering. `soak`
//! runs it steadily and samples each node's memory; `fault` kills nodes with
//! SIGKILL in the middle of it and restarts them, then checks that no
//! acknowledged report was lost, every event arrived exactly once, every log
//! verifies and no witness raised an alarm.

use crate::{spawn_node, start_node, OneNode};
use anyhow::{bail, Context, Result};
use lagesbild_harness::NodeProcess;
use lagesbild_proto::v1::aggregate_service_client::AggregateServiceClient;
use lagesbild_proto::v1::audit_service_client::AuditServiceClient;
use lagesbild_proto::v1::event_service_client::EventServiceClient;
use lagesbild_proto::v1::picture_service_client::PictureServiceClient;
use lagesbild_proto::v1::report_service_client::ReportServiceClient;
use lagesbild_proto::v1::{
    watch_item, Category, EntriesRequest, PictureRequest, Position, Report, Source,
    SubmitBatchRequest, Tlp, WatchRequest, WitnessesRequest,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

const MEMBERS: [&str; 3] = ["polisen", "stockholm-stad", "scandic"];
const AUDITOR: &str = "audit";

/// Every member may ask every node for aggregates, with noise from a daily
/// budget (so every release spends from the ledger), and receive its events.
fn policy() -> String {
    let mut text = String::from("version = 1\n");
    for member in MEMBERS {
        text.push_str(&format!(
            "\n[peer.{member}]\nscopes = [\"aggregate:read\", \"events:read\"]\npurposes = [\"situation-picture\", \"bench\"]\ncategories = [\"all\"]\nfinest_cell = 250\nfinest_bucket = \"hour\"\nk = 3\nepsilon_per_query = 0.000001\nepsilon_per_day = 100\nmax_tlp = \"amber\"\ntext = true\nrate_limit = 100000\n"
        ));
    }
    text
}

/// Reports in each bulk batch, and how often one is sent to the first node.
const BULK: u64 = 3_000;
const BULK_EVERY: Duration = Duration::from_secs(15);

fn now() -> i64 {
    lagesbild_vocabulary::SystemClock
        .now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn report(org: &str, n: u64) -> Report {
    Report {
        id: format!("{org}-{n}"),
        observed_at: Some(prost_types::Timestamp {
            seconds: now() - 30,
            nanos: 0,
        }),
        position: Some(Position {
            lat: 59.3326 + (n % 40) as f64 * 0.0005,
            lon: 18.0649 + (n % 30) as f64 * 0.0006,
        }),
        place_name: String::new(),
        category: [
            Category::Violence,
            Category::Disorder,
            Category::LightingFault,
        ][n as usize % 3] as i32,
        severity: 1 + (n % 5) as u32,
        text: "Bråk vid entrén".into(),
        persons: vec![],
        vehicle_plates: vec![],
        source: Source::Guard as i32,
        tlp: Tlp::Green as i32,
    }
}

/// What the load saw, shared by its tasks.
#[derive(Default)]
struct Seen {
    /// Report ids acknowledged by each node.
    acked: BTreeMap<String, Vec<String>>,
    /// Report ids sent to each node, acknowledged or not.
    attempted: BTreeMap<String, Vec<String>>,
    /// Per watching node: (origin, event id) in arrival order.
    events: BTreeMap<String, Vec<(String, String)>>,
    /// Failed calls, by what.
    errors: BTreeMap<String, u64>,
}

pub async fn run(
    seconds: u64,
    kill_every: Option<Duration>,
    ingest_per_second: u32,
    cache_mb: Option<u32>,
) -> Result<()> {
    // Five reports a call, at this pace per node.
    let pause = Duration::from_secs_f64(5.0 / f64::from(ingest_per_second.max(1)));
    // No ingest at all (0) tells the memory the other load takes from what the data does.
    let mut federation = start_node(&MEMBERS).await?;
    let policy = policy();
    for org in MEMBERS {
        let dir = federation.dir.path().join(org);
        std::fs::write(dir.join("policy.toml"), &policy)?;
        if let Some(mb) = cache_mb {
            crate::set_store_cache(&dir, mb)?;
        }
    }
    // The first node started with a deny-all policy; restart it with this one read.
    let dir = federation.dir.path().to_owned();
    federation
        .replace(MEMBERS[0], || spawn_node(&dir, MEMBERS[0]))
        .await?;
    for org in &MEMBERS[1..] {
        federation.start_other(org).await?;
    }
    let federation = Arc::new(Mutex::new(federation));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let pictures = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for org in MEMBERS {
        let (writer, watcher) = {
            let f = federation.lock().expect("federation");
            (
                f.authed(org, org, &["report:write"])?,
                f.authed(org, org, &["events:read"])?,
            )
        };
        if ingest_per_second > 0 {
            tasks.push(tokio::spawn(write_load(
                org,
                "",
                5,
                writer.clone(),
                seen.clone(),
                stop.clone(),
                pause,
            )));
            if org == MEMBERS[0] {
                tasks.push(tokio::spawn(write_load(
                    org,
                    "bulk",
                    BULK,
                    writer,
                    seen.clone(),
                    stop.clone(),
                    BULK_EVERY,
                )));
            }
        }
        tasks.push(tokio::spawn(watch_load(
            org,
            watcher,
            seen.clone(),
            stop.clone(),
        )));
    }
    // Analysts at every node ask in turn, so every node asks, and so
    // witnesses, every other.
    let askers = MEMBERS
        .iter()
        .map(|org| {
            federation
                .lock()
                .expect("federation")
                .authed(org, org, &["aggregate:read"])
        })
        .collect::<Result<Vec<_>>>()?;
    tasks.push(tokio::spawn(picture_load(
        askers,
        seen.clone(),
        stop.clone(),
        pictures.clone(),
    )));
    // Every node asks every other for budgeted releases, as pictures do, and
    // more often.
    let releases = Arc::new(AtomicU64::new(0));
    for asker in MEMBERS {
        for node in MEMBERS.iter().filter(|n| **n != asker) {
            let channel =
                federation
                    .lock()
                    .expect("federation")
                    .authed(node, asker, &["aggregate:read"])?;
            tasks.push(tokio::spawn(release_load(
                asker,
                node,
                channel,
                seen.clone(),
                stop.clone(),
                releases.clone(),
            )));
        }
    }
    // People at every node sign in (now and then with a wrong password) and
    // ask for pictures with their sessions; after a node restarts they sign
    // in again.
    let sign_ins = Arc::new(AtomicU64::new(0));
    for org in MEMBERS {
        let channel = federation.lock().expect("federation").people_channel(org)?;
        tasks.push(tokio::spawn(people_load(
            org,
            channel,
            seen.clone(),
            stop.clone(),
            pictures.clone(),
            sign_ins.clone(),
        )));
    }
    tasks.push(tokio::spawn(health_load(
        federation.clone(),
        seen.clone(),
        stop.clone(),
    )));
    let auditor =
        federation
            .lock()
            .expect("federation")
            .authed(MEMBERS[1], AUDITOR, &["audit:read"])?;
    tasks.push(tokio::spawn(audit_load(
        auditor,
        seen.clone(),
        stop.clone(),
    )));

    let started = Instant::now();
    let mut kills = 0;
    let mut next_kill = kill_every.map(|every| Instant::now() + every);
    let mut samples: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    let mut next_sample = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if Instant::now() >= next_sample {
            next_sample += Duration::from_secs(30);
            let f = federation.lock().expect("federation");
            for (i, org) in MEMBERS.iter().enumerate() {
                let pid = child(&f, i).pid();
                if let Ok(kib) = crate::proc_status_kib(pid, "VmRSS:") {
                    samples.entry(org).or_default().push(kib / 1024);
                }
            }
        }
        if let (Some(at), Some(every)) = (next_kill, kill_every) {
            if Instant::now() >= at {
                let victim = kills % MEMBERS.len();
                kills += 1;
                eprintln!(
                    "kill -9 {} ({:.0} s in)",
                    MEMBERS[victim],
                    started.elapsed().as_secs_f64()
                );
                {
                    let mut f = federation.lock().expect("federation");
                    child_mut(&mut f, victim).kill();
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                restart_shared(&federation, victim).await?;
                next_kill = Some(Instant::now() + every);
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await??;
    }
    let f = Arc::try_unwrap(federation)
        .ok()
        .context("load tasks still hold the federation")?
        .into_inner()
        .expect("federation");
    settle_and_check(&f, &seen).await?;
    // Memory that the stored data explains comes back after a restart (sled
    // rebuilds its page table and warms its caches); memory a node gathered
    // over the run and never gave back would not.
    let mut restarted = Vec::new();
    let federation = Mutex::new(f);
    for (i, org) in MEMBERS.iter().enumerate() {
        let before = {
            let f = federation.lock().expect("federation");
            crate::proc_status_kib(child(&f, i).pid(), "VmRSS:")? / 1024
        };
        {
            let mut f = federation.lock().expect("federation");
            child_mut(&mut f, i).kill();
        }
        restart_shared(&federation, i).await?;
        // Read the whole log and every feed once, as the run did.
        let auditor =
            federation
                .lock()
                .expect("federation")
                .authed(org, AUDITOR, &["audit:read"])?;
        let mut client = AuditServiceClient::new(auditor).max_decoding_message_size(64 << 20);
        let mut start = 0;
        loop {
            let page = client
                .entries(EntriesRequest { start, limit: 5000 })
                .await?
                .into_inner();
            if page.next >= page.size || page.entries.is_empty() {
                break;
            }
            start = page.next;
        }
        let after = {
            let f = federation.lock().expect("federation");
            crate::proc_status_kib(child(&f, i).pid(), "VmRSS:")? / 1024
        };
        restarted.push(format!("{org} {before} -> {after}"));
    }
    let f = federation.into_inner().expect("federation");
    let seen = seen.lock().expect("seen");
    println!(
        "{} s of load on 3 nodes{}: {} reports acknowledged, {} pictures, {} budgeted release calls, {} events delivered, {} sign-ins",
        seconds,
        if kills > 0 {
            format!(", {kills} nodes killed with SIGKILL and restarted")
        } else {
            String::new()
        },
        seen.acked.values().map(Vec::len).sum::<usize>(),
        pictures.load(Ordering::SeqCst),
        releases.load(Ordering::SeqCst),
        seen.events.values().map(Vec::len).sum::<usize>(),
        sign_ins.load(Ordering::SeqCst),
    );
    println!("  failed calls: {:?}", seen.errors);
    println!(
        "  on disk at the end, MB: {:?}",
        MEMBERS
            .iter()
            .map(|org| crate::dir_size(&f.dir.path().join(org).join("data")) / 1_000_000)
            .collect::<Vec<_>>()
    );
    for (org, rss) in &samples {
        println!("  {org:<16} resident MB every 30 s: {rss:?}");
    }
    println!(
        "  resident MB at the end -> after a restart on the same data and a full read of its log: {}",
        restarted.join(", ")
    );
    if kills == 0 && !seen.errors.is_empty() {
        bail!("calls failed under steady load: {:?}", seen.errors);
    }
    Ok(())
}

fn child(f: &OneNode, i: usize) -> &NodeProcess {
    if i == 0 {
        &f.node
    } else {
        &f.others[i - 1]
    }
}

fn child_mut(f: &mut OneNode, i: usize) -> &mut NodeProcess {
    if i == 0 {
        &mut f.node
    } else {
        &mut f.others[i - 1]
    }
}

async fn restart_shared(f: &Mutex<OneNode>, i: usize) -> Result<()> {
    let dir = f.lock().expect("federation").dir.path().to_owned();
    // Start it, then wait for health without holding the lock.
    {
        let mut guard = f.lock().expect("federation");
        *child_mut(&mut guard, i) = spawn_node(&dir, MEMBERS[i])?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let health = {
            let guard = f.lock().expect("federation");
            guard.channel(MEMBERS[i], MEMBERS[i])?
        };
        let mut client = tonic_health::pb::health_client::HealthClient::new(health);
        if client
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .is_ok()
        {
            return Ok(());
        }
        let exited = {
            let mut guard = f.lock().expect("federation");
            child_mut(&mut guard, i).exited()?.is_some()
        };
        if exited {
            // The store's lock was not yet free: start it again.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut guard = f.lock().expect("federation");
            *child_mut(&mut guard, i) = spawn_node(&dir, MEMBERS[i])?;
        }
        if Instant::now() > deadline {
            bail!("{} did not come back", MEMBERS[i]);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn count_error(seen: &Mutex<Seen>, what: String) {
    *seen.lock().expect("seen").errors.entry(what).or_default() += 1;
}

/// Sends batches of `batch` reports to `org`'s node, `pause` apart; ids carry
/// `prefix`, so two writers to one node never share one.
async fn write_load(
    org: &'static str,
    prefix: &'static str,
    batch: u64,
    channel: lagesbild_auth::AuthChannel,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    pause: Duration,
) -> Result<()> {
    let mut client = ReportServiceClient::new(channel);
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let reports: Vec<Report> = (n..n + batch)
            .map(|k| Report {
                id: format!("{org}-{prefix}{k}"),
                ..report(org, k)
            })
            .collect();
        n += batch;
        let ids: Vec<String> = reports.iter().map(|r| r.id.clone()).collect();
        seen.lock()
            .expect("seen")
            .attempted
            .entry(org.into())
            .or_default()
            .extend(ids.clone());
        let mut request = tonic::Request::new(SubmitBatchRequest {
            reports,
            validate_only: false,
        });
        request.set_timeout(Duration::from_secs(20));
        match client.submit_batch(request).await {
            Ok(_) => seen
                .lock()
                .expect("seen")
                .acked
                .entry(org.into())
                .or_default()
                .extend(ids),
            Err(status) => {
                count_error(&seen, format!("submit to {org}: {:?}", status.code()));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        tokio::time::sleep(pause).await;
    }
    Ok(())
}

async fn watch_load(
    org: &'static str,
    channel: lagesbild_auth::AuthChannel,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    let mut after = 0;
    while !stop.load(Ordering::SeqCst) {
        let opened = EventServiceClient::new(channel.clone())
            .watch(WatchRequest { after })
            .await;
        let mut stream = match opened {
            Ok(stream) => stream.into_inner(),
            Err(status) => {
                count_error(&seen, format!("watch at {org}: {:?}", status.code()));
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        loop {
            if stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            match tokio::time::timeout(Duration::from_millis(500), stream.message()).await {
                Err(_) => continue,
                Ok(Ok(Some(item))) => {
                    after = item.seq;
                    if let Some(watch_item::Item::Event(e)) = item.item {
                        seen.lock()
                            .expect("seen")
                            .events
                            .entry(org.into())
                            .or_default()
                            .push((e.org, e.id));
                    }
                }
                Ok(Ok(None)) => break,
                Ok(Err(status)) => {
                    count_error(&seen, format!("watch at {org}: {:?}", status.code()));
                    break;
                }
            }
        }
    }
    Ok(())
}

async fn picture_load(
    channels: Vec<lagesbild_auth::AuthChannel>,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    pictures: Arc<AtomicU64>,
) -> Result<()> {
    let mut clients: Vec<_> = channels
        .into_iter()
        .map(|c| PictureServiceClient::new(c).max_decoding_message_size(64 << 20))
        .collect();
    let mut turn = 0;
    while !stop.load(Ordering::SeqCst) {
        let client = &mut clients[turn % MEMBERS.len()];
        turn += 1;
        let request = PictureRequest {
            filters: Some(crate::last_hours_at_250m(24)),
            top: 10,
            // The node's default peer deadline, as an analyst asks.
            deadline_ms: 0,
            columnar: true,
        };
        match client.picture(request).await {
            Ok(p) => {
                pictures.fetch_add(1, Ordering::SeqCst);
                for answer in &p.get_ref().answers {
                    if answer.status != lagesbild_proto::v1::AnswerStatus::Ok as i32 {
                        count_error(&seen, format!("picture: {} {}", answer.org, answer.status));
                    }
                }
            }
            Err(status) => count_error(&seen, format!("picture: {:?}", status.code())),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

/// `org`'s analyst until stopped: signs in, asks for a picture of the last
/// day with the session a few times; every fourth round someone first tries
/// a password for a name that is no account (refused, and soon limited, as
/// it must be). A session lost to a restart means signing in again.
async fn people_load(
    org: &'static str,
    channel: tonic::transport::Channel,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    pictures: Arc<AtomicU64>,
    sign_ins: Arc<AtomicU64>,
) -> Result<()> {
    use lagesbild_proto::v1::session_service_client::SessionServiceClient;
    use lagesbild_proto::v1::SignInRequest;
    let mut sessions = SessionServiceClient::new(channel.clone());
    let mut round = 0u64;
    while !stop.load(Ordering::SeqCst) {
        round += 1;
        if round.is_multiple_of(4) {
            let wrong = sessions
                .sign_in(SignInRequest {
                    account: "intruder".into(),
                    password: "not the password".into(),
                })
                .await;
            match wrong {
                Err(status) if status.code() == tonic::Code::Unauthenticated => {}
                Err(status) if status.code() == tonic::Code::ResourceExhausted => {}
                Err(status) => count_error(
                    &seen,
                    format!("wrong sign-in at {org}: {:?}", status.code()),
                ),
                Ok(_) => count_error(&seen, format!("a wrong password was let in at {org}")),
            }
        }
        let signed = sessions
            .sign_in(SignInRequest {
                account: crate::ANALYST.0.into(),
                password: crate::ANALYST.1.into(),
            })
            .await;
        let session = match signed {
            Ok(answer) => answer.into_inner().session,
            Err(status) => {
                count_error(&seen, format!("sign-in at {org}: {:?}", status.code()));
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        sign_ins.fetch_add(1, Ordering::SeqCst);
        let bearer = lagesbild_auth::Bearer::new(&session)?.stating("bench")?;
        let mut client = PictureServiceClient::with_interceptor(channel.clone(), bearer)
            .max_decoding_message_size(64 << 20);
        for _ in 0..4 {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let request = PictureRequest {
                filters: Some(crate::last_hours_at_250m(24)),
                top: 10,
                deadline_ms: 0,
                columnar: true,
            };
            match client.picture(request).await {
                Ok(_) => {
                    pictures.fetch_add(1, Ordering::SeqCst);
                }
                // The node restarted and forgot the session: sign in again.
                Err(status) if status.code() == tonic::Code::Unauthenticated => break,
                Err(status) => count_error(
                    &seen,
                    format!("a person's picture at {org}: {:?}", status.code()),
                ),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok(())
}

/// `asker` asks `node` for budgeted releases until stopped: a `ReleaseMany` of
/// 8 requests (as a federated picture sends), then a `Release`. Each must come
/// back, released, within 20 s.
async fn release_load(
    asker: &'static str,
    node: &'static str,
    channel: lagesbild_auth::AuthChannel,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    releases: Arc<AtomicU64>,
) -> Result<()> {
    use lagesbild_proto::v1::{BucketKind, ReleaseManyRequest, ReleaseRequest};
    let mut client = AggregateServiceClient::new(channel).max_decoding_message_size(64 << 20);
    const WITHIN: Duration = Duration::from_secs(20);
    while !stop.load(Ordering::SeqCst) {
        let requests: Vec<ReleaseRequest> = [
            (BucketKind::Hour, 250),
            (BucketKind::Day, 250),
            (BucketKind::Hour, 1000),
            (BucketKind::HourOfDay, 1000),
        ]
        .into_iter()
        .flat_map(|(bucket, cell)| {
            let one = ReleaseRequest {
                bucket: bucket as i32,
                cell_size_m: cell,
                ..crate::last_hours_at_250m(24)
            };
            [
                one.clone(),
                ReleaseRequest {
                    totals_only: true,
                    ..one
                },
            ]
        })
        .collect();
        let what = format!("ReleaseMany {asker} -> {node}");
        match tokio::time::timeout(WITHIN, client.release_many(ReleaseManyRequest { requests }))
            .await
        {
            Ok(Ok(many)) => match many.get_ref().outcomes.iter().find(|o| o.code != 0) {
                Some(o) => count_error(&seen, format!("{what}: outcome {}", o.code)),
                None => {
                    releases.fetch_add(1, Ordering::SeqCst);
                }
            },
            Ok(Err(status)) => count_error(&seen, format!("{what}: {:?}", status.code())),
            Err(_) => count_error(&seen, format!("{what}: no answer within {WITHIN:?}")),
        }
        let what = format!("Release {asker} -> {node}");
        match tokio::time::timeout(WITHIN, client.release(crate::last_hours_at_250m(24))).await {
            Ok(Ok(_)) => {
                releases.fetch_add(1, Ordering::SeqCst);
            }
            Ok(Err(status)) => count_error(&seen, format!("{what}: {:?}", status.code())),
            Err(_) => count_error(&seen, format!("{what}: no answer within {WITHIN:?}")),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Checks every node's health over a fresh connection each second, as a load
/// balancer would; each check must answer within 10 s.
async fn health_load(
    federation: Arc<Mutex<OneNode>>,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    while !stop.load(Ordering::SeqCst) {
        for org in MEMBERS {
            let channel = federation.lock().expect("federation").channel(org, org);
            let Ok(channel) = channel else {
                count_error(&seen, format!("health of {org}: no channel"));
                continue;
            };
            let mut health = HealthClient::new(channel);
            let check = health.check(HealthCheckRequest::default());
            match tokio::time::timeout(Duration::from_secs(10), check).await {
                Ok(Ok(_)) => {}
                Ok(Err(status)) => {
                    count_error(&seen, format!("health of {org}: {:?}", status.code()))
                }
                Err(_) => count_error(&seen, format!("health of {org}: no answer within 10 s")),
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}

async fn audit_load(
    channel: lagesbild_auth::AuthChannel,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    let mut client = AuditServiceClient::new(channel).max_decoding_message_size(64 << 20);
    let mut start = 0;
    while !stop.load(Ordering::SeqCst) {
        match client.entries(EntriesRequest { start, limit: 500 }).await {
            Ok(page) => start = page.get_ref().next,
            Err(status) => count_error(&seen, format!("audit entries: {:?}", status.code())),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// How many of `ids` `org`'s node holds: sent again as validate-only, a stored
/// one comes back as a duplicate.
async fn stored_of(
    client: &mut ReportServiceClient<lagesbild_auth::AuthChannel>,
    org: &str,
    ids: &[String],
) -> Result<u64> {
    let mut held = 0;
    for chunk in ids.chunks(5_000) {
        let reports = chunk
            .iter()
            .map(|id| Report {
                id: id.clone(),
                ..report(org, 0)
            })
            .collect();
        held += client
            .submit_batch(SubmitBatchRequest {
                reports,
                validate_only: true,
            })
            .await?
            .into_inner()
            .duplicates;
    }
    Ok(held)
}

/// Waits until events stop arriving, then checks what must hold.
async fn settle_and_check(f: &OneNode, seen: &Mutex<Seen>) -> Result<()> {
    // Every node's stored reports.
    let mut stored = BTreeMap::new();
    for org in MEMBERS {
        let (attempted, acked) = {
            let s = seen.lock().expect("seen");
            (
                s.attempted.get(org).cloned().unwrap_or_default(),
                s.acked.get(org).cloned().unwrap_or_default(),
            )
        };
        let mut client = ReportServiceClient::new(f.authed(org, org, &["report:write"])?);
        let held = stored_of(&mut client, org, &attempted).await?;
        let acked_held = stored_of(&mut client, org, &acked).await?;
        if acked_held != acked.len() as u64 {
            bail!(
                "{org}: {} acknowledged reports, {acked_held} of them stored",
                acked.len()
            );
        }
        println!(
            "  {org:<16} {} acknowledged reports all stored ({} stored of {} sent)",
            acked.len(),
            held,
            attempted.len()
        );
        stored.insert(org, held);
    }
    // Every event exactly once at every other node: watch each inbox whole.
    for watcher in MEMBERS {
        let mut by_origin: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let expected: u64 = MEMBERS
            .iter()
            .filter(|o| **o != watcher)
            .map(|o| stored[o])
            .sum();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            by_origin.clear();
            let mut stream =
                EventServiceClient::new(f.authed(watcher, watcher, &["events:read"])?)
                    .watch(WatchRequest { after: 0 })
                    .await?
                    .into_inner();
            while let Ok(Ok(Some(item))) =
                tokio::time::timeout(Duration::from_millis(1500), stream.message()).await
            {
                if let Some(watch_item::Item::Event(e)) = item.item {
                    by_origin.entry(e.org).or_default().push(e.id);
                }
            }
            let got: u64 = by_origin.values().map(|v| v.len() as u64).sum();
            if got >= expected || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        for origin in MEMBERS.iter().filter(|o| **o != watcher) {
            let ids = by_origin.get(*origin).cloned().unwrap_or_default();
            let distinct: BTreeSet<_> = ids.iter().collect();
            if distinct.len() != ids.len() {
                bail!(
                    "{watcher} holds {} events of {origin}, {} distinct",
                    ids.len(),
                    distinct.len()
                );
            }
            if ids.len() as u64 != stored[origin] {
                bail!(
                    "{watcher} holds {} events of {origin}, which stored {} reports",
                    ids.len(),
                    stored[origin]
                );
            }
        }
        println!("  {watcher:<16} holds every other node's events exactly once");
    }
    // Every log verifies; no witness raised an alarm.
    let lagesbild = crate::lagesbild()?;
    for org in MEMBERS {
        let out = std::process::Command::new(&lagesbild)
            .args(["audit", "verify", "--config"])
            .arg(f.dir.path().join(AUDITOR).join("client.toml"))
            .args(["--node", org])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "{org}'s log does not verify:\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let witnesses = AuditServiceClient::new(f.authed(org, org, &[])?)
            .witnesses(WitnessesRequest {})
            .await
            .context("witnesses")?
            .into_inner();
        if let Some(alarm) = witnesses.peers.iter().find(|p| p.alarm) {
            bail!(
                "{org} raised a witness alarm about {}: {}",
                alarm.org,
                alarm.alarm_reason
            );
        }
        println!(
            "  {org:<16} log verifies ({}); witnesses of {} peers accept",
            text.lines().last().unwrap_or("").trim(),
            witnesses.peers.len()
        );
    }
    Ok(())
}
