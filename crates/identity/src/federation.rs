//! The federation file: the members that trust each other.
//!
//! Every node holds the same file. It lists, per member, its id, display name, role,
//! node endpoint, CA certificate and token-signing public key (both PEM). It is
//! strict: unknown keys, duplicate ids and unusable certificates are errors.

use crate::pem::parse_certificate_chain;
use crate::spiffe::valid_segment;
use crate::IdentityError;
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The only federation file format this version reads.
pub const FORMAT_VERSION: u32 = 1;

/// A member's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs a node, holds reports, queries and answers peers.
    Member,
    /// Checks access logs; runs no node.
    Auditor,
}

/// One organisation of the federation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Organisation id, e.g. `polisen`.
    pub id: String,
    /// Name for people, e.g. `Polisen`.
    pub display_name: String,
    /// Member or auditor.
    pub role: Role,
    /// `host:port` of the member's node; absent for members without a node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The member's CA certificate (PEM): the only CA that may vouch for this org.
    pub ca_cert: String,
    /// The member's Ed25519 token-signing public key (PEM, SubjectPublicKeyInfo).
    pub token_public_key: String,
    /// The C2SP verifier key of the member's access log (`<origin>+<key id>+<key>`):
    /// checkpoints are signed with a log key of their own, which only the
    /// member's node holds. Every member that runs a node has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_vkey: Option<String>,
}

impl Member {
    /// The member's CA certificate as DER.
    pub fn ca_der(&self) -> Result<CertificateDer<'static>, IdentityError> {
        let mut certs = parse_certificate_chain(self.ca_cert.as_bytes())
            .map_err(|m| IdentityError::Federation(format!("member {}: ca_cert: {m}", self.id)))?;
        Ok(certs.remove(0))
    }
}

/// The federation file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Federation {
    /// Format version; must be [`FORMAT_VERSION`].
    pub version: u32,
    /// The federation's name, the trust domain of every SPIFFE id.
    pub name: String,
    /// The members.
    #[serde(rename = "member")]
    pub members: Vec<Member>,
}

impl Federation {
    /// Reads and checks a federation file.
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let text = std::fs::read_to_string(path).map_err(|e| IdentityError::io(path, e))?;
        Self::parse(&text).map_err(|e| match e {
            IdentityError::Federation(m) => IdentityError::bad_file(path, m),
            other => other,
        })
    }

    /// Parses and checks the text of a federation file.
    pub fn parse(text: &str) -> Result<Self, IdentityError> {
        // The version first, so that a file of another format is named as one.
        if let Ok(table) = text.parse::<toml::Table>() {
            if let Some(toml::Value::Integer(v)) = table.get("version") {
                if *v != i64::from(FORMAT_VERSION) {
                    return Err(IdentityError::Federation(format!(
                        "version {v} is not supported: this build reads version {FORMAT_VERSION}"
                    )));
                }
            }
        }
        let federation: Self = toml::from_str(text)
            .map_err(|e| IdentityError::Federation(one_line(&e.to_string())))?;
        federation.check()?;
        Ok(federation)
    }

    /// Writes the federation file.
    pub fn save(&self, path: &Path) -> Result<(), IdentityError> {
        let text =
            toml::to_string_pretty(self).map_err(|e| IdentityError::Federation(e.to_string()))?;
        std::fs::write(path, text).map_err(|e| IdentityError::io(path, e))
    }

    /// Checks the invariants the rest of the system relies on.
    pub fn check(&self) -> Result<(), IdentityError> {
        let fail = |m: String| Err(IdentityError::Federation(m));
        if self.version != FORMAT_VERSION {
            return fail(format!(
                "version {} is not supported (expected {FORMAT_VERSION})",
                self.version
            ));
        }
        if !valid_segment(&self.name) {
            return fail(format!(
                "name {:?} must be lower-case letters, digits, '-', '_' or '.'",
                self.name
            ));
        }
        if self.members.is_empty() {
            return fail("no members".into());
        }
        let mut seen = std::collections::HashSet::new();
        for member in &self.members {
            if !valid_segment(&member.id) {
                return fail(format!(
                    "member id {:?} must be lower-case letters, digits, '-', '_' or '.'",
                    member.id
                ));
            }
            if !seen.insert(member.id.as_str()) {
                return fail(format!("member {} is listed twice", member.id));
            }
            member.ca_der()?;
            if member.role == Role::Member && member.endpoint.is_none() {
                return fail(format!("member {} has no endpoint", member.id));
            }
            match (&member.role, &member.log_vkey) {
                (Role::Member, None) => {
                    return fail(format!(
                        "member {} has no log_vkey: checkpoints are signed with a log key of the node's own, not the token key; the member runs `lagesbild certs migrate --config <its node.toml>` and adds the line it prints to this member here",
                        member.id
                    ))
                }
                (_, Some(vkey)) if vkey.splitn(3, '+').count() != 3 => {
                    return fail(format!(
                        "member {}: log_vkey is not a verifier key (<origin>+<key id>+<key>)",
                        member.id
                    ))
                }
                _ => {}
            }
            if !member.token_public_key.contains("BEGIN PUBLIC KEY") {
                return fail(format!(
                    "member {}: token_public_key is not a PEM public key",
                    member.id
                ));
            }
        }
        Ok(())
    }

    /// The member with this id.
    pub fn member(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    /// The members that run a node (role member, with an endpoint), in file order.
    pub fn nodes(&self) -> impl Iterator<Item = &Member> + '_ {
        self.members
            .iter()
            .filter(|m| m.role == Role::Member && m.endpoint.is_some())
    }

    /// Every member except `own`, in file order: the peers of `own`'s node.
    pub fn peers_of<'a>(&'a self, own: &'a str) -> impl Iterator<Item = &'a Member> + 'a {
        self.members.iter().filter(move |m| m.id != own)
    }
}

/// toml's errors span several lines (with a source excerpt); errors here are one line.
pub(crate) fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !is_excerpt(l))
        .collect::<Vec<_>>()
        .join(": ")
}

/// A source excerpt line of a toml error: `|`, `3 | key = 1` or `| ^^^`.
fn is_excerpt(line: &str) -> bool {
    match line.split_once('|') {
        Some((before, _)) => before.trim().chars().all(|c| c.is_ascii_digit()),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_of_another_version_is_named_as_such_not_by_its_keys() {
        let newer = "version = 2\nname = \"norrmalm\"\nwitness_quorum = 2\nmember = []\n";
        let error = Federation::parse(newer).unwrap_err().to_string();
        assert!(error.contains("version 2 is not supported"), "{error}");
        let error = Federation::parse(&newer.replace("version = 2", "version = 1"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("witness_quorum"), "{error}");
    }
}
