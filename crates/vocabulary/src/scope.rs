//! Scopes: what a token may be used for.

use std::fmt;

/// One scope a token may carry. On the wire a token's `scope` claim is the
/// space-separated names; a name this node does not know grants nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Store reports and recall their events at the org's own node.
    ReportWrite,
    /// Aggregate releases and the federated picture.
    AggregateRead,
    /// Live events: a peer's feed, the own node's inbox.
    EventsRead,
    /// Access logs: entries, proofs, export.
    AuditRead,
    /// The node's operators: policy explanations, witness alarms.
    PolicyAdmin,
}

impl Scope {
    /// Every scope, in the order documents list them.
    pub const ALL: [Scope; 5] = [
        Scope::ReportWrite,
        Scope::AggregateRead,
        Scope::EventsRead,
        Scope::AuditRead,
        Scope::PolicyAdmin,
    ];

    /// The name in tokens and policy files.
    pub fn name(self) -> &'static str {
        match self {
            Scope::ReportWrite => "report:write",
            Scope::AggregateRead => "aggregate:read",
            Scope::EventsRead => "events:read",
            Scope::AuditRead => "audit:read",
            Scope::PolicyAdmin => "policy:admin",
        }
    }

    /// The scope named `name`, if there is one.
    pub fn parse(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_none() {
        for scope in Scope::ALL {
            assert_eq!(Scope::parse(scope.name()), Some(scope));
        }
        assert_eq!(Scope::parse("aggregate:write"), None);
        assert_eq!(Scope::parse(""), None);
    }
}
