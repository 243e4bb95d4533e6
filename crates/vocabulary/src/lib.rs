//! The words of Lägesbild as types, shared by every crate that speaks them:
//! who ([`OrgId`]), why ([`Purpose`]), what a token may be used for
//! ([`Scope`]), and where the time comes from
//! ([`Clock`]).
//!
//! Names and parsing only: no checks of who may do what (that is `auth` and
//! the node's authorisation table), no I/O but reading the clock.

#![warn(missing_docs)]

pub mod clock;
mod ids;
mod scope;

pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use ids::{is_id_segment, NotA, OrgId, Purpose, MAX_PURPOSE_BYTES};
pub use scope::Scope;
