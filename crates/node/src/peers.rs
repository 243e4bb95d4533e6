//! One long-lived mutual-TLS channel per peer, every call on it logged.
//!
//! Channels are made once at start-up and connect lazily; every call to a peer
//! reuses its channel's HTTP/2 connection (and reconnects if it drops).

use crate::metrics::Metrics;
use crate::outbound::AuditedChannel;
use lagesbild_audit::AuditLog;
use lagesbild_identity::tls::client_config;
use lagesbild_identity::{Federation, TlsFiles};
use lagesbild_transport::{channel_observed, ChannelOptions};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The channels of one node to each of its peers that runs a node.
#[derive(Debug, Clone)]
pub struct PeerChannels {
    by_org: BTreeMap<String, AuditedChannel>,
}

impl PeerChannels {
    /// A channel to every member of `federation` other than `own_org` that has an
    /// endpoint, each presenting the node certificate in `tls`, each call logged
    /// in `log` and counted in `metrics`.
    pub fn connect(
        federation: &Federation,
        own_org: &str,
        tls: &TlsFiles,
        options: ChannelOptions,
        log: &AuditLog,
        metrics: &Arc<Metrics>,
    ) -> Result<Self, String> {
        let (chain, key) = tls.load().map_err(|e| e.to_string())?;
        let mut by_org = BTreeMap::new();
        for peer in federation.peers_of(own_org) {
            let Some(endpoint) = &peer.endpoint else {
                continue;
            };
            let config = client_config(federation, &peer.id, chain.clone(), key.clone_key())
                .map_err(|e| format!("peer {}: {e}", peer.id))?;
            let (channel, fingerprint) = channel_observed(endpoint, config, options)
                .map_err(|e| format!("peer {}: {e}", peer.id))?;
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
