//! The release policy of a Lägesbild node: what each peer organisation may receive.
//!
//! Deny by default: a peer the file does not name gets nothing, and a scope,
//! purpose, category, cell size or bucket the file does not allow for that peer
//! is refused. The file is strict TOML; unknown keys and bad values are errors
//! naming the line and the key.
//!
//! ```toml
//! version = 1
//!
//! [peer.polisen]
//! scopes = ["aggregate:read", "events:read"]
//! purposes = ["situation-picture"]
//! categories = ["violence", "robbery", "threat"]   # or ["all"]
//! finest_cell = 250            # metres: 100, 250, 500 or 1000
//! finest_bucket = "hour"       # hour, day or week
//! k = 5                        # at least 3
//! epsilon_per_query = 0.5      # optional: integer noise, and then
//! epsilon_per_day = 5.0        #   a daily budget
//! max_tlp = "green"            # highest marking whose events it receives
//! text = false                 # scrubbed text with events
//! rate_limit = 60              # calls per minute
//! ```
//!
//! This crate says what a peer may have; the privacy engine
//! ([`lagesbild_privacy`]) makes releases that keep to it.

#![warn(missing_docs)]

pub mod explain;

pub use explain::{Explanation, NoiseExplanation};

use lagesbild_geo::CellSize;
use lagesbild_privacy::{BucketKind, Epsilon, ReleaseRules, K};
use lagesbild_reports::category::{category_name, parse_category, parse_tlp, CATEGORIES};
use lagesbild_reports::Tlp;
use serde::{Deserialize, Deserializer};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The only policy file format this version reads.
pub const FORMAT_VERSION: u32 = 1;

pub use lagesbild_vocabulary::{OrgId, Purpose, Scope};

/// What can go wrong reading a policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause (shown in the message, so not chained again).
        cause: std::io::Error,
    },
    /// The file is not a valid policy.
    #[error("{path}: {cause}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line and key.
        cause: InvalidPolicy,
    },
}

/// A file written for another format version than this build reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("version {found} is not supported: this build reads version {supported}{}", if *.found > i64::from(*.supported) { "; the file was written for a newer Lägesbild" } else { "" })]
pub struct UnsupportedVersion {
    /// The version the file declares.
    pub found: i64,
    /// The one this build reads.
    pub supported: u32,
}

/// Why the text of a policy is not a valid policy. Each message names the
/// line and key, and what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPolicy {
    /// Another format version.
    #[error(transparent)]
    Version(#[from] UnsupportedVersion),
    /// Not TOML of the policy's shape (the sentence names line and key).
    #[error("{0}")]
    Syntax(String),
    /// Only one of the two epsilon settings is given.
    #[error("{line}peer.{org}: epsilon_per_query and epsilon_per_day go together")]
    EpsilonAlone {
        /// `line N: ` where the peer's table starts.
        line: String,
        /// The peer.
        org: String,
    },
    /// More epsilon per query than per day.
    #[error("{line}peer.{org}: epsilon_per_query ({query}) is more than epsilon_per_day ({day})")]
    EpsilonOrder {
        /// `line N: ` where the peer's table starts.
        line: String,
        /// The peer.
        org: String,
        /// Per query.
        query: Epsilon,
        /// Per day.
        day: Epsilon,
    },
    /// A rate limit of zero.
    #[error("{line}peer.{org}.rate_limit: must be at least 1 call per minute (leave the peer out to deny it)")]
    ZeroRateLimit {
        /// `line N: ` where the peer's table starts.
        line: String,
        /// The peer.
        org: String,
    },
}

/// What one peer organisation may receive.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerPolicy {
    /// Scopes the peer may use.
    #[serde(default, deserialize_with = "scopes")]
    pub scopes: Vec<Scope>,
    /// Purposes the peer may claim.
    #[serde(default, deserialize_with = "purposes")]
    pub purposes: Vec<Purpose>,
    /// Category codes it may see.
    #[serde(default, deserialize_with = "categories")]
    pub categories: BTreeSet<u8>,
    /// The smallest cells it may receive.
    #[serde(default = "coarsest_cell", deserialize_with = "cell_size")]
    pub finest_cell: CellSize,
    /// The finest buckets it may receive.
    #[serde(default = "coarsest_bucket", deserialize_with = "bucket")]
    pub finest_bucket: BucketKind,
    /// Suppression threshold.
    #[serde(default = "default_k")]
    pub k: K,
    /// Privacy loss per query (noise on); `None` for exact, thresholded counts.
    #[serde(default, deserialize_with = "epsilon")]
    pub epsilon_per_query: Option<Epsilon>,
    /// Privacy budget per local calendar day.
    #[serde(default, deserialize_with = "epsilon")]
    pub epsilon_per_day: Option<Epsilon>,
    /// The highest TLP marking of reports whose events it may receive.
    #[serde(default = "lowest_tlp", deserialize_with = "tlp")]
    pub max_tlp: Tlp,
    /// Whether scrubbed free text may go with events.
    #[serde(default)]
    pub text: bool,
    /// Calls per minute: aggregate releases and event subscriptions opened,
    /// together.
    #[serde(default = "default_rate_limit")]
    pub rate_limit: u32,
}

fn coarsest_cell() -> CellSize {
    CellSize::M1000
}
fn coarsest_bucket() -> BucketKind {
    BucketKind::Week
}
fn default_k() -> K {
    K::new(10).expect("10 is above the minimum")
}
fn lowest_tlp() -> Tlp {
    Tlp::Clear
}
fn default_rate_limit() -> u32 {
    60
}

fn scopes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Scope>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|name| {
            Scope::parse(name).ok_or_else(|| {
                let known: Vec<&str> = Scope::ALL.iter().map(|s| s.name()).collect();
                serde::de::Error::custom(format!(
                    "unknown scope {name:?} (known: {})",
                    known.join(", ")
                ))
            })
        })
        .collect()
}

fn purposes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Purpose>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|text| Purpose::parse(text).map_err(serde::de::Error::custom))
        .collect()
}

fn categories<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeSet<u8>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    let mut codes = BTreeSet::new();
    for name in &names {
        if name == "all" {
            codes.extend(CATEGORIES.iter().map(|(c, _)| *c as u8));
            continue;
        }
        let category = parse_category(name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown category {name:?} (known: all, {})",
                CATEGORIES
                    .iter()
                    .map(|(_, n)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        codes.insert(category as u8);
    }
    Ok(codes)
}

fn cell_size<'de, D: Deserializer<'de>>(d: D) -> Result<CellSize, D::Error> {
    let metres = u32::deserialize(d)?;
    CellSize::from_metres(metres).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "cell size {metres} m is not on the grid (100, 250, 500 or 1000)"
        ))
    })
}

fn bucket<'de, D: Deserializer<'de>>(d: D) -> Result<BucketKind, D::Error> {
    let name = String::deserialize(d)?;
    match BucketKind::parse(&name) {
        Some(kind @ (BucketKind::Hour | BucketKind::Day | BucketKind::Week)) => Ok(kind),
        _ => Err(serde::de::Error::custom(format!(
            "finest bucket {name:?} must be hour, day or week"
        ))),
    }
}

/// A number, integer or not: `epsilon_per_day = 5` is as good as `5.0`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Number {
    Integer(i64),
    Float(f64),
}

fn epsilon<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Epsilon>, D::Error> {
    let value = match Number::deserialize(d)? {
        Number::Integer(i) => i as f64,
        Number::Float(f) => f,
    };
    Epsilon::try_from(value)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn tlp<'de, D: Deserializer<'de>>(d: D) -> Result<Tlp, D::Error> {
    let name = String::deserialize(d)?;
    parse_tlp(&name).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "unknown TLP marking {name:?} (clear, green, amber, amber+strict, red)"
        ))
    })
}

/// A node's policy file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Format version; must be [`FORMAT_VERSION`].
    pub version: u32,
    /// Per peer org id, what it may receive. Absent peers get nothing.
    #[serde(default, rename = "peer")]
    pub peers: BTreeMap<String, PeerPolicy>,
}

impl Default for Policy {
    fn default() -> Self {
        Self::deny_all()
    }
}

/// Why a peer's call is refused by the policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The policy does not name the peer.
    #[error("the policy of {node} gives {peer} nothing")]
    UnknownPeer {
        /// The node's org.
        node: OrgId,
        /// The peer.
        peer: OrgId,
    },
    /// The scope is not granted.
    #[error("the policy of {node} does not grant {peer} the scope {scope}")]
    Scope {
        /// The node's org.
        node: OrgId,
        /// The peer.
        peer: OrgId,
        /// The scope.
        scope: Scope,
    },
    /// The purpose is not listed.
    #[error(
        "the policy of {node} does not list the purpose {purpose:?} for {peer} (listed: {listed})"
    )]
    Purpose {
        /// The node's org.
        node: OrgId,
        /// The peer.
        peer: OrgId,
        /// The purpose asked for.
        purpose: Purpose,
        /// The purposes listed.
        listed: String,
    },
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
        let text = std::fs::read_to_string(path).map_err(|cause| PolicyError::Io {
            path: path.to_owned(),
            cause,
        })?;
        Self::parse(&text).map_err(|cause| PolicyError::Invalid {
            path: path.to_owned(),
            cause,
        })
    }

    /// Parses and checks the text of a policy file.
    pub fn parse(text: &str) -> Result<Self, InvalidPolicy> {
        check_format_version(text, FORMAT_VERSION)?;
        let policy: Self = toml::from_str(text)
            .map_err(|e| InvalidPolicy::Syntax(describe_toml_error(text, &e)))?;
        if policy.version != FORMAT_VERSION {
            return Err(UnsupportedVersion {
                found: i64::from(policy.version),
                supported: FORMAT_VERSION,
            }
            .into());
        }
        for (org, peer) in &policy.peers {
            let line = || line_of_table(text, org);
            match (peer.epsilon_per_query, peer.epsilon_per_day) {
                (Some(_), None) | (None, Some(_)) => {
                    return Err(InvalidPolicy::EpsilonAlone {
                        line: line(),
                        org: org.clone(),
                    })
                }
                (Some(query), Some(day)) if query > day => {
                    return Err(InvalidPolicy::EpsilonOrder {
                        line: line(),
                        org: org.clone(),
                        query,
                        day,
                    })
                }
                _ => {}
            }
            if peer.rate_limit == 0 {
                return Err(InvalidPolicy::ZeroRateLimit {
                    line: line(),
                    org: org.clone(),
                });
            }
        }
        Ok(policy)
    }

    /// What `org` may receive; `None` means nothing at all.
    pub fn peer(&self, org: &str) -> Option<&PeerPolicy> {
        self.peers.get(org)
    }

    /// The rules for a call by `peer` with `scope` and `purpose`, or why not.
    pub fn authorise(
        &self,
        node: &OrgId,
        peer: &OrgId,
        scope: Scope,
        purpose: &Purpose,
    ) -> Result<&PeerPolicy, Denied> {
        let policy = self.peer(peer).ok_or_else(|| Denied::UnknownPeer {
            node: node.clone(),
            peer: peer.clone(),
        })?;
        if !policy.scopes.contains(&scope) {
            return Err(Denied::Scope {
                node: node.clone(),
                peer: peer.clone(),
                scope,
            });
        }
        if !policy.purposes.contains(purpose) {
            return Err(Denied::Purpose {
                node: node.clone(),
                peer: peer.clone(),
                purpose: purpose.clone(),
                listed: policy
                    .purposes
                    .iter()
                    .map(Purpose::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(policy)
    }
}

impl PeerPolicy {
    /// The aggregate release rules for the privacy engine.
    pub fn release_rules(&self) -> ReleaseRules {
        ReleaseRules {
            k: self.k,
            finest_cell: self.finest_cell,
            finest_bucket: self.finest_bucket,
            categories: self.categories.clone(),
            epsilon_per_query: self.epsilon_per_query,
        }
    }

    /// Whether events of reports marked `tlp` may go to this peer.
    pub fn allows_tlp(&self, tlp: Tlp) -> bool {
        tlp != Tlp::Unspecified && (tlp as i32) <= (self.max_tlp as i32)
    }

    /// The names of the categories it may see.
    pub fn category_names(&self) -> Vec<&'static str> {
        self.categories
            .iter()
            .filter_map(|&c| lagesbild_reports::Category::try_from(i32::from(c)).ok())
            .map(category_name)
            .collect()
    }
}

/// Checks the `version` of a TOML document before it is parsed strictly, so
/// that a file of another format is named as one rather than by the keys this
/// build does not know. A missing or malformed `version`, and syntax errors,
/// are left to the strict parse.
pub fn check_format_version(text: &str, supported: u32) -> Result<(), UnsupportedVersion> {
    let Ok(table) = text.parse::<toml::Table>() else {
        return Ok(());
    };
    match table.get("version") {
        Some(toml::Value::Integer(v)) if *v != i64::from(supported) => Err(UnsupportedVersion {
            found: *v,
            supported,
        }),
        _ => Ok(()),
    }
}

/// A TOML error in one line: where it is (line and dotted key, found from the
/// error's position in `text`) and what is wrong, without toml's source excerpt.
/// Shared by every strict TOML file a node reads.
pub fn describe_toml_error(text: &str, error: &toml::de::Error) -> String {
    let Some(span) = error
        .span()
        .filter(|s| s.start > 0 && s.start <= text.len())
    else {
        // A missing field is reported on the whole table; no line says more.
        return error.message().to_owned();
    };
    let line_no = text[..span.start].matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("");
    let table = text
        .lines()
        .take(line_no)
        .filter_map(|l| {
            let l = l.trim();
            l.strip_prefix("[[")
                .and_then(|l| l.strip_suffix("]]"))
                .or_else(|| l.strip_prefix('[').and_then(|l| l.strip_suffix(']')))
                .map(str::trim)
        })
        .last();
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    let path = match (table, key) {
        (Some(t), Some(k)) => format!(", {t}.{k}"),
        (None, Some(k)) => format!(", {k}"),
        (Some(t), None) => format!(", [{t}]"),
        (None, None) => String::new(),
    };
    format!("line {line_no}{path}: {}", error.message())
}

/// "line N: " of the `[peer.ORG]` header, for checks across keys.
fn line_of_table(text: &str, org: &str) -> String {
    text.lines()
        .position(|l| {
            let l = l.trim();
            l.starts_with('[') && l.contains("peer.") && l.contains(org)
        })
        .map(|i| format!("line {}: ", i + 1))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
