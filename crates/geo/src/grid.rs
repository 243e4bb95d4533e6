//! The fixed grid: squares in SWEREF 99 TM with corners on multiples of their size.

use crate::projection::{project, unproject, Sweref99Tm};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The cell sizes a release may use, finest first.
pub const CELL_SIZES: [CellSize; 4] = [
    CellSize::M100,
    CellSize::M250,
    CellSize::M500,
    CellSize::M1000,
];

/// A grid cell size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum CellSize {
    /// 100 m squares: the resolution of the node's counters.
    M100,
    /// 250 m squares.
    M250,
    /// 500 m squares.
    M500,
    /// 1000 m squares.
    M1000,
}

impl CellSize {
    /// The side in metres.
    pub fn metres(self) -> u32 {
        match self {
            Self::M100 => 100,
            Self::M250 => 250,
            Self::M500 => 500,
            Self::M1000 => 1000,
        }
    }

    /// The size with this side, if it is one of the fixed sizes.
    pub fn from_metres(metres: u32) -> Option<Self> {
        CELL_SIZES.into_iter().find(|s| s.metres() == metres)
    }

    /// Whether every cell of this size is a union of cells of `finer`: 100 m
    /// cells tile 500 m and 1000 m cells, 250 m cells tile 500 m and 1000 m
    /// cells, but 100 m cells do not tile 250 m cells.
    pub fn is_tiled_by(self, finer: CellSize) -> bool {
        self.metres().is_multiple_of(finer.metres())
    }
}

/// One square of the grid, named by its south-west corner in metres.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cell {
    /// Side length.
    pub size: CellSize,
    /// Easting of the south-west corner, a multiple of the size.
    pub easting: u32,
    /// Northing of the south-west corner, a multiple of the size.
    pub northing: u32,
}

/// Cells order by size, then row by row from the south, west to east within a
/// row: the order in which the store keeps its counters, so that values read
/// from it are already sorted.
impl Ord for Cell {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.size, self.northing, self.easting).cmp(&(other.size, other.northing, other.easting))
    }
}

impl PartialOrd for Cell {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Cell {
    /// The cell of `size` that holds a WGS84 position, if it projects onto the
    /// positive quadrant (all of Sweden does).
    pub fn containing(lat: f64, lon: f64, size: CellSize) -> Option<Self> {
        Self::containing_projected(project(lat, lon), size)
    }

    /// The cell of `size` that holds a SWEREF 99 TM position.
    pub fn containing_projected(p: Sweref99Tm, size: CellSize) -> Option<Self> {
        if !(p.easting.is_finite() && p.northing.is_finite())
            || p.easting < 0.0
            || p.northing < 0.0
            || p.easting >= f64::from(u32::MAX)
            || p.northing >= f64::from(u32::MAX)
        {
            return None;
        }
        let m = size.metres();
        Some(Self {
            size,
            easting: (p.easting as u32) / m * m,
            northing: (p.northing as u32) / m * m,
        })
    }

    /// The coarser cell that contains this one, if this cell nests in the grid of
    /// `size` exactly. 100 m cells nest in 500 m and 1000 m ones, 250 m cells in
    /// 500 m and 1000 m ones; 100 m cells straddle 250 m lines, so a 250 m release
    /// is never made from 100 m cells.
    pub fn coarsen(self, size: CellSize) -> Option<Self> {
        let (fine, coarse) = (self.size.metres(), size.metres());
        if coarse % fine != 0 {
            return None;
        }
        Some(Self {
            size,
            easting: self.easting / coarse * coarse,
            northing: self.northing / coarse * coarse,
        })
    }

    /// The four corners in WGS84 (lon, lat), counter-clockwise from south-west.
    pub fn corners_wgs84(self) -> [(f64, f64); 4] {
        let m = f64::from(self.size.metres());
        let (e, n) = (f64::from(self.easting), f64::from(self.northing));
        [(e, n), (e + m, n), (e + m, n + m), (e, n + m)].map(|(easting, northing)| {
            let (lat, lon) = unproject(Sweref99Tm { northing, easting });
            (lon, lat)
        })
    }

    /// The centre in WGS84 (lat, lon).
    pub fn centre_wgs84(self) -> (f64, f64) {
        let half = f64::from(self.size.metres()) / 2.0;
        unproject(Sweref99Tm {
            northing: f64::from(self.northing) + half,
            easting: f64::from(self.easting) + half,
        })
    }
}

impl fmt::Display for Cell {
    /// `<size>m:<easting>:<northing>` (metres, south-west corner), e.g. `250m:674250:6580750`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}m:{}:{}",
            self.size.metres(),
            self.easting,
            self.northing
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_on_the_grid() {
        for size in CELL_SIZES {
            let cell = Cell::containing(59.33236, 18.06454, size).unwrap();
            assert_eq!(cell.easting % size.metres(), 0);
            assert_eq!(cell.northing % size.metres(), 0);
            assert!(cell.easting <= 674_325 && 674_325 < cell.easting + size.metres());
        }
    }

    #[test]
    fn sizes_tile_the_sizes_that_are_their_multiples() {
        assert!(CellSize::M1000.is_tiled_by(CellSize::M100));
        assert!(CellSize::M500.is_tiled_by(CellSize::M250));
        assert!(CellSize::M250.is_tiled_by(CellSize::M250));
        assert!(!CellSize::M250.is_tiled_by(CellSize::M100));
        assert!(!CellSize::M100.is_tiled_by(CellSize::M250));
    }

    #[test]
    fn coarsening_keeps_the_corner_inside() {
        let fine = Cell::containing(59.33236, 18.06454, CellSize::M100).unwrap();
        for size in [CellSize::M100, CellSize::M500, CellSize::M1000] {
            let coarse = fine.coarsen(size).unwrap();
            assert_eq!(coarse, Cell::containing(59.33236, 18.06454, size).unwrap());
        }
        assert_eq!(
            fine.coarsen(CellSize::M250),
            None,
            "100 m does not nest in 250 m"
        );
        let quarter = Cell::containing(59.33236, 18.06454, CellSize::M250).unwrap();
        assert_eq!(
            quarter.coarsen(CellSize::M500),
            Cell::containing(59.33236, 18.06454, CellSize::M500)
        );
    }
}
