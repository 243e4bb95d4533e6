//! What the log's tests share: a signing key, and entries like a real one.

use lagesbild_audit::checkpoint::NoteSigner;
use lagesbild_audit::{Decision, Direction, Entry, Released, TokenFacts};

const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIOHaWrMWwg6ezaUR/h7TLOIoXIlX+NbUeqLV+Q+SVKPu\n-----END PRIVATE KEY-----\n";

/// Entry `i` of a test log: an inbound aggregate call, distinct per `i`.
pub fn entry(i: u64) -> Entry {
    Entry {
        time_micros: 1_764_000_000_000_000 + i as i64,
        direction: Direction::Inbound,
        peer_org: "scandic".into(),
        peer_fingerprint: "00".repeat(32),
        token: TokenFacts {
            sub: "node".into(),
            act: "anna".into(),
            jti: format!("jti-{i}"),
            purpose: "situation-picture".into(),
        },
        call: "/lagesbild.v1.AggregateService/Release".into(),
        request_digest: Some([1; 32]),
        decision: Decision::Allowed,
        code: 0,
        reason: String::new(),
        released: Released::default(),
        response_digest: Some([2; 32]),
        receipt: None,
        refused_connection: None,
    }
}

pub fn signer() -> NoteSigner {
    NoteSigner::from_pem("testfed/scandic/audit", KEY.as_bytes()).unwrap()
}
