//! End-to-end benchmarks: real `lagesbild serve` processes, real mutual TLS, loopback.
//!
//! ```sh
//! cargo build --release --workspace && target/release/lagesbild-bench ingest --reports 1000000
//! ```
//!
//! The `lagesbild` binary is taken from the same folder as this one.

mod aggregate;
mod audit;
mod central;
mod console;
mod events;
mod load;
mod picture;
mod utility;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use lagesbild_auth::{AuthChannel, Bearer, Grant, Signer};
use lagesbild_harness::NodeProcess;
use lagesbild_identity::tls::client_config;
use lagesbild_identity::{Federation, TlsFiles};
use lagesbild_proto::v1::report_service_client::ReportServiceClient;
use lagesbild_proto::v1::SubmitBatchRequest;
use lagesbild_reports::synthetic;
use lagesbild_transport::{channel, ChannelOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

#[derive(Debug, Parser)]
#[command(about = "End-to-end benchmarks of Lägesbild on loopback")]
struct Cli {
    #[command(subcommand)]
    command: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Durable streaming ingest into one node; then its memory and disk use.
    Ingest {
        /// Reports to load.
        #[arg(long, default_value_t = 1_000_000)]
        reports: usize,
        /// Concurrent client streams.
        #[arg(long, default_value_t = 4)]
        streams: usize,
        /// Reports per streamed batch.
        #[arg(long, default_value_t = 2_000)]
        batch: usize,
        /// The report store's cache, MiB (the node's default if not given).
        #[arg(long)]
        cache_mb: Option<u32>,
    },
    /// The access log alone, in this process: appends, proofs, verification.
    Audit {
        /// Entries to append.
        #[arg(long, default_value_t = 1_000_000)]
        entries: u64,
        /// Concurrent appenders, each waiting for durability.
        #[arg(long, default_value_t = 256)]
        writers: usize,
    },
    /// Peer aggregate calls per second against one node, with and without its
    /// access log, and a bare tonic echo over the same mutual TLS.
    Aggregate {
        /// Reports in the node's store.
        #[arg(long, default_value_t = 100_000)]
        reports: usize,
        /// Client connections.
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// Calls in flight on each connection.
        #[arg(long, default_value_t = 16)]
        in_flight: usize,
        /// Seconds measured per server.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Turns of the servers with and without the log.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// A fresh delegation token each call, as a home node calls its peers,
        /// instead of one token for every call.
        #[arg(long)]
        delegation: bool,
    },
    /// A federation of five nodes with reports in each: federated picture latency.
    Picture {
        /// Reports in each node.
        #[arg(long, default_value_t = 1_000_000)]
        reports: usize,
        /// Pictures asked, one after another, per window.
        #[arg(long, default_value_t = 200)]
        queries: usize,
        /// Windows to ask for, hours back from now (repeat).
        #[arg(long, default_values_t = [24, 720])]
        hours: Vec<u32>,
        /// The pictures' bucket: hour or day.
        #[arg(long, default_value = "hour", value_parser = ["hour", "day"])]
        bucket: String,
        /// Ask for pictures as a message per value (rows), as clients of
        /// builds before the columnar form did.
        #[arg(long)]
        rows: bool,
        /// Another build's `lagesbild` binary: its nodes and this build's take
        /// turns on the same loaded data.
        #[arg(long)]
        against: Option<PathBuf>,
        /// Turns of each build with --against.
        #[arg(long, default_value_t = 3)]
        turns: usize,
    },
    /// The console in headless Chromium against five loaded nodes: the first
    /// picture on the map, the picture call, 10,000 cells panned and zoomed,
    /// a report at another member on the page.
    Console {
        /// Reports in each node.
        #[arg(long, default_value_t = 1_000_000)]
        reports: usize,
        /// Page loads timed.
        #[arg(long, default_value_t = 20)]
        paints: usize,
        /// Reports sent one at a time and timed onto the page.
        #[arg(long, default_value_t = 20)]
        events: usize,
    },
    /// Live events: reports at one node at a fixed rate, each delivered to the
    /// watch clients of four peers; latency from ingest to delivery.
    Events {
        /// Reports (events) per second.
        #[arg(long, default_value_t = 1_000)]
        rate: usize,
        /// Seconds of load.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Reports per submit call.
        #[arg(long, default_value_t = 10)]
        batch: usize,
    },
    /// The same picture from one central PostgreSQL table and from the
    /// federation, with the same reports, in one run.
    Central {
        /// Reports of each organisation.
        #[arg(long, default_value_t = 1_000_000)]
        reports: usize,
        /// Pictures asked of each, alternating, per window.
        #[arg(long, default_value_t = 100)]
        queries: usize,
        /// Windows to ask for, hours back from now (repeat).
        #[arg(long, default_values_t = [24, 720])]
        hours: Vec<u32>,
    },
    /// Three nodes under mixed load (ingest everywhere, pictures, events
    /// followed by every node, audit reads); memory sampled every 30 s.
    Soak {
        /// Seconds of load.
        #[arg(long, default_value_t = 600)]
        seconds: u64,
        /// Reports a second written to each node (0: none, the rest of the load only).
        #[arg(long, default_value_t = 200)]
        ingest: u32,
        /// Page cache of each node's report store, MiB (default: the node's, 8).
        #[arg(long)]
        cache_mb: Option<u32>,
    },
    /// The soak's load with a node killed (SIGKILL) and restarted every few
    /// seconds; then: no acknowledged report lost, every event exactly once at
    /// every other node, every log verifies, no witness alarm.
    Fault {
        /// Seconds of load.
        #[arg(long, default_value_t = 120)]
        seconds: u64,
        /// Reports a second written to each node.
        #[arg(long, default_value_t = 200)]
        ingest: u32,
        /// Seconds between kills.
        #[arg(long, default_value_t = 10)]
        kill_every: u64,
    },
    /// Serves a node's aggregate service without its access log (started by
    /// `aggregate` for the comparison; never a way to run a node).
    #[command(hide = true)]
    ServeWithoutLog {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        echo_listen: String,
    },
    /// The free-text scrubber alone, in this process, over synthetic report texts.
    Scrub {
        /// Reports whose texts are scrubbed.
        #[arg(long, default_value_t = 100_000)]
        reports: usize,
    },
    /// What releases keep of the picture, now and shape by shape: released
    /// reports and values per shape, on the demo's and the picture bench's data.
    Utility {
        /// Reports of each member in the picture bench's data.
        #[arg(long, default_value_t = 1_000_000)]
        reports: usize,
        /// The finest cell the peer is allowed, metres: its base cell.
        #[arg(long, default_value_t = 250)]
        finest_cell: u32,
        /// The finest bucket the peer is allowed (hour, day, week): its base bucket.
        #[arg(long, default_value = "hour")]
        finest_bucket: String,
    },
    /// The store alone, in this process: validation and durable inserts, no network.
    Store {
        /// Reports to insert.
        #[arg(long, default_value_t = 200_000)]
        reports: usize,
        /// Reports per insert.
        #[arg(long, default_value_t = 2_000)]
        batch: usize,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command {
            Bench::Ingest {
                reports,
                streams,
                batch,
                cache_mb,
            } => ingest(reports, streams, batch, cache_mb).await,
            Bench::Store { reports, batch } => store_only(reports, batch).await,
            Bench::Scrub { reports } => scrub(reports),
            Bench::Utility {
                reports,
                finest_cell,
                finest_bucket,
            } => utility::run(reports, finest_cell, &finest_bucket),
            Bench::Audit { entries, writers } => audit::run(entries, writers).await,
            Bench::Aggregate {
                reports,
                connections,
                in_flight,
                seconds,
                rounds,
                delegation,
            } => {
                aggregate::run(aggregate::Shape {
                    reports,
                    connections,
                    in_flight,
                    seconds,
                    rounds: rounds.max(1),
                    delegation,
                })
                .await
            }
            Bench::Picture {
                reports,
                queries,
                hours,
                bucket,
                rows,
                against,
                turns,
            } => {
                picture::run(picture::PictureRun {
                    reports,
                    queries,
                    windows: &hours,
                    bucket: if bucket == "day" {
                        lagesbild_proto::v1::BucketKind::Day
                    } else {
                        lagesbild_proto::v1::BucketKind::Hour
                    },
                    rows,
                    against: against.as_deref(),
                    turns,
                })
                .await
            }
            Bench::Events {
                rate,
                seconds,
                batch,
            } => events::run(rate, seconds, batch).await,
            Bench::Central {
                reports,
                queries,
                hours,
            } => central::run(reports, queries, &hours).await,
            Bench::Soak {
                seconds,
                ingest,
                cache_mb,
            } => load::run(seconds, None, ingest, cache_mb).await,
            Bench::Fault {
                seconds,
                ingest,
                kill_every,
            } => {
                load::run(
                    seconds,
                    Some(Duration::from_secs(kill_every.max(1))),
                    ingest,
                    None,
                )
                .await
            }
            Bench::Console {
                reports,
                paints,
                events,
            } => console::run(reports, paints, events).await,
            Bench::ServeWithoutLog {
                config,
                echo_listen,
            } => aggregate::serve_without_log(&config, &echo_listen).await,
        }
    })
}

/// A federation in a temporary folder with one member's node running.
struct OneNode {
    dir: tempfile::TempDir,
    node: NodeProcess,
    /// Nodes of the other members, where started.
    others: Vec<NodeProcess>,
    federation: Federation,
}

fn lagesbild() -> Result<PathBuf> {
    sibling("lagesbild")
}

/// An executable in the folder of this one.
fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name(name);
    if !path.exists() {
        bail!(
            "{} not found: build it with cargo build --release --workspace",
            path.display()
        );
    }
    Ok(path)
}

fn free_port() -> Result<u16> {
    Ok(lagesbild_harness::free_loopback_ports(1)?[0])
}

/// Provisions a federation of `orgs` and starts the first one's node.
async fn start_node(orgs: &[&str]) -> Result<OneNode> {
    let dir = tempfile::tempdir()?;
    let mut init = Command::new(lagesbild()?);
    init.args([
        "certs",
        "init",
        "--federation",
        "bench",
        "--auditor",
        "audit",
    ]);
    for org in orgs {
        let port = free_port()?;
        init.args(["--org", org])
            .args(["--endpoint", &format!("{org}=127.0.0.1:{port}")]);
    }
    let out = init.arg("--dir").arg(dir.path()).output()?;
    if !out.status.success() {
        bail!("certs init: {}", String::from_utf8_lossy(&out.stderr));
    }
    let federation = Federation::load(&dir.path().join("federation.toml"))?;
    // Every node has an analyst who signs in (the soak's people load).
    for org in orgs {
        add_analyst(dir.path(), org)?;
    }
    let org = orgs[0];
    let node = spawn_node(dir.path(), org)?;
    let mut one = OneNode {
        dir,
        node,
        others: Vec::new(),
        federation,
    };
    one.wait_healthy(org).await?;
    Ok(one)
}

/// The account the benches sign in as at every node, and its password.
const ANALYST: (&str, &str) = ("analyst", "the bench analyst's password");

/// Adds [`ANALYST`] to the accounts of `org`'s node in `dir`.
fn add_analyst(dir: &Path, org: &str) -> Result<()> {
    use std::io::Write;
    let mut child = Command::new(lagesbild()?)
        .args(["users", "add", "--config"])
        .arg(dir.join(org).join("node.toml"))
        .args([ANALYST.0, "--role", "analyst", "--password-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(format!("{}\n", ANALYST.1).as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("users add: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Sets the report store's cache in the configuration of the node in `node_dir`.
fn set_store_cache(node_dir: &Path, mb: u32) -> Result<()> {
    let config = node_dir.join("node.toml");
    let mut text = std::fs::read_to_string(&config)?;
    text.push_str(&format!("\n[storage]\nstore_cache_mb = {mb}\n"));
    std::fs::write(&config, text)?;
    Ok(())
}

fn spawn_node(dir: &Path, org: &str) -> Result<NodeProcess> {
    let config = dir.join(org).join("node.toml");
    Ok(NodeProcess::spawn(&lagesbild()?, org, &config, None)?)
}

impl OneNode {
    /// Stops the first member's server, starts another with `start` in its
    /// place and waits until it answers health checks. A server that exits at
    /// once (the store's lock not yet released by the last one) is started again.
    async fn replace(&mut self, org: &str, start: impl Fn() -> Result<NodeProcess>) -> Result<()> {
        self.node.kill();
        for _ in 0..50 {
            self.node = start()?;
            let channel = self.channel(org, org)?;
            if self
                .node
                .wait_healthy(channel, Duration::from_secs(30))
                .await
                .is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("{org}'s server did not start")
    }

    /// Stops every node and starts them again from `exe` on the same data,
    /// waiting until each is healthy.
    async fn restart_all(&mut self, exe: &Path) -> Result<()> {
        let orgs: Vec<String> = std::iter::once(&self.node)
            .chain(&self.others)
            .map(|n| n.org().to_owned())
            .collect();
        for node in std::iter::once(&mut self.node).chain(&mut self.others) {
            node.stop(Duration::from_secs(30)).await?;
        }
        let start = |org: &str| -> Result<NodeProcess> {
            let config = self.dir.path().join(org).join("node.toml");
            Ok(NodeProcess::spawn(exe, org, &config, None)?)
        };
        self.node = start(&orgs[0])?;
        self.others = orgs[1..].iter().map(|o| start(o)).collect::<Result<_>>()?;
        for org in &orgs {
            self.wait_healthy(org).await?;
        }
        Ok(())
    }

    /// Starts the node of another member and waits until it is healthy.
    async fn start_other(&mut self, org: &str) -> Result<()> {
        self.others.push(spawn_node(self.dir.path(), org)?);
        self.wait_healthy(org).await
    }

    /// Waits until `org`'s node answers health checks.
    async fn wait_healthy(&mut self, org: &str) -> Result<()> {
        let channel = self.channel(org, org)?;
        let node = std::iter::once(&mut self.node)
            .chain(&mut self.others)
            .find(|n| n.org() == org)
            .ok_or_else(|| anyhow::anyhow!("{org}'s node was not started"))?;
        Ok(node.wait_healthy(channel, Duration::from_secs(30)).await?)
    }

    /// A channel to `node_org`'s node as `as_org`, whose calls carry a token of
    /// `as_org` with `scopes`.
    fn authed(&self, node_org: &str, as_org: &str, scopes: &[&str]) -> Result<AuthChannel> {
        let token = self.token(node_org, as_org, scopes)?;
        Ok(AuthChannel::new(
            self.channel(node_org, as_org)?,
            Bearer::new(&token)?,
        ))
    }

    /// `as_org`'s token signer.
    fn signer(&self, as_org: &str) -> Result<Signer> {
        let pem = std::fs::read(self.dir.path().join(as_org).join("token.key"))?;
        Ok(Signer::from_pem(as_org, &pem)?)
    }

    /// A token of `as_org` for `node_org`'s node with `scopes`: purpose
    /// "ingest" for writes, "bench" for the rest.
    fn token(&self, node_org: &str, as_org: &str, scopes: &[&str]) -> Result<String> {
        let purpose = if scopes == ["report:write"] {
            "ingest"
        } else {
            "bench"
        };
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        Ok(self.signer(as_org)?.issue(&Grant {
            audience: node_org,
            subject: "bench",
            scopes: &scopes,
            purpose,
            ttl: Duration::from_secs(3600),
            act: None,
        })?)
    }

    /// A new connection to `org`'s own node on the certificate its people
    /// share (where they sign in).
    fn people_channel(&self, org: &str) -> Result<Channel> {
        let endpoint = self
            .federation
            .member(org)
            .and_then(|m| m.endpoint.clone())
            .context("no endpoint")?;
        let files = TlsFiles {
            cert: self.dir.path().join(org).join("client.pem"),
            key: self.dir.path().join(org).join("client.key"),
        };
        let (chain, key) = files.load()?;
        let tls = client_config(&self.federation, org, chain, key)?;
        Ok(channel(&endpoint, tls, ChannelOptions::default())?)
    }

    /// A new connection to `node_org`'s node with `as_org`'s client certificate.
    fn channel(&self, node_org: &str, as_org: &str) -> Result<Channel> {
        let endpoint = self
            .federation
            .member(node_org)
            .and_then(|m| m.endpoint.clone())
            .context("no endpoint")?;
        self.channel_to(&endpoint, node_org, as_org)
    }

    /// A new connection to `endpoint`, where `node_org`'s certificate answers,
    /// with `as_org`'s client certificate; to the org's own node with the
    /// node's certificate, as its operator (its people sign in instead, and
    /// only the node holds the org's token key).
    fn channel_to(&self, endpoint: &str, node_org: &str, as_org: &str) -> Result<Channel> {
        let leaf = if node_org == as_org { "node" } else { "client" };
        let files = TlsFiles {
            cert: self.dir.path().join(as_org).join(format!("{leaf}.pem")),
            key: self.dir.path().join(as_org).join(format!("{leaf}.key")),
        };
        let (chain, key) = files.load()?;
        let tls = client_config(&self.federation, node_org, chain, key)?;
        Ok(channel(endpoint, tls, ChannelOptions::default())?)
    }
}

/// A release of the last `hours` hours at 250 m × hour, all categories.
fn last_hours_at_250m(hours: u32) -> lagesbild_proto::v1::ReleaseRequest {
    let now = lagesbild_vocabulary::SystemClock
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let at = |seconds| Some(prost_types::Timestamp { seconds, nanos: 0 });
    lagesbild_proto::v1::ReleaseRequest {
        unless_digest: Vec::new(),
        purpose: String::new(),
        from: at(now - i64::from(hours) * 3600),
        to: at(now),
        categories: Vec::new(),
        area: None,
        cell_size_m: 250,
        bucket: lagesbild_proto::v1::BucketKind::Hour as i32,
        totals_only: false,
        columnar: false,
    }
}

fn proc_status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("{field} in /proc/{pid}/status"))
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let after = stat.rsplit_once(')').context("malformed stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / 100.0)
}

fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

async fn ingest(total: usize, streams: usize, batch: usize, cache_mb: Option<u32>) -> Result<()> {
    let org = "polisen";
    let mut node = start_node(&[org]).await?;
    if let Some(mb) = cache_mb {
        let dir = node.dir.path().to_owned();
        set_store_cache(&dir.join(org), mb)?;
        node.replace(org, || spawn_node(&dir, org)).await?;
    }
    eprintln!("generating {total} synthetic reports ...");
    let mut reports =
        synthetic::generate(org, 1, total, 30, lagesbild_vocabulary::SystemClock.now());
    for (i, r) in reports.iter_mut().enumerate() {
        r.id = format!("bench-{i}");
    }
    let chunks: Vec<Vec<_>> = reports.chunks(batch).map(<[_]>::to_vec).collect();
    drop(reports);
    let per_stream = chunks.len().div_ceil(streams);
    let mut work: Vec<Vec<Vec<_>>> = Vec::new();
    let mut chunks = chunks.into_iter();
    for _ in 0..streams {
        work.push(chunks.by_ref().take(per_stream).collect());
    }
    let channel = node.authed(org, org, &["report:write"])?;
    eprintln!("streaming over {streams} streams, {batch} reports a batch ...");
    let pid = node.node.pid();
    let cpu_before = cpu_seconds(pid)?;
    let started = Instant::now();
    let tasks: Vec<_> = work
        .into_iter()
        .map(|batches| {
            let channel = channel.clone();
            tokio::spawn(async move {
                let mut client =
                    ReportServiceClient::new(channel).max_encoding_message_size(64 << 20);
                let requests =
                    tokio_stream::iter(batches.into_iter().map(|reports| SubmitBatchRequest {
                        reports,
                        validate_only: false,
                    }));
                client.submit_stream(requests).await.map(|r| r.into_inner())
            })
        })
        .collect();
    let mut stored = 0;
    for task in tasks {
        stored += task.await??.stored;
    }
    let elapsed = started.elapsed();
    if stored != total as u64 {
        bail!("stored {stored} of {total}");
    }
    let node_cpu = cpu_seconds(pid)? - cpu_before;
    let rss = proc_status_kib(pid, "VmRSS:")?;
    let peak = proc_status_kib(pid, "VmHWM:")?;
    let disk = dir_size(&node.dir.path().join(org).join("data"));
    println!("ingest: {total} reports, {streams} streams x {batch}-report batches, durable (fsync before each acknowledgement)");
    println!(
        "  time {:.2} s, {:.0} reports/s",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    println!(
        "  node CPU {node_cpu:.2} s ({:.1} µs a report)",
        node_cpu * 1e6 / total as f64
    );
    println!(
        "  node resident memory after ingest {:.1} MB (peak {:.1} MB)",
        rss as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    println!("  on disk {:.1} MB", disk as f64 / 1e6);
    Ok(())
}

/// Splits a node's write cost: validation (with projection) and the store's insert.
async fn store_only(total: usize, batch: usize) -> Result<()> {
    use lagesbild_reports::validate::{validate_batch, Coverage, Rules};
    use lagesbild_store::{Store, StoreOptions};
    let now = lagesbild_vocabulary::SystemClock.now();
    let mut reports = synthetic::generate("polisen", 1, total, 30, now);
    for (i, r) in reports.iter_mut().enumerate() {
        r.id = format!("bench-{i}");
    }
    let rules = Rules {
        coverage: Coverage::STOCKHOLM_INNER_CITY,
        retention: Duration::from_secs(365 * 86_400),
    };
    let started = Instant::now();
    let mut ready = Vec::new();
    for chunk in reports.chunks(batch) {
        let valid = validate_batch(chunk, &rules, now, 0).map_err(|v| anyhow::anyhow!("{v:?}"))?;
        ready.push(
            valid
                .into_iter()
                .map(lagesbild_node::services::reports::to_store)
                .collect::<Vec<_>>(),
        );
    }
    let validation = started.elapsed();
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path(), StoreOptions::default())?;
    let started = Instant::now();
    for batch in ready {
        store.insert(batch).await?;
    }
    let inserting = started.elapsed();
    println!("store: {total} reports in batches of {batch}, one process, no network");
    println!(
        "  validation and key derivation {:.2} s ({:.1} µs a report)",
        validation.as_secs_f64(),
        validation.as_secs_f64() * 1e6 / total as f64
    );
    println!(
        "  durable inserts {:.2} s ({:.1} µs a report, {:.0} reports/s)",
        inserting.as_secs_f64(),
        inserting.as_secs_f64() * 1e6 / total as f64,
        total as f64 / inserting.as_secs_f64()
    );
    Ok(())
}

/// Scrubs the texts of `total` synthetic reports (each with its own persons
/// and plates as the known identifiers) and prints the rate.
fn scrub(total: usize) -> Result<()> {
    use lagesbild_privacy::scrub::{scrub, Known};
    let reports = synthetic::generate(
        "polisen",
        7,
        total,
        30,
        lagesbild_vocabulary::SystemClock.now(),
    );
    let bytes: usize = reports.iter().map(|r| r.text.len()).sum();
    let started = Instant::now();
    let mut changed = 0usize;
    for report in &reports {
        let known = Known {
            names: report.persons.iter().map(|p| p.name.as_str()).collect(),
            plates: report.vehicle_plates.iter().map(String::as_str).collect(),
        };
        let out = scrub(&report.text, &known);
        changed += usize::from(out != report.text);
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "scrub: {total} report texts, {:.1} MB, in {seconds:.2} s: {:.2} MB/s, {:.0} texts/s, one thread; {changed} texts changed",
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / seconds,
        total as f64 / seconds
    );
    Ok(())
}
