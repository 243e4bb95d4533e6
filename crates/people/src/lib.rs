//! People: the organisation's own analysts, duty officers, data stewards,
//! policy admins and auditors, how they sign in to their own node, and the
//! sessions the node gives them.
//!
//! A person signs in once (a node-local account here; an identity provider's
//! ID token where the org has one) and gets a session: a random bearer secret
//! the node alone can resolve to a verified person and their roles. The roles
//! are read again on every call, so disabling an account or changing its roles
//! applies to the next call of every session it has.
//!
//! Not here: tokens between nodes (`lagesbild-auth`), and which role may call
//! which method (the node's authorisation table).

#![warn(missing_docs)]

pub mod accounts;
pub mod oidc;
mod role;
mod sessions;

pub use accounts::{Account, Accounts, AccountsError};
pub use role::{PersonRole, UnknownRole};
pub use sessions::{
    ActiveSession, People, Person, SessionError, SessionId, SignInError, SignedIn, SESSION_PREFIX,
};
