//! The log on disk: entries, the perfect-subtree hashes of the RFC 9162 tree, and
//! signed checkpoints, in one sled tree; and the single writer that appends.
//!
//! Appends go through one writer thread that takes whatever has queued up,
//! hashes it into the tree (O(log n) per entry, never a rebuild), writes entries,
//! new hashes and the new size as one atomic batch, flushes it to disk, signs a
//! checkpoint of the new size, and only then answers each caller with its
//! receipt: group commit. An answered append is on disk.
//!
//! Entries are stored in chunks, one per group commit and never across a block
//! of 256 leaves, so an append costs a few keys per batch rather than per entry.
//! Perfect subtrees of a whole block or more are stored as they complete;
//! smaller ones are recomputed from the block's stored leaf hashes.
//!
//! Keys: `e`+first index → entries of a chunk (each: u32 length, bytes); `l`+first
//! index → their leaf hashes (32 bytes each); `n`+level+index → hash of a perfect
//! subtree of level ≥ 8; `c`+size → a kept signed checkpoint; `size` → entries so
//! far; `w`+org → witness state. Integers are big-endian.

use crate::checkpoint::NoteSigner;
use crate::entry::{Entry, Receipt};
use crate::merkle::{self, Frontier, Hash, NodeSource, ProofError};
use crate::witness::WitnessState;
use crate::AuditError;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

const SIZE_KEY: &[u8] = b"size";

/// Level of the smallest stored perfect subtree: a block of 2^8 leaves.
const BLOCK_LEVEL: u8 = 8;
const BLOCK: u64 = 1 << BLOCK_LEVEL;

/// How long the writer waits for more entries before a commit, under load.
const LINGER: std::time::Duration = std::time::Duration::from_micros(1000);
/// A commit with at least this many callers waiting on it means load: the next
/// one lingers.
const LINGER_AFTER_BATCH: usize = 2;

fn chunk_key(kind: u8, first: u64) -> [u8; 9] {
    let mut key = [kind; 9];
    key[1..].copy_from_slice(&first.to_be_bytes());
    key
}

fn first_of(key: &[u8]) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&key[1..9]);
    u64::from_be_bytes(first)
}

fn node_key(level: u8, index: u64) -> [u8; 10] {
    let mut key = [b'n'; 10];
    key[1] = level;
    key[2..].copy_from_slice(&index.to_be_bytes());
    key
}

/// Splits an entries chunk into its entries.
fn split_chunk(first: u64, chunk: &[u8]) -> Result<Vec<&[u8]>, AuditError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < chunk.len() {
        let corrupt = || AuditError::Corrupt(format!("entry chunk at {first} is cut short"));
        let len: [u8; 4] = chunk
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(corrupt)?;
        let len = u32::from_be_bytes(len) as usize;
        let bytes = chunk.get(at + 4..at + 4 + len).ok_or_else(corrupt)?;
        out.push(bytes);
        at += 4 + len;
    }
    Ok(out)
}

fn split_leaves(first: u64, chunk: &[u8]) -> Result<Vec<Hash>, AuditError> {
    if !chunk.len().is_multiple_of(32) {
        return Err(AuditError::Corrupt(format!(
            "leaf chunk at {first} is not a whole number of hashes"
        )));
    }
    Ok(chunk
        .chunks_exact(32)
        .map(|h| h.try_into().expect("32 bytes"))
        .collect())
}

fn checkpoint_key(size: u64) -> [u8; 9] {
    let mut key = [b'c'; 9];
    key[1..].copy_from_slice(&size.to_be_bytes());
    key
}

fn witness_key(org: &str) -> Vec<u8> {
    let mut key = b"w".to_vec();
    key.extend_from_slice(org.as_bytes());
    key
}

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
    /// sled's page cache for the log, bytes.
    pub cache_bytes: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(10),
            max_batch: 8192,
            cache_bytes: 16 * 1024 * 1024,
        }
    }
}

/// The latest state, as readers see it.
#[derive(Debug, Clone)]
struct Head {
    size: u64,
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
    tree: sled::Tree,
    db: sled::Db,
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

/// Perfect subtrees from disk: stored from a block up, recomputed below.
struct Stored<'a> {
    tree: &'a sled::Tree,
    /// The last block's leaf hashes: a proof asks for several subtrees of one block.
    block: std::cell::RefCell<Option<(u64, Vec<Hash>)>>,
}

impl<'a> Stored<'a> {
    fn new(tree: &'a sled::Tree) -> Self {
        Self {
            tree,
            block: std::cell::RefCell::new(None),
        }
    }

    /// The stored leaf hashes of block `block`, in order (fewer than 256 for the
    /// last, partial block).
    fn block_leaves(&self, block: u64) -> Result<Vec<Hash>, ProofError> {
        let storage = |e: AuditError| ProofError::Storage(e.to_string());
        let start = block * BLOCK;
        let mut leaves = Vec::with_capacity(BLOCK as usize);
        for item in self
            .tree
            .range(chunk_key(b'l', start)..chunk_key(b'l', start + BLOCK))
        {
            let (key, value) = item.map_err(|e| ProofError::Storage(e.to_string()))?;
            let first = first_of(&key);
            if first != start + leaves.len() as u64 {
                return Err(ProofError::Storage(format!(
                    "leaf hashes from {} to {first} are missing",
                    start + leaves.len() as u64
                )));
            }
            leaves.extend(split_leaves(first, &value).map_err(storage)?);
        }
        Ok(leaves)
    }
}

impl NodeSource for Stored<'_> {
    fn perfect(&self, level: u8, index: u64) -> Result<Hash, ProofError> {
        if level >= BLOCK_LEVEL {
            let value = self
                .tree
                .get(node_key(level, index))
                .map_err(|e| ProofError::Storage(e.to_string()))?
                .ok_or(ProofError::MissingNode { level, index })?;
            return value
                .as_ref()
                .try_into()
                .map_err(|_| ProofError::Storage(format!("node {level}/{index} is not 32 bytes")));
        }
        let first = index << level;
        let block = first / BLOCK;
        let mut cached = self.block.borrow_mut();
        if cached.as_ref().map(|(b, _)| *b) != Some(block) {
            *cached = Some((block, self.block_leaves(block)?));
        }
        let leaves = &cached.as_ref().expect("just filled").1;
        let offset = (first - block * BLOCK) as usize;
        let width = 1usize << level;
        let Some(slice) = leaves.get(offset..offset + width) else {
            return Err(ProofError::MissingNode { level, index });
        };
        Ok(perfect_root(slice))
    }
}

/// The root of a power-of-two run of leaf hashes.
fn perfect_root(leaves: &[Hash]) -> Hash {
    if leaves.len() == 1 {
        return leaves[0];
    }
    let half = leaves.len() / 2;
    merkle::node_hash(
        &perfect_root(&leaves[..half]),
        &perfect_root(&leaves[half..]),
    )
}

impl AuditLog {
    /// Opens (or creates) the log in `dir`, signing checkpoints with `signer`.
    /// Must be called inside a tokio runtime.
    pub fn open(dir: &Path, signer: NoteSigner, options: LogOptions) -> Result<Self, AuditError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(options.cache_bytes)
            .open()?;
        let tree = db.open_tree("audit")?;
        let size = match tree.get(SIZE_KEY)? {
            None => 0,
            Some(bytes) => u64::from_be_bytes(
                bytes
                    .as_ref()
                    .try_into()
                    .map_err(|_| AuditError::Corrupt("stored size is not 8 bytes".into()))?,
            ),
        };
        let frontier = Frontier::load(&Stored::new(&tree), size)?;
        let root = frontier.root();
        let last_kept = tree
            .scan_prefix(b"c")
            .next_back()
            .transpose()?
            .map(|(key, _)| {
                let mut size = [0u8; 8];
                size.copy_from_slice(&key[1..9]);
                u64::from_be_bytes(size)
            })
            .unwrap_or(0);
        let head = Arc::new(RwLock::new(Head {
            size,
            note: signer.sign(size, root),
        }));
        let (jobs, queue) = mpsc::channel(16 * 1024);
        let writer = Writer {
            db: db.clone(),
            tree: tree.clone(),
            head: head.clone(),
            signer: Arc::new(signer),
            frontier,
            options,
            last_kept,
            last_kept_at: Instant::now(),
            failed: None,
        };
        let origin = writer.signer.origin().to_owned();
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(queue))
            .map_err(|e| AuditError::Corrupt(format!("starting the log writer: {e}")))?;
        Ok(Self {
            tree,
            db,
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
        let block_start = index / BLOCK * BLOCK;
        let Some((key, chunk)) = self
            .tree
            .range(chunk_key(b'e', block_start)..=chunk_key(b'e', index))
            .next_back()
            .transpose()?
        else {
            return Err(AuditError::Corrupt(format!("entry {index} is missing")));
        };
        let first = first_of(&key);
        let entries = split_chunk(first, &chunk)?;
        entries
            .get((index - first) as usize)
            .map(|bytes| Some(bytes.to_vec()))
            .ok_or_else(|| AuditError::Corrupt(format!("entry {index} is missing")))
    }

    /// The leaf hash the tree holds for entry `index`.
    pub fn leaf(&self, index: u64) -> Result<Hash, AuditError> {
        Ok(Stored::new(&self.tree).perfect(0, index)?)
    }

    /// Entries from `start` on, at most `limit` and at most `max_bytes` of them
    /// (at least one), with their stored leaf hashes; only up to the current size.
    pub fn entries(
        &self,
        start: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Hash, Vec<u8>)>, AuditError> {
        let size = self.size();
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let from = start / BLOCK * BLOCK;
        'chunks: for item in self
            .tree
            .range(chunk_key(b'e', from)..chunk_key(b'e', size))
        {
            let (key, chunk) = item?;
            let first = first_of(&key);
            let leaves = self.tree.get(chunk_key(b'l', first))?.ok_or_else(|| {
                AuditError::Corrupt(format!("leaf hashes at {first} are missing"))
            })?;
            let leaves = split_leaves(first, &leaves)?;
            for (offset, entry) in split_chunk(first, &chunk)?.into_iter().enumerate() {
                let index = first + offset as u64;
                if index < start {
                    continue;
                }
                if index >= size {
                    break 'chunks;
                }
                bytes += entry.len();
                if !out.is_empty() && (out.len() >= limit || bytes > max_bytes) {
                    break 'chunks;
                }
                let leaf = *leaves.get(offset).ok_or_else(|| {
                    AuditError::Corrupt(format!("leaf hash of entry {index} is missing"))
                })?;
                out.push((index, leaf, entry.to_vec()));
            }
        }
        Ok(out)
    }

    /// The root of the first `size` entries (`size` up to the current size).
    pub fn root_at(&self, size: u64) -> Result<Hash, AuditError> {
        self.check_size(size)?;
        Ok(merkle::root(&Stored::new(&self.tree), size)?)
    }

    /// The audit path of entry `index` in the tree of `size` entries.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, AuditError> {
        self.check_size(size)?;
        Ok(merkle::inclusion_proof(
            &Stored::new(&self.tree),
            index,
            size,
        )?)
    }

    /// The proof that the log at `old_size` is a prefix of the log at `new_size`.
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, AuditError> {
        self.check_size(new_size)?;
        Ok(merkle::consistency_proof(
            &Stored::new(&self.tree),
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
        self.tree
            .scan_prefix(b"c")
            .values()
            .map(|v| {
                let v = v?;
                String::from_utf8(v.to_vec())
                    .map_err(|_| AuditError::Corrupt("stored checkpoint is not UTF-8".into()))
            })
            .collect()
    }

    /// What this node last saw of `org`'s log.
    pub fn witnessed(&self, org: &str) -> Result<Option<WitnessState>, AuditError> {
        match self.tree.get(witness_key(org))? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| AuditError::Corrupt(format!("witness state of {org}: {e}"))),
        }
    }

    /// Every peer's witness state.
    pub fn witnessed_all(&self) -> Result<Vec<(String, WitnessState)>, AuditError> {
        self.tree
            .scan_prefix(b"w")
            .map(|item| {
                let (key, value) = item?;
                let org = String::from_utf8_lossy(&key[1..]).into_owned();
                let state = serde_json::from_slice(&value)
                    .map_err(|e| AuditError::Corrupt(format!("witness state of {org}: {e}")))?;
                Ok((org, state))
            })
            .collect()
    }

    /// Records what this node now holds of `org`'s log, on disk before returning.
    pub async fn record_witness(&self, org: &str, state: &WitnessState) -> Result<(), AuditError> {
        let bytes = serde_json::to_vec(state)
            .map_err(|e| AuditError::Corrupt(format!("witness state: {e}")))?;
        self.tree.insert(witness_key(org), bytes)?;
        self.db.flush_async().await?;
        Ok(())
    }

    /// Forgets what this node held of `org`'s log (an operator cleared an alarm).
    pub async fn forget_witness(&self, org: &str) -> Result<(), AuditError> {
        self.tree.remove(witness_key(org))?;
        self.db.flush_async().await?;
        Ok(())
    }

    /// Bytes the log takes on disk.
    pub fn size_on_disk(&self) -> Result<u64, AuditError> {
        Ok(self.db.size_on_disk()?)
    }

    /// Flushes everything to disk.
    pub async fn flush(&self) -> Result<(), AuditError> {
        self.db.flush_async().await?;
        Ok(())
    }
}

/// The entries of one group commit within one block, being encoded.
struct Chunk {
    first: u64,
    entries: Vec<u8>,
    leaves: Vec<u8>,
}

impl Chunk {
    fn starting_at(first: u64) -> Self {
        Self {
            first,
            entries: Vec::new(),
            leaves: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    fn push(&mut self, entry: &[u8], leaf: &Hash) {
        self.entries
            .extend_from_slice(&(entry.len() as u32).to_be_bytes());
        self.entries.extend_from_slice(entry);
        self.leaves.extend_from_slice(leaf);
    }

    fn write(&mut self, batch: &mut sled::Batch) {
        if self.is_empty() {
            return;
        }
        batch.insert(
            &chunk_key(b'e', self.first),
            std::mem::take(&mut self.entries),
        );
        batch.insert(
            &chunk_key(b'l', self.first),
            std::mem::take(&mut self.leaves),
        );
    }
}

struct Writer {
    db: sled::Db,
    tree: sled::Tree,
    head: Arc<RwLock<Head>>,
    signer: Arc<NoteSigner>,
    frontier: Frontier,
    options: LogOptions,
    last_kept: u64,
    last_kept_at: Instant,
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
                // more: every commit costs the same thread wake-ups and flush
                // whatever it carries. Alone, an entry is committed at once.
                if lingered
                    || last_batch < LINGER_AFTER_BATCH
                    || entries.len() >= self.options.max_batch
                    || closed.is_some()
                {
                    break;
                }
                lingered = true;
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
        let _ = self.db.flush();
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
        if !self.due(size) {
            return;
        }
        let kept = self
            .tree
            .insert(checkpoint_key(size), note.as_bytes())
            .and_then(|_| self.db.flush());
        match kept {
            Ok(_) => {
                self.last_kept = size;
                self.last_kept_at = Instant::now();
            }
            Err(e) => tracing::error!(error = %e, "keeping an audit checkpoint failed"),
        }
    }

    fn commit(&mut self, entries: Vec<Pending>) {
        if let Some(reason) = &self.failed {
            for (_, reply) in entries {
                if let Some(reply) = reply {
                    let _ = reply.send(Err(AuditError::Corrupt(reason.clone())));
                }
            }
            return;
        }
        let mut batch = sled::Batch::default();
        let mut waiters: Vec<Waiter> = Vec::new();
        let mut chunk = Chunk::starting_at(self.frontier.size());
        for (entry, reply) in entries {
            let index = self.frontier.size();
            if index.is_multiple_of(BLOCK) && !chunk.is_empty() {
                chunk.write(&mut batch);
                chunk = Chunk::starting_at(index);
            }
            let leaf = merkle::leaf_hash(&entry);
            chunk.push(&entry, &leaf);
            self.frontier.push(leaf, |level, at, hash| {
                if level >= BLOCK_LEVEL {
                    batch.insert(&node_key(level, at), &hash[..]);
                }
            });
            if let Some(reply) = reply {
                waiters.push((index, leaf, reply));
            }
        }
        chunk.write(&mut batch);
        let size = self.frontier.size();
        let root = self.frontier.root();
        let note = self.signer.sign(size, root);
        let keep = self.due(size);
        if keep {
            batch.insert(&checkpoint_key(size), note.as_bytes());
        }
        batch.insert(SIZE_KEY, &size.to_be_bytes());
        let written = self
            .tree
            .apply_batch(batch)
            .and_then(|()| self.db.flush().map(|_| ()));
        if let Err(e) = written {
            // Nothing of this batch was acknowledged; callers hear why.
            tracing::error!(error = %e, "audit log append failed; refusing further appends");
            self.failed = Some(format!("an earlier append failed: {e}"));
            for (_, _, reply) in waiters {
                let _ = reply.send(Err(AuditError::Sled(e.clone())));
            }
            return;
        }
        if keep {
            self.last_kept = size;
            self.last_kept_at = Instant::now();
        }
        *self.head.write().expect("log head lock") = Head {
            size,
            note: note.clone(),
        };
        for (index, leaf_hash, reply) in waiters {
            let _ = reply.send(Ok(Receipt {
                index,
                leaf_hash,
                checkpoint: note.clone(),
            }));
        }
    }
}
