//! `lagesbild.v1.SessionService`: the org's own people sign in to their node.

use lagesbild_audit::TokenFacts;
use lagesbild_auth::{bearer_token, AUTHORIZATION};
use lagesbild_people::{ActiveSession, People, SignInError};
use lagesbild_proto::v1::session_service_server::SessionService;
use lagesbild_proto::v1::{
    SessionInfo, SignInRequest, SignInResponse, SignOutRequest, SignOutResponse, WhoAmIRequest,
};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The session service of one node.
#[derive(Debug, Clone)]
pub struct SessionApi {
    people: Arc<People>,
}

impl SessionApi {
    /// Signing in the people of `people`.
    pub fn new(people: Arc<People>) -> Self {
        Self { people }
    }
}

fn info(session: &ActiveSession) -> SessionInfo {
    SessionInfo {
        subject: session.person.sub.clone(),
        issuer: session.person.issuer.clone(),
        roles: session.roles.iter().map(|r| r.name().to_owned()).collect(),
        expires_at: session.expires,
        session_id: session.id.0.clone(),
    }
}

/// Longest account name or password heard; longer ones are refused unread.
const MAX_CREDENTIAL_BYTES: usize = 1024;

#[tonic::async_trait]
impl SessionService for SessionApi {
    async fn sign_in(
        &self,
        request: Request<SignInRequest>,
    ) -> Result<Response<SignInResponse>, Status> {
        let SignInRequest { account, password } = request.into_inner();
        if account.is_empty() || account.len() > MAX_CREDENTIAL_BYTES {
            return Err(Status::invalid_argument(format!(
                "account: give the account's name (at most {MAX_CREDENTIAL_BYTES} bytes)"
            )));
        }
        if password.len() > MAX_CREDENTIAL_BYTES {
            return Err(Status::invalid_argument(format!(
                "password: at most {MAX_CREDENTIAL_BYTES} bytes"
            )));
        }
        let people = self.people.clone();
        // The password hash is slow by design: off the async threads.
        let signed = tokio::task::spawn_blocking(move || people.sign_in(&account, &password))
            .await
            .map_err(|_| Status::internal("the sign-in check stopped"))?
            .map_err(|e| match e {
                SignInError::Limited { .. } => Status::resource_exhausted(e.to_string()),
                SignInError::Wrong { .. } | SignInError::Disabled { .. } => {
                    Status::unauthenticated(e.to_string())
                }
            })?;
        tracing::info!(person = %signed.session.person.label(), session = %signed.session.id, "signed in");
        let facts = TokenFacts {
            sub: signed.session.person.label(),
            act: String::new(),
            jti: format!("session:{}", signed.session.id),
            purpose: String::new(),
        };
        let mut response = Response::new(SignInResponse {
            info: Some(info(&signed.session)),
            session: signed.secret,
        });
        // For the access log, which otherwise knows only who called, not who
        // signed in.
        response.extensions_mut().insert(facts);
        Ok(response)
    }

    async fn who_am_i(
        &self,
        request: Request<WhoAmIRequest>,
    ) -> Result<Response<SessionInfo>, Status> {
        let session = request
            .extensions()
            .get::<ActiveSession>()
            .ok_or_else(|| Status::unauthenticated("no session: sign in first"))?;
        Ok(Response::new(info(session)))
    }

    async fn sign_out(
        &self,
        request: Request<SignOutRequest>,
    ) -> Result<Response<SignOutResponse>, Status> {
        let secret = request
            .metadata()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .ok_or_else(|| Status::unauthenticated("no session: sign in first"))?;
        self.people.sign_out(secret);
        Ok(Response::new(SignOutResponse {}))
    }
}
