//! Who is who in a Lägesbild federation.
//!
//! - [`federation`]: the federation file every node holds (members, roles, endpoints,
//!   CA certificates, token public keys); there is no central server.
//! - [`spiffe`]: the organisation a certificate speaks for, read from its SAN URI
//!   `spiffe://<federation>/org/<org>/<workload>`.
//! - [`certs`]: making a development CA, node and client certificates and token keys.
//! - [`tls`]: rustls configurations whose verifiers bind a certificate to an
//!   organisation: it counts for org X only if it chains to X's CA *and* names X.
//!
//! This crate does no network I/O; the transport crate drives the sockets.

#![warn(missing_docs)]

pub mod certs;
pub mod federation;
mod pem;
pub mod spiffe;
pub mod tls;

pub use federation::{Federation, Member, Role};
pub use pem::{load_certificate_chain, load_private_key};
pub use spiffe::SpiffeId;
pub use tls::{PeerIdentity, TlsFiles};

use std::path::PathBuf;

/// What can go wrong while reading or checking identities.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file was read but its content is not what it should be.
    #[error("{path}: {message}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The federation file is consistent TOML but describes an impossible federation.
    #[error("federation file: {0}")]
    Federation(String),
    /// A certificate does not name exactly one organisation of this federation.
    #[error("certificate identity: {0}")]
    Spiffe(String),
    /// Certificate or key generation failed.
    #[error("certificate generation: {0}")]
    Generation(#[from] rcgen::Error),
    /// A TLS configuration could not be built.
    #[error("tls configuration: {0}")]
    Tls(String),
    /// A signing key could not be made.
    #[error("key generation: {0}")]
    Key(&'static str),
}

impl IdentityError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn bad_file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::BadFile {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Lower-case hex SHA-256 of a certificate's DER, as shown in logs and the access log.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}
