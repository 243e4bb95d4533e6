//! What a person may do at their own node.

use std::fmt;

/// A person's role at their own organisation's node. Each gRPC method names
/// the roles that may call it in the node's authorisation table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PersonRole {
    /// Reads the situation picture.
    Analyst,
    /// Watches events and alerts, acknowledges them.
    DutyOfficer,
    /// Writes and recalls the org's reports.
    DataSteward,
    /// Reads and changes what the node shares; clears witness alarms.
    PolicyAdmin,
    /// Reads the access log.
    Auditor,
}

impl PersonRole {
    /// Every role.
    pub const ALL: [PersonRole; 5] = [
        Self::Analyst,
        Self::DutyOfficer,
        Self::DataSteward,
        Self::PolicyAdmin,
        Self::Auditor,
    ];

    /// The name configurations and the command line use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Analyst => "analyst",
            Self::DutyOfficer => "duty-officer",
            Self::DataSteward => "data-steward",
            Self::PolicyAdmin => "policy-admin",
            Self::Auditor => "auditor",
        }
    }

    /// The role named `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }

    /// The names of all roles, for error messages.
    pub fn known() -> String {
        Self::ALL.map(Self::name).join(", ")
    }
}

impl fmt::Display for PersonRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A role name that is not one of [`PersonRole::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a role (known: {known})", known = PersonRole::known())]
pub struct UnknownRole(pub String);

impl std::str::FromStr for PersonRole {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for role in PersonRole::ALL {
            assert_eq!(role.name().parse::<PersonRole>(), Ok(role));
        }
        let err = "admin".parse::<PersonRole>().unwrap_err();
        assert!(err.to_string().contains("duty-officer"), "{err}");
    }
}
