//! Per-peer rate limits from the policy: a token bucket per peer, shared by
//! every call that takes from it (aggregate releases and event subscriptions),
//! so a peer's `rate_limit` bounds what it asks of this node, whatever it asks.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// A peer asked more often than its policy allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rate limit of {limit} calls per minute for {peer} reached; try again in a few seconds")]
pub struct RateLimited {
    /// The peer.
    pub peer: String,
    /// Calls per minute.
    pub limit: u32,
}

/// Calls per minute, as a token bucket per peer.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets of every peer that called.
#[derive(Debug, Default)]
pub struct RateLimits {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimits {
    /// Takes one call from `peer`'s bucket, which holds `per_minute` calls and
    /// refills at that rate; refused when it is empty.
    pub fn take(&self, peer: &str, per_minute: u32) -> Result<(), RateLimited> {
        self.take_at(peer, per_minute, Instant::now())
    }

    fn take_at(&self, peer: &str, per_minute: u32, now: Instant) -> Result<(), RateLimited> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let capacity = f64::from(per_minute);
        let bucket = buckets.entry(peer.to_owned()).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        let refill = now.saturating_duration_since(bucket.at).as_secs_f64() * capacity / 60.0;
        // A lowered limit applies at once, not after the old burst is used up.
        bucket.tokens = (bucket.tokens + refill).min(capacity);
        bucket.at = now;
        if bucket.tokens < 1.0 {
            return Err(RateLimited {
                peer: peer.to_owned(),
                limit: per_minute,
            });
        }
        bucket.tokens -= 1.0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_of_the_limit_then_refill_at_its_rate_per_peer() {
        let limits = RateLimits::default();
        let start = Instant::now();
        for _ in 0..3 {
            limits.take_at("a", 3, start).unwrap();
        }
        let refused = limits.take_at("a", 3, start).unwrap_err();
        assert_eq!(refused.limit, 3);
        assert!(refused.to_string().contains("3 calls per minute for a"));
        // Another peer has its own bucket.
        limits.take_at("b", 3, start).unwrap();
        // Whether `peer` may call `secs` after the start, under `limit`.
        let allowed = |peer, limit, secs| {
            limits
                .take_at(peer, limit, start + Duration::from_secs(secs))
                .is_ok()
        };
        // 3 a minute: one more every 20 s, not sooner; a refused call takes nothing.
        assert!(!allowed("a", 3, 19));
        assert!(allowed("a", 3, 21));
        assert!(!allowed("a", 3, 39));
        assert!(allowed("a", 3, 42));
        // A lowered limit caps what was saved up.
        assert!(allowed("b", 1, 600));
        assert!(!allowed("b", 1, 600));
    }
}
