//! The console's HTTP JSON API, for the console's pages and for partners'
//! scripts alike. Each call is made to the node's own gRPC services in
//! process ([`Gateway`]), with the caller's session: the same authorisation
//! table and the same access log as a call over the network. `openapi.json`
//! describes it.

use crate::{cookie, Console, SESSION_COOKIE};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use lagesbild_auth::{AUTHORIZATION, PURPOSE_HEADER};
use lagesbild_proto::v1::audit_service_client::AuditServiceClient;
use lagesbild_proto::v1::event_service_client::EventServiceClient;
use lagesbild_proto::v1::node_service_client::NodeServiceClient;
use lagesbild_proto::v1::picture_service_client::PictureServiceClient;
use lagesbild_proto::v1::policy_service_client::PolicyServiceClient;
use lagesbild_proto::v1::{watch_item, MapRequest, RecallReason, Tlp, WatchItem, WatchRequest};
use lagesbild_proto::v1::{
    AnswerStatus, BucketKind, Category, PictureRequest, ReleaseRequest, SituationPicture,
};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;

/// The node's gRPC services as one in-process service, behind its access
/// layers, called as the org's people.
pub type Gateway = tower::util::BoxCloneSyncService<
    http::Request<tonic::body::Body>,
    http::Response<tonic::body::Body>,
    Infallible,
>;

/// The OpenAPI 3 document of the API, as checked in.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Every API path the console serves, as the OpenAPI document must list them.
pub const API_ROUTES: &[&str] = &[
    "/api/v1/picture",
    "/api/v1/places",
    "/api/v1/events",
    "/api/v1/audit/entries",
    "/api/v1/audit/state",
    "/api/v1/partners",
    "/api/v1/policy",
    "/api/v1/policy/explain",
    "/api/v1/policy/preview",
];

/// An error as the API answers it: the HTTP status and one sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, json!({ "error": self.message }))
    }
}

fn error(status: StatusCode, message: &str) -> ApiError {
    ApiError {
        status,
        message: message.to_owned(),
    }
}

fn json_response(status: StatusCode, body: Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The HTTP status for a gRPC status.
fn status_of(status: &tonic::Status) -> StatusCode {
    use tonic::Code;
    match status.code() {
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => {
            StatusCode::BAD_REQUEST
        }
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The session of an API call: `authorization: Bearer <session>` (scripts)
/// or the console's cookie (its pages).
fn session_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(lagesbild_auth::bearer_token)
        .or_else(|| cookie(headers, SESSION_COOKIE))
        .map(String::from)
}

/// `request` carrying the caller's session and stated purpose, or the
/// error to answer instead.
fn authorise<T>(
    headers: &HeaderMap,
    purpose: &str,
    message: T,
) -> Result<tonic::Request<T>, ApiError> {
    let Some(session) = session_of(headers) else {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "sign in first: send the console's session cookie or `Authorization: Bearer <session>`",
        ));
    };
    let mut request = tonic::Request::new(message);
    let bearer = format!("Bearer {session}").parse().map_err(|_| {
        error(
            StatusCode::UNAUTHORIZED,
            "the session is not a printable ASCII string",
        )
    })?;
    let purpose = purpose.parse().map_err(|_| {
        error(
            StatusCode::BAD_REQUEST,
            "purpose: printable ASCII, e.g. situation-picture",
        )
    })?;
    request.metadata_mut().insert(AUTHORIZATION, bearer);
    request.metadata_mut().insert(PURPOSE_HEADER, purpose);
    Ok(request)
}

pub(crate) async fn openapi() -> Response {
    let mut response = OPENAPI.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The query of `GET /api/v1/picture`.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct PictureQuery {
    from: Option<String>,
    to: Option<String>,
    /// Comma-separated category names; none for all.
    #[serde(default)]
    categories: Option<String>,
    #[serde(default)]
    cell: Option<u32>,
    #[serde(default)]
    bucket: Option<String>,
    #[serde(default)]
    top: Option<u32>,
    #[serde(default)]
    purpose: Option<String>,
    /// `rows` (default): a JSON object per value; `columns`: arrays.
    #[serde(default)]
    form: Option<String>,
}

fn timestamp(name: &str, text: Option<&str>) -> Result<Option<prost_types::Timestamp>, ApiError> {
    let Some(text) = text else { return Ok(None) };
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "{name}: {text:?} is not an RFC 3339 time, e.g. 2026-11-01T00:00:00+01:00"
                ),
            )
        })?;
    Ok(Some(prost_types::Timestamp {
        seconds: at.unix_timestamp(),
        nanos: 0,
    }))
}

fn rfc3339(at: Option<&prost_types::Timestamp>) -> Value {
    at.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.seconds).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .map_or(Value::Null, Value::String)
}

/// A proto enum's name without its prefix, in lower case: `violence`.
fn short(name: &str, prefix: &str) -> String {
    name.trim_start_matches(prefix).to_ascii_lowercase()
}

fn category_name(value: i32) -> String {
    Category::try_from(value).map_or_else(
        |_| "unspecified".into(),
        |c| short(c.as_str_name(), "CATEGORY_"),
    )
}

fn filters(query: &PictureQuery) -> Result<ReleaseRequest, ApiError> {
    let mut categories = Vec::new();
    for name in query
        .categories
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        let Some(category) =
            Category::from_str_name(&format!("CATEGORY_{}", name.to_ascii_uppercase()))
                .filter(|c| *c != Category::Unspecified)
        else {
            return Err(error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "categories: {name:?} is not a category (e.g. violence, theft, dark_area)"
                ),
            ));
        };
        categories.push(category as i32);
    }
    let bucket = match query.bucket.as_deref() {
        None => BucketKind::Day,
        Some(name) => {
            BucketKind::from_str_name(&format!("BUCKET_KIND_{}", name.to_ascii_uppercase()))
                .filter(|b| *b != BucketKind::Unspecified)
                .ok_or_else(|| {
                    error(
                        StatusCode::BAD_REQUEST,
                        &format!(
                    "bucket: {name:?} is not a bucket (hour, day, week, hour_of_day, hour_of_week)"
                ),
                    )
                })?
        }
    };
    Ok(ReleaseRequest {
        unless_digest: Vec::new(),
        purpose: String::new(),
        from: timestamp("from", query.from.as_deref())?,
        to: timestamp("to", query.to.as_deref())?,
        categories,
        area: None,
        cell_size_m: query.cell.unwrap_or(250),
        bucket: bucket as i32,
        totals_only: false,
        columnar: false,
    })
}

/// A cell's corners, `[lat, lon]` in WGS84, from its south-west corner
/// anticlockwise.
fn corners(easting: u32, northing: u32, size: u32) -> Value {
    let (e, n, m) = (f64::from(easting), f64::from(northing), f64::from(size));
    let round = |x: f64| (x * 1e6).round() / 1e6;
    Value::Array(
        [(e, n), (e + m, n), (e + m, n + m), (e, n + m)]
            .into_iter()
            .map(|(easting, northing)| {
                let (lat, lon) =
                    lagesbild_geo::unproject(lagesbild_geo::Sweref99Tm { northing, easting });
                json!([round(lat), round(lon)])
            })
            .collect(),
    )
}

/// `GET /api/v1/places`: what the offline map draws, the node's coverage
/// area and the named places (no one's data), from `NodeService/Map`.
pub(crate) async fn places(
    headers: HeaderMap,
    State(console): State<Arc<Console>>,
) -> Result<Response, ApiError> {
    let request = authorise(&headers, "situation-picture", MapRequest {})?;
    let map = NodeServiceClient::new(console.gateway.clone())
        .map(request)
        .await
        .map_err(|status| error(status_of(&status), status.message()))?
        .into_inner();
    let places: Vec<Value> = map
        .places
        .iter()
        .map(|p| json!({"name": p.name, "kind": p.kind, "lat": p.lat, "lon": p.lon}))
        .collect();
    let coverage = map.coverage.map_or(
        Value::Null,
        |c| json!({"south": c.south, "west": c.west, "north": c.north, "east": c.east}),
    );
    Ok(json_response(
        StatusCode::OK,
        json!({ "coverage": coverage, "places": places }),
    ))
}

/// The query of `GET /api/v1/events`.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct EventsQuery {
    #[serde(default)]
    after: Option<u64>,
}

/// One item of the node's inbox as the API's JSON, and its SSE event name.
pub fn watch_json(item: &WatchItem) -> (&'static str, Value) {
    let seconds = |t: Option<&prost_types::Timestamp>| rfc3339(t);
    match &item.item {
        Some(watch_item::Item::Event(event)) => {
            let cell = event.cell.as_ref();
            (
                "event",
                json!({
                    "seq": item.seq,
                    "received_at": seconds(item.received_at.as_ref()),
                    "id": event.id,
                    "org": event.org,
                    "category": category_name(event.category),
                    "severity": event.severity,
                    "corners": cell.map_or(Value::Null, |c| corners(c.easting, c.northing, c.size_m)),
                    "near": item.near,
                    "slot_start": seconds(event.slot_start.as_ref()),
                    "slot_end": seconds(event.slot_end.as_ref()),
                    "expires_at": seconds(event.expires_at.as_ref()),
                    "tlp": Tlp::try_from(event.tlp).map_or_else(|_| "unspecified".into(), |t| short(t.as_str_name(), "TLP_")),
                    "text": event.text,
                    "alerts": item.alerts.iter().map(|a| json!({
                        "rule": a.rule,
                        "playbook": a.playbook,
                        "actions": a.actions,
                    })).collect::<Vec<_>>(),
                }),
            )
        }
        Some(watch_item::Item::Recall(recall)) => (
            "recall",
            json!({
                "seq": item.seq,
                "received_at": seconds(item.received_at.as_ref()),
                "id": recall.id,
                "org": recall.org,
                "reason": RecallReason::try_from(recall.reason)
                    .map_or_else(|_| "unspecified".into(), |r| short(r.as_str_name(), "RECALL_REASON_")),
            }),
        ),
        None => ("unknown", json!({ "seq": item.seq })),
    }
}

/// `GET /api/v1/events`: the node's inbox of events and recalls, live, as
/// server-sent events (`event` or `recall`, the item's `seq` as the SSE id:
/// a browser that reconnects resumes after the last one it had). A person's
/// stream ends every minute and is reopened, so an ended session ends it.
pub(crate) async fn events(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(query): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures::StreamExt;
    let resumed = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let after = resumed.or(query.after).unwrap_or(0);
    let request = authorise(&headers, "situation-picture", WatchRequest { after })?;
    let stream = EventServiceClient::new(console.gateway.clone())
        .watch(request)
        .await
        .map_err(|status| error(status_of(&status), status.message()))?
        .into_inner();
    let events = stream
        .take_while(|item| std::future::ready(item.is_ok()))
        .filter_map(|item| {
            std::future::ready(item.ok().map(|item| {
                let (kind, body) = watch_json(&item);
                Ok::<_, Infallible>(
                    Event::default()
                        .event(kind)
                        .id(item.seq.to_string())
                        .data(body.to_string()),
                )
            }))
        });
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Most kept checkpoints `GET /api/v1/audit/state` proves consistent with the
/// latest (each proof is a call of its own, in the log).
const CHECKPOINTS_PROVED: usize = 10;

/// `GET /api/v1/audit/state`: the log's latest checkpoint, the newest kept
/// checkpoints, each checked here (its signature by the node's log key, and
/// an RFC 9162 consistency proof from it to the latest), and what this node
/// has witnessed of each peer's log.
pub(crate) async fn audit_state(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    use lagesbild_proto::v1::{
        CheckpointRequest, CheckpointsRequest, ConsistencyProofRequest, WitnessesRequest,
    };
    let failed = |status: tonic::Status| error(status_of(&status), status.message());
    let mut audit = AuditServiceClient::new(console.gateway.clone());
    let latest = audit
        .checkpoint(authorise(
            &headers,
            "audit",
            CheckpointRequest { witness_size: 0 },
        )?)
        .await
        .map_err(failed)?
        .into_inner();
    let kept = audit
        .checkpoints(authorise(&headers, "audit", CheckpointsRequest {})?)
        .await
        .map_err(failed)?
        .into_inner()
        .checkpoints;
    let witnesses = audit
        .witnesses(authorise(&headers, "audit", WitnessesRequest {})?)
        .await
        .map_err(failed)?
        .into_inner()
        .peers;
    let verifier = console
        .log_vkey
        .as_deref()
        .map(lagesbild_audit::checkpoint::NoteVerifier::from_vkey);
    let check = |note: &str| -> Result<lagesbild_audit::checkpoint::Checkpoint, String> {
        match &verifier {
            None => Err("the federation file names no log key for this node".to_owned()),
            Some(Err(e)) => Err(format!("the node's log key does not parse: {e}")),
            Some(Ok(v)) => v.verify(note).map_err(|e| e.to_string()),
        }
    };
    // Calls go on being logged while these are asked, so the newest of the
    // latest and the kept checkpoints is the one the others are proved against.
    let head_note = kept
        .iter()
        .rev()
        .take(CHECKPOINTS_PROVED)
        .chain(std::iter::once(&latest.checkpoint))
        .filter_map(|note| check(note).ok().map(|c| (c.size, note)))
        .max_by_key(|(size, _)| *size)
        .map_or(latest.checkpoint.as_str(), |(_, note)| note.as_str());
    let head = check(head_note);
    let mut checked = Vec::new();
    for note in kept
        .iter()
        .rev()
        .take(CHECKPOINTS_PROVED)
        .chain(std::iter::once(&latest.checkpoint))
        .filter(|note| note.as_str() != head_note)
    {
        let signed = check(note);
        let consistent = match (&signed, &head) {
            (Ok(old), Ok(new)) => {
                let proof = audit
                    .consistency_proof(authorise(
                        &headers,
                        "audit",
                        ConsistencyProofRequest {
                            old_size: old.size,
                            new_size: new.size,
                        },
                    )?)
                    .await
                    .map_err(failed)?
                    .into_inner()
                    .proof;
                let hashes: Option<Vec<lagesbild_audit::merkle::Hash>> =
                    proof.iter().map(|h| h.as_slice().try_into().ok()).collect();
                match hashes {
                    None => Err("a proof hash is not 32 bytes".to_owned()),
                    Some(hashes) => lagesbild_audit::merkle::verify_consistency(
                        old.size, new.size, &old.root, &new.root, &hashes,
                    )
                    .map_err(|e| e.to_string()),
                }
            }
            (Err(_), _) => Err("its signature did not verify".to_owned()),
            (_, Err(_)) => Err("the latest checkpoint's signature did not verify".to_owned()),
        };
        checked.push(json!({
            "size": signed.as_ref().map_or(Value::Null, |c| json!(c.size)),
            "signature": signed.as_ref().map_or_else(|e| e.clone(), |_| "ok".to_owned()),
            "consistent_with_latest": consistent.as_ref().map_or_else(|e| e.clone(), |()| "ok".to_owned()),
        }));
    }
    let witnessed: Vec<Value> = witnesses
        .iter()
        .map(|w| {
            json!({
                "org": w.org,
                "size": w.size,
                "seen_at": time::OffsetDateTime::from_unix_timestamp(w.seen_unix_micros.div_euclid(1_000_000))
                    .ok()
                    .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
                "alarm": w.alarm,
                "alarm_reason": w.alarm_reason,
            })
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        json!({
            "latest": {
                "size": head.as_ref().map_or(latest.size, |c| c.size),
                "note": head_note,
                "signature": head.as_ref().map_or_else(|e| e.clone(), |_| "ok".to_owned()),
            },
            "kept": checked,
            "witnessed": witnessed,
        }),
    ))
}

/// The query of `GET /api/v1/audit/entries`.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct EntriesQuery {
    /// The newest this many entries (at most 1,000) of those that match.
    #[serde(default)]
    limit: Option<u32>,
    /// Only calls from or to this organisation.
    #[serde(default)]
    org: Option<String>,
    /// Only calls of (or acted for) a person whose name contains this.
    #[serde(default)]
    person: Option<String>,
    #[serde(default)]
    purpose: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
}

/// How far back `GET /api/v1/audit/entries` looks for matches.
const AUDIT_SCAN: u64 = 20_000;

impl EntriesQuery {
    fn matches(&self, entry: &lagesbild_audit::Entry, from: Option<i64>, to: Option<i64>) -> bool {
        let seconds = entry.time_micros.div_euclid(1_000_000);
        self.org.as_deref().is_none_or(|o| entry.peer_org == o)
            && self
                .person
                .as_deref()
                .is_none_or(|p| entry.token.sub.contains(p) || entry.token.act.contains(p))
            && self
                .purpose
                .as_deref()
                .is_none_or(|p| entry.token.purpose == p)
            && from.is_none_or(|f| seconds >= f)
            && to.is_none_or(|t| seconds < t)
    }
}

/// `GET /api/v1/audit/entries`: the newest entries of the node's access log
/// that match the filters (role auditor), each with its index.
pub(crate) async fn audit_entries(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(query): Query<EntriesQuery>,
) -> Result<Response, ApiError> {
    let limit = query.limit.unwrap_or(200).clamp(1, 1000) as usize;
    let from = timestamp("from", query.from.as_deref())?.map(|t| t.seconds);
    let to = timestamp("to", query.to.as_deref())?.map(|t| t.seconds);
    let mut audit = AuditServiceClient::new(console.gateway.clone());
    let ask = |start: u64, count: u32| {
        authorise(
            &headers,
            "audit",
            lagesbild_proto::v1::EntriesRequest {
                start,
                limit: count,
            },
        )
    };
    let size = audit
        .entries(ask(0, 1)?)
        .await
        .map_err(|status| error(status_of(&status), status.message()))?
        .into_inner()
        .size;
    let mut next = size.saturating_sub(AUDIT_SCAN);
    let mut found: std::collections::VecDeque<Value> = std::collections::VecDeque::new();
    while next < size {
        let page = audit
            .entries(ask(next, 1000)?)
            .await
            .map_err(|status| error(status_of(&status), status.message()))?
            .into_inner();
        if page.next <= next {
            break;
        }
        next = page.next;
        for logged in page.entries {
            let Ok(entry) = lagesbild_audit::Entry::decode(&logged.entry) else {
                continue;
            };
            if query.matches(&entry, from, to) {
                let mut value = serde_json::to_value(&entry).unwrap_or(Value::Null);
                value["index"] = json!(logged.index);
                found.push_back(value);
                if found.len() > limit {
                    found.pop_front();
                }
            }
        }
    }
    Ok(json_response(
        StatusCode::OK,
        json!({ "size": size, "entries": Vec::from(found) }),
    ))
}

/// `GET /api/v1/partners`: how the node sees each member now: reachable,
/// version, round-trip time, what the peer saw, its witnessed log and any
/// witness alarm (any role).
pub(crate) async fn partners(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let request = authorise(
        &headers,
        "status",
        lagesbild_proto::v1::FederationStatusRequest::default(),
    )?;
    let status = NodeServiceClient::new(console.gateway.clone())
        .federation_status(request)
        .await
        .map_err(|status| error(status_of(&status), status.message()))?
        .into_inner();
    Ok(json_response(StatusCode::OK, partners_json(&status)))
}

/// The federation's status as the API's JSON.
pub fn partners_json(status: &lagesbild_proto::v1::FederationStatusResponse) -> Value {
    let peers: Vec<Value> = status
        .peers
        .iter()
        .map(|p| {
            json!({
                "org": p.org,
                "display_name": p.display_name,
                "role": lagesbild_proto::v1::MemberRole::try_from(p.role)
                    .map_or_else(|_| "unspecified".into(), |r| short(r.as_str_name(), "MEMBER_ROLE_")),
                "endpoint": p.endpoint,
                "reachable": p.reachable,
                "version": p.version,
                "rtt_ms": p.rtt_micros as f64 / 1000.0,
                "error": p.error,
                "seen_as": p.seen_as,
                "witnessed_log_size": p.witnessed_log_size,
                "witness_alarm": p.witness_alarm,
                "budget_per_day": p.budget_per_day,
                "budget_left_today": p.budget_left_today,
            })
        })
        .collect();
    json!({ "org": status.org, "peers": peers })
}

/// An explanation as the API answers it: the words, and the facts as JSON.
fn explanation_json(answer: lagesbild_proto::v1::ExplainResponse) -> Value {
    json!({
        "text": answer.text,
        "explanation": serde_json::from_str::<Value>(&answer.json).unwrap_or(Value::Null),
    })
}

/// The query of `GET /api/v1/policy/explain`.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct ExplainQuery {
    peer: String,
}

/// `GET /api/v1/policy/explain`: what a peer may receive now (role policy-admin).
pub(crate) async fn policy_explain(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(query): Query<ExplainQuery>,
) -> Result<Response, ApiError> {
    let request = authorise(
        &headers,
        "operations",
        lagesbild_proto::v1::ExplainRequest { peer: query.peer },
    )?;
    let answer = PolicyServiceClient::new(console.gateway.clone())
        .explain(request)
        .await
        .map_err(|status| error(status_of(&status), status.message()))?;
    Ok(json_response(
        StatusCode::OK,
        explanation_json(answer.into_inner()),
    ))
}

/// `GET /api/v1/policy`: the policy file's text (role policy-admin).
pub(crate) async fn policy_text(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let request = authorise(
        &headers,
        "operations",
        lagesbild_proto::v1::PolicyTextRequest {},
    )?;
    let answer = PolicyServiceClient::new(console.gateway.clone())
        .text(request)
        .await
        .map_err(|status| error(status_of(&status), status.message()))?;
    Ok(json_response(
        StatusCode::OK,
        json!({ "text": answer.into_inner().text }),
    ))
}

/// The body of `POST /api/v1/policy/preview`.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct PreviewBody {
    draft: String,
    peer: String,
}

/// `POST /api/v1/policy/preview`: what a peer would receive under a draft.
pub(crate) async fn policy_preview(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<PreviewBody>,
) -> Result<Response, ApiError> {
    let request = authorise(
        &headers,
        "operations",
        lagesbild_proto::v1::PreviewRequest {
            draft: body.draft,
            peer: body.peer,
        },
    )?;
    let answer = PolicyServiceClient::new(console.gateway.clone())
        .preview(request)
        .await
        .map_err(|status| error(status_of(&status), status.message()))?;
    Ok(json_response(
        StatusCode::OK,
        explanation_json(answer.into_inner()),
    ))
}

/// The body of `PUT /api/v1/policy`.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct SaveBody {
    draft: String,
}

/// `PUT /api/v1/policy`: the draft becomes the policy in force.
pub(crate) async fn policy_save(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<SaveBody>,
) -> Result<Response, ApiError> {
    let request = authorise(
        &headers,
        "operations",
        lagesbild_proto::v1::SaveRequest { draft: body.draft },
    )?;
    let answer = PolicyServiceClient::new(console.gateway.clone())
        .save(request)
        .await
        .map_err(|status| error(status_of(&status), status.message()))?;
    Ok(json_response(
        StatusCode::OK,
        json!({ "peers": answer.into_inner().peers }),
    ))
}

/// The answers of a picture as the API's JSON.
fn answers_json(picture: &SituationPicture) -> Vec<Value> {
    picture
        .answers
        .iter()
        .map(|a| {
            json!({
                "org": a.org,
                "status": AnswerStatus::try_from(a.status)
                    .map_or_else(|_| "unspecified".into(), |s| short(s.as_str_name(), "ANSWER_STATUS_")),
                "reason": a.reason,
                "k": a.k,
                "epsilon": a.epsilon,
                "values": a.values,
                "latency_ms": a.latency_micros as f64 / 1000.0,
            })
        })
        .collect()
}

/// The fields every form of the picture has.
fn picture_head(picture: &SituationPicture) -> serde_json::Map<String, Value> {
    let mut head = serde_json::Map::new();
    head.insert("home_org".into(), json!(picture.home_org));
    head.insert("from".into(), rfc3339(picture.from.as_ref()));
    head.insert("to".into(), rfc3339(picture.to.as_ref()));
    head.insert("cell_size_m".into(), json!(picture.cell_size_m));
    head.insert(
        "bucket".into(),
        json!(BucketKind::try_from(picture.bucket).map_or_else(
            |_| "unspecified".into(),
            |b| short(b.as_str_name(), "BUCKET_KIND_")
        )),
    );
    head.insert("answers".into(), Value::Array(answers_json(picture)));
    head.insert("hour_of_day".into(), json!(picture.hour_of_day));
    head.insert("hour_of_week".into(), json!(picture.hour_of_week));
    head
}

/// A columnar picture as the API's columns: each distinct cell once (with its
/// corners), the values as arrays of the same length naming cells, categories
/// and answers by index. Several times smaller than the rows for a large
/// window, which the time slider asks for.
pub fn picture_columns_json(picture: &SituationPicture) -> Value {
    let mut head = picture_head(picture);
    let (no_columns, no_values) = (Default::default(), Default::default());
    let columns: &lagesbild_proto::v1::PictureColumns =
        picture.columns.as_ref().unwrap_or(&no_columns);
    let values: &lagesbild_proto::v1::ReleaseColumns =
        columns.values.as_ref().unwrap_or(&no_values);
    let n = columns.checked_len().unwrap_or(0);
    let size = picture.cell_size_m;
    let mut grid_index: std::collections::HashMap<(u32, u32), usize> = Default::default();
    let mut grid = Vec::new();
    let mut category_index: std::collections::HashMap<i32, usize> = Default::default();
    let mut categories = Vec::new();
    let (mut cell, mut category) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut contributors, mut withheld) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut gave = 0usize;
    for i in 0..n {
        let at = (values.easting[i], values.northing[i]);
        let next = grid_index.len();
        let index = *grid_index.entry(at).or_insert_with(|| {
            grid.push(json!({
                "easting": at.0,
                "northing": at.1,
                "corners": corners(at.0, at.1, size),
            }));
            next
        });
        cell.push(index);
        let next = category_index.len();
        category.push(
            *category_index.entry(values.category[i]).or_insert_with(|| {
                categories.push(category_name(values.category[i]));
                next
            }),
        );
        let g = columns.contributor_count[i] as usize;
        contributors.push(columns.contributors[gave..gave + g].to_vec());
        gave += g;
        let gave_now = contributors.last().expect("pushed above");
        withheld.push(
            picture
                .answers
                .iter()
                .enumerate()
                .filter(|(a, answer)| {
                    answer.categories.contains(&values.category[i])
                        && !gave_now.contains(&(*a as u32))
                })
                .map(|(a, _)| a as u32)
                .collect::<Vec<u32>>(),
        );
    }
    head.insert("grid".into(), Value::Array(grid));
    head.insert("categories".into(), json!(categories));
    head.insert(
        "values".into(),
        json!({
            "cell": cell,
            "bucket": values.bucket[..n],
            "category": category,
            "count": values.count[..n],
            "severity_sum": values.severity_sum[..n],
            "contributors": contributors,
            "withheld_by": withheld,
        }),
    );
    Value::Object(head)
}

/// The picture as the API's JSON.
pub fn picture_json(picture: &SituationPicture) -> Value {
    let org = |index: &u32| {
        picture
            .answers
            .get(*index as usize)
            .map_or(Value::Null, |a| Value::String(a.org.clone()))
    };
    let cells: Vec<Value> = picture
        .cells
        .iter()
        .filter_map(|c| {
            let value = c.value.as_ref()?;
            let cell = value.cell.as_ref()?;
            Some(json!({
                "easting": cell.easting,
                "northing": cell.northing,
                "size_m": cell.size_m,
                "corners": corners(cell.easting, cell.northing, cell.size_m),
                "bucket_start": rfc3339(value.bucket_start.as_ref()),
                "slot": value.slot,
                "category": category_name(value.category),
                "count": value.count,
                "contributors": c.contributors.iter().map(org).collect::<Vec<_>>(),
                "withheld_by": c.withheld_by.iter().map(org).collect::<Vec<_>>(),
            }))
        })
        .collect();
    let mut head = picture_head(picture);
    head.insert("cells".into(), Value::Array(cells));
    Value::Object(head)
}

/// `GET /api/v1/picture`: the federated picture, as `PictureService/Picture`
/// gives it to the caller.
pub(crate) async fn picture(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(query): Query<PictureQuery>,
) -> Result<Response, ApiError> {
    let purpose = query.purpose.as_deref().unwrap_or("situation-picture");
    let columns_form = match query.form.as_deref() {
        None | Some("rows") => false,
        Some("columns") => true,
        Some(other) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                &format!("form: {other:?} is not a form (rows, columns)"),
            ))
        }
    };
    let request = authorise(
        &headers,
        purpose,
        PictureRequest {
            filters: Some(filters(&query)?),
            top: query.top.unwrap_or(10),
            deadline_ms: 0,
            columnar: true,
        },
    )?;
    let mut picture = PictureServiceClient::new(console.gateway.clone())
        .picture(request)
        .await
        .map_err(|status| error(status_of(&status), status.message()))?
        .into_inner();
    if picture
        .columns
        .as_ref()
        .and_then(|c| c.checked_len())
        .is_none()
    {
        return Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the node's picture came without well-formed columns",
        ));
    }
    let body = if columns_form {
        picture_columns_json(&picture)
    } else {
        let profile = matches!(
            BucketKind::try_from(picture.bucket),
            Ok(BucketKind::HourOfDay | BucketKind::HourOfWeek)
        );
        if let Some(columns) = picture.columns.take() {
            picture.cells = lagesbild_proto::columns::picture_rows(
                &columns,
                picture.cell_size_m,
                profile,
                &picture.answers,
            );
        }
        picture_json(&picture)
    };
    Ok(json_response(StatusCode::OK, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lagesbild_proto::v1::{GridCell, PeerAnswer, PictureCell, ReleasedCount};
    use std::collections::BTreeSet;

    fn keys(value: &Value) -> BTreeSet<String> {
        value.as_object().unwrap().keys().cloned().collect()
    }

    fn schema_keys(document: &Value, name: &str) -> (BTreeSet<String>, BTreeSet<String>) {
        let schema = &document["components"]["schemas"][name];
        let properties = keys(&schema["properties"]);
        let required = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        (properties, required)
    }

    /// The checked-in document describes what the code serves: the same
    /// paths, and every field of the answer, no more and no fewer.
    #[test]
    fn the_openapi_document_matches_the_implementation() {
        let document: Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        assert!(document["openapi"].as_str().unwrap().starts_with("3."));
        let paths: BTreeSet<String> = keys(&document["paths"]);
        let served: BTreeSet<String> = API_ROUTES.iter().map(|p| p.to_string()).collect();
        assert_eq!(paths, served);
        let picture = SituationPicture {
            home_org: "polisen".into(),
            cell_size_m: 250,
            bucket: BucketKind::Day as i32,
            cells: vec![PictureCell {
                value: Some(ReleasedCount {
                    cell: Some(GridCell {
                        size_m: 250,
                        easting: 674_250,
                        northing: 6_581_000,
                    }),
                    category: Category::Violence as i32,
                    count: 4,
                    ..Default::default()
                }),
                contributors: vec![0],
                withheld_by: vec![1],
            }],
            answers: vec![
                PeerAnswer {
                    org: "polisen".into(),
                    status: AnswerStatus::Ok as i32,
                    ..Default::default()
                },
                PeerAnswer {
                    org: "scandic".into(),
                    status: AnswerStatus::Ok as i32,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let mut picture = picture;
        let json = picture_json(&picture);
        for (name, value) in [
            ("Picture", &json),
            ("Cell", &json["cells"][0]),
            ("Answer", &json["answers"][0]),
        ] {
            let (properties, required) = schema_keys(&document, name);
            assert_eq!(properties, keys(value), "{name}");
            assert_eq!(required, keys(value), "{name}");
        }
        assert_eq!(json["cells"][0]["category"], "violence");
        assert_eq!(json["cells"][0]["withheld_by"][0], "scandic");
        // The same picture in columns: the same values, each cell once.
        let rows = std::mem::take(&mut picture.cells);
        let mut doubled = rows.clone();
        doubled.push(PictureCell {
            value: Some(ReleasedCount {
                category: Category::Theft as i32,
                count: 7,
                ..rows[0].value.unwrap()
            }),
            contributors: vec![0, 1],
            withheld_by: vec![],
        });
        picture.columns = Some(lagesbild_proto::v1::PictureColumns {
            values: Some(lagesbild_proto::columns::columns_of(
                &doubled.iter().map(|c| c.value.unwrap()).collect::<Vec<_>>(),
            )),
            contributor_count: vec![1, 2],
            contributors: vec![0, 0, 1],
        });
        // polisen covers both categories, scandic violence only: scandic
        // withheld the violence value, nobody the theft value.
        picture.answers[0].categories = vec![Category::Violence as i32, Category::Theft as i32];
        picture.answers[1].categories = vec![Category::Violence as i32];
        let columns = picture_columns_json(&picture);
        for (name, value) in [
            ("PictureColumns", &columns),
            ("GridCell", &columns["grid"][0]),
            ("ValueColumns", &columns["values"]),
        ] {
            let (properties, required) = schema_keys(&document, name);
            assert_eq!(properties, keys(value), "{name}");
            assert_eq!(required, keys(value), "{name}");
        }
        assert_eq!(columns["grid"].as_array().unwrap().len(), 1, "one cell");
        assert_eq!(columns["categories"], json!(["violence", "theft"]));
        assert_eq!(columns["values"]["category"], json!([0, 1]));
        assert_eq!(columns["values"]["cell"], json!([0, 0]));
        assert_eq!(columns["values"]["count"], json!([4, 7]));
        assert_eq!(columns["values"]["contributors"], json!([[0], [0, 1]]));
        assert_eq!(columns["values"]["withheld_by"], json!([[1], []]));
        assert_eq!(json["answers"][0]["status"], "ok");
        let statuses: BTreeSet<String> = document["components"]["schemas"]["Answer"]["properties"]
            ["status"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        for status in [
            AnswerStatus::Ok,
            AnswerStatus::Denied,
            AnswerStatus::Unavailable,
            AnswerStatus::Timeout,
            AnswerStatus::BudgetExhausted,
            AnswerStatus::Error,
            AnswerStatus::WitnessAlarm,
        ] {
            assert!(
                statuses.contains(&short(status.as_str_name(), "ANSWER_STATUS_")),
                "{status:?}"
            );
        }
    }

    #[test]
    fn the_events_schemas_match_what_is_sent() {
        use lagesbild_proto::v1::{Alert, EventRecall, SituationEvent};
        let document: Value = serde_json::from_str(OPENAPI).unwrap();
        let event = WatchItem {
            seq: 7,
            item: Some(watch_item::Item::Event(SituationEvent {
                id: "e1".into(),
                org: "scandic".into(),
                category: Category::Theft as i32,
                cell: Some(GridCell {
                    size_m: 250,
                    easting: 674_000,
                    northing: 6_580_750,
                }),
                ..Default::default()
            })),
            alerts: vec![Alert {
                rule: "r".into(),
                playbook: "p".into(),
                actions: vec!["a".into()],
            }],
            ..Default::default()
        };
        let (kind, json) = watch_json(&event);
        assert_eq!(kind, "event");
        let (properties, required) = schema_keys(&document, "Event");
        assert_eq!(properties, keys(&json));
        assert_eq!(required, keys(&json));
        assert_eq!(json["corners"].as_array().unwrap().len(), 4);
        let recall = WatchItem {
            seq: 8,
            item: Some(watch_item::Item::Recall(EventRecall {
                id: "e1".into(),
                org: "scandic".into(),
                reason: RecallReason::EnteredInError as i32,
            })),
            ..Default::default()
        };
        let (kind, json) = watch_json(&recall);
        assert_eq!(kind, "recall");
        let (properties, required) = schema_keys(&document, "Recall");
        assert_eq!(properties, keys(&json));
        assert_eq!(required, keys(&json));
        assert_eq!(json["reason"], "entered_in_error");
    }

    #[test]
    fn the_audit_entry_schema_matches_what_is_sent() {
        let document: Value = serde_json::from_str(OPENAPI).unwrap();
        let entry = lagesbild_audit::Entry {
            time_micros: 1,
            direction: lagesbild_audit::Direction::Inbound,
            peer_org: "polisen".into(),
            peer_fingerprint: String::new(),
            token: Default::default(),
            call: "/x".into(),
            request_digest: None,
            decision: lagesbild_audit::Decision::Allowed,
            code: 0,
            reason: String::new(),
            released: Default::default(),
            response_digest: None,
            receipt: None,
            refused_connection: None,
        };
        let mut value = serde_json::to_value(&entry).unwrap();
        value["index"] = json!(3);
        let (properties, required) = schema_keys(&document, "AuditEntry");
        assert_eq!(properties, keys(&value));
        assert_eq!(required, keys(&value));
        let token = keys(
            &document["components"]["schemas"]["AuditEntry"]["properties"]["token"]["properties"],
        );
        assert_eq!(token, keys(&value["token"]));
        let released = keys(
            &document["components"]["schemas"]["AuditEntry"]["properties"]["released"]
                ["properties"],
        );
        assert_eq!(released, keys(&value["released"]));
    }

    #[test]
    fn the_partners_schema_matches_what_is_sent() {
        let document: Value = serde_json::from_str(OPENAPI).unwrap();
        let status = lagesbild_proto::v1::FederationStatusResponse {
            org: "polisen".into(),
            peers: vec![lagesbild_proto::v1::PeerStatus {
                org: "scandic".into(),
                ..Default::default()
            }],
        };
        let json = partners_json(&status);
        let (properties, required) = schema_keys(&document, "Partner");
        assert_eq!(properties, keys(&json["peers"][0]));
        assert_eq!(required, keys(&json["peers"][0]));
    }

    #[test]
    fn the_map_offers_every_category_the_api_takes() {
        let all: BTreeSet<String> = (1..)
            .map_while(|v| Category::try_from(v).ok())
            .map(|c| short(c.as_str_name(), "CATEGORY_"))
            .collect();
        let offered: BTreeSet<String> = crate::pages::CATEGORIES
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(offered, all);
    }

    #[test]
    fn a_bad_query_is_named() {
        let query = |categories: &str, bucket: Option<&str>| PictureQuery {
            from: None,
            to: None,
            categories: Some(categories.into()),
            cell: None,
            bucket: bucket.map(String::from),
            top: None,
            purpose: None,
            form: None,
        };
        assert!(filters(&query("violence,dark_area", Some("hour"))).is_ok());
        assert_eq!(
            filters(&query("violense", None)).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            filters(&query("", Some("fortnight"))).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            filters(&query("unspecified", None)).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }
}
