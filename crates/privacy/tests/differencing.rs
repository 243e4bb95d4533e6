//! No set of releases determines a withheld value.
//!
//! The interval argument, checked by brute force: for random reports and a
//! random peer's rules, collect the releases of every shape the rules allow
//! (each cell size, bucket, several category sets, windows and areas). Then
//! take each base atom that was withheld (its count is in 1..k) and replace its
//! reports by every other count in 0..k, with the lowest and the highest
//! severities such a count can have. If every such change leaves every release
//! the same, the releases pin nothing about the atom: all of 0..k and every
//! severity stay possible, whatever anyone adds and subtracts.
//!
//! The positive control runs the same check against releases thresholded
//! shape by shape (each value on its own, as a release did before base atoms):
//! it finds the withheld report of a 1000 m cell minus its released 100 m cells.

use lagesbild_geo::{Cell, CellSize, CELL_SIZES};
use lagesbild_privacy::calendar::BUCKET_KINDS;
use lagesbild_privacy::noise::SecureRandom;
use lagesbild_privacy::release::Area;
use lagesbild_privacy::{plan, BucketKind, Counter, Plan, ReleaseQuery, ReleaseRules, K};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};

/// 2026-11-02 00:00 UTC (a Monday), in hours since the epoch.
const BASE_HOUR: u32 = 20_759 * 24;
/// Hours the reports span: two weeks and a bit, across a month's end.
const SPAN_HOURS: u32 = 24 * 30;
/// A corner of central Stockholm in SWEREF 99 TM, on a 1000 m boundary.
const EAST: u32 = 673_000;
const NORTH: u32 = 6_579_000;

#[derive(Debug, Clone, Copy, PartialEq)]
struct Report {
    hour: u32,
    category: u8,
    easting: u32,
    northing: u32,
    severity: u8,
}

fn cell_of(easting: u32, northing: u32, size: CellSize) -> Cell {
    let m = size.metres();
    Cell {
        size,
        easting: easting / m * m,
        northing: northing / m * m,
    }
}

/// The counters a store keeps: per (hour, category, cell) at 100 m and 250 m.
fn counters(reports: &[Report]) -> Vec<Counter> {
    let mut map: BTreeMap<(u32, u8, Cell), (u64, u64)> = BTreeMap::new();
    for r in reports {
        for size in [CellSize::M100, CellSize::M250] {
            let v = map
                .entry((r.hour, r.category, cell_of(r.easting, r.northing, size)))
                .or_default();
            v.0 += 1;
            v.1 += u64::from(r.severity);
        }
    }
    map.into_iter()
        .map(|((hour, category, cell), (count, severity_sum))| Counter {
            hour,
            category,
            cell,
            count,
            severity_sum,
        })
        .collect()
}

/// Clumps of reports at one hour, category and spot, so that counts land on
/// both sides of k; scattered single reports around them.
fn reports() -> impl Strategy<Value = Vec<Report>> {
    let clump = (
        0u32..SPAN_HOURS,
        1u8..=3,
        0u32..1_600,
        0u32..1_100,
        1usize..9,
        proptest::collection::vec(1u8..=5, 8),
    )
        .prop_map(|(hour, category, de, dn, n, severities)| {
            (0..n)
                .map(|i| Report {
                    hour: BASE_HOUR + hour,
                    category,
                    easting: EAST + de + (i as u32 % 3) * 7,
                    northing: NORTH + dn,
                    severity: severities[i],
                })
                .collect::<Vec<_>>()
        });
    proptest::collection::vec(clump, 1..40).prop_map(|clumps| clumps.concat())
}

fn rules() -> impl Strategy<Value = ReleaseRules> {
    (
        3u32..6,
        0usize..4,
        0usize..3,
        proptest::collection::btree_set(1u8..=3, 1..4),
    )
        .prop_map(|(k, cell, bucket, categories)| ReleaseRules {
            k: K::new(k).unwrap(),
            finest_cell: CELL_SIZES[cell],
            finest_bucket: [BucketKind::Hour, BucketKind::Day, BucketKind::Week][bucket],
            categories,
            epsilon_per_query: None,
        })
}

/// Windows and areas a peer might try, besides the whole span and no area.
fn extras() -> impl Strategy<Value = ((u32, u32), Area)> {
    (
        0u32..SPAN_HOURS,
        1u32..SPAN_HOURS,
        0u32..1_600,
        0u32..1_100,
        200u32..1_500,
    )
        .prop_map(|(from, len, de, dn, side)| {
            let area = Area {
                min_easting: f64::from(EAST + de),
                min_northing: f64::from(NORTH + dn),
                max_easting: f64::from(EAST + de + side),
                max_northing: f64::from(NORTH + dn + side),
            };
            ((BASE_HOUR + from, BASE_HOUR + from + len), area)
        })
}

/// Every shape the rules allow: each cell size and bucket kind, all allowed
/// categories and each one alone, the whole span and another window, with and
/// without an area. Refused shapes are left out.
fn all_shapes(rules: &ReleaseRules, window: (u32, u32), area: Area) -> Vec<Plan> {
    let mut category_sets = vec![BTreeSet::new()];
    category_sets.extend(rules.categories.iter().map(|c| BTreeSet::from([*c])));
    let mut plans = Vec::new();
    for cell_size in CELL_SIZES {
        for bucket in BUCKET_KINDS {
            for categories in &category_sets {
                for (from_hour, to_hour) in [(BASE_HOUR, BASE_HOUR + SPAN_HOURS), window] {
                    for area in [None, Some(area)] {
                        let query = ReleaseQuery {
                            from_hour,
                            to_hour,
                            categories: categories.clone(),
                            area,
                            cell_size,
                            bucket,
                        };
                        if let Ok(plan) = plan(rules, &query) {
                            plans.push(plan);
                        }
                    }
                }
            }
        }
    }
    plans
}

/// What a peer holds after asking every shape: (bucket, category, cell, count,
/// severity sum) per query, and per query the totals per bucket (as
/// `totals_only` sends them).
type Transcript = Vec<Vec<(u32, u8, Cell, u64, u64)>>;

/// How releases are made: the engine, or the shape-by-shape control.
type Engine = fn(&Plan, &[Counter]) -> Vec<(u32, u8, Cell, u64, u64)>;

fn engine(plan: &Plan, counters: &[Counter]) -> Vec<(u32, u8, Cell, u64, u64)> {
    plan.release(counters.iter().copied(), &mut SecureRandom::default())
        .counts
        .into_iter()
        .map(|v| (v.bucket, v.category, v.cell, v.count, v.severity_sum))
        .collect()
}

/// The control: each value of the asked shape thresholded on its own.
fn shape_by_shape(plan: &Plan, counters: &[Counter]) -> Vec<(u32, u8, Cell, u64, u64)> {
    let mut values: HashMap<(u32, u32, u8, Cell), (u64, u64)> = HashMap::new();
    let counter_size = if plan.cell_size == CellSize::M100 {
        CellSize::M100
    } else {
        CellSize::M250
    };
    for c in counters {
        if !(plan.from_hour..plan.to_hour).contains(&c.hour)
            || !plan.categories.contains(&c.category)
            || c.cell.size != counter_size
        {
            continue;
        }
        let cell = c.cell.coarsen(plan.cell_size).unwrap();
        if let Some(area) = plan.area {
            let half = f64::from(cell.size.metres()) / 2.0;
            let (e, n) = (
                f64::from(cell.easting) + half,
                f64::from(cell.northing) + half,
            );
            if !(area.min_easting..=area.max_easting).contains(&e)
                || !(area.min_northing..=area.max_northing).contains(&n)
            {
                continue;
            }
        }
        let (period, bucket) = plan.bucket.classify(c.hour);
        let v = values
            .entry((period, bucket, c.category, cell))
            .or_default();
        v.0 += c.count;
        v.1 += c.severity_sum;
    }
    let mut out: BTreeMap<(u32, u8, Cell), (u64, u64)> = BTreeMap::new();
    for ((_, bucket, category, cell), (count, sum)) in values {
        if count >= u64::from(plan.k.get()) {
            let v = out.entry((bucket, category, cell)).or_default();
            v.0 += count;
            v.1 += sum;
        }
    }
    out.into_iter()
        .map(|((b, c, cell), (n, s))| (b, c, cell, n, s))
        .collect()
}

fn transcript(engine: Engine, plans: &[Plan], reports: &[Report]) -> Transcript {
    let counters = counters(reports);
    let mut out = Vec::new();
    for plan in plans {
        let values = engine(plan, &counters);
        let mut totals: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
        for (bucket, _, _, count, sum) in &values {
            let t = totals.entry(*bucket).or_default();
            t.0 += count;
            t.1 += sum;
        }
        out.push(values);
        out.push(
            totals
                .into_iter()
                .map(|(b, (n, s))| (b, 0, cell_of(0, 0, CellSize::M1000), n, s))
                .collect(),
        );
    }
    out
}

/// A base atom of the rules: (first hour of its base bucket, category, cell).
type BaseAtom = (u32, u8, Cell);

fn base_atom_of(r: &Report, rules: &ReleaseRules) -> BaseAtom {
    let base_bucket = match rules.finest_bucket {
        BucketKind::Day => BucketKind::Day,
        BucketKind::Week => BucketKind::Week,
        _ => BucketKind::Hour,
    };
    (
        base_bucket.classify(r.hour).0,
        r.category,
        cell_of(r.easting, r.northing, rules.finest_cell),
    )
}

/// Base atoms of allowed categories whose count is in 1..k: withheld.
fn withheld_atoms(reports: &[Report], rules: &ReleaseRules) -> Vec<BaseAtom> {
    let mut counts: BTreeMap<BaseAtom, u32> = BTreeMap::new();
    for r in reports {
        if rules.categories.contains(&r.category) {
            *counts.entry(base_atom_of(r, rules)).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .filter(|(_, n)| *n < rules.k.get())
        .map(|(atom, _)| atom)
        .collect()
}

/// The reports with `atom`'s replaced by `count` reports of `severity` at the
/// first of them.
fn with_atom_as(
    reports: &[Report],
    rules: &ReleaseRules,
    atom: BaseAtom,
    count: u32,
    severity: u8,
) -> Vec<Report> {
    let first = *reports
        .iter()
        .find(|r| base_atom_of(r, rules) == atom)
        .expect("the atom has reports");
    let mut changed: Vec<Report> = reports
        .iter()
        .copied()
        .filter(|r| base_atom_of(r, rules) != atom)
        .collect();
    changed.extend((0..count).map(|_| Report { severity, ..first }));
    changed
}

/// The first withheld atom some releases pin down: a change of its count or
/// severity, within what a withheld atom can be, that changes a release.
fn determined_atom(
    engine: Engine,
    reports: &[Report],
    rules: &ReleaseRules,
    plans: &[Plan],
    most_atoms: usize,
) -> Option<(BaseAtom, u32, u8)> {
    let seen = transcript(engine, plans, reports);
    for atom in withheld_atoms(reports, rules).into_iter().take(most_atoms) {
        let k = rules.k.get();
        for count in 0..k {
            let severities: &[u8] = if count == 0 { &[1] } else { &[1, 5] };
            for &severity in severities {
                let changed = with_atom_as(reports, rules, atom, count, severity);
                if transcript(engine, plans, &changed) != seen {
                    return Some((atom, count, severity));
                }
            }
        }
    }
    None
}

/// How many withheld atoms the property checked: it must not pass vacuously.
static CHECKED: AtomicUsize = AtomicUsize::new(0);

#[test]
fn no_withheld_atom_is_determined_by_all_the_releases_of_every_shape() {
    let mut runner = TestRunner::new(Config {
        cases: 100,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(
            &(reports(), rules(), extras()),
            |(reports, rules, (window, area))| {
                let plans = all_shapes(&rules, window, area);
                prop_assert!(!plans.is_empty());
                let withheld = withheld_atoms(&reports, &rules).len().min(8);
                CHECKED.fetch_add(withheld, Ordering::Relaxed);
                let found = determined_atom(engine, &reports, &rules, &plans, 8);
                prop_assert!(
                    found.is_none(),
                    "withheld atom {:?} determined: set to {:?} it changes a release",
                    found.map(|f| f.0),
                    found.map(|f| (f.1, f.2))
                );
                Ok(())
            },
        )
        .unwrap();
    assert!(
        CHECKED.load(Ordering::Relaxed) >= 200,
        "too few withheld atoms were checked for the property to mean anything"
    );
}

/// The control on the same random cases: shape by shape, some withheld atom
/// is pinned down in most of them.
#[test]
fn on_random_cases_the_check_catches_shape_by_shape_releases() {
    let mut runner = TestRunner::new(Config {
        cases: 30,
        failure_persistence: None,
        ..Config::default()
    });
    let caught = AtomicUsize::new(0);
    runner
        .run(
            &(reports(), rules(), extras()),
            |(reports, rules, (window, area))| {
                let plans = all_shapes(&rules, window, area);
                if determined_atom(shape_by_shape, &reports, &rules, &plans, 8).is_some() {
                    caught.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            },
        )
        .unwrap();
    assert!(
        caught.load(Ordering::Relaxed) >= 10,
        "shape by shape leaked in only {} of 30 cases",
        caught.load(Ordering::Relaxed)
    );
}

/// Five violence reports in one spot and one nearby, in one
/// hour, k = 4, a peer allowed 100 m cells.
fn five_and_one() -> (Vec<Report>, ReleaseRules) {
    let hour = BASE_HOUR + 20;
    let mut reports: Vec<Report> = (0..5)
        .map(|_| Report {
            hour,
            category: 1,
            easting: EAST + 420,
            northing: NORTH + 430,
            severity: 2,
        })
        .collect();
    reports.push(Report {
        hour,
        category: 1,
        easting: EAST + 610,
        northing: NORTH + 380,
        severity: 2,
    });
    let rules = ReleaseRules {
        k: K::new(4).unwrap(),
        finest_cell: CellSize::M100,
        finest_bucket: BucketKind::Hour,
        categories: BTreeSet::from([1]),
        epsilon_per_query: None,
    };
    (reports, rules)
}

#[test]
fn the_check_finds_what_shape_by_shape_thresholds_give_away() {
    let (reports, rules) = five_and_one();
    let plans = all_shapes(&rules, (BASE_HOUR, BASE_HOUR + 24), area_of_all());
    let found = determined_atom(shape_by_shape, &reports, &rules, &plans, usize::MAX);
    let (atom, _, _) = found.expect("shape by shape, the lone report is determined");
    assert_eq!(atom.2, cell_of(EAST + 610, NORTH + 380, CellSize::M100));

    // The engine releases the same data consistently: every shape sums to the
    // five reports that reached k, and the check finds nothing.
    assert_eq!(
        determined_atom(engine, &reports, &rules, &plans, usize::MAX),
        None
    );
    let counters = counters(&reports);
    for plan in &plans {
        let total: (u64, u64) = engine(plan, &counters)
            .iter()
            .fold((0, 0), |t, v| (t.0 + v.3, t.1 + v.4));
        assert_eq!(
            total,
            (5, 10),
            "{} m {:?}",
            plan.cell_size.metres(),
            plan.bucket
        );
    }
}

fn area_of_all() -> Area {
    Area {
        min_easting: f64::from(EAST - 5_000),
        min_northing: f64::from(NORTH - 5_000),
        max_easting: f64::from(EAST + 5_000),
        max_northing: f64::from(NORTH + 5_000),
    }
}

#[test]
fn cells_the_finest_cells_do_not_tile_are_refused() {
    let (_, rules) = five_and_one();
    let query = ReleaseQuery {
        from_hour: BASE_HOUR,
        to_hour: BASE_HOUR + 24,
        categories: BTreeSet::new(),
        area: None,
        cell_size: CellSize::M250,
        bucket: BucketKind::Hour,
    };
    let refused = plan(&rules, &query).unwrap_err();
    assert!(refused.to_string().contains("250 m"), "{refused}");
    for size in [CellSize::M100, CellSize::M500, CellSize::M1000] {
        assert!(plan(
            &rules,
            &ReleaseQuery {
                cell_size: size,
                ..query.clone()
            }
        )
        .is_ok());
    }
}
