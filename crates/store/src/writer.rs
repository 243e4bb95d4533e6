//! The single writer: group commit of inserts and purges.

use crate::counters::{self, Block, CounterIndex, Deltas};
use crate::keys::{self, CounterFamily, RecordHeader};
use crate::{NewReport, StoreError, StoreOptions};
use std::collections::{HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// What one insert call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InsertSummary {
    /// Reports newly stored.
    pub stored: u64,
    /// Reports whose id was already stored (or came twice); not counted again.
    pub duplicates: u64,
}

/// What one purge did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeSummary {
    /// Reports removed, with their counts.
    pub purged: u64,
}

pub(crate) enum Job {
    Insert {
        reports: Vec<NewReport>,
        reply: oneshot::Sender<Result<InsertSummary, StoreError>>,
    },
    Purge {
        before_hour: u32,
        reply: oneshot::Sender<Result<PurgeSummary, StoreError>>,
    },
}

pub(crate) struct WriterHandle(#[allow(dead_code)] std::thread::JoinHandle<()>);

/// Starts the writer thread; it ends when every sender is dropped.
pub(crate) fn spawn(
    db: sled::Db,
    data: sled::Tree,
    index: Arc<CounterIndex>,
    options: StoreOptions,
) -> (mpsc::Sender<Job>, WriterHandle) {
    let (sender, mut jobs) = mpsc::channel::<Job>(1024);
    // A thread of its own: sled's writes and fsync block, and must not stall the runtime.
    let thread = std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || {
            let mut pending: Option<Job> = None;
            // After a failed commit, sled may hold writes that the counters in
            // memory do not: refuse every later write until a restart reloads
            // both from disk.
            let mut failed: Option<String> = None;
            loop {
                let Some(first) = pending.take().or_else(|| jobs.blocking_recv()) else {
                    return;
                };
                if let Some(reason) = &failed {
                    let refusal = StoreError::Commit(format!(
                        "an earlier commit failed ({reason}); restart the node"
                    ));
                    match first {
                        Job::Purge { reply, .. } => {
                            let _ = reply.send(Err(refusal));
                        }
                        Job::Insert { reply, .. } => {
                            let _ = reply.send(Err(refusal));
                        }
                    }
                    continue;
                }
                match first {
                    Job::Purge { before_hour, reply } => {
                        let outcome = purge(&db, &data, &index, before_hour);
                        if let Err(e) = &outcome {
                            failed = Some(e.to_string());
                        }
                        let _ = reply.send(outcome);
                    }
                    Job::Insert { reports, reply } => {
                        let mut group = vec![(reports, reply)];
                        let mut size = group[0].0.len();
                        while size < options.max_group_reports {
                            match jobs.try_recv() {
                                Ok(Job::Insert { reports, reply }) => {
                                    size += reports.len();
                                    group.push((reports, reply));
                                }
                                Ok(purge_job) => {
                                    pending = Some(purge_job);
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                        if let Err(reason) = commit_inserts(&db, &data, &index, group) {
                            failed = Some(reason);
                        }
                    }
                }
            }
        })
        .expect("spawn the store writer thread");
    (sender, WriterHandle(thread))
}

type InsertJob = (
    Vec<NewReport>,
    oneshot::Sender<Result<InsertSummary, StoreError>>,
);

/// Counter changes of one group, by (family, hour).
type GroupDeltas = HashMap<(CounterFamily, u32), Deltas>;

/// Commits `group` and answers each caller; on failure, returns why.
fn commit_inserts(
    db: &sled::Db,
    data: &sled::Tree,
    index: &CounterIndex,
    group: Vec<InsertJob>,
) -> Result<(), String> {
    let mut summaries = Vec::with_capacity(group.len());
    let result = (|| {
        let mut batch = sled::Batch::default();
        let mut seen = HashSet::new();
        let mut deltas = GroupDeltas::new();
        for (reports, _) in &group {
            let mut summary = InsertSummary::default();
            for report in reports {
                let key = keys::report_key(&report.id);
                if !seen.insert(report.id.as_str()) || data.contains_key(&key)? {
                    summary.duplicates += 1;
                    continue;
                }
                let header = RecordHeader::of(report);
                batch.insert(key, header.encode_with(&report.payload));
                count_into(&mut deltas, &header);
                summary.stored += 1;
            }
            summaries.push(summary);
        }
        let blocks = merge_blocks(index, &mut batch, &deltas, 1)?;
        data.apply_batch(batch)?;
        db.flush()?;
        index.install(blocks);
        Ok::<_, StoreError>(())
    })();
    match result {
        Ok(()) => {
            for ((_, reply), summary) in group.into_iter().zip(summaries) {
                let _ = reply.send(Ok(summary));
            }
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, "store commit failed; nothing acknowledged, no further writes until a restart");
            let message = e.to_string();
            for (_, reply) in group {
                let _ = reply.send(Err(StoreError::Commit(message.clone())));
            }
            Err(message)
        }
    }
}

/// Counts one report in both counter families.
fn count_into(deltas: &mut GroupDeltas, header: &RecordHeader) {
    for family in [CounterFamily::M100, CounterFamily::M250] {
        let key = header.counter_key(family);
        let delta = deltas
            .entry((family, key.hour))
            .or_default()
            .entry((key.category, key.cell.northing, key.cell.easting))
            .or_default();
        delta.0 += 1;
        delta.1 += u32::from(header.severity);
    }
}

/// Puts the new block of every hour `deltas` touch into `batch`, and returns
/// them for the index (to install once the batch is on disk).
fn merge_blocks(
    index: &CounterIndex,
    batch: &mut sled::Batch,
    deltas: &GroupDeltas,
    sign: i8,
) -> Result<Vec<(CounterFamily, u32, Block)>, StoreError> {
    let mut blocks = Vec::with_capacity(deltas.len());
    for (&(family, hour), changes) in deltas {
        let current = index.block(family, hour);
        let merged = counters::merge(current.as_deref().unwrap_or(&[]), changes, sign)?;
        let key = keys::block_key(family, hour);
        if merged.is_empty() {
            batch.remove(&key);
        } else {
            batch.insert(&key, counters::encode_block(&merged));
        }
        blocks.push((family, hour, merged.into()));
    }
    Ok(blocks)
}

/// How many reports one purge batch removes at most.
const PURGE_CHUNK: usize = 10_000;
/// How many reports a purge reads before it commits what it found so far.
const PURGE_SCAN: usize = 100_000;

/// Removes the reports observed before `before_hour`, and takes them out of the
/// counters in the same batches. Reads every report's header: no retention index
/// is kept, because one more key per report would cost every insert, and a purge
/// runs once an hour.
fn purge(
    db: &sled::Db,
    data: &sled::Tree,
    index: &CounterIndex,
    before_hour: u32,
) -> Result<PurgeSummary, StoreError> {
    let mut summary = PurgeSummary::default();
    let mut resume: Option<sled::IVec> = None;
    loop {
        let mut batch = sled::Batch::default();
        let mut deltas = GroupDeltas::new();
        let mut removed = 0;
        let mut scanned = 0;
        let mut finished = true;
        let start = match &resume {
            Some(key) => Bound::Excluded(key.clone()),
            None => Bound::Included(sled::IVec::from(keys::REPORT_PREFIX)),
        };
        for entry in data.range::<sled::IVec, _>((start, Bound::Unbounded)) {
            let (key, record) = entry?;
            if !key.starts_with(keys::REPORT_PREFIX) {
                break;
            }
            let (header, _) = keys::split_record(&record)?;
            if header.hour < before_hour {
                count_into(&mut deltas, &header);
                batch.remove(key.clone());
                removed += 1;
            }
            scanned += 1;
            resume = Some(key);
            if removed >= PURGE_CHUNK || scanned >= PURGE_SCAN {
                finished = false;
                break;
            }
        }
        if removed > 0 {
            let blocks = merge_blocks(index, &mut batch, &deltas, -1)?;
            data.apply_batch(batch)?;
            db.flush()?;
            index.install(blocks);
            summary.purged += removed as u64;
        }
        if finished {
            break;
        }
    }
    // Counters of hours before the cut that have no reports left can only come
    // from an interrupted older format; they go too.
    let stray = index.hours_before(before_hour);
    if !stray.is_empty() {
        let mut batch = sled::Batch::default();
        let mut emptied = Vec::new();
        for hour in stray {
            for family in [CounterFamily::M100, CounterFamily::M250] {
                batch.remove(&keys::block_key(family, hour));
                emptied.push((family, hour, Block::from(Vec::new())));
            }
        }
        data.apply_batch(batch)?;
        db.flush()?;
        index.install(emptied);
    }
    Ok(summary)
}
