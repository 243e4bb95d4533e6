//! Metrics in the Prometheus text format, served on a separate loopback HTTP
//! port (`[metrics] listen` in `node.toml`): calls by service, method, peer and
//! decision; latency histograms; what is left of each peer's privacy budget;
//! the access log's size; each peer's reachability and witness status; event
//! feeds and the inbox.
//!
//! Counted in [`crate::access`] (inbound) and [`crate::outbound`] (outbound),
//! the one place every call passes; the rest is read when scraped.

use crate::release::ReleaseGate;
use lagesbild_audit::{AuditLog, Outcome};
use lagesbild_store::Store;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Upper bounds of the latency buckets, seconds.
const BUCKETS: [f64; 14] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if let Some(i) = BUCKETS.iter().position(|&b| seconds <= b) {
            self.counts[i] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }
}

/// (direction, service, method, peer, decision)
type CallKey = (&'static str, String, String, String, &'static str);

#[derive(Debug, Default)]
struct Counters {
    calls: BTreeMap<CallKey, u64>,
    latency: BTreeMap<(&'static str, String, String), Histogram>,
    /// Whether the last call to each peer got an answer (any gRPC status).
    peer_up: BTreeMap<String, bool>,
}

/// The node's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<Counters>,
}

/// What a call's gRPC status says about the decision: the access log's
/// taxonomy ([`Outcome`]), by its metrics label.
pub fn decision_of(code: u32) -> &'static str {
    Outcome::of_grpc_code(code).label()
}

fn split_path(path: &str) -> (String, String) {
    let path = path.trim_start_matches('/');
    match path.split_once('/') {
        Some((service, method)) => (service.to_owned(), method.to_owned()),
        None => (path.to_owned(), String::new()),
    }
}

impl Metrics {
    /// Counts one call: `inbound` or `outbound`, its path, the peer org, its
    /// gRPC status code and how long it took (until its answer could leave).
    pub fn call(&self, direction: &'static str, path: &str, peer: &str, code: u32, took: Duration) {
        let (service, method) = split_path(path);
        let mut counters = self.counters.lock().expect("metrics lock");
        *counters
            .calls
            .entry((
                direction,
                service.clone(),
                method.clone(),
                peer.to_owned(),
                decision_of(code),
            ))
            .or_default() += 1;
        counters
            .latency
            .entry((direction, service, method))
            .or_default()
            .observe(took.as_secs_f64());
        if direction == "outbound" {
            counters.peer_up.insert(peer.to_owned(), code != 14);
        }
    }

    /// The text exposition, with the gauges read now.
    pub fn render(&self, sources: &Sources) -> String {
        let mut out = String::new();
        let counters = self.counters.lock().expect("metrics lock");
        out.push_str("# HELP lagesbild_calls_total Calls by direction, service, method, peer org and decision.\n# TYPE lagesbild_calls_total counter\n");
        for ((direction, service, method, peer, decision), n) in &counters.calls {
            let _ = writeln!(
                out,
                "lagesbild_calls_total{{direction=\"{direction}\",service=\"{}\",method=\"{}\",peer=\"{}\",decision=\"{decision}\"}} {n}",
                escape(service),
                escape(method),
                escape(peer)
            );
        }
        out.push_str("# HELP lagesbild_call_seconds Time from a call's arrival until its answer could leave (its log entry on disk).\n# TYPE lagesbild_call_seconds histogram\n");
        for ((direction, service, method), h) in &counters.latency {
            let labels = format!(
                "direction=\"{direction}\",service=\"{}\",method=\"{}\"",
                escape(service),
                escape(method)
            );
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(h.counts) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "lagesbild_call_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "lagesbild_call_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "lagesbild_call_seconds_sum{{{labels}}} {}", h.sum);
            let _ = writeln!(out, "lagesbild_call_seconds_count{{{labels}}} {}", h.count);
        }
        out.push_str("# HELP lagesbild_peer_up Whether the last call to the peer got an answer.\n# TYPE lagesbild_peer_up gauge\n");
        for (peer, up) in &counters.peer_up {
            let _ = writeln!(
                out,
                "lagesbild_peer_up{{peer=\"{}\"}} {}",
                escape(peer),
                u8::from(*up)
            );
        }
        drop(counters);
        sources.render_into(&mut out);
        out
    }
}

/// Where the gauges are read from.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The access log.
    pub log: AuditLog,
    /// The release gate (policy and budgets).
    pub gate: Arc<ReleaseGate>,
    /// The store (event feeds and inbox).
    pub store: Store,
}

impl Sources {
    fn render_into(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP lagesbild_access_log_entries Entries in the node's access log.\n# TYPE lagesbild_access_log_entries gauge\nlagesbild_access_log_entries {}",
            self.log.size()
        );
        out.push_str("# HELP lagesbild_witness_size Entries of the peer's access log this node has witnessed.\n# TYPE lagesbild_witness_size gauge\n");
        let witnessed = self.log.witnessed_all().unwrap_or_default();
        for (peer, state) in &witnessed {
            let _ = writeln!(
                out,
                "lagesbild_witness_size{{peer=\"{}\"}} {}",
                escape(peer),
                state.size
            );
        }
        out.push_str("# HELP lagesbild_witness_alarm 1 when the peer's log was caught forking or being rewritten.\n# TYPE lagesbild_witness_alarm gauge\n");
        for (peer, state) in &witnessed {
            let _ = writeln!(
                out,
                "lagesbild_witness_alarm{{peer=\"{}\"}} {}",
                escape(peer),
                u8::from(state.alarm.is_some())
            );
        }
        let policy = self.gate.policy().snapshot();
        out.push_str("# HELP lagesbild_budget_left_epsilon What is left of each peer's privacy budget today.\n# TYPE lagesbild_budget_left_epsilon gauge\n");
        for (peer, rules) in &policy.peers {
            if let Some(per_day) = rules.epsilon_per_day {
                let spent = self.gate.spent_today(peer);
                let _ = writeln!(
                    out,
                    "lagesbild_budget_left_epsilon{{peer=\"{}\"}} {}",
                    escape(peer),
                    per_day.saturating_sub(spent).as_f64()
                );
            }
        }
        out.push_str("# HELP lagesbild_event_feed_head Items made for each recipient's event feed.\n# TYPE lagesbild_event_feed_head counter\n");
        for peer in policy.peers.keys() {
            let _ = writeln!(
                out,
                "lagesbild_event_feed_head{{peer=\"{}\"}} {}",
                escape(peer),
                *self.store.feed_head(peer).borrow()
            );
        }
        let _ = writeln!(
            out,
            "# HELP lagesbild_event_inbox_head Items taken into the inbox.\n# TYPE lagesbild_event_inbox_head counter\nlagesbild_event_inbox_head {}",
            *self.store.inbox_head().borrow()
        );
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Serves `GET /metrics` on `listener` until the task is dropped: plain
/// HTTP/1.1, one request per connection, on loopback only.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, sources: Sources) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        let sources = sources.clone();
        tokio::spawn(async move {
            let mut request = Vec::with_capacity(512);
            let mut buffer = [0u8; 1024];
            // The request line and headers; a scrape sends no body.
            while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
                match tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buffer)).await {
                    Ok(Ok(n)) if n > 0 => request.extend_from_slice(&buffer[..n]),
                    _ => return,
                }
            }
            let line = request.split(|&b| b == b'\r').next().unwrap_or_default();
            let (status, body) =
                if line.starts_with(b"GET /metrics ") || line.starts_with(b"GET /metrics?") {
                    ("200 OK", metrics.render(&sources))
                } else {
                    (
                        "404 Not Found",
                        "only GET /metrics is served here\n".to_owned(),
                    )
                };
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(body.as_bytes()).await;
            let _ = socket.shutdown().await;
        });
    }
}

/// Why a metrics address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsAddressError {
    /// Not an address and port.
    #[error("metrics.listen {0:?} is not IP:PORT")]
    NotAnAddress(String),
    /// Not on loopback.
    #[error("metrics.listen {0} is not a loopback address (127.0.0.0/8 or ::1); metrics are served without TLS")]
    NotLoopback(SocketAddr),
}

/// Checks that a metrics address is on loopback: the metrics name peers and
/// their budgets, and have no authentication of their own.
pub fn loopback_address(text: &str) -> Result<SocketAddr, MetricsAddressError> {
    let address: SocketAddr = text
        .parse()
        .map_err(|_| MetricsAddressError::NotAnAddress(text.to_owned()))?;
    if !address.ip().is_loopback() {
        return Err(MetricsAddressError::NotLoopback(address));
    }
    Ok(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_counted_and_timed() {
        let metrics = Metrics::default();
        metrics.call(
            "inbound",
            "/lagesbild.v1.AggregateService/Release",
            "scandic",
            0,
            Duration::from_millis(3),
        );
        metrics.call(
            "inbound",
            "/lagesbild.v1.AggregateService/Release",
            "scandic",
            7,
            Duration::from_millis(1),
        );
        metrics.call(
            "outbound",
            "/lagesbild.v1.NodeService/Info",
            "polisen",
            14,
            Duration::from_secs(2),
        );
        let counters = metrics.counters.lock().unwrap();
        assert_eq!(counters.calls.len(), 3);
        let h = &counters.latency[&(
            "inbound",
            "lagesbild.v1.AggregateService".to_owned(),
            "Release".to_owned(),
        )];
        assert_eq!(h.count, 2);
        assert_eq!((h.counts[1], h.counts[3]), (1, 1), "1 ms and 3 ms");
        assert!(!counters.peer_up["polisen"]);
    }

    #[test]
    fn only_loopback_is_served() {
        assert!(loopback_address("127.0.0.1:9464").is_ok());
        assert!(loopback_address("[::1]:9464").is_ok());
        assert!(loopback_address("0.0.0.0:9464").is_err());
        assert!(loopback_address("localhost:9464").is_err());
    }
}
