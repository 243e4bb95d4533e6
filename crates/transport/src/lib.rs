//! Mutual-TLS transport for Lägesbild nodes.
//!
//! - [`server`]: accepts TCP connections, completes TLS 1.3 handshakes concurrently
//!   (a slow or hostile client can't stall the accept loop), and hands tonic
//!   streams that carry the caller's verified [`PeerInfo`], so every handler can ask
//!   who is calling.
//! - [`client`]: long-lived HTTP/2 channels to a peer's node over the same kind of
//!   TLS, checking the peer's certificate against that peer's CA and SAN.
//!
//! Which certificates count for which organisation is decided in
//! `lagesbild-identity`; this crate only drives sockets.

#![warn(missing_docs)]

pub mod client;
pub mod server;

pub use client::{channel, channel_observed, ChannelOptions, ServerFingerprint};
pub use server::{
    peer_of, serve_tls, PeerInfo, PeerStream, RefusalKind, RefusalSink, RefusedHandshake,
};

/// What can go wrong setting up a transport.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// An endpoint is not `host:port`.
    #[error("endpoint {endpoint:?}: {reason}")]
    BadEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
}
