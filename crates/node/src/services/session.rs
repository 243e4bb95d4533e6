//! `lagesbild.v1.SessionService`: the org's own people sign in to their node.

use lagesbild_audit::TokenFacts;
use lagesbild_auth::{bearer_token, AUTHORIZATION};
use lagesbild_people::oidc::{OidcError, OidcVerifier};
use lagesbild_people::{ActiveSession, People, SignInError, SignedIn};
use lagesbild_proto::v1::session_service_server::SessionService;
use lagesbild_proto::v1::{
    ExchangeRequest, OptionsRequest, SessionInfo, SignInOptions, SignInRequest, SignInResponse,
    SignOutRequest, SignOutResponse, WhoAmIRequest,
};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The session service of one node.
#[derive(Debug, Clone)]
pub struct SessionApi {
    people: Arc<People>,
    provider: Option<Arc<OidcVerifier>>,
}

impl SessionApi {
    /// Signing in the people of `people`, with the org's identity provider if
    /// it has one.
    pub fn new(people: Arc<People>, provider: Option<Arc<OidcVerifier>>) -> Self {
        Self { people, provider }
    }
}

/// The scopes the command line and the console ask the provider for.
const OIDC_SCOPES: [&str; 3] = ["openid", "profile", "groups"];

/// The answer to a sign-in, with the log's facts about it.
fn signed_in(signed: SignedIn) -> Response<SignInResponse> {
    tracing::info!(person = %signed.session.person.label(), session = %signed.session.id, "signed in");
    let facts = TokenFacts {
        sub: signed.session.person.label(),
        act: String::new(),
        jti: signed.session.id.log_name(),
        purpose: String::new(),
    };
    let mut response = Response::new(SignInResponse {
        info: Some(info(&signed.session)),
        session: signed.secret,
    });
    // For the access log, which otherwise knows only who called, not who
    // signed in.
    response.extensions_mut().insert(facts);
    response
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
/// Longest ID token heard.
const MAX_ID_TOKEN_BYTES: usize = 16 * 1024;

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
        Ok(signed_in(signed))
    }

    async fn options(
        &self,
        _request: Request<OptionsRequest>,
    ) -> Result<Response<SignInOptions>, Status> {
        let (issuer, client_id) = self.provider.as_ref().map_or_else(Default::default, |p| {
            (p.settings().issuer.clone(), p.settings().client_id.clone())
        });
        Ok(Response::new(SignInOptions {
            local_accounts: self.people.has_accounts(),
            oidc_scopes: if issuer.is_empty() {
                vec![]
            } else {
                OIDC_SCOPES.map(String::from).to_vec()
            },
            oidc_issuer: issuer,
            oidc_client_id: client_id,
        }))
    }

    async fn exchange(
        &self,
        request: Request<ExchangeRequest>,
    ) -> Result<Response<SignInResponse>, Status> {
        let Some(provider) = &self.provider else {
            return Err(Status::failed_precondition(
                "this node trusts no identity provider ([people.oidc] in node.toml); sign in with an account of the node",
            ));
        };
        let id_token = request.into_inner().id_token;
        if id_token.is_empty() || id_token.len() > MAX_ID_TOKEN_BYTES {
            return Err(Status::invalid_argument(format!(
                "id_token: give the identity provider's ID token (at most {MAX_ID_TOKEN_BYTES} bytes)"
            )));
        }
        let person = provider.verify(&id_token).await.map_err(|e| match e {
            OidcError::Provider { .. } => Status::unavailable(e.to_string()),
            OidcError::NoRole { .. } => Status::permission_denied(e.to_string()),
            _ => Status::unauthenticated(e.to_string()),
        })?;
        Ok(signed_in(self.people.sign_in_verified(person)))
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
