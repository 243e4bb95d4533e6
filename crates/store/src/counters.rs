//! Counters by hour: one block per (family, hour), on disk and in memory.
//!
//! Each block lists the hour's counters sorted by (category, northing, easting).
//! The writer keeps the on-disk blocks in the same atomic batch as the reports
//! they count, and installs the new blocks in the in-memory [`CounterIndex`]
//! after that batch is on disk and before it acknowledges. Releases read the
//! index only: a window of hours is a range of blocks, with no disk access and
//! no read-modify-write when counting.
//!
//! Block encoding: version byte 1, then per counter 17 bytes:
//! category u8 ‖ northing u32be ‖ easting u32be ‖ count u32be ‖ severity_sum u32be.

use crate::keys::{CounterFamily, CounterKey, CounterValue};
use crate::StoreError;
use lagesbild_geo::Cell;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

const BLOCK_VERSION: u8 = 1;
const SLOT_LEN: usize = 17;

/// One counter of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) category: u8,
    pub(crate) northing: u32,
    pub(crate) easting: u32,
    pub(crate) count: u32,
    pub(crate) severity_sum: u32,
}

impl Slot {
    fn order(&self) -> (u8, u32, u32) {
        (self.category, self.northing, self.easting)
    }
}

/// The counters of one hour of one family, sorted.
pub(crate) type Block = Arc<[Slot]>;

/// Changes to one block: (category, northing, easting) → (count, severity sum).
pub(crate) type Deltas = HashMap<(u8, u32, u32), (u32, u32)>;

pub(crate) fn encode_block(slots: &[Slot]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + slots.len() * SLOT_LEN);
    out.push(BLOCK_VERSION);
    for slot in slots {
        out.push(slot.category);
        for v in [slot.northing, slot.easting, slot.count, slot.severity_sum] {
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
    out
}

pub(crate) fn decode_block(key: &[u8], bytes: &[u8]) -> Result<Block, StoreError> {
    let corrupt = |reason: &str| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: reason.to_owned(),
    };
    let Some((&version, body)) = bytes.split_first() else {
        return Err(corrupt("empty counter block"));
    };
    if version != BLOCK_VERSION {
        return Err(corrupt(&format!("counter block version {version}")));
    }
    if body.len() % SLOT_LEN != 0 {
        return Err(corrupt("counter block of a partial length"));
    }
    let u32_at = |s: &[u8], at: usize| u32::from_be_bytes([s[at], s[at + 1], s[at + 2], s[at + 3]]);
    let slots: Vec<Slot> = body
        .chunks_exact(SLOT_LEN)
        .map(|s| Slot {
            category: s[0],
            northing: u32_at(s, 1),
            easting: u32_at(s, 5),
            count: u32_at(s, 9),
            severity_sum: u32_at(s, 13),
        })
        .collect();
    if slots.windows(2).any(|w| w[0].order() >= w[1].order()) {
        return Err(corrupt("counter block not in order"));
    }
    Ok(slots.into())
}

/// `block` with `deltas` added (`sign` 1) or taken away (`sign` -1); counters
/// that reach zero are left out. Fails if a counter would overflow.
pub(crate) fn merge(block: &[Slot], deltas: &Deltas, sign: i8) -> Result<Vec<Slot>, StoreError> {
    let mut changes: Vec<_> = deltas.iter().map(|(k, v)| (*k, *v)).collect();
    changes.sort_unstable_by_key(|(k, _)| *k);
    let mut out = Vec::with_capacity(block.len() + changes.len());
    let mut changes = changes.into_iter().peekable();
    let apply = |slot: Slot, (count, sum): (u32, u32)| -> Result<Slot, StoreError> {
        let overflow = || StoreError::Commit("a counter would overflow".into());
        Ok(if sign > 0 {
            Slot {
                count: slot.count.checked_add(count).ok_or_else(overflow)?,
                severity_sum: slot.severity_sum.checked_add(sum).ok_or_else(overflow)?,
                ..slot
            }
        } else {
            Slot {
                count: slot.count.saturating_sub(count),
                severity_sum: slot.severity_sum.saturating_sub(sum),
                ..slot
            }
        })
    };
    let new_slot = |(category, northing, easting): (u8, u32, u32)| Slot {
        category,
        northing,
        easting,
        count: 0,
        severity_sum: 0,
    };
    for slot in block {
        while let Some((key, _)) = changes.peek() {
            if *key >= slot.order() {
                break;
            }
            let (key, delta) = changes.next().expect("peeked");
            out.push(apply(new_slot(key), delta)?);
        }
        match changes.peek() {
            Some((key, _)) if *key == slot.order() => {
                let (_, delta) = changes.next().expect("peeked");
                out.push(apply(*slot, delta)?);
            }
            _ => out.push(*slot),
        }
    }
    for (key, delta) in changes {
        out.push(apply(new_slot(key), delta)?);
    }
    out.retain(|s| s.count > 0);
    Ok(out)
}

/// A block and the version it was installed with (versions only grow).
type Versioned = (Block, u64);

/// The counters of every hour, both families, in memory.
#[derive(Debug, Default)]
pub(crate) struct CounterIndex {
    families: RwLock<Families>,
}

#[derive(Debug, Default)]
struct Families {
    blocks: [BTreeMap<u32, Versioned>; 2],
    last_version: u64,
}

fn slot_of(family: CounterFamily) -> usize {
    match family {
        CounterFamily::M100 => 0,
        CounterFamily::M250 => 1,
    }
}

impl CounterIndex {
    pub(crate) fn block(&self, family: CounterFamily, hour: u32) -> Option<Block> {
        self.read().blocks[slot_of(family)]
            .get(&hour)
            .map(|(block, _)| block.clone())
    }

    /// Installs (or, if empty, removes) blocks after their batch is on disk.
    pub(crate) fn install(&self, blocks: Vec<(CounterFamily, u32, Block)>) {
        let mut families = self.families.write().unwrap_or_else(|e| e.into_inner());
        families.last_version += 1;
        let version = families.last_version;
        for (family, hour, block) in blocks {
            let map = &mut families.blocks[slot_of(family)];
            if block.is_empty() {
                map.remove(&hour);
            } else {
                map.insert(hour, (block, version));
            }
        }
    }

    /// What changes whenever a block of `family` in `from_hour..to_hour` is
    /// installed or removed: the newest version among them and their number.
    pub(crate) fn stamp(
        &self,
        family: CounterFamily,
        from_hour: u32,
        to_hour: u32,
    ) -> (u64, usize) {
        if from_hour >= to_hour {
            return (0, 0);
        }
        self.read().blocks[slot_of(family)]
            .range(from_hour..to_hour)
            .fold((0, 0), |(newest, n), (_, (_, v))| (newest.max(*v), n + 1))
    }

    /// How many counters the blocks of `family` in `from_hour..to_hour` hold.
    pub(crate) fn len(&self, family: CounterFamily, from_hour: u32, to_hour: u32) -> usize {
        if from_hour >= to_hour {
            return 0;
        }
        self.read().blocks[slot_of(family)]
            .range(from_hour..to_hour)
            .map(|(_, (block, _))| block.len())
            .sum()
    }

    /// The blocks of `family` for hours in `from_hour..to_hour`.
    pub(crate) fn range(
        &self,
        family: CounterFamily,
        from_hour: u32,
        to_hour: u32,
    ) -> Vec<(u32, Block)> {
        if from_hour >= to_hour {
            return Vec::new();
        }
        self.read().blocks[slot_of(family)]
            .range(from_hour..to_hour)
            .map(|(hour, (block, _))| (*hour, block.clone()))
            .collect()
    }

    /// Hours (of either family) before `hour`.
    pub(crate) fn hours_before(&self, hour: u32) -> Vec<u32> {
        let families = self.read();
        let mut hours: Vec<u32> = families
            .blocks
            .iter()
            .flat_map(|map| map.range(..hour).map(|(h, _)| *h))
            .collect();
        hours.sort_unstable();
        hours.dedup();
        hours
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Families> {
        self.families.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// The counters of `blocks` as keys and values.
pub(crate) fn entries(
    family: CounterFamily,
    blocks: Vec<(u32, Block)>,
) -> impl Iterator<Item = (CounterKey, CounterValue)> {
    blocks.into_iter().flat_map(move |(hour, block)| {
        (0..block.len()).map(move |i| {
            let slot = block[i];
            (
                CounterKey {
                    hour,
                    category: slot.category,
                    cell: Cell {
                        size: family.cell_size(),
                        northing: slot.northing,
                        easting: slot.easting,
                    },
                },
                CounterValue {
                    count: u64::from(slot.count),
                    severity_sum: u64::from(slot.severity_sum),
                },
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(category: u8, northing: u32, count: u32) -> Slot {
        Slot {
            category,
            northing,
            easting: 7,
            count,
            severity_sum: count.saturating_mul(2),
        }
    }

    #[test]
    fn counters_come_out_in_key_order() {
        // Releases rely on this to collect hourly values without sorting them.
        let mut deltas = Deltas::new();
        for (category, northing, easting) in
            [(2, 500, 250), (1, 750, 0), (1, 500, 750), (1, 500, 0)]
        {
            deltas.insert((category, northing, easting), (1, 1));
        }
        let block: Block = merge(&[], &deltas, 1).unwrap().into();
        let blocks = vec![(7, block.clone()), (8, block)];
        let keys: Vec<CounterKey> = entries(CounterFamily::M250, blocks)
            .map(|(key, _)| key)
            .collect();
        assert_eq!(keys.len(), 8);
        assert!(
            keys.windows(2).all(|w| w[0] < w[1]),
            "not in key order: {keys:?}"
        );
    }

    #[test]
    fn merging_adds_inserts_in_order_and_drops_zeros() {
        let block = vec![slot(1, 10, 1), slot(2, 5, 3), slot(4, 1, 1)];
        let mut add = Deltas::new();
        add.insert((1, 10, 7), (2, 4));
        add.insert((3, 0, 7), (1, 2));
        add.insert((0, 99, 7), (1, 2));
        let merged = merge(&block, &add, 1).unwrap();
        assert_eq!(
            merged,
            vec![
                slot(0, 99, 1),
                slot(1, 10, 3),
                slot(2, 5, 3),
                slot(3, 0, 1),
                slot(4, 1, 1)
            ]
        );
        let mut remove = Deltas::new();
        remove.insert((2, 5, 7), (3, 6));
        let merged = merge(&merged, &remove, -1).unwrap();
        assert!(merged.iter().all(|s| s.order() != (2, 5, 7)));
        assert_eq!(merged.len(), 4);
    }

    #[test]
    fn blocks_round_trip_and_bad_blocks_are_named() {
        let block = vec![slot(1, 10, 1), slot(2, 5, 3)];
        let bytes = encode_block(&block);
        assert_eq!(&*decode_block(b"k", &bytes).unwrap(), &block[..]);
        assert!(decode_block(b"k", &bytes[..bytes.len() - 1]).is_err());
        assert!(decode_block(b"k", &[]).is_err());
        let unordered = encode_block(&[slot(2, 5, 3), slot(1, 10, 1)]);
        assert!(decode_block(b"k", &unordered).is_err());
    }

    #[test]
    fn overflow_fails_instead_of_wrapping() {
        let block = vec![slot(1, 1, u32::MAX)];
        let mut add = Deltas::new();
        add.insert((1, 1, 7), (1, 0));
        assert!(merge(&block, &add, 1).is_err());
    }
}
