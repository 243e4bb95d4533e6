//! Recomputing a log from its entries and checking everything that was signed
//! or promised about it: stored leaf hashes, checkpoints (the log's own, those
//! witnesses hold, those in receipts), and the leaves receipts name.
//!
//! Entries are fed in index order and never held: memory stays O(log n) plus
//! the checkpoints, whatever the log's size.

use crate::checkpoint::NoteVerifier;
use crate::entry::{hex, Entry};
use crate::merkle::{leaf_hash, Frontier, Hash};
use serde::Serialize;
use std::collections::BTreeMap;

/// One thing that failed, with the entry it concerns where there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The entry index, if the failure is about one entry.
    pub index: Option<u64>,
    /// What failed.
    pub what: String,
}

/// What a verification checked and what failed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// The log.
    pub origin: String,
    /// Entries recomputed.
    pub entries: u64,
    /// The recomputed root of all of them, hex.
    pub root: String,
    /// What was checked and held.
    pub checked: Vec<String>,
    /// What failed.
    pub failures: Vec<Finding>,
}

impl Verification {
    /// Whether nothing failed.
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }

    /// The report in words: every check when all held; otherwise only what
    /// failed, so no line of a failed verification reads as a success.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "log {}: {} entries, root {}\n",
            self.origin, self.entries, self.root
        );
        if self.ok() {
            for line in &self.checked {
                out.push_str(&format!("  ok      {line}\n"));
            }
            out.push_str("verified: every check passed\n");
            return out;
        }
        for finding in &self.failures {
            match finding.index {
                Some(i) => out.push_str(&format!("  FAILED  entry {i}: {}\n", finding.what)),
                None => out.push_str(&format!("  FAILED  {}\n", finding.what)),
            }
        }
        out.push_str(&format!(
            "NOT verified: {} check(s) failed\n",
            self.failures.len()
        ));
        out
    }
}

/// A streaming verifier of one log.
#[derive(Debug)]
pub struct LogVerifier {
    verifier: NoteVerifier,
    frontier: Frontier,
    /// size → (where the checkpoint came from, its root)
    checkpoints: BTreeMap<u64, Vec<(String, Hash)>>,
    /// index → (where the promise came from, the leaf hash)
    promised_leaves: BTreeMap<u64, Vec<(String, Hash)>>,
    signatures_ok: u64,
    roots_ok: u64,
    stored_leaves_ok: u64,
    promised_ok: u64,
    undecodable: u64,
    /// The largest size whose signed root matched the recomputed tree.
    signed_size: u64,
    first_changed: Option<u64>,
    broken_sequence: bool,
    failures: Vec<Finding>,
}

impl LogVerifier {
    /// A verifier for the log whose checkpoints `verifier` checks.
    pub fn new(verifier: NoteVerifier) -> Self {
        Self {
            verifier,
            frontier: Frontier::default(),
            checkpoints: BTreeMap::new(),
            promised_leaves: BTreeMap::new(),
            signatures_ok: 0,
            roots_ok: 0,
            stored_leaves_ok: 0,
            promised_ok: 0,
            undecodable: 0,
            signed_size: 0,
            first_changed: None,
            broken_sequence: false,
            failures: Vec::new(),
        }
    }

    fn fail(&mut self, index: Option<u64>, what: String) {
        self.failures.push(Finding { index, what });
    }

    /// Adds a checkpoint the recomputed log must match; `source` says where it
    /// came from ("the log", "held by witness scandic", "receipt in …").
    /// Call before feeding entries.
    pub fn checkpoint(&mut self, note: &str, source: &str) {
        match self.verifier.verify(note) {
            Ok(checkpoint) => {
                self.signatures_ok += 1;
                self.checkpoints
                    .entry(checkpoint.size)
                    .or_default()
                    .push((source.to_owned(), checkpoint.root));
                if checkpoint.size == 0 {
                    self.compare_roots(0);
                }
            }
            Err(e) => self.fail(None, format!("checkpoint from {source}: {e}")),
        }
    }

    /// Adds a promise that entry `index` has leaf hash `leaf` (from a receipt).
    pub fn promised_leaf(&mut self, index: u64, leaf: Hash, source: &str) {
        self.promised_leaves
            .entry(index)
            .or_default()
            .push((source.to_owned(), leaf));
    }

    /// Feeds the next entry: its index, the leaf hash the log stores for it (if
    /// known) and its bytes.
    pub fn entry(&mut self, index: u64, stored_leaf: Option<&Hash>, bytes: &[u8]) {
        if self.broken_sequence {
            return;
        }
        let expected = self.frontier.size();
        if index != expected {
            self.broken_sequence = true;
            self.fail(
                Some(expected),
                format!("missing: the next entry given was {index}"),
            );
            return;
        }
        let leaf = leaf_hash(bytes);
        if let Err(e) = Entry::decode(bytes) {
            self.undecodable += 1;
            self.fail(Some(index), e.to_string());
        }
        if let Some(stored) = stored_leaf {
            if stored == &leaf {
                self.stored_leaves_ok += 1;
            } else {
                self.first_changed.get_or_insert(index);
                self.fail(
                    Some(index),
                    format!(
                        "its bytes hash to {} but the log's tree holds {}: the entry was changed after it was logged",
                        hex(&leaf),
                        hex(stored)
                    ),
                );
            }
        }
        if let Some(promises) = self.promised_leaves.remove(&index) {
            for (source, promised) in promises {
                if promised == leaf {
                    self.promised_ok += 1;
                } else {
                    self.first_changed.get_or_insert(index);
                    self.fail(
                        Some(index),
                        format!(
                            "{source} promised leaf {} but the entry hashes to {}",
                            hex(&promised),
                            hex(&leaf)
                        ),
                    );
                }
            }
        }
        self.frontier.push(leaf, |_, _, _| {});
        self.compare_roots(self.frontier.size());
    }

    fn compare_roots(&mut self, size: u64) {
        let Some(held) = self.checkpoints.remove(&size) else {
            return;
        };
        let root = self.frontier.root();
        for (source, expected) in held {
            if expected == root {
                self.roots_ok += 1;
                self.signed_size = self.signed_size.max(size);
            } else {
                let hint = match self.first_changed {
                    Some(i) => format!("entry {i} is the first that changed"),
                    None => format!("an entry below {size} was changed or removed"),
                };
                self.fail(
                    None,
                    format!(
                        "checkpoint of size {size} from {source} has root {} but the entries give {}: {hint}",
                        hex(&expected),
                        hex(&root)
                    ),
                );
            }
        }
    }

    /// Ends the verification.
    pub fn finish(mut self) -> Verification {
        let entries = self.frontier.size();
        for (size, held) in std::mem::take(&mut self.checkpoints) {
            for (source, _) in held {
                self.fail(
                    None,
                    format!(
                        "checkpoint of size {size} from {source} is beyond the {entries} entries given: the log was truncated"
                    ),
                );
            }
        }
        // An entry no matching signature covers is unproven: its bytes and its
        // leaf hash could both have been made after the fact.
        if entries > self.signed_size {
            self.fail(
                Some(self.signed_size),
                format!(
                    "entries {} to {} come after the last signed checkpoint that matches ({} entries): no signature covers them",
                    self.signed_size,
                    entries - 1,
                    self.signed_size
                ),
            );
        }
        for (index, promises) in std::mem::take(&mut self.promised_leaves) {
            for (source, _) in promises {
                self.fail(
                    Some(index),
                    format!("{source} names this entry, but the log has only {entries}"),
                );
            }
        }
        let mut checked = vec![format!(
            "{} entries recomputed into the RFC 9162 tree",
            entries
        )];
        if self.undecodable == 0 {
            checked.push(format!("{entries} entries decode (canonical encoding)"));
        }
        if self.stored_leaves_ok > 0 {
            checked.push(format!(
                "{} stored leaf hashes match their entries",
                self.stored_leaves_ok
            ));
        }
        checked.push(format!(
            "{} checkpoint signatures verify ({})",
            self.signatures_ok,
            self.verifier.origin()
        ));
        checked.push(format!(
            "{} checkpoint roots match the recomputed tree; the last covers all {} entries",
            self.roots_ok, self.signed_size
        ));
        if self.promised_ok > 0 {
            checked.push(format!(
                "{} leaves named in receipts match",
                self.promised_ok
            ));
        }
        Verification {
            origin: self.verifier.origin().to_owned(),
            entries,
            root: hex(&self.frontier.root()),
            checked,
            failures: self.failures,
        }
    }
}

/// Reconciles the receipts in `caller`'s outbound entries to `callee_org` with
/// the entries of `callee`'s log: the receipt's entry must be the callee's
/// inbound record of the same call (same caller org, token id, purpose,
/// request and response digests). Returns what was checked and what failed;
/// the leaf hashes and checkpoints of receipts are for [`LogVerifier`].
pub fn reconcile(
    caller_org: &str,
    caller: &[(u64, Entry)],
    callee_org: &str,
    callee: &BTreeMap<u64, Entry>,
) -> (u64, Vec<Finding>) {
    let mut matched = 0;
    let mut failures = Vec::new();
    for (index, entry) in caller {
        let Some(receipt) = &entry.receipt else {
            continue;
        };
        if entry.peer_org != callee_org {
            continue;
        }
        let fail = |what: String| Finding {
            index: Some(*index),
            what: format!(
                "{caller_org} entry {index} (receipt for {callee_org} entry {}): {what}",
                receipt.index
            ),
        };
        let Some(theirs) = callee.get(&receipt.index) else {
            failures.push(fail("the callee's log has no such entry".into()));
            continue;
        };
        let mut differences = Vec::new();
        if theirs.peer_org != caller_org {
            differences.push(format!("caller is {:?}", theirs.peer_org));
        }
        if theirs.direction != crate::entry::Direction::Inbound {
            differences.push("it is not an inbound entry".into());
        }
        if theirs.call != entry.call {
            differences.push(format!("call {:?} vs {:?}", theirs.call, entry.call));
        }
        if theirs.token.jti != entry.token.jti {
            differences.push(format!(
                "token id {:?} vs {:?}",
                theirs.token.jti, entry.token.jti
            ));
        }
        if theirs.token.purpose != entry.token.purpose {
            differences.push("purpose differs".into());
        }
        if theirs.request_digest != entry.request_digest {
            differences.push("request digest differs".into());
        }
        if theirs.response_digest != entry.response_digest {
            differences.push("response digest differs".into());
        }
        if differences.is_empty() {
            matched += 1;
        } else {
            failures.push(fail(differences.join("; ")));
        }
    }
    (matched, failures)
}
