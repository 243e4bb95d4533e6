//! `lagesbild ingest`: load reports from a file into the org's own node.
//!
//! The file is read whole first; lines that can't be read are listed with their
//! numbers and, unless `--skip-invalid`, nothing is loaded. The node then checks
//! every report without storing (so a file the node would refuse in part is not
//! half-loaded), and only then are the reports streamed in, each batch durable
//! before the next is acknowledged.

use crate::client::Client;
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use lagesbild_proto::v1::report_service_client::ReportServiceClient;
use lagesbild_proto::v1::{SubmitBatchRequest, SubmitSummary};
use lagesbild_reports::import::{read, Format};
use lagesbild_reports::Report;
use std::collections::BTreeMap;
use std::path::PathBuf;
use tonic_types::StatusExt;

/// Reports per streamed batch.
pub(crate) const BATCH: usize = 2_000;
/// How many problems are printed one per line.
const PRINTED: usize = 30;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum FileFormat {
    /// CSV with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
    /// The police's public events JSON.
    Polisen,
}

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The org's client configuration (client.toml).
    #[arg(long)]
    config: PathBuf,
    /// The file to load.
    #[arg(long)]
    file: PathBuf,
    /// Its format.
    #[arg(long, value_enum)]
    format: FileFormat,
    /// Load the good reports even if some lines or reports are bad.
    #[arg(long)]
    skip_invalid: bool,
    /// Write every rejected line here as JSON lines: line, id where known, reason.
    #[arg(long, value_name = "FILE")]
    rejected: Option<PathBuf>,
}

/// One line of the file that was not loaded, and why.
#[derive(Debug, serde::Serialize)]
struct Rejection {
    line: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    reason: String,
}

pub(crate) async fn run(args: Args) -> Result<()> {
    let client = Client::load(&args.config)?;
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let format = match args.format {
        FileFormat::Csv => Format::Csv,
        FileFormat::Jsonl => Format::JsonLines,
        FileFormat::Polisen => Format::Polisen,
    };
    let imported = read(format, &text);
    let file = args.file.display();
    for skipped in &imported.skipped {
        println!("{file}:{}: skipped: {}", skipped.line, skipped.reason);
    }
    let mut rejections: Vec<Rejection> = imported
        .errors
        .iter()
        .map(|e| Rejection {
            line: e.line,
            id: e.id.clone(),
            reason: e.reason.clone(),
        })
        .collect();
    print_problems(&file, &rejections, args.rejected.is_some());
    if !rejections.is_empty() && !args.skip_invalid {
        write_rejections(args.rejected.as_deref(), &rejections)?;
        bail!(
            "{} line(s) of {file} could not be read; nothing was loaded (fix them, or pass --skip-invalid to load the rest)",
            rejections.len()
        );
    }
    // A report whose id came earlier in the file is a duplicate, sent once.
    let mut seen = std::collections::HashSet::new();
    let mut repeated = 0u64;
    let (lines, mut reports): (Vec<usize>, Vec<Report>) = imported
        .reports
        .into_iter()
        .filter(|(_, report)| {
            let first = seen.insert(report.id.clone());
            repeated += u64::from(!first);
            first
        })
        .unzip();

    let mut service = ReportServiceClient::new(client.own_node_as("ingest")?)
        .max_encoding_message_size(64 * 1024 * 1024);
    let refused: BTreeMap<usize, Vec<String>> =
        match upload(&mut service, &reports, true, None).await {
            Ok(_) => BTreeMap::new(),
            Err(status) if status.code() == tonic::Code::InvalidArgument => {
                let bad = violations(&status);
                if bad.is_empty() {
                    bail!("the node refused the file: {}", status.message());
                }
                let mut by_report: BTreeMap<usize, Vec<String>> = BTreeMap::new();
                for (index, field, reason) in bad {
                    by_report
                        .entry(index)
                        .or_default()
                        .push(format!("{field}: {reason}"));
                }
                by_report
            }
            Err(status) => {
                return Err(anyhow::Error::new(status).context("checking the reports with the node"))
            }
        };
    let newly_rejected: Vec<Rejection> = refused
        .iter()
        .map(|(&index, problems)| Rejection {
            line: lines[index],
            id: Some(reports[index].id.clone()),
            reason: problems.join("; "),
        })
        .collect();
    print_problems(&file, &newly_rejected, args.rejected.is_some());
    rejections.extend(newly_rejected);
    rejections.sort_by_key(|r| r.line);
    if !refused.is_empty() && !args.skip_invalid {
        write_rejections(args.rejected.as_deref(), &rejections)?;
        bail!(
            "the node would refuse {} report(s) of {file}; nothing was loaded (fix them, or pass --skip-invalid to load the rest)",
            refused.len()
        );
    }
    let sent_lines: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| !refused.contains_key(i))
        .map(|(_, &line)| line)
        .collect();
    if !refused.is_empty() {
        reports = reports
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !refused.contains_key(i))
            .map(|(_, r)| r)
            .collect();
    }

    let bar = ProgressBar::new(reports.len() as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} reports {per_sec} {eta}")
            .expect("valid template"),
    );
    let summary = upload(&mut service, &reports, false, Some(&bar))
        .await
        .context("storing the reports")?;
    bar.finish_and_clear();
    write_rejections(args.rejected.as_deref(), &rejections)?;
    let mut as_other: BTreeMap<&str, usize> = BTreeMap::new();
    for line in &sent_lines {
        if let Some(kind) = imported.unmapped_types.get(line) {
            *as_other.entry(kind).or_default() += 1;
        }
    }
    for (kind, count) in as_other {
        println!("type {kind:?} has no category of its own: {count} sent as `other`");
    }
    let read_lines = summary.stored
        + summary.duplicates
        + repeated
        + rejections.len() as u64
        + imported.skipped.len() as u64;
    println!(
        "{file}: {} stored, {} duplicates ({} already stored, {repeated} repeated in the file), {} rejected, {} skipped, of {read_lines} read",
        summary.stored,
        summary.duplicates + repeated,
        summary.duplicates,
        rejections.len(),
        imported.skipped.len()
    );
    Ok(())
}

/// Writes `rejections` to `path` as JSON lines, if a path was given.
fn write_rejections(path: Option<&std::path::Path>, rejections: &[Rejection]) -> Result<()> {
    let Some(path) = path else {
        return Ok(());
    };
    let mut out = String::new();
    for rejection in rejections {
        out.push_str(&serde_json::to_string(rejection)?);
        out.push('\n');
    }
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

/// Streams `reports` to the node in batches; with `validate_only` nothing is stored.
pub(crate) async fn upload(
    service: &mut ReportServiceClient<lagesbild_auth::AuthChannel>,
    reports: &[Report],
    validate_only: bool,
    progress: Option<&ProgressBar>,
) -> Result<SubmitSummary, tonic::Status> {
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let batches: Vec<Vec<Report>> = reports.chunks(BATCH).map(<[Report]>::to_vec).collect();
    let progress = progress.cloned();
    let producer = tokio::spawn(async move {
        for reports in batches {
            let n = reports.len() as u64;
            if sender
                .send(SubmitBatchRequest {
                    reports,
                    validate_only,
                })
                .await
                .is_err()
            {
                return;
            }
            if let Some(bar) = &progress {
                bar.inc(n);
            }
        }
    });
    let response = service
        .submit_stream(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await;
    producer.abort();
    Ok(response?.into_inner())
}

/// (index, field, reason) of each `reports[i].field` violation in a status.
fn violations(status: &tonic::Status) -> Vec<(usize, String, String)> {
    let Some(bad) = status.get_details_bad_request() else {
        return Vec::new();
    };
    bad.field_violations
        .iter()
        .filter_map(|v| {
            let rest = v.field.strip_prefix("reports[")?;
            let (index, field) = rest.split_once("].")?;
            Some((index.parse().ok()?, field.to_owned(), v.description.clone()))
        })
        .collect()
}

/// Prints the first rejections, one a line, and says how to see the rest.
fn print_problems(file: &impl std::fmt::Display, rejections: &[Rejection], listed: bool) {
    for r in rejections.iter().take(PRINTED) {
        eprintln!("{file}:{}: {}", r.line, r.reason);
    }
    if rejections.len() > PRINTED {
        let hint = if listed {
            "all are in the --rejected file"
        } else {
            "pass --rejected FILE to list them all"
        };
        eprintln!("... and {} more ({hint})", rejections.len() - PRINTED);
    }
}
