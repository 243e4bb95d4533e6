//! Who may call what: the check the access layer ([`crate::access`]) runs on
//! every call before any service sees it.
//!
//! It reads the caller's organisation and workload from the verified TLS
//! connection, then:
//! - a peer's node (or an auditor's tool) must send a token signed with its
//!   org's key ([`lagesbild_auth::Verifier`]) carrying the scope the method
//!   needs;
//! - the org's own people, on its `client` certificate, must send a session
//!   from signing in ([`lagesbild_people`]) whose person has a role the method
//!   names; the session's person is what the log records;
//! - the org's machine clients, each on a certificate of its own, may use the
//!   scopes `[workloads]` lists for them, and need no token;
//! - the node's own certificate, held with its token key, may send a token.
//!
//! It hands the [`Authorised`] facts to the service in the request's
//! extensions. Health checks and reflection need no token (they carry no data).

use crate::status::IntoStatus;
use lagesbild_audit::{AuditError, AuditLog, Direction, Entry};
use lagesbild_auth::{
    bearer_token, Actor, AuthError, Authorised, Verifier, AUTHORIZATION, LEEWAY_SECS,
    MAX_DELEGATION_SECS, PURPOSE_HEADER,
};
use lagesbild_identity::Role;
use lagesbild_people::{People, SESSION_PREFIX};
use lagesbild_transport::PeerInfo;
use lagesbild_vocabulary::OrgId;
use lagesbild_vocabulary::Scope;
use lagesbild_vocabulary::{Clock, SystemClock};
use std::sync::Arc;
use std::time::Duration;
use tonic::Status;

/// What a call's token must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Nothing beyond the TLS client certificate.
    Certificate,
    /// The org's own `client` certificate and nothing else: signing in.
    SignIn,
    /// A valid token, whatever its scopes.
    Token,
    /// A valid token with this scope.
    Scope(Scope),
}

/// Which organisations may call a method once their token checks out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callers {
    /// Any member or auditor of the federation.
    Federation,
    /// Only the node's own organisation: its people and tools.
    OwnOrg,
}

/// One row of the authorisation table: what one method (or every other method
/// of a service) needs, and who may call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    service: &'static str,
    /// `None`: every method of the service that no other row names.
    method: Option<&'static str>,
    /// What the token must carry.
    pub need: Requirement,
    /// Who may call.
    pub callers: Callers,
    /// What the method gives, for the sentence that refuses another organisation.
    pub gives: &'static str,
    /// Whether its answer is a stream: logged when the stream starts, without
    /// a response digest (it can't be held back until it ends), and again at
    /// its end.
    pub streams: bool,
    /// What aggregate releases its answer carries, for the log.
    pub releases: Releases,
    /// Which of the org's own people may call, by role.
    pub people: &'static [PersonRole],
}

/// The aggregate releases a method's answer carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Releases {
    /// None.
    Nothing,
    /// One `AggregateRelease`.
    One,
    /// A `ReleaseManyResponse`: one outcome per request.
    Many,
}

impl Rule {
    const fn answering(self, releases: Releases) -> Rule {
        Rule { releases, ..self }
    }

    const fn streaming(self) -> Rule {
        Rule {
            streams: true,
            ..self
        }
    }

    const fn for_people(self, people: &'static [PersonRole]) -> Rule {
        Rule { people, ..self }
    }
}

/// Every role: for methods that give nothing a role protects.
const ANYONE: &[PersonRole] = &PersonRole::ALL;

const fn rule(
    service: &'static str,
    method: Option<&'static str>,
    need: Requirement,
    callers: Callers,
    gives: &'static str,
) -> Rule {
    Rule {
        service,
        method,
        need,
        callers,
        gives,
        streams: false,
        releases: Releases::Nothing,
        people: &[],
    }
}

use lagesbild_people::PersonRole::{self, Analyst, Auditor, DataSteward, DutyOfficer, PolicyAdmin};
use lagesbild_proto::v1::session_service_server as session;
use lagesbild_proto::v1::{
    aggregate_service_server as aggregate, audit_service_server as audit,
    event_service_server as events, node_service_server as node, picture_service_server as picture,
    policy_service_server as policy, report_service_server as reports,
};
use tonic_health::pb::health_server as health;
use tonic_reflection::pb::{v1 as reflection_v1, v1alpha as reflection_v1alpha};
use Callers::{Federation, OwnOrg};
use Requirement::{Certificate, Token};

/// Every method a node serves, by the generated service names: the one place
/// that says which scope a call needs and who may make it. The access layer
/// enforces it before any service sees a call; a method of a service not
/// listed needs a valid token (and is then answered `UNIMPLEMENTED`).
pub const TABLE: &[Rule] = &[
    rule(
        health::SERVICE_NAME,
        None,
        Certificate,
        Federation,
        "health",
    ),
    rule(
        reflection_v1::server_reflection_server::SERVICE_NAME,
        None,
        Certificate,
        Federation,
        "reflection",
    ),
    rule(
        reflection_v1alpha::server_reflection_server::SERVICE_NAME,
        None,
        Certificate,
        Federation,
        "reflection",
    ),
    rule(
        reports::SERVICE_NAME,
        None,
        Requirement::Scope(Scope::ReportWrite),
        OwnOrg,
        "writing reports",
    )
    .for_people(&[DataSteward]),
    rule(
        aggregate::SERVICE_NAME,
        Some("Release"),
        Requirement::Scope(Scope::AggregateRead),
        Federation,
        "aggregate releases",
    )
    .answering(Releases::One)
    .for_people(&[Analyst]),
    rule(
        aggregate::SERVICE_NAME,
        Some("ReleaseMany"),
        Requirement::Scope(Scope::AggregateRead),
        Federation,
        "aggregate releases",
    )
    .answering(Releases::Many)
    .for_people(&[Analyst]),
    rule(
        aggregate::SERVICE_NAME,
        None,
        Requirement::Scope(Scope::AggregateRead),
        Federation,
        "aggregate releases",
    )
    .for_people(&[Analyst]),
    rule(
        picture::SERVICE_NAME,
        None,
        Requirement::Scope(Scope::AggregateRead),
        OwnOrg,
        "the situation picture",
    )
    .for_people(&[Analyst]),
    rule(
        policy::SERVICE_NAME,
        None,
        Requirement::Scope(Scope::PolicyAdmin),
        OwnOrg,
        "the policy's explanation",
    )
    .for_people(&[PolicyAdmin]),
    rule(
        events::SERVICE_NAME,
        Some("Subscribe"),
        Requirement::Scope(Scope::EventsRead),
        Federation,
        "a member's event feed",
    )
    .streaming()
    .for_people(&[DutyOfficer]),
    rule(
        events::SERVICE_NAME,
        Some("Watch"),
        Requirement::Scope(Scope::EventsRead),
        OwnOrg,
        "the node's inbox of events",
    )
    .streaming()
    .for_people(&[DutyOfficer]),
    rule(
        events::SERVICE_NAME,
        Some("Recall"),
        Requirement::Scope(Scope::ReportWrite),
        OwnOrg,
        "recalling a report's events",
    )
    .for_people(&[DataSteward]),
    rule(
        audit::SERVICE_NAME,
        Some("Checkpoint"),
        Token,
        Federation,
        "checkpoints",
    )
    .for_people(ANYONE),
    rule(
        audit::SERVICE_NAME,
        Some("Witnesses"),
        Token,
        Federation,
        "witness state",
    )
    .for_people(ANYONE),
    rule(
        audit::SERVICE_NAME,
        Some("ClearAlarm"),
        Requirement::Scope(Scope::PolicyAdmin),
        OwnOrg,
        "clearing a witness alarm",
    )
    .for_people(&[PolicyAdmin]),
    rule(
        audit::SERVICE_NAME,
        None,
        Requirement::Scope(Scope::AuditRead),
        Federation,
        "the access log",
    )
    .for_people(&[Auditor]),
    rule(
        node::SERVICE_NAME,
        Some("FederationStatus"),
        Token,
        OwnOrg,
        "federation status",
    )
    .for_people(ANYONE),
    rule(
        node::SERVICE_NAME,
        Some("Map"),
        Token,
        OwnOrg,
        "the offline map",
    )
    .for_people(ANYONE),
    rule(
        node::SERVICE_NAME,
        None,
        Token,
        Federation,
        "node information",
    )
    .for_people(ANYONE),
    rule(
        session::SERVICE_NAME,
        Some("SignIn"),
        Requirement::SignIn,
        OwnOrg,
        "signing in",
    ),
    rule(
        session::SERVICE_NAME,
        Some("Exchange"),
        Requirement::SignIn,
        OwnOrg,
        "signing in",
    ),
    rule(
        session::SERVICE_NAME,
        Some("Options"),
        Requirement::SignIn,
        OwnOrg,
        "signing in",
    ),
    rule(session::SERVICE_NAME, None, Token, OwnOrg, "sessions").for_people(ANYONE),
];

/// A method no row names.
const UNLISTED: Rule = rule("", None, Token, Federation, "");

/// The row for a gRPC method path (`/package.Service/Method`).
pub fn rule_for(path: &str) -> &'static Rule {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (service, method) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    TABLE
        .iter()
        .filter(|r| r.service == service)
        .find(|r| r.method.is_none_or(|m| m == method))
        .unwrap_or(&UNLISTED)
}

/// The requirement for a gRPC method path.
pub fn requirement(path: &str) -> Requirement {
    rule_for(path).need
}

/// The verified claims of a request, put there by [`crate::access::CheckLayer`].
pub fn authorised<T>(request: &tonic::Request<T>) -> Result<&Authorised, Status> {
    request
        .extensions()
        .get::<Authorised>()
        .ok_or_else(|| Status::unauthenticated("no verified token"))
}

use lagesbild_identity::spiffe::NODE_WORKLOAD;

/// The org's machine clients and the scopes each may use (`[workloads]` in
/// node.toml). The org's people and tools (`client`) and its node (`node`) are
/// not limited here; any other workload of the org must be listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Workloads {
    scopes: std::collections::BTreeMap<String, Vec<Scope>>,
}

/// Why a `[workloads]` entry cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidWorkload {
    /// The name is no SPIFFE path segment, or a reserved one.
    #[error("workloads.{0}: a workload name is 1 to 63 lower-case letters, digits, '-', '_' or '.', and not \"client\" or \"node\"")]
    Name(String),
    /// A scope that does not exist.
    #[error("workloads.{workload}: unknown scope {scope:?} (known: {known})")]
    Scope {
        /// The workload.
        workload: String,
        /// The name given.
        scope: String,
        /// The names known.
        known: String,
    },
}

impl Workloads {
    /// The workloads of `[workloads]`: each name with its scope names.
    pub fn parse<'a>(
        entries: impl IntoIterator<Item = (&'a String, &'a Vec<String>)>,
    ) -> Result<Self, InvalidWorkload> {
        let mut scopes = std::collections::BTreeMap::new();
        for (name, names) in entries {
            if !lagesbild_vocabulary::is_id_segment(name) || name == "client" || name == "node" {
                return Err(InvalidWorkload::Name(name.clone()));
            }
            let parsed = names
                .iter()
                .map(|n| {
                    Scope::parse(n).ok_or_else(|| InvalidWorkload::Scope {
                        workload: name.clone(),
                        scope: n.clone(),
                        known: Scope::ALL
                            .iter()
                            .map(|s| s.name())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            scopes.insert(name.clone(), parsed);
        }
        Ok(Self { scopes })
    }

    /// Whether the org's `workload` may make a call that needs `need`, or why not.
    fn allows(&self, org: &str, workload: &str, need: Requirement) -> Result<(), Status> {
        if workload == "client" || workload == NODE_WORKLOAD {
            return Ok(());
        }
        let Some(allowed) = self.scopes.get(workload) else {
            return Err(Status::permission_denied(format!(
                "workload {workload:?} of {org} is not listed in this node's [workloads]; a machine client needs an entry naming the scopes it may use"
            )));
        };
        match need {
            Requirement::Scope(scope) if !allowed.contains(&scope) => {
                Err(Status::permission_denied(format!(
                    "workload {workload:?} of {org} may use {}; this call needs {scope}",
                    if allowed.is_empty() {
                        "no scope".to_owned()
                    } else {
                        allowed
                            .iter()
                            .map(|s| s.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                )))
            }
            _ => Ok(()),
        }
    }
}

/// What the check knows: whose node this is, the members' token keys, the
/// org's machine clients and its people.
#[derive(Debug)]
pub struct Authority {
    /// The node's organisation.
    pub org: OrgId,
    /// Verifies the tokens of members' nodes and auditors.
    pub verifier: Arc<Verifier>,
    /// The org's machine clients.
    pub workloads: Workloads,
    /// The org's people and their sessions.
    pub people: Arc<People>,
}

/// Checks the caller of `request` for what its method needs and, if it passes,
/// puts what was verified in the request's extensions ([`Authorised`], and
/// for a person's call their [`lagesbild_people::ActiveSession`]). Returns the method's row of
/// the table.
pub fn check<B>(
    authority: &Authority,
    request: &mut http::Request<B>,
) -> Result<&'static Rule, Status> {
    let node_org = authority.org.as_str();
    let path = request.uri().path().to_owned();
    let rule = rule_for(&path);
    if rule.need == Requirement::Certificate {
        return Ok(rule);
    }
    let Some(peer) = request.extensions().get::<PeerInfo>() else {
        return Err(Status::unauthenticated("no verified client certificate"));
    };
    let (org, workload) = (peer.identity.org.clone(), peer.identity.workload.clone());
    if rule.callers == Callers::OwnOrg && org != node_org {
        tracing::warn!(%org, call = %path, "call refused: for the node's own organisation");
        return Err(Status::permission_denied(format!(
            "{} is for {node_org}'s own people and tools; {org} is another organisation",
            rule.gives
        )));
    }
    let own = org == node_org;
    let result = if own && workload == PEOPLE_WORKLOAD {
        if rule.need == Requirement::SignIn {
            return Ok(rule);
        }
        person_call(authority, rule, request)
    } else if rule.need == Requirement::SignIn {
        Err(Status::permission_denied(format!(
            "signing in is for {node_org}'s people on its client certificate, not workload {workload:?}"
        )))
    } else if own && workload != NODE_WORKLOAD {
        authority
            .workloads
            .allows(&org, &workload, rule.need)
            .and_then(|()| workload_call(&authority.org, &workload, rule, request))
    } else {
        token_call(&authority.verifier, &org, rule, request)
    };
    match result {
        Ok(claims) => {
            request.extensions_mut().insert(claims);
            Ok(rule)
        }
        Err(status) => {
            tracing::warn!(%org, %workload, call = %path, reason = %status.message(), "call refused");
            Err(status)
        }
    }
}

/// The workload whose certificate the org's people use.
pub const PEOPLE_WORKLOAD: &str = "client";

fn bearer<B>(request: &http::Request<B>) -> Option<&str> {
    request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
}

/// The purpose a person or machine client states for a call (tokens carry
/// their own).
fn stated_purpose<B>(request: &http::Request<B>) -> String {
    request
        .headers()
        .get(PURPOSE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn scopes_of(rule: &Rule) -> Vec<String> {
    match rule.need {
        Requirement::Scope(scope) => vec![scope.name().to_owned()],
        _ => Vec::new(),
    }
}

fn names<'a>(roles: impl IntoIterator<Item = &'a PersonRole>) -> String {
    let names: Vec<&str> = roles.into_iter().map(|r| r.name()).collect();
    if names.is_empty() {
        "no role".into()
    } else {
        names.join(" or ")
    }
}

/// A call of one of the org's people: their session, and a role the method names.
fn person_call<B>(
    authority: &Authority,
    rule: &Rule,
    request: &mut http::Request<B>,
) -> Result<Authorised, Status> {
    let org = &authority.org;
    let Some(secret) = bearer(request) else {
        return Err(Status::unauthenticated(
            "no session: sign in with `lagesbild login` and send `authorization: Bearer <session>`",
        ));
    };
    if !secret.starts_with(SESSION_PREFIX) {
        return Err(Status::unauthenticated(format!(
            "{org}'s people call with the session they get by signing in (`lagesbild login`), not with a token; tokens signed with the org's key are its node's alone"
        )));
    }
    let session = authority
        .people
        .session(secret)
        .map_err(|e| Status::unauthenticated(e.to_string()))?;
    let Some(role) = rule.people.iter().find(|r| session.roles.contains(r)) else {
        return Err(Status::permission_denied(format!(
            "{} needs the role {}; {} has {}",
            rule.gives,
            names(rule.people),
            session.person.label(),
            names(&session.roles)
        )));
    };
    let claims = Authorised {
        org: authority.org.clone(),
        sub: session.person.label(),
        act: None,
        person: Some(Actor {
            sub: session.person.sub.clone(),
            iss: Some(session.person.issuer.clone()),
            role: Some(role.name().to_owned()),
        }),
        scopes: scopes_of(rule),
        purpose: stated_purpose(request),
        jti: session.id.log_name(),
        expires_at: u64::try_from(session.expires).unwrap_or(0),
        role: Role::Member,
    };
    request.extensions_mut().insert(session);
    Ok(claims)
}

/// A call of a machine client listed in `[workloads]`: its certificate is
/// its identity.
fn workload_call<B>(
    org: &OrgId,
    workload: &str,
    rule: &Rule,
    request: &http::Request<B>,
) -> Result<Authorised, Status> {
    Ok(Authorised {
        org: org.clone(),
        sub: format!("workload:{workload}"),
        act: None,
        person: None,
        scopes: scopes_of(rule),
        purpose: stated_purpose(request),
        jti: String::new(),
        // A stream of a machine client is cut when a token would expire.
        expires_at: u64::try_from(SystemClock.unix_seconds()).unwrap_or(0)
            + lagesbild_auth::MAX_TTL_SECS,
        role: Role::Member,
    })
}

/// A call with a token signed by its org's key: a member's node, an
/// auditor's tool, or this node's own operator on the node certificate.
fn token_call<B>(
    verifier: &Verifier,
    org: &str,
    rule: &Rule,
    request: &http::Request<B>,
) -> Result<Authorised, Status> {
    match bearer(request) {
        None => Err(AuthError::Missing),
        Some(token) => verifier.verify(token, org),
    }
    .and_then(|claims| match rule.need {
        Requirement::Scope(scope) => claims.require(scope).map(|()| claims),
        _ => Ok(claims),
    })
    .map_err(|e| e.into_status())
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
    let now = u64::try_from(SystemClock.unix_seconds()).unwrap_or(0);
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
    fn every_method_has_one_row() {
        assert_eq!(
            requirement("/grpc.health.v1.Health/Check"),
            Requirement::Certificate
        );
        assert_eq!(
            requirement("/lagesbild.v1.ReportService/SubmitBatch"),
            Requirement::Scope(Scope::ReportWrite)
        );
        assert_eq!(
            requirement("/lagesbild.v1.AggregateService/Release"),
            Requirement::Scope(Scope::AggregateRead)
        );
        assert_eq!(
            requirement("/lagesbild.v1.PolicyService/Explain"),
            Requirement::Scope(Scope::PolicyAdmin)
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
            Requirement::Scope(Scope::AuditRead)
        );
        assert_eq!(
            requirement("/lagesbild.v1.AuditService/ClearAlarm"),
            Requirement::Scope(Scope::PolicyAdmin)
        );
        assert_eq!(
            requirement("/lagesbild.v1.EventService/Recall"),
            Requirement::Scope(Scope::ReportWrite)
        );
        assert!(rule_for("/lagesbild.v1.EventService/Subscribe").streams);
        assert!(rule_for("/lagesbild.v1.EventService/Watch").streams);
        assert!(!rule_for("/lagesbild.v1.EventService/Recall").streams);
        for (path, callers) in [
            ("/lagesbild.v1.ReportService/SubmitStream", Callers::OwnOrg),
            ("/lagesbild.v1.PictureService/Picture", Callers::OwnOrg),
            ("/lagesbild.v1.EventService/Watch", Callers::OwnOrg),
            ("/lagesbild.v1.EventService/Subscribe", Callers::Federation),
            (
                "/lagesbild.v1.NodeService/FederationStatus",
                Callers::OwnOrg,
            ),
            ("/lagesbild.v1.NodeService/Info", Callers::Federation),
            (
                "/lagesbild.v1.AggregateService/ReleaseMany",
                Callers::Federation,
            ),
        ] {
            assert_eq!(rule_for(path).callers, callers, "{path}");
        }
    }

    /// Every method of every service in the descriptor set falls under a row
    /// of its own service: none is left to the default.
    #[test]
    fn every_served_method_is_in_the_table() {
        use prost::Message;
        let set = prost_types::FileDescriptorSet::decode(lagesbild_proto::FILE_DESCRIPTOR_SET)
            .expect("the descriptor set decodes");
        let mut methods = 0;
        for file in &set.file {
            for service in &file.service {
                let name = format!("{}.{}", file.package(), service.name());
                for method in &service.method {
                    let path = format!("/{name}/{}", method.name());
                    assert_ne!(rule_for(&path), &UNLISTED, "{path} has no row");
                    methods += 1;
                }
            }
        }
        assert!(methods >= 15, "only {methods} methods found");
    }

    #[test]
    fn workload_entries_are_checked_and_limit_scoped_calls() {
        let entry = |name: &str, scopes: &[&str]| {
            let name = name.to_owned();
            let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
            Workloads::parse([(&name, &scopes)])
        };
        assert!(matches!(
            entry("client", &[]),
            Err(InvalidWorkload::Name(_))
        ));
        assert!(matches!(
            entry("Nightly", &[]),
            Err(InvalidWorkload::Name(_))
        ));
        assert!(matches!(
            entry("job", &["report:wrote"]),
            Err(InvalidWorkload::Scope { .. })
        ));
        let jobs = entry("job", &["report:write"]).unwrap();
        assert!(jobs
            .allows("o", "job", Requirement::Scope(Scope::ReportWrite))
            .is_ok());
        assert!(jobs
            .allows("o", "job", Requirement::Scope(Scope::AuditRead))
            .is_err());
        assert!(jobs.allows("o", "other", Requirement::Token).is_err());
        // The org's people and tools, and its node, are not limited here.
        assert!(jobs
            .allows("o", "client", Requirement::Scope(Scope::AuditRead))
            .is_ok());
        assert!(jobs
            .allows("o", "node", Requirement::Scope(Scope::PolicyAdmin))
            .is_ok());
    }
}
