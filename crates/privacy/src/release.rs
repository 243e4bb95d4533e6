//! Aggregate releases: generalise counters onto the fixed grid and buckets,
//! suppress counts below k, add integer noise where the rules ask for it.
//!
//! Every peer has a lattice fixed by its rules: its **base atoms** are the
//! (finest bucket, category, finest cell) values of the data. A base atom is
//! released only if it reaches k on its own; every value of every shape the
//! peer may ask for (coarser cells, longer buckets, profiles, fewer
//! categories, any area, totals) is the sum of the base atoms inside it that
//! reached k, and nothing else. So no sum or difference of released values,
//! across any number of queries and shapes, involves a withheld base atom:
//! each stays anywhere in 0..k as far as the releases tell. Cell sizes that
//! the finest cell does not tile (250 m under 100 m) are refused: their values
//! would not be such sums. Windows snap outward to whole periods (the bucket
//! for a time series, a local calendar month for a profile).

use crate::calendar::BucketKind;
use crate::noise::{discrete_laplace, Epsilon, RandomSource};
use lagesbild_geo::{project, Cell, CellSize};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

/// The lowest threshold any policy may set.
pub const MIN_K: u32 = 3;

/// The highest severity a report can have: how much one report can move a
/// severity sum, for noise.
pub const MAX_SEVERITY: u64 = 5;

/// A suppression threshold: counts below it are withheld. Never below [`MIN_K`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct K(u32);

impl K {
    /// The threshold `k`, if it is at least [`MIN_K`].
    pub fn new(k: u32) -> Result<Self, BelowMinimumK> {
        Self::try_from(k)
    }

    /// The value.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// A threshold below [`MIN_K`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("k = {0} is below the minimum of {MIN_K}")]
pub struct BelowMinimumK(pub u32);

impl TryFrom<u32> for K {
    type Error = BelowMinimumK;

    fn try_from(k: u32) -> Result<Self, BelowMinimumK> {
        if k < MIN_K {
            Err(BelowMinimumK(k))
        } else {
            Ok(Self(k))
        }
    }
}

impl From<K> for u32 {
    fn from(k: K) -> u32 {
        k.0
    }
}

impl fmt::Display for K {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a policy lets one peer receive as aggregates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRules {
    /// Threshold.
    pub k: K,
    /// The smallest cell size.
    pub finest_cell: CellSize,
    /// The finest bucket kind.
    pub finest_bucket: BucketKind,
    /// Category codes that may be released.
    pub categories: BTreeSet<u8>,
    /// Privacy loss per query; `None` releases exact counts (thresholded).
    pub epsilon_per_query: Option<Epsilon>,
}

/// A rectangle in SWEREF 99 TM metres; a cell belongs to it if its centre does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Area {
    /// Smallest easting.
    pub min_easting: f64,
    /// Smallest northing.
    pub min_northing: f64,
    /// Largest easting.
    pub max_easting: f64,
    /// Largest northing.
    pub max_northing: f64,
}

impl Area {
    /// The SWEREF 99 TM envelope of a WGS84 box.
    pub fn from_wgs84(south: f64, west: f64, north: f64, east: f64) -> Option<Self> {
        let valid = |lat: f64, lon: f64| {
            lat.is_finite()
                && lon.is_finite()
                && (-90.0..=90.0).contains(&lat)
                && (-180.0..=180.0).contains(&lon)
        };
        if !valid(south, west) || !valid(north, east) || south >= north || west >= east {
            return None;
        }
        let corners = [(south, west), (south, east), (north, west), (north, east)]
            .map(|(lat, lon)| project(lat, lon));
        Some(Self {
            min_easting: corners
                .iter()
                .map(|p| p.easting)
                .fold(f64::INFINITY, f64::min),
            min_northing: corners
                .iter()
                .map(|p| p.northing)
                .fold(f64::INFINITY, f64::min),
            max_easting: corners
                .iter()
                .map(|p| p.easting)
                .fold(f64::NEG_INFINITY, f64::max),
            max_northing: corners
                .iter()
                .map(|p| p.northing)
                .fold(f64::NEG_INFINITY, f64::max),
        })
    }

    fn holds(&self, cell: Cell) -> bool {
        let half = f64::from(cell.size.metres()) / 2.0;
        let (e, n) = (
            f64::from(cell.easting) + half,
            f64::from(cell.northing) + half,
        );
        (self.min_easting..=self.max_easting).contains(&e)
            && (self.min_northing..=self.max_northing).contains(&n)
    }
}

/// What a peer asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseQuery {
    /// First hour (UTC hours since the epoch), inclusive.
    pub from_hour: u32,
    /// End hour, exclusive.
    pub to_hour: u32,
    /// Categories asked for; empty means every category the rules allow.
    pub categories: BTreeSet<u8>,
    /// Only cells in this area; `None` for all.
    pub area: Option<Area>,
    /// Cell size.
    pub cell_size: CellSize,
    /// Bucket kind.
    pub bucket: BucketKind,
}

/// Why a query gets no release.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The cells asked for are smaller than the rules allow.
    #[error("cells of {asked} m are finer than this peer may receive (finest {finest} m)")]
    CellTooFine {
        /// Asked, metres.
        asked: u32,
        /// Allowed, metres.
        finest: u32,
    },
    /// The cells asked for are not unions of the finest cells, so their values
    /// could not be sums of released finest values.
    #[error("cells of {asked} m are not made of whole {finest} m cells, the finest this peer may receive, so they cannot be released consistently with them; ask for a size that is a multiple of {finest} m")]
    CellNotTiled {
        /// Asked, metres.
        asked: u32,
        /// Allowed, metres.
        finest: u32,
    },
    /// The buckets asked for are finer than the rules allow.
    #[error("{asked} buckets are finer than this peer may receive (finest {finest})")]
    BucketTooFine {
        /// Asked.
        asked: BucketKind,
        /// Allowed.
        finest: BucketKind,
    },
    /// None of the categories asked for may be released.
    #[error("none of the categories asked for may be released to this peer")]
    NoCategory,
    /// The window is empty.
    #[error("the time window is empty (from must be before to)")]
    EmptyWindow,
}

/// A checked query: what will be released, before any data is read.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// First hour of the snapped window.
    pub from_hour: u32,
    /// End of the snapped window (exclusive).
    pub to_hour: u32,
    /// Categories that will be considered: those asked for that the rules allow.
    pub categories: BTreeSet<u8>,
    /// Area filter.
    pub area: Option<Area>,
    /// Cell size.
    pub cell_size: CellSize,
    /// Bucket kind.
    pub bucket: BucketKind,
    /// Threshold.
    pub k: K,
    /// Noise, and the privacy loss this release costs.
    pub epsilon: Option<Epsilon>,
    /// The cell of the peer's base atoms: its finest cell.
    pub base_cell: CellSize,
    /// The bucket of the peer's base atoms: hour, day or week, the time
    /// series of its finest bucket.
    pub base_bucket: BucketKind,
}

/// Checks `query` against `rules` and fixes the window.
pub fn plan(rules: &ReleaseRules, query: &ReleaseQuery) -> Result<Plan, Refusal> {
    if query.cell_size < rules.finest_cell {
        return Err(Refusal::CellTooFine {
            asked: query.cell_size.metres(),
            finest: rules.finest_cell.metres(),
        });
    }
    if !query.cell_size.is_tiled_by(rules.finest_cell) {
        return Err(Refusal::CellNotTiled {
            asked: query.cell_size.metres(),
            finest: rules.finest_cell.metres(),
        });
    }
    if !query.bucket.allowed_under(rules.finest_bucket) {
        return Err(Refusal::BucketTooFine {
            asked: query.bucket,
            finest: rules.finest_bucket,
        });
    }
    if query.to_hour <= query.from_hour {
        return Err(Refusal::EmptyWindow);
    }
    let categories: BTreeSet<u8> = if query.categories.is_empty() {
        rules.categories.clone()
    } else {
        query
            .categories
            .intersection(&rules.categories)
            .copied()
            .collect()
    };
    if categories.is_empty() {
        return Err(Refusal::NoCategory);
    }
    let (from_hour, to_hour) = query.bucket.snap(query.from_hour, query.to_hour);
    Ok(Plan {
        from_hour,
        to_hour,
        categories,
        area: query.area,
        cell_size: query.cell_size,
        bucket: query.bucket,
        k: rules.k,
        epsilon: rules.epsilon_per_query,
        base_cell: rules.finest_cell,
        base_bucket: base_bucket(rules.finest_bucket),
    })
}

/// The time series whose buckets are a peer's base: profiles have one-hour
/// slots, so their base is the hour.
fn base_bucket(finest: BucketKind) -> BucketKind {
    match finest {
        BucketKind::Hour | BucketKind::HourOfDay | BucketKind::HourOfWeek => BucketKind::Hour,
        BucketKind::Day => BucketKind::Day,
        BucketKind::Week => BucketKind::Week,
    }
}

/// One stored counter: the reports of one (hour, category, cell).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    /// UTC hour since the epoch.
    pub hour: u32,
    /// Category code.
    pub category: u8,
    /// The counter's cell (100 m or 250 m).
    pub cell: Cell,
    /// Reports.
    pub count: u64,
    /// Sum of their severities.
    pub severity_sum: u64,
}

/// One released value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReleasedCount {
    /// Time-series buckets: first UTC hour. Profiles: the slot.
    pub bucket: u32,
    /// Category code.
    pub category: u8,
    /// The cell, on the plan's grid.
    pub cell: Cell,
    /// The count (noised if the plan has epsilon); never below k.
    pub count: u64,
    /// The sum of severities (noised alike).
    pub severity_sum: u64,
}

/// A release: the plan and the values that passed. Any (cell, bucket, category)
/// of the plan that is not listed was withheld: below k, possibly zero.
#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    /// What was asked and how it was answered.
    pub plan: Plan,
    /// Released values, ordered by bucket, category, cell.
    pub counts: Vec<ReleasedCount>,
    /// How many non-zero base atoms and values were withheld. Stays on the node
    /// (for its log): sent to a peer, it would tell that small counts exist.
    pub withheld: u64,
}

/// (count, severity sum).
type Sums = (u64, u64);

/// A fast hasher for the engine's own small keys (the multiply-rotate hash of
/// rustc's FxHasher). Keys come from the node's counters, not from callers, so
/// hash flooding is not a concern here.
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}
/// (period, bucket, category, cell): one value before thresholding.
type AtomKey = (u32, u32, u8, Cell);

/// Exact, unnoised sums of a plan's values, each the sum of the base atoms
/// inside it that reached k, in key order; and how many non-zero base atoms
/// were below k. Internal to the node (a cache may keep them); only a
/// [`Release`] made of them leaves it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Atoms {
    values: Vec<(AtomKey, Sums)>,
    below_k: u64,
}

impl Atoms {
    /// Appends the atoms of the next period.
    pub fn extend(&mut self, next: &Atoms) {
        self.values.extend_from_slice(&next.values);
        self.below_k += next.below_k;
    }

    /// How many values.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}
/// (bucket, category, cell): one released value.
type ReleasedKey = (u32, u8, Cell);

/// `values` sorted by key, with the values of equal keys added up.
fn sum_equal_keys<K: Ord + Copy>(mut values: Vec<(K, Sums)>) -> Vec<(K, Sums)> {
    values.sort_unstable_by_key(|(key, _)| *key);
    values.dedup_by(|(key, (count, sum)), (kept, total)| {
        let same = key == kept;
        if same {
            total.0 += *count;
            total.1 += *sum;
        }
        same
    });
    values
}

impl Plan {
    /// The counter resolution to read: 100 m counters for a 100 m base, 250 m
    /// counters otherwise (250 m cells tile 500 m and 1000 m; 100 m cells
    /// don't tile 250 m).
    pub fn counter_cell_size(&self) -> CellSize {
        if self.base_cell == CellSize::M100 {
            CellSize::M100
        } else {
            CellSize::M250
        }
    }

    /// Makes the release from the counters of the window (others are ignored).
    pub fn release(
        &self,
        counters: impl IntoIterator<Item = Counter>,
        rng: &mut impl RandomSource,
    ) -> Release {
        self.release_atoms(&self.atoms(counters), rng)
    }

    /// The plan cut at its periods (whole local months for profiles, days for
    /// days, …): sub-plans whose atoms, concatenated in order, are this plan's.
    pub fn periods(&self) -> Vec<Plan> {
        let mut periods = Vec::new();
        let mut hour = self.from_hour;
        while hour < self.to_hour {
            let (_, end) = self.bucket.snap(hour, hour + 1);
            let end = end.clamp(hour + 1, self.to_hour);
            periods.push(Plan {
                from_hour: hour,
                to_hour: end,
                ..self.clone()
            });
            hour = end;
        }
        periods
    }

    /// The plan cut into pieces whose atoms, concatenated in order, are this
    /// plan's: its [`periods`](Self::periods), except that an hourly plan is
    /// cut at UTC midnights (a month is 30 pieces, not 720 hours), so that
    /// windows that slide hour by hour share their whole days.
    pub fn pieces(&self) -> Vec<Plan> {
        if self.bucket != BucketKind::Hour {
            return self.periods();
        }
        let mut pieces = Vec::new();
        let mut hour = self.from_hour;
        while hour < self.to_hour {
            let end = (hour / 24 + 1).saturating_mul(24).min(self.to_hour);
            pieces.push(Plan {
                from_hour: hour,
                to_hour: end,
                ..self.clone()
            });
            hour = end;
        }
        pieces
    }

    /// The values of the window before noise, from the counters of the window
    /// (others are ignored): the counters summed into base atoms, those below k
    /// dropped, the rest summed into the plan's values. They never leave the
    /// node: only [`release_atoms`](Self::release_atoms) of them does.
    pub fn atoms(&self, counters: impl IntoIterator<Item = Counter>) -> Atoms {
        let mut wanted = [false; 256];
        for category in &self.categories {
            wanted[usize::from(*category)] = true;
        }
        let counter_size = self.counter_cell_size();
        // Base atoms: one value per (base period, category, base cell). Hourly
        // base atoms on the counters' own grid are one counter each, already
        // in key order: they are only collected. Otherwise many counters make
        // each, and they are summed by hashing.
        let one_counter_each =
            self.base_bucket == BucketKind::Hour && self.base_cell == counter_size;
        // Keyed as the plan's values are, (start, start, category, cell), so
        // that when the plan's shape is the base's they are its values as they stand.
        let counters = counters.into_iter();
        let mut base: Vec<(AtomKey, Sums)> = Vec::with_capacity(counters.size_hint().0);
        let mut summed: HashMap<AtomKey, Sums, BuildHasherDefault<FxHasher>> = HashMap::default();
        // Counters come hour by hour; the calendar is worked out once per hour.
        let mut started: Option<(u32, u32)> = None;
        for counter in counters {
            if counter.hour < self.from_hour
                || counter.hour >= self.to_hour
                || !wanted[usize::from(counter.category)]
                || counter.cell.size != counter_size
            {
                continue;
            }
            let Some(cell) = counter.cell.coarsen(self.base_cell) else {
                continue;
            };
            let start = match started {
                Some((hour, start)) if hour == counter.hour => start,
                _ => {
                    let start = self.base_bucket.classify(counter.hour).0;
                    started = Some((counter.hour, start));
                    start
                }
            };
            let key = (start, start, counter.category, cell);
            if one_counter_each {
                base.push((key, (counter.count, counter.severity_sum)));
            } else {
                let total = summed.entry(key).or_default();
                total.0 += counter.count;
                total.1 += counter.severity_sum;
            }
        }
        base.extend(summed);
        let mut base = sum_equal_keys(base);

        // Only base atoms that reach k go into any value.
        let k = u64::from(self.k.get());
        let mut below_k = 0;
        let mut reaches_k = |count: u64| {
            below_k += u64::from(count < k);
            count >= k
        };
        let values = if self.bucket == self.base_bucket && self.cell_size == self.base_cell {
            // The plan's values are the base atoms themselves, in key order.
            base.retain(|((_, _, _, cell), (count, _))| {
                reaches_k(*count) && self.area.is_none_or(|area| area.holds(*cell))
            });
            base
        } else {
            let mut classified: Option<(u32, (u32, u32))> = None;
            let mut values = Vec::with_capacity(base.len());
            for ((start, _, category, cell), sums) in base {
                if !reaches_k(sums.0) {
                    continue;
                }
                let Some(cell) = cell.coarsen(self.cell_size) else {
                    continue;
                };
                if self.area.is_some_and(|area| !area.holds(cell)) {
                    continue;
                }
                let (period, bucket) = match classified {
                    Some((at, both)) if at == start => both,
                    _ => {
                        let both = self.bucket.classify(start);
                        classified = Some((start, both));
                        both
                    }
                };
                values.push(((period, bucket, category, cell), sums));
            }
            sum_equal_keys(values)
        };
        Atoms { values, below_k }
    }

    /// The release of `atoms` (made by [`atoms`](Self::atoms) of this plan or of
    /// its [`periods`](Self::periods), concatenated): thresholds, noise, sums.
    pub fn release_atoms(&self, atoms: &Atoms, rng: &mut impl RandomSource) -> Release {
        let k = u64::from(self.k.get());
        let mut withheld = atoms.below_k;
        let mut released: Vec<(ReleasedKey, Sums)> = Vec::with_capacity(atoms.values.len());
        for &((_, bucket, category, cell), (count, severity_sum)) in &atoms.values {
            let Some((count, severity_sum)) = self.threshold(count, severity_sum, k, rng) else {
                if count > 0 {
                    withheld += 1;
                }
                continue;
            };
            // Profiles sum the released values of their periods: only what
            // passed on its own is added.
            released.push(((bucket, category, cell), (count, severity_sum)));
        }
        let released = sum_equal_keys(released);
        Release {
            plan: self.clone(),
            counts: released
                .into_iter()
                .map(
                    |((bucket, category, cell), (count, severity_sum))| ReleasedCount {
                        bucket,
                        category,
                        cell,
                        count,
                        severity_sum,
                    },
                )
                .collect(),
            withheld,
        }
    }

    /// The released (count, severity sum) of one atom, or `None` if withheld.
    /// A value is released only if its true count reaches k and, with noise,
    /// its noised count does too. Half the epsilon goes to the count, half to
    /// the severity sum.
    fn threshold(
        &self,
        count: u64,
        severity_sum: u64,
        k: u64,
        rng: &mut impl RandomSource,
    ) -> Option<(u64, u64)> {
        if count < k {
            return None;
        }
        let Some(epsilon) = self.epsilon else {
            return Some((count, severity_sum));
        };
        let half = Epsilon::from_micros((epsilon.micros() / 2).max(1));
        let noisy = count as i128 + i128::from(discrete_laplace(rng, half, 1));
        let noisy_severity =
            severity_sum as i128 + i128::from(discrete_laplace(rng, half, MAX_SEVERITY));
        if noisy < i128::from(k) {
            return None;
        }
        Some((noisy as u64, noisy_severity.max(0) as u64))
    }
}
