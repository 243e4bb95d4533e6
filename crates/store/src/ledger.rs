//! Running totals that must never go back (privacy budgets).
//!
//! On disk in the `ledger` tree (account name → total as u64be), mirrored in
//! memory so that reading a total never touches sled. Only the writer thread
//! changes them, inside its group commit: a spend is decided against the
//! totals in memory plus the spends earlier in the same group, written with the
//! group, flushed with it, and only then installed in memory and answered.

use crate::StoreError;
use std::collections::HashMap;
use std::sync::Mutex;

/// The totals of every account.
#[derive(Debug)]
pub(crate) struct Ledger {
    pub(crate) tree: sled::Tree,
    totals: Mutex<HashMap<Vec<u8>, u64>>,
}

impl Ledger {
    /// Loads every account of `tree`.
    pub(crate) fn open(tree: sled::Tree) -> Result<Self, StoreError> {
        let mut totals = HashMap::new();
        for entry in tree.iter() {
            let (key, value) = entry?;
            totals.insert(key.to_vec(), decode_total(&key, &value)?);
        }
        Ok(Self {
            tree,
            totals: Mutex::new(totals),
        })
    }

    /// The total of `account` as last committed (0 if none).
    pub(crate) fn total(&self, account: &[u8]) -> u64 {
        self.lock().get(account).copied().unwrap_or(0)
    }

    /// Installs totals that are on disk now.
    pub(crate) fn install(&self, committed: HashMap<Vec<u8>, u64>) {
        self.lock().extend(committed);
    }

    /// The accounts whose names sort before `bound`.
    pub(crate) fn accounts_before(&self, bound: &[u8]) -> Vec<Vec<u8>> {
        self.lock()
            .keys()
            .filter(|k| k.as_slice() < bound)
            .cloned()
            .collect()
    }

    /// Forgets accounts that were removed from disk.
    pub(crate) fn forget(&self, accounts: &[Vec<u8>]) {
        let mut totals = self.lock();
        for account in accounts {
            totals.remove(account);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, u64>> {
        self.totals.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn decode_total(key: &[u8], bytes: &[u8]) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt {
            key: format!("ledger {}", String::from_utf8_lossy(key)),
            reason: format!("{} bytes, expected 8", bytes.len()),
        })
}
