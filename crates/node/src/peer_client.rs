//! Asking a peer: the one way the node's services call other members.
//!
//! A [`PeerClient`] owns what every such call needs: the peer's audited
//! channel, tokens signed by this node ([`crate::peers::peer_request`]), and
//! the witness, which says whether the peer may be asked at all and checks its
//! log after it answers.

use crate::outbound::AuditedChannel;
use crate::peers::{peer_request, PeerChannels, PeerGrant};
use crate::witness::Witness;
use lagesbild_audit::WitnessState;
use lagesbild_auth::{AuthError, Signer};
use std::sync::Arc;

/// Why a peer was not asked.
#[derive(Debug, thiserror::Error)]
pub enum NotAsked {
    /// Its access log failed witnessing; it is not asked until an operator clears it.
    #[error("not asked: its access log failed witnessing ({0})")]
    WitnessAlarm(String),
    /// It runs no node this node has a channel to.
    #[error("it runs no node")]
    NoChannel,
    /// This node could not sign the call's token.
    #[error("the node could not sign its call: {0}")]
    Unsigned(#[from] AuthError),
}

/// The node's client for its peers.
#[derive(Debug, Clone)]
pub struct PeerClient {
    channels: PeerChannels,
    signer: Arc<Signer>,
    witness: Arc<Witness>,
}

impl PeerClient {
    /// Calls on `channels`, tokens by `signer`, peers vetted by `witness`.
    pub fn new(channels: PeerChannels, signer: Arc<Signer>, witness: Arc<Witness>) -> Self {
        Self {
            channels,
            signer,
            witness,
        }
    }

    /// The channel to `org` and a request carrying `message` with a token for
    /// `grant`; or why `org` must not, or cannot, be asked.
    pub fn prepare<T>(
        &self,
        org: &str,
        grant: PeerGrant<'_>,
        message: T,
    ) -> Result<(AuditedChannel, tonic::Request<T>), NotAsked> {
        if let Some(reason) = self.witness.alarm(org) {
            return Err(NotAsked::WitnessAlarm(reason));
        }
        let channel = self.channel(org).ok_or(NotAsked::NoChannel)?.clone();
        Ok((channel, self.request(org, grant, message)?))
    }

    /// The channel to `org`'s node, if it runs one; unvetted (status is asked
    /// of an alarmed peer too, to show the alarm).
    pub fn channel(&self, org: &str) -> Option<&AuditedChannel> {
        self.channels.get(org)
    }

    /// A request to `org` carrying `message` with a token for `grant`.
    pub fn request<T>(
        &self,
        org: &str,
        grant: PeerGrant<'_>,
        message: T,
    ) -> Result<tonic::Request<T>, AuthError> {
        peer_request(&self.signer, org, grant, message)
    }

    /// `org` answered: check, in the background, that its log grew consistently.
    pub fn answered(&self, org: &str) {
        self.witness.observe(org);
    }

    /// What this node holds of `org`'s log as its witness.
    pub fn witnessed(&self, org: &str) -> Option<WitnessState> {
        self.witness.state(org)
    }
}
