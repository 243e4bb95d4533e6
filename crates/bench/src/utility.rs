//! What the picture keeps now that every value is a sum of base atoms that
//! reached k, against values thresholded shape by shape (each value of the
//! asked shape on its own, as releases were made before): released reports
//! and values per shape, on the demo's data and on the picture bench's.
//!
//! In this process, through the privacy engine itself; no nodes. The shape by
//! shape figures are computed here from the same counters.

use crate::picture::MEMBERS;
use anyhow::Result;
use lagesbild_geo::{Cell, CellSize};
use lagesbild_privacy::{
    plan, BucketKind, Counter, Plan, ReleaseQuery, ReleaseRules, SecureRandom, K,
};
use lagesbild_reports::category::CATEGORIES;
use lagesbild_reports::synthetic;
use std::collections::{BTreeMap, HashMap};
use std::time::UNIX_EPOCH;

/// The shapes measured: the picture's own (250 m × hour), what an analyst
/// zooms out to, and the picture's profiles.
const SHAPES: [(CellSize, BucketKind); 7] = [
    (CellSize::M250, BucketKind::Hour),
    (CellSize::M250, BucketKind::Day),
    (CellSize::M500, BucketKind::Day),
    (CellSize::M1000, BucketKind::Day),
    (CellSize::M1000, BucketKind::Week),
    (CellSize::M1000, BucketKind::HourOfDay),
    (CellSize::M1000, BucketKind::HourOfWeek),
];

/// Each member's counters.
type Members = Vec<(String, Vec<Counter>)>;

/// Released reports and values of one shape, summed over the members.
#[derive(Debug, Default, Clone, Copy)]
struct Kept {
    reports: u64,
    values: u64,
}

pub(crate) fn run(bench_reports: usize, finest_cell: u32, finest_bucket: &str) -> Result<()> {
    let finest_cell = CellSize::from_metres(finest_cell).ok_or_else(|| {
        anyhow::anyhow!("--finest-cell {finest_cell}: expected 100, 250, 500 or 1000")
    })?;
    let finest_bucket = BucketKind::parse(finest_bucket)
        .filter(|b| !b.is_profile())
        .ok_or_else(|| {
            anyhow::anyhow!("--finest-bucket {finest_bucket}: expected hour, day or week")
        })?;
    let now = lagesbild_vocabulary::SystemClock.now();
    let end_hour = (now.duration_since(UNIX_EPOCH)?.as_secs() / 3600) as u32 + 1;
    let window = (end_hour - 30 * 24, end_hour);
    println!(
        "Every member releases to a peer allowed {} m × {} (the demo's and the bench's policy: 250 m × hour), no noise, all categories, the last 30 days.",
        finest_cell.metres(),
        finest_bucket.name()
    );
    let mut sets: Vec<(String, Members)> = Vec::new();
    sets.push((
        "demo (seed 2026, 1,500–4,000 reports a member)".into(),
        MEMBERS
            .iter()
            .map(|org| {
                let reports = synthetic::generate(org, 2026, synthetic::demo_count(org), 30, now);
                (org.to_string(), counters(&reports))
            })
            .collect(),
    ));
    sets.push((
        format!("picture bench ({bench_reports} reports a member, member i with seed i)"),
        MEMBERS
            .iter()
            .enumerate()
            .map(|(seed, org)| {
                let reports = synthetic::generate(org, seed as u64, bench_reports, 30, now);
                (org.to_string(), counters(&reports))
            })
            .collect(),
    ));
    for k in [3, 5] {
        for (name, members) in &sets {
            println!("\n{name}, k = {k}:");
            println!(
                "| shape | reports in the window | released now: reports, values | shape by shape: reports, values | reports kept now / then |"
            );
            println!("|---|---|---|---|---|");
            for (cell, bucket) in SHAPES {
                let rules = ReleaseRules {
                    k: K::new(k)?,
                    finest_cell,
                    finest_bucket,
                    categories: CATEGORIES.iter().map(|(c, _)| *c as i32 as u8).collect(),
                    epsilon_per_query: None,
                };
                let query = ReleaseQuery {
                    from_hour: window.0,
                    to_hour: window.1,
                    categories: Default::default(),
                    area: None,
                    cell_size: cell,
                    bucket,
                };
                let Ok(plan) = plan(&rules, &query) else {
                    println!(
                        "| {} m × {} | refused under this policy | | | |",
                        cell.metres(),
                        bucket.name()
                    );
                    continue;
                };
                let (mut now, mut then, mut total) = (Kept::default(), Kept::default(), 0);
                for (_, counters) in members {
                    total += counters
                        .iter()
                        .filter(|c| {
                            c.cell.size == CellSize::M250
                                && (plan.from_hour..plan.to_hour).contains(&c.hour)
                        })
                        .map(|c| c.count)
                        .sum::<u64>();
                    let release =
                        plan.release(counters.iter().copied(), &mut SecureRandom::default());
                    now.reports += release.counts.iter().map(|v| v.count).sum::<u64>();
                    now.values += release.counts.len() as u64;
                    let old = shape_by_shape(&plan, counters);
                    then.reports += old.reports;
                    then.values += old.values;
                }
                println!(
                    "| {} m × {} | {total} | {} ({:.1} %), {} | {} ({:.1} %), {} | {:.2} |",
                    cell.metres(),
                    bucket.name(),
                    now.reports,
                    100.0 * now.reports as f64 / total.max(1) as f64,
                    now.values,
                    then.reports,
                    100.0 * then.reports as f64 / total.max(1) as f64,
                    then.values,
                    now.reports as f64 / then.reports.max(1) as f64,
                );
            }
        }
    }
    Ok(())
}

/// The counters a store keeps for these reports: per (hour, category, cell)
/// at 100 m and 250 m.
fn counters(reports: &[lagesbild_proto::v1::Report]) -> Vec<Counter> {
    let mut map: HashMap<(u32, u8, Cell), (u64, u64)> = HashMap::new();
    for r in reports {
        let (Some(at), Some(position)) = (&r.observed_at, &r.position) else {
            continue;
        };
        let hour = (at.seconds / 3600) as u32;
        for size in [CellSize::M100, CellSize::M250] {
            let Some(cell) = Cell::containing(position.lat, position.lon, size) else {
                continue;
            };
            let v = map.entry((hour, r.category as u8, cell)).or_default();
            v.0 += 1;
            v.1 += u64::from(r.severity);
        }
    }
    let mut counters: Vec<Counter> = map
        .into_iter()
        .map(|((hour, category, cell), (count, severity_sum))| Counter {
            hour,
            category,
            cell,
            count,
            severity_sum,
        })
        .collect();
    counters.sort_by_key(|c| (c.hour, c.category, c.cell));
    counters
}

/// Values of the plan's shape, each thresholded on its own per period, then
/// summed over periods: how releases were made before base atoms.
fn shape_by_shape(plan: &Plan, counters: &[Counter]) -> Kept {
    let counter_size = if plan.cell_size == CellSize::M100 {
        CellSize::M100
    } else {
        CellSize::M250
    };
    let mut atoms: HashMap<(u32, u32, u8, Cell), u64> = HashMap::new();
    for c in counters {
        if c.cell.size != counter_size || !(plan.from_hour..plan.to_hour).contains(&c.hour) {
            continue;
        }
        let Some(cell) = c.cell.coarsen(plan.cell_size) else {
            continue;
        };
        let (period, bucket) = plan.bucket.classify(c.hour);
        *atoms.entry((period, bucket, c.category, cell)).or_default() += c.count;
    }
    let k = u64::from(plan.k.get());
    let mut released: BTreeMap<(u32, u8, Cell), u64> = BTreeMap::new();
    for ((_, bucket, category, cell), count) in atoms {
        if count >= k {
            *released.entry((bucket, category, cell)).or_default() += count;
        }
    }
    Kept {
        reports: released.values().sum(),
        values: released.len() as u64,
    }
}
