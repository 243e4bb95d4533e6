//! A Lägesbild node: one organisation's gRPC server and its channels to peers.
//!
//! - [`access`]: the layer every call passes through: it authorises ([`auth`]),
//!   and records the decision in the access log before the answer leaves.
//! - [`auth`]: who may call what: tokens, scopes.
//! - [`outbound`]: the same log for every call this node makes to a peer.
//! - [`witness`]: keeps each peer's latest checkpoint and checks it grows
//!   consistently; raises an alarm if not.
//! - [`wire`]: digests, status and receipts of raw gRPC messages.
//! - [`config`]: the strict, versioned `node.toml`.
//! - [`peers`]: one long-lived mutual-TLS channel per peer, reused by every call.
//! - [`policy_watch`]: the policy in force, reloaded when its file changes.
//! - [`release`]: the one way out for aggregates: policy, rate limit, privacy
//!   budget, then the privacy engine.
//! - [`rate`]: the per-peer rate limits of the policy, shared by aggregates and
//!   event subscriptions.
//! - [`services`]: the gRPC services (node info, federation status, reports,
//!   aggregates, policy explanations; health and reflection come from tonic).
//! - [`server`]: wires them behind the mutual-TLS acceptor and runs until shutdown.
//!
//! Every request reaches a handler only after the transport verified the caller's
//! certificate and bound it to an organisation ([`lagesbild_transport::PeerInfo`]).

#![warn(missing_docs)]

pub mod access;
pub mod auth;
pub mod config;
pub mod events;
pub mod metrics;
pub mod outbound;
pub mod peer_client;
pub mod peers;
pub mod policy_watch;
pub mod rate;
pub mod refusals;
pub mod release;
pub mod server;
pub mod services;
pub mod status;
pub mod wire;
pub mod witness;

pub use config::NodeConfig;
pub use server::{serve, Node};

/// The node software version, as peers see it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What can stop a node from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration (or a file it names) is unusable.
    #[error("config {path}: {message}")]
    Config {
        /// The configuration file.
        path: std::path::PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The listen address can't be bound.
    #[error("listen on {address}: {source}")]
    Bind {
        /// The address.
        address: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The data directory's store can't be opened.
    #[error("data dir {path}: {message}")]
    Store {
        /// The directory.
        path: std::path::PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The gRPC server failed.
    #[error("grpc server: {0}")]
    Server(#[from] tonic::transport::Error),
    /// Something else in start-up failed.
    #[error("{0}")]
    Startup(String),
}
