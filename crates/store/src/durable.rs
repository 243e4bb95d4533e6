//! sled, made durable in the full sense.
//!
//! sled 0.34 ends a flush on Linux with `sync_file_range`, which writes the
//! pages out but neither flushes the drive's cache nor the file's metadata: a
//! power cut could lose a write sled called flushed. After each flush the
//! database file is `fdatasync`ed through a handle of our own (the same file,
//! so the same pages), and only then is anything acknowledged.

use crate::StoreError;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

/// A sled database whose flushes are durable. Derefs to [`sled::Db`] for
/// everything else.
#[derive(Clone)]
pub(crate) struct DurableDb {
    db: sled::Db,
    file: Arc<File>,
}

impl DurableDb {
    /// Opens the database in `dir` with a page cache of `cache_bytes`.
    pub(crate) fn open(dir: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .open()?;
        let path = dir.join("db");
        let file = File::open(&path)
            .map_err(|e| StoreError::Commit(format!("opening {}: {e}", path.display())))?;
        Ok(Self {
            db,
            file: Arc::new(file),
        })
    }

    /// Writes everything to disk, durably.
    #[allow(clippy::disallowed_methods, reason = "the store's one flush")]
    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        self.file
            .sync_data()
            .map_err(|e| StoreError::Commit(format!("syncing the store: {e}")))
    }
}

impl std::ops::Deref for DurableDb {
    type Target = sled::Db;

    fn deref(&self) -> &sled::Db {
        &self.db
    }
}
