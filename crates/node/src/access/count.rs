//! The count layer: every call timed and counted in the metrics.

use super::{peer_org, BoxFuture, Recorded};
use crate::metrics::Metrics;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tonic::body::Body;

/// Counts every call by method, peer and decision, and times it.
#[derive(Debug, Clone)]
pub struct CountLayer {
    metrics: Arc<Metrics>,
}

impl CountLayer {
    /// Counting in `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> tower::Layer<S> for CountLayer {
    type Service = CountService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CountService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service [`CountLayer`] wraps.
#[derive(Debug, Clone)]
pub struct CountService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> tower::Service<http::Request<Body>> for CountService<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>,
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
        let started = Instant::now();
        let path = request.uri().path().to_owned();
        let peer = peer_org(&request).to_owned();
        let metrics = self.metrics.clone();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            // The code the log recorded; without a log (the bench's
            // comparison), the one in the headers, else OK (in the trailers).
            let code = match response.extensions().get::<Recorded>() {
                Some(recorded) => recorded.code,
                None => crate::wire::header_code(response.headers()).unwrap_or(0),
            };
            metrics.call("inbound", &path, &peer, code, started.elapsed());
            Ok(response)
        })
    }
}
