//! The organisation a certificate speaks for.
//!
//! A certificate names its organisation in exactly one SAN URI of the form
//! `spiffe://<federation>/org/<org>/<workload>`; the workload is `node` for a node
//! and anything else (by default `client`) for the org's people and tools.

use crate::IdentityError;
use std::fmt;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// The workload name of a node certificate.
pub const NODE_WORKLOAD: &str = "node";

/// A parsed `spiffe://<federation>/org/<org>/<workload>` identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    /// The federation name.
    pub federation: String,
    /// The organisation id.
    pub org: String,
    /// The workload within the organisation (`node`, `client`, ...).
    pub workload: String,
}

impl SpiffeId {
    /// The identity of `org`'s workload in `federation`.
    pub fn new(federation: &str, org: &str, workload: &str) -> Self {
        Self {
            federation: federation.to_owned(),
            org: org.to_owned(),
            workload: workload.to_owned(),
        }
    }

    /// Parses a URI; `None` if it is not a Lägesbild SPIFFE id.
    pub fn parse(uri: &str) -> Option<Self> {
        let rest = uri.strip_prefix("spiffe://")?;
        let mut parts = rest.split('/');
        let federation = parts.next()?;
        if parts.next()? != "org" {
            return None;
        }
        let org = parts.next()?;
        let workload = parts.next()?;
        if parts.next().is_some()
            || [federation, org, workload]
                .iter()
                .any(|p| p.is_empty() || !valid_segment(p))
        {
            return None;
        }
        Some(Self::new(federation, org, workload))
    }

    /// Whether this is a node (as opposed to a person or tool of the org).
    pub fn is_node(&self) -> bool {
        self.workload == NODE_WORKLOAD
    }

    /// Reads the one Lägesbild identity of a DER certificate.
    ///
    /// Fails if the certificate can't be parsed, names no SPIFFE id, or names
    /// more than one (an ambiguous certificate is refused, never guessed at).
    pub fn from_certificate(der: &[u8]) -> Result<Self, IdentityError> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| {
            IdentityError::Spiffe(format!(
                "the certificate could not be parsed ({e}); a DER X.509 certificate is required"
            ))
        })?;
        let san = cert
            .subject_alternative_name()
            .map_err(|e| IdentityError::Spiffe(format!("the certificate's subject alternative names could not be read ({e}); exactly one spiffe:// URI is required")))?
            .ok_or_else(|| IdentityError::Spiffe("the certificate has no subject alternative name; exactly one spiffe://<federation>/org/<org>/<workload> URI is required".into()))?;
        let mut found = None;
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name {
                if uri.starts_with("spiffe://") {
                    let id = Self::parse(uri).ok_or_else(|| {
                        IdentityError::Spiffe(format!("the certificate names {uri:?}, which is not of the form spiffe://<federation>/org/<org>/<workload>"))
                    })?;
                    if found.replace(id).is_some() {
                        return Err(IdentityError::Spiffe(
                            "the certificate names more than one spiffe:// URI; exactly one is accepted".into(),
                        ));
                    }
                }
            }
        }
        found.ok_or_else(|| IdentityError::Spiffe("the certificate names no spiffe:// URI; exactly one spiffe://<federation>/org/<org>/<workload> URI is required".into()))
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spiffe://{}/org/{}/{}",
            self.federation, self.org, self.workload
        )
    }
}

/// Ids of federations, orgs and workloads: lower-case ASCII letters, digits, `-`, `_`, `.`.
pub fn valid_segment(s: &str) -> bool {
    lagesbild_vocabulary::is_id_segment(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let id = SpiffeId::parse("spiffe://norrmalm/org/polisen/node").unwrap();
        assert_eq!(id, SpiffeId::new("norrmalm", "polisen", "node"));
        assert!(id.is_node());
        assert_eq!(id.to_string(), "spiffe://norrmalm/org/polisen/node");
    }

    #[test]
    fn rejects_other_shapes() {
        for uri in [
            "spiffe://norrmalm/polisen/node",
            "spiffe://norrmalm/org/polisen",
            "spiffe://norrmalm/org/polisen/node/extra",
            "spiffe://norrmalm/org//node",
            "spiffe://Norrmalm/org/polisen/node",
            "https://norrmalm/org/polisen/node",
        ] {
            assert_eq!(SpiffeId::parse(uri), None, "{uri}");
        }
    }
}
