//! The log on disk: append-only files, not a database, so the memory a node
//! holds for its log does not grow with the log.
//!
//! - `entries` is the record of truth. Each record is `length u32 ‖ leaf hash ‖
//!   header check (4 bytes) ‖ entry bytes`; a commit is one write and one
//!   `fdatasync` of this file, before any caller hears of it. The leaf hash is
//!   the one the tree holds, so an entry changed afterwards no longer matches it
//!   and `audit verify` names it.
//! - `leaves` (32 bytes an entry), `offsets` (u64, where each record starts) and
//!   `level-NN` (hashes of the perfect subtrees of level NN ≥ 8, in order) are
//!   derived from `entries`. They are written with every commit and made durable
//!   by [`LogFiles::seal`], which then records in `sealed` how far they are.
//! - `checkpoints` holds the signed notes kept for auditors (`length u32 ‖ note`).
//! - `witness/` holds one file per peer: what this node last saw of its log.
//! - `lock` is held while the log is open.
//!
//! `entries` grows by whole megabytes of zeros ahead of the records, so that a
//! commit's `fdatasync` writes data, not the file's new length.
//!
//! On open, whatever lies past the sealed point is rebuilt from `entries`. A
//! torn tail (records at the very end whose bytes do not hash to their leaf, or
//! a record cut short) was never acknowledged and is zeroed. A record that does
//! not match its leaf with good records after it is tampering or a bad disk: it
//! is kept, reported, and `audit verify` names it.
//!
//! Integers are big-endian.

use crate::export::MAX_ENTRY_BYTES;
use crate::merkle::{self, Hash, NodeSource, ProofError};
use crate::witness::WitnessState;
use crate::AuditError;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

/// Level of the smallest stored perfect subtree: a block of 2^8 leaves.
const BLOCK_LEVEL: u8 = 8;
const BLOCK: u64 = 1 << BLOCK_LEVEL;

const HASH: u64 = 32;
const OFFSET: u64 = 8;
/// Length, leaf hash and header check.
pub(crate) const HEADER: usize = 4 + 32 + 4;

/// Entries rebuilt between writes of derived data on open (small in tests, so
/// that they cross runs).
const REBUILD_RUN: usize = if cfg!(test) { 100 } else { 65_536 };

const SEALED_MAGIC: &str = "lagesbild-audit-sealed 1";

fn io_error(what: &str, path: &Path, e: io::Error) -> AuditError {
    AuditError::Io(format!("{what} {}: {e}", path.display()))
}

/// The first four bytes of SHA-256(length ‖ leaf): tells a written header from
/// whatever a crash left at the end of the file.
fn header_check(len: u32, leaf: &Hash) -> [u8; 4] {
    let mut bytes = [0u8; 36];
    bytes[..4].copy_from_slice(&len.to_be_bytes());
    bytes[4..].copy_from_slice(leaf);
    let digest = merkle::sha256(&bytes);
    [digest[0], digest[1], digest[2], digest[3]]
}

/// Appends the record of `entry` with its leaf hash `leaf` to `out`.
pub(crate) fn encode_record(out: &mut Vec<u8>, entry: &[u8], leaf: &Hash) {
    let len = entry.len() as u32;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(leaf);
    out.extend_from_slice(&header_check(len, leaf));
    out.extend_from_slice(entry);
}

/// Where the derived files are known durable: the first `size` entries, whose
/// records end at byte `entries_end`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Sealed {
    size: u64,
    entries_end: u64,
}

impl Sealed {
    fn encode(&self) -> String {
        let body = format!("{SEALED_MAGIC}\n{} {}\n", self.size, self.entries_end);
        let check = merkle::sha256(body.as_bytes());
        format!("{body}{}\n", hex(&check[..8]))
    }

    /// `None` for anything but a whole, well-formed record.
    fn decode(text: &str) -> Option<Self> {
        let (body, check) = text.trim_end_matches('\n').rsplit_once('\n')?;
        let body = format!("{body}\n");
        if hex(&merkle::sha256(body.as_bytes())[..8]) != check {
            return None;
        }
        let mut lines = body.lines();
        if lines.next()? != SEALED_MAGIC {
            return None;
        }
        let (size, end) = lines.next()?.split_once(' ')?;
        Some(Self {
            size: size.parse().ok()?,
            entries_end: end.parse().ok()?,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// What opening found and did, for the node's log.
#[derive(Debug)]
pub(crate) struct Recovery {
    /// The tree's right edge.
    pub(crate) frontier: merkle::Frontier,
    /// Where the next record goes.
    pub(crate) entries_end: u64,
    /// Length of `entries`, zeros past `entries_end` included.
    pub(crate) allocated: u64,
    /// Bytes of a torn tail cut off (zeroed).
    pub(crate) cut_bytes: u64,
    /// Entries whose bytes do not match their stored leaf hash (seen while
    /// rebuilding past the sealed point only).
    pub(crate) mismatched: Vec<u64>,
    /// The size the derived files were rebuilt from.
    pub(crate) rebuilt_from: u64,
}

/// The open files of one log. Readers and the one writer share it: reads and
/// writes are positioned, so no cursor is shared.
#[derive(Debug)]
pub(crate) struct LogFiles {
    dir: PathBuf,
    entries: File,
    leaves: File,
    offsets: File,
    checkpoints: File,
    /// `level-NN` files, index NN − 8, opened as the tree reaches them.
    levels: RwLock<Vec<File>>,
    _lock: File,
}

fn open_rw(path: &Path) -> Result<File, AuditError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| io_error("opening", path, e))
}

fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("syncing folder", dir, e))
}

fn file_len(file: &File, path: &Path) -> Result<u64, AuditError> {
    Ok(file
        .metadata()
        .map_err(|e| io_error("reading size of", path, e))?
        .len())
}

fn read_exact_at(file: &File, buf: &mut [u8], at: u64, what: &str) -> Result<(), AuditError> {
    file.read_exact_at(buf, at)
        .map_err(|e| AuditError::Corrupt(format!("{what} at byte {at}: {e}")))
}

/// Items `first..first + count` of a file of `N`-byte items, decoded.
fn read_items<const N: usize, T>(
    file: &File,
    first: u64,
    count: u64,
    what: &str,
    decode: impl Fn([u8; N]) -> T,
) -> Result<Vec<T>, AuditError> {
    let mut bytes = vec![0u8; count as usize * N];
    read_exact_at(file, &mut bytes, first * N as u64, what)?;
    Ok(bytes
        .chunks_exact(N)
        .map(|item| decode(item.try_into().expect("N bytes")))
        .collect())
}

/// A record's header: the entry's length, its leaf hash, the header check.
fn split_header(header: &[u8; HEADER]) -> (u32, Hash, &[u8]) {
    let len = u32::from_be_bytes(header[..4].try_into().expect("4 bytes"));
    let leaf = header[4..36].try_into().expect("32 bytes");
    (len, leaf, &header[36..])
}

fn write_all_at(file: &File, bytes: &[u8], at: u64, path: &Path) -> Result<(), AuditError> {
    file.write_all_at(bytes, at)
        .map_err(|e| io_error("writing", path, e))
}

impl LogFiles {
    /// Opens (or creates) the log in `dir`, brings the derived files up to the
    /// entries and cuts a torn tail.
    pub(crate) fn open(dir: &Path) -> Result<(Self, Recovery), AuditError> {
        fs::create_dir_all(dir.join("witness")).map_err(|e| io_error("creating", dir, e))?;
        if !dir.join("entries").exists() && (dir.join("conf").exists() || dir.join("db").exists()) {
            return Err(AuditError::Corrupt(format!(
                "{} holds a log in the earlier sled format; export it with the version that wrote it",
                dir.display()
            )));
        }
        let lock = open_rw(&dir.join("lock"))?;
        lock.try_lock().map_err(|e| {
            AuditError::Io(format!(
                "the log in {} is open in another process: {e}",
                dir.display()
            ))
        })?;
        let created = !dir.join("entries").exists();
        let files = Self {
            entries: open_rw(&dir.join("entries"))?,
            leaves: open_rw(&dir.join("leaves"))?,
            offsets: open_rw(&dir.join("offsets"))?,
            checkpoints: open_rw(&dir.join("checkpoints"))?,
            levels: RwLock::new(Vec::new()),
            dir: dir.to_owned(),
            _lock: lock,
        };
        if created {
            sync_dir(dir)?;
        }
        let mut levels = Vec::new();
        for level in BLOCK_LEVEL..64 {
            let path = files.level_path(level);
            if !path.exists() {
                break;
            }
            levels.push(open_rw(&path)?);
        }
        *files.levels.write().expect("levels lock") = levels;
        files.trim_checkpoints()?;
        let recovery = files.recover()?;
        Ok((files, recovery))
    }

    fn level_path(&self, level: u8) -> PathBuf {
        self.dir.join(format!("level-{level:02}"))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The sealed point, if it is whole and the files still reach it.
    fn sealed(&self) -> Result<Sealed, AuditError> {
        let Ok(text) = fs::read_to_string(self.path("sealed")) else {
            return Ok(Sealed::default());
        };
        let Some(sealed) = Sealed::decode(&text) else {
            tracing::warn!("the audit log's sealed point is unreadable; rebuilding from the start");
            return Ok(Sealed::default());
        };
        let reaches = file_len(&self.entries, &self.path("entries"))? >= sealed.entries_end
            && file_len(&self.leaves, &self.path("leaves"))? >= sealed.size * HASH
            && file_len(&self.offsets, &self.path("offsets"))? >= sealed.size * OFFSET;
        let levels = self.levels.read().expect("levels lock");
        let levels_reach = (BLOCK_LEVEL..64).all(|level| {
            let needed = (sealed.size >> level) * HASH;
            needed == 0
                || levels
                    .get(usize::from(level - BLOCK_LEVEL))
                    .and_then(|f| f.metadata().ok())
                    .is_some_and(|m| m.len() >= needed)
        });
        if reaches && levels_reach {
            Ok(sealed)
        } else {
            tracing::warn!(
                sealed = sealed.size,
                "the audit log's files are shorter than its sealed point; rebuilding from the start"
            );
            Ok(Sealed::default())
        }
    }

    /// Rebuilds the derived files past the sealed point from `entries`.
    fn recover(&self) -> Result<Recovery, AuditError> {
        let sealed = self.sealed()?;
        let entries_path = self.path("entries");
        let entries_len = file_len(&self.entries, &entries_path)?;
        // The derived files: cut back to the sealed point, then rebuilt from
        // the records past it, a run at a time so memory stays bounded.
        self.cut_derived(sealed.size)?;
        let mut frontier = merkle::Frontier::load(&Source::new(self, sealed.size), sealed.size)?;
        let mut derived = Derived::default();
        let mut derived_from = sealed.size;
        let mut mismatched = Vec::new();
        // Records that do not match their leaf and have no good record after
        // them yet: a torn tail, unless a good one follows.
        let mut unmatched: Vec<(u64, Hash)> = Vec::new();
        let mut end = sealed.entries_end;
        let mut reader = io::BufReader::with_capacity(1 << 20, &self.entries);
        io::Seek::seek(&mut reader, io::SeekFrom::Start(sealed.entries_end))
            .map_err(|e| io_error("reading", &entries_path, e))?;
        let mut at = sealed.entries_end;
        let mut entry = Vec::new();
        loop {
            let mut header = [0u8; HEADER];
            if entries_len - at < HEADER as u64 || reader.read_exact(&mut header).is_err() {
                break;
            }
            let (len, leaf, check) = split_header(&header);
            if check != header_check(len, &leaf)
                || len as usize > MAX_ENTRY_BYTES
                || entries_len - at - (HEADER as u64) < u64::from(len)
            {
                break;
            }
            entry.resize(len as usize, 0);
            if reader.read_exact(&mut entry).is_err() {
                break;
            }
            if merkle::leaf_hash(&entry) == leaf {
                for (at, leaf) in unmatched.drain(..) {
                    mismatched.push(frontier.size());
                    derived.push(&mut frontier, at, &leaf);
                }
                derived.push(&mut frontier, at, &leaf);
                end = at + HEADER as u64 + u64::from(len);
            } else {
                unmatched.push((at, leaf));
            }
            at += HEADER as u64 + u64::from(len);
            if derived.len() >= REBUILD_RUN {
                self.write_derived(derived_from, &derived)?;
                derived_from = frontier.size();
                derived = Derived::default();
            }
        }
        self.write_derived(derived_from, &derived)?;
        // Past the last whole record the file is zeros written ahead of need
        // (see `preallocate`), unless a crash left part of a record there.
        let cut_bytes = self.torn_bytes(end, entries_len)?;
        if cut_bytes > 0 {
            self.preallocate(end, entries_len - end)?;
            self.entries
                .sync_data()
                .map_err(|e| io_error("syncing", &entries_path, e))?;
        }
        Ok(Recovery {
            frontier,
            entries_end: end,
            allocated: entries_len,
            cut_bytes,
            mismatched,
            rebuilt_from: sealed.size,
        })
    }

    /// Bytes in `entries` between `from` and `to` that are not zero.
    fn torn_bytes(&self, from: u64, to: u64) -> Result<u64, AuditError> {
        let mut buf = vec![0u8; 1 << 20];
        let mut at = from;
        let mut last_non_zero = None;
        while at < to {
            let n = buf.len().min((to - at) as usize);
            read_exact_at(&self.entries, &mut buf[..n], at, "the end of the entries")?;
            if let Some(i) = buf[..n].iter().rposition(|b| *b != 0) {
                last_non_zero = Some(at + i as u64);
            }
            at += n as u64;
        }
        Ok(last_non_zero.map_or(0, |last| last + 1 - from))
    }

    /// Writes `bytes` zeros into `entries` from `from`. A commit then writes
    /// into blocks the file already has, so its `fdatasync` need not also
    /// commit the file's growth to the file system's journal.
    pub(crate) fn preallocate(&self, from: u64, bytes: u64) -> Result<(), AuditError> {
        let zeros = vec![0u8; (1 << 20).min(bytes as usize)];
        let mut at = from;
        while at < from + bytes {
            let n = zeros.len().min((from + bytes - at) as usize);
            write_all_at(&self.entries, &zeros[..n], at, &self.path("entries"))?;
            at += n as u64;
        }
        Ok(())
    }

    fn cut_derived(&self, size: u64) -> Result<(), AuditError> {
        let cut = |file: &File, name: &str, len: u64| {
            file.set_len(len)
                .map_err(|e| io_error("cutting", &self.path(name), e))
        };
        cut(&self.leaves, "leaves", size * HASH)?;
        cut(&self.offsets, "offsets", size * OFFSET)?;
        let levels = self.levels.read().expect("levels lock");
        for (i, file) in levels.iter().enumerate() {
            let level = BLOCK_LEVEL + i as u8;
            cut(file, &format!("level-{level:02}"), (size >> level) * HASH)?;
        }
        Ok(())
    }

    /// Keeps only whole records in `checkpoints`.
    fn trim_checkpoints(&self) -> Result<(), AuditError> {
        let path = self.path("checkpoints");
        let len = file_len(&self.checkpoints, &path)?;
        let mut at = 0u64;
        while len - at >= 4 {
            let mut size = [0u8; 4];
            read_exact_at(&self.checkpoints, &mut size, at, "kept checkpoint")?;
            let size = u64::from(u32::from_be_bytes(size));
            // Short, or zeros a crash left where a record was being written.
            if size == 0 || len - at - 4 < size {
                break;
            }
            at += 4 + size;
        }
        if at < len {
            self.checkpoints
                .set_len(at)
                .map_err(|e| io_error("cutting", &path, e))?;
        }
        Ok(())
    }

    /// Appends a commit's records (starting at byte `entries_end`) and makes
    /// them durable.
    pub(crate) fn append_entries(
        &self,
        entries_end: u64,
        records: &[u8],
    ) -> Result<(), AuditError> {
        let path = self.path("entries");
        write_all_at(&self.entries, records, entries_end, &path)?;
        self.entries
            .sync_data()
            .map_err(|e| io_error("syncing", &path, e))
    }

    /// Writes the derived data of entries from `first` on (not yet durable).
    pub(crate) fn write_derived(&self, first: u64, derived: &Derived) -> Result<(), AuditError> {
        write_all_at(
            &self.leaves,
            &derived.leaves,
            first * HASH,
            &self.path("leaves"),
        )?;
        write_all_at(
            &self.offsets,
            &derived.offsets,
            first * OFFSET,
            &self.path("offsets"),
        )?;
        for (level, index, hash) in &derived.nodes {
            self.write_node(*level, *index, hash)?;
        }
        Ok(())
    }

    fn write_node(&self, level: u8, index: u64, hash: &Hash) -> Result<(), AuditError> {
        let slot = usize::from(level - BLOCK_LEVEL);
        if self.levels.read().expect("levels lock").len() <= slot {
            let mut levels = self.levels.write().expect("levels lock");
            while levels.len() <= slot {
                let path = self.level_path(BLOCK_LEVEL + levels.len() as u8);
                levels.push(open_rw(&path)?);
                sync_dir(&self.dir)?;
            }
        }
        let levels = self.levels.read().expect("levels lock");
        write_all_at(&levels[slot], hash, index * HASH, &self.level_path(level))
    }

    /// Adds a kept checkpoint (durable at the next seal).
    pub(crate) fn keep_checkpoint(&self, note: &str) -> Result<(), AuditError> {
        let path = self.path("checkpoints");
        let end = file_len(&self.checkpoints, &path)?;
        let mut record = (note.len() as u32).to_be_bytes().to_vec();
        record.extend_from_slice(note.as_bytes());
        write_all_at(&self.checkpoints, &record, end, &path)
    }

    /// Makes the derived files and kept checkpoints durable up to `size`
    /// entries, whose records end at `entries_end`, and records that.
    pub(crate) fn seal(&self, size: u64, entries_end: u64) -> Result<(), AuditError> {
        let sync = |file: &File, name: &str| {
            file.sync_data()
                .map_err(|e| io_error("syncing", &self.path(name), e))
        };
        sync(&self.leaves, "leaves")?;
        sync(&self.offsets, "offsets")?;
        sync(&self.checkpoints, "checkpoints")?;
        for file in self.levels.read().expect("levels lock").iter() {
            sync(file, "a level file")?;
        }
        let sealed = Sealed { size, entries_end };
        write_atomically(&self.dir, "sealed", sealed.encode().as_bytes())
    }

    /// The stored bytes of entry `index` (below the log's size).
    pub(crate) fn entry(&self, index: u64) -> Result<Vec<u8>, AuditError> {
        let mut at = [0u8; 8];
        read_exact_at(&self.offsets, &mut at, index * OFFSET, "entry offset")?;
        let at = u64::from_be_bytes(at);
        let mut header = [0u8; HEADER];
        read_exact_at(&self.entries, &mut header, at, "entry header")?;
        let len = split_header(&header).0 as usize;
        if len > MAX_ENTRY_BYTES {
            return Err(AuditError::Corrupt(format!(
                "entry {index} claims {len} bytes"
            )));
        }
        let mut bytes = vec![0u8; len];
        read_exact_at(&self.entries, &mut bytes, at + HEADER as u64, "entry")?;
        Ok(bytes)
    }

    /// Where the records of entries `first..first + count` start.
    pub(crate) fn offsets(&self, first: u64, count: u64) -> Result<Vec<u64>, AuditError> {
        read_items(
            &self.offsets,
            first,
            count,
            "entry offsets",
            u64::from_be_bytes,
        )
    }

    /// The whole records in the `bytes` bytes of `entries` from `at`: each
    /// entry's stored leaf hash and bytes.
    pub(crate) fn records(&self, at: u64, bytes: u64) -> Result<Vec<(Hash, Vec<u8>)>, AuditError> {
        let mut span = vec![0u8; bytes as usize];
        read_exact_at(&self.entries, &mut span, at, "entries")?;
        let mut out = Vec::new();
        let mut rest = &span[..];
        while !rest.is_empty() {
            let corrupt = || AuditError::Corrupt(format!("a record near byte {at} is cut short"));
            let header: &[u8; HEADER] = rest
                .get(..HEADER)
                .and_then(|h| h.try_into().ok())
                .ok_or_else(corrupt)?;
            let (len, leaf, _) = split_header(header);
            let len = len as usize;
            let entry = rest.get(HEADER..HEADER + len).ok_or_else(corrupt)?;
            out.push((leaf, entry.to_vec()));
            rest = &rest[HEADER + len..];
        }
        Ok(out)
    }

    /// The stored leaf hashes of entries `first..first + count`.
    pub(crate) fn leaves(&self, first: u64, count: u64) -> Result<Vec<Hash>, AuditError> {
        read_items(&self.leaves, first, count, "leaf hashes", |hash| hash)
    }

    fn node(&self, level: u8, index: u64) -> Result<Hash, ProofError> {
        let levels = self.levels.read().expect("levels lock");
        let file = levels
            .get(usize::from(level - BLOCK_LEVEL))
            .ok_or(ProofError::MissingNode { level, index })?;
        let mut hash = [0u8; 32];
        file.read_exact_at(&mut hash, index * HASH)
            .map_err(|_| ProofError::MissingNode { level, index })?;
        Ok(hash)
    }

    /// The kept checkpoints, oldest first.
    pub(crate) fn checkpoints(&self) -> Result<Vec<String>, AuditError> {
        let len = file_len(&self.checkpoints, &self.path("checkpoints"))?;
        let mut all = vec![0u8; len as usize];
        read_exact_at(&self.checkpoints, &mut all, 0, "kept checkpoints")?;
        let mut out = Vec::new();
        let mut at = 0usize;
        while all.len() - at >= 4 {
            let len = u32::from_be_bytes(all[at..at + 4].try_into().expect("4 bytes")) as usize;
            // A record still being written is left for the next read.
            let Some(note) = all.get(at + 4..at + 4 + len).filter(|_| len > 0) else {
                break;
            };
            out.push(
                String::from_utf8(note.to_vec())
                    .map_err(|_| AuditError::Corrupt("a kept checkpoint is not UTF-8".into()))?,
            );
            at += 4 + len;
        }
        Ok(out)
    }

    fn witness_path(&self, org: &str) -> PathBuf {
        self.dir.join("witness").join(hex(org.as_bytes()))
    }

    /// What this node last saw of `org`'s log.
    pub(crate) fn witnessed(&self, org: &str) -> Result<Option<WitnessState>, AuditError> {
        match fs::read(self.witness_path(org)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("reading", &self.witness_path(org), e)),
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| AuditError::Corrupt(format!("witness state of {org}: {e}"))),
        }
    }

    /// Every peer's witness state, by org.
    pub(crate) fn witnessed_all(&self) -> Result<Vec<(String, WitnessState)>, AuditError> {
        let dir = self.dir.join("witness");
        let mut out = Vec::new();
        for item in fs::read_dir(&dir).map_err(|e| io_error("listing", &dir, e))? {
            let item = item.map_err(|e| io_error("listing", &dir, e))?;
            let name = item.file_name();
            let Some(org) = name
                .to_str()
                .and_then(unhex)
                .and_then(|b| String::from_utf8(b).ok())
            else {
                continue; // a temporary file of a write in progress
            };
            if let Some(state) = self.witnessed(&org)? {
                out.push((org, state));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Records what this node now holds of `org`'s log, durably.
    pub(crate) fn record_witness(&self, org: &str, state: &WitnessState) -> Result<(), AuditError> {
        let bytes = serde_json::to_vec(state)
            .map_err(|e| AuditError::Corrupt(format!("witness state: {e}")))?;
        write_atomically(&self.dir.join("witness"), &hex(org.as_bytes()), &bytes)
    }

    /// Forgets `org`'s witness state, durably.
    pub(crate) fn forget_witness(&self, org: &str) -> Result<(), AuditError> {
        let path = self.witness_path(org);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io_error("removing", &path, e))
            }
            _ => {}
        }
        sync_dir(&self.dir.join("witness"))
    }

    /// Bytes the log's files take.
    pub(crate) fn size_on_disk(&self) -> Result<u64, AuditError> {
        let mut total = 0;
        for dir in [self.dir.clone(), self.dir.join("witness")] {
            for item in fs::read_dir(&dir).map_err(|e| io_error("listing", &dir, e))? {
                let meta = item
                    .and_then(|i| i.metadata())
                    .map_err(|e| io_error("listing", &dir, e))?;
                if meta.is_file() {
                    total += meta.len();
                }
            }
        }
        Ok(total)
    }
}

/// Writes `name` in `dir` whole or not at all, durably.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), AuditError> {
    let temporary = dir.join(format!(".{name}.new"));
    let path = dir.join(name);
    let written = File::create(&temporary)
        .and_then(|mut f| {
            io::Write::write_all(&mut f, bytes)?;
            f.sync_all()
        })
        .and_then(|()| fs::rename(&temporary, &path));
    written.map_err(|e| io_error("writing", &path, e))?;
    sync_dir(dir)
}

/// Derived data of a run of new entries, gathered before it is written.
#[derive(Debug, Default)]
pub(crate) struct Derived {
    leaves: Vec<u8>,
    offsets: Vec<u8>,
    nodes: Vec<(u8, u64, Hash)>,
}

impl Derived {
    fn len(&self) -> usize {
        self.offsets.len() / OFFSET as usize
    }

    /// Adds the entry whose record starts at `at` with leaf hash `leaf`.
    pub(crate) fn push(&mut self, frontier: &mut merkle::Frontier, at: u64, leaf: &Hash) {
        self.leaves.extend_from_slice(leaf);
        self.offsets.extend_from_slice(&at.to_be_bytes());
        frontier.push(*leaf, |level, index, hash| {
            if level >= BLOCK_LEVEL {
                self.nodes.push((level, index, *hash));
            }
        });
    }
}

/// Perfect subtrees from the files: stored from a block up, recomputed below
/// from the block's leaf hashes. Only the first `size` entries are read.
pub(crate) struct Source<'a> {
    files: &'a LogFiles,
    size: u64,
    /// The last block's leaf hashes: a proof asks for several subtrees of one block.
    block: std::cell::RefCell<Option<(u64, Vec<Hash>)>>,
}

impl<'a> Source<'a> {
    pub(crate) fn new(files: &'a LogFiles, size: u64) -> Self {
        Self {
            files,
            size,
            block: std::cell::RefCell::new(None),
        }
    }
}

impl NodeSource for Source<'_> {
    fn perfect(&self, level: u8, index: u64) -> Result<Hash, ProofError> {
        let first = index << level;
        let width = 1u64 << level;
        if first + width > self.size {
            return Err(ProofError::MissingNode { level, index });
        }
        if level >= BLOCK_LEVEL {
            return self.files.node(level, index);
        }
        let block = first / BLOCK;
        let mut cached = self.block.borrow_mut();
        if cached.as_ref().map(|(b, _)| *b) != Some(block) {
            let start = block * BLOCK;
            let count = BLOCK.min(self.size - start);
            let leaves = self
                .files
                .leaves(start, count)
                .map_err(|e| ProofError::Storage(e.to_string()))?;
            *cached = Some((block, leaves));
        }
        let leaves = &cached.as_ref().expect("just filled").1;
        let offset = (first - block * BLOCK) as usize;
        let Some(slice) = leaves.get(offset..offset + width as usize) else {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_point_round_trips_and_rejects_damage() {
        let sealed = Sealed {
            size: 1234,
            entries_end: 987_654,
        };
        let text = sealed.encode();
        assert_eq!(Sealed::decode(&text), Some(sealed));
        assert_eq!(Sealed::decode(&text.replace("1234", "1235")), None);
        assert_eq!(Sealed::decode(&text[..text.len() - 3]), None);
        assert_eq!(Sealed::decode(""), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rebuild_across_many_runs_gives_the_same_tree() {
        use crate::{AuditLog, Decision, Direction, Entry, LogOptions, NoteSigner};
        let entry = |i: u64| Entry {
            time_micros: i as i64,
            direction: Direction::Inbound,
            peer_org: "scandic".into(),
            peer_fingerprint: String::new(),
            token: Default::default(),
            call: format!("/call/{i}"),
            request_digest: None,
            decision: Decision::Allowed,
            code: 0,
            reason: String::new(),
            released: Default::default(),
            response_digest: None,
            receipt: None,
            refused_connection: None,
        };
        const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIOHaWrMWwg6ezaUR/h7TLOIoXIlX+NbUeqLV+Q+SVKPu\n-----END PRIVATE KEY-----\n";
        let signer = || NoteSigner::from_pem("testfed/scandic/audit", KEY.as_bytes()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), signer(), LogOptions::default()).unwrap();
        for i in 0..1000u64 {
            log.append(&entry(i)).await.unwrap();
        }
        let root = log.root_at(1000).unwrap();
        let proof = log.inclusion_proof(333, 1000).unwrap();
        log.close().await;
        for name in ["sealed", "leaves", "offsets", "level-08", "level-09"] {
            std::fs::remove_file(dir.path().join(name)).unwrap();
        }
        let log = AuditLog::open(dir.path(), signer(), LogOptions::default()).unwrap();
        assert_eq!(log.size(), 1000);
        assert_eq!(log.root_at(1000).unwrap(), root);
        assert_eq!(log.inclusion_proof(333, 1000).unwrap(), proof);
        assert_eq!(log.entry(999).unwrap().unwrap(), entry(999).encode());
        log.close().await;
    }

    #[test]
    fn org_names_round_trip_through_file_names() {
        for org in ["polisen", "stockholm-stad", "a/../b", "åäö"] {
            assert_eq!(unhex(&hex(org.as_bytes())).unwrap(), org.as_bytes());
        }
        assert_eq!(unhex(".6162.new"), None);
    }
}
