//! The words of Lägesbild as types, shared by every crate that speaks them:
//! what a token may be used for ([`Scope`]).
//!
//! Names and parsing only: no checks of who may do what (that is `auth` and
//! the node's authorisation table), no I/O.

#![warn(missing_docs)]

mod scope;

pub use scope::Scope;
