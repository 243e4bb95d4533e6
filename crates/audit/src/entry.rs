//! One access-log entry and its canonical, versioned encoding.
//!
//! The leaf hash is taken over exactly these bytes, so the encoding has one form
//! per entry: fixed field order, big-endian integers, strings and byte strings
//! prefixed with their length, and a version byte first. Decoding is strict: an
//! unknown version, trailing bytes or invalid UTF-8 is an error, never guessed at.
//!
//! Version 1 is a call. Version 2 is a call's fields followed by a
//! [`RefusedConnection`]: connections refused before any call, counted per
//! source. Which version an entry takes follows from the entry itself, so each
//! entry still has exactly one encoding.

use crate::merkle::Hash;
use serde::Serialize;

/// The encoding version of an entry about a call.
pub const ENTRY_VERSION: u8 = 1;

/// The encoding version of an entry about refused connections.
pub const REFUSED_CONNECTION_VERSION: u8 = 2;

/// Longest string field accepted, in bytes.
pub const MAX_FIELD_BYTES: usize = 64 * 1024;

/// Which way the call went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// A caller asked this node.
    Inbound,
    /// This node asked a peer.
    Outbound,
}

/// What was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// The call was authorised and answered.
    Allowed,
    /// The call was refused: authentication, authorisation, policy, budget or
    /// rate limit.
    Refused,
    /// The call was authorised but failed (bad request, unavailable, internal).
    Failed,
}

impl Decision {
    /// The decision a gRPC status code stands for.
    pub fn of_grpc_code(code: u32) -> Self {
        Outcome::of_grpc_code(code).decision()
    }
}

/// How a call ended, from its gRPC status code: the one taxonomy of outcomes.
/// The access log records its [`Decision`]; the metrics count it by
/// [`label`](Self::label), finer within a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// Answered (OK).
    Allowed,
    /// Not authenticated or not authorised (UNAUTHENTICATED, PERMISSION_DENIED).
    Refused,
    /// A budget or rate limit spent (RESOURCE_EXHAUSTED).
    Exhausted,
    /// The request was not acceptable (INVALID_ARGUMENT, NOT_FOUND,
    /// ALREADY_EXISTS, FAILED_PRECONDITION, OUT_OF_RANGE).
    Invalid,
    /// Out of time (DEADLINE_EXCEEDED).
    Deadline,
    /// Could not be served now (UNAVAILABLE).
    Unavailable,
    /// Anything else.
    Failed,
}

impl Outcome {
    /// The outcome a gRPC status code stands for.
    pub fn of_grpc_code(code: u32) -> Self {
        match code {
            0 => Self::Allowed,
            7 | 16 => Self::Refused,
            8 => Self::Exhausted,
            3 | 5 | 6 | 9 | 11 => Self::Invalid,
            4 => Self::Deadline,
            14 => Self::Unavailable,
            _ => Self::Failed,
        }
    }

    /// The decision the access log records.
    pub fn decision(self) -> Decision {
        match self {
            Self::Allowed => Decision::Allowed,
            Self::Refused | Self::Exhausted => Decision::Refused,
            Self::Invalid | Self::Deadline | Self::Unavailable | Self::Failed => Decision::Failed,
        }
    }

    /// The name the metrics use.
    pub fn label(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Refused => "refused",
            Self::Exhausted => "exhausted",
            Self::Invalid => "invalid",
            Self::Deadline => "deadline",
            Self::Unavailable => "unavailable",
            Self::Failed => "failed",
        }
    }
}

/// The token a call carried (empty strings where a claim was absent or no token
/// was verified).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TokenFacts {
    /// `sub`.
    pub sub: String,
    /// `act.sub`: the person a node acted for.
    pub act: String,
    /// `jti`.
    pub jti: String,
    /// `purpose`.
    pub purpose: String,
}

/// What a call released.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Released {
    /// Distinct cells with at least one released value.
    pub cells: u64,
    /// Released values (cell × bucket × category).
    pub values: u64,
    /// Values withheld below k (known only on the releasing node).
    pub withheld: u64,
    /// Privacy budget spent, in millionths of ε.
    pub epsilon_micros: u64,
}

/// Proof from a peer that it logged the call: where, and under which checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Receipt {
    /// Index of the peer's entry for the call.
    pub index: u64,
    /// Its leaf hash.
    #[serde(serialize_with = "hex_hash")]
    pub leaf_hash: Hash,
    /// A signed checkpoint of the peer's log that includes that entry.
    pub checkpoint: String,
}

/// Connections refused during the TLS handshake, before any call: from one
/// source, over one interval. Nothing in it is proven: the handshake failed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RefusedConnection {
    /// Where they came from: an IP address, or an IPv6 /64 prefix.
    pub source: String,
    /// The organisation the client certificate named, unverified; empty if it
    /// named none or none was presented. Never the entry's `peer_org`.
    pub claimed_org: String,
    /// How many refused handshakes this entry accounts for (at least 1).
    pub count: u64,
}

/// One decision about one call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// When the decision was made, microseconds since the Unix epoch (UTC).
    pub time_micros: i64,
    /// Inbound or outbound.
    pub direction: Direction,
    /// The other organisation (caller for inbound, callee for outbound); empty if
    /// unknown.
    pub peer_org: String,
    /// SHA-256 of the other side's TLS certificate, lower-case hex; empty if unknown.
    pub peer_fingerprint: String,
    /// The token's claims.
    pub token: TokenFacts,
    /// The gRPC method path, or `tls-handshake` for a refused connection.
    pub call: String,
    /// SHA-256 of the request body as sent on the wire (gRPC-framed messages).
    #[serde(serialize_with = "hex_opt")]
    pub request_digest: Option<Hash>,
    /// What was decided.
    pub decision: Decision,
    /// The gRPC status code of the answer.
    pub code: u32,
    /// Why, in words (the status message for refusals and failures).
    pub reason: String,
    /// What was released.
    pub released: Released,
    /// SHA-256 of the response body as sent on the wire.
    #[serde(serialize_with = "hex_opt")]
    pub response_digest: Option<Hash>,
    /// On outbound calls: the peer's receipt.
    pub receipt: Option<Receipt>,
    /// For `tls-handshake` entries: the refused connections it accounts for.
    pub refused_connection: Option<RefusedConnection>,
}

/// Why bytes are not an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("entry encoding: {0}")]
pub struct DecodeError(pub String);

impl Entry {
    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.reason.len());
        out.push(match self.refused_connection {
            None => ENTRY_VERSION,
            Some(_) => REFUSED_CONNECTION_VERSION,
        });
        out.extend_from_slice(&self.time_micros.to_be_bytes());
        out.push(match self.direction {
            Direction::Inbound => 1,
            Direction::Outbound => 2,
        });
        put_str(&mut out, &self.peer_org);
        put_str(&mut out, &self.peer_fingerprint);
        put_str(&mut out, &self.token.sub);
        put_str(&mut out, &self.token.act);
        put_str(&mut out, &self.token.jti);
        put_str(&mut out, &self.token.purpose);
        put_str(&mut out, &self.call);
        put_opt_hash(&mut out, self.request_digest.as_ref());
        out.push(match self.decision {
            Decision::Allowed => 1,
            Decision::Refused => 2,
            Decision::Failed => 3,
        });
        out.extend_from_slice(&self.code.to_be_bytes());
        put_str(&mut out, &self.reason);
        for n in [
            self.released.cells,
            self.released.values,
            self.released.withheld,
            self.released.epsilon_micros,
        ] {
            out.extend_from_slice(&n.to_be_bytes());
        }
        put_opt_hash(&mut out, self.response_digest.as_ref());
        match &self.receipt {
            None => out.push(0),
            Some(receipt) => {
                out.push(1);
                out.extend_from_slice(&receipt.index.to_be_bytes());
                out.extend_from_slice(&receipt.leaf_hash);
                put_str(&mut out, &receipt.checkpoint);
            }
        }
        if let Some(refused) = &self.refused_connection {
            put_str(&mut out, &refused.source);
            put_str(&mut out, &refused.claimed_org);
            out.extend_from_slice(&refused.count.to_be_bytes());
        }
        out
    }

    /// Decodes the canonical encoding; anything else is an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader { bytes, at: 0 };
        let version = r.u8("version")?;
        if version != ENTRY_VERSION && version != REFUSED_CONNECTION_VERSION {
            return Err(DecodeError(format!("unknown version {version}")));
        }
        let time_micros = i64::from_be_bytes(r.array("time")?);
        let direction = match r.u8("direction")? {
            1 => Direction::Inbound,
            2 => Direction::Outbound,
            other => return Err(DecodeError(format!("unknown direction {other}"))),
        };
        let peer_org = r.string("peer_org")?;
        let peer_fingerprint = r.string("peer_fingerprint")?;
        let token = TokenFacts {
            sub: r.string("sub")?,
            act: r.string("act")?,
            jti: r.string("jti")?,
            purpose: r.string("purpose")?,
        };
        let call = r.string("call")?;
        let request_digest = r.opt_hash("request_digest")?;
        let decision = match r.u8("decision")? {
            1 => Decision::Allowed,
            2 => Decision::Refused,
            3 => Decision::Failed,
            other => return Err(DecodeError(format!("unknown decision {other}"))),
        };
        let code = u32::from_be_bytes(r.array("code")?);
        let reason = r.string("reason")?;
        let released = Released {
            cells: u64::from_be_bytes(r.array("cells")?),
            values: u64::from_be_bytes(r.array("values")?),
            withheld: u64::from_be_bytes(r.array("withheld")?),
            epsilon_micros: u64::from_be_bytes(r.array("epsilon")?),
        };
        let response_digest = r.opt_hash("response_digest")?;
        let receipt = match r.u8("receipt")? {
            0 => None,
            1 => Some(Receipt {
                index: u64::from_be_bytes(r.array("receipt index")?),
                leaf_hash: r.array("receipt leaf hash")?,
                checkpoint: r.string("receipt checkpoint")?,
            }),
            other => return Err(DecodeError(format!("bad receipt marker {other}"))),
        };
        let refused_connection = if version == REFUSED_CONNECTION_VERSION {
            Some(RefusedConnection {
                source: r.string("source")?,
                claimed_org: r.string("claimed_org")?,
                count: u64::from_be_bytes(r.array("count")?),
            })
        } else {
            None
        };
        if r.at != bytes.len() {
            return Err(DecodeError(format!(
                "{} trailing bytes",
                bytes.len() - r.at
            )));
        }
        Ok(Self {
            time_micros,
            direction,
            peer_org,
            peer_fingerprint,
            token,
            call,
            request_digest,
            decision,
            code,
            reason,
            released,
            response_digest,
            receipt,
            refused_connection,
        })
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Longer fields are cut at a character boundary: the log must never refuse
    // to record a call because a status message was long.
    let mut end = s.len().min(MAX_FIELD_BYTES);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u32).to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..end]);
}

fn put_opt_hash(out: &mut Vec<u8>, hash: Option<&Hash>) {
    match hash {
        None => out.push(0),
        Some(h) => {
            out.push(1);
            out.extend_from_slice(h);
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize, field: &str) -> Result<&[u8], DecodeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| DecodeError(format!("truncated at {field}")))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u8(&mut self, field: &str) -> Result<u8, DecodeError> {
        Ok(self.take(1, field)?[0])
    }

    fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    fn string(&mut self, field: &str) -> Result<String, DecodeError> {
        let len = u32::from_be_bytes(self.array(field)?) as usize;
        if len > MAX_FIELD_BYTES {
            return Err(DecodeError(format!("{field} is {len} bytes long")));
        }
        let bytes = self.take(len, field)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError(format!("{field} is not UTF-8")))
    }

    fn opt_hash(&mut self, field: &str) -> Result<Option<Hash>, DecodeError> {
        match self.u8(field)? {
            0 => Ok(None),
            1 => Ok(Some(self.array(field)?)),
            other => Err(DecodeError(format!("bad {field} marker {other}"))),
        }
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// Parses 64 hex digits.
pub fn parse_hash_hex(text: &str) -> Option<Hash> {
    let text = text.as_bytes();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in text.chunks(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        out[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(out)
}

fn hex_hash<S: serde::Serializer>(hash: &Hash, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex(hash))
}

fn hex_opt<S: serde::Serializer>(hash: &Option<Hash>, s: S) -> Result<S::Ok, S::Error> {
    match hash {
        Some(h) => s.serialize_str(&hex(h)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Entry {
        Entry {
            time_micros: 1_764_000_000_123_456,
            direction: Direction::Outbound,
            peer_org: "polisen".into(),
            peer_fingerprint: "ab".repeat(32),
            token: TokenFacts {
                sub: "anna".into(),
                act: "anna".into(),
                jti: "j-1".into(),
                purpose: "situation-picture".into(),
            },
            call: "/lagesbild.v1.AggregateService/Release".into(),
            request_digest: Some([7; 32]),
            decision: Decision::Allowed,
            code: 0,
            reason: String::new(),
            released: Released {
                cells: 3,
                values: 12,
                withheld: 4,
                epsilon_micros: 500_000,
            },
            response_digest: Some([9; 32]),
            receipt: Some(Receipt {
                index: 41,
                leaf_hash: [1; 32],
                checkpoint: "origin\n42\nAAAA\n\n— origin sig\n".into(),
            }),
            refused_connection: None,
        }
    }

    #[test]
    fn encoding_round_trips_and_is_strict() {
        let entry = sample();
        let bytes = entry.encode();
        assert_eq!(Entry::decode(&bytes).unwrap(), entry);
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Entry::decode(&longer).unwrap_err().0.contains("trailing"));
        for cut in 0..bytes.len() {
            assert!(Entry::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut future = bytes.clone();
        future[0] = 3;
        assert!(Entry::decode(&future).unwrap_err().0.contains("version"));
        // A call's bytes are not a refusal's, nor the other way round.
        let mut as_refusal = bytes;
        as_refusal[0] = REFUSED_CONNECTION_VERSION;
        assert!(Entry::decode(&as_refusal).is_err());
    }

    #[test]
    fn a_refused_connection_round_trips_under_its_own_version() {
        let entry = Entry {
            refused_connection: Some(RefusedConnection {
                source: "127.0.0.1".into(),
                claimed_org: "stockholm-stad".into(),
                count: 17,
            }),
            receipt: None,
            ..sample()
        };
        let bytes = entry.encode();
        assert_eq!(bytes[0], REFUSED_CONNECTION_VERSION);
        assert_eq!(Entry::decode(&bytes).unwrap(), entry);
        for cut in 0..bytes.len() {
            assert!(Entry::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut as_call = bytes;
        as_call[0] = ENTRY_VERSION;
        assert!(Entry::decode(&as_call).is_err());
    }

    #[test]
    fn hex_round_trips() {
        let h = [0xa5; 32];
        assert_eq!(parse_hash_hex(&hex(&h)), Some(h));
        assert_eq!(parse_hash_hex("zz"), None);
    }

    #[test]
    fn decisions_follow_grpc_codes() {
        assert_eq!(Decision::of_grpc_code(0), Decision::Allowed);
        assert_eq!(Decision::of_grpc_code(16), Decision::Refused);
        assert_eq!(Decision::of_grpc_code(7), Decision::Refused);
        assert_eq!(Decision::of_grpc_code(8), Decision::Refused);
        assert_eq!(Decision::of_grpc_code(3), Decision::Failed);
        // Every code has one outcome, and the log's decision is its projection.
        for code in 0..=20 {
            let outcome = Outcome::of_grpc_code(code);
            assert_eq!(Decision::of_grpc_code(code), outcome.decision(), "{code}");
            let refused = matches!(outcome.label(), "refused" | "exhausted");
            assert_eq!(outcome.decision() == Decision::Refused, refused, "{code}");
        }
    }
}
