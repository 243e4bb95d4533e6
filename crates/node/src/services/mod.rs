//! The gRPC services of a node.

pub mod aggregate;
pub mod audit_service;
pub mod events;
pub mod node_service;
pub mod picture;
pub mod policy_service;
pub mod reports;

use lagesbild_transport::PeerInfo;
use tonic::{Request, Status};

/// The verified caller of a request, or `UNAUTHENTICATED` if the request did not
/// come through the mutual-TLS acceptor (which can't happen on a served node).
pub fn caller<T>(request: &Request<T>) -> Result<&PeerInfo, Status> {
    lagesbild_transport::peer_of(request)
        .ok_or_else(|| Status::unauthenticated("no verified client certificate"))
}
