//! Refused TLS handshakes in the access log: every one accounted for, none
//! attributed to an organisation it did not prove, and at a bounded rate.
//!
//! A refused handshake proves nothing but its source address. The first refusal
//! of a (source, claimed organisation, kind of failure) is an entry at once;
//! later ones within [`REFUSAL_INTERVAL`] are counted and written as one entry
//! with their count when the interval ends. So one source adds at most two
//! entries per claimed member and kind per interval however fast it connects
//! (kinds and members are few), and at most
//! [`MAX_TRACKED`] + 1 keys are tracked at once (the rest share one key), so
//! the log grows at a fixed rate whatever the traffic. The claim is kept in the
//! entry's `refused_connection.claimed_org`, never in `peer_org`: a member reads
//! only entries whose `peer_org` is its own, so it never sees a stranger's claim
//! as its own call; auditors see all.

use lagesbild_audit::{
    AuditLog, Decision, Direction, Entry, RefusedConnection, Released, TokenFacts,
};
use lagesbild_identity::Federation;
use lagesbild_transport::{RefusalKind, RefusalSink, RefusedHandshake};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long refusals of one key are counted before their count is written.
pub const REFUSAL_INTERVAL: Duration = Duration::from_secs(10);

/// Most (source, claim) keys counted separately; past it they share one.
pub const MAX_TRACKED: usize = 256;

/// Longest reason kept, in bytes: a certificate can carry long names.
const MAX_REASON: usize = 300;

/// The source of keys past [`MAX_TRACKED`].
const OTHER_SOURCES: &str = "other sources";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    source: String,
    claimed_org: String,
    kind: Option<RefusalKind>,
}

#[derive(Debug)]
struct Window {
    opened: Instant,
    /// Refusals not yet in an entry.
    unlogged: u64,
    last_reason: String,
    last_fingerprint: String,
}

/// Records refused handshakes in the access log at a bounded rate.
#[derive(Debug)]
pub struct RefusalRecorder {
    log: AuditLog,
    members: Vec<String>,
    windows: Mutex<HashMap<Key, Window>>,
}

impl RefusalRecorder {
    /// A recorder writing to `log`; claims are kept only if they name a member.
    pub fn new(log: AuditLog, federation: &Federation) -> Arc<Self> {
        Arc::new(Self {
            log,
            members: federation.members.iter().map(|m| m.id.clone()).collect(),
            windows: Mutex::new(HashMap::new()),
        })
    }

    /// The sink the accept loop reports to.
    pub fn sink(self: &Arc<Self>) -> RefusalSink {
        let recorder = self.clone();
        Arc::new(move |refused| recorder.note(refused))
    }

    /// Counts one refusal; writes it at once if it is the first of its key.
    pub fn note(&self, refused: RefusedHandshake) {
        let claimed_org = refused
            .claimed_org
            .filter(|org| self.members.contains(org))
            .unwrap_or_default();
        let reason = shorten(&refused.reason);
        let fingerprint = refused.fingerprint.unwrap_or_default();
        let mut key = Key {
            source: source_of(refused.remote.ip()),
            claimed_org,
            kind: Some(refused.kind),
        };
        let mut windows = self.lock();
        if !windows.contains_key(&key) && windows.len() >= MAX_TRACKED {
            key = Key {
                source: OTHER_SOURCES.into(),
                claimed_org: String::new(),
                kind: None,
            };
        }
        match windows.get_mut(&key) {
            Some(window) => {
                window.unlogged += 1;
                window.last_reason = reason;
                window.last_fingerprint = fingerprint;
            }
            None => {
                windows.insert(
                    key.clone(),
                    Window {
                        opened: Instant::now(),
                        unlogged: 0,
                        last_reason: reason.clone(),
                        last_fingerprint: fingerprint.clone(),
                    },
                );
                drop(windows);
                let entry = entry(key, 1, reason, fingerprint);
                let log = self.log.clone();
                // One at most per key and interval, so these tasks are bounded too.
                tokio::spawn(async move { append(&log, &entry).await });
            }
        }
    }

    /// Writes the counts of every interval that ended, and forgets keys that
    /// were quiet for a whole interval; `all` writes every count now (at
    /// shutdown). Returns once they are in the log.
    pub async fn flush(&self, all: bool) {
        for entry in self.due(all) {
            append(&self.log, &entry).await;
        }
    }

    /// The entries of the counts due now.
    fn due(&self, all: bool) -> Vec<Entry> {
        let now = Instant::now();
        let mut due = Vec::new();
        self.lock().retain(|key, window| {
            if !all && now.duration_since(window.opened) < REFUSAL_INTERVAL {
                return true;
            }
            if window.unlogged == 0 {
                return false;
            }
            due.push((
                key.clone(),
                window.unlogged,
                window.last_reason.clone(),
                window.last_fingerprint.clone(),
            ));
            window.unlogged = 0;
            window.opened = now;
            true
        });
        due.into_iter()
            .map(|(key, count, reason, fingerprint)| entry(key, count, reason, fingerprint))
            .collect()
    }

    /// Flushes ended intervals until the task is aborted.
    pub async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(REFUSAL_INTERVAL / 5);
        loop {
            tick.tick().await;
            self.flush(false).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Window>> {
        self.windows.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The entry of `count` refusals of `key`.
fn entry(key: Key, count: u64, reason: String, fingerprint: String) -> Entry {
    Entry {
        time_micros: crate::access::now_micros(),
        direction: Direction::Inbound,
        // Nothing was proven, so no organisation is named here.
        peer_org: String::new(),
        peer_fingerprint: fingerprint,
        token: TokenFacts::default(),
        call: "tls-handshake".into(),
        request_digest: None,
        decision: Decision::Refused,
        code: tonic::Code::Unauthenticated as u32,
        reason,
        released: Released::default(),
        response_digest: None,
        receipt: None,
        refused_connection: Some(RefusedConnection {
            source: key.source,
            claimed_org: key.claimed_org,
            count,
        }),
    }
}

async fn append(log: &AuditLog, entry: &Entry) {
    if let Err(e) = log.append(entry).await {
        tracing::error!(error = %e, "access log could not record refused handshakes");
    }
}

/// An IPv4 address, or the /64 prefix of an IPv6 one (one host's share).
fn source_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

fn shorten(reason: &str) -> String {
    if reason.len() <= MAX_REASON {
        return reason.to_owned();
    }
    let mut end = MAX_REASON;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &reason[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_addresses_or_ipv6_prefixes() {
        assert_eq!(source_of("127.0.0.1".parse().unwrap()), "127.0.0.1");
        assert_eq!(
            source_of("2001:db8:1:2:aa:bb:cc:dd".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
        assert_eq!(source_of("::ffff:10.0.0.7".parse().unwrap()), "10.0.0.7");
    }

    #[test]
    fn long_reasons_are_cut_at_a_character() {
        let long = "å".repeat(400);
        let short = shorten(&long);
        assert!(short.len() <= MAX_REASON + "…".len());
        assert!(short.ends_with('…'));
        assert_eq!(shorten("kort"), "kort");
    }
}
