//! The gRPC services of a node.

pub mod aggregate;
pub mod audit_service;
pub mod events;
pub mod node_service;
pub mod picture;
pub mod policy_service;
pub mod reports;
pub mod session;

use crate::auth::authorised;
use lagesbild_transport::PeerInfo;
use lagesbild_vocabulary::{OrgId, Purpose};
use tonic::{Request, Status};

/// Refuses a write (`report:write`) whose token claims a purpose not in
/// `purposes` (`[reports] write_purposes` of `node.toml`).
pub fn check_write_purpose<T>(request: &Request<T>, purposes: &[String]) -> Result<(), Status> {
    let claimed = &authorised(request)?.purpose;
    if purposes.iter().any(|p| p == claimed) {
        return Ok(());
    }
    Err(Status::permission_denied(format!(
        "the purpose {claimed:?} is not one this node accepts for writing reports; accepted: {}",
        purposes.join(", ")
    )))
}

/// The verified caller of a request, or `UNAUTHENTICATED` if the request did not
/// come through the mutual-TLS acceptor (which can't happen on a served node).
/// Who calls (the verified token's org) and why (the purpose its token claims).
pub fn who_and_why<T>(request: &Request<T>) -> Result<(OrgId, Purpose), Status> {
    let claims = crate::auth::authorised(request)?;
    let purpose = Purpose::parse(&claims.purpose).map_err(|e| {
        Status::permission_denied(format!(
            "the purpose (a token's purpose claim, or a session's lagesbild-purpose header): {e}"
        ))
    })?;
    Ok((claims.org.clone(), purpose))
}

/// The verified certificate of the caller.
pub fn caller<T>(request: &Request<T>) -> Result<&PeerInfo, Status> {
    lagesbild_transport::peer_of(request)
        .ok_or_else(|| Status::unauthenticated("no verified client certificate"))
}
