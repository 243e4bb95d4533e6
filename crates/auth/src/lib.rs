//! Tokens: who asks, for what purpose, with which scopes, on whose behalf.
//!
//! Every call to a node carries a JWT signed with the calling organisation's
//! Ed25519 key (`authorization: Bearer …`). A node accepts it only if:
//! - the algorithm is EdDSA (pinned here, never read from the token's header);
//! - it verifies under the key the federation file lists for the organisation of
//!   the **TLS peer**, and its `iss` names that organisation — a token stolen from
//!   one org is useless on another org's connection;
//! - `aud` is this node's organisation, `exp`/`nbf` hold within [`LEEWAY_SECS`];
//! - a delegation token (one with `act`) lives at most [`MAX_DELEGATION_SECS`] and
//!   its `jti` has not been seen before.
//!
//! Which scope a call needs, and whether the policy allows the purpose, is the
//! caller's business ([`Authorised::require`]).

#![warn(missing_docs)]

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use lagesbild_identity::{Federation, Role};
use lagesbild_vocabulary::{Clock, OrgId, SharedClock, SystemClock};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The gRPC metadata in which a person or machine client states the purpose
/// of a call (a token carries its own in `purpose`).
pub const PURPOSE_HEADER: &str = "lagesbild-purpose";

/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECS: u64 = 30;
/// The longest a delegation token may live.
pub const MAX_DELEGATION_SECS: u64 = 60;
/// The longest any token may live.
pub const MAX_TTL_SECS: u64 = 24 * 3600;

/// The person or service a node acts for on a federated call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// Who, as their issuer names them.
    pub sub: String,
    /// Who verified them at the home node: an identity provider's issuer, or
    /// `local:<org>` for the node's own accounts. Absent for a service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// The role they act in (e.g. `analyst`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

impl Actor {
    /// A service or person named by `sub` alone.
    pub fn named(sub: &str) -> Self {
        Self {
            sub: sub.to_owned(),
            iss: None,
            role: None,
        }
    }

    /// How logs name them: `sub (iss)`, or `sub` alone.
    pub fn label(&self) -> String {
        match &self.iss {
            Some(iss) => format!("{} ({iss})", self.sub),
            None => self.sub.clone(),
        }
    }
}

/// A token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The issuing organisation.
    pub iss: String,
    /// The person or service.
    pub sub: String,
    /// The organisation whose node is called.
    pub aud: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Not before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issued at.
    pub iat: u64,
    /// Unique id.
    pub jti: String,
    /// Space-separated scopes.
    pub scope: String,
    /// Why the data is asked for.
    pub purpose: String,
    /// On a federated call: the person the home node acts for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
}

/// Why a token is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `authorization: Bearer` header.
    #[error("no token: send `authorization: Bearer <JWT>`")]
    Missing,
    /// The token is not valid (signature, algorithm, time, audience, issuer, shape).
    #[error("token refused: {0}")]
    Invalid(String),
    /// A delegation token seen before.
    #[error("token refused: delegation token {jti} was already used")]
    Replayed {
        /// Its id.
        jti: String,
    },
    /// The token is valid but does not allow the call.
    #[error("{0}")]
    Forbidden(String),
}

impl AuthError {
    /// Whether the caller is unknown (UNAUTHENTICATED) rather than known but not
    /// allowed (PERMISSION_DENIED).
    pub fn is_unauthenticated(&self) -> bool {
        !matches!(self, Self::Forbidden(_))
    }
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorised {
    /// The calling organisation (= `iss` = the TLS peer's org).
    pub org: OrgId,
    /// The person or service.
    pub sub: String,
    /// On a federated call, who the calling node acts for (their
    /// [`Actor::label`]).
    pub act: Option<String>,
    /// On a call of the node's own people: the verified person, for the
    /// delegation tokens the call leads to.
    pub person: Option<Actor>,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Purpose.
    pub purpose: String,
    /// Token id.
    pub jti: String,
    /// When the token expires, seconds since the Unix epoch: a long call (a
    /// stream) ends there.
    pub expires_at: u64,
    /// The org's role in the federation.
    pub role: Role,
}

impl Authorised {
    /// `Ok` if the token carries `scope` and its org's role may use it.
    pub fn require(&self, scope: Scope) -> Result<(), AuthError> {
        if !self.scopes.iter().any(|s| s == scope.name()) {
            return Err(AuthError::Forbidden(format!(
                "the token of {} ({}) lacks the scope {scope}",
                self.sub, self.org
            )));
        }
        if self.role == Role::Auditor && scope != Scope::AuditRead {
            return Err(AuthError::Forbidden(format!(
                "{} is an auditor: its tokens may only read access logs, not use {scope}",
                self.org
            )));
        }
        Ok(())
    }
}

fn secs(clock: &dyn Clock) -> u64 {
    u64::try_from(clock.unix_seconds()).unwrap_or(0)
}

/// A random token id: 128 bits, hex.
pub fn new_jti() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's secure random generator failed");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Signs tokens for one organisation.
#[derive(Clone)]
pub struct Signer {
    org: String,
    key: EncodingKey,
    clock: SharedClock,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("org", &self.org)
            .finish_non_exhaustive()
    }
}

/// What a token is for.
#[derive(Debug, Clone)]
pub struct Grant<'a> {
    /// The organisation whose node will be called.
    pub audience: &'a str,
    /// The person or service.
    pub subject: &'a str,
    /// Scopes.
    pub scopes: &'a [String],
    /// Purpose.
    pub purpose: &'a str,
    /// Lifetime.
    pub ttl: Duration,
    /// For a delegation: who the node acts for.
    pub act: Option<&'a Actor>,
}

impl Signer {
    /// From the org's Ed25519 private key (PKCS#8 PEM).
    pub fn from_pem(org: &str, pem: &[u8]) -> Result<Self, AuthError> {
        let key = EncodingKey::from_ed_pem(pem)
            .map_err(|e| AuthError::Invalid(format!("token key of {org}: {e}")))?;
        Ok(Self {
            org: org.to_owned(),
            key,
            clock: SystemClock::shared(),
        })
    }

    /// The same signer, dating its tokens by `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The organisation it signs for.
    pub fn org(&self) -> &str {
        &self.org
    }

    /// A signed token.
    pub fn issue(&self, grant: &Grant<'_>) -> Result<String, AuthError> {
        let now = secs(&*self.clock);
        let claims = Claims {
            iss: self.org.clone(),
            sub: grant.subject.to_owned(),
            aud: grant.audience.to_owned(),
            exp: now + grant.ttl.as_secs().max(1),
            nbf: Some(now),
            iat: now,
            jti: new_jti(),
            scope: grant.scopes.join(" "),
            purpose: grant.purpose.to_owned(),
            act: grant.act.cloned(),
        };
        encode(&Header::new(Algorithm::EdDSA), &claims, &self.key)
            .map_err(|e| AuthError::Invalid(format!("signing: {e}")))
    }
}

/// Verifies tokens arriving at one organisation's node.
pub struct Verifier {
    org: String,
    keys: HashMap<String, (DecodingKey, Role)>,
    seen: Mutex<SeenJtis>,
    clock: SharedClock,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("org", &self.org)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// For `org`'s node, with every member's public key from the federation file.
    pub fn new(org: &str, federation: &Federation) -> Result<Self, AuthError> {
        let mut keys = HashMap::new();
        for member in &federation.members {
            let key =
                DecodingKey::from_ed_pem(member.token_public_key.as_bytes()).map_err(|e| {
                    AuthError::Invalid(format!("token public key of {}: {e}", member.id))
                })?;
            keys.insert(member.id.clone(), (key, member.role));
        }
        Ok(Self {
            org: org.to_owned(),
            keys,
            seen: Mutex::new(SeenJtis::default()),
            clock: SystemClock::shared(),
        })
    }

    /// The same verifier, judging `exp`, `nbf` and `iat` by `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Verifies `token` arriving on a connection whose certificate is `tls_org`'s.
    pub fn verify(&self, token: &str, tls_org: &str) -> Result<Authorised, AuthError> {
        let (key, role) = self.keys.get(tls_org).ok_or_else(|| {
            AuthError::Invalid(format!(
                "{tls_org} is not a member of the federation; only members' tokens are accepted"
            ))
        })?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        // Times are judged below by the verifier's clock, not the library's.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_audience(&[&self.org]);
        validation.set_issuer(&[tls_org]);
        validation.set_required_spec_claims(&["exp", "iat", "aud", "iss", "sub"]);
        let claims = decode::<Claims>(token, key, &validation)
            .map_err(|e| AuthError::Invalid(describe(&e, token, tls_org, &self.org)))?
            .claims;
        let now = secs(&*self.clock);
        if claims.exp + LEEWAY_SECS < now {
            return Err(AuthError::Invalid(
                "it has expired (exp); sign a new one for each session".into(),
            ));
        }
        if claims.nbf.is_some_and(|nbf| nbf > now + LEEWAY_SECS) {
            return Err(AuthError::Invalid(
                "it is not valid yet (nbf); check the signer's clock".into(),
            ));
        }
        if claims.iat > now + LEEWAY_SECS {
            return Err(AuthError::Invalid(
                "it was issued in the future (iat); check the signer's clock".into(),
            ));
        }
        if claims.exp.saturating_sub(claims.iat) > MAX_TTL_SECS {
            return Err(AuthError::Invalid(format!(
                "it lives longer than {MAX_TTL_SECS} s (exp - iat); tokens are short-lived"
            )));
        }
        if claims.jti.is_empty() {
            return Err(AuthError::Invalid(
                "it has no jti; every token needs a unique id".into(),
            ));
        }
        if let Some(act) = &claims.act {
            if claims.exp.saturating_sub(claims.iat) > MAX_DELEGATION_SECS {
                return Err(AuthError::Invalid(format!(
                    "a delegation token (acting for {}) may live at most {MAX_DELEGATION_SECS} s",
                    act.sub
                )));
            }
            self.first_use(&claims.iss, &claims.jti, claims.exp, now)?;
        }
        // `iss` is the TLS peer's org, a member of the federation file.
        let org = OrgId::parse(&claims.iss)
            .map_err(|e| AuthError::Invalid(format!("its issuer (iss): {e}")))?;
        Ok(Authorised {
            org,
            sub: claims.sub,
            act: claims.act.map(|a| a.label()),
            person: None,
            scopes: claims.scope.split_whitespace().map(String::from).collect(),
            purpose: claims.purpose,
            jti: claims.jti,
            expires_at: claims.exp,
            role: *role,
        })
    }

    /// Remembers a delegation `jti` of `issuer` accepted before this verifier
    /// existed (by this node before a restart, as its access log records), so it
    /// is refused if it comes again; `arrived` is when that call came, in
    /// seconds since the epoch.
    pub fn remember_used(&self, issuer: &str, jti: &str, arrived: u64) {
        // The token's `exp` is not logged; it is at most its `iat` plus the
        // longest delegation, and `iat` at most the skew after its arrival.
        let until = arrived + LEEWAY_SECS + MAX_DELEGATION_SECS;
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.first_use(issuer, jti, until, secs(&*self.clock));
    }

    /// Records a delegation `jti` of `issuer`; refuses one already seen while it
    /// could still be valid.
    fn first_use(&self, issuer: &str, jti: &str, exp: u64, now: u64) -> Result<(), AuthError> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.first_use(issuer, jti, exp, now) {
            Ok(())
        } else {
            Err(AuthError::Replayed {
                jti: jti.to_owned(),
            })
        }
    }
}

/// Delegation `jti`s with the time each token stops being valid. A `jti` is
/// unique only within its issuer (RFC 7519), so the key is both: one org's
/// token can't make another's look replayed.
#[derive(Debug)]
struct SeenJtis {
    until: HashMap<(String, String), u64>,
    /// The map is swept of expired tokens when it reaches this size…
    sweep_at: usize,
    /// …or a minute after the last sweep, so a quiet node's map does not grow
    /// until it reaches that size.
    swept_at: u64,
}

/// Below this many remembered `jti`s the map is swept only by time.
const SWEEP_AT_LEAST: usize = 10_000;

impl Default for SeenJtis {
    fn default() -> Self {
        Self {
            until: HashMap::new(),
            sweep_at: SWEEP_AT_LEAST,
            swept_at: 0,
        }
    }
}

impl SeenJtis {
    /// Remembers `issuer`'s `jti` until `exp`; false if it was already remembered.
    fn first_use(&mut self, issuer: &str, jti: &str, exp: u64, now: u64) -> bool {
        if self.until.len() >= self.sweep_at || now >= self.swept_at + MAX_DELEGATION_SECS {
            self.until
                .retain(|_, &mut until| until + LEEWAY_SECS >= now);
            // The next sweep by size waits until the map has doubled, so a busy
            // node with many live tokens pays for each sweep with as many
            // inserts instead of sweeping on every call.
            self.sweep_at = (self.until.len() * 2).max(SWEEP_AT_LEAST);
            self.swept_at = now;
        }
        match self.until.entry((issuer.to_owned(), jti.to_owned())) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(exp);
                true
            }
        }
    }
}

/// Why `token` failed to verify, as one sentence saying what is accepted:
/// never the JSON or base64 decoder's own words.
fn describe(error: &jsonwebtoken::errors::Error, token: &str, tls_org: &str, org: &str) -> String {
    use jsonwebtoken::errors::ErrorKind;
    const SHAPE: &str = "it is not a JWT; three base64url parts (header.claims.signature) joined by dots are required";
    match error.kind() {
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "its algorithm is not EdDSA; only EdDSA (Ed25519) tokens are accepted".into()
        }
        ErrorKind::InvalidSignature => format!(
            "its signature does not verify under {tls_org}'s token key (the one the federation file lists)"
        ),
        ErrorKind::InvalidAudience => {
            format!("its audience (aud) is not {org}; a token must name the node it is for")
        }
        ErrorKind::InvalidIssuer => format!(
            "its issuer (iss) is not {tls_org}, the organisation of the TLS certificate; a token is signed by the caller's own organisation"
        ),
        ErrorKind::MissingRequiredClaim(claim) => format!(
            "the claim {claim} is missing; iss, sub, aud, exp, iat, jti, scope and purpose are required"
        ),
        ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => SHAPE.into(),
        ErrorKind::Json(_) => match jsonwebtoken::decode_header(token) {
            Err(e) if matches!(e.kind(), ErrorKind::Json(_)) => {
                "its header does not name EdDSA; only EdDSA (Ed25519) tokens with a JSON header are accepted".into()
            }
            Err(_) => SHAPE.into(),
            Ok(_) => "its claims are not what this node reads; a JSON object with string iss, sub, aud, jti, scope and purpose, numeric exp and iat, and act as {\"sub\": \"...\"} on a delegation is required".into(),
        },
        _ => format!(
            "it could not be verified; an EdDSA JWT signed with {tls_org}'s token key is required"
        ),
    }
}

#[cfg(test)]
mod tests;

pub use lagesbild_vocabulary::Scope;

/// The metadata key tokens travel in.
pub const AUTHORIZATION: &str = "authorization";

/// A client-side interceptor that sends one token (or session) with every
/// call, and the purpose the caller states, if any.
#[derive(Clone)]
pub struct Bearer(
    tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
);

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bearer(…)")
    }
}

impl Bearer {
    /// Sends `token`.
    pub fn new(token: &str) -> Result<Self, AuthError> {
        format!("Bearer {token}")
            .parse()
            .map(|value| Self(value, None))
            .map_err(|_| AuthError::Invalid("a token must be printable ASCII".into()))
    }

    /// The same, stating `purpose` with every call ([`PURPOSE_HEADER`]): how
    /// a session, which carries no purpose, says why it asks.
    pub fn stating(self, purpose: &str) -> Result<Self, AuthError> {
        let value = purpose
            .parse()
            .map_err(|_| AuthError::Invalid("a purpose must be printable ASCII".into()))?;
        Ok(Self(self.0, Some(value)))
    }
}

impl Bearer {
    /// Puts the token on one request.
    pub fn authorise<T>(&self, request: &mut tonic::Request<T>) {
        request.metadata_mut().insert(AUTHORIZATION, self.0.clone());
        if let Some(purpose) = &self.1 {
            request
                .metadata_mut()
                .insert(PURPOSE_HEADER, purpose.clone());
        }
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        self.authorise(&mut request);
        Ok(request)
    }
}

/// A channel whose calls carry a token.
pub type AuthChannel =
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>;

/// The token of an `authorization: Bearer …` header value.
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}
