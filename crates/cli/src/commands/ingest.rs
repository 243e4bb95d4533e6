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
use std::collections::BTreeSet;
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
    for (kind, count) in &imported.unmapped_types {
        println!("type {kind:?} has no category of its own: {count} stored as `other`");
    }
    print_problems(
        imported
            .errors
            .iter()
            .map(|e| format!("{file}:{}: {}", e.line, e.reason)),
    );
    if !imported.errors.is_empty() && !args.skip_invalid {
        bail!(
            "{} line(s) of {file} could not be read; nothing was loaded (fix them, or pass --skip-invalid to load the rest)",
            imported.errors.len()
        );
    }
    let (lines, mut reports): (Vec<usize>, Vec<Report>) = imported.reports.into_iter().unzip();

    let mut service = ReportServiceClient::new(client.own_node_as(&["report:write"], "ingest")?)
        .max_encoding_message_size(64 * 1024 * 1024);
    let rejected = match upload(&mut service, &reports, true, None).await {
        Ok(_) => BTreeSet::new(),
        Err(status) if status.code() == tonic::Code::InvalidArgument => {
            let bad = violations(&status);
            if bad.is_empty() {
                bail!("the node refused the file: {}", status.message());
            }
            print_problems(bad.iter().map(|(index, field, reason)| {
                format!("{file}:{}: {field}: {reason}", lines[*index])
            }));
            let indexes: BTreeSet<usize> = bad.iter().map(|(i, _, _)| *i).collect();
            if !args.skip_invalid {
                bail!(
                    "the node would refuse {} report(s) of {file}; nothing was loaded (fix them, or pass --skip-invalid to load the rest)",
                    indexes.len()
                );
            }
            indexes
        }
        Err(status) => {
            return Err(anyhow::Error::new(status).context("checking the reports with the node"))
        }
    };
    if !rejected.is_empty() {
        reports = reports
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !rejected.contains(i))
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
    println!(
        "{file}: {} stored, {} duplicates (already stored), {} rejected, {} skipped",
        summary.stored,
        summary.duplicates,
        imported.errors.len() + rejected.len(),
        imported.skipped.len()
    );
    Ok(())
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

fn print_problems(problems: impl Iterator<Item = String>) {
    let problems: Vec<_> = problems.collect();
    for p in problems.iter().take(PRINTED) {
        eprintln!("{p}");
    }
    if problems.len() > PRINTED {
        eprintln!("... and {} more", problems.len() - PRINTED);
    }
}
