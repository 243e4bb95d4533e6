//! People verified by the org's identity provider: OpenID Connect ID tokens
//! checked through discovery and the provider's JWKS.
//!
//! The checks, in order: the header's algorithm is one of the pinned list
//! (never `none`, never an HMAC one: a public key is no shared secret); the
//! key is the provider's, found by `kid` in its JWKS, which is fetched again
//! when an unknown `kid` arrives (key rotation) but at most every
//! [`JWKS_REFETCH_AFTER`]; the signature; `iss` is the configured issuer;
//! `aud` holds the client id; `exp`, `nbf`, `iat` by the node's clock; the
//! token was issued within [`MAX_ID_TOKEN_AGE`] (a fresh sign-in, not an old
//! token replayed); and the roles claim maps to at least one role.

use crate::role::PersonRole;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use lagesbild_vocabulary::SharedClock;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Clock skew tolerated on the token's times.
pub const LEEWAY_SECS: i64 = 30;
/// The oldest ID token exchanged for a session.
pub const MAX_ID_TOKEN_AGE: Duration = Duration::from_secs(10 * 60);
/// An unknown `kid` fetches the JWKS again only this long after the last fetch.
pub const JWKS_REFETCH_AFTER: Duration = Duration::from_secs(10);
/// How long a request to the provider may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The algorithms accepted unless the configuration pins others.
pub const DEFAULT_ALGORITHMS: &[&str] = &["RS256", "PS256", "ES256", "EdDSA"];

/// How the node trusts its org's identity provider (`[people.oidc]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcSettings {
    /// The provider's issuer identifier, exactly as its tokens say it.
    pub issuer: String,
    /// The node's client id at the provider: the ID tokens' audience.
    pub client_id: String,
    /// The claim that lists a person's groups (or roles).
    pub roles_claim: String,
    /// Each group's roles at the node.
    pub roles: BTreeMap<String, BTreeSet<PersonRole>>,
    /// The signature algorithms accepted.
    pub algorithms: Vec<Algorithm>,
    /// A CA certificate (PEM) for the provider's HTTPS, beside the system's.
    pub ca_pem: Option<Vec<u8>>,
}

/// A signature algorithm name that can't be pinned.
pub fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    let alg: Algorithm = name
        .parse()
        .map_err(|_| format!("{name:?} is not a JWS algorithm"))?;
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => Err(format!(
            "{name}: an HMAC algorithm can't verify an identity provider's tokens (its key is public)"
        )),
        alg => Ok(alg),
    }
}

/// Why an ID token is not accepted. Each names what the token claimed, unverified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    /// Not a JWT at all.
    #[error("the ID token is not a signed JWT")]
    Malformed,
    /// An algorithm outside the pinned list.
    #[error("ID token of {claimed}: its algorithm {alg} is not accepted (accepted: {accepted})")]
    Algorithm {
        /// Who it claims to be.
        claimed: String,
        /// Its header's `alg`.
        alg: String,
        /// The pinned list.
        accepted: String,
    },
    /// No key of the provider has its `kid`.
    #[error("ID token of {claimed}: no key of {issuer} has its kid {kid:?}")]
    UnknownKey {
        /// Who it claims to be.
        claimed: String,
        /// The configured issuer.
        issuer: String,
        /// Its header's `kid`.
        kid: String,
    },
    /// Signature, issuer, audience or time.
    #[error("ID token of {claimed} refused: {reason}")]
    Invalid {
        /// Who it claims to be.
        claimed: String,
        /// Why, in words.
        reason: String,
    },
    /// Verified, but none of the person's groups maps to a role.
    #[error("{person} has no role at this node: none of the groups in {claim} ({groups}) is mapped in [people.oidc.roles]")]
    NoRole {
        /// The verified person.
        person: String,
        /// The claim read.
        claim: String,
        /// Its values.
        groups: String,
    },
    /// The provider could not be asked.
    #[error("the identity provider {issuer} could not be asked: {reason}")]
    Provider {
        /// The configured issuer.
        issuer: String,
        /// Why.
        reason: String,
    },
}

/// A person the provider vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPerson {
    /// Their subject at the provider.
    pub sub: String,
    /// The provider.
    pub issuer: String,
    /// Their roles at the node.
    pub roles: BTreeSet<PersonRole>,
}

#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
    #[serde(default)]
    authorization_endpoint: Option<String>,
    #[serde(default)]
    token_endpoint: Option<String>,
}

/// Where a browser signs in at the provider, and where a code is redeemed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeFlowEndpoints {
    /// The authorization endpoint.
    pub authorization: String,
    /// The token endpoint.
    pub token: String,
}

#[derive(Debug, Default)]
struct KeyCache {
    discovery: Option<Discovery>,
    keys: Option<JwkSet>,
    fetched: Option<Instant>,
}

/// Verifies the ID tokens of one identity provider.
#[derive(Debug)]
pub struct OidcVerifier {
    settings: OidcSettings,
    http: reqwest::Client,
    cache: Mutex<KeyCache>,
    clock: SharedClock,
    /// ID tokens already exchanged (SHA-256), until they are too old anyway.
    used: std::sync::Mutex<std::collections::HashMap<[u8; 32], i64>>,
}

/// The unverified `sub (iss)` of a token, for refusals.
fn claimed(token: &str) -> String {
    #[derive(Deserialize, Default)]
    struct Loose {
        #[serde(default)]
        sub: Option<String>,
        #[serde(default)]
        iss: Option<String>,
    }
    use base64::Engine;
    let loose: Loose = token
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    let clip = |s: Option<String>| {
        s.map(|s| s.chars().take(200).collect::<String>())
            .unwrap_or_else(|| "?".into())
    };
    format!("{:?} ({})", clip(loose.sub), clip(loose.iss))
}

impl OidcVerifier {
    /// A verifier for `settings`, judging times by `clock`.
    pub fn new(settings: OidcSettings, clock: SharedClock) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = &settings.ca_pem {
            let ca = reqwest::Certificate::from_pem(pem)
                .map_err(|_| "ca_file: not a PEM certificate".to_owned())?;
            builder = builder.add_root_certificate(ca);
        }
        let http = builder
            .build()
            .map_err(|e| format!("making the HTTPS client: {e}"))?;
        Ok(Self {
            settings,
            http,
            cache: Mutex::new(KeyCache::default()),
            clock,
            used: std::sync::Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    fn provider_error(&self, reason: impl std::fmt::Display) -> OidcError {
        OidcError::Provider {
            issuer: self.settings.issuer.clone(),
            reason: reason.to_string(),
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, OidcError> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| self.provider_error(format!("GET {url}: {}", without_source(&e))))?;
        if !response.status().is_success() {
            return Err(self.provider_error(format!("GET {url}: HTTP {}", response.status())));
        }
        response
            .json()
            .await
            .map_err(|_| self.provider_error(format!("GET {url}: not the JSON expected")))
    }

    /// The key `kid`, from the cached JWKS or, if it is not there and the
    /// cache is old enough, from a fresh one.
    async fn key(&self, kid: &str, claimed: &str) -> Result<Jwk, OidcError> {
        let mut cache = self.cache.lock().await;
        if let Some(jwk) = cache.keys.as_ref().and_then(|set| set.find(kid)) {
            return Ok(jwk.clone());
        }
        if cache
            .fetched
            .is_some_and(|at| at.elapsed() < JWKS_REFETCH_AFTER)
        {
            return Err(self.unknown_key(kid, claimed));
        }
        let jwks_uri = self.discovery(&mut cache).await?.jwks_uri;
        let keys: JwkSet = self.get_json(&jwks_uri).await?;
        cache.fetched = Some(Instant::now());
        tracing::info!(issuer = %self.settings.issuer, keys = keys.keys.len(), "identity provider's keys fetched");
        let found = keys.find(kid).cloned();
        cache.keys = Some(keys);
        found.ok_or_else(|| self.unknown_key(kid, claimed))
    }

    /// The provider's discovery document, read once.
    async fn discovery(&self, cache: &mut KeyCache) -> Result<Discovery, OidcError> {
        if let Some(discovery) = &cache.discovery {
            return Ok(discovery.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.settings.issuer.trim_end_matches('/')
        );
        let discovery: Discovery = self.get_json(&url).await?;
        if discovery.issuer != self.settings.issuer {
            return Err(self.provider_error(format!(
                "its discovery document names the issuer {:?}, not {:?}",
                discovery.issuer, self.settings.issuer
            )));
        }
        cache.discovery = Some(discovery.clone());
        Ok(discovery)
    }

    /// Where a browser signs in, and where its code is redeemed.
    pub async fn code_flow_endpoints(&self) -> Result<CodeFlowEndpoints, OidcError> {
        let mut cache = self.cache.lock().await;
        let discovery = self.discovery(&mut cache).await?;
        match (discovery.authorization_endpoint, discovery.token_endpoint) {
            (Some(authorization), Some(token)) => Ok(CodeFlowEndpoints {
                authorization,
                token,
            }),
            _ => Err(self.provider_error("it offers no authorization or token endpoint")),
        }
    }

    /// Redeems a browser's authorization `code` (with the PKCE `verifier`
    /// that made its challenge) at the token endpoint; the ID token.
    pub async fn redeem(
        &self,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<String, OidcError> {
        let endpoints = self.code_flow_endpoints().await?;
        let answer = self
            .http
            .post(&endpoints.token)
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("client_id", self.settings.client_id.as_str()),
                ("code_verifier", verifier),
            ])
            .send()
            .await
            .map_err(|e| {
                self.provider_error(format!("its token endpoint: {}", without_source(&e)))
            })?;
        let ok = answer.status().is_success();
        let body: serde_json::Value = answer
            .json()
            .await
            .map_err(|_| self.provider_error("its token answer is not JSON"))?;
        if !ok {
            return Err(self.provider_error(format!(
                "it refused the code ({})",
                body["error"].as_str().unwrap_or("no reason given")
            )));
        }
        body["id_token"]
            .as_str()
            .map(String::from)
            .ok_or_else(|| self.provider_error("its token answer has no id_token"))
    }

    fn unknown_key(&self, kid: &str, claimed: &str) -> OidcError {
        OidcError::UnknownKey {
            claimed: claimed.to_owned(),
            issuer: self.settings.issuer.clone(),
            kid: kid.to_owned(),
        }
    }

    /// The person `id_token` names, if it holds up (the device grant: no nonce).
    pub async fn verify(&self, id_token: &str) -> Result<VerifiedPerson, OidcError> {
        self.verify_with_nonce(id_token, None).await
    }

    /// The same, and for the code flow its `nonce` must be the one the
    /// sign-in was started with.
    pub async fn verify_with_nonce(
        &self,
        id_token: &str,
        nonce: Option<&str>,
    ) -> Result<VerifiedPerson, OidcError> {
        let claimed = claimed(id_token);
        let header = jsonwebtoken::decode_header(id_token).map_err(|_| OidcError::Malformed)?;
        let invalid = |reason: String| OidcError::Invalid {
            claimed: claimed.clone(),
            reason,
        };
        if !self.settings.algorithms.contains(&header.alg) {
            return Err(OidcError::Algorithm {
                claimed: claimed.clone(),
                alg: format!("{:?}", header.alg),
                accepted: self
                    .settings
                    .algorithms
                    .iter()
                    .map(|a| format!("{a:?}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let kid = header
            .kid
            .ok_or_else(|| invalid("its header names no key (kid)".into()))?;
        let jwk = self.key(&kid, &claimed).await?;
        if let Some(key_alg) = jwk.common.key_algorithm {
            if format!("{key_alg:?}") != format!("{:?}", header.alg) {
                return Err(invalid(format!(
                    "its algorithm {:?} is not the one its key is for ({key_alg:?})",
                    header.alg
                )));
            }
        }
        let key = DecodingKey::from_jwk(&jwk)
            .map_err(|_| invalid(format!("the provider's key {kid:?} is not usable")))?;
        let mut validation = Validation::new(header.alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.client_id]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            id_token,
            &key,
            &validation,
        )
        .map_err(|e| invalid(describe(&e, &self.settings)))?
        .claims;
        let now = self.clock.unix_seconds();
        let time = |name: &str| claims.get(name).and_then(|v| v.as_i64());
        let (exp, iat) = (time("exp").unwrap_or(0), time("iat").unwrap_or(0));
        if exp + LEEWAY_SECS < now {
            return Err(invalid("it has expired (exp); sign in again".into()));
        }
        if time("nbf").is_some_and(|nbf| nbf > now + LEEWAY_SECS) || iat > now + LEEWAY_SECS {
            return Err(invalid(
                "it is not valid yet (nbf or iat in the future); check the provider's clock".into(),
            ));
        }
        if iat + (MAX_ID_TOKEN_AGE.as_secs() as i64) < now {
            return Err(invalid(format!(
                "it was issued more than {} minutes ago (iat); sign in again",
                MAX_ID_TOKEN_AGE.as_secs() / 60
            )));
        }
        if let Some(nonce) = nonce {
            if claims.get("nonce").and_then(|v| v.as_str()) != Some(nonce) {
                return Err(invalid(
                    "its nonce is not the one this sign-in was started with".into(),
                ));
            }
        }
        let sub = claims
            .get("sub")
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid("it names no subject (sub)".into()))?
            .to_owned();
        let groups: Vec<String> = match claims.get(&self.settings.roles_claim) {
            Some(serde_json::Value::Array(values)) => values
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            Some(serde_json::Value::String(one)) => {
                one.split_whitespace().map(String::from).collect()
            }
            _ => Vec::new(),
        };
        let roles: BTreeSet<PersonRole> = groups
            .iter()
            .filter_map(|g| self.settings.roles.get(g))
            .flatten()
            .copied()
            .collect();
        let person = VerifiedPerson {
            sub,
            issuer: self.settings.issuer.clone(),
            roles,
        };
        if person.roles.is_empty() {
            return Err(OidcError::NoRole {
                person: format!("{} ({})", person.sub, person.issuer),
                claim: self.settings.roles_claim.clone(),
                groups: if groups.is_empty() {
                    "none".into()
                } else {
                    groups.join(", ")
                },
            });
        }
        self.first_use(id_token, iat, now).map_err(invalid)?;
        Ok(person)
    }

    /// Refuses an ID token exchanged before: one sign-in, one session.
    fn first_use(&self, id_token: &str, iat: i64, now: i64) -> Result<(), String> {
        let key: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, id_token.as_bytes())
            .as_ref()
            .try_into()
            .expect("SHA-256 is 32 bytes");
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        used.retain(|_, until| *until >= now);
        let until = iat + MAX_ID_TOKEN_AGE.as_secs() as i64 + LEEWAY_SECS;
        if used.insert(key, until).is_some() {
            return Err("it was already exchanged for a session; sign in again".into());
        }
        Ok(())
    }
}

/// The library's reason in the words of this check.
fn describe(error: &jsonwebtoken::errors::Error, settings: &OidcSettings) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::InvalidSignature => "its signature does not verify".into(),
        ErrorKind::InvalidIssuer => format!("it is not from {} (iss)", settings.issuer),
        ErrorKind::InvalidAudience => format!("it is not for {} (aud)", settings.client_id),
        ErrorKind::MissingRequiredClaim(claim) => format!("it lacks the claim {claim}"),
        ErrorKind::InvalidAlgorithm => "its algorithm does not fit its key".into(),
        _ => "it is not a well-formed ID token".into(),
    }
}

/// An HTTP error without the library's chain of causes.
fn without_source(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "no answer in time"
    } else if error.is_connect() {
        "no connection"
    } else {
        "the request failed"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_algorithms_can_not_be_pinned() {
        for name in ["HS256", "HS384", "HS512"] {
            let err = parse_algorithm(name).unwrap_err();
            assert!(err.contains("HMAC"), "{err}");
        }
        assert!(parse_algorithm("none").is_err());
        // Control: the default list parses.
        for name in DEFAULT_ALGORITHMS {
            assert!(parse_algorithm(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn a_refusal_names_what_the_token_claimed_clipped() {
        use base64::Engine;
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
            r#"{{"sub":"{}","iss":"https://idp"}}"#,
            "x".repeat(500)
        ));
        let named = claimed(&format!("e30.{payload}.sig"));
        assert!(named.ends_with("(https://idp)"), "{named}");
        assert!(named.len() < 260, "{}", named.len());
        assert_eq!(claimed("not a token"), "\"?\" (?)");
    }

    #[test]
    fn an_id_token_is_exchanged_once() {
        let verifier = OidcVerifier::new(
            OidcSettings {
                issuer: "https://idp".into(),
                client_id: "c".into(),
                roles_claim: "groups".into(),
                roles: BTreeMap::new(),
                algorithms: vec![Algorithm::RS256],
                ca_pem: None,
            },
            lagesbild_vocabulary::SystemClock::shared(),
        )
        .unwrap();
        assert!(verifier.first_use("token-a", 1_000, 1_000).is_ok());
        assert!(verifier.first_use("token-a", 1_000, 1_001).is_err());
        assert!(verifier.first_use("token-b", 1_000, 1_001).is_ok());
        // Forgotten once too old to be accepted anyway.
        let later = 1_000 + MAX_ID_TOKEN_AGE.as_secs() as i64 + LEEWAY_SECS + 1;
        assert!(verifier.first_use("token-a", 1_000, later).is_ok());
    }
}
