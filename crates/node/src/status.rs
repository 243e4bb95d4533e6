//! The one place a node's typed errors become gRPC statuses.
//!
//! A caller learns what it did wrong and what is accepted; it never learns a
//! library's internals. A failure of the node itself (its store, its log, its
//! own signing key) is logged here in full and answered with a plain
//! `UNAVAILABLE` sentence. The decision each code means in the access log and
//! the metrics is [`lagesbild_audit::Decision::of_grpc_code`].

use crate::release::GateError;
use crate::witness::WitnessError;
use lagesbild_audit::AuditError;
use lagesbild_auth::AuthError;
use lagesbild_store::StoreError;
use tonic::Status;

/// An error the node can answer a caller with.
pub trait IntoStatus {
    /// The status the caller gets.
    fn into_status(self) -> Status;
}

impl IntoStatus for &AuthError {
    fn into_status(self) -> Status {
        if self.is_unauthenticated() {
            Status::unauthenticated(self.to_string())
        } else {
            Status::permission_denied(self.to_string())
        }
    }
}

impl IntoStatus for GateError {
    fn into_status(self) -> Status {
        match self {
            GateError::Denied(_) | GateError::Refused(_) => {
                Status::permission_denied(self.to_string())
            }
            GateError::Budget { .. } | GateError::RateLimited(_) => {
                Status::resource_exhausted(self.to_string())
            }
            GateError::Store(e) => e.into_status(),
            GateError::Task(e) => {
                tracing::error!(error = %e, "a release failed");
                Status::unavailable("the node could not make the release; try again")
            }
        }
    }
}

impl IntoStatus for StoreError {
    fn into_status(self) -> Status {
        tracing::error!(error = %self, "the store failed");
        Status::unavailable("the node could not read or write its store; try again")
    }
}

impl IntoStatus for AuditError {
    fn into_status(self) -> Status {
        match self {
            AuditError::Proof(e) => Status::invalid_argument(e.to_string()),
            other => {
                tracing::error!(error = %other, "the access log failed");
                Status::unavailable("the node could not read its access log; try again")
            }
        }
    }
}

impl IntoStatus for WitnessError {
    fn into_status(self) -> Status {
        match self {
            WitnessError::Log(e) => e.into_status(),
            other => {
                tracing::error!(error = %other, "witness state could not be changed");
                Status::unavailable(
                    "the node could not change its witness state; see its log and try again",
                )
            }
        }
    }
}

/// The node could not sign a token for a call it makes to a peer: its own
/// key is at fault, not the caller.
pub fn unsigned(error: &AuthError) -> Status {
    tracing::error!(error = %error, "the node could not sign a token for a peer");
    Status::unavailable("the node could not sign its call to a peer; see its log")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_failures_keep_their_text_from_the_caller() {
        let corrupt = || StoreError::Corrupt {
            key: "reports/0x1f".into(),
            reason: "bad page".into(),
        };
        let status = corrupt().into_status();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(!status.message().contains("0x1f"), "{}", status.message());
        // Positive control: the text is there to leak.
        assert!(corrupt().to_string().contains("0x1f"));
        let through_gate = GateError::from(corrupt()).into_status();
        assert!(!through_gate.message().contains("0x1f"));
    }
}
