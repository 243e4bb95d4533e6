//! The check layer: the caller against the authorisation table.

use super::BoxFuture;
use crate::auth::Authority;
use lagesbild_audit::TokenFacts;
use lagesbild_auth::Authorised;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::Status;

/// What the check decided, for the layers outside it (a response extension).
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Refused with this status; no service saw the call.
    Refused(Status),
    /// Let through.
    Allowed {
        /// Whether the method's answer is a stream.
        streams: bool,
        /// The verified token's facts, for the log.
        token: Box<TokenFacts>,
    },
}

/// Checks every call against the authorisation table before a service sees it.
#[derive(Debug, Clone)]
pub struct CheckLayer {
    authority: Arc<Authority>,
}

impl CheckLayer {
    /// Checking callers with what `authority` knows.
    pub fn new(authority: Arc<Authority>) -> Self {
        Self { authority }
    }
}

impl<S> tower::Layer<S> for CheckLayer {
    type Service = CheckService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CheckService {
            inner,
            authority: self.authority.clone(),
        }
    }
}

/// The service [`CheckLayer`] wraps.
#[derive(Debug, Clone)]
pub struct CheckService<S> {
    inner: S,
    authority: Arc<Authority>,
}

fn token_facts(claims: Option<&Authorised>) -> TokenFacts {
    claims.map_or_else(TokenFacts::default, |c| TokenFacts {
        sub: c.sub.clone(),
        act: c.act.clone().unwrap_or_default(),
        jti: c.jti.clone(),
        purpose: c.purpose.clone(),
    })
}

impl<S> tower::Service<http::Request<Body>> for CheckService<S>
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

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let rule = match crate::auth::check(&self.authority, &mut request) {
            Ok(rule) => rule,
            Err(status) => {
                let mut response = status.clone().into_http::<Body>();
                response.extensions_mut().insert(Verdict::Refused(status));
                return Box::pin(std::future::ready(Ok(response)));
            }
        };
        let verdict = Verdict::Allowed {
            streams: rule.streams,
            token: Box::new(token_facts(request.extensions().get::<Authorised>())),
        };
        let answer = self.inner.call(request);
        Box::pin(async move {
            let mut response = answer.await?;
            response.extensions_mut().insert(verdict);
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lagesbild_identity::{Federation, Member, Role};
    use std::convert::Infallible;
    use tower::{Layer, Service, ServiceExt};

    fn authority() -> Arc<Authority> {
        let key = lagesbild_identity::certs::TokenKey::generate().unwrap();
        let federation = Federation {
            version: 1,
            name: "f".into(),
            members: vec![Member {
                id: "polisen".into(),
                display_name: "Polisen".into(),
                role: Role::Member,
                endpoint: None,
                ca_cert: String::new(),
                token_public_key: key.public_pem,
                log_vkey: None,
            }],
        };
        Arc::new(Authority {
            org: lagesbild_vocabulary::OrgId::parse("polisen").unwrap(),
            verifier: Arc::new(lagesbild_auth::Verifier::new("polisen", &federation).unwrap()),
            workloads: Default::default(),
            people: Arc::new(
                lagesbild_people::People::open(
                    "polisen",
                    None,
                    std::time::Duration::from_secs(60),
                    lagesbild_vocabulary::SystemClock::shared(),
                )
                .unwrap(),
            ),
        })
    }

    #[tokio::test]
    async fn a_call_without_a_certificate_never_reaches_the_service() {
        let reached = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = reached.clone();
        let inner = tower::service_fn(move |_: http::Request<Body>| {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { Ok::<_, Infallible>(http::Response::new(Body::empty())) }
        });
        let mut service = CheckLayer::new(authority()).layer(inner);
        let request = http::Request::builder()
            .uri("/lagesbild.v1.AggregateService/Release")
            .body(Body::empty())
            .unwrap();
        let response = service.ready().await.unwrap().call(request).await.unwrap();
        let Some(Verdict::Refused(status)) = response.extensions().get::<Verdict>() else {
            panic!("not refused: {:?}", response.extensions().get::<Verdict>());
        };
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert_eq!(reached.load(std::sync::atomic::Ordering::SeqCst), 0);
        // Control: health needs only the certificate's TLS, and reaches it.
        let request = http::Request::builder()
            .uri("/grpc.health.v1.Health/Check")
            .body(Body::empty())
            .unwrap();
        let response = service.ready().await.unwrap().call(request).await.unwrap();
        assert!(matches!(
            response.extensions().get::<Verdict>(),
            Some(Verdict::Allowed { .. })
        ));
        assert_eq!(reached.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
