//! The log's single writer and its readers, over the files of [`crate::files`].
//!
//! Appends go through one writer thread that takes whatever has queued up,
//! hashes it into the tree (O(log n) per entry, never a rebuild), writes the
//! records with one write and one `fdatasync`, signs a checkpoint of the new
//! size, and only then answers each caller with its receipt: group commit. An
//! answered append is on disk. The derived files (leaf hashes, offsets, subtree
//! hashes) are made durable at most once a second, and when the log closes.

use crate::checkpoint::NoteSigner;
use crate::entry::{Entry, Receipt};
use crate::files::{self, Derived, LogFiles, Source};
use crate::merkle::{self, Frontier, Hash, ProofError};
use crate::witness::WitnessState;
use crate::AuditError;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// How long the writer waits for more entries before a commit, under load.
const LINGER: Duration = Duration::from_micros(1000);
/// A commit with at least this many callers waiting on it means load: the next
/// one lingers.
const LINGER_AFTER_BATCH: usize = 2;
/// Most often the derived files are made durable.
const SEAL_INTERVAL: Duration = Duration::from_secs(1);
/// How far ahead of the records `entries` is filled with zeros.
const PREALLOCATE: u64 = 8 << 20;

/// When checkpoints are kept on disk (every append gets a signed one in its
/// receipt; these are the ones kept for auditors).
#[derive(Debug, Clone, Copy)]
pub struct LogOptions {
    /// Keep a checkpoint after this many entries…
    pub checkpoint_every: u64,
    /// …or this long after the last kept one, if the log grew.
    pub checkpoint_interval: Duration,
    /// Most entries in one group commit.
    pub max_batch: usize,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(10),
            max_batch: 8192,
        }
    }
}

/// The latest state, as readers see it.
#[derive(Debug, Clone)]
struct Head {
    size: u64,
    /// Where the records of the first `size` entries end.
    entries_end: u64,
    note: String,
}

enum Job {
    Append {
        entry: Vec<u8>,
        reply: Option<oneshot::Sender<Result<Receipt, AuditError>>>,
    },
    Tick,
    Close(oneshot::Sender<()>),
}

/// A node's access log. Clones share one log.
#[derive(Clone)]
pub struct AuditLog {
    files: Arc<LogFiles>,
    head: Arc<RwLock<Head>>,
    jobs: mpsc::Sender<Job>,
    origin: String,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("origin", &self.origin)
            .field("size", &self.size())
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens (or creates) the log in `dir`, signing checkpoints with `signer`.
    /// Must be called inside a tokio runtime.
    pub fn open(
        dir: &Path,
        signer: impl Into<Arc<NoteSigner>>,
        options: LogOptions,
    ) -> Result<Self, AuditError> {
        let signer: Arc<NoteSigner> = signer.into();
        let (files, recovery) = LogFiles::open(dir)?;
        if recovery.cut_bytes > 0 {
            tracing::warn!(
                bytes = recovery.cut_bytes,
                size = recovery.frontier.size(),
                "cut the access log's torn tail: entries written but never acknowledged"
            );
        }
        for index in &recovery.mismatched {
            tracing::error!(
                index,
                "access log entry does not match its leaf hash: changed after it was written"
            );
        }
        let frontier = recovery.frontier;
        let size = frontier.size();
        if recovery.rebuilt_from < size || recovery.cut_bytes > 0 {
            files.seal(size, recovery.entries_end)?;
        }
        let last_kept = files
            .checkpoints()?
            .last()
            .and_then(|note| note.lines().nth(1).and_then(|l| l.parse().ok()))
            .unwrap_or(0);
        let files = Arc::new(files);
        let head = Arc::new(RwLock::new(Head {
            size,
            entries_end: recovery.entries_end,
            note: signer.sign(size, frontier.root()),
        }));
        let (jobs, queue) = mpsc::channel(16 * 1024);
        let writer = Writer {
            files: files.clone(),
            head: head.clone(),
            signer,
            frontier,
            entries_end: recovery.entries_end,
            allocated: recovery.allocated,
            options,
            last_kept,
            last_kept_at: Instant::now(),
            sealed: size,
            sealed_at: Instant::now(),
            failed: None,
        };
        let origin = writer.signer.origin().to_owned();
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(queue))
            .map_err(|e| AuditError::Io(format!("starting the log writer: {e}")))?;
        Ok(Self {
            files,
            head,
            jobs,
            origin,
        })
    }

    /// The log's name (the checkpoint origin).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Entries so far (all on disk).
    pub fn size(&self) -> u64 {
        self.head.read().map(|h| h.size).unwrap_or(0)
    }

    /// The latest signed checkpoint (as a note) and its size.
    pub fn latest(&self) -> (u64, String) {
        let head = self.head.read().expect("log head lock");
        (head.size, head.note.clone())
    }

    /// Appends `entry` and waits until it is on disk; returns its receipt.
    pub async fn append(&self, entry: &Entry) -> Result<Receipt, AuditError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Append {
                entry: entry.encode(),
                reply: Some(reply),
            })
            .await
            .map_err(|_| AuditError::Stopped)?;
        answer.await.map_err(|_| AuditError::Stopped)?
    }

    /// Queues `entry` without waiting for the disk. Appends are written in the
    /// order they are queued, so the next awaited [`append`](Self::append) makes
    /// this one durable too.
    pub async fn append_queued(&self, entry: &Entry) -> Result<(), AuditError> {
        self.jobs
            .send(Job::Append {
                entry: entry.encode(),
                reply: None,
            })
            .await
            .map_err(|_| AuditError::Stopped)
    }

    /// Queues `entry` from code that can't wait (a TLS certificate check). If
    /// the queue is full, the entry is not written and the error says so.
    pub fn try_append_queued(&self, entry: &Entry) -> Result<(), AuditError> {
        self.jobs
            .try_send(Job::Append {
                entry: entry.encode(),
                reply: None,
            })
            .map_err(|_| AuditError::Stopped)
    }

    /// Keeps a checkpoint on disk if one is due by time.
    pub async fn tick(&self) {
        let _ = self.jobs.send(Job::Tick).await;
    }

    /// Writes what is queued, stops the writer and releases the files once every
    /// clone of this log is dropped.
    pub async fn close(self) {
        let (reply, done) = oneshot::channel();
        if self.jobs.send(Job::Close(reply)).await.is_ok() {
            let _ = done.await;
        }
    }

    /// The stored bytes of entry `index`.
    pub fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, AuditError> {
        if index >= self.size() {
            return Ok(None);
        }
        self.files.entry(index).map(Some)
    }

    /// The leaf hash the tree holds for entry `index`.
    pub fn leaf(&self, index: u64) -> Result<Hash, AuditError> {
        self.check_size(index + 1)?;
        Ok(self.files.leaves(index, 1)?[0])
    }

    /// Entries from `start` on, at most `limit` and at most `max_bytes` of them
    /// (at least one), with their stored leaf hashes; only up to the current size.
    pub fn entries(
        &self,
        start: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Hash, Vec<u8>)>, AuditError> {
        let (size, entries_end) = {
            let head = self.head.read().expect("log head lock");
            (head.size, head.entries_end)
        };
        if start >= size || limit == 0 {
            return Ok(Vec::new());
        }
        let end = size.min(start.saturating_add(limit as u64));
        // Where each record starts, and where the last one ends.
        let mut offsets = self.files.offsets(start, end - start)?;
        offsets.push(if end < size {
            self.files.offsets(end, 1)?[0]
        } else {
            entries_end
        });
        // At most `max_bytes` of entries, and at least one.
        let mut count = 1;
        let mut bytes = offsets[1] - offsets[0];
        while count < offsets.len() - 1 {
            let next = offsets[count + 1] - offsets[count];
            if (bytes + next) as usize > max_bytes.saturating_add(files::HEADER * (count + 1)) {
                break;
            }
            bytes += next;
            count += 1;
        }
        let records = self.files.records(offsets[0], bytes)?;
        let mut out = Vec::with_capacity(count);
        for (i, (leaf, entry)) in records.into_iter().enumerate() {
            out.push((start + i as u64, leaf, entry));
        }
        if out.len() != count {
            return Err(AuditError::Corrupt(format!(
                "entries from {start}: {} records where {count} were expected",
                out.len()
            )));
        }
        Ok(out)
    }

    /// The root of the first `size` entries (`size` up to the current size).
    pub fn root_at(&self, size: u64) -> Result<Hash, AuditError> {
        self.check_size(size)?;
        Ok(merkle::root(&Source::new(&self.files, size), size)?)
    }

    /// The audit path of entry `index` in the tree of `size` entries.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, AuditError> {
        self.check_size(size)?;
        Ok(merkle::inclusion_proof(
            &Source::new(&self.files, size),
            index,
            size,
        )?)
    }

    /// The proof that the log at `old_size` is a prefix of the log at `new_size`.
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, AuditError> {
        self.check_size(new_size)?;
        Ok(merkle::consistency_proof(
            &Source::new(&self.files, new_size),
            old_size,
            new_size,
        )?)
    }

    fn check_size(&self, size: u64) -> Result<(), AuditError> {
        let current = self.size();
        if size > current {
            return Err(AuditError::Proof(ProofError::OutOfRange(format!(
                "tree size {size} is beyond the log's {current} entries"
            ))));
        }
        Ok(())
    }

    /// The checkpoints kept on disk, oldest first.
    pub fn checkpoints(&self) -> Result<Vec<String>, AuditError> {
        self.files.checkpoints()
    }

    /// What this node last saw of `org`'s log.
    pub fn witnessed(&self, org: &str) -> Result<Option<WitnessState>, AuditError> {
        self.files.witnessed(org)
    }

    /// Every peer's witness state.
    pub fn witnessed_all(&self) -> Result<Vec<(String, WitnessState)>, AuditError> {
        self.files.witnessed_all()
    }

    /// Records what this node now holds of `org`'s log, on disk before returning.
    pub async fn record_witness(&self, org: &str, state: &WitnessState) -> Result<(), AuditError> {
        let files = self.files.clone();
        let (org, state) = (org.to_owned(), state.clone());
        tokio::task::spawn_blocking(move || files.record_witness(&org, &state))
            .await
            .map_err(|_| AuditError::Stopped)?
    }

    /// Forgets what this node held of `org`'s log (an operator cleared an alarm).
    pub async fn forget_witness(&self, org: &str) -> Result<(), AuditError> {
        let files = self.files.clone();
        let org = org.to_owned();
        tokio::task::spawn_blocking(move || files.forget_witness(&org))
            .await
            .map_err(|_| AuditError::Stopped)?
    }

    /// Bytes the log takes on disk.
    pub fn size_on_disk(&self) -> Result<u64, AuditError> {
        self.files.size_on_disk()
    }
}

struct Writer {
    files: Arc<LogFiles>,
    head: Arc<RwLock<Head>>,
    signer: Arc<NoteSigner>,
    frontier: Frontier,
    /// Where the next record goes.
    entries_end: u64,
    /// Length of `entries`, zeros ahead of the records included.
    allocated: u64,
    options: LogOptions,
    last_kept: u64,
    last_kept_at: Instant,
    /// Entries whose derived data is durable.
    sealed: u64,
    sealed_at: Instant,
    /// Set when a write failed: the disk can't be trusted, so every later append
    /// is refused rather than risk reusing an index.
    failed: Option<String>,
}

type Reply = oneshot::Sender<Result<Receipt, AuditError>>;
type Pending = (Vec<u8>, Option<Reply>);
type Waiter = (u64, Hash, Reply);

impl Writer {
    fn run(mut self, mut queue: mpsc::Receiver<Job>) {
        let mut entries: Vec<Pending> = Vec::new();
        let mut closed = None;
        let mut last_batch = 0;
        while let Some(first) = queue.blocking_recv() {
            let mut tick = false;
            let mut next = Some(first);
            let mut lingered = false;
            loop {
                while let Some(job) = next.take() {
                    match job {
                        Job::Append { entry, reply } => entries.push((entry, reply)),
                        Job::Tick => tick = true,
                        Job::Close(reply) => closed = Some(reply),
                    }
                    if entries.len() < self.options.max_batch && closed.is_none() {
                        next = queue.try_recv().ok();
                    }
                }
                // Under load (the last commit was a group), wait a moment for
                // more: every commit costs the same thread wake-ups and sync
                // whatever it carries. Alone, an entry is committed at once.
                if lingered
                    || last_batch < LINGER_AFTER_BATCH
                    || entries.len() >= self.options.max_batch
                    || closed.is_some()
                {
                    break;
                }
                lingered = true;
                #[allow(clippy::disallowed_methods, reason = "the log's own writer thread")]
                std::thread::sleep(LINGER);
                next = queue.try_recv().ok();
            }
            // Only callers waiting for their receipt make a group worth waiting for.
            last_batch = entries.iter().filter(|(_, reply)| reply.is_some()).count();
            if !entries.is_empty() {
                self.commit(std::mem::take(&mut entries));
            } else if tick {
                self.keep_checkpoint_if_due();
            }
            if closed.is_some() {
                break;
            }
        }
        self.keep_checkpoint_if_due();
        self.seal(true);
        // Release the files before saying so.
        drop(self);
        if let Some(reply) = closed {
            let _ = reply.send(());
        }
    }

    fn due(&self, size: u64) -> bool {
        size > self.last_kept
            && (size - self.last_kept >= self.options.checkpoint_every
                || self.last_kept_at.elapsed() >= self.options.checkpoint_interval)
    }

    fn keep_checkpoint_if_due(&mut self) {
        let (size, note) = {
            let head = self.head.read().expect("log head lock");
            (head.size, head.note.clone())
        };
        if self.due(size) {
            self.keep(size, &note);
        }
        self.seal(false);
    }

    fn keep(&mut self, size: u64, note: &str) {
        match self.files.keep_checkpoint(note) {
            Ok(()) => {
                self.last_kept = size;
                self.last_kept_at = Instant::now();
            }
            Err(e) => tracing::error!(error = %e, "keeping an audit checkpoint failed"),
        }
    }

    /// Makes the derived files durable, if they grew and (unless `now`) the
    /// last time was a while ago.
    fn seal(&mut self, now: bool) {
        let size = self.frontier.size();
        if self.failed.is_some()
            || size == self.sealed
            || (!now && self.sealed_at.elapsed() < SEAL_INTERVAL)
        {
            return;
        }
        match self.files.seal(size, self.entries_end) {
            Ok(()) => {
                self.sealed = size;
                self.sealed_at = Instant::now();
            }
            // Nothing is lost: the entries are durable and the derived files
            // are rebuilt from them on the next open.
            Err(e) => tracing::error!(error = %e, "sealing the audit log's derived files failed"),
        }
    }

    fn commit(&mut self, entries: Vec<Pending>) {
        if let Some(reason) = &self.failed {
            for (_, reply) in entries {
                if let Some(reply) = reply {
                    let _ = reply.send(Err(AuditError::Io(reason.clone())));
                }
            }
            return;
        }
        let first = self.frontier.size();
        let mut records = Vec::with_capacity(entries.iter().map(|(e, _)| e.len() + 40).sum());
        let mut derived = Derived::default();
        let mut waiters: Vec<Waiter> = Vec::new();
        for (entry, reply) in entries {
            let index = self.frontier.size();
            let leaf = merkle::leaf_hash(&entry);
            let at = self.entries_end + records.len() as u64;
            files::encode_record(&mut records, &entry, &leaf);
            derived.push(&mut self.frontier, at, &leaf);
            if let Some(reply) = reply {
                waiters.push((index, leaf, reply));
            }
        }
        let needed = self.entries_end + records.len() as u64;
        if needed > self.allocated {
            let grow = PREALLOCATE.max(needed - self.allocated);
            match self.files.preallocate(self.allocated, grow) {
                Ok(()) => self.allocated += grow,
                // Not fatal: the records extend the file themselves.
                Err(e) => tracing::warn!(error = %e, "writing ahead in the access log failed"),
            }
        }
        let written = self
            .files
            .append_entries(self.entries_end, &records)
            .and_then(|()| self.files.write_derived(first, &derived));
        if let Err(e) = written {
            // Nothing of this batch was acknowledged; callers hear why.
            tracing::error!(error = %e, "audit log append failed; refusing further appends");
            self.failed = Some(format!("an earlier append failed: {e}"));
            for (_, _, reply) in waiters {
                let _ = reply.send(Err(AuditError::Io(e.to_string())));
            }
            return;
        }
        self.entries_end += records.len() as u64;
        self.allocated = self.allocated.max(self.entries_end);
        let size = self.frontier.size();
        let note = self.signer.sign(size, self.frontier.root());
        *self.head.write().expect("log head lock") = Head {
            size,
            entries_end: self.entries_end,
            note: note.clone(),
        };
        for (index, leaf_hash, reply) in waiters {
            let _ = reply.send(Ok(Receipt {
                index,
                leaf_hash,
                checkpoint: note.clone(),
            }));
        }
        if self.due(size) {
            self.keep(size, &note);
        }
        self.seal(false);
    }
}
