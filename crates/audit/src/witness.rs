//! Witnessing a peer's log: keep the latest checkpoint seen, and accept a newer
//! one only with a consistency proof from the held one. Anything else (a smaller
//! size, a different root at the same size, a proof that fails) is a fork or a
//! rewrite: an alarm that stays until an operator clears it.

use crate::checkpoint::Checkpoint;
use crate::merkle::{verify_consistency, Hash, ProofError};
use serde::{Deserialize, Serialize};

/// What a node holds of one peer's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessState {
    /// The latest checkpoint (signed note) that was consistent with all before it.
    pub checkpoint: String,
    /// Its size.
    pub size: u64,
    /// When it was seen, microseconds since the Unix epoch.
    pub seen_micros: i64,
    /// Set when the peer showed a checkpoint inconsistent with `checkpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarm: Option<Alarm>,
}

/// Evidence that a peer forked or rewrote its log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alarm {
    /// What was wrong, in words.
    pub reason: String,
    /// When it was found, microseconds since the Unix epoch.
    pub at_micros: i64,
    /// The offending checkpoint as the peer sent it (signed: it is proof).
    pub evidence: String,
}

/// Why a new checkpoint of a peer's log was not accepted: evidence of a fork
/// or a rewrite.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Inconsistent {
    /// The log is smaller than a checkpoint already held.
    #[error("log shrank: held a checkpoint of {held} entries, now shown {shown}")]
    Shrank {
        /// Entries of the held checkpoint.
        held: u64,
        /// Entries of the new one.
        shown: u64,
    },
    /// The consistency proof from the held checkpoint does not verify.
    #[error(
        "checkpoint of {shown} entries is not consistent with the held one of {held}: {proof}"
    )]
    Proof {
        /// Entries of the held checkpoint.
        held: u64,
        /// Entries of the new one.
        shown: u64,
        /// What failed.
        proof: ProofError,
    },
}

/// Checks a new (signature-checked) checkpoint against the held one, with the
/// consistency proof the peer gave from `held.size` to `new.size`.
pub fn check(held: &Checkpoint, new: &Checkpoint, proof: &[Hash]) -> Result<(), Inconsistent> {
    if new.size < held.size {
        return Err(Inconsistent::Shrank {
            held: held.size,
            shown: new.size,
        });
    }
    verify_consistency(held.size, new.size, &held.root, &new.root, proof).map_err(|proof| {
        Inconsistent::Proof {
            held: held.size,
            shown: new.size,
            proof,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{consistency_proof, leaf_hash, Frontier, NodeSource, ProofError};
    use std::collections::HashMap;

    struct Tree(HashMap<(u8, u64), Hash>, Frontier);

    impl NodeSource for Tree {
        fn perfect(&self, level: u8, index: u64) -> Result<Hash, ProofError> {
            self.0
                .get(&(level, index))
                .copied()
                .ok_or(ProofError::MissingNode { level, index })
        }
    }

    fn tree(leaves: &[&[u8]]) -> Tree {
        let mut tree = Tree(HashMap::new(), Frontier::default());
        for leaf in leaves {
            let nodes = &mut tree.0;
            tree.1.push(leaf_hash(leaf), |l, i, h| {
                nodes.insert((l, i), *h);
            });
        }
        tree
    }

    fn checkpoint(tree: &Tree, size: u64) -> Checkpoint {
        Checkpoint {
            origin: "o".into(),
            size,
            root: crate::merkle::root(tree, size).unwrap(),
        }
    }

    #[test]
    fn growth_is_accepted_and_rewrites_are_not() {
        let honest = tree(&[b"a", b"b", b"c", b"d", b"e"]);
        let held = checkpoint(&honest, 3);
        let now = checkpoint(&honest, 5);
        let proof = consistency_proof(&honest, 3, 5).unwrap();
        assert!(check(&held, &now, &proof).is_ok());

        let rewritten = tree(&[b"a", b"X", b"c", b"d", b"e"]);
        let forged = checkpoint(&rewritten, 5);
        let proof = consistency_proof(&rewritten, 3, 5).unwrap();
        assert!(check(&held, &forged, &proof).is_err());

        let truncated = checkpoint(&honest, 2);
        assert_eq!(
            check(&held, &truncated, &[]).unwrap_err(),
            Inconsistent::Shrank { held: 3, shown: 2 }
        );
    }
}
