//! Per-peer pseudonymous ids: a keyed hash of the local id, under a key that is
//! different for every peer, so two peers can't match what they were sent.

use ring::hmac;

/// Derives per-peer keys from a node secret that never leaves the node.
pub struct Pseudonyms {
    root: hmac::Key,
}

impl std::fmt::Debug for Pseudonyms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonyms")
    }
}

/// The pseudonym key for one peer.
pub struct PeerPseudonyms {
    key: hmac::Key,
}

impl std::fmt::Debug for PeerPseudonyms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerPseudonyms")
    }
}

impl Pseudonyms {
    /// From the node's secret (at least 32 random bytes).
    pub fn new(secret: &[u8]) -> Self {
        assert!(
            secret.len() >= 32,
            "a pseudonym secret needs at least 32 bytes"
        );
        Self {
            root: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// The key for `peer_org`.
    pub fn for_peer(&self, peer_org: &str) -> PeerPseudonyms {
        let derived = hmac::sign(
            &self.root,
            format!("lagesbild/pseudonym/v1/peer/{peer_org}").as_bytes(),
        );
        PeerPseudonyms {
            key: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
        }
    }
}

impl PeerPseudonyms {
    /// The pseudonym of `local_id`: 128 bits of HMAC-SHA256, as 32 hex digits.
    pub fn id(&self, local_id: &str) -> String {
        let tag = hmac::sign(&self.key, local_id.as_bytes());
        tag.as_ref()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_per_peer_and_differ_between_peers() {
        let p = Pseudonyms::new(&[7; 32]);
        let (a, b) = (p.for_peer("polisen"), p.for_peer("scandic"));
        assert_eq!(a.id("r-1"), a.id("r-1"));
        assert_ne!(a.id("r-1"), b.id("r-1"));
        assert_ne!(a.id("r-1"), a.id("r-2"));
        assert_eq!(a.id("r-1").len(), 32);
        assert!(!a.id("r-1").contains("r-1"));
        let other_node = Pseudonyms::new(&[8; 32]).for_peer("polisen");
        assert_ne!(a.id("r-1"), other_node.id("r-1"));
    }
}
