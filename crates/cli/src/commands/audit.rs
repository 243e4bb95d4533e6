//! `lagesbild audit`: read, prove and verify a node's access log.
//!
//! Every command checks what it prints: checkpoints against the log owner's key
//! from the federation file, proofs against signed roots. `verify` recomputes
//! the whole log and checks every checkpoint it can find — the log's own, those
//! its peers hold as witnesses — and, with `--reconcile-with`, the receipts two
//! nodes exchanged.

use crate::client::Client;
use anyhow::{bail, Context, Result};
use lagesbild_audit::checkpoint::{log_verifier, origin_of, NoteVerifier};
use lagesbild_audit::entry::hex;
use lagesbild_audit::export::{ExportReader, ExportWriter, Record};
use lagesbild_audit::merkle::{leaf_hash, verify_consistency, verify_inclusion, Hash};
use lagesbild_audit::verify::{reconcile, LogVerifier, Verification};
use lagesbild_audit::Entry;
use lagesbild_auth::{AuthChannel, Bearer};
use lagesbild_proto::v1::audit_service_client::AuditServiceClient;
use lagesbild_proto::v1::{
    CheckpointRequest, CheckpointsRequest, ClearAlarmRequest, EntriesRequest,
    InclusionProofRequest, WitnessesRequest,
};
use lagesbild_vocabulary::Scope;
use std::collections::BTreeMap;
use std::io::{BufReader, BufWriter};
use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// The latest signed checkpoint of a node's log, its signature checked.
    Checkpoint(Target),
    /// Entries of a node's log (auditors: all; members: those about their calls).
    Entries {
        #[command(flatten)]
        target: Target,
        /// First index.
        #[arg(long, default_value_t = 0)]
        start: u64,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Prove one entry is in the log, or that a held checkpoint is a prefix of
    /// the latest.
    Prove {
        #[command(flatten)]
        target: Target,
        /// The entry to prove included in the latest checkpoint.
        #[arg(long, conflicts_with = "checkpoint")]
        index: Option<u64>,
        /// A file holding a checkpoint of this log to prove consistent with the latest.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
    },
    /// Recompute a whole log and check every checkpoint, witness and receipt.
    Verify {
        #[command(flatten)]
        target: Target,
        /// Read the log from an export file instead of a node.
        #[arg(long)]
        export: Option<PathBuf>,
        /// Also verify this org's log and reconcile the receipts between the two.
        #[arg(long)]
        reconcile_with: Option<String>,
        /// The report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a node's whole log to a file, for offline verification.
    Export {
        #[command(flatten)]
        target: Target,
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Clear a witness alarm on the org's own node after looking into it.
    Clear {
        /// The org's client configuration (client.toml).
        #[arg(long)]
        config: PathBuf,
        /// The peer whose alarm to clear.
        #[arg(long)]
        peer: String,
    },
}

#[derive(Debug, clap::Args)]
pub(crate) struct Target {
    /// The client configuration (client.toml) of the org asking.
    #[arg(long)]
    config: PathBuf,
    /// Whose node's log (default: the org's own).
    #[arg(long)]
    node: Option<String>,
}

impl Target {
    fn open(&self) -> Result<(Client, String)> {
        let client = Client::load(&self.config)?;
        let node = match &self.node {
            Some(org) => org.clone(),
            None => client.config.org.clone(),
        };
        Ok((client, node))
    }
}

pub(crate) async fn run(command: Command) -> Result<()> {
    match command {
        Command::Checkpoint(target) => checkpoint(&target).await,
        Command::Entries {
            target,
            start,
            limit,
            json,
        } => entries(&target, start, limit, json).await,
        Command::Prove {
            target,
            index,
            checkpoint,
        } => prove(&target, index, checkpoint).await,
        Command::Verify {
            target,
            export,
            reconcile_with,
            json,
        } => verify(&target, export, reconcile_with, json).await,
        Command::Export { target, out } => export(&target, &out).await,
        Command::Clear { config, peer } => clear(&config, &peer).await,
    }
}

/// The checkpoint verifier of `org`'s log, from the federation file.
fn verifier_of(client: &Client, org: &str) -> Result<NoteVerifier> {
    let member = client
        .federation
        .member(org)
        .with_context(|| format!("{org} is not a member of the federation"))?;
    let vkey = member
        .log_vkey
        .as_deref()
        .with_context(|| format!("{org} publishes no log key (log_vkey) in the federation file"))?;
    Ok(log_verifier(&client.federation.name, org, vkey)?)
}

/// The access log of `org`'s node: a member's people read their own node's,
/// with their session; an auditor org's tools sign a token for any member's.
fn audit_client(client: &Client, org: &str) -> Result<AuditServiceClient<AuthChannel>> {
    if client.config.token_key.is_none() {
        if org != client.config.org {
            bail!(
                "{}'s people read their own node's access log; another member's log is read by an auditor org or through the witnesses",
                client.config.org
            );
        }
        return Ok(AuditServiceClient::new(client.own_node_as("audit")?));
    }
    // An auditor org runs no node to sign people in: the name is the
    // operating system's account, as its token says.
    let subject = std::env::var("USER").unwrap_or_else(|_| "auditor".into());
    let token = client.token(org, &subject, &[Scope::AuditRead], "audit")?;
    Ok(AuditServiceClient::new(AuthChannel::new(
        client.channel_to(org)?,
        Bearer::new(&token)?,
    )))
}

fn to_hashes(bytes: &[Vec<u8>]) -> Result<Vec<Hash>> {
    bytes
        .iter()
        .map(|b| {
            b.as_slice()
                .try_into()
                .map_err(|_| anyhow::anyhow!("a proof hash is {} bytes, not 32", b.len()))
        })
        .collect()
}

async fn checkpoint(target: &Target) -> Result<()> {
    let (client, node) = target.open()?;
    let verifier = verifier_of(&client, &node)?;
    let answer = audit_client(&client, &node)?
        .checkpoint(CheckpointRequest { witness_size: 0 })
        .await
        .with_context(|| format!("asking {node}'s node for its checkpoint"))?
        .into_inner();
    let checked = verifier
        .verify(&answer.checkpoint)
        .with_context(|| format!("{node}'s checkpoint"))?;
    print!("{}", answer.checkpoint);
    eprintln!(
        "signature by {} verified: {} entries, root {}",
        verifier.origin(),
        checked.size,
        hex(&checked.root)
    );
    Ok(())
}

async fn entries(target: &Target, start: u64, limit: u32, json: bool) -> Result<()> {
    let (client, node) = target.open()?;
    let answer = audit_client(&client, &node)?
        .entries(EntriesRequest { start, limit })
        .await
        .with_context(|| format!("reading {node}'s access log"))?
        .into_inner();
    if !json {
        println!(
            "{:>7}  {:<26}  {:<3}  {:<16}  {:<14}  {:<40}  {:<8}  REASON",
            "INDEX", "TIME (UTC)", "DIR", "PEER", "SUB/ACT", "CALL", "DECISION"
        );
    }
    for item in &answer.entries {
        let entry = Entry::decode(&item.entry)
            .with_context(|| format!("entry {} does not decode", item.index))?;
        if leaf_hash(&item.entry).as_slice() != item.leaf_hash.as_slice() {
            eprintln!("warning: entry {} does not match its leaf hash", item.index);
        }
        if json {
            let mut value = serde_json::to_value(&entry)?;
            value["index"] = item.index.into();
            println!("{value}");
            continue;
        }
        let who = if entry.token.act.is_empty() {
            entry.token.sub.clone()
        } else {
            format!("{}/{}", entry.token.sub, entry.token.act)
        };
        println!(
            "{:>7}  {:<26}  {:<3}  {:<16}  {:<14}  {:<40}  {:<8}  {}",
            item.index,
            time_of(entry.time_micros),
            match entry.direction {
                lagesbild_audit::Direction::Inbound => "in",
                lagesbild_audit::Direction::Outbound => "out",
            },
            entry.peer_org,
            who,
            entry.call,
            format!("{:?}", entry.decision).to_lowercase(),
            entry.reason
        );
    }
    if !json {
        eprintln!(
            "{} entries shown; the log has {}; next page starts at {}",
            answer.entries.len(),
            answer.size,
            answer.next
        );
    }
    Ok(())
}

fn time_of(micros: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| micros.to_string())
}

async fn prove(target: &Target, index: Option<u64>, held: Option<PathBuf>) -> Result<()> {
    let (client, node) = target.open()?;
    let verifier = verifier_of(&client, &node)?;
    let mut audit = audit_client(&client, &node)?;
    match (index, held) {
        (Some(index), None) => {
            let answer = audit
                .inclusion_proof(InclusionProofRequest {
                    index,
                    tree_size: 0,
                })
                .await
                .with_context(|| format!("asking {node}'s node for a proof of entry {index}"))?
                .into_inner();
            let checkpoint = verifier.verify(&answer.checkpoint)?;
            let leaf: Hash = answer
                .leaf_hash
                .as_slice()
                .try_into()
                .context("leaf hash is not 32 bytes")?;
            verify_inclusion(
                &leaf,
                index,
                checkpoint.size,
                &to_hashes(&answer.path)?,
                &checkpoint.root,
            )
            .with_context(|| format!("entry {index} is NOT proven in {node}'s log"))?;
            let page = audit
                .entries(EntriesRequest {
                    start: index,
                    limit: 1,
                })
                .await?
                .into_inner();
            match page.entries.first() {
                Some(e) if e.index == index && leaf_hash(&e.entry) == leaf => {
                    println!(
                        "entry {index}: its bytes hash to the proven leaf {}",
                        hex(&leaf)
                    )
                }
                Some(e) if e.index == index => {
                    bail!("entry {index}: its bytes do not hash to the proven leaf")
                }
                _ => println!(
                    "entry {index}: its bytes are not readable to this org; the leaf is proven"
                ),
            }
            println!(
                "entry {index} is included in {node}'s log of {} entries (root {}), checkpoint signature verified",
                checkpoint.size,
                hex(&checkpoint.root)
            );
        }
        (None, Some(path)) => {
            let note = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let old = verifier
                .verify(&note)
                .with_context(|| format!("{}", path.display()))?;
            let answer = audit
                .checkpoint(CheckpointRequest {
                    witness_size: old.size,
                })
                .await?
                .into_inner();
            let new = verifier.verify(&answer.checkpoint)?;
            if new.size < old.size {
                bail!(
                    "{node}'s log shrank: the held checkpoint has {} entries, the log now {}",
                    old.size,
                    new.size
                );
            }
            verify_consistency(
                old.size,
                new.size,
                &old.root,
                &new.root,
                &to_hashes(&answer.consistency)?,
            )
            .with_context(|| {
                format!(
                    "{node}'s log at {} entries is NOT an extension of the held checkpoint of {}",
                    new.size, old.size
                )
            })?;
            println!(
                "the held checkpoint of {} entries is a prefix of {node}'s log of {} entries: consistent",
                old.size, new.size
            );
        }
        _ => bail!("give --index N or --checkpoint FILE"),
    }
    Ok(())
}

/// A whole log as fetched: its checkpoints and entries.
#[derive(Default)]
struct FetchedLog {
    checkpoints: Vec<String>,
    entries: Vec<(u64, Hash, Vec<u8>)>,
}

async fn fetch(client: &Client, node: &str) -> Result<FetchedLog> {
    let mut log = FetchedLog::default();
    fetch_more(client, node, &mut log).await?;
    Ok(log)
}

/// Reads the entries appended since `log` was read, then `node`'s checkpoints
/// afresh. Entries first: the latest checkpoint, signed when it was read,
/// covers every entry read before it, so the log as fetched ends at a signed
/// size. Entries past that size that were read to reach it are left for the
/// next checkpoint; those read before it are kept, covered or not, for the
/// verifier to judge.
async fn fetch_more(client: &Client, node: &str, log: &mut FetchedLog) -> Result<()> {
    let mut audit = audit_client(client, node)?;
    read_entries(&mut audit, node, log, None).await?;
    let read_before = log.entries.len() as u64;
    log.checkpoints = audit
        .checkpoints(CheckpointsRequest {})
        .await
        .with_context(|| format!("reading {node}'s checkpoints"))?
        .into_inner()
        .checkpoints;
    let verifier = verifier_of(client, node)?;
    let signed = log
        .checkpoints
        .iter()
        .filter_map(|note| verifier.verify(note).ok())
        .map(|checkpoint| checkpoint.size)
        .max()
        .unwrap_or(0);
    if signed > read_before {
        read_entries(&mut audit, node, log, Some(signed)).await?;
        log.entries.truncate(signed.max(read_before) as usize);
    }
    Ok(())
}

/// Reads entries after those in `log`, to the end of the log or until `until`.
async fn read_entries(
    audit: &mut AuditServiceClient<lagesbild_auth::AuthChannel>,
    node: &str,
    log: &mut FetchedLog,
    until: Option<u64>,
) -> Result<()> {
    let mut start = log.entries.last().map_or(0, |(index, _, _)| index + 1);
    loop {
        if until.is_some_and(|until| start >= until) {
            break;
        }
        let page = audit
            .entries(EntriesRequest { start, limit: 0 })
            .await
            .with_context(|| format!("reading {node}'s access log from entry {start}"))?
            .into_inner();
        for e in page.entries {
            let leaf: Hash = e
                .leaf_hash
                .as_slice()
                .try_into()
                .with_context(|| format!("entry {}: leaf hash is not 32 bytes", e.index))?;
            log.entries.push((e.index, leaf, e.entry));
        }
        if page.next <= start || page.next >= page.size {
            break;
        }
        start = page.next;
    }
    Ok(())
}

/// The checkpoints of `node`'s log that the other members' nodes hold as witnesses.
async fn witnessed_checkpoints(client: &Client, node: &str) -> Vec<(String, String)> {
    let mut held = Vec::new();
    for member in client.federation.nodes().filter(|m| m.id != node) {
        let Ok(mut audit) = audit_client(client, &member.id) else {
            continue;
        };
        match audit.witnesses(WitnessesRequest {}).await {
            Ok(answer) => {
                for peer in answer.into_inner().peers {
                    if peer.org == node && !peer.checkpoint.is_empty() {
                        held.push((format!("witness {}", member.id), peer.checkpoint));
                    }
                }
            }
            Err(e) => eprintln!(
                "note: {}'s witness record not read: {}",
                member.id,
                e.message()
            ),
        }
    }
    held
}

fn check_log(
    verifier: NoteVerifier,
    log: &FetchedLog,
    witnessed: &[(String, String)],
    receipts: &[(u64, Hash, String, String)],
) -> Verification {
    let mut check = LogVerifier::new(verifier);
    for note in &log.checkpoints {
        check.checkpoint(note, "the log");
    }
    for (source, note) in witnessed {
        check.checkpoint(note, source);
    }
    for (index, leaf, note, source) in receipts {
        check.checkpoint(note, source);
        check.promised_leaf(*index, *leaf, source);
    }
    for (index, leaf, bytes) in &log.entries {
        check.entry(*index, Some(leaf), bytes);
    }
    check.finish()
}

/// The receipts that `caller`'s outbound entries hold from `callee`.
fn receipts_from(
    caller_org: &str,
    caller: &[(u64, Entry)],
    callee: &str,
) -> Vec<(u64, Hash, String, String)> {
    caller
        .iter()
        .filter(|(_, e)| e.peer_org == callee)
        .filter_map(|(i, e)| {
            e.receipt.as_ref().map(|r| {
                (
                    r.index,
                    r.leaf_hash,
                    r.checkpoint.clone(),
                    format!("receipt in {caller_org} entry {i}"),
                )
            })
        })
        .collect()
}

fn decoded(log: &FetchedLog) -> Vec<(u64, Entry)> {
    decoded_prefix(log, log.entries.len())
}

fn decoded_prefix(log: &FetchedLog, len: usize) -> Vec<(u64, Entry)> {
    log.entries[..len]
        .iter()
        .filter_map(|(i, _, b)| Entry::decode(b).ok().map(|e| (*i, e)))
        .collect()
}

fn print_report(report: &Verification, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}

async fn verify(
    target: &Target,
    export: Option<PathBuf>,
    reconcile_with: Option<String>,
    json: bool,
) -> Result<()> {
    let (client, node) = target.open()?;
    if let Some(path) = export {
        return verify_export(&client, &path, json);
    }
    // Witnesses are asked before the log is read, and the log is read again
    // after the other log: a checkpoint or receipt made while the auditor reads
    // must not look like a truncated log.
    let witnessed = witnessed_checkpoints(&client, &node).await;
    let mut log = fetch(&client, &node).await?;
    let Some(other) = reconcile_with else {
        let report = check_log(verifier_of(&client, &node)?, &log, &witnessed, &[]);
        print_report(&report, json)?;
        if !report.ok() {
            bail!("{node}'s access log did NOT verify");
        }
        return Ok(());
    };
    let read_before_other = log.entries.len();
    let other_witnessed = witnessed_checkpoints(&client, &other).await;
    let other_log = fetch(&client, &other).await?;
    fetch_more(&client, &node, &mut log).await?;
    let ours = decoded(&log);
    let theirs = decoded(&other_log);
    let report = check_log(
        verifier_of(&client, &node)?,
        &log,
        &witnessed,
        &receipts_from(&other, &theirs, &node),
    );
    // Only our entries read before the other log can have receipts within it.
    let ours_before_other = decoded_prefix(&log, read_before_other);
    let other_report = check_log(
        verifier_of(&client, &other)?,
        &other_log,
        &other_witnessed,
        &receipts_from(&node, &ours_before_other, &other),
    );
    let ours_by_index: BTreeMap<u64, Entry> = ours.iter().cloned().collect();
    let theirs_by_index: BTreeMap<u64, Entry> = theirs.iter().cloned().collect();
    let (a, mut failures) = reconcile(&node, &ours_before_other, &other, &theirs_by_index);
    let (b, more) = reconcile(&other, &theirs, &node, &ours_by_index);
    failures.extend(more);
    print_report(&report, json)?;
    print_report(&other_report, json)?;
    if json {
        println!(
            "{}",
            serde_json::json!({"reconciled_receipts": a + b, "failures": failures})
        );
    } else {
        println!(
            "receipts: {a} calls of {node} to {other} and {b} of {other} to {node} match the callee's entry (caller, token id, purpose, request and response digests)"
        );
        for f in &failures {
            println!("  FAILED  {}", f.what);
        }
    }
    if !report.ok() || !other_report.ok() || !failures.is_empty() {
        bail!("the access logs of {node} and {other} did NOT verify and reconcile");
    }
    Ok(())
}

fn verify_export(client: &Client, path: &std::path::Path, json: bool) -> Result<()> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = ExportReader::new(BufReader::new(file))
        .with_context(|| format!("reading {}", path.display()))?;
    let origin = reader.origin().to_owned();
    let org = origin
        .strip_prefix(&format!("{}/", client.federation.name))
        .and_then(|rest| rest.strip_suffix("/audit"))
        .with_context(|| format!("{origin:?} is not the log of a member of this federation"))?
        .to_owned();
    let mut check = LogVerifier::new(verifier_of(client, &org)?);
    let mut fed_entries = false;
    while let Some(record) = reader
        .next_record()
        .with_context(|| format!("reading {}", path.display()))?
    {
        match record {
            Record::Checkpoint(note) => {
                if fed_entries {
                    bail!("{}: a checkpoint after entries", path.display());
                }
                check.checkpoint(&note, "the export");
            }
            Record::Entry { index, leaf, bytes } => {
                fed_entries = true;
                check.entry(index, Some(&leaf), &bytes);
            }
        }
    }
    let report = check.finish();
    print_report(&report, json)?;
    if !report.ok() {
        bail!("the exported log of {org} did NOT verify");
    }
    Ok(())
}

async fn export(target: &Target, out: &std::path::Path) -> Result<()> {
    let (client, node) = target.open()?;
    let log = fetch(&client, &node).await?;
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut writer = ExportWriter::new(
        BufWriter::new(file),
        &origin_of(&client.federation.name, &node),
    )?;
    for note in &log.checkpoints {
        writer.checkpoint(note)?;
    }
    for (index, leaf, bytes) in &log.entries {
        writer.entry(*index, leaf, bytes)?;
    }
    writer.finish()?;
    println!(
        "wrote {} entries and {} checkpoints of {node}'s log to {}",
        log.entries.len(),
        log.checkpoints.len(),
        out.display()
    );
    Ok(())
}

async fn clear(config: &std::path::Path, peer: &str) -> Result<()> {
    let client = Client::load(config)?;
    let mut audit = AuditServiceClient::new(client.own_node_as("operations")?);
    audit
        .clear_alarm(ClearAlarmRequest {
            org: peer.to_owned(),
        })
        .await
        .with_context(|| format!("clearing the witness alarm for {peer}"))?;
    println!("witness alarm for {peer} cleared; its next checkpoint is the new starting point");
    Ok(())
}
