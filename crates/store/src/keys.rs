//! Key and value layout in the one sled tree (one tree, so a batch is atomic).
//!
//! ```text
//! r<id>                                   report record: header ‖ payload
//! hc<hour:u32be>                          the hour's 100 m counters (see `counters`)
//! hq<hour:u32be>                          the hour's 250 m counters
//! ```
//! Hour first, so a time window is one contiguous range.
//!
//! Stores written before counter blocks held one key per counter
//! (`c<hour><cat><n><e>`, `q<…>`) and a retention index (`t<hour><id>`);
//! [`LEGACY_COUNTER_PREFIXES`] and [`LEGACY_TIME_PREFIX`] name them so opening
//! such a store can rebuild its blocks and drop the index.

use crate::{NewReport, StoreError};
use lagesbild_geo::{Cell, CellSize};

pub(crate) const REPORT_PREFIX: &[u8] = b"r";
/// Older stores kept a retention index, `t<hour:u32be><id>`; opening one removes it.
pub(crate) const LEGACY_TIME_PREFIX: &[u8] = b"t";
pub(crate) const BLOCK_PREFIX: &[u8] = b"h";
pub(crate) const LEGACY_COUNTER_PREFIXES: [&[u8]; 2] = [b"c", b"q"];
const HEADER_LEN: usize = 4 + 1 + 1 + 4 * 4;

/// The two counter resolutions the store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CounterFamily {
    /// 100 m cells: exact for 100, 500 and 1000 m releases.
    M100,
    /// 250 m cells: exact for 250, 500 and 1000 m releases.
    M250,
}

impl CounterFamily {
    fn prefix(self) -> u8 {
        match self {
            Self::M100 => b'c',
            Self::M250 => b'q',
        }
    }

    /// The cell size of this family.
    pub fn cell_size(self) -> CellSize {
        match self {
            Self::M100 => CellSize::M100,
            Self::M250 => CellSize::M250,
        }
    }
}

/// Which counter: hour, category, cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CounterKey {
    /// Hours since the Unix epoch.
    pub hour: u32,
    /// Category code.
    pub category: u8,
    /// The cell (100 m or 250 m).
    pub cell: Cell,
}

/// A counter's value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterValue {
    /// Reports counted.
    pub count: u64,
    /// Sum of their severities.
    pub severity_sum: u64,
}

pub(crate) fn report_key(id: &str) -> Vec<u8> {
    [REPORT_PREFIX, id.as_bytes()].concat()
}

pub(crate) fn block_key(family: CounterFamily, hour: u32) -> [u8; 6] {
    let mut out = [0; 6];
    out[0] = BLOCK_PREFIX[0];
    out[1] = family.prefix();
    out[2..].copy_from_slice(&hour.to_be_bytes());
    out
}

/// The family and hour of a block key.
pub(crate) fn decode_block_key(key: &[u8]) -> Result<(CounterFamily, u32), StoreError> {
    if key.len() != 6 || key[0] != BLOCK_PREFIX[0] {
        return Err(corrupt(key, "counter block key of the wrong shape"));
    }
    let family = match key[1] {
        b'c' => CounterFamily::M100,
        b'q' => CounterFamily::M250,
        _ => return Err(corrupt(key, "unknown counter family")),
    };
    Ok((family, u32_at(key, 2)))
}

fn corrupt(key: &[u8], reason: &str) -> StoreError {
    StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: reason.to_owned(),
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// The derived keys stored in front of each report's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    pub(crate) hour: u32,
    pub(crate) category: u8,
    pub(crate) severity: u8,
    pub(crate) cell100: Cell,
    pub(crate) cell250: Cell,
}

impl RecordHeader {
    pub(crate) fn of(report: &NewReport) -> Self {
        Self {
            hour: report.hour,
            category: report.category,
            severity: report.severity,
            cell100: report.cell100,
            cell250: report.cell250,
        }
    }

    pub(crate) fn counter_key(&self, family: CounterFamily) -> CounterKey {
        CounterKey {
            hour: self.hour,
            category: self.category,
            cell: match family {
                CounterFamily::M100 => self.cell100,
                CounterFamily::M250 => self.cell250,
            },
        }
    }

    pub(crate) fn encode_with(&self, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
        out.extend_from_slice(&self.hour.to_be_bytes());
        out.push(self.category);
        out.push(self.severity);
        for v in [
            self.cell100.northing,
            self.cell100.easting,
            self.cell250.northing,
            self.cell250.easting,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(payload);
        out
    }
}

pub(crate) fn split_record(record: &[u8]) -> Result<(RecordHeader, &[u8]), StoreError> {
    if record.len() < HEADER_LEN {
        return Err(corrupt(b"r", "report record shorter than its header"));
    }
    let cell = |size, at| Cell {
        size,
        northing: u32_at(record, at),
        easting: u32_at(record, at + 4),
    };
    let header = RecordHeader {
        hour: u32_at(record, 0),
        category: record[4],
        severity: record[5],
        cell100: cell(CellSize::M100, 6),
        cell250: cell(CellSize::M250, 14),
    };
    Ok((header, &record[HEADER_LEN..]))
}
