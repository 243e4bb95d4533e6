//! The release policy of a Lägesbild node: what each peer organisation may receive.
//!
//! Deny by default: a peer that the file does not name gets nothing, and a scope
//! or purpose the file does not list for that peer is refused. The file is strict
//! TOML; unknown keys and bad values are errors naming the key.
//!
//! This crate decides *whether* a peer may ask; what a release may contain is the
//! privacy engine's business.

#![warn(missing_docs)]

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The only policy file format this version reads.
pub const FORMAT_VERSION: u32 = 1;

/// Scopes a token may carry.
pub const SCOPES: &[&str] = &[
    "report:write",
    "aggregate:read",
    "events:read",
    "audit:read",
    "policy:admin",
];

/// What can go wrong reading a policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a valid policy.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line and key where known.
        message: String,
    },
}

/// What one peer organisation may do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerPolicy {
    /// Scopes the peer may use.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Purposes the peer may claim.
    #[serde(default)]
    pub purposes: Vec<String>,
}

/// A node's policy file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Format version; must be [`FORMAT_VERSION`].
    pub version: u32,
    /// Per peer org id, what it may do. Absent peers may do nothing.
    #[serde(default, rename = "peer")]
    pub peers: BTreeMap<String, PeerPolicy>,
}

impl Default for Policy {
    fn default() -> Self {
        Self::deny_all()
    }
}

impl Policy {
    /// A policy that allows nothing to anyone.
    pub fn deny_all() -> Self {
        Self {
            version: FORMAT_VERSION,
            peers: BTreeMap::new(),
        }
    }

    /// Reads and checks a policy file.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|message| PolicyError::Invalid {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses and checks the text of a policy file.
    pub fn parse(text: &str) -> Result<Self, String> {
        let policy: Self = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .filter(|s| s.start > 0)
                .map(|s| text[..s.start].matches('\n').count() + 1)
                .map(|l| format!("line {l}: "))
                .unwrap_or_default();
            format!("{line}{}", e.message())
        })?;
        if policy.version != FORMAT_VERSION {
            return Err(format!(
                "version {} is not supported (expected {FORMAT_VERSION})",
                policy.version
            ));
        }
        for (org, peer) in &policy.peers {
            if let Some(scope) = peer.scopes.iter().find(|s| !SCOPES.contains(&s.as_str())) {
                return Err(format!(
                    "peer.{org}.scopes: unknown scope {scope:?} (known: {})",
                    SCOPES.join(", ")
                ));
            }
        }
        Ok(policy)
    }

    /// What `org` may do; `None` means nothing at all.
    pub fn peer(&self, org: &str) -> Option<&PeerPolicy> {
        self.peers.get(org)
    }

    /// Whether `org` may use `scope` for `purpose`.
    pub fn allows(&self, org: &str, scope: &str, purpose: &str) -> bool {
        self.peer(org).is_some_and(|p| {
            p.scopes.iter().any(|s| s == scope) && p.purposes.iter().any(|p| p == purpose)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denies_by_default() {
        let policy = Policy::parse("version = 1").unwrap();
        assert!(!policy.allows("polisen", "aggregate:read", "analysis"));
    }

    #[test]
    fn allows_only_what_is_listed() {
        let policy = Policy::parse(
            "version = 1\n[peer.polisen]\nscopes = [\"aggregate:read\"]\npurposes = [\"analysis\"]\n",
        )
        .unwrap();
        assert!(policy.allows("polisen", "aggregate:read", "analysis"));
        assert!(!policy.allows("polisen", "events:read", "analysis"));
        assert!(!policy.allows("polisen", "aggregate:read", "marketing"));
        assert!(!policy.allows("scandic", "aggregate:read", "analysis"));
    }

    #[test]
    fn unknown_keys_name_line_and_key() {
        let err = Policy::parse("version = 1\n[peer.polisen]\nscopez = []\n").unwrap_err();
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("scopez"), "{err}");
        let err = Policy::parse("version = 1\n[peer.x]\nscopes = [\"all\"]\n").unwrap_err();
        assert!(err.contains("unknown scope"), "{err}");
    }
}
