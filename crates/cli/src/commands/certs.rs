//! `lagesbild certs init`: a CA per org, node and client certificates, token keys,
//! log keys, configs, and the federation file. `lagesbild certs migrate`:
//! configurations of an older form moved to this one. `lagesbild certs
//! workload`: a machine client's own certificate.

use crate::provision::{FederationPlan, OrgPlan};
use anyhow::{bail, Context, Result};
use lagesbild_identity::Role;
use lagesbild_reports::validate::Coverage;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Make a new federation's development credentials and configuration files.
    Init(InitArgs),
    /// Move a configuration of an older form to this one. A node.toml without
    /// a log key gets one (written beside it as `log.key`; prints the line the
    /// federation file needs for this member); a member's client.toml that
    /// names the org's token key loses that line (its people sign in instead).
    #[command(alias = "log-key")]
    Migrate(LogKeyArgs),
    /// Give one of the org's machine clients (a nightly ingest job, say) a
    /// certificate of its own from the org's CA, and list the scopes it may
    /// use in the node's configuration.
    Workload(WorkloadArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct WorkloadArgs {
    /// The node's configuration (node.toml); the org's CA is beside it.
    #[arg(long)]
    config: PathBuf,
    /// The workload's name (its SPIFFE path segment).
    #[arg(long)]
    name: String,
    /// A scope it may use. Repeat per scope.
    #[arg(long = "scope", required = true)]
    scopes: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct LogKeyArgs {
    /// The node's (node.toml) or the org's tools' (client.toml) configuration.
    #[arg(long)]
    config: PathBuf,
}

#[derive(Debug, clap::Args)]
pub(crate) struct InitArgs {
    /// Directory to write into (one folder per org, plus federation.toml).
    #[arg(long)]
    dir: PathBuf,
    /// The federation's name (its SPIFFE trust domain).
    #[arg(long)]
    federation: String,
    /// A member org that runs a node: `ID` or `ID=Display name`. Repeat per org.
    #[arg(long = "org", required = true)]
    orgs: Vec<String>,
    /// An auditor org (runs no node): `ID` or `ID=Display name`.
    #[arg(long = "auditor")]
    auditors: Vec<String>,
    /// A member's node endpoint `ORG=HOST:PORT` (default 127.0.0.1, ports from --base-port).
    #[arg(long = "endpoint")]
    endpoints: Vec<String>,
    /// First port of the default endpoints.
    #[arg(long, default_value_t = 7101)]
    base_port: u16,
    /// The area the nodes accept reports from: SOUTH,WEST,NORTH,EAST in degrees
    /// (default: Stockholm's inner city).
    #[arg(long, value_parser = parse_coverage)]
    coverage: Option<Coverage>,
    /// Days the nodes keep reports.
    #[arg(long, default_value_t = 365)]
    retention_days: u32,
    /// Overwrite an existing federation in --dir.
    #[arg(long)]
    force: bool,
}

pub(crate) fn run(command: Command) -> Result<()> {
    match command {
        Command::Init(args) => init(args),
        Command::Migrate(args) => migrate(&args.config),
        Command::Workload(args) => workload(&args),
    }
}

/// A node.toml as these commands read it: loosely (it may be of a form the
/// node no longer loads), for the few keys they need.
struct NodeFile<'a> {
    path: &'a Path,
    text: String,
    table: toml::Table,
}

impl<'a> NodeFile<'a> {
    fn read(path: &'a Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let table = text
            .parse()
            .with_context(|| format!("{} is not TOML", path.display()))?;
        Ok(Self { path, text, table })
    }

    /// The folder it is in, against which its paths are read.
    fn base(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    fn text_of(&self, key: &str) -> Result<&str> {
        self.table
            .get(key)
            .and_then(|v| v.as_str())
            .with_context(|| format!("{}: no {key}", self.path.display()))
    }

    /// The federation file it names.
    fn federation_path(&self) -> Result<PathBuf> {
        Ok(self.base().join(self.text_of("federation")?))
    }

    /// Replaces the file with `text`, whole or not at all.
    fn replace(&self, text: &str) -> Result<()> {
        let temporary = self.path.with_extension("toml.new");
        std::fs::write(&temporary, text)
            .with_context(|| format!("writing {}", temporary.display()))?;
        std::fs::rename(&temporary, self.path)
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

fn workload(args: &WorkloadArgs) -> Result<()> {
    let node = NodeFile::read(&args.config)?;
    // The same checks the node makes at load, before anything is written.
    lagesbild_node::auth::Workloads::parse([(&args.name, &args.scopes)])?;
    if node
        .table
        .get("workloads")
        .and_then(|w| w.get(&args.name))
        .is_some()
    {
        bail!(
            "{} already lists workload {:?}",
            args.config.display(),
            args.name
        );
    }
    let org = node.text_of("org")?;
    let base = node.base();
    let federation = lagesbild_identity::Federation::load(&node.federation_path()?)?;
    let read = |file: &str| {
        std::fs::read_to_string(base.join(file))
            .with_context(|| format!("reading the org's CA {}", base.join(file).display()))
    };
    let ca = lagesbild_identity::certs::CertificateAuthority::from_pem(
        &read("ca.pem")?,
        &read("ca.key")?,
    )?;
    let leaf = ca.issue(&lagesbild_identity::certs::LeafSpec::workload(
        &federation.name,
        org,
        &args.name,
    ))?;
    crate::provision::write_pair(base, &args.name, &leaf.cert_pem, &leaf.key_pem)?;
    let scopes: Vec<String> = args.scopes.iter().map(|s| format!("{s:?}")).collect();
    node.replace(&format!(
        "{}\n[workloads.{}]\nscopes = [{}]\n",
        node.text,
        args.name,
        scopes.join(", ")
    ))?;
    println!(
        "wrote {0}.pem and {0}.key in {1} (spiffe://{2}/org/{3}/{0}) and listed its scopes in {4}; restart the node for it to apply",
        args.name,
        base.display(),
        federation.name,
        org,
        args.config.display()
    );
    Ok(())
}

fn migrate(config: &Path) -> Result<()> {
    let file = NodeFile::read(config)?;
    if file.table.contains_key("listen") {
        if file.table.contains_key("log_key") {
            println!(
                "{} is of the current form; nothing to move",
                config.display()
            );
            return Ok(());
        }
        return log_key(file);
    }
    if !file.table.contains_key("token_key") || !file.table.contains_key("node") {
        // An auditor's client.toml keeps its key: it runs no node to hold it.
        println!(
            "{} is of the current form; nothing to move",
            config.display()
        );
        return Ok(());
    }
    let kept: Vec<&str> = file
        .text
        .lines()
        .filter(|l| !l.trim_start().starts_with("token_key"))
        .collect();
    file.replace(&(kept.join("\n") + "\n"))?;
    println!(
        "removed token_key from {}: only the node holds the org's keys now; each person signs in with `lagesbild login --config {}`",
        config.display(),
        config.display()
    );
    Ok(())
}

fn log_key(node: NodeFile<'_>) -> Result<()> {
    let config = node.path;
    let org = node.text_of("org")?;
    let federation_path = node.federation_path()?;
    // A federation file of the old form fails the strict load (no log_vkey yet).
    let federation: toml::Table = std::fs::read_to_string(&federation_path)
        .with_context(|| format!("reading {}", federation_path.display()))?
        .parse()
        .with_context(|| format!("{} is not TOML", federation_path.display()))?;
    let name = federation
        .get("name")
        .and_then(|v| v.as_str())
        .with_context(|| format!("{}: no name", federation_path.display()))?;
    let key_path = node.base().join("log.key");
    if key_path.exists() {
        bail!("{} exists already; move it away first", key_path.display());
    }
    let vkey = crate::provision::write_log_key(&key_path, name, org)?;
    // A top-level key goes before the first table.
    let mut lines: Vec<&str> = node.text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim_start().starts_with('['))
        .unwrap_or(lines.len());
    lines.insert(at, "log_key = \"log.key\"");
    node.replace(&(lines.join("\n") + "\n"))?;
    println!(
        "wrote {} and named it in {}",
        key_path.display(),
        config.display()
    );
    println!(
        "add this line to member {org} in {} (every member's copy):",
        federation_path.display()
    );
    println!("log_vkey = \"{vkey}\"");
    Ok(())
}

fn init(args: InitArgs) -> Result<()> {
    let mut orgs = Vec::new();
    for (i, spec) in args.orgs.iter().enumerate() {
        let port = args
            .base_port
            .checked_add(u16::try_from(i).context("too many orgs")?)
            .context("--base-port too high for this many orgs")?;
        let mut org = OrgPlan::parse(spec, Role::Member)?;
        org.endpoint = Some(format!("127.0.0.1:{port}"));
        orgs.push(org);
    }
    for spec in &args.auditors {
        orgs.push(OrgPlan::parse(spec, Role::Auditor)?);
    }
    for spec in &args.endpoints {
        let (id, endpoint) = spec
            .split_once('=')
            .with_context(|| format!("--endpoint {spec:?}: expected ORG=HOST:PORT"))?;
        let Some(org) = orgs.iter_mut().find(|o| o.id == id) else {
            bail!("--endpoint {spec:?}: {id} is not one of the --org members");
        };
        if org.role != Role::Member {
            bail!("--endpoint {spec:?}: {id} is an auditor and runs no node");
        }
        org.endpoint = Some(endpoint.to_owned());
    }
    let plan = FederationPlan {
        name: args.federation,
        orgs,
        coverage: args.coverage.unwrap_or(Coverage::STOCKHOLM_INNER_CITY),
        retention_days: args.retention_days,
    };
    let written = plan.write(&args.dir, args.force)?;
    println!("federation {} written to {}", plan.name, args.dir.display());
    for org in &written.orgs {
        println!("  {:<18} {}", org.id, org.dir.display());
    }
    println!("  federation file    {}", written.federation_file.display());
    Ok(())
}

fn parse_coverage(s: &str) -> Result<Coverage, String> {
    let v: Vec<f64> = s
        .split(',')
        .map(|p| {
            p.trim()
                .parse::<f64>()
                .map_err(|_| format!("{p:?} is not a number"))
        })
        .collect::<Result<_, _>>()?;
    let [south, west, north, east] = v[..] else {
        return Err("expected SOUTH,WEST,NORTH,EAST".into());
    };
    let coverage = Coverage {
        south,
        west,
        north,
        east,
    };
    if !coverage.is_valid() {
        return Err("need south < north and west < east, in degrees".into());
    }
    Ok(coverage)
}
