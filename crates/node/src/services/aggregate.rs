//! `lagesbild.v1.AggregateService`: releases to peers, through the [`ReleaseGate`].

use super::who_and_why;
use crate::access::CallNote;
use crate::release::{GateRelease, ReleaseGate};
use crate::status::IntoStatus;
use futures::future::join_all;
use lagesbild_geo::CellSize;
use lagesbild_privacy::{Area, BucketKind, ReleaseQuery};
use lagesbild_proto::v1::aggregate_service_server::AggregateService;
use lagesbild_proto::v1::{
    AggregateRelease, BucketKind as WireBucket, Category, ReleaseColumns, ReleaseManyRequest,
    ReleaseManyResponse, ReleaseOutcome, ReleaseRequest,
};
use lagesbild_vocabulary::{OrgId, Purpose};
use prost_types::Timestamp;
use std::collections::BTreeSet;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The aggregate service of one node.
#[derive(Debug, Clone)]
pub struct AggregateApi {
    org: String,
    gate: Arc<ReleaseGate>,
}

impl AggregateApi {
    /// The service of `org`'s node.
    pub fn new(org: String, gate: Arc<ReleaseGate>) -> Self {
        Self { org, gate }
    }
}

fn invalid(message: impl Into<String>) -> Status {
    Status::invalid_argument(message.into())
}

fn hour_of(ts: Option<&Timestamp>, field: &str) -> Result<u32, Status> {
    let ts = ts.ok_or_else(|| invalid(format!("{field}: required")))?;
    if ts.seconds < 0 || ts.seconds / 3600 > i64::from(u32::MAX - 24 * 400) {
        return Err(invalid(format!("{field}: out of range")));
    }
    // Widen outward to whole hours: `to` rounds up.
    let hour = ts.seconds / 3600;
    let round_up = field == "to" && (ts.seconds % 3600 != 0 || ts.nanos > 0);
    Ok((hour + i64::from(round_up)) as u32)
}

fn bucket_kind(value: i32) -> Result<BucketKind, Status> {
    match WireBucket::try_from(value) {
        Ok(WireBucket::Hour) => Ok(BucketKind::Hour),
        Ok(WireBucket::Day) => Ok(BucketKind::Day),
        Ok(WireBucket::Week) => Ok(BucketKind::Week),
        Ok(WireBucket::HourOfDay) => Ok(BucketKind::HourOfDay),
        Ok(WireBucket::HourOfWeek) => Ok(BucketKind::HourOfWeek),
        _ => Err(invalid(format!(
            "bucket: {value} is not a bucket kind (hour, day, week, hour-of-day, hour-of-week)"
        ))),
    }
}

/// The wire form of a bucket kind.
pub fn wire_bucket(kind: BucketKind) -> WireBucket {
    match kind {
        BucketKind::Hour => WireBucket::Hour,
        BucketKind::Day => WireBucket::Day,
        BucketKind::Week => WireBucket::Week,
        BucketKind::HourOfDay => WireBucket::HourOfDay,
        BucketKind::HourOfWeek => WireBucket::HourOfWeek,
    }
}

/// The engine's query from the wire request, or INVALID_ARGUMENT naming the field.
pub fn query_of(request: &ReleaseRequest) -> Result<ReleaseQuery, Status> {
    let from_hour = hour_of(request.from.as_ref(), "from")?;
    let to_hour = hour_of(request.to.as_ref(), "to")?;
    if to_hour <= from_hour {
        return Err(invalid("to: must be after from"));
    }
    let cell_size = CellSize::from_metres(request.cell_size_m).ok_or_else(|| {
        invalid(format!(
            "cell_size_m: {} is not a grid size (100, 250, 500, 1000)",
            request.cell_size_m
        ))
    })?;
    let mut categories = BTreeSet::new();
    for &c in &request.categories {
        match Category::try_from(c) {
            Ok(Category::Unspecified) | Err(_) => {
                return Err(invalid(format!("categories: {c} is not a category")))
            }
            Ok(category) => {
                categories.insert(category as u8);
            }
        }
    }
    let area = match &request.area {
        None => None,
        Some(a) => Some(
            Area::from_wgs84(a.south, a.west, a.north, a.east)
                .ok_or_else(|| invalid("area: needs south < north and west < east, in degrees"))?,
        ),
    };
    Ok(ReleaseQuery {
        from_hour,
        to_hour,
        categories,
        area,
        cell_size,
        bucket: bucket_kind(request.bucket)?,
    })
}

fn timestamp_of_hour(hour: u32) -> Timestamp {
    Timestamp {
        seconds: i64::from(hour) * 3600,
        nanos: 0,
    }
}

/// Most requests in one `ReleaseMany` call.
pub const MAX_RELEASES_PER_CALL: usize = 8;

impl AggregateApi {
    /// One release for `peer`, exactly as `Release` makes it.
    async fn release_one(
        &self,
        peer: &OrgId,
        purpose: &Purpose,
        request: &ReleaseRequest,
    ) -> Result<GateRelease, Status> {
        // The purpose is the token's; a request may restate it, not change it.
        if !request.purpose.is_empty() && request.purpose != purpose.as_str() {
            return Err(Status::permission_denied(format!(
                "the request's purpose {:?} is not the token's purpose {purpose:?}",
                request.purpose
            )));
        }
        let query = query_of(request)?;
        let released = self
            .gate
            .aggregate(peer, purpose, query)
            .await
            .map_err(|e| {
                tracing::warn!(%peer, %purpose, reason = %e, "release refused");
                e.into_status()
            })?;
        // Each call is in the access log already; at thousands of calls a
        // second, a line each would drown the node's own log.
        tracing::debug!(
            %peer,
            %purpose,
            released = released.release.counts.len(),
            withheld = released.release.withheld,
            epsilon = released.release.plan.epsilon.map_or(0.0, |e| e.as_f64()),
            "release made"
        );
        Ok(released)
    }
}

#[tonic::async_trait]
impl AggregateService for AggregateApi {
    async fn release(
        &self,
        request: Request<ReleaseRequest>,
    ) -> Result<Response<AggregateRelease>, Status> {
        let (peer, purpose) = who_and_why(&request)?;
        let released = self.release_one(&peer, &purpose, request.get_ref()).await?;
        let mut response = Response::new(release_message(
            &self.org,
            &released,
            WireShape::of(request.get_ref()),
        ));
        response.extensions_mut().insert(audit_summary(&released));
        Ok(response)
    }

    async fn release_many(
        &self,
        request: Request<ReleaseManyRequest>,
    ) -> Result<Response<ReleaseManyResponse>, Status> {
        let (peer, purpose) = who_and_why(&request)?;
        let requests = &request.get_ref().requests;
        if requests.is_empty() || requests.len() > MAX_RELEASES_PER_CALL {
            return Err(invalid(format!(
                "requests: {} given, 1 to {MAX_RELEASES_PER_CALL} allowed",
                requests.len()
            )));
        }
        let shapes: Vec<WireShape> = requests.iter().map(WireShape::of).collect();
        let answers = join_all(
            requests
                .iter()
                .map(|r| self.release_one(&peer, &purpose, r)),
        )
        .await;
        let mut summary = lagesbild_audit::Released::default();
        let mut refusals = Vec::new();
        let mut outcomes = Vec::with_capacity(answers.len());
        for (i, answer) in answers.into_iter().enumerate() {
            outcomes.push(match answer {
                Ok(released) => {
                    let part = audit_summary(&released);
                    summary.cells += part.cells;
                    summary.values += part.values;
                    summary.withheld += part.withheld;
                    summary.epsilon_micros += part.epsilon_micros;
                    ReleaseOutcome {
                        release: Some(release_message(&self.org, &released, shapes[i])),
                        code: 0,
                        message: String::new(),
                    }
                }
                Err(status) => {
                    refusals.push(format!(
                        "request {i}: {:?}: {}",
                        status.code(),
                        status.message()
                    ));
                    ReleaseOutcome {
                        release: None,
                        code: status.code() as u32,
                        message: status.message().to_owned(),
                    }
                }
            });
        }
        let mut response = Response::new(ReleaseManyResponse { outcomes });
        response.extensions_mut().insert(summary);
        if !refusals.is_empty() {
            // The call succeeds; its log entry still names each refusal.
            response
                .extensions_mut()
                .insert(CallNote(refusals.join("; ")));
        }
        Ok(response)
    }
}

/// What a release gave away, for the access log.
pub fn audit_summary(released: &GateRelease) -> lagesbild_audit::Released {
    let release = &released.release;
    // One plan, one cell size: a cell is its corner.
    let mut cells: Vec<u64> = release
        .counts
        .iter()
        .map(|v| u64::from(v.cell.northing) << 32 | u64::from(v.cell.easting))
        .collect();
    cells.sort_unstable();
    cells.dedup();
    lagesbild_audit::Released {
        cells: cells.len() as u64,
        values: release.counts.len() as u64,
        withheld: release.withheld,
        epsilon_micros: release.plan.epsilon.map_or(0, |e| e.micros()),
    }
}

/// How a caller asked for a release's values: every value or only the sums
/// of each bucket, one message each or as columns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WireShape {
    /// One value per bucket: the sum over cells and categories.
    pub totals_only: bool,
    /// [`ReleaseColumns`] instead of a [`ReleasedCount`] each.
    pub columnar: bool,
    /// The digest of the release the caller holds, if any.
    pub unless: Option<[u8; 32]>,
}

impl WireShape {
    /// The shape `request` asks for.
    pub fn of(request: &ReleaseRequest) -> Self {
        Self {
            totals_only: request.totals_only,
            columnar: request.columnar,
            unless: request.unless_digest.as_slice().try_into().ok(),
        }
    }
}

/// The digest a release of `shape` is sent with: the release's content digest
/// and the shape it is written in (rows or columns, totals or values).
fn wire_digest(content: &[u8; 32], shape: WireShape) -> [u8; 32] {
    let mut bytes = content.to_vec();
    bytes.extend_from_slice(&[u8::from(shape.totals_only), u8::from(shape.columnar)]);
    let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// The wire form of a release, in the `shape` asked for. Columns and rows hold
/// the same values in the same order (bucket, category, cell).
pub fn release_message(org: &str, released: &GateRelease, shape: WireShape) -> AggregateRelease {
    let plan = &released.release.plan;
    let digest = released.digest.map(|d| wire_digest(&d, shape));
    let mut message = AggregateRelease {
        org: org.to_owned(),
        from: Some(timestamp_of_hour(plan.from_hour)),
        to: Some(timestamp_of_hour(plan.to_hour)),
        cell_size_m: plan.cell_size.metres(),
        bucket: wire_bucket(plan.bucket) as i32,
        categories: plan.categories.iter().map(|&c| i32::from(c)).collect(),
        k: plan.k.get(),
        epsilon: plan.epsilon.map_or(0.0, |e| e.as_f64()),
        budget_left_today: released.budget_left.map_or(0.0, |e| e.as_f64()),
        counts: Vec::new(),
        columns: None,
        digest: digest.map(|d| d.to_vec()).unwrap_or_default(),
        unchanged: false,
    };
    if digest.is_some() && digest == shape.unless {
        // The caller holds this very release: only its head, no values.
        message.unchanged = true;
        return message;
    }
    let profile = plan.bucket.is_profile();
    let bucket_of = |bucket: u32| {
        if profile {
            i64::from(bucket)
        } else {
            i64::from(bucket) * 3600
        }
    };
    let mut columns = ReleaseColumns::default();
    if shape.totals_only {
        // Values come ordered by bucket first: each bucket's sum is one run.
        for v in &released.release.counts {
            let bucket = bucket_of(v.bucket);
            if columns.bucket.last() == Some(&bucket) {
                *columns.count.last_mut().expect("same length") += v.count;
                *columns.severity_sum.last_mut().expect("same length") += v.severity_sum;
            } else {
                columns.bucket.push(bucket);
                columns.category.push(Category::Unspecified as i32);
                columns.easting.push(0);
                columns.northing.push(0);
                columns.count.push(v.count);
                columns.severity_sum.push(v.severity_sum);
            }
        }
    } else {
        let n = released.release.counts.len();
        columns = ReleaseColumns::with_capacity(n);
        for v in &released.release.counts {
            columns.bucket.push(bucket_of(v.bucket));
            columns.category.push(i32::from(v.category));
            columns.easting.push(v.cell.easting);
            columns.northing.push(v.cell.northing);
            columns.count.push(v.count);
            columns.severity_sum.push(v.severity_sum);
        }
    }
    if shape.columnar {
        message.columns = Some(columns);
    } else {
        let size_m = (!shape.totals_only).then(|| plan.cell_size.metres());
        message.counts = lagesbild_proto::columns::rows(&columns, size_m, profile);
    }
    message
}
