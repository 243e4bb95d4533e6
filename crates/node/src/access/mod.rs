//! The access layers: every call to a node passes through them, in this order.
//!
//! 1. [`CountLayer`] times the call and counts it in the metrics by the
//!    decision the log recorded.
//! 2. [`LogLayer`] writes one access-log entry for the decision (who, which
//!    token, which call, digests of the request and response bytes as they
//!    crossed the wire, the status, what was released) and waits until that
//!    entry is on disk. Only then does the answer leave, carrying the receipt
//!    (log index, leaf hash, checkpoint). If the log can't record the call, the
//!    answer is withheld and the caller gets `UNAVAILABLE`: nothing leaves
//!    unlogged.
//! 3. [`CheckLayer`] checks the caller against the authorisation table
//!    ([`crate::auth::check`]): certificate, token, scope, own org. A refused
//!    call never reaches a service.
//!
//! Inner layers tell outer ones what they decided through response extensions
//! ([`Verdict`], [`Recorded`]), so each layer can be run and tested alone.
//! Rate limits are the policy's, per peer and per release
//! ([`crate::rate::RateLimits`]), taken where the policy is read.

mod check;
mod count;
mod log;

pub use check::{CheckLayer, CheckService, Verdict};
pub use count::{CountLayer, CountService};
pub use log::{CallNote, LogLayer, LogService, Recorded};

use crate::metrics::Metrics;
use lagesbild_audit::AuditLog;
use lagesbild_vocabulary::{Clock, SharedClock, SystemClock};
use std::sync::Arc;
use tower::layer::util::{Identity, Stack};

/// Microseconds since the Unix epoch, now, by the wall clock (for the
/// records of parts that are not given a clock of their own).
pub fn now_micros() -> i64 {
    SystemClock.unix_micros()
}

/// The layers of a node, outermost first: counted in `metrics`, logged in
/// `log` (entries dated by `clock`), checked by the authorisation table.
pub type AccessLayers = Stack<CheckLayer, Stack<LogLayer, Stack<CountLayer, Identity>>>;

/// The access layers of a node, to put in front of every service: callers
/// checked with what `authority` knows.
pub fn layers(
    authority: Arc<crate::auth::Authority>,
    log: AuditLog,
    metrics: Arc<Metrics>,
    clock: SharedClock,
) -> AccessLayers {
    tower::ServiceBuilder::new()
        .layer(CountLayer::new(metrics))
        .layer(LogLayer::new(log, clock))
        .layer(CheckLayer::new(authority))
        .into_inner()
}

type BoxFuture<T, E> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, E>> + Send>>;

/// The org of the verified certificate the call came with ("" if none).
fn peer_org<B>(request: &http::Request<B>) -> &str {
    request
        .extensions()
        .get::<lagesbild_transport::PeerInfo>()
        .map_or("", |p| p.identity.org.as_str())
}
