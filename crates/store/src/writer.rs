//! The single writer: group commit of inserts and purges.

use crate::counters::{self, Block, CounterIndex, Deltas};
use crate::durable::DurableDb;
use crate::feeds::{self, decode_u64, Heads, Incoming, Outgoing, RecallOutcome, Recipients};
use crate::keys::{self, CounterFamily, RecordHeader};
use crate::ledger::Ledger;
use crate::{NewReport, Spend, StoreError, StoreOptions};
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
    Receive {
        origin: String,
        items: Vec<Incoming>,
        reply: oneshot::Sender<Result<Vec<u64>, StoreError>>,
    },
    Recall {
        report_id: String,
        make: MakeRecall,
        reply: oneshot::Sender<Result<RecallOutcome, StoreError>>,
    },
    Purge {
        before_hour: u32,
        reply: oneshot::Sender<Result<PurgeSummary, StoreError>>,
    },
    PurgeExpired {
        before: i64,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    Spend {
        account: Vec<u8>,
        amount: u64,
        limit: u64,
        reply: oneshot::Sender<Result<Spend, StoreError>>,
    },
    ForgetAccounts {
        before: Vec<u8>,
        reply: oneshot::Sender<Result<usize, StoreError>>,
    },
    Flush {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// Makes the recall item for one recipient of a report's events.
pub(crate) type MakeRecall = Box<dyn Fn(&str) -> Outgoing + Send>;

impl Job {
    fn refuse(self, error: StoreError) {
        match self {
            Job::Insert { reply, .. } => drop(reply.send(Err(error))),
            Job::Receive { reply, .. } => drop(reply.send(Err(error))),
            Job::Recall { reply, .. } => drop(reply.send(Err(error))),
            Job::Purge { reply, .. } => drop(reply.send(Err(error))),
            Job::PurgeExpired { reply, .. } => drop(reply.send(Err(error))),
            Job::Spend { reply, .. } => drop(reply.send(Err(error))),
            Job::ForgetAccounts { reply, .. } => drop(reply.send(Err(error))),
            Job::Flush { reply } => drop(reply.send(Err(error))),
        }
    }

    /// Whether the job joins a group commit (one flush for all of them).
    fn groups(&self) -> bool {
        matches!(
            self,
            Job::Insert { .. } | Job::Receive { .. } | Job::Spend { .. }
        )
    }

    /// How much the job adds to a group, in reports or items.
    fn weight(&self) -> usize {
        match self {
            Job::Insert { reports, .. } => reports.len(),
            Job::Receive { items, .. } => items.len(),
            _ => 1,
        }
    }
}

pub(crate) struct WriterHandle(#[allow(dead_code)] std::thread::JoinHandle<()>);

/// What the writer works on.
pub(crate) struct Shared {
    pub(crate) db: DurableDb,
    pub(crate) data: sled::Tree,
    pub(crate) index: Arc<CounterIndex>,
    pub(crate) heads: Arc<Heads>,
    pub(crate) ledger: Arc<Ledger>,
}

/// Starts the writer thread; it ends when every sender is dropped.
pub(crate) fn spawn(shared: Shared, options: StoreOptions) -> (mpsc::Sender<Job>, WriterHandle) {
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
                    first.refuse(StoreError::Commit(format!(
                        "an earlier commit failed ({reason}); restart the node"
                    )));
                    continue;
                }
                let outcome = if first.groups() {
                    let mut group = vec![first];
                    let mut size = 0;
                    while size < options.max_group_reports {
                        match jobs.try_recv() {
                            Ok(job) if job.groups() => {
                                size += job.weight();
                                group.push(job);
                            }
                            Ok(other) => {
                                pending = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    commit_group(&shared, group)
                } else {
                    run_alone(&shared, first)
                };
                if let Err(reason) = outcome {
                    failed = Some(reason);
                }
            }
        })
        .expect("spawn the store writer thread");
    (sender, WriterHandle(thread))
}

/// Runs a job that is committed on its own; on failure, returns why.
fn run_alone(shared: &Shared, job: Job) -> Result<(), String> {
    fn answer<T>(
        reply: oneshot::Sender<Result<T, StoreError>>,
        outcome: Result<T, StoreError>,
    ) -> Result<(), String> {
        let failure = outcome.as_ref().err().map(ToString::to_string);
        let _ = reply.send(outcome);
        failure.map_or(Ok(()), Err)
    }
    match job {
        Job::Purge { before_hour, reply } => answer(reply, purge(shared, before_hour)),
        Job::PurgeExpired { before, reply } => answer(reply, purge_expired(shared, before)),
        Job::Recall {
            report_id,
            make,
            reply,
        } => answer(reply, recall(shared, &report_id, &make)),
        Job::ForgetAccounts { before, reply } => {
            answer(reply, forget_accounts(&shared.ledger, &before))
        }
        Job::Flush { reply } => answer(reply, shared.db.flush()),
        grouped => {
            grouped.refuse(StoreError::Commit("not a job that runs alone".into()));
            Ok(())
        }
    }
}

/// Counter changes of one group, by (family, hour).
type GroupDeltas = HashMap<(CounterFamily, u32), Deltas>;

/// Feed heads a group moves.
#[derive(Default)]
struct FeedHeads {
    feeds: HashMap<String, u64>,
    inbox: Option<u64>,
}

impl FeedHeads {
    /// The next seq of `recipient`'s feed.
    fn next_feed(&mut self, data: &sled::Tree, recipient: &str) -> Result<u64, StoreError> {
        let head = match self.feeds.get(recipient) {
            Some(&head) => head,
            None => decode_u64(data.get(feeds::feed_head_key(recipient))?.as_deref())?,
        };
        self.feeds.insert(recipient.to_owned(), head + 1);
        Ok(head + 1)
    }

    fn next_inbox(&mut self, data: &sled::Tree) -> Result<u64, StoreError> {
        let head = match self.inbox {
            Some(head) => head,
            None => decode_u64(data.get(feeds::INBOX_HEAD)?.as_deref())?,
        };
        self.inbox = Some(head + 1);
        Ok(head + 1)
    }

    fn write(&self, batch: &mut sled::Batch) {
        for (recipient, head) in &self.feeds {
            batch.insert(feeds::feed_head_key(recipient), &head.to_be_bytes()[..]);
        }
        if let Some(head) = self.inbox {
            batch.insert(feeds::INBOX_HEAD, &head.to_be_bytes()[..]);
        }
    }

    fn publish(&self, heads: &Heads) {
        for (recipient, &head) in &self.feeds {
            heads.advance_feed(recipient, head);
        }
        if let Some(head) = self.inbox {
            heads.advance_inbox(head);
        }
    }
}

/// What one job of a group gets back.
enum Answer {
    Inserted(InsertSummary),
    Received(Vec<u64>),
    Spent(Spend),
}

/// Commits a group of inserts and receipts as one batch and answers each
/// caller; on failure, returns why.
fn commit_group(shared: &Shared, group: Vec<Job>) -> Result<(), String> {
    let Shared {
        db,
        data,
        index,
        heads,
        ledger,
    } = shared;
    let mut answers = Vec::with_capacity(group.len());
    let result = (|| {
        let mut batch = sled::Batch::default();
        let mut seen = HashSet::new();
        let mut deltas = GroupDeltas::new();
        let mut moved = FeedHeads::default();
        let mut cursors: HashMap<&str, u64> = HashMap::new();
        let mut ledger_batch = sled::Batch::default();
        let mut totals: HashMap<Vec<u8>, u64> = HashMap::new();
        for job in &group {
            match job {
                Job::Insert { reports, .. } => {
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
                        if !report.events.is_empty() {
                            let mut recipients = Recipients::default();
                            for event in &report.events {
                                let seq = moved.next_feed(data, &event.recipient)?;
                                batch.insert(
                                    feeds::feed_key(&event.recipient, seq),
                                    feeds::encode_item(event.expires_at, &event.record),
                                );
                                recipients.feeds.push((event.recipient.clone(), seq));
                            }
                            batch.insert(feeds::recipients_key(&report.id), recipients.encode());
                        }
                        summary.stored += 1;
                    }
                    answers.push(Answer::Inserted(summary));
                }
                Job::Receive { origin, items, .. } => {
                    let cursor = match cursors.get(origin.as_str()) {
                        Some(&cursor) => cursor,
                        None => decode_u64(data.get(feeds::cursor_key(origin))?.as_deref())?,
                    };
                    let mut taken = Vec::new();
                    let mut last = cursor;
                    for item in items {
                        // Items at or before the cursor were taken already.
                        if item.origin_seq <= last {
                            continue;
                        }
                        let seq = moved.next_inbox(data)?;
                        batch.insert(
                            &feeds::inbox_key(seq),
                            feeds::encode_item(item.expires_at, &item.record),
                        );
                        last = item.origin_seq;
                        taken.push(seq);
                    }
                    if last != cursor {
                        batch.insert(feeds::cursor_key(origin), &last.to_be_bytes()[..]);
                    }
                    cursors.insert(origin, last);
                    answers.push(Answer::Received(taken));
                }
                Job::Spend {
                    account,
                    amount,
                    limit,
                    ..
                } => {
                    let spent = totals
                        .get(account)
                        .copied()
                        .unwrap_or_else(|| ledger.total(account));
                    let total = spent.saturating_add(*amount);
                    if total > *limit {
                        answers.push(Answer::Spent(Spend::Refused { spent }));
                    } else {
                        ledger_batch.insert(account.as_slice(), &total.to_be_bytes()[..]);
                        totals.insert(account.clone(), total);
                        answers.push(Answer::Spent(Spend::Spent { total }));
                    }
                }
                _ => unreachable!("only inserts, receipts and spends are grouped"),
            }
        }
        moved.write(&mut batch);
        let blocks = merge_blocks(index, &mut batch, &deltas, 1)?;
        data.apply_batch(batch)?;
        if !totals.is_empty() {
            ledger.tree.apply_batch(ledger_batch)?;
        }
        db.flush()?;
        index.install(blocks);
        moved.publish(heads);
        ledger.install(totals);
        Ok::<_, StoreError>(())
    })();
    match result {
        Ok(()) => {
            for (job, answer) in group.into_iter().zip(answers) {
                match (job, answer) {
                    (Job::Insert { reply, .. }, Answer::Inserted(summary)) => {
                        let _ = reply.send(Ok(summary));
                    }
                    (Job::Receive { reply, .. }, Answer::Received(taken)) => {
                        let _ = reply.send(Ok(taken));
                    }
                    (Job::Spend { reply, .. }, Answer::Spent(spend)) => {
                        let _ = reply.send(Ok(spend));
                    }
                    _ => unreachable!("answers follow the jobs"),
                }
            }
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, "store commit failed; nothing acknowledged, no further writes until a restart");
            let message = e.to_string();
            for job in group {
                job.refuse(StoreError::Commit(message.clone()));
            }
            Err(message)
        }
    }
}

/// Puts a recall into the feed of every recipient of `report_id`'s events.
fn recall(
    shared: &Shared,
    report_id: &str,
    make: &MakeRecall,
) -> Result<RecallOutcome, StoreError> {
    let key = feeds::recipients_key(report_id);
    let Some(value) = shared.data.get(&key)? else {
        return Ok(RecallOutcome::NoEvents);
    };
    let mut recipients = Recipients::decode(&value)?;
    if recipients.recalled {
        return Ok(RecallOutcome::AlreadyRecalled);
    }
    let mut batch = sled::Batch::default();
    let mut moved = FeedHeads::default();
    for (recipient, _) in &recipients.feeds {
        let item = make(recipient);
        let seq = moved.next_feed(&shared.data, recipient)?;
        batch.insert(
            feeds::feed_key(recipient, seq),
            feeds::encode_item(item.expires_at, &item.record),
        );
    }
    recipients.recalled = true;
    batch.insert(key, recipients.encode());
    moved.write(&mut batch);
    shared.data.apply_batch(batch)?;
    shared.db.flush()?;
    moved.publish(&shared.heads);
    Ok(RecallOutcome::Recalled {
        recipients: recipients.feeds.len() as u32,
    })
}

/// Removes feed and inbox items that expired before `before`; their heads and
/// cursors stay, so numbering goes on.
fn purge_expired(shared: &Shared, before: i64) -> Result<u64, StoreError> {
    let mut removed = 0u64;
    for prefix in [feeds::FEED_PREFIX, feeds::INBOX_PREFIX] {
        let mut batch = sled::Batch::default();
        let mut in_batch = 0;
        for entry in shared.data.scan_prefix([prefix]) {
            let (key, value) = entry?;
            let item = feeds::decode_item(0, &value)?;
            if item.expires_at < before {
                batch.remove(key);
                in_batch += 1;
            }
            if in_batch == PURGE_CHUNK {
                shared.data.apply_batch(std::mem::take(&mut batch))?;
                removed += in_batch as u64;
                in_batch = 0;
            }
        }
        shared.data.apply_batch(batch)?;
        removed += in_batch as u64;
    }
    if removed > 0 {
        shared.db.flush()?;
    }
    Ok(removed)
}

/// Removes the ledger accounts whose names sort before `before`. Not flushed
/// on its own: forgetting is made durable by the next commit, and an account
/// that comes back after a crash is one that was no longer read.
fn forget_accounts(ledger: &Ledger, before: &[u8]) -> Result<usize, StoreError> {
    let accounts = ledger.accounts_before(before);
    let mut batch = sled::Batch::default();
    for account in &accounts {
        batch.remove(account.as_slice());
    }
    ledger.tree.apply_batch(batch)?;
    ledger.forget(&accounts);
    Ok(accounts.len())
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
fn purge(shared: &Shared, before_hour: u32) -> Result<PurgeSummary, StoreError> {
    let Shared {
        db, data, index, ..
    } = shared;
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
                // Its events can no longer be recalled.
                batch.remove(
                    [
                        &[feeds::RECIPIENTS_PREFIX][..],
                        &key[keys::REPORT_PREFIX.len()..],
                    ]
                    .concat(),
                );
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
