//! A node's durable local store (sled).
//!
//! Holds the organisation's raw reports by id, and counters per (hour, category,
//! cell) kept in the same atomic batch as each insert, at two resolutions: 100 m
//! (which nests in 500 m and 1000 m) and 250 m (which 100 m cells straddle). The
//! counters of each hour form one block ([`counters`]), held on disk and in
//! memory, so every coarser release (cells of 250/500/1000 m; buckets of
//! hour/day/week, hour-of-day, hour-of-week) is computed from the in-memory
//! counters of its hours, never by scanning reports or reading the disk.
//!
//! All writes go through one writer thread ([`Store::insert`], [`Store::spend`],
//! [`Store::purge_before`], ...), which commits whatever has queued up as one
//! atomic batch, then flushes to disk, then acknowledges each caller: group
//! commit. An acknowledged write is on disk. No other thread writes or flushes
//! sled: sled 0.34 holds a global read lock while a flush waits for its I/O, and
//! a batch waits for every such lock, so a flush from anywhere else can stall
//! every reader of the process behind a waiting batch.
//!
//! Reads never run on a caller's async task: counters, feed heads and ledger
//! totals are mirrored in memory, and what must come from sled (feed pages, the
//! inbox, report ids) is read on tokio's blocking pool ([`Store::feed`] and
//! the other `async` readers), so a slow disk or a long batch holds up a
//! blocking thread, never a runtime worker.
//!
//! The store does not interpret reports: callers hand it the encoded report with
//! the derived keys ([`NewReport`]). It never decides what may leave the node.

#![warn(missing_docs)]

mod counters;
mod durable;
mod feeds;
mod keys;
mod ledger;
mod writer;

pub use feeds::{FeedRecord, Incoming, Outgoing, RecallOutcome};
pub use keys::{CounterFamily, CounterKey, CounterValue};
pub use writer::{InsertSummary, PurgeSummary};

use durable::DurableDb;
use lagesbild_geo::Cell;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed (disk full, corruption, I/O).
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
    /// A stored record could not be decoded.
    #[error("store: corrupt record under key {key}: {reason}")]
    Corrupt {
        /// The key, printable.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A group commit failed; none of its writes were acknowledged.
    #[error("store: commit failed: {0}")]
    Commit(String),
    /// The store on disk was written in a format this build does not read.
    #[error("store: format {found} is not supported: this build reads format {FORMAT} (and upgrades older ones)")]
    Format {
        /// The format on disk.
        found: u32,
    },
    /// The writer task is gone (the store is shutting down).
    #[error("store: writer stopped")]
    WriterStopped,
}

/// One peer's privacy budget on one local day: an account of the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BudgetAccount {
    /// The local day (days since the epoch, in the node's time zone).
    pub day: u32,
    /// The peer organisation.
    pub peer: String,
}

impl BudgetAccount {
    /// `peer`'s account for `day`.
    pub fn new(peer: &str, day: u32) -> Self {
        Self {
            day,
            peer: peer.to_owned(),
        }
    }

    /// Its key in the ledger; days sort in order.
    fn key(&self) -> Vec<u8> {
        let mut key = Self::day_prefix(self.day);
        key.extend_from_slice(self.peer.as_bytes());
        key
    }

    /// The start of every key of `day`, and the bound below which all earlier
    /// days' keys sort.
    fn day_prefix(day: u32) -> Vec<u8> {
        format!("budget/{day:08}/").into_bytes()
    }
}

/// The outcome of [`Store::spend`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spend {
    /// Spent; the account's new total.
    Spent {
        /// Total after this spend.
        total: u64,
    },
    /// Not spent: it would pass the limit.
    Refused {
        /// Total already spent.
        spent: u64,
    },
}

fn recount_reports(
    data: &sled::Tree,
    family: CounterFamily,
) -> Result<std::collections::BTreeMap<CounterKey, CounterValue>, StoreError> {
    let mut counts = std::collections::BTreeMap::new();
    for entry in data.scan_prefix(keys::REPORT_PREFIX) {
        let (k, v) = entry?;
        let (header, _) = keys::split_record(&v).map_err(|e| match e {
            StoreError::Corrupt { reason, .. } => StoreError::Corrupt {
                key: String::from_utf8_lossy(&k).into_owned(),
                reason,
            },
            other => other,
        })?;
        let value: &mut CounterValue = counts.entry(header.counter_key(family)).or_default();
        value.count += 1;
        value.severity_sum += u64::from(header.severity);
    }
    Ok(counts)
}

/// Removes the retention index older stores kept (purges now read report headers).
fn drop_legacy_time_index(db: &DurableDb, data: &sled::Tree) -> Result<(), StoreError> {
    let mut removed = 0;
    loop {
        let chunk: Vec<sled::IVec> = data
            .scan_prefix(keys::LEGACY_TIME_PREFIX)
            .keys()
            .take(10_000)
            .collect::<Result<_, _>>()?;
        if chunk.is_empty() {
            break;
        }
        let mut batch = sled::Batch::default();
        for key in &chunk {
            batch.remove(key);
        }
        removed += chunk.len();
        data.apply_batch(batch)?;
    }
    if removed > 0 {
        db.flush()?;
        tracing::info!(keys = removed, "store upgraded: retention index removed");
    }
    Ok(())
}

/// The layout of the store on disk. A store without a mark is of this format
/// once the upgrades at open have run; a newer one is refused, not misread.
pub const FORMAT: u32 = 1;

/// Where the format mark lives (in sled's default tree).
const FORMAT_KEY: &[u8] = b"lagesbild-store-format";

/// Refuses a store of a newer format; marks one without a mark (new, or from
/// before the mark) as of this format.
fn check_format(db: &DurableDb) -> Result<(), StoreError> {
    match db.get(FORMAT_KEY)? {
        Some(bytes) => {
            let found = <[u8; 4]>::try_from(bytes.as_ref())
                .map(u32::from_be_bytes)
                .map_err(|_| StoreError::Corrupt {
                    key: String::from_utf8_lossy(FORMAT_KEY).into_owned(),
                    reason: "not a 4-byte format number".into(),
                })?;
            if found != FORMAT {
                return Err(StoreError::Format { found });
            }
            Ok(())
        }
        None => {
            db.insert(FORMAT_KEY, &FORMAT.to_be_bytes())?;
            Ok(())
        }
    }
}

/// Rebuilds the counter blocks of a store written with one key per counter:
/// recounts the reports and replaces the old keys, in one batch.
fn upgrade_legacy_counters(db: &DurableDb, data: &sled::Tree) -> Result<(), StoreError> {
    let legacy: Vec<sled::IVec> = keys::LEGACY_COUNTER_PREFIXES
        .iter()
        .flat_map(|prefix| data.scan_prefix(prefix).keys())
        .collect::<Result<_, _>>()?;
    if legacy.is_empty() {
        return Ok(());
    }
    let mut batch = sled::Batch::default();
    for key in &legacy {
        batch.remove(key);
    }
    for family in [CounterFamily::M100, CounterFamily::M250] {
        let mut hours: std::collections::BTreeMap<u32, Vec<counters::Slot>> = Default::default();
        for (key, value) in recount_reports(data, family)? {
            hours.entry(key.hour).or_default().push(counters::Slot {
                category: key.category,
                northing: key.cell.northing,
                easting: key.cell.easting,
                count: u32::try_from(value.count).unwrap_or(u32::MAX),
                severity_sum: u32::try_from(value.severity_sum).unwrap_or(u32::MAX),
            });
        }
        for (hour, slots) in hours {
            batch.insert(
                &keys::block_key(family, hour),
                counters::encode_block(&slots),
            );
        }
    }
    data.apply_batch(batch)?;
    db.flush()?;
    tracing::info!(
        keys = legacy.len(),
        "store upgraded: per-counter keys replaced by hourly counter blocks"
    );
    Ok(())
}

/// A validated report ready to store, with the keys derived from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReport {
    /// The client-supplied id.
    pub id: String,
    /// Hours since the Unix epoch of `observed_at`.
    pub hour: u32,
    /// Category code (1..=255).
    pub category: u8,
    /// Severity 1..=5.
    pub severity: u8,
    /// The 100 m cell of the position.
    pub cell100: Cell,
    /// The 250 m cell of the position.
    pub cell250: Cell,
    /// The encoded report, stored as is.
    pub payload: Vec<u8>,
    /// Its events, one per recipient, kept in their feeds if the report is new.
    pub events: Vec<Outgoing>,
}

/// Tuning of the store.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// sled's page cache, bytes.
    pub cache_bytes: u64,
    /// Most reports committed in one group.
    pub max_group_reports: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            cache_bytes: 8 * 1024 * 1024,
            max_group_reports: 50_000,
        }
    }
}

/// The store of one node. Cheap to clone; clones share the writer.
#[derive(Clone)]
pub struct Store {
    db: DurableDb,
    data: sled::Tree,
    ledger: Arc<ledger::Ledger>,
    index: Arc<counters::CounterIndex>,
    heads: Arc<feeds::Heads>,
    writer: mpsc::Sender<writer::Job>,
    _writer_task: Arc<writer::WriterHandle>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the store in `dir` and starts its writer task.
    /// Must be called inside a tokio runtime.
    pub fn open(dir: &Path, options: StoreOptions) -> Result<Self, StoreError> {
        let db = DurableDb::open(dir, options.cache_bytes)?;
        check_format(&db)?;
        let data = db.open_tree("data")?;
        let ledger = Arc::new(ledger::Ledger::open(db.open_tree("ledger")?)?);
        let index = Arc::new(counters::CounterIndex::default());
        upgrade_legacy_counters(&db, &data)?;
        drop_legacy_time_index(&db, &data)?;
        let mut blocks = Vec::new();
        for entry in data.scan_prefix(keys::BLOCK_PREFIX) {
            let (key, value) = entry?;
            let (family, hour) = keys::decode_block_key(&key)?;
            blocks.push((family, hour, counters::decode_block(&key, &value)?));
        }
        index.install(blocks);
        let inbox_head = feeds::decode_u64(data.get(feeds::INBOX_HEAD)?.as_deref())?;
        let mut feed_heads = std::collections::HashMap::new();
        for entry in data.scan_prefix([feeds::FEED_HEAD_PREFIX]) {
            let (key, value) = entry?;
            let recipient = String::from_utf8_lossy(&key[1..]).into_owned();
            feed_heads.insert(recipient, feeds::decode_u64(Some(&value))?);
        }
        let heads = Arc::new(feeds::Heads::new(inbox_head, feed_heads));
        let (writer, handle) = writer::spawn(
            writer::Shared {
                db: db.clone(),
                data: data.clone(),
                index: index.clone(),
                heads: heads.clone(),
                ledger: ledger.clone(),
            },
            options,
        );
        Ok(Self {
            db,
            data,
            ledger,
            index,
            heads,
            writer,
            _writer_task: Arc::new(handle),
        })
    }

    /// Stores the reports whose ids are new, atomically with their counters, and
    /// returns once they are on disk.
    pub async fn insert(&self, reports: Vec<NewReport>) -> Result<InsertSummary, StoreError> {
        self.submit(|reply| writer::Job::Insert { reports, reply })
            .await
    }

    /// Removes every report observed before `hour` (hours since the epoch) and
    /// takes it out of the counters; returns once that is on disk.
    pub async fn purge_before(&self, hour: u32) -> Result<PurgeSummary, StoreError> {
        self.submit(|reply| writer::Job::Purge {
            before_hour: hour,
            reply,
        })
        .await
    }

    async fn submit<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> writer::Job,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(job(reply))
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }

    /// Runs a read of sled on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&sled::Tree) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let data = self.data.clone();
        tokio::task::spawn_blocking(move || read(&data))
            .await
            .map_err(|_| StoreError::WriterStopped)?
    }

    /// Items of `recipient`'s feed after `after`, in order, at most `limit`.
    pub async fn feed(
        &self,
        recipient: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<FeedRecord>, StoreError> {
        let recipient = recipient.to_owned();
        self.read(move |data| {
            let prefix = feeds::feed_prefix(&recipient);
            let start = feeds::feed_key(&recipient, after.saturating_add(1));
            let mut out = Vec::new();
            for entry in data.range(start..) {
                let (key, value) = entry?;
                if !key.starts_with(&prefix) || out.len() == limit {
                    break;
                }
                out.push(feeds::decode_item(feeds::seq_of_key(&key)?, &value)?);
            }
            Ok(out)
        })
        .await
    }

    /// The last seq of `recipient`'s feed, as it moves (only once items are
    /// on disk). From memory.
    pub fn feed_head(&self, recipient: &str) -> watch::Receiver<u64> {
        self.heads.feed(recipient)
    }

    /// Puts a recall into the feed of every recipient of report `id`'s events
    /// (`make` makes each one), once; returns when that is on disk.
    pub async fn recall(
        &self,
        id: &str,
        make: impl Fn(&str) -> Outgoing + Send + 'static,
    ) -> Result<RecallOutcome, StoreError> {
        let report_id = id.to_owned();
        self.submit(|reply| writer::Job::Recall {
            report_id,
            make: Box::new(make),
            reply,
        })
        .await
    }

    /// Takes the items of `origin`'s feed that come after what was taken
    /// before into the inbox, with the new cursor, atomically; returns their
    /// inbox seqs once on disk.
    pub async fn receive(
        &self,
        origin: &str,
        items: Vec<Incoming>,
    ) -> Result<Vec<u64>, StoreError> {
        let origin = origin.to_owned();
        self.submit(|reply| writer::Job::Receive {
            origin,
            items,
            reply,
        })
        .await
    }

    /// The last seq of `origin`'s feed taken into the inbox (0 if none).
    pub async fn received_cursor(&self, origin: &str) -> Result<u64, StoreError> {
        let key = feeds::cursor_key(origin);
        self.read(move |data| feeds::decode_u64(data.get(key)?.as_deref()))
            .await
    }

    /// Inbox items after `after`, in order, at most `limit`.
    pub async fn inbox(&self, after: u64, limit: usize) -> Result<Vec<FeedRecord>, StoreError> {
        self.read(move |data| {
            let mut out = Vec::new();
            for entry in data.range(feeds::inbox_key(after.saturating_add(1))..) {
                let (key, value) = entry?;
                if key.first() != Some(&feeds::INBOX_PREFIX) || out.len() == limit {
                    break;
                }
                out.push(feeds::decode_item(feeds::seq_of_key(&key)?, &value)?);
            }
            Ok(out)
        })
        .await
    }

    /// The inbox's last seq, as it moves (only once items are on disk).
    pub fn inbox_head(&self) -> watch::Receiver<u64> {
        self.heads.inbox()
    }

    /// Removes feed and inbox items that expired before `before` (seconds
    /// since the epoch); returns how many.
    pub async fn purge_expired_events(&self, before: i64) -> Result<u64, StoreError> {
        self.submit(|reply| writer::Job::PurgeExpired { before, reply })
            .await
    }

    /// The stored payload of report `id`. Blocks on sled: for tools and
    /// tests, not for a node's async tasks.
    pub fn report(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.data
            .get(keys::report_key(id))?
            .map(|v| keys::split_record(&v).map(|(_, payload)| payload.to_vec()))
            .transpose()
    }

    /// How many of `ids` are stored already.
    pub async fn count_stored(&self, ids: Vec<String>) -> Result<u64, StoreError> {
        self.read(move |data| {
            let mut stored = 0;
            for id in ids {
                stored += u64::from(data.contains_key(keys::report_key(&id))?);
            }
            Ok(stored)
        })
        .await
    }

    /// How many reports are stored. Scans them all, blocking: for tools and tests.
    pub fn report_count(&self) -> usize {
        self.data.scan_prefix(keys::REPORT_PREFIX).count()
    }

    /// The counters of `family` for hours in `from_hour..to_hour`, in key order
    /// (hour, category, cell), from memory.
    pub fn counters(
        &self,
        family: CounterFamily,
        from_hour: u32,
        to_hour: u32,
    ) -> impl Iterator<Item = (CounterKey, CounterValue)> {
        counters::entries(family, self.index.range(family, from_hour, to_hour))
    }

    /// How many counters of `family` there are in `from_hour..to_hour`: what
    /// reading them would cost, known without reading them.
    pub fn counter_count(&self, family: CounterFamily, from_hour: u32, to_hour: u32) -> usize {
        self.index.len(family, from_hour, to_hour)
    }

    /// A stamp of the counters of `family` in `from_hour..to_hour`: equal stamps
    /// mean no counter there changed in between (for caches of what is computed
    /// from them).
    pub fn counters_stamp(
        &self,
        family: CounterFamily,
        from_hour: u32,
        to_hour: u32,
    ) -> (u64, usize) {
        self.index.stamp(family, from_hour, to_hour)
    }

    /// Counters recomputed from the stored reports, by full scan: for checking
    /// that the maintained counters are right, never for answering queries.
    pub fn recount(
        &self,
        family: CounterFamily,
    ) -> Result<std::collections::BTreeMap<CounterKey, CounterValue>, StoreError> {
        recount_reports(&self.data, family)
    }

    /// Adds `amount` to the running total of `account` if the total stays within
    /// `limit`, atomically, and returns once the new total is on disk. Used for
    /// privacy budgets: a restart must not give back what was spent. Spends
    /// join the writer's group commit, so concurrent spends share one flush.
    pub async fn spend(
        &self,
        account: &BudgetAccount,
        amount: u64,
        limit: u64,
    ) -> Result<Spend, StoreError> {
        let account = account.key();
        self.submit(|reply| writer::Job::Spend {
            account,
            amount,
            limit,
            reply,
        })
        .await
    }

    /// The running total of `account` (0 if nothing was spent), from memory.
    pub fn spent(&self, account: &BudgetAccount) -> u64 {
        self.ledger.total(&account.key())
    }

    /// Removes the budget accounts of every day before `day`.
    pub async fn forget_budgets_before(&self, day: u32) -> Result<usize, StoreError> {
        let before = BudgetAccount::day_prefix(day);
        self.submit(|reply| writer::Job::ForgetAccounts { before, reply })
            .await
    }

    /// Flushes everything to disk, durably.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.submit(|reply| writer::Job::Flush { reply }).await
    }

    /// Bytes the store takes on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lagesbild_geo::CellSize;

    fn report(id: &str, hour: u32, category: u8, lat: f64) -> NewReport {
        NewReport {
            id: id.into(),
            hour,
            category,
            severity: 3,
            cell100: Cell::containing(lat, 18.06, CellSize::M100).unwrap(),
            cell250: Cell::containing(lat, 18.06, CellSize::M250).unwrap(),
            payload: format!("payload of {id}").into_bytes(),
            events: Vec::new(),
        }
    }

    fn counters(
        store: &Store,
        family: CounterFamily,
    ) -> std::collections::BTreeMap<CounterKey, CounterValue> {
        store.counters(family, 0, u32::MAX).collect()
    }

    #[tokio::test]
    async fn inserts_count_once_and_counters_match_a_recount() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let batch = vec![
            report("a", 100, 1, 59.330),
            report("b", 100, 1, 59.330),
            report("c", 101, 2, 59.335),
            report("a", 100, 1, 59.330),
        ];
        let summary = store.insert(batch.clone()).await.unwrap();
        assert_eq!(
            summary,
            InsertSummary {
                stored: 3,
                duplicates: 1
            }
        );
        let again = store.insert(batch).await.unwrap();
        assert_eq!(
            again,
            InsertSummary {
                stored: 0,
                duplicates: 4
            }
        );
        assert_eq!(store.report_count(), 3);
        assert_eq!(store.report("b").unwrap().unwrap(), b"payload of b");
        for family in [CounterFamily::M100, CounterFamily::M250] {
            let kept = counters(&store, family);
            assert_eq!(kept, store.recount(family).unwrap());
            assert_eq!(kept.values().map(|v| v.count).sum::<u64>(), 3);
        }
        let hour_100: Vec<_> = store.counters(CounterFamily::M100, 100, 101).collect();
        assert_eq!(hour_100.len(), 1);
        assert_eq!(
            hour_100[0].1,
            CounterValue {
                count: 2,
                severity_sum: 6
            }
        );
    }

    #[tokio::test]
    async fn concurrent_inserts_are_grouped_and_all_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let tasks: Vec<_> = (0..20)
            .map(|t| {
                let store = store.clone();
                tokio::spawn(async move {
                    let batch = (0..50)
                        .map(|i| report(&format!("{t}-{i}"), 200 + i, 4, 59.33))
                        .collect();
                    store.insert(batch).await.unwrap()
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().stored, 50);
        }
        assert_eq!(store.report_count(), 1000);
        assert_eq!(
            counters(&store, CounterFamily::M100),
            store.recount(CounterFamily::M100).unwrap()
        );
    }

    #[tokio::test]
    async fn purge_removes_old_reports_and_their_counts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        store
            .insert(vec![
                report("old", 10, 1, 59.33),
                report("new", 20, 1, 59.33),
            ])
            .await
            .unwrap();
        assert_eq!(store.purge_before(15).await.unwrap().purged, 1);
        assert_eq!(store.report("old").unwrap(), None);
        assert!(store.report("new").unwrap().is_some());
        let kept = counters(&store, CounterFamily::M100);
        assert_eq!(kept, store.recount(CounterFamily::M100).unwrap());
        assert_eq!(kept.keys().map(|k| k.hour).collect::<Vec<_>>(), vec![20]);
        assert_eq!(store.purge_before(15).await.unwrap().purged, 0);
    }

    #[tokio::test]
    async fn purge_of_interleaved_hours_keeps_counters_equal_to_a_recount() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        // Ids sort independently of hours, so old and new reports interleave.
        let batch = (0..200u32)
            .map(|i| {
                report(
                    &format!("{:03}", (i * 37) % 200),
                    100 + i % 10,
                    1 + (i % 3) as u8,
                    59.33 + f64::from(i % 4) * 0.003,
                )
            })
            .collect();
        store.insert(batch).await.unwrap();
        assert_eq!(store.purge_before(105).await.unwrap().purged, 100);
        assert_eq!(store.report_count(), 100);
        for family in [CounterFamily::M100, CounterFamily::M250] {
            let kept = counters(&store, family);
            assert_eq!(kept, store.recount(family).unwrap());
            assert!(kept.keys().all(|k| k.hour >= 105));
            assert_eq!(kept.values().map(|v| v.count).sum::<u64>(), 100);
        }
    }

    #[tokio::test]
    async fn spending_stops_at_the_limit_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
            assert_eq!(
                store
                    .spend(&BudgetAccount::new("p", 1), 3, 5)
                    .await
                    .unwrap(),
                Spend::Spent { total: 3 }
            );
            assert_eq!(
                store
                    .spend(&BudgetAccount::new("p", 1), 3, 5)
                    .await
                    .unwrap(),
                Spend::Refused { spent: 3 }
            );
            assert_eq!(
                store
                    .spend(&BudgetAccount::new("p", 1), 2, 5)
                    .await
                    .unwrap(),
                Spend::Spent { total: 5 }
            );
            assert_eq!(
                store
                    .spend(&BudgetAccount::new("q", 1), 1, 5)
                    .await
                    .unwrap(),
                Spend::Spent { total: 1 }
            );
        }
        let store = loop {
            match Store::open(dir.path(), StoreOptions::default()) {
                Ok(store) => break store,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        };
        assert_eq!(store.spent(&BudgetAccount::new("p", 1)), 5);
        assert_eq!(
            store
                .spend(&BudgetAccount::new("p", 1), 1, 5)
                .await
                .unwrap(),
            Spend::Refused { spent: 5 }
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_spends_with_inserts_never_pass_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let spends: Vec<_> = (0..200)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .spend(&BudgetAccount::new("p", 9), 1, 120)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let inserts: Vec<_> = (0..10)
            .map(|t| {
                let store = store.clone();
                tokio::spawn(async move {
                    let batch = (0..300)
                        .map(|i| report(&format!("{t}-{i}"), 400 + i % 24, 2, 59.33))
                        .collect();
                    store.insert(batch).await.unwrap()
                })
            })
            .collect();
        let mut spent = 0;
        for spend in spends {
            if let Spend::Spent { .. } = spend.await.unwrap() {
                spent += 1;
            }
        }
        for insert in inserts {
            assert_eq!(insert.await.unwrap().stored, 300);
        }
        assert_eq!(spent, 120);
        assert_eq!(store.spent(&BudgetAccount::new("p", 9)), 120);
        drop(store);
        let store = reopen(dir.path()).await;
        assert_eq!(store.spent(&BudgetAccount::new("p", 9)), 120);
        assert_eq!(store.report_count(), 3_000);
    }

    #[tokio::test]
    async fn forgotten_accounts_are_gone_from_memory_and_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let (old, new) = (BudgetAccount::new("a", 1), BudgetAccount::new("a", 2));
        store.spend(&old, 2, 10).await.unwrap();
        store.spend(&new, 3, 10).await.unwrap();
        // A peer whose name sorts before any day's prefix stays with its day.
        store
            .spend(&BudgetAccount::new("0", 2), 1, 10)
            .await
            .unwrap();
        assert_eq!(store.forget_budgets_before(2).await.unwrap(), 1);
        assert_eq!(store.spent(&old), 0);
        store.flush().await.unwrap();
        drop(store);
        let store = reopen(dir.path()).await;
        assert_eq!(store.spent(&old), 0);
        assert_eq!(store.spent(&new), 3);
        assert_eq!(store.spent(&BudgetAccount::new("0", 2)), 1);
        // The key format existing ledgers hold.
        assert_eq!(new.key(), b"budget/00000002/a");
    }

    #[tokio::test]
    async fn a_store_of_a_newer_format_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), StoreOptions::default()).unwrap());
        // Control: the mark written at first open is read back as ours.
        let store = reopen(dir.path()).await;
        drop(store);
        {
            // The dropped store's writer lets go of the lock shortly.
            let mut tries = 0;
            let db = loop {
                tries += 1;
                match sled::open(dir.path()) {
                    Ok(db) => break db,
                    Err(e) if tries > 500 => panic!("the store stayed locked: {e}"),
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
                }
            };
            assert_eq!(
                db.get(FORMAT_KEY).unwrap().as_deref(),
                Some(&FORMAT.to_be_bytes()[..])
            );
            db.insert(FORMAT_KEY, &(FORMAT + 1).to_be_bytes()).unwrap();
            #[allow(clippy::disallowed_methods, reason = "a test writing a raw sled file")]
            db.flush().unwrap();
        }
        let mut tries = 0;
        let error = loop {
            tries += 1;
            match Store::open(dir.path(), StoreOptions::default()) {
                Err(StoreError::Sled(e)) if tries > 500 => panic!("the store stayed locked: {e}"),
                Err(StoreError::Sled(_)) => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await
                }
                Err(e) => break e,
                Ok(_) => panic!("a store of format {} was opened", FORMAT + 1),
            }
        };
        assert!(matches!(error, StoreError::Format { found } if found == FORMAT + 1));
        assert!(
            error.to_string().contains("format 2 is not supported"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn acknowledged_writes_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
            store.insert(vec![report("x", 5, 3, 59.33)]).await.unwrap();
        }
        // sled releases its lock once every handle is gone; the writer thread holds one briefly.
        let store = loop {
            match Store::open(dir.path(), StoreOptions::default()) {
                Ok(store) => break store,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        };
        assert!(store.report("x").unwrap().is_some());
        assert_eq!(
            counters(&store, CounterFamily::M250),
            store.recount(CounterFamily::M250).unwrap()
        );
    }

    #[tokio::test]
    async fn a_store_with_per_counter_keys_is_rebuilt_into_blocks() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
            store
                .insert(vec![report("a", 7, 1, 59.33), report("b", 8, 2, 59.34)])
                .await
                .unwrap();
            // The older layout: no blocks, one key per counter.
            let blocks: Vec<_> = store
                .data
                .scan_prefix(keys::BLOCK_PREFIX)
                .keys()
                .collect::<Result<_, _>>()
                .unwrap();
            for key in blocks {
                store.data.remove(key).unwrap();
            }
            store
                .data
                .insert(b"c\0\0\0\x07\x01legacy", &[0u8; 16])
                .unwrap();
            store.db.flush().unwrap();
        }
        let store = loop {
            match Store::open(dir.path(), StoreOptions::default()) {
                Ok(store) => break store,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        };
        for family in [CounterFamily::M100, CounterFamily::M250] {
            let kept = counters(&store, family);
            assert_eq!(kept.values().map(|v| v.count).sum::<u64>(), 2);
            assert_eq!(kept, store.recount(family).unwrap());
        }
        assert_eq!(store.data.scan_prefix(b"c").count(), 0);
        assert_eq!(store.data.scan_prefix(b"t").count(), 0);
    }

    fn with_events(id: &str, recipients: &[&str]) -> NewReport {
        let mut r = report(id, 300, 1, 59.33);
        r.events = recipients
            .iter()
            .map(|to| Outgoing {
                recipient: (*to).into(),
                expires_at: 1_000,
                record: format!("{id} for {to}").into_bytes(),
            })
            .collect();
        r
    }

    async fn reopen(dir: &Path) -> Store {
        loop {
            match Store::open(dir, StoreOptions::default()) {
                Ok(store) => break store,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
    }

    #[tokio::test]
    async fn events_of_new_reports_go_to_their_feeds_in_order_and_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let mut head = store.feed_head("b");
        assert_eq!(*head.borrow(), 0);
        store
            .insert(vec![
                with_events("r1", &["b", "c"]),
                with_events("r2", &["b"]),
            ])
            .await
            .unwrap();
        // A duplicate makes no second event.
        store
            .insert(vec![with_events("r1", &["b", "c"])])
            .await
            .unwrap();
        assert!(head.has_changed().unwrap());
        assert_eq!(*head.borrow_and_update(), 2);
        let b = store.feed("b", 0, 10).await.unwrap();
        assert_eq!(
            b.iter()
                .map(|r| (r.seq, r.record.clone()))
                .collect::<Vec<_>>(),
            vec![(1, b"r1 for b".to_vec()), (2, b"r2 for b".to_vec())]
        );
        assert_eq!(store.feed("b", 1, 10).await.unwrap().len(), 1);
        assert_eq!(store.feed("c", 0, 10).await.unwrap().len(), 1);
        assert!(store.feed("bb", 0, 10).await.unwrap().is_empty());

        let make = |to: &str| Outgoing {
            recipient: to.into(),
            expires_at: 1_000,
            record: format!("recall for {to}").into_bytes(),
        };
        assert_eq!(
            store.recall("r1", make).await.unwrap(),
            RecallOutcome::Recalled { recipients: 2 }
        );
        assert_eq!(
            store.recall("r1", make).await.unwrap(),
            RecallOutcome::AlreadyRecalled
        );
        assert_eq!(
            store.recall("r9", make).await.unwrap(),
            RecallOutcome::NoEvents
        );
        let b = store.feed("b", 2, 10).await.unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!((b[0].seq, &b[0].record[..]), (3, &b"recall for b"[..]));
        assert_eq!(*head.borrow(), 3);

        // Numbering goes on after expired items are purged and after a restart.
        assert_eq!(store.purge_expired_events(2_000).await.unwrap(), 5);
        assert!(store.feed("b", 0, 10).await.unwrap().is_empty());
        drop(store);
        let store = reopen(dir.path()).await;
        store.insert(vec![with_events("r3", &["b"])]).await.unwrap();
        assert_eq!(store.feed("b", 0, 10).await.unwrap()[0].seq, 4);
    }

    #[tokio::test]
    async fn received_items_are_taken_once_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let item = |seq: u64| Incoming {
            origin_seq: seq,
            expires_at: 5_000,
            record: format!("item {seq}").into_bytes(),
        };
        {
            let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
            let mut head = store.inbox_head();
            assert_eq!(
                store.receive("a", vec![item(1), item(2)]).await.unwrap(),
                vec![1, 2]
            );
            assert_eq!(store.receive("c", vec![item(1)]).await.unwrap(), vec![3]);
            // Sent again after a reconnect: nothing new.
            assert_eq!(
                store.receive("a", vec![item(2)]).await.unwrap(),
                Vec::<u64>::new()
            );
            assert_eq!(*head.borrow_and_update(), 3);
            assert_eq!(store.received_cursor("a").await.unwrap(), 2);
        }
        let store = reopen(dir.path()).await;
        assert_eq!(store.received_cursor("a").await.unwrap(), 2);
        assert_eq!(*store.inbox_head().borrow(), 3);
        assert_eq!(
            store.receive("a", vec![item(2), item(3)]).await.unwrap(),
            vec![4]
        );
        let inbox = store.inbox(0, 10).await.unwrap();
        assert_eq!(
            inbox.iter().map(|r| r.record.clone()).collect::<Vec<_>>(),
            [&b"item 1"[..], b"item 2", b"item 1", b"item 3"]
                .map(<[u8]>::to_vec)
                .to_vec()
        );
        assert_eq!(store.inbox(3, 1).await.unwrap()[0].seq, 4);
    }
}
