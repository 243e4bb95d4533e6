//! The reports of one organisation, before they are stored.
//!
//! - [`category`]: the fixed vocabulary of categories, sources and TLP markings
//!   and their names on files and command lines.
//! - [`validate`]: the checks a node applies to every incoming report, with errors
//!   by index, field and reason, and the derivation of the keys the store counts by.
//! - [`import`]: readers for CSV, JSON lines and the police's public events JSON.
//! - [`places`]: named places of Norrmalm, for locating, labelling and generating.
//! - [`synthetic`]: a deterministic generator of a realistic city-centre month.
//!
//! No I/O beyond reading the bytes it is handed.

#![warn(missing_docs)]

pub mod category;
pub mod import;
pub mod places;
pub mod synthetic;
pub mod validate;

pub use lagesbild_proto::v1::{Category, Person, Position, Report, Source, Tlp};
