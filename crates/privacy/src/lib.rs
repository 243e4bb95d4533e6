//! The privacy engine of Lägesbild: everything that turns a node's own data into
//! something a peer may receive. No I/O; every release path of the node goes
//! through it.
//!
//! - [`calendar`]: fixed time buckets on the Swedish local clock.
//! - [`release`]: generalisation onto the fixed grid and buckets, threshold
//!   suppression (k ≥ 3), integer noise.
//! - [`noise`]: the discrete Laplace distribution, sampled exactly with integers
//!   from a cryptographically secure source; epsilon as exact millionths.
//! - [`scrub`]: free text with Swedish identity numbers, phone numbers, e-mail,
//!   plates, street numbers, card and account numbers and known names replaced.
//! - [`pseudonym`]: per-peer keyed ids, so peers can't join their views.
//! - [`event`]: live events, one per report and recipient: a cell, a 15-minute
//!   slot, scrubbed text where allowed, a pseudonymous id.

#![warn(missing_docs)]

pub mod calendar;
pub mod event;
mod names;
pub mod noise;
pub mod pseudonym;
pub mod release;
pub mod scrub;

pub use calendar::BucketKind;
pub use noise::{Epsilon, RandomSource, SecureRandom};
pub use release::{
    plan, Area, Atoms, Counter, Plan, Refusal, Release, ReleaseQuery, ReleaseRules, ReleasedCount,
    K, MIN_K,
};
