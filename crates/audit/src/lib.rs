//! Lägesbild's verifiable access log.
//!
//! Every decision a node makes about a call, inbound or outbound, allowed or
//! refused, is an [`Entry`] in an append-only log whose tree hashing is RFC 9162
//! ([`merkle`]). The log signs [`checkpoint`]s (C2SP tlog-checkpoint as an
//! Ed25519 signed note); callers keep receipts, peers keep the latest checkpoint
//! they saw and demand consistency proofs ([`witness`]), and anyone holding the
//! entries can recompute everything offline ([`verify`], [`export`]).
//!
//! This crate stores and proves; it does not decide what to log. The node's
//! access layer does that, for every call, in one place.

#![warn(missing_docs)]

pub mod checkpoint;
pub mod entry;
pub mod export;
mod files;
mod log;
pub mod merkle;
pub mod verify;
pub mod witness;

pub use checkpoint::{origin_of, Checkpoint, NoteError, NoteSigner, NoteVerifier};
pub use entry::{
    Decision, Direction, Entry, Outcome, Receipt, RefusedConnection, Released, TokenFacts,
};
pub use log::{AuditLog, LogOptions};
pub use merkle::{Hash, ProofError};
pub use witness::{Alarm, WitnessState};

/// What can go wrong with the log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Reading or writing the log's files failed.
    #[error("audit log files: {0}")]
    Io(String),
    /// Stored data is not what was written.
    #[error("audit log is corrupt: {0}")]
    Corrupt(String),
    /// A proof could not be made.
    #[error("{0}")]
    Proof(#[from] ProofError),
    /// The writer is gone (shutting down, or a failed disk).
    #[error("audit log writer stopped")]
    Stopped,
}
