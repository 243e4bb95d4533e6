//! The log's files after crashes and damage: what was acknowledged stays, a
//! torn tail goes, derived files are rebuilt, and a changed entry keeps the
//! leaf hash it was logged with so that verification names it.

mod common;

use common::{entry, signer};
use lagesbild_audit::merkle::{leaf_hash, Hash};
use lagesbild_audit::{AuditLog, LogOptions};
use std::path::Path;

fn open(dir: &Path) -> AuditLog {
    AuditLog::open(dir, signer(), LogOptions::default()).unwrap()
}

/// A closed log of `n` entries in `dir`; its root.
async fn log_of(dir: &Path, n: u64) -> Hash {
    let log = open(dir);
    for i in 0..n {
        log.append(&entry(i)).await.unwrap();
    }
    let root = log.root_at(n).unwrap();
    log.close().await;
    root
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("witness")).unwrap();
    for item in std::fs::read_dir(from).unwrap() {
        let item = item.unwrap();
        if item.file_type().unwrap().is_file() {
            std::fs::copy(item.path(), to.join(item.file_name())).unwrap();
        }
    }
}

/// Where the records of the first `n` test entries end: length, leaf hash and
/// header check, then the entry.
fn records_end(n: u64) -> u64 {
    (0..n).map(|i| 40 + entry(i).encode().len() as u64).sum()
}

/// Writes `bytes` at `at` in the file at `path`, as a crash mid-write leaves them.
fn write_at(path: &Path, at: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(bytes, at).unwrap();
}

fn is_zero(path: &Path, at: u64, len: usize) -> bool {
    let bytes = std::fs::read(path).unwrap();
    bytes[at as usize..at as usize + len]
        .iter()
        .all(|b| *b == 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_append_survives_a_crash_before_any_seal() {
    let dir = tempfile::tempdir().unwrap();
    let crashed = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    for i in 0..700 {
        log.append(&entry(i)).await.unwrap();
    }
    let root = log.root_at(700).unwrap();
    // What a killed process leaves: the files as they are, the writer never
    // told to stop.
    copy_dir(dir.path(), crashed.path());
    std::fs::remove_file(crashed.path().join("sealed")).ok();
    let reopened = open(crashed.path());
    assert_eq!(reopened.size(), 700);
    assert_eq!(reopened.root_at(700).unwrap(), root);
    assert_eq!(
        reopened.entry(650).unwrap().unwrap(),
        entry(650).encode(),
        "the entry's bytes"
    );
    let receipt = reopened.append(&entry(700)).await.unwrap();
    assert_eq!(receipt.index, 700);
    log.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_is_cut_and_appends_go_on_from_the_last_whole_record() {
    let dir = tempfile::tempdir().unwrap();
    let root = log_of(dir.path(), 300).await;
    let entries = dir.path().join("entries");
    let end = records_end(300);

    // A record whose header made it to disk but whose bytes did not.
    let next = entry(300).encode();
    let leaf = leaf_hash(&next);
    let mut torn = Vec::new();
    torn.extend_from_slice(&(next.len() as u32).to_be_bytes());
    torn.extend_from_slice(&leaf);
    torn.extend_from_slice(&{
        let mut header = (next.len() as u32).to_be_bytes().to_vec();
        header.extend_from_slice(&leaf);
        let digest = lagesbild_audit::merkle::sha256(&header);
        [digest[0], digest[1], digest[2], digest[3]]
    });
    torn.extend_from_slice(&vec![0u8; next.len()]);
    write_at(&entries, end, &torn);
    let log = open(dir.path());
    assert_eq!(log.size(), 300);
    assert_eq!(log.root_at(300).unwrap(), root);
    assert!(
        is_zero(&entries, end, torn.len()),
        "the torn record is zeroed"
    );
    log.close().await;

    // Half a header.
    write_at(&entries, end, &torn[..20]);
    let log = open(dir.path());
    assert_eq!(log.size(), 300);
    assert_eq!(log.append(&entry(300)).await.unwrap().index, 300);
    log.close().await;
    // Garbage after the next whole record, and further on.
    write_at(&entries, records_end(301), &[0xAB; 4096]);
    write_at(&entries, records_end(301) + 100_000, &[0xCD; 10]);
    let log = open(dir.path());
    assert_eq!(log.size(), 301);
    assert_eq!(log.entry(300).unwrap().unwrap(), next);
    log.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_or_short_derived_files_are_rebuilt_from_the_entries() {
    let dir = tempfile::tempdir().unwrap();
    let root = log_of(dir.path(), 1100).await;
    let (proof, consistency) = {
        let log = open(dir.path());
        let out = (
            log.inclusion_proof(517, 1100).unwrap(),
            log.consistency_proof(300, 1100).unwrap(),
        );
        log.close().await;
        out
    };
    // Derived files shorter than the sealed point says.
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("leaves"))
        .unwrap()
        .set_len(100 * 32)
        .unwrap();
    std::fs::remove_file(dir.path().join("level-09")).ok();
    let log = open(dir.path());
    assert_eq!(log.root_at(1100).unwrap(), root);
    assert_eq!(log.inclusion_proof(517, 1100).unwrap(), proof);
    log.close().await;
    // All of them gone.
    for name in [
        "leaves", "offsets", "sealed", "level-08", "level-09", "level-10",
    ] {
        std::fs::remove_file(dir.path().join(name)).ok();
    }
    let log = open(dir.path());
    assert_eq!(log.size(), 1100);
    assert_eq!(log.root_at(1100).unwrap(), root);
    assert_eq!(log.inclusion_proof(517, 1100).unwrap(), proof);
    assert_eq!(log.consistency_proof(300, 1100).unwrap(), consistency);
    assert_eq!(log.entries(1000, 200, usize::MAX).unwrap().len(), 100);
    log.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_entry_keeps_its_logged_leaf_hash_through_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let root = log_of(dir.path(), 40).await;
    let original = entry(3).encode();
    let path = dir.path().join("entries");
    let mut stored = std::fs::read(&path).unwrap();
    let at = stored
        .windows(original.len())
        .position(|w| w == original)
        .unwrap();
    stored[at + original.len() / 2] ^= 0x01;
    std::fs::write(&path, stored).unwrap();
    // Rebuilt from the entries: the tree still holds what was logged.
    std::fs::remove_file(dir.path().join("sealed")).unwrap();
    let log = open(dir.path());
    assert_eq!(log.size(), 40, "good entries after it: not a torn tail");
    assert_eq!(log.root_at(40).unwrap(), root);
    assert_eq!(log.leaf(3).unwrap(), leaf_hash(&original));
    let changed = log.entry(3).unwrap().unwrap();
    assert_ne!(changed, original);
    assert_ne!(leaf_hash(&changed), log.leaf(3).unwrap());
    log.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_respects_limits_and_a_second_opener_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    log_of(dir.path(), 50).await;
    let log = open(dir.path());
    let one = entry(10).encode().len();
    let page = log.entries(10, 100, one * 3).unwrap();
    assert_eq!(
        page.iter().map(|e| e.0).collect::<Vec<_>>(),
        vec![10, 11, 12]
    );
    assert_eq!(log.entries(10, 100, 1).unwrap().len(), 1, "at least one");
    assert_eq!(log.entries(45, 100, usize::MAX).unwrap().len(), 5);
    assert!(log.entries(50, 10, usize::MAX).unwrap().is_empty());
    for (index, leaf, bytes) in log.entries(0, 100, usize::MAX).unwrap() {
        assert_eq!(bytes, entry(index).encode());
        assert_eq!(leaf, leaf_hash(&bytes));
    }
    let second = AuditLog::open(dir.path(), signer(), LogOptions::default());
    let err = second.unwrap_err().to_string();
    assert!(err.contains("open in another process"), "{err}");
    log.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witness_states_and_kept_checkpoints_persist() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(
        dir.path(),
        signer(),
        LogOptions {
            checkpoint_every: 10,
            ..LogOptions::default()
        },
    )
    .unwrap();
    for i in 0..35 {
        log.append(&entry(i)).await.unwrap();
    }
    let state = lagesbild_audit::WitnessState {
        checkpoint: "note".into(),
        size: 7,
        seen_micros: 1,
        alarm: None,
    };
    log.record_witness("stockholm-stad", &state).await.unwrap();
    log.record_witness("../scandic", &state).await.unwrap();
    log.forget_witness("nobody").await.unwrap();
    log.close().await;
    let log = open(dir.path());
    let kept = log.checkpoints().unwrap();
    assert_eq!(
        kept.iter()
            .map(|n| n.lines().nth(1).unwrap().to_owned())
            .collect::<Vec<_>>(),
        vec!["10", "20", "30"]
    );
    let all = log.witnessed_all().unwrap();
    assert_eq!(
        all.iter().map(|(o, _)| o.as_str()).collect::<Vec<_>>(),
        vec!["../scandic", "stockholm-stad"]
    );
    assert_eq!(log.witnessed("stockholm-stad").unwrap().unwrap().size, 7);
    log.forget_witness("stockholm-stad").await.unwrap();
    assert!(log.witnessed("stockholm-stad").unwrap().is_none());
    log.close().await;
}
