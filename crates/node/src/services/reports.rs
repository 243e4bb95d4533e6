//! `lagesbild.v1.ReportService`: the org's own people and tools write reports.

use crate::events::EventMaker;
use crate::status::IntoStatus;
use lagesbild_proto::v1::report_service_server::ReportService;
use lagesbild_proto::v1::{SubmitBatchRequest, SubmitSummary};
use lagesbild_reports::validate::{validate_batch, Rules, ValidReport, Violation};
use lagesbild_store::{NewReport, Store};
use lagesbild_vocabulary::{SharedClock, SystemClock};
use std::sync::Arc;
use std::time::UNIX_EPOCH;
use tonic::{Request, Response, Status, Streaming};
use tonic_types::{ErrorDetails, StatusExt};

/// Largest request message: a full batch of large reports.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// How many violations the status message spells out (details carry them all).
const LISTED_VIOLATIONS: usize = 20;

/// The report service of one node.
#[derive(Debug, Clone)]
pub struct ReportApi {
    rules: Rules,
    write_purposes: Arc<[String]>,
    store: Store,
    events: Arc<EventMaker>,
    clock: SharedClock,
}

/// A validated report as the store takes it, with no events yet.
pub fn to_store(report: ValidReport) -> NewReport {
    NewReport {
        id: report.id,
        hour: report.hour,
        category: report.category,
        severity: report.severity,
        cell100: report.cell100,
        cell250: report.cell250,
        payload: report.payload,
        events: Vec::new(),
    }
}

impl ReportApi {
    /// The service of a node; `events` makes the events of new reports.
    pub fn new(
        rules: Rules,
        write_purposes: Arc<[String]>,
        store: Store,
        events: Arc<EventMaker>,
    ) -> Self {
        Self {
            rules,
            write_purposes,
            store,
            events,
            clock: SystemClock::shared(),
        }
    }

    /// The same service, judging reports' times by `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    fn authorise<T>(&self, request: &Request<T>) -> Result<(), Status> {
        // Only the org's own people and tools get here (the authorisation table).
        super::check_write_purpose(request, &self.write_purposes)
    }

    /// Validates one batch and starts storing it (unless `validate_only`): the
    /// returned task answers once the batch is on disk. Invalid batches are
    /// refused here, before anything is stored.
    fn begin(&self, request: SubmitBatchRequest, first_index: usize) -> Result<Pending, Status> {
        let now = self.clock.now();
        let valid =
            validate_batch(&request.reports, &self.rules, now, first_index).map_err(invalid)?;
        if request.validate_only {
            let store = self.store.clone();
            let mut ids: Vec<String> = valid.into_iter().map(|r| r.id).collect();
            let total = ids.len() as u64;
            // A report twice in one batch is a duplicate too, as storing it would count it.
            ids.sort_unstable();
            ids.dedup();
            let repeated = total - ids.len() as u64;
            return Ok(tokio::spawn(async move {
                let stored_already = store
                    .count_stored(ids)
                    .await
                    .map_err(IntoStatus::into_status)?;
                Ok(SubmitSummary {
                    stored: total - repeated - stored_already,
                    duplicates: repeated + stored_already,
                })
            }));
        }
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let mut ready: Vec<NewReport> = valid.into_iter().map(to_store).collect();
        self.events.attach(&request.reports, &mut ready, now);
        let store = self.store.clone();
        Ok(tokio::spawn(async move {
            let stored = store.insert(ready).await.map_err(IntoStatus::into_status)?;
            Ok(SubmitSummary {
                stored: stored.stored,
                duplicates: stored.duplicates,
            })
        }))
    }
}

/// A batch being stored.
type Pending = tokio::task::JoinHandle<Result<SubmitSummary, Status>>;

/// Waits until `pending` is on disk (or failed).
async fn finish(pending: Pending) -> Result<SubmitSummary, Status> {
    pending.await.map_err(|e| {
        tracing::error!(error = %e, "a store task failed");
        Status::unavailable("the node could not store the reports; nothing was acknowledged")
    })?
}

/// `INVALID_ARGUMENT` listing each bad report by index, field and reason, in the
/// message and as `google.rpc.BadRequest` field violations.
fn invalid(violations: Vec<Violation>) -> Status {
    let mut listed: Vec<String> = violations
        .iter()
        .take(LISTED_VIOLATIONS)
        .map(ToString::to_string)
        .collect();
    if violations.len() > LISTED_VIOLATIONS {
        listed.push(format!("and {} more", violations.len() - LISTED_VIOLATIONS));
    }
    let mut details = ErrorDetails::new();
    for v in &violations {
        details.add_bad_request_violation(
            format!("reports[{}].{}", v.index, v.field),
            v.reason.clone(),
        );
    }
    Status::with_error_details(
        tonic::Code::InvalidArgument,
        format!(
            "{} problem(s), nothing stored from this batch: {}",
            violations.len(),
            listed.join("; ")
        ),
        details,
    )
}

#[tonic::async_trait]
impl ReportService for ReportApi {
    async fn submit_batch(
        &self,
        request: Request<SubmitBatchRequest>,
    ) -> Result<Response<SubmitSummary>, Status> {
        self.authorise(&request)?;
        let summary = finish(self.begin(request.into_inner(), 0)?).await?;
        Ok(Response::new(summary))
    }

    async fn submit_stream(
        &self,
        request: Request<Streaming<SubmitBatchRequest>>,
    ) -> Result<Response<SubmitSummary>, Status> {
        self.authorise(&request)?;
        let mut stream = request.into_inner();
        let mut total = SubmitSummary::default();
        let mut seen = 0usize;
        // One batch is stored while the next is read and validated.
        let mut in_flight: Option<Pending> = None;
        let add = |total: &mut SubmitSummary, summary: SubmitSummary| {
            total.stored += summary.stored;
            total.duplicates += summary.duplicates;
        };
        while let Some(batch) = stream.message().await? {
            let count = batch.reports.len();
            let next = match self.begin(batch, seen) {
                Ok(next) => next,
                Err(status) => {
                    if let Some(previous) = in_flight.take() {
                        add(&mut total, finish(previous).await?);
                    }
                    return Err(
                        if status.code() == tonic::Code::InvalidArgument && total.stored > 0 {
                            Status::with_details(
                                status.code(),
                                format!(
                                "{} (the {} reports of earlier batches in this stream are stored)",
                                status.message(),
                                total.stored
                            ),
                                status.details().to_vec().into(),
                            )
                        } else {
                            status
                        },
                    );
                }
            };
            seen += count;
            if let Some(previous) = in_flight.replace(next) {
                add(&mut total, finish(previous).await?);
            }
        }
        if let Some(previous) = in_flight.take() {
            add(&mut total, finish(previous).await?);
        }
        Ok(Response::new(total))
    }
}
