//! The log layer: one access-log entry per call, on disk before the answer
//! leaves, its receipt in the answer; and one more when a stream ends.

use super::{now_micros, BoxFuture, Verdict};
use crate::wire::{
    grpc_status, receipt_value, Digest, Digesting, MessageCounter, Replay, RECEIPT_HEADER,
};
use http_body_util::BodyExt;
use lagesbild_audit::{AuditLog, Decision, Direction, Entry, Released, TokenFacts};
use lagesbild_transport::PeerInfo;
use lagesbild_vocabulary::SharedClock;
use std::pin::Pin;
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::Status;

/// What the log recorded of a call, for the layers outside it (a response
/// extension).
#[derive(Debug, Clone, Copy)]
pub struct Recorded {
    /// The gRPC status code the entry holds.
    pub code: u32,
}

fn recorded(mut response: http::Response<Body>, code: u32) -> http::Response<Body> {
    response.extensions_mut().insert(Recorded { code });
    response
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

/// What a service adds to the reason of a call it answered with OK (a response
/// extension): refusals of parts of the call, so the log names them too.
#[derive(Debug, Clone)]
pub struct CallNote(pub String);

/// Records every call in the access log before its answer leaves.
#[derive(Debug, Clone)]
pub struct LogLayer {
    log: AuditLog,
    clock: SharedClock,
}

impl LogLayer {
    /// Recording in `log`, entries dated by `clock`.
    pub fn new(log: AuditLog, clock: SharedClock) -> Self {
        Self { log, clock }
    }
}

impl<S> tower::Layer<S> for LogLayer {
    type Service = LogService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LogService {
            inner,
            log: self.log.clone(),
            clock: self.clock.clone(),
        }
    }
}

/// The service [`LogLayer`] wraps.
#[derive(Debug, Clone)]
pub struct LogService<S> {
    inner: S,
    log: AuditLog,
    clock: SharedClock,
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
async fn refuse(log: &AuditLog, entry: &mut Entry, status: Status) -> http::Response<Body> {
    entry.code = status.code() as u32;
    entry.decision = Decision::of_grpc_code(entry.code);
    entry.reason = status.message().to_owned();
    entry.released = Released::default();
    match log.append(entry).await {
        Ok(receipt) => recorded(
            status_answer(&status, Some(&receipt_value(&receipt))),
            entry.code,
        ),
        Err(e) => unlogged(e),
    }
}

/// A streamed answer: logged as it starts, with the receipt in its headers,
/// and again when it ends ([`StreamEnd`]).
async fn stream_answer(
    log: AuditLog,
    mut entry: Entry,
    response: http::Response<Body>,
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
    let receipt = match log.append(&entry).await {
        Ok(receipt) => receipt,
        Err(e) => return unlogged(e),
    };
    if let Ok(value) = receipt_value(&receipt).parse() {
        parts.headers.insert(RECEIPT_HEADER, value);
    }
    let code = entry.code;
    // What the stream sent is logged when it ends.
    let end = (entry.code == 0).then(|| StreamEnd {
        entry,
        digest: Digest::default(),
        counter: MessageCounter::default(),
        log,
    });
    recorded(
        http::Response::from_parts(parts, Body::new(EndLogged { inner: body, end })),
        code,
    )
}

/// A unary answer: held until its entry (with the response's digest) is on
/// disk, then sent with the receipt in its trailers.
async fn unary_answer(
    log: &AuditLog,
    entry: &mut Entry,
    note: Option<String>,
    response: http::Response<Body>,
) -> http::Response<Body> {
    let (mut parts, body) = response.into_parts();
    let (data, mut trailers) = match body.collect().await {
        Ok(collected) => {
            let trailers = collected.trailers().cloned();
            (collected.to_bytes(), trailers)
        }
        // The answer broke while being encoded: log that, send the status.
        Err(status) => return refuse(log, entry, status).await,
    };
    let (code, reason) = grpc_status(&parts.headers, trailers.as_ref());
    if let Some(status) = crate::wire::oversize(code, &reason) {
        return refuse(log, entry, status).await;
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
    let receipt = match log.append(entry).await {
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
    recorded(
        http::Response::from_parts(parts, Body::new(Replay::new(data, trailers))),
        code,
    )
}

fn unlogged(error: impl std::fmt::Display) -> http::Response<Body> {
    tracing::error!(error = %error, "access log could not record a call; answer withheld");
    let response = Status::unavailable(
        "the node could not record this call in its access log; nothing was answered",
    )
    .into_http();
    recorded(response, tonic::Code::Unavailable as u32)
}

impl<S> tower::Service<http::Request<Body>> for LogService<S>
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

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let (peer_org, peer_fingerprint) = request
            .extensions()
            .get::<PeerInfo>()
            .map(|p| (p.identity.org.clone(), p.identity.fingerprint.clone()))
            .unwrap_or_default();
        let mut entry = Entry {
            time_micros: self.clock.unix_micros(),
            direction: Direction::Inbound,
            peer_org,
            peer_fingerprint,
            token: TokenFacts::default(),
            call: request.uri().path().to_owned(),
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
        let request_digest = Digest::default();
        let request = request.map(|body| Body::new(Digesting::new(body, request_digest.clone())));
        // The clone that was made ready is the one that must be called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let mut response = inner.call(request).await?;
            let streams = match response.extensions_mut().remove::<Verdict>() {
                Some(Verdict::Refused(status)) => return Ok(refuse(&log, &mut entry, status).await),
                Some(Verdict::Allowed { streams, token }) => {
                    entry.token = *token;
                    streams
                }
                // No check inside this layer: logged as a unary call.
                None => false,
            };
            // A sign-in names the person it verified only in its answer.
            if let Some(facts) = response.extensions_mut().remove::<TokenFacts>() {
                entry.token = facts;
            }
            entry.request_digest = Some(request_digest.finish());
            if let Some(released) = response.extensions().get::<Released>() {
                entry.released = *released;
            }
            if streams {
                return Ok(stream_answer(log, entry, response).await);
            }
            let note = response.extensions().get::<CallNote>().map(|n| n.0.clone());
            Ok(unary_answer(&log, &mut entry, note, response).await)
        })
    }
}
