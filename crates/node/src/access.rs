//! The access layer: the one place every call to a node passes through.
//!
//! For each call it checks the caller ([`crate::auth::check`]), lets the service
//! answer, and then writes one access-log entry for the decision (who, which
//! token, which call, digests of the request and response bytes as they crossed
//! the wire, the status, what was released) and waits until that entry is on
//! disk. Only then does the answer leave, carrying the receipt (log index, leaf
//! hash, checkpoint) in its trailers. If the log can't record the call, the
//! answer is withheld and the caller gets `UNAVAILABLE`: nothing leaves unlogged.

use crate::metrics::Metrics;
use crate::wire::{
    grpc_status, receipt_value, Digest, Digesting, MessageCounter, Replay, RECEIPT_HEADER,
};
use http_body_util::BodyExt;
use lagesbild_audit::{AuditLog, Decision, Direction, Entry, Released, TokenFacts};
use lagesbild_auth::{Authorised, Verifier};
use lagesbild_transport::PeerInfo;
use lagesbild_vocabulary::{Clock, SharedClock, SystemClock};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tonic::body::Body;
use tonic::Status;

/// Microseconds since the Unix epoch, now, by the wall clock (for the
/// records of parts that are not given a clock of their own).
pub fn now_micros() -> i64 {
    SystemClock.unix_micros()
}

/// The entry of a stream's end: how many messages it sent and their digest,
/// appended when the stream is done (or dropped, when the caller went away).
struct StreamEnd {
    entry: Entry,
    digest: Digest,
    counter: MessageCounter,
    log: AuditLog,
}

impl Drop for StreamEnd {
    fn drop(&mut self) {
        let mut entry = self.entry.clone();
        entry.time_micros = now_micros();
        entry.request_digest = None;
        entry.response_digest = Some(self.digest.finish());
        entry.released = Released {
            values: self.counter.messages(),
            ..Released::default()
        };
        entry.reason = format!("stream ended after {} messages", self.counter.messages());
        let log = self.log.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = log.append_queued(&entry).await {
                    tracing::error!(error = %e, "access log could not record the end of a stream");
                }
            });
        }
    }
}

/// A streamed answer whose end is logged.
struct EndLogged<B> {
    inner: B,
    end: Option<StreamEnd>,
}

impl<B> http_body::Body for EndLogged<B>
where
    B: http_body::Body<Data = bytes::Bytes> + Unpin,
{
    type Data = bytes::Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(end)) = (frame.data_ref(), self.end.as_mut()) {
                    end.digest.update(data);
                    end.counter.feed(data);
                }
            }
            // Ended: log it now rather than when the body is dropped.
            Poll::Ready(None) => drop(self.end.take()),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Appends `entry` (waiting until it is on disk) and counts the call.
async fn record(
    log: &AuditLog,
    metrics: &Metrics,
    entry: &Entry,
    started: Instant,
) -> Result<lagesbild_audit::Receipt, lagesbild_audit::AuditError> {
    let appended = log.append(entry).await;
    metrics.call(
        "inbound",
        &entry.call,
        &entry.peer_org,
        entry.code,
        started.elapsed(),
    );
    appended
}

/// What a service adds to the reason of a call it answered with OK (a response
/// extension): refusals of parts of the call, so the log names them too.
#[derive(Debug, Clone)]
pub struct CallNote(pub String);

/// The tower layer that authorises and logs every call.
#[derive(Debug, Clone)]
pub struct AccessLayer {
    org: Arc<str>,
    verifier: Arc<Verifier>,
    log: AuditLog,
    metrics: Arc<Metrics>,
    clock: SharedClock,
}

impl AccessLayer {
    /// For `org`'s node: checks callers against the authorisation table and
    /// tokens with `verifier`, records every call in `log` and counts it in
    /// `metrics`.
    pub fn new(org: &str, verifier: Arc<Verifier>, log: AuditLog, metrics: Arc<Metrics>) -> Self {
        Self {
            org: org.into(),
            verifier,
            log,
            metrics,
            clock: SystemClock::shared(),
        }
    }

    /// The same layer, dating entries by `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }
}

impl<S> tower::Layer<S> for AccessLayer {
    type Service = AccessService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AccessService {
            inner,
            org: self.org.clone(),
            verifier: self.verifier.clone(),
            log: self.log.clone(),
            metrics: self.metrics.clone(),
            clock: self.clock.clone(),
        }
    }
}

/// The service [`AccessLayer`] wraps around the routes.
#[derive(Debug, Clone)]
pub struct AccessService<S> {
    inner: S,
    org: Arc<str>,
    verifier: Arc<Verifier>,
    log: AuditLog,
    metrics: Arc<Metrics>,
    clock: SharedClock,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

fn token_facts(claims: Option<&Authorised>) -> TokenFacts {
    claims.map_or_else(TokenFacts::default, |c| TokenFacts {
        sub: c.sub.clone(),
        act: c.act.clone().unwrap_or_default(),
        jti: c.jti.clone(),
        purpose: c.purpose.clone(),
    })
}

/// A status answer carrying a receipt.
fn status_answer(status: &Status, receipt: Option<&str>) -> http::Response<Body> {
    let mut response = status.clone().into_http::<Body>();
    if let Some(value) = receipt.and_then(|r| r.parse().ok()) {
        response.headers_mut().insert(RECEIPT_HEADER, value);
    }
    response
}

/// Logs `entry` as ended with `status`, then answers with the status and the
/// entry's receipt (or withholds it if the log could not record it).
async fn refuse(
    log: &AuditLog,
    metrics: &Metrics,
    entry: &mut Entry,
    status: Status,
    started: Instant,
) -> http::Response<Body> {
    entry.code = status.code() as u32;
    entry.decision = Decision::of_grpc_code(entry.code);
    entry.reason = status.message().to_owned();
    entry.released = Released::default();
    match record(log, metrics, entry, started).await {
        Ok(receipt) => status_answer(&status, Some(&receipt_value(&receipt))),
        Err(e) => unlogged(e),
    }
}

/// A streamed answer: logged as it starts, with the receipt in its headers,
/// and again when it ends ([`StreamEnd`]).
async fn stream_answer(
    log: AuditLog,
    metrics: &Metrics,
    mut entry: Entry,
    response: http::Response<Body>,
    started: Instant,
) -> http::Response<Body> {
    let (code, reason) = grpc_status(response.headers(), None);
    entry.code = if response.headers().contains_key("grpc-status") {
        code
    } else {
        0
    };
    entry.decision = Decision::of_grpc_code(entry.code);
    entry.reason = reason;
    let (mut parts, body) = response.into_parts();
    let receipt = match record(&log, metrics, &entry, started).await {
        Ok(receipt) => receipt,
        Err(e) => return unlogged(e),
    };
    if let Ok(value) = receipt_value(&receipt).parse() {
        parts.headers.insert(RECEIPT_HEADER, value);
    }
    // What the stream sent is logged when it ends.
    let end = (entry.code == 0).then(|| StreamEnd {
        entry,
        digest: Digest::default(),
        counter: MessageCounter::default(),
        log,
    });
    http::Response::from_parts(parts, Body::new(EndLogged { inner: body, end }))
}

/// A unary answer: held until its entry (with the response's digest) is on
/// disk, then sent with the receipt in its trailers.
async fn unary_answer(
    log: &AuditLog,
    metrics: &Metrics,
    entry: &mut Entry,
    note: Option<String>,
    response: http::Response<Body>,
    started: Instant,
) -> http::Response<Body> {
    let (mut parts, body) = response.into_parts();
    let (data, mut trailers) = match body.collect().await {
        Ok(collected) => {
            let trailers = collected.trailers().cloned();
            (collected.to_bytes(), trailers)
        }
        // The answer broke while being encoded: log that, send the status.
        Err(status) => return refuse(log, metrics, entry, status, started).await,
    };
    let (code, reason) = grpc_status(&parts.headers, trailers.as_ref());
    if let Some(status) = crate::wire::oversize(code, &reason) {
        return refuse(log, metrics, entry, status, started).await;
    }
    entry.code = code;
    entry.decision = Decision::of_grpc_code(code);
    entry.reason = match note {
        Some(note) if code == 0 => note,
        _ => reason,
    };
    if code != 0 {
        entry.released = Released::default();
    }
    entry.response_digest = Some(Digest::of(&data));
    let receipt = match record(log, metrics, entry, started).await {
        Ok(receipt) => receipt,
        Err(e) => return unlogged(e),
    };
    match (&mut trailers, receipt_value(&receipt).parse().ok()) {
        (Some(trailers), Some(value)) => {
            trailers.insert(RECEIPT_HEADER, value);
        }
        (None, Some(value)) => {
            parts.headers.insert(RECEIPT_HEADER, value);
        }
        _ => {}
    }
    http::Response::from_parts(parts, Body::new(Replay::new(data, trailers)))
}

fn unlogged(error: impl std::fmt::Display) -> http::Response<Body> {
    tracing::error!(error = %error, "access log could not record a call; answer withheld");
    Status::unavailable(
        "the node could not record this call in its access log; nothing was answered",
    )
    .into_http()
}

impl<S> tower::Service<http::Request<Body>> for AccessService<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let arrived = self.clock.unix_micros();
        let started = Instant::now();
        let metrics = self.metrics.clone();
        let path = request.uri().path().to_owned();
        let (peer_org, peer_fingerprint) = request
            .extensions()
            .get::<PeerInfo>()
            .map(|p| (p.identity.org.clone(), p.identity.fingerprint.clone()))
            .unwrap_or_default();
        let mut entry = Entry {
            time_micros: arrived,
            direction: Direction::Inbound,
            peer_org,
            peer_fingerprint,
            token: TokenFacts::default(),
            call: path.clone(),
            request_digest: None,
            decision: Decision::Refused,
            code: 0,
            reason: String::new(),
            released: Released::default(),
            response_digest: None,
            receipt: None,
            refused_connection: None,
        };
        let log = self.log.clone();
        let rule = match crate::auth::check(&self.org, &self.verifier, &mut request) {
            Ok(rule) => rule,
            Err(status) => {
                return Box::pin(async move {
                    Ok(refuse(&log, &metrics, &mut entry, status, started).await)
                })
            }
        };
        entry.token = token_facts(request.extensions().get::<Authorised>());
        let request_digest = Digest::default();
        let request = request.map(|body| Body::new(Digesting::new(body, request_digest.clone())));
        // The clone that was made ready is the one that must be called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let response = inner.call(request).await?;
            entry.request_digest = Some(request_digest.finish());
            if let Some(released) = response.extensions().get::<Released>() {
                entry.released = *released;
            }
            if rule.streams {
                return Ok(stream_answer(log, &metrics, entry, response, started).await);
            }
            let note = response.extensions().get::<CallNote>().map(|n| n.0.clone());
            Ok(unary_answer(&log, &metrics, &mut entry, note, response, started).await)
        })
    }
}
