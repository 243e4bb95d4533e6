//! The authorisation layer every call passes through, in front of all services.
//!
//! It reads the caller's organisation from the verified TLS connection and its
//! token from `authorization: Bearer`, verifies the token for that organisation
//! ([`lagesbild_auth::Verifier`]), checks the scope the called service needs, and
//! hands the [`Authorised`] claims to the service in the request's extensions.
//! Health checks and reflection need no token (they carry no data).

use lagesbild_auth::{bearer_token, AuthError, Authorised, Verifier, AUTHORIZATION};
use lagesbild_transport::PeerInfo;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::codegen::http;
use tonic::Status;

/// What a call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Nothing beyond the TLS client certificate.
    Certificate,
    /// A valid token, whatever its scopes.
    Token,
    /// A valid token with this scope.
    Scope(&'static str),
}

/// The requirement for a gRPC method path.
pub fn requirement(path: &str) -> Requirement {
    let service = path.trim_start_matches('/').split('/').next().unwrap_or("");
    match service {
        "grpc.health.v1.Health"
        | "grpc.reflection.v1.ServerReflection"
        | "grpc.reflection.v1alpha.ServerReflection" => Requirement::Certificate,
        "lagesbild.v1.ReportService" => Requirement::Scope("report:write"),
        "lagesbild.v1.AggregateService" | "lagesbild.v1.PictureService" => {
            Requirement::Scope("aggregate:read")
        }
        "lagesbild.v1.PolicyService" => Requirement::Scope("policy:admin"),
        _ => Requirement::Token,
    }
}

/// The verified claims of a request, put there by [`AuthLayer`].
pub fn authorised<T>(request: &tonic::Request<T>) -> Result<&Authorised, Status> {
    request
        .extensions()
        .get::<Authorised>()
        .ok_or_else(|| Status::unauthenticated("no verified token"))
}

/// The tower layer that checks tokens.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    verifier: Arc<Verifier>,
}

impl AuthLayer {
    /// Checks tokens with `verifier`.
    pub fn new(verifier: Arc<Verifier>) -> Self {
        Self { verifier }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            verifier: self.verifier.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps around the routes.
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    verifier: Arc<Verifier>,
}

/// The status a refused token gets.
pub fn status_of(error: &AuthError) -> Status {
    if error.is_unauthenticated() {
        Status::unauthenticated(error.to_string())
    } else {
        Status::permission_denied(error.to_string())
    }
}

impl<S> AuthService<S> {
    fn check<B>(&self, request: &mut http::Request<B>) -> Result<(), Status> {
        let path = request.uri().path().to_owned();
        let need = requirement(&path);
        if need == Requirement::Certificate {
            return Ok(());
        }
        let Some(peer) = request.extensions().get::<PeerInfo>() else {
            return Err(Status::unauthenticated("no verified client certificate"));
        };
        let org = peer.identity.org.clone();
        let header = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let result = match header.and_then(bearer_token) {
            None => Err(AuthError::Missing),
            Some(token) => self.verifier.verify(token, &org),
        }
        .and_then(|claims| match need {
            Requirement::Scope(scope) => claims.require(scope).map(|()| claims),
            _ => Ok(claims),
        });
        match result {
            Ok(claims) => {
                request.extensions_mut().insert(claims);
                Ok(())
            }
            Err(e) => {
                tracing::warn!(%org, call = %path, reason = %e, "call refused");
                Err(status_of(&e))
            }
        }
    }
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        match self.check(&mut request) {
            Ok(()) => Box::pin(self.inner.call(request)),
            Err(status) => Box::pin(async move { Ok(status.into_http()) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_has_a_requirement() {
        assert_eq!(
            requirement("/grpc.health.v1.Health/Check"),
            Requirement::Certificate
        );
        assert_eq!(
            requirement("/lagesbild.v1.ReportService/SubmitBatch"),
            Requirement::Scope("report:write")
        );
        assert_eq!(
            requirement("/lagesbild.v1.AggregateService/Release"),
            Requirement::Scope("aggregate:read")
        );
        assert_eq!(
            requirement("/lagesbild.v1.PolicyService/Explain"),
            Requirement::Scope("policy:admin")
        );
        assert_eq!(
            requirement("/lagesbild.v1.NodeService/Info"),
            Requirement::Token
        );
        assert_eq!(requirement("/unknown.Service/X"), Requirement::Token);
    }
}
