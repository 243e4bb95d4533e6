//! `lagesbild demo`: five organisations and an auditor on loopback.
//!
//! Makes certificates and configs in a work folder, starts one `serve` process per
//! member on a free loopback port, waits until every node reports healthy over
//! mutual TLS, and prints how each node sees the federation. With `--once` it then
//! stops the nodes and exits; otherwise it runs until Ctrl-C or SIGTERM.

use super::{query, watch};
use crate::client::Client;
use crate::commands::ingest::upload;
use crate::commands::serve::shutdown_signal;
use crate::commands::status::{federation_status, render};
use crate::provision::{FederationPlan, OrgPlan, WrittenFederation};
use anyhow::{bail, Context, Result};
use lagesbild_audit::Entry;
use lagesbild_harness::NodeProcess;
use lagesbild_identity::Role;
use lagesbild_people::PersonRole;
use lagesbild_proto::v1::audit_service_client::AuditServiceClient;
use lagesbild_proto::v1::event_service_client::EventServiceClient;
use lagesbild_proto::v1::report_service_client::ReportServiceClient;
use lagesbild_proto::v1::EntriesRequest;
use lagesbild_proto::v1::{
    Category, Person, Position, Report, Source, SubmitBatchRequest, Tlp, WatchRequest,
};
use lagesbild_reports::{places, synthetic};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The demo federation's name.
const FEDERATION: &str = "norrmalm";
/// The members, each running a node.
const MEMBERS: &[&str] = &[
    "polisen",
    "stockholm-stad",
    "amf-fastigheter",
    "svensk-handel",
    "scandic",
];
/// The auditor, which runs no node.
const AUDITOR: &str = "imy";
/// How long the nodes get to become healthy.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a node gets to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Work folder for certificates, configs, stores and logs.
    #[arg(long, default_value = "lagesbild-demo")]
    dir: PathBuf,
    /// Exit once the federation's status is shown, instead of running until Ctrl-C.
    #[arg(long)]
    once: bool,
}

pub(crate) async fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    clear_previous_demo(&args.dir)?;
    let ports = free_loopback_ports(2 * MEMBERS.len())?;
    let (ports, console_ports) = ports.split_at(MEMBERS.len());
    let mut orgs = Vec::new();
    for (id, port) in MEMBERS.iter().zip(ports) {
        let mut org = OrgPlan::parse(id, Role::Member)?;
        org.endpoint = Some(format!("127.0.0.1:{port}"));
        orgs.push(org);
    }
    orgs.push(OrgPlan::parse(AUDITOR, Role::Auditor)?);
    let plan = FederationPlan {
        name: FEDERATION.into(),
        orgs,
        coverage: lagesbild_reports::validate::Coverage::STOCKHOLM_INNER_CITY,
        retention_days: 365,
    };
    let written = plan.write(&args.dir, true)?;
    write_demo_policies(&written)?;
    let consoles = open_consoles(&written, console_ports)?;
    let people = DemoPeople::add(&written)?;
    println!(
        "Lägesbild demo: federation {FEDERATION:?} in {}",
        args.dir.display()
    );
    println!(
        "  certificates, keys and configs for {} members and the auditor {AUDITOR}",
        MEMBERS.len()
    );

    let mut nodes = Nodes::default();
    let outcome = async {
        for org in MEMBERS {
            nodes.start(&written, org).await?;
        }
        wait_until_healthy(&written, &mut nodes).await?;
        println!(
            "all {} nodes healthy after {:.1} s\n",
            MEMBERS.len(),
            started.elapsed().as_secs_f64()
        );
        people.introduce(&written, &consoles);
        load_reports(&written, &people).await?;
        show_status(&written, &people).await?;
        show_picture(&written, &people, &args.dir).await?;
        show_logs_naming_people(&written, &people).await?;
        show_events(&written, &people).await
    }
    .await;
    if outcome.is_ok() && !args.once {
        println!("running; press Ctrl-C to stop every node");
        tokio::select! {
            _ = shutdown_signal() => {}
            exited = nodes.first_exit() => println!("{exited}; stopping the others"),
        }
    }
    let stopped = nodes.stop_all().await;
    outcome?;
    stopped?;
    println!("all nodes stopped");
    Ok(())
}

/// The demo's agreement: every member (itself included) may read aggregates of
/// every category at 250 m and hour resolution, thresholded at k = 3, and
/// receive events with scrubbed text of reports marked up to AMBER (its own
/// node: up to RED).
fn write_demo_policies(written: &WrittenFederation) -> Result<()> {
    for owner in MEMBERS {
        let mut policy = String::from("version = 1\n");
        for member in MEMBERS {
            let max_tlp = if member == owner { "red" } else { "amber" };
            policy.push_str(&format!(
                "\n[peer.{member}]\nscopes = [\"aggregate:read\", \"events:read\"]\npurposes = [\"situation-picture\"]\ncategories = [\"all\"]\nfinest_cell = 250\nfinest_bucket = \"hour\"\nk = 3\nmax_tlp = \"{max_tlp}\"\ntext = true\nrate_limit = 600\n"
            ));
        }
        let dir = &written.org(owner).context("unknown org")?.dir;
        std::fs::write(dir.join("policy.toml"), &policy)?;
    }
    Ok(())
}

/// The federated picture as the first member's analyst sees it: the table, and
/// `picture.html` and `picture.geojson` in the work folder.
async fn show_picture(written: &WrittenFederation, people: &DemoPeople, dir: &Path) -> Result<()> {
    let org = MEMBERS[0];
    let config = written
        .org(org)
        .context("unknown org")?
        .client_config
        .clone();
    let client = people.sign_in(written, org, ANALYST).await?;
    let started = Instant::now();
    let picture = query::picture(&client, &query::Args::defaults(config)).await?;
    println!(
        "{}\n  (answered in {:.0} ms)\n",
        query::table(&picture),
        started.elapsed().as_secs_f64() * 1000.0
    );
    std::fs::write(dir.join("picture.html"), query::html(&picture))?;
    std::fs::write(
        dir.join("picture.geojson"),
        serde_json::to_string_pretty(&query::geojson(&picture))?,
    )?;
    println!(
        "wrote {} and {}",
        dir.join("picture.html").display(),
        dir.join("picture.geojson").display()
    );
    Ok(())
}

/// Gives every member's node a console on one of `ports`; each org with its
/// address.
fn open_consoles(written: &WrittenFederation, ports: &[u16]) -> Result<Vec<(String, String)>> {
    let mut consoles = Vec::new();
    for (org, port) in MEMBERS.iter().zip(ports) {
        let files = written.org(org).context("unknown org")?;
        let config = files
            .node_config
            .as_ref()
            .context("member without a node config")?;
        let mut text = std::fs::read_to_string(config)?;
        text.push_str(&format!("\n[console]\nlisten = \"127.0.0.1:{port}\"\n"));
        std::fs::write(config, text)?;
        consoles.push(((*org).to_owned(), format!("https://127.0.0.1:{port}/")));
    }
    Ok(consoles)
}

/// The demo's people at every member: an account name and its role.
const PEOPLE: &[(&str, PersonRole)] = &[
    (ANALYST, PersonRole::Analyst),
    (DUTY_OFFICER, PersonRole::DutyOfficer),
    (DATA_STEWARD, PersonRole::DataSteward),
    ("petra", PersonRole::PolicyAdmin),
    (AUDITOR_PERSON, PersonRole::Auditor),
];
const ANALYST: &str = "anna";
const DUTY_OFFICER: &str = "david";
const DATA_STEWARD: &str = "sara";
const AUDITOR_PERSON: &str = "rut";

/// Each member's people, with the passwords the demo gave them.
struct DemoPeople {
    passwords: std::collections::BTreeMap<(String, String), String>,
}

impl DemoPeople {
    /// Adds [`PEOPLE`] to every member's accounts, each with a random
    /// password, listed in `people.txt` in the org's folder.
    fn add(written: &WrittenFederation) -> Result<Self> {
        let mut passwords = std::collections::BTreeMap::new();
        for org in MEMBERS {
            let files = written.org(org).context("unknown org")?;
            let config = files
                .node_config
                .as_ref()
                .context("member without a node config")?;
            let mut listing = String::from("# account  role  password\n");
            for (account, role) in PEOPLE {
                let password = lagesbild_people::accounts::generate_password();
                super::people::add_account(config, account, [*role].into(), &password)?;
                listing.push_str(&format!("{account}  {role}  {password}\n"));
                passwords.insert(((*org).to_owned(), (*account).to_owned()), password);
            }
            let path = files.dir.join("people.txt");
            std::fs::write(&path, listing)?;
            #[cfg(unix)]
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        }
        Ok(Self { passwords })
    }

    fn introduce(&self, written: &WrittenFederation, consoles: &[(String, String)]) {
        let names: Vec<String> = PEOPLE.iter().map(|(a, r)| format!("{a} ({r})")).collect();
        println!(
            "each member's people sign in to their own node: {}",
            names.join(", ")
        );
        if let Some(files) = written.org(MEMBERS[0]) {
            println!(
                "  e.g. lagesbild login --config {} --account {ANALYST}   (passwords: people.txt in each org's folder)",
                files.client_config.display()
            );
        }
        println!(
            "  or in a browser, at each org's console (its certificate is from the demo's own CA):"
        );
        for (org, url) in consoles {
            println!("    {org:<18} {url}");
        }
        println!();
    }

    /// `org`'s client configuration, signed in as `account`.
    async fn sign_in(
        &self,
        written: &WrittenFederation,
        org: &str,
        account: &str,
    ) -> Result<Client> {
        let password = self
            .passwords
            .get(&(org.to_owned(), account.to_owned()))
            .with_context(|| format!("{account} is not one of {org}'s demo people"))?;
        let client = Client::load(&written.org(org).context("unknown org")?.client_config)?;
        let (secret, _) = super::people::sign_in(&client, account, password)
            .await
            .with_context(|| format!("signing {account} in at {org}"))?;
        Ok(client.with_session(&secret))
    }
}

/// What the access logs recorded of the picture: the home node's log names
/// the sign-in the call came with, a peer's names the person its node asked
/// for. Each read by the org's own auditor.
async fn show_logs_naming_people(written: &WrittenFederation, people: &DemoPeople) -> Result<()> {
    let (home, peer) = (MEMBERS[0], MEMBERS[1]);
    println!("what the access logs say of that picture, as each org's auditor {AUDITOR_PERSON} reads them:");
    for (org, wanted) in [
        (home, "/lagesbild.v1.PictureService/Picture"),
        (peer, "/lagesbild.v1.AggregateService/ReleaseMany"),
    ] {
        let client = people.sign_in(written, org, AUDITOR_PERSON).await?;
        let mut audit = AuditServiceClient::new(client.own_node_as("audit")?);
        let size = audit
            .entries(EntriesRequest { start: 0, limit: 1 })
            .await
            .context("reading the access log")?
            .into_inner()
            .size;
        // The newest such entry among the last few thousand.
        let mut found = None;
        let mut next = size.saturating_sub(5000);
        while next < size {
            let page = audit
                .entries(EntriesRequest {
                    start: next,
                    limit: 1000,
                })
                .await
                .context("reading the access log")?
                .into_inner();
            if page.next <= next {
                break;
            }
            next = page.next;
            for e in &page.entries {
                if let Ok(entry) = Entry::decode(&e.entry) {
                    if entry.call == wanted && entry.peer_org == home {
                        found = Some((e.index, entry));
                    }
                }
            }
        }
        let Some((index, entry)) = found else {
            bail!("{org}'s access log has no entry for {wanted} from {home}");
        };
        let who = if entry.token.act.is_empty() {
            format!("{} (sign-in {})", entry.token.sub, entry.token.jti)
        } else {
            format!("{}'s node for {}", entry.peer_org, entry.token.act)
        };
        println!(
            "  {org:<18} entry {index}: {} by {who}, purpose {}, {:?}",
            entry.call.rsplit('/').next().unwrap_or_default(),
            entry.token.purpose,
            entry.decision
        );
    }
    println!();
    Ok(())
}

/// Removes what an earlier demo left in `dir` (only the files it makes).
fn clear_previous_demo(dir: &Path) -> Result<()> {
    if !dir.join("federation.toml").exists() {
        return Ok(());
    }
    for org in MEMBERS.iter().chain([&AUDITOR]) {
        let org_dir = dir.join(org);
        if org_dir.exists() {
            std::fs::remove_dir_all(&org_dir)
                .with_context(|| format!("removing the previous demo's {}", org_dir.display()))?;
        }
    }
    Ok(())
}

fn free_loopback_ports(count: usize) -> Result<Vec<u16>> {
    lagesbild_harness::free_loopback_ports(count).context("finding free loopback ports")
}

#[derive(Default)]
struct Nodes {
    running: Vec<NodeProcess>,
}

impl Nodes {
    async fn start(&mut self, written: &WrittenFederation, org: &str) -> Result<()> {
        let files = written.org(org).context("org missing from the plan")?;
        let config = files
            .node_config
            .as_ref()
            .context("member without a node config")?;
        let log = files.dir.join("node.log");
        let exe = std::env::current_exe().context("finding the lagesbild executable")?;
        let node = NodeProcess::spawn(&exe, org, config, Some(&log))?;
        let endpoint = written_endpoint(written, org)?;
        println!("  started {org:<18} {endpoint:<22} pid {}", node.pid());
        self.running.push(node);
        Ok(())
    }

    /// A line saying which node exited first; pends forever if none runs.
    async fn first_exit(&mut self) -> String {
        loop {
            for node in &mut self.running {
                match node.exited() {
                    Ok(Some(status)) => {
                        let log = node.log().map(|l| l.display().to_string());
                        return format!(
                            "{}'s node exited ({status}); see {}",
                            node.org(),
                            log.unwrap_or_default()
                        );
                    }
                    Err(e) => return e.to_string(),
                    Ok(None) => {}
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGTERM to every node, then wait; a node that doesn't stop in time is killed.
    async fn stop_all(&mut self) -> Result<()> {
        for node in &self.running {
            node.terminate();
        }
        let mut unclean = Vec::new();
        for node in &mut self.running {
            if let Err(e) = node.wait_stopped(STOP_TIMEOUT).await {
                unclean.push(e.to_string());
            }
        }
        self.running.clear();
        if !unclean.is_empty() {
            bail!("nodes that did not stop cleanly: {}", unclean.join("; "));
        }
        Ok(())
    }
}

fn written_endpoint(written: &WrittenFederation, org: &str) -> Result<String> {
    let client = Client::load(&written.org(org).context("unknown org")?.client_config)?;
    client.config.node.context("member without a node endpoint")
}

/// Waits until each node's standard health service serves over mutual TLS.
async fn wait_until_healthy(written: &WrittenFederation, nodes: &mut Nodes) -> Result<()> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    for node in &mut nodes.running {
        let client = Client::load(
            &written
                .org(node.org())
                .context("unknown org")?
                .client_config,
        )?;
        let left = deadline.saturating_duration_since(Instant::now());
        node.wait_healthy(client.own_node()?, left).await?;
    }
    Ok(())
}

/// The seed of the demo's synthetic reports.
const SEED: u64 = 2026;
/// Days of synthetic reports.
const DAYS: u32 = 30;

/// Loads each member's synthetic month into its own node, as its tools would.
async fn load_reports(written: &WrittenFederation, people: &DemoPeople) -> Result<()> {
    let end = lagesbild_vocabulary::SystemClock.now();
    println!(
        "{DATA_STEWARD}, each org's data steward, loads {DAYS} days of synthetic reports (seed {SEED}) into its node over mutual TLS:"
    );
    for org in MEMBERS {
        let client = people.sign_in(written, org, DATA_STEWARD).await?;
        let reports = synthetic::generate(org, SEED, synthetic::demo_count(org), DAYS, end);
        let mut service = ReportServiceClient::new(client.own_node_as("ingest")?);
        let started = Instant::now();
        let summary = upload(&mut service, &reports, false, None)
            .await
            .with_context(|| format!("loading {org}'s reports"))?;
        println!(
            "  {org:<18} {:>6} reports stored in {:>5.0} ms",
            summary.stored,
            started.elapsed().as_secs_f64() * 1000.0
        );
    }
    println!();
    Ok(())
}

/// Live reports the demo makes once the federation is up: (org, place,
/// category, severity, text, persons named).
type LiveReport = (
    &'static str,
    &'static str,
    Category,
    u32,
    &'static str,
    &'static [&'static str],
);
const LIVE_REPORTS: &[LiveReport] = &[
    (
        "polisen",
        "Sergels torg",
        Category::Violence,
        4,
        "Misshandel, gärningsman Erik Svensson 850312-1235 ringde från 070-123 45 67",
        &["Erik Svensson"],
    ),
    (
        "stockholm-stad",
        "Brunkebergstorg",
        Category::LightingFault,
        2,
        "Tre lampor släckta vid trappan",
        &[],
    ),
    (
        "scandic",
        "Stockholms centralstation",
        Category::Theft,
        3,
        "Väska stulen i lobbyn, gäst på rum 412",
        &[],
    ),
];

/// The events as the first member's watch shows them: what the month's last
/// hours already brought, then a few new reports at three members arriving.
async fn show_events(written: &WrittenFederation, people: &DemoPeople) -> Result<()> {
    let org = MEMBERS[0];
    let client = people.sign_in(written, org, DUTY_OFFICER).await?;
    let watch = client.own_node_as("situation-picture")?;
    let mut stream = EventServiceClient::new(watch)
        .watch(WatchRequest { after: 0 })
        .await
        .context("watching events")?
        .into_inner();
    // The synthetic month's last hours made events; let them arrive.
    let (mut earlier, mut alerts) = (0, 0);
    let mut quiet = Duration::from_secs(3);
    while let Ok(next) = tokio::time::timeout(quiet, stream.message()).await {
        let Some(item) = next.context("watching events")? else {
            break;
        };
        earlier += 1;
        alerts += item.alerts.len();
        quiet = Duration::from_millis(700);
    }
    println!(
        "live events at {org}: {earlier} from the month's last hours, raising {alerts} alerts of the coordinated plan"
    );
    println!("three new reports, at three members; as {org}'s watch shows them:");
    let sent = Instant::now();
    for (member, place, category, severity, text, persons) in LIVE_REPORTS {
        let at = places::place(place).with_context(|| format!("place {place}"))?;
        let writer = people.sign_in(written, member, DATA_STEWARD).await?;
        let now = lagesbild_vocabulary::SystemClock
            .now()
            .duration_since(std::time::UNIX_EPOCH)?;
        ReportServiceClient::new(writer.own_node_as("ingest")?)
            .submit_batch(SubmitBatchRequest {
                reports: vec![Report {
                    id: format!("live-{member}-{}", now.as_millis()),
                    observed_at: Some(prost_types::Timestamp {
                        seconds: now.as_secs() as i64,
                        nanos: 0,
                    }),
                    position: Some(Position {
                        lat: at.lat,
                        lon: at.lon,
                    }),
                    place_name: (*place).into(),
                    category: *category as i32,
                    severity: *severity,
                    text: (*text).into(),
                    persons: persons
                        .iter()
                        .map(|name| Person {
                            name: (*name).into(),
                            personal_identity_number: String::new(),
                        })
                        .collect(),
                    vehicle_plates: vec![],
                    source: Source::Staff as i32,
                    tlp: Tlp::Green as i32,
                }],
                validate_only: false,
            })
            .await
            .with_context(|| format!("a live report at {member}"))?;
    }
    for _ in LIVE_REPORTS {
        match tokio::time::timeout(Duration::from_secs(10), stream.message()).await {
            Ok(Ok(Some(item))) => print!("{}", watch::render(&item)),
            Ok(Err(status)) => bail!("watching events: {}", status.message()),
            _ => bail!("a live event did not arrive at {org} within 10 s"),
        }
    }
    println!(
        "all three arrived {:.0} ms after the first was sent; follow them with `lagesbild watch --config {}`\n",
        sent.elapsed().as_secs_f64() * 1000.0,
        written.org(org).context("unknown org")?.client_config.display()
    );
    Ok(())
}

/// Prints the full table from the first member's view and a line per other member.
async fn show_status(written: &WrittenFederation, people: &DemoPeople) -> Result<()> {
    for (i, org) in MEMBERS.iter().enumerate() {
        let client = people.sign_in(written, org, ANALYST).await?;
        let status = federation_status(&client, 2000).await?;
        let nodes: Vec<_> = status
            .peers
            .iter()
            .filter(|p| !p.endpoint.is_empty())
            .collect();
        let reachable = nodes.iter().filter(|p| p.reachable).count();
        if i == 0 {
            println!("{}", render(&status));
            println!("every node's view of its peers:");
        }
        let unreachable: Vec<_> = nodes
            .iter()
            .filter(|p| !p.reachable)
            .map(|p| p.org.as_str())
            .collect();
        println!(
            "  {org:<18} reaches {reachable} of {} peer nodes{}",
            nodes.len(),
            if unreachable.is_empty() {
                String::new()
            } else {
                format!(" (not: {})", unreachable.join(", "))
            }
        );
    }
    println!();
    Ok(())
}
