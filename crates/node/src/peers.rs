//! One long-lived mutual-TLS channel per peer, every call on it logged.
//!
//! Channels are made once at start-up and connect lazily; every call to a peer
//! reuses its channel's HTTP/2 connection (and reconnects if it drops).

use crate::metrics::Metrics;
use crate::outbound::AuditedChannel;
use lagesbild_audit::AuditLog;
use lagesbild_auth::{Actor, AuthError, Bearer, Grant, Signer};
use lagesbild_identity::tls::client_config;
use lagesbild_identity::Federation;
use lagesbild_transport::{channel_observed, ChannelOptions};
use lagesbild_vocabulary::Scope;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Why the channels to the peers could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PeerSetupError {
    /// A peer's TLS settings could not be made from the federation file.
    #[error("peer {org}: {cause}")]
    PeerTls {
        /// The peer.
        org: String,
        /// Why.
        cause: lagesbild_identity::IdentityError,
    },
    /// A peer's endpoint is not usable.
    #[error("peer {org}: {cause}")]
    Endpoint {
        /// The peer.
        org: String,
        /// Why.
        cause: lagesbild_transport::TransportError,
    },
}

/// The channels of one node to each of its peers that runs a node.
#[derive(Debug, Clone)]
pub struct PeerChannels {
    by_org: BTreeMap<String, AuditedChannel>,
}

impl PeerChannels {
    /// A channel to every member of `federation` other than `own_org` that has an
    /// endpoint, each presenting the node certificate (`chain`, `key`), each call logged
    /// in `log` and counted in `metrics`.
    pub fn connect(
        federation: &Federation,
        own_org: &str,
        (chain, key): (&[CertificateDer<'static>], &PrivateKeyDer<'static>),
        options: ChannelOptions,
        log: &AuditLog,
        metrics: &Arc<Metrics>,
    ) -> Result<Self, PeerSetupError> {
        let mut by_org = BTreeMap::new();
        for peer in federation.peers_of(own_org) {
            let Some(endpoint) = &peer.endpoint else {
                continue;
            };
            let config = client_config(federation, &peer.id, chain.to_vec(), key.clone_key())
                .map_err(|cause| PeerSetupError::PeerTls {
                    org: peer.id.clone(),
                    cause,
                })?;
            let (channel, fingerprint) =
                channel_observed(endpoint, config, options).map_err(|cause| {
                    PeerSetupError::Endpoint {
                        org: peer.id.clone(),
                        cause,
                    }
                })?;
            by_org.insert(
                peer.id.clone(),
                AuditedChannel::new(channel, &peer.id, fingerprint, log.clone(), metrics.clone()),
            );
        }
        Ok(Self { by_org })
    }

    /// The channel to `org`'s node, if it runs one.
    pub fn get(&self, org: &str) -> Option<&AuditedChannel> {
        self.by_org.get(org)
    }
}

/// What a token this node signs for a call to a peer says: the node itself as
/// subject, at most one scope, the purpose, and for a delegation the person it
/// acts for.
#[derive(Debug, Clone, Copy)]
pub struct PeerGrant<'a> {
    /// The scope the call needs, if any.
    pub scope: Option<Scope>,
    /// Why the node asks.
    pub purpose: &'a str,
    /// The person the node acts for.
    pub act: Option<&'a Actor>,
    /// How long the token lives.
    pub ttl: Duration,
}

impl<'a> PeerGrant<'a> {
    /// How long the token of one call lives: long enough for the call, short
    /// enough that a copy is soon worthless.
    pub const CALL_TTL: Duration = Duration::from_secs(60);

    /// A token for one call with `scope` and `purpose`.
    pub fn call(scope: Option<Scope>, purpose: &'a str) -> Self {
        Self {
            scope,
            purpose,
            act: None,
            ttl: Self::CALL_TTL,
        }
    }

    /// The same, on behalf of `person`.
    pub fn acting_for(self, person: &'a Actor) -> Self {
        Self {
            act: Some(person),
            ..self
        }
    }

    /// The same, living `ttl` (a stream lasts as long as its token).
    pub fn lasting(self, ttl: Duration) -> Self {
        Self { ttl, ..self }
    }
}

/// `message` as a request to `org`'s node, carrying a fresh token signed by
/// `signer` as `grant` says.
pub fn peer_request<T>(
    signer: &Signer,
    org: &str,
    grant: PeerGrant<'_>,
    message: T,
) -> Result<tonic::Request<T>, AuthError> {
    let scopes: Vec<String> = grant.scope.iter().map(|s| s.name().to_owned()).collect();
    let token = signer.issue(&Grant {
        audience: org,
        subject: "node",
        scopes: &scopes,
        purpose: grant.purpose,
        ttl: grant.ttl,
        act: grant.act,
    })?;
    let mut request = tonic::Request::new(message);
    Bearer::new(&token)?.authorise(&mut request);
    Ok(request)
}
