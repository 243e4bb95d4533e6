//! Proofs from the stored tree, checked against a second, naive implementation
//! that recomputes everything from the full list of leaves, straight from the
//! definitions in RFC 9162 §2.1.

use lagesbild_audit::checkpoint::NoteVerifier;
use lagesbild_audit::merkle::{
    consistency_proof, inclusion_proof, leaf_hash, node_hash, root, sha256, verify_consistency,
    verify_inclusion, Frontier, Hash, NodeSource, ProofError,
};
use lagesbild_audit::verify::LogVerifier;
mod common;

use common::{entry, signer};
use lagesbild_audit::{AuditLog, Entry, LogOptions};
use std::collections::HashMap;

/// MTH(D[n]) by the definition.
fn naive_root(leaves: &[Vec<u8>]) -> Hash {
    match leaves.len() {
        0 => sha256(&[]),
        1 => leaf_hash(&leaves[0]),
        n => {
            let k = largest_power_of_two_below(n);
            node_hash(&naive_root(&leaves[..k]), &naive_root(&leaves[k..]))
        }
    }
}

fn largest_power_of_two_below(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// PATH(m, D[n]) by the definition.
fn naive_path(m: usize, leaves: &[Vec<u8>]) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = largest_power_of_two_below(n);
    if m < k {
        let mut path = naive_path(m, &leaves[..k]);
        path.push(naive_root(&leaves[k..]));
        path
    } else {
        let mut path = naive_path(m - k, &leaves[k..]);
        path.push(naive_root(&leaves[..k]));
        path
    }
}

/// SUBPROOF(m, D[n], b) by the definition.
fn naive_subproof(m: usize, leaves: &[Vec<u8>], whole: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if whole {
            Vec::new()
        } else {
            vec![naive_root(leaves)]
        };
    }
    let k = largest_power_of_two_below(n);
    if m <= k {
        let mut proof = naive_subproof(m, &leaves[..k], whole);
        proof.push(naive_root(&leaves[k..]));
        proof
    } else {
        let mut proof = naive_subproof(m - k, &leaves[k..], false);
        proof.push(naive_root(&leaves[..k]));
        proof
    }
}

struct MemoryTree(HashMap<(u8, u64), Hash>);

impl NodeSource for MemoryTree {
    fn perfect(&self, level: u8, index: u64) -> Result<Hash, ProofError> {
        self.0
            .get(&(level, index))
            .copied()
            .ok_or(ProofError::MissingNode { level, index })
    }
}

fn leaves(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("entry {i}").into_bytes()).collect()
}

fn built(leaves: &[Vec<u8>]) -> (MemoryTree, Frontier) {
    let mut nodes = HashMap::new();
    let mut frontier = Frontier::default();
    for leaf in leaves {
        frontier.push(leaf_hash(leaf), |l, i, h| {
            nodes.insert((l, i), *h);
        });
    }
    (MemoryTree(nodes), frontier)
}

const SIZES: &[usize] = &[
    1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 128, 129, 255, 256,
    257, 1000, 1023, 1024, 1025,
];

#[test]
fn roots_and_proofs_equal_the_naive_definitions() {
    let all = leaves(1025);
    let (tree, _) = built(&all);
    for &n in SIZES {
        let prefix = &all[..n];
        let expected_root = naive_root(prefix);
        let (_, frontier) = built(prefix);
        assert_eq!(frontier.root(), expected_root, "frontier root at {n}");
        assert_eq!(root(&tree, n as u64).unwrap(), expected_root, "root at {n}");

        let indexes: Vec<usize> = if n <= 65 {
            (0..n).collect()
        } else {
            vec![0, 1, n / 3, n / 2, n - 2, n - 1]
        };
        for m in indexes {
            let path = inclusion_proof(&tree, m as u64, n as u64).unwrap();
            assert_eq!(path, naive_path(m, prefix), "PATH({m}, {n})");
            verify_inclusion(
                &leaf_hash(&prefix[m]),
                m as u64,
                n as u64,
                &path,
                &expected_root,
            )
            .unwrap_or_else(|e| panic!("inclusion of {m} in {n}: {e}"));
            // Wrong leaf, wrong index, cut or padded path: all refused.
            assert!(verify_inclusion(
                &leaf_hash(b"other"),
                m as u64,
                n as u64,
                &path,
                &expected_root
            )
            .is_err());
            if n > 1 {
                let other = (m + 1) % n;
                if naive_path(other, prefix) != path {
                    assert!(verify_inclusion(
                        &leaf_hash(&prefix[m]),
                        other as u64,
                        n as u64,
                        &path,
                        &expected_root
                    )
                    .is_err());
                }
                assert!(verify_inclusion(
                    &leaf_hash(&prefix[m]),
                    m as u64,
                    n as u64,
                    &path[..path.len() - 1],
                    &expected_root
                )
                .is_err());
            }
            let mut padded = path.clone();
            padded.push([0; 32]);
            assert!(verify_inclusion(
                &leaf_hash(&prefix[m]),
                m as u64,
                n as u64,
                &padded,
                &expected_root
            )
            .is_err());
        }

        for &m in SIZES.iter().filter(|&&m| m <= n) {
            let proof = consistency_proof(&tree, m as u64, n as u64).unwrap();
            let expected = if m == n {
                Vec::new()
            } else {
                naive_subproof(m, prefix, true)
            };
            assert_eq!(proof, expected, "PROOF({m}, {n})");
            let old_root = naive_root(&all[..m]);
            verify_consistency(m as u64, n as u64, &old_root, &expected_root, &proof)
                .unwrap_or_else(|e| panic!("consistency {m} → {n}: {e}"));
            if m < n {
                // A different old tree of the same size is not consistent.
                let mut forked = all[..n].to_vec();
                forked[m - 1] = b"rewritten".to_vec();
                let forked_old = naive_root(&forked[..m]);
                assert!(verify_consistency(
                    m as u64,
                    n as u64,
                    &forked_old,
                    &expected_root,
                    &proof
                )
                .is_err());
                for i in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[i][0] ^= 1;
                    assert!(verify_consistency(
                        m as u64,
                        n as u64,
                        &old_root,
                        &expected_root,
                        &bad
                    )
                    .is_err());
                }
            }
        }
    }
}

async fn futures_join(log: &AuditLog, entries: &[Entry]) -> Vec<lagesbild_audit::Receipt> {
    let tasks: Vec<_> = entries
        .iter()
        .cloned()
        .map(|e| {
            let log = log.clone();
            tokio::spawn(async move { log.append(&e).await.unwrap() })
        })
        .collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stored_log_proves_against_the_naive_tree_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let verifier: NoteVerifier = signer().verifier();
    let options = LogOptions {
        checkpoint_every: 10,
        ..LogOptions::default()
    };
    let mut bytes = Vec::new();
    {
        let log = AuditLog::open(dir.path(), signer(), options).unwrap();
        for i in 0..300u64 {
            let e = entry(i);
            bytes.push(e.encode());
            let receipt = log.append(&e).await.unwrap();
            assert_eq!(receipt.index, i);
            assert_eq!(receipt.leaf_hash, leaf_hash(&bytes[i as usize]));
            let checkpoint = verifier.verify(&receipt.checkpoint).unwrap();
            assert!(checkpoint.size > i);
            assert_eq!(
                checkpoint.root,
                naive_root(&bytes[..checkpoint.size as usize])
            );
        }
        // Concurrent appends: multi-entry group commits that cross block boundaries.
        let more: Vec<Entry> = (300..699u64).map(entry).collect();
        let receipts = futures_join(&log, &more).await;
        for (e, receipt) in more.iter().zip(&receipts) {
            assert_eq!(receipt.leaf_hash, leaf_hash(&e.encode()));
        }
        let mut by_index: Vec<(u64, Vec<u8>)> = more
            .iter()
            .zip(&receipts)
            .map(|(e, r)| (r.index, e.encode()))
            .collect();
        by_index.sort();
        for (i, (index, encoded)) in by_index.into_iter().enumerate() {
            assert_eq!(index, 300 + i as u64);
            bytes.push(encoded);
        }
        log.close().await;
    }
    // Reopened: same size, same root, appends go on from there.
    let log = AuditLog::open(dir.path(), signer(), options).unwrap();
    assert_eq!(log.size(), 699);
    let e = entry(699);
    bytes.push(e.encode());
    log.append(&e).await.unwrap();
    let (size, note) = log.latest();
    assert_eq!(size, 700);
    assert_eq!(verifier.verify(&note).unwrap().root, naive_root(&bytes));
    for n in [
        1u64, 2, 3, 7, 8, 9, 31, 32, 33, 255, 256, 257, 511, 512, 513, 699, 700,
    ] {
        assert_eq!(log.root_at(n).unwrap(), naive_root(&bytes[..n as usize]));
        for m in [0, n / 2, n - 1] {
            assert_eq!(
                log.inclusion_proof(m, n).unwrap(),
                naive_path(m as usize, &bytes[..n as usize])
            );
        }
    }
    for (old, new) in [
        (1u64, 700u64),
        (255, 513),
        (256, 700),
        (300, 699),
        (511, 512),
    ] {
        let proof = log.consistency_proof(old, new).unwrap();
        assert_eq!(
            proof,
            naive_subproof(old as usize, &bytes[..new as usize], true)
        );
    }
    assert_eq!(log.entry(517).unwrap().unwrap(), bytes[517]);
    assert_eq!(log.entry(700).unwrap(), None);
    assert!(log.inclusion_proof(700, 700).is_err());
    assert!(log.consistency_proof(3, 701).is_err());
    let kept = log.checkpoints().unwrap();
    assert!(kept.len() >= 3, "checkpoints every 10 entries: {kept:?}");

    // The whole log verifies; a changed entry is named.
    let entries = log.entries(0, 1000, usize::MAX).unwrap();
    assert_eq!(entries.len(), 700);
    let page = log.entries(250, 10, usize::MAX).unwrap();
    assert_eq!(
        page.iter().map(|e| e.0).collect::<Vec<_>>(),
        (250..260).collect::<Vec<_>>()
    );
    let mut clean = LogVerifier::new(verifier.clone());
    let mut tampered = LogVerifier::new(verifier.clone());
    // The kept checkpoints and the latest, as a node serves them: every entry
    // is under a signature.
    let (_, latest) = log.latest();
    for note in kept.iter().chain([&latest]) {
        clean.checkpoint(note, "the log");
        tampered.checkpoint(note, "the log");
    }
    for (index, leaf, bytes) in &entries {
        clean.entry(*index, Some(leaf), bytes);
        let mut bytes = bytes.clone();
        if *index == 17 {
            bytes[20] ^= 0x01;
        }
        tampered.entry(*index, Some(leaf), &bytes);
    }
    let report = clean.finish();
    assert!(report.ok(), "{}", report.to_text());
    let report = tampered.finish();
    assert!(!report.ok());
    assert!(!report.to_text().contains(" ok "), "{}", report.to_text());
    assert_eq!(report.failures[0].index, Some(17), "{}", report.to_text());
    assert!(report.to_text().contains("entry 17"));

    // Without the latest checkpoint, the entries past the last kept one are
    // named as unsigned.
    let mut unsigned = LogVerifier::new(verifier.clone());
    for note in &kept {
        unsigned.checkpoint(note, "the log");
    }
    for (index, leaf, bytes) in &entries {
        unsigned.entry(*index, Some(leaf), bytes);
    }
    let report = unsigned.finish();
    let last_kept: u64 = kept
        .last()
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(last_kept < 700);
    assert_eq!(report.failures.len(), 1, "{}", report.to_text());
    assert_eq!(report.failures[0].index, Some(last_kept));
    assert!(report.failures[0].what.contains("no signature covers them"));
}
