//! The single writer: group commit of inserts and purges.

use crate::keys::{self, CounterFamily, CounterValue, RecordHeader};
use crate::{NewReport, StoreError, StoreOptions};
use std::collections::{HashMap, HashSet};
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
    options: StoreOptions,
) -> (mpsc::Sender<Job>, WriterHandle) {
    let (sender, mut jobs) = mpsc::channel::<Job>(1024);
    // A thread of its own: sled's writes and fsync block, and must not stall the runtime.
    let thread = std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || {
            let mut pending: Option<Job> = None;
            loop {
                let Some(first) = pending.take().or_else(|| jobs.blocking_recv()) else {
                    return;
                };
                match first {
                    Job::Purge { before_hour, reply } => {
                        let _ = reply.send(purge(&db, &data, before_hour));
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
                        commit_inserts(&db, &data, group);
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

fn commit_inserts(db: &sled::Db, data: &sled::Tree, group: Vec<InsertJob>) {
    let mut summaries = Vec::with_capacity(group.len());
    let result = (|| {
        let mut batch = sled::Batch::default();
        let mut seen = HashSet::new();
        let mut deltas: HashMap<[u8; 14], CounterValue> = HashMap::new();
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
                batch.insert(keys::time_key(report.hour, &report.id), &[] as &[u8]);
                count_into(&mut deltas, &header);
                summary.stored += 1;
            }
            summaries.push(summary);
        }
        apply_counter_deltas(data, &mut batch, deltas, 1)?;
        data.apply_batch(batch)?;
        db.flush()?;
        Ok::<_, StoreError>(())
    })();
    match result {
        Ok(()) => {
            for ((_, reply), summary) in group.into_iter().zip(summaries) {
                let _ = reply.send(Ok(summary));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "store commit failed; nothing acknowledged");
            let message = e.to_string();
            for (_, reply) in group {
                let _ = reply.send(Err(StoreError::Commit(message.clone())));
            }
        }
    }
}

/// Counts one report in both counter families.
fn count_into(deltas: &mut HashMap<[u8; 14], CounterValue>, header: &RecordHeader) {
    for family in [CounterFamily::M100, CounterFamily::M250] {
        let delta = deltas
            .entry(keys::counter_key(family, &header.counter_key(family)))
            .or_default();
        delta.count += 1;
        delta.severity_sum += u64::from(header.severity);
    }
}

/// Adds (`sign` = 1) or takes away (`sign` = -1) deltas from the stored counters.
fn apply_counter_deltas(
    data: &sled::Tree,
    batch: &mut sled::Batch,
    deltas: HashMap<[u8; 14], CounterValue>,
    sign: i8,
) -> Result<(), StoreError> {
    for (key, delta) in deltas {
        let current = match data.get(key)? {
            Some(v) => keys::decode_counter_value(&key, &v)?,
            None => CounterValue::default(),
        };
        let next = if sign > 0 {
            CounterValue {
                count: current.count + delta.count,
                severity_sum: current.severity_sum + delta.severity_sum,
            }
        } else {
            CounterValue {
                count: current.count.saturating_sub(delta.count),
                severity_sum: current.severity_sum.saturating_sub(delta.severity_sum),
            }
        };
        if next.count == 0 {
            batch.remove(&key);
        } else {
            batch.insert(&key, &next.encode());
        }
    }
    Ok(())
}

/// How many reports one purge batch removes at most.
const PURGE_CHUNK: usize = 10_000;

fn purge(db: &sled::Db, data: &sled::Tree, before_hour: u32) -> Result<PurgeSummary, StoreError> {
    let mut summary = PurgeSummary::default();
    let (start, end) = keys::time_range_before(before_hour);
    loop {
        let chunk: Vec<_> = data
            .range(start.clone()..end.clone())
            .keys()
            .take(PURGE_CHUNK)
            .collect::<Result<_, _>>()?;
        if chunk.is_empty() {
            return Ok(summary);
        }
        let mut batch = sled::Batch::default();
        let mut deltas: HashMap<[u8; 14], CounterValue> = HashMap::new();
        for time_key in &chunk {
            let id = &time_key[1 + 4..];
            let report_key = [keys::REPORT_PREFIX, id].concat();
            if let Some(record) = data.get(&report_key)? {
                let (header, _) = keys::split_record(&record)?;
                count_into(&mut deltas, &header);
                batch.remove(report_key);
                summary.purged += 1;
            }
            batch.remove(time_key);
        }
        apply_counter_deltas(data, &mut batch, deltas, -1)?;
        data.apply_batch(batch)?;
        db.flush()?;
    }
}
