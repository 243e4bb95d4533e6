//! Peer aggregate calls one node answers per second, what its access log adds to
//! each, and a bare tonic echo over the same mutual TLS for scale.
//!
//! Three servers answer in turn, each in its own process, with the same
//! certificates, the same store and the same policy:
//!
//! 1. the real node (`lagesbild serve`): mutual TLS, token check, release gate
//!    and privacy engine, every call written to the access log and on disk
//!    before the answer leaves;
//! 2. the same aggregate service behind the same limits, token check and
//!    metrics, without the access log
//!    (`lagesbild-bench serve-without-log`, for this comparison only);
//! 3. from that process too, a tonic health service with no layers at all on a
//!    second listener: the bare echo.

use crate::{sibling, start_node, OneNode};
use anyhow::{bail, Context, Result};
use futures::future::BoxFuture;
use lagesbild_auth::{Grant, Verifier, AUTHORIZATION, MAX_DELEGATION_SECS};
use lagesbild_harness::NodeProcess;
use lagesbild_identity::tls::server_config;
use lagesbild_node::access::{CheckLayer, CountLayer};
use lagesbild_node::auth::Authority;
use lagesbild_node::config::NodeConfig;
use lagesbild_node::metrics::Metrics;
use lagesbild_node::policy_watch::PolicyHandle;
use lagesbild_node::release::ReleaseGate;
use lagesbild_node::server::limited_server;
use lagesbild_node::services::aggregate::AggregateApi;
use lagesbild_people::People;
use lagesbild_proto::v1::aggregate_service_client::AggregateServiceClient;
use lagesbild_proto::v1::aggregate_service_server::AggregateServiceServer;
use lagesbild_proto::v1::report_service_client::ReportServiceClient;
use lagesbild_proto::v1::{ReleaseRequest, SubmitBatchRequest};
use lagesbild_reports::synthetic;
use lagesbild_store::{Store, StoreOptions};
use lagesbild_transport::serve_tls;
use prost::Message;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tonic::transport::{Channel, Server};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const NODE: &str = "polisen";
const PEER: &str = "fastighetsagarna";

/// How the load is shaped.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Reports in the node's store.
    pub reports: usize,
    /// Client connections (each its own TLS session).
    pub connections: usize,
    /// Calls in flight on each connection.
    pub in_flight: usize,
    /// Measured seconds per server (after one second of warm-up).
    pub seconds: u64,
    /// Turns of each server.
    pub rounds: usize,
    /// Each call with a fresh delegation token, as a home node calls its peers
    /// (each used once, and the server records its `jti`), instead of one
    /// token for every call.
    pub delegation: bool,
}

pub async fn run(shape: Shape) -> Result<()> {
    let mut node = start_node(&[NODE, PEER]).await?;
    std::fs::write(node.dir.path().join(NODE).join("policy.toml"), POLICY)?;
    load_reports(&node, shape.reports).await?;
    let request = peer_query();

    let mut probe = AggregateServiceClient::new(node.authed(NODE, PEER, &["aggregate:read"])?);
    let release = probe.release(request.clone()).await?.into_inner();
    println!(
        "aggregate bench: {} reports over 30 days in {NODE}'s node; {PEER} asks for the last 24 hours, 250 m x hour, all categories",
        shape.reports
    );
    println!(
        "  each answer: {} released values, {} bytes; {} connections x {} calls in flight, {} s measured after 1 s warm-up; {}",
        release.counts.len(),
        release.encoded_len(),
        shape.connections,
        shape.in_flight,
        shape.seconds,
        if shape.delegation {
            "a fresh delegation token each call, signed before each phase"
        } else {
            "one token for every call"
        }
    );

    // The two servers take turns, so drift in the machine's speed touches both.
    let config = node.dir.path().join(NODE).join("node.toml");
    let echo_endpoint = format!("127.0.0.1:{}", crate::free_port()?);
    let endpoint = format_endpoint(&node)?;
    let (mut logged, mut unlogged) = (Vec::new(), Vec::new());
    let (mut logged_cpu, mut unlogged_cpu) = (Vec::new(), Vec::new());
    let mut failures = 0;
    let mut echo = None;
    for round in 1..=shape.rounds {
        if round > 1 {
            node.replace(NODE, || spawn_node_process(&config)).await?;
        }
        let with_log = aggregate_load(&node, &endpoint, &request, shape).await?;
        with_log.print(&format!("round {round}: node (mTLS, token, access log)"));
        node.replace(NODE, || {
            let mut command = Command::new(sibling("lagesbild-bench")?);
            command
                .arg("serve-without-log")
                .arg("--config")
                .arg(&config)
                .args(["--echo-listen", &echo_endpoint]);
            Ok(NodeProcess::start(NODE, &mut command, None)?)
        })
        .await?;
        let without_log = aggregate_load(&node, &endpoint, &request, shape).await?;
        without_log.print(&format!(
            "round {round}: same, without access log (mTLS, token)"
        ));
        if round == shape.rounds {
            let bare = echo_load(&node, &echo_endpoint, shape).await?;
            bare.print("bare tonic echo (health, mTLS, no layers)");
            failures += bare.failures;
            echo = Some(bare);
        }
        failures += with_log.failures + without_log.failures;
        logged.push(with_log.per_second());
        unlogged.push(without_log.per_second());
        logged_cpu.extend(with_log.cpu_per_call());
        unlogged_cpu.extend(without_log.cpu_per_call());
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (logged, unlogged) = (mean(&logged), mean(&unlogged));
    println!(
        "  mean of {} rounds: {logged:.0} calls/s with the access log, {unlogged:.0} without: the log adds {:.1}% to a call's time",
        shape.rounds,
        (unlogged / logged - 1.0) * 100.0,
    );
    if !logged_cpu.is_empty() && logged_cpu.len() == unlogged_cpu.len() {
        let (logged_cpu, unlogged_cpu) = (mean(&logged_cpu), mean(&unlogged_cpu));
        println!(
            "  server CPU a call: {logged_cpu:.0} µs with the access log, {unlogged_cpu:.0} µs without: the log adds {:.1}%",
            (logged_cpu / unlogged_cpu - 1.0) * 100.0,
        );
    }
    if let Some(echo) = echo {
        println!(
            "  the node answers {:.2} of the bare echo's calls/s",
            logged / echo.per_second()
        );
    }
    if failures > 0 {
        bail!("some calls failed (see above)");
    }
    Ok(())
}

/// A `lagesbild serve` of `config`.
fn spawn_node_process(config: &Path) -> Result<NodeProcess> {
    Ok(NodeProcess::spawn(
        &crate::lagesbild()?,
        NODE,
        config,
        None,
    )?)
}

fn format_endpoint(node: &OneNode) -> Result<String> {
    node.federation
        .member(NODE)
        .and_then(|m| m.endpoint.clone())
        .context("no endpoint")
}

/// The peer's rules: a k-threshold release at 250 m × hour, no noise, a rate
/// limit far above what the load reaches (so the limit is not what is measured).
const POLICY: &str = "version = 1

[peer.fastighetsagarna]
scopes = [\"aggregate:read\"]
purposes = [\"bench\"]
categories = [\"all\"]
finest_cell = 250
finest_bucket = \"hour\"
k = 3
rate_limit = 100000000
";

/// The query a federated picture sends each peer by default.
fn peer_query() -> ReleaseRequest {
    crate::last_hours_at_250m(24)
}

async fn load_reports(node: &OneNode, total: usize) -> Result<()> {
    let mut reports =
        synthetic::generate(NODE, 7, total, 30, lagesbild_vocabulary::SystemClock.now());
    for (i, r) in reports.iter_mut().enumerate() {
        r.id = format!("bench-{i}");
    }
    let mut writer = ReportServiceClient::new(node.authed(NODE, NODE, &["report:write"])?)
        .max_encoding_message_size(64 << 20);
    for batch in reports.chunks(2_000) {
        writer
            .submit_batch(SubmitBatchRequest {
                reports: batch.to_vec(),
                validate_only: false,
            })
            .await?;
    }
    Ok(())
}

/// What one server did under load.
struct Load {
    calls: u64,
    failures: u64,
    first_failure: Option<String>,
    elapsed: Duration,
    latencies: Vec<Duration>,
    /// CPU seconds the server used while calls were counted.
    server_cpu: Option<f64>,
}

impl Load {
    fn per_second(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    /// Server CPU a call, µs (calls that began in the window and ended after
    /// it are left out of `calls`, so this errs a little high).
    fn cpu_per_call(&self) -> Option<f64> {
        self.server_cpu
            .filter(|_| self.calls > 0)
            .map(|cpu| cpu / self.calls as f64 * 1e6)
    }

    fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let index = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        self.latencies[index]
    }

    fn print(&self, what: &str) {
        println!(
            "  {what}: {:.0} calls/s; latency p50 {:.2} ms, p99 {:.2} ms; server CPU {:.0} µs a call; {} failed{}",
            self.per_second(),
            self.percentile(0.50).as_secs_f64() * 1e3,
            self.percentile(0.99).as_secs_f64() * 1e3,
            self.cpu_per_call().unwrap_or(f64::NAN),
            self.failures,
            self.first_failure
                .as_deref()
                .map(|f| format!(" (first: {f})"))
                .unwrap_or_default()
        );
    }
}

async fn aggregate_load(
    node: &OneNode,
    endpoint: &str,
    request: &ReleaseRequest,
    shape: Shape,
) -> Result<Load> {
    let request = Arc::new(request.clone());
    if shape.delegation {
        let signer = Arc::new(node.signer(PEER)?);
        let scopes = ["aggregate:read".to_owned()];
        // A person verified at the peer, as a picture's delegation names them.
        let analyst = lagesbild_auth::Actor {
            sub: "anna".into(),
            iss: Some(format!("local:{PEER}")),
            role: Some("analyst".into()),
        };
        let issue = move || {
            signer
                .issue(&Grant {
                    audience: NODE,
                    subject: PEER,
                    scopes: &scopes,
                    purpose: "bench",
                    ttl: Duration::from_secs(MAX_DELEGATION_SECS),
                    act: Some(&analyst),
                })
                .map_err(|e| e.to_string())
        };
        let tokens = Arc::new(std::sync::Mutex::new(presign(&issue, shape)?));
        let clients = (0..shape.connections)
            .map(|_| {
                node.channel_to(endpoint, NODE, PEER)
                    .map(AggregateServiceClient::new)
            })
            .collect::<Result<Vec<_>>>()?;
        return Ok(hammer(clients, node.node.pid(), shape, move |mut client| {
            let (request, tokens, issue) = (request.clone(), tokens.clone(), issue.clone());
            Box::pin(async move {
                let presigned = tokens.lock().map_err(|_| "token pool")?.pop();
                let token = presigned.map_or_else(&issue, Ok)?;
                let mut call = tonic::Request::new(request.as_ref().clone());
                let bearer = format!("Bearer {token}").parse().map_err(|_| "token")?;
                call.metadata_mut().insert(AUTHORIZATION, bearer);
                client
                    .release(call)
                    .await
                    .map(|_| ())
                    .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
            })
        })
        .await);
    }
    let token = node.token(NODE, PEER, &["aggregate:read"])?;
    let mut clients = Vec::new();
    for _ in 0..shape.connections {
        let channel = lagesbild_auth::AuthChannel::new(
            node.channel_to(endpoint, NODE, PEER)?,
            lagesbild_auth::Bearer::new(&token)?,
        );
        clients.push(AggregateServiceClient::new(channel));
    }
    Ok(hammer(clients, node.node.pid(), shape, move |mut client| {
        let request = request.clone();
        Box::pin(async move {
            client
                .release(request.as_ref().clone())
                .await
                .map(|_| ())
                .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
        })
    })
    .await)
}

/// Most calls a second a phase is given pre-signed tokens for.
const PRESIGNED_PER_SECOND: u64 = 10_000;
/// Longest phase (warm-up included) whose tokens are all signed before it:
/// well inside their lifetime.
const PRESIGN_PHASE_MOST_SECS: u64 = 30;

/// Delegation tokens signed before a phase, so that the client, which shares
/// the cores with the server, does not sign during the measurement (a home
/// node signs on its own machine). Each is used once; a phase that runs out
/// signs more as it goes, and a phase too long for their lifetime gets none.
fn presign(
    issue: &(impl Fn() -> Result<String, String> + Sync),
    shape: Shape,
) -> Result<Vec<String>> {
    let phase = shape.seconds + 1;
    if phase > PRESIGN_PHASE_MOST_SECS {
        return Ok(Vec::new());
    }
    let wanted = (phase * PRESIGNED_PER_SECOND) as usize;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    (0..wanted / workers)
                        .map(|_| issue())
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        let mut tokens = Vec::with_capacity(wanted);
        for handle in handles {
            let signed = handle
                .join()
                .map_err(|_| anyhow::anyhow!("a signing thread panicked"))?;
            tokens.extend(signed.map_err(|e| anyhow::anyhow!("signing a delegation token: {e}"))?);
        }
        Ok(tokens)
    })
}

async fn echo_load(node: &OneNode, endpoint: &str, shape: Shape) -> Result<Load> {
    let clients = (0..shape.connections)
        .map(|_| node.channel_to(endpoint, NODE, PEER).map(HealthClient::new))
        .collect::<Result<Vec<HealthClient<Channel>>>>()?;
    Ok(hammer(clients, node.node.pid(), shape, |mut client| {
        Box::pin(async move {
            client
                .check(HealthCheckRequest::default())
                .await
                .map(|_| ())
                .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
        })
    })
    .await)
}

/// Runs `call` from `in_flight` tasks per client until the time is up; counts
/// only calls that started after the warm-up and ended before the end.
/// Runs `call` from every client, `shape.in_flight` at a time on each, and
/// measures calls, latencies and the CPU `server` used in the measured window.
async fn hammer<C, F>(clients: Vec<C>, server: u32, shape: Shape, call: F) -> Load
where
    C: Clone + Send + 'static,
    F: Fn(C) -> BoxFuture<'static, Result<(), String>> + Clone + Send + Sync + 'static,
{
    let started = Instant::now();
    let measure_from = started + Duration::from_secs(1);
    let measure_to = measure_from + Duration::from_secs(shape.seconds);
    let server_cpu = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        let from = crate::cpu_seconds(server).ok()?;
        tokio::time::sleep_until(measure_to.into()).await;
        Some(crate::cpu_seconds(server).ok()? - from)
    });
    let mut tasks = Vec::new();
    for client in clients {
        for _ in 0..shape.in_flight {
            let client = client.clone();
            let call = call.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut failures = 0u64;
                let mut first_failure = None;
                loop {
                    let begun = Instant::now();
                    if begun >= measure_to {
                        break;
                    }
                    let result = call(client.clone()).await;
                    let ended = Instant::now();
                    let counted = begun >= measure_from && ended <= measure_to;
                    match result {
                        Ok(()) if counted => latencies.push(ended - begun),
                        Ok(()) => {}
                        Err(e) => {
                            failures += 1;
                            first_failure.get_or_insert(e);
                        }
                    }
                }
                (latencies, failures, first_failure)
            }));
        }
    }
    let mut load = Load {
        calls: 0,
        failures: 0,
        first_failure: None,
        elapsed: measure_to - measure_from,
        latencies: Vec::new(),
        server_cpu: None,
    };
    for task in tasks {
        if let Ok((latencies, failures, first_failure)) = task.await {
            load.latencies.extend(latencies);
            load.failures += failures;
            if load.first_failure.is_none() {
                load.first_failure = first_failure;
            }
        }
    }
    load.calls = load.latencies.len() as u64;
    load.latencies.sort_unstable();
    load.server_cpu = server_cpu.await.ok().flatten();
    load
}

/// Serves `config`'s aggregate service behind the node's check and count layers
/// alone (no access log), and a bare health service on `echo_listen`; both over the node's mutual
/// TLS. For the comparison in [`run`] only: a real node never answers unlogged.
pub async fn serve_without_log(config: &Path, echo_listen: &str) -> Result<()> {
    let loaded = NodeConfig::load(config)?;
    let federation = Arc::new(loaded.federation);
    let org = loaded.config.org.clone();
    let store = Store::open(
        &loaded.config.data_dir.join("store"),
        StoreOptions::default(),
    )?;
    let tls = server_config(
        &federation,
        loaded.keys.tls_chain.clone(),
        loaded.keys.tls_key.clone_key(),
    )?;
    let policy = Arc::new(PolicyHandle::new(
        loaded.config.policy.clone(),
        loaded.policy.clone(),
    ));
    let gate = Arc::new(ReleaseGate::new(
        lagesbild_vocabulary::OrgId::parse(&org)?,
        policy,
        store,
        Default::default(),
    ));
    let verifier = Arc::new(Verifier::new(&org, &federation)?);
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = TcpListener::bind(&loaded.config.listen).await?;
    let echo_listener = TcpListener::bind(echo_listen).await?;
    let metrics = Arc::new(Metrics::default());
    let checked = limited_server()
        .layer(
            tower::ServiceBuilder::new()
                .layer(CountLayer::new(metrics))
                .layer(CheckLayer::new(Arc::new(Authority {
                    org: lagesbild_vocabulary::OrgId::parse(&org)?,
                    verifier,
                    workloads: loaded.workloads.clone(),
                    people: Arc::new(People::open(
                        &org,
                        None,
                        Duration::from_secs(3600),
                        lagesbild_vocabulary::SystemClock::shared(),
                    )?),
                })))
                .into_inner(),
        )
        .add_service(health.clone())
        .add_service(AggregateServiceServer::new(AggregateApi::new(org, gate)))
        .serve_with_incoming(serve_tls(
            listener,
            tls.clone(),
            federation.clone(),
            Arc::new(|_| {}),
        ));
    let bare = Server::builder()
        .add_service(health)
        .serve_with_incoming(serve_tls(echo_listener, tls, federation, Arc::new(|_| {})));
    tokio::try_join!(checked, bare)?;
    Ok(())
}
