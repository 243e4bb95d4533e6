//! Positions and the fixed grid.
//!
//! [`project`] takes WGS84 latitude/longitude to SWEREF 99 TM (EPSG:3006), the
//! national projection, with Krüger's series as Lantmäteriet publishes them (well
//! under a millimetre inside Sweden). [`Cell`] is a square of the fixed grid in that
//! projection, aligned like the national statistical grid squares (corners on
//! multiples of the cell size), in sizes of 100, 250, 500 and 1000 m.
//!
//! Pure arithmetic: no I/O.

#![warn(missing_docs)]

mod grid;
mod projection;

pub use grid::{Cell, CellSize, CELL_SIZES};
pub use projection::{project, unproject, Sweref99Tm};
