//! The outbound half of the access log: every call this node makes to a peer
//! goes through an [`AuditedChannel`], which records it as an outbound entry
//! with the peer's receipt.
//!
//! Outbound entries are queued, not awaited: the log writes in queue order, so
//! the inbound entry of the call that caused them (awaited before its answer
//! leaves) makes them durable too.

use crate::access::now_micros;
use crate::metrics::Metrics;
use crate::wire::{grpc_messages, grpc_status, receipt_in, Digest, Digesting, Replay};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http_body_util::BodyExt;
use lagesbild_audit::{AuditLog, Decision, Direction, Entry, Released, TokenFacts};
use lagesbild_transport::ServerFingerprint;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::transport::Channel;

/// Errors of an audited call (the channel's, passed through).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A channel to one peer whose every call is logged.
#[derive(Debug, Clone)]
pub struct AuditedChannel {
    inner: Channel,
    peer_org: Arc<str>,
    fingerprint: ServerFingerprint,
    log: AuditLog,
    metrics: Arc<Metrics>,
}

impl AuditedChannel {
    /// Logs the calls made over `inner` to `peer_org`'s node in `log`, and
    /// counts them in `metrics`.
    pub fn new(
        inner: Channel,
        peer_org: &str,
        fingerprint: ServerFingerprint,
        log: AuditLog,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            inner,
            peer_org: peer_org.into(),
            fingerprint,
            log,
            metrics,
        }
    }
}

/// The claims of this node's own token on an outgoing call (it signed them;
/// they are read for the log, not trusted for anything).
fn own_token_facts(headers: &http::HeaderMap) -> TokenFacts {
    #[derive(serde::Deserialize, Default)]
    struct Claims {
        #[serde(default)]
        sub: String,
        #[serde(default)]
        act: Option<lagesbild_auth::Actor>,
        #[serde(default)]
        jti: String,
        #[serde(default)]
        purpose: String,
    }
    let claims = headers
        .get(lagesbild_auth::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(lagesbild_auth::bearer_token)
        .and_then(|token| token.split('.').nth(1))
        .and_then(|payload| URL_SAFE_NO_PAD.decode(payload).ok())
        .and_then(|json| serde_json::from_slice::<Claims>(&json).ok())
        .unwrap_or_default();
    TokenFacts {
        sub: claims.sub,
        act: claims.act.map(|a| a.label()).unwrap_or_default(),
        jti: claims.jti,
        purpose: claims.purpose,
    }
}

/// What an aggregate answer released, read from its wire bytes: one release
/// (`Release`) or the released outcomes of several (`ReleaseMany`), summed;
/// cells are counted once however many releases name them.
fn released_in(path: &str, body: &[u8]) -> Released {
    use crate::auth::Releases;
    use lagesbild_proto::v1::{AggregateRelease, ReleaseManyResponse};
    use prost::Message;
    let Some(message) = grpc_messages(body).first().copied() else {
        return Released::default();
    };
    let releases: Vec<AggregateRelease> = match crate::auth::rule_for(path).releases {
        Releases::One => AggregateRelease::decode(message).into_iter().collect(),
        Releases::Many => ReleaseManyResponse::decode(message)
            .map(|many| {
                many.outcomes
                    .into_iter()
                    .filter_map(|o| o.release)
                    .collect()
            })
            .unwrap_or_default(),
        Releases::Nothing => return Released::default(),
    };
    let mut cells = std::collections::BTreeSet::new();
    let mut released = Released::default();
    for release in &releases {
        cells.extend(
            release
                .counts
                .iter()
                .filter_map(|c| c.cell.map(|g| (g.size_m, g.easting, g.northing))),
        );
        released.values += release.counts.len() as u64;
        if let Some(columns) = &release.columns {
            let n = columns.checked_len().unwrap_or(0);
            // Totals (category unspecified) name no cell, as in the rows.
            cells.extend(
                (0..n)
                    .filter(|&i| columns.category[i] != 0)
                    .map(|i| (release.cell_size_m, columns.easting[i], columns.northing[i])),
            );
            released.values += n as u64;
        }
        released.epsilon_micros += (release.epsilon * 1e6).round().max(0.0) as u64;
    }
    released.cells = cells.len() as u64;
    released
}

/// Queues `entry` in the log (ahead of the inbound entry that will wait for
/// it) and counts the call.
async fn record(
    log: &AuditLog,
    metrics: &Metrics,
    entry: &Entry,
    started: std::time::Instant,
) -> Result<(), lagesbild_audit::AuditError> {
    metrics.call(
        "outbound",
        &entry.call,
        &entry.peer_org,
        entry.code,
        started.elapsed(),
    );
    log.append_queued(entry).await
}

/// Logs the entry if the call is dropped before it ends (the caller's deadline).
struct Abandoned {
    entry: Option<Entry>,
    log: AuditLog,
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        if let Some(mut entry) = self.entry.take() {
            entry.decision = Decision::Failed;
            entry.code = tonic::Code::DeadlineExceeded as u32;
            entry.reason = "abandoned by this node before an answer came (deadline)".into();
            let log = self.log.clone();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    if let Err(e) = log.append_queued(&entry).await {
                        tracing::error!(error = %e, "access log could not record an abandoned call");
                    }
                });
            }
        }
    }
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl tower::Service<http::Request<Body>> for AuditedChannel {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::poll_ready(&mut self.inner, cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let entry = Entry {
            time_micros: now_micros(),
            direction: Direction::Outbound,
            peer_org: self.peer_org.to_string(),
            peer_fingerprint: self.fingerprint.get(),
            token: own_token_facts(request.headers()),
            call: path.clone(),
            request_digest: None,
            decision: Decision::Failed,
            code: 0,
            reason: String::new(),
            released: Released::default(),
            response_digest: None,
            receipt: None,
            refused_connection: None,
        };
        let request_digest = Digest::default();
        let request = request.map(|body| Body::new(Digesting::new(body, request_digest.clone())));
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let log = self.log.clone();
        let fingerprint = self.fingerprint.clone();
        let metrics = self.metrics.clone();
        let started = std::time::Instant::now();
        Box::pin(async move {
            let mut pending = Abandoned {
                entry: Some(entry),
                log: log.clone(),
            };
            let outcome = tower::Service::call(&mut inner, request).await;
            let mut entry = pending.entry.take().expect("set above");
            entry.request_digest = Some(request_digest.finish());
            entry.peer_fingerprint = fingerprint.get();
            let response = match outcome {
                Ok(response) => response,
                Err(e) => {
                    entry.code = tonic::Code::Unavailable as u32;
                    entry.reason = format!("no answer: {e}");
                    record(&log, &metrics, &entry, started).await?;
                    return Err(e.into());
                }
            };
            let (parts, body) = response.into_parts();
            if crate::auth::rule_for(&path).streams {
                // Logged as it opens, with the receipt the peer sent in its headers.
                let opened = !parts.headers.contains_key("grpc-status");
                let (code, reason) = if opened {
                    (0, "stream opened".to_owned())
                } else {
                    grpc_status(&parts.headers, None)
                };
                entry.code = code;
                entry.decision = Decision::of_grpc_code(code);
                entry.reason = reason;
                entry.receipt = receipt_in(&parts.headers, None);
                record(&log, &metrics, &entry, started).await?;
                return Ok(http::Response::from_parts(parts, body));
            }
            let collected = match body.collect().await {
                Ok(collected) => collected,
                Err(status) => {
                    entry.code = status.code() as u32;
                    entry.reason = format!("answer broke off: {}", status.message());
                    record(&log, &metrics, &entry, started).await?;
                    return Err(status.into());
                }
            };
            let trailers = collected.trailers().cloned();
            let data = collected.to_bytes();
            let (code, reason) = grpc_status(&parts.headers, trailers.as_ref());
            entry.code = code;
            entry.decision = Decision::of_grpc_code(code);
            entry.reason = reason;
            entry.response_digest = Some(Digest::of(&data));
            entry.receipt = receipt_in(&parts.headers, trailers.as_ref());
            if code == 0 {
                entry.released = released_in(&path, &data);
            }
            record(&log, &metrics, &entry, started).await?;
            Ok(http::Response::from_parts(
                parts,
                Body::new(Replay::new(data, trailers)),
            ))
        })
    }
}
