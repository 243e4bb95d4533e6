//! Who may call what: the check the access layer ([`crate::access`]) runs on
//! every call before any service sees it.
//!
//! It reads the caller's organisation from the verified TLS connection and its
//! token from `authorization: Bearer`, verifies the token for that organisation
//! ([`lagesbild_auth::Verifier`]), checks the scope the called method needs, and
//! hands the [`Authorised`] claims to the service in the request's extensions.
//! Health checks and reflection need no token (they carry no data).

use lagesbild_audit::{AuditError, AuditLog, Direction, Entry};
use lagesbild_auth::{
    bearer_token, AuthError, Authorised, Verifier, AUTHORIZATION, LEEWAY_SECS, MAX_DELEGATION_SECS,
};
use lagesbild_transport::PeerInfo;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tonic::Status;

/// What a call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Nothing beyond the TLS client certificate.
    Certificate,
    /// A valid token, whatever its scopes.
    Token,
    /// A valid token with this scope.
    Scope(&'static str),
}

/// The requirement for a gRPC method path.
pub fn requirement(path: &str) -> Requirement {
    let service = path.trim_start_matches('/').split('/').next().unwrap_or("");
    match service {
        "grpc.health.v1.Health"
        | "grpc.reflection.v1.ServerReflection"
        | "grpc.reflection.v1alpha.ServerReflection" => Requirement::Certificate,
        "lagesbild.v1.ReportService" => Requirement::Scope("report:write"),
        "lagesbild.v1.AggregateService" | "lagesbild.v1.PictureService" => {
            Requirement::Scope("aggregate:read")
        }
        "lagesbild.v1.PolicyService" => Requirement::Scope("policy:admin"),
        "lagesbild.v1.EventService" => match path.rsplit('/').next().unwrap_or("") {
            "Recall" => Requirement::Scope("report:write"),
            _ => Requirement::Scope("events:read"),
        },
        "lagesbild.v1.AuditService" => match path.rsplit('/').next().unwrap_or("") {
            "Checkpoint" | "Witnesses" => Requirement::Token,
            "ClearAlarm" => Requirement::Scope("policy:admin"),
            _ => Requirement::Scope("audit:read"),
        },
        _ => Requirement::Token,
    }
}

/// The verified claims of a request, put there by [`AuthLayer`].
pub fn authorised<T>(request: &tonic::Request<T>) -> Result<&Authorised, Status> {
    request
        .extensions()
        .get::<Authorised>()
        .ok_or_else(|| Status::unauthenticated("no verified token"))
}

/// The status a refused token gets.
pub fn status_of(error: &AuthError) -> Status {
    if error.is_unauthenticated() {
        Status::unauthenticated(error.to_string())
    } else {
        Status::permission_denied(error.to_string())
    }
}

/// Checks the caller of `request` for what its method needs and, if it passes,
/// puts the verified claims in the request's extensions.
pub fn check<B>(verifier: &Verifier, request: &mut http::Request<B>) -> Result<(), Status> {
    let path = request.uri().path().to_owned();
    let need = requirement(&path);
    if need == Requirement::Certificate {
        return Ok(());
    }
    let Some(peer) = request.extensions().get::<PeerInfo>() else {
        return Err(Status::unauthenticated("no verified client certificate"));
    };
    let org = peer.identity.org.clone();
    let header = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let result = match header.and_then(bearer_token) {
        None => Err(AuthError::Missing),
        Some(token) => verifier.verify(token, &org),
    }
    .and_then(|claims| match need {
        Requirement::Scope(scope) => claims.require(scope).map(|()| claims),
        _ => Ok(claims),
    });
    match result {
        Ok(claims) => {
            request.extensions_mut().insert(claims);
            Ok(())
        }
        Err(e) => {
            tracing::warn!(%org, call = %path, reason = %e, "call refused");
            Err(status_of(&e))
        }
    }
}

/// Most access-log entries read at start-up for tokens used before it.
const RECALL_SCAN_MOST: u64 = 1_000_000;
/// Entries read at a time.
const RECALL_PAGE: u64 = 4096;

/// Tells `verifier` of the delegation tokens this node accepted before it
/// started, read from the end of its access log, so a token used before a
/// crash or restart is not accepted again while it could still be valid.
/// Returns how many it found.
///
/// Entries are in the order calls finished, so one that arrived too long ago to
/// matter can follow one that matters by at most `longest_call`; the scan stops
/// past that, or after [`RECALL_SCAN_MOST`] entries.
pub fn recall_used_delegations(
    log: &AuditLog,
    verifier: &Verifier,
    longest_call: Duration,
) -> Result<usize, AuditError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // A delegation token arriving now is accepted at most until its `iat`
    // (up to the skew after arrival) plus its life plus the skew.
    let still_valid_from = now.saturating_sub(MAX_DELEGATION_SECS + 2 * LEEWAY_SECS);
    let stop_before = still_valid_from.saturating_sub(longest_call.as_secs());
    let (mut end, mut scanned, mut found) = (log.size(), 0u64, 0);
    while end > 0 {
        let start = end.saturating_sub(RECALL_PAGE);
        let page = log.entries(start, (end - start) as usize, usize::MAX)?;
        for (index, _, bytes) in page.iter().rev() {
            scanned += 1;
            let Ok(entry) = Entry::decode(bytes) else {
                tracing::warn!(
                    index,
                    "access log entry unreadable while recalling used tokens"
                );
                continue;
            };
            let arrived = u64::try_from(entry.time_micros / 1_000_000).unwrap_or(0);
            if arrived < stop_before {
                return Ok(found);
            }
            if entry.direction == Direction::Inbound
                && !entry.token.act.is_empty()
                && !entry.token.jti.is_empty()
                && arrived >= still_valid_from
            {
                verifier.remember_used(&entry.peer_org, &entry.token.jti, arrived);
                found += 1;
            }
            if scanned >= RECALL_SCAN_MOST {
                tracing::warn!(
                    scanned,
                    "stopped looking for used delegation tokens in the access log"
                );
                return Ok(found);
            }
        }
        end = start;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_has_a_requirement() {
        assert_eq!(
            requirement("/grpc.health.v1.Health/Check"),
            Requirement::Certificate
        );
        assert_eq!(
            requirement("/lagesbild.v1.ReportService/SubmitBatch"),
            Requirement::Scope("report:write")
        );
        assert_eq!(
            requirement("/lagesbild.v1.AggregateService/Release"),
            Requirement::Scope("aggregate:read")
        );
        assert_eq!(
            requirement("/lagesbild.v1.PolicyService/Explain"),
            Requirement::Scope("policy:admin")
        );
        assert_eq!(
            requirement("/lagesbild.v1.NodeService/Info"),
            Requirement::Token
        );
        assert_eq!(requirement("/unknown.Service/X"), Requirement::Token);
        assert_eq!(
            requirement("/lagesbild.v1.AuditService/Checkpoint"),
            Requirement::Token
        );
        assert_eq!(
            requirement("/lagesbild.v1.AuditService/Entries"),
            Requirement::Scope("audit:read")
        );
        assert_eq!(
            requirement("/lagesbild.v1.AuditService/ClearAlarm"),
            Requirement::Scope("policy:admin")
        );
    }
}
