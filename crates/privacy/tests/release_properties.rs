//! Properties of aggregate releases, for any reports and any valid rules.

use lagesbild_geo::{Cell, CellSize, CELL_SIZES};
use lagesbild_privacy::calendar::BUCKET_KINDS;
use lagesbild_privacy::noise::SecureRandom;
use lagesbild_privacy::{plan, Atoms, BucketKind, Counter, Epsilon, ReleaseQuery, ReleaseRules, K};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// 2026-11-01 00:00 UTC, in hours since the epoch.
const BASE_HOUR: u32 = 20_758 * 24;
/// A corner of central Stockholm in SWEREF 99 TM.
const EAST: u32 = 673_000;
const NORTH: u32 = 6_579_000;

#[derive(Debug, Clone, Copy)]
struct Report {
    hour: u32,
    category: u8,
    easting: u32,
    northing: u32,
    severity: u8,
}

fn report() -> impl Strategy<Value = Report> {
    // Few cells, hours and categories, so that counts reach k often.
    (0u32..24 * 40, 1u8..=4, 0u32..1_500, 0u32..1_000, 1u8..=5).prop_map(
        |(hour, category, de, dn, severity)| Report {
            hour: BASE_HOUR + hour,
            category,
            easting: EAST + de,
            northing: NORTH + dn,
            severity,
        },
    )
}

fn cell_of(r: &Report, size: CellSize) -> Cell {
    let m = size.metres();
    Cell {
        size,
        easting: r.easting / m * m,
        northing: r.northing / m * m,
    }
}

/// The counters a store keeps for these reports, at one resolution.
fn counters(reports: &[Report], size: CellSize) -> Vec<Counter> {
    let mut map: BTreeMap<(u32, u8, Cell), (u64, u64)> = BTreeMap::new();
    for r in reports {
        let v = map
            .entry((r.hour, r.category, cell_of(r, size)))
            .or_default();
        v.0 += 1;
        v.1 += u64::from(r.severity);
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

fn all_counters(reports: &[Report]) -> Vec<Counter> {
    let mut all = counters(reports, CellSize::M100);
    all.extend(counters(reports, CellSize::M250));
    all
}

fn rules() -> impl Strategy<Value = ReleaseRules> {
    (
        3u32..8,
        0usize..4,
        0usize..5,
        proptest::collection::btree_set(1u8..=4, 1..4),
        proptest::option::of(prop_oneof![Just(0.1), Just(1.0), Just(5.0)]),
    )
        .prop_map(|(k, cell, bucket, categories, epsilon)| ReleaseRules {
            k: K::new(k).unwrap(),
            finest_cell: CELL_SIZES[cell],
            finest_bucket: [BucketKind::Hour, BucketKind::Day, BucketKind::Week][bucket % 3],
            categories,
            epsilon_per_query: epsilon.map(|e| Epsilon::try_from(e).unwrap()),
        })
}

fn query() -> impl Strategy<Value = ReleaseQuery> {
    (
        0u32..24 * 40,
        1u32..24 * 40,
        proptest::collection::btree_set(1u8..=6, 0..4),
        0usize..4,
        0usize..5,
    )
        .prop_map(|(from, len, categories, cell, bucket)| ReleaseQuery {
            from_hour: BASE_HOUR + from,
            to_hour: BASE_HOUR + from + len,
            categories,
            area: None,
            cell_size: CELL_SIZES[cell],
            bucket: BUCKET_KINDS[bucket],
        })
}

/// A naive release straight from the reports: per base atom (finest bucket,
/// category, finest cell) the count, dropped below k; the rest summed into the
/// query's (period, bucket, category, cell), and over periods.
fn naive(
    reports: &[Report],
    q: &ReleaseQuery,
    rules: &ReleaseRules,
    categories: &BTreeSet<u8>,
) -> BTreeMap<(u32, u8, Cell), u64> {
    let (from, to) = q.bucket.snap(q.from_hour, q.to_hour);
    let base_bucket = match rules.finest_bucket {
        BucketKind::Day => BucketKind::Day,
        BucketKind::Week => BucketKind::Week,
        _ => BucketKind::Hour,
    };
    let mut base: HashMap<(u32, u8, Cell), u64> = HashMap::new();
    for r in reports
        .iter()
        .filter(|r| (from..to).contains(&r.hour) && categories.contains(&r.category))
    {
        let start = base_bucket.classify(r.hour).0;
        *base
            .entry((start, r.category, cell_of(r, rules.finest_cell)))
            .or_default() += 1;
    }
    let mut out = BTreeMap::new();
    for ((start, category, cell), n) in base {
        if n >= u64::from(rules.k.get()) {
            let bucket = q.bucket.classify(start).1;
            let cell = cell
                .coarsen(q.cell_size)
                .expect("the plan's cells are tiled");
            *out.entry((bucket, category, cell)).or_default() += n;
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn releases_keep_k_the_grid_the_buckets_and_the_categories(
        reports in proptest::collection::vec(report(), 0..400),
        rules in rules(),
        query in query(),
    ) {
        let counters = all_counters(&reports);
        let Ok(plan) = plan(&rules, &query) else {
            // Refused: finer than allowed or no allowed category.
            prop_assert!(
                query.cell_size < rules.finest_cell
                    || !query.cell_size.is_tiled_by(rules.finest_cell)
                    || !query.bucket.allowed_under(rules.finest_bucket)
                    || (!query.categories.is_empty() && query.categories.is_disjoint(&rules.categories))
            );
            return Ok(());
        };
        prop_assert!(plan.cell_size >= rules.finest_cell);
        prop_assert!(plan.bucket.allowed_under(rules.finest_bucket));
        prop_assert!(plan.categories.is_subset(&rules.categories));
        let release = plan.release(counters, &mut SecureRandom::default());
        let size = query.cell_size.metres();
        for value in &release.counts {
            prop_assert!(value.count >= u64::from(rules.k.get()), "{value:?} below k");
            prop_assert!(rules.categories.contains(&value.category), "{value:?}");
            prop_assert_eq!(value.cell.size, query.cell_size);
            prop_assert_eq!(value.cell.easting % size, 0);
            prop_assert_eq!(value.cell.northing % size, 0);
            if query.bucket.is_profile() {
                let slots = if query.bucket == BucketKind::HourOfDay { 24 } else { 168 };
                prop_assert!(value.bucket < slots, "slot {} out of range", value.bucket);
            } else {
                prop_assert!((plan.from_hour..plan.to_hour).contains(&value.bucket));
                prop_assert_eq!(query.bucket.classify(value.bucket).1, value.bucket, "bucket not on a boundary");
            }
        }
        if rules.epsilon_per_query.is_none() {
            let expected = naive(&reports, &query, &rules, &plan.categories);
            let got: BTreeMap<(u32, u8, Cell), u64> =
                release.counts.iter().map(|v| ((v.bucket, v.category, v.cell), v.count)).collect();
            prop_assert_eq!(got, expected);
        }
    }

    /// Atoms made period by period (as a node caches them) release exactly what
    /// the whole window does.
    #[test]
    fn releases_from_the_atoms_of_each_period_are_the_same(
        reports in proptest::collection::vec(report(), 0..400),
        query in query(),
    ) {
        let rules = ReleaseRules {
            k: K::new(3).unwrap(),
            finest_cell: CellSize::M100,
            finest_bucket: BucketKind::Hour,
            categories: (1..=4).collect(),
            epsilon_per_query: None,
        };
        let counters = all_counters(&reports);
        let query = ReleaseQuery { categories: BTreeSet::new(), ..query };
        let Ok(whole) = plan(&rules, &query) else {
            prop_assert!(!query.cell_size.is_tiled_by(rules.finest_cell));
            return Ok(());
        };
        // Periods (days, weeks, months), and pieces (an hourly plan by UTC day).
        for periods in [whole.periods(), whole.pieces()] {
            let mut atoms = Atoms::default();
            for period in &periods {
                prop_assert!(period.from_hour < period.to_hour);
                atoms.extend(&period.atoms(counters.iter().copied()));
            }
            if let (Some(first), Some(last)) = (periods.first(), periods.last()) {
                prop_assert_eq!(first.from_hour, whole.from_hour);
                prop_assert_eq!(last.to_hour, whole.to_hour);
            }
            prop_assert_eq!(&atoms, &whole.atoms(counters.iter().copied()));
            let by_period = whole.release_atoms(&atoms, &mut SecureRandom::default());
            let direct = whole.release(counters.clone(), &mut SecureRandom::default());
            prop_assert_eq!(by_period.counts, direct.counts);
            prop_assert_eq!(by_period.withheld, direct.withheld);
        }
        if whole.bucket == BucketKind::Hour {
            let pieces = whole.pieces();
            prop_assert!(pieces.len() <= (whole.to_hour - whole.from_hour) as usize / 24 + 2);
            prop_assert!(pieces.iter().skip(1).all(|p| p.from_hour % 24 == 0), "cut at midnight");
        }
    }

    /// Two windows that differ by exactly one report give the same release.
    #[test]
    fn windows_differing_by_one_report_release_the_same(
        reports in proptest::collection::vec(report(), 0..400),
        extra in report(),
        query in query(),
        k in 3u32..6,
    ) {
        let rules = ReleaseRules {
            k: K::new(k).unwrap(),
            finest_cell: CellSize::M100,
            finest_bucket: BucketKind::Hour,
            categories: (1..=4).collect(),
            epsilon_per_query: None,
        };
        let query = ReleaseQuery { categories: BTreeSet::new(), ..query };
        let Ok(narrow) = plan(&rules, &query) else {
            prop_assert!(!query.cell_size.is_tiled_by(rules.finest_cell));
            return Ok(());
        };
        // The extra report lies after the narrow window; the wide window reaches
        // just past it. Nothing else lies between the two ends.
        let hour = narrow.to_hour + extra.hour % 200;
        let extra = Report { hour, ..extra };
        let wide_query = ReleaseQuery { to_hour: hour + 1, ..query.clone() };
        let wide = plan(&rules, &wide_query).unwrap();
        let mut data: Vec<Report> = reports
            .into_iter()
            .filter(|r| r.hour < narrow.to_hour || r.hour >= wide.to_hour)
            .collect();
        data.push(extra);
        let counters = all_counters(&data);
        let a = narrow.release(counters.clone(), &mut SecureRandom::default());
        let b = wide.release(counters, &mut SecureRandom::default());
        prop_assert_eq!(a.counts, b.counts);
    }
}

#[test]
fn k_below_three_is_impossible() {
    assert!(K::new(2).is_err());
    assert!(K::new(0).is_err());
    assert!(K::new(3).is_ok());
}
