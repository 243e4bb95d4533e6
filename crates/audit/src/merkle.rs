//! Tree hashing, proofs and their verification exactly as RFC 9162 §2.1.
//!
//! The tree is never rebuilt: proofs are made from the hashes of *perfect*
//! subtrees (2^level leaves starting at a multiple of 2^level), which the log
//! stores as it appends ([`NodeSource`]). Any other range is hashed from at most
//! O(log n) of them.

use ring::digest::{Context, SHA256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// Hash of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    sha256(&[])
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> Hash {
    let digest = ring::digest::digest(&SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// `SHA-256(0x00 ‖ entry)`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut context = Context::new(&SHA256);
    context.update(&[0x00]);
    context.update(entry);
    let mut out = [0u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

/// `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buffer = [0u8; 65];
    buffer[0] = 0x01;
    buffer[1..33].copy_from_slice(left);
    buffer[33..].copy_from_slice(right);
    sha256(&buffer)
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Why a proof was not made or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The asked index or sizes do not fit the tree.
    #[error("{0}")]
    OutOfRange(String),
    /// The proof does not lead to the expected root.
    #[error("proof does not verify: {0}")]
    Mismatch(&'static str),
    /// A stored hash is missing.
    #[error("stored tree is missing the node at level {level}, index {index}")]
    MissingNode {
        /// Level of the perfect subtree.
        level: u8,
        /// Its index at that level.
        index: u64,
    },
    /// Reading the stored tree failed.
    #[error("reading the tree: {0}")]
    Storage(String),
}

/// Where the hashes of perfect subtrees come from.
pub trait NodeSource {
    /// The hash of the perfect subtree of `2^level` leaves starting at leaf
    /// `index << level`.
    fn perfect(&self, level: u8, index: u64) -> Result<Hash, ProofError>;
}

/// MTH of leaves `[start, end)`, from perfect subtrees.
pub fn subtree_hash(source: &impl NodeSource, start: u64, end: u64) -> Result<Hash, ProofError> {
    let width = end - start;
    if width == 0 {
        return Ok(empty_root());
    }
    if width.is_power_of_two() && start.is_multiple_of(width) {
        return source.perfect(width.trailing_zeros() as u8, start / width);
    }
    let k = split_point(width);
    let left = subtree_hash(source, start, start + k)?;
    let right = subtree_hash(source, start + k, end)?;
    Ok(node_hash(&left, &right))
}

/// The root of the tree of the first `size` leaves.
pub fn root(source: &impl NodeSource, size: u64) -> Result<Hash, ProofError> {
    subtree_hash(source, 0, size)
}

/// The audit path of leaf `index` in the tree of `size` leaves (RFC 9162 PATH).
pub fn inclusion_proof(
    source: &impl NodeSource,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProofError> {
    if index >= size {
        return Err(ProofError::OutOfRange(format!(
            "leaf {index} is not in a tree of size {size}"
        )));
    }
    let mut path = Vec::new();
    inclusion_path(source, index, 0, size, &mut path)?;
    Ok(path)
}

fn inclusion_path(
    source: &impl NodeSource,
    index: u64,
    start: u64,
    end: u64,
    path: &mut Vec<Hash>,
) -> Result<(), ProofError> {
    if end - start <= 1 {
        return Ok(());
    }
    let mid = start + split_point(end - start);
    if index < mid {
        inclusion_path(source, index, start, mid, path)?;
        path.push(subtree_hash(source, mid, end)?);
    } else {
        inclusion_path(source, index, mid, end, path)?;
        path.push(subtree_hash(source, start, mid)?);
    }
    Ok(())
}

/// The proof that the tree of `old_size` leaves is a prefix of the tree of
/// `new_size` leaves (RFC 9162 PROOF).
pub fn consistency_proof(
    source: &impl NodeSource,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, ProofError> {
    if old_size > new_size {
        return Err(ProofError::OutOfRange(format!(
            "old size {old_size} is larger than new size {new_size}"
        )));
    }
    let mut proof = Vec::new();
    if old_size == 0 || old_size == new_size {
        return Ok(proof);
    }
    subproof(source, old_size, 0, new_size, true, &mut proof)?;
    Ok(proof)
}

fn subproof(
    source: &impl NodeSource,
    old_end: u64,
    start: u64,
    end: u64,
    whole: bool,
    proof: &mut Vec<Hash>,
) -> Result<(), ProofError> {
    if old_end == end {
        if !whole {
            proof.push(subtree_hash(source, start, end)?);
        }
        return Ok(());
    }
    let mid = start + split_point(end - start);
    if old_end <= mid {
        subproof(source, old_end, start, mid, whole, proof)?;
        proof.push(subtree_hash(source, mid, end)?);
    } else {
        subproof(source, old_end, mid, end, false, proof)?;
        proof.push(subtree_hash(source, start, mid)?);
    }
    Ok(())
}

/// Checks an audit path (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    path: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::OutOfRange(format!(
            "leaf {index} is not in a tree of size {size}"
        )));
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut hash = *leaf;
    for sibling in path {
        if snode == 0 {
            return Err(ProofError::Mismatch("audit path is too long"));
        }
        if fnode & 1 == 1 || fnode == snode {
            hash = node_hash(sibling, &hash);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            hash = node_hash(&hash, sibling);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::Mismatch("audit path is too short"));
    }
    if &hash != root {
        return Err(ProofError::Mismatch("audit path leads to another root"));
    }
    Ok(())
}

/// Checks a consistency proof (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::OutOfRange(format!(
            "old size {old_size} is larger than new size {new_size}"
        )));
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(ProofError::Mismatch(
                "proof between equal sizes must be empty",
            ));
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::Mismatch("same size, different roots"))
        };
    }
    if old_size == 0 {
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(ProofError::Mismatch(
                "proof from the empty tree must be empty",
            ))
        };
    }
    if proof.is_empty() {
        return Err(ProofError::Mismatch("empty consistency proof"));
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let (mut fnode, mut snode) = (old_size - 1, new_size - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut old_hash, mut new_hash) = (path[0], path[0]);
    for c in &path[1..] {
        if snode == 0 {
            return Err(ProofError::Mismatch("consistency proof is too long"));
        }
        if fnode & 1 == 1 || fnode == snode {
            old_hash = node_hash(c, &old_hash);
            new_hash = node_hash(c, &new_hash);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            new_hash = node_hash(&new_hash, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::Mismatch("consistency proof is too short"));
    }
    if &old_hash != old_root {
        return Err(ProofError::Mismatch("proof does not lead to the old root"));
    }
    if &new_hash != new_root {
        return Err(ProofError::Mismatch("proof does not lead to the new root"));
    }
    Ok(())
}

/// The right edge of a tree being appended to: the perfect subtrees that make up
/// its leaves, largest first. Appending costs O(1) amortised, O(log n) at worst,
/// and yields every new perfect subtree so the caller can store it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// (level, hash) of each perfect subtree, largest first.
    peaks: Vec<(u8, Hash)>,
}

impl Frontier {
    /// The frontier of a tree of `size` leaves, read from `source`.
    pub fn load(source: &impl NodeSource, size: u64) -> Result<Self, ProofError> {
        let mut peaks = Vec::new();
        let mut start = 0u64;
        for level in (0..64u8).rev() {
            if size & (1u64 << level) != 0 {
                peaks.push((level, source.perfect(level, start >> level)?));
                start += 1u64 << level;
            }
        }
        Ok(Self { size, peaks })
    }

    /// Leaves so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash; calls `store(level, index, hash)` for the leaf and
    /// every perfect subtree it completes.
    pub fn push(&mut self, leaf: Hash, mut store: impl FnMut(u8, u64, &Hash)) {
        let index = self.size;
        store(0, index, &leaf);
        self.peaks.push((0, leaf));
        self.size += 1;
        while self.peaks.len() >= 2 {
            let (right_level, right) = self.peaks[self.peaks.len() - 1];
            let (left_level, left) = self.peaks[self.peaks.len() - 2];
            if left_level != right_level {
                break;
            }
            self.peaks.truncate(self.peaks.len() - 2);
            let level = left_level + 1;
            let hash = node_hash(&left, &right);
            store(level, index >> level, &hash);
            self.peaks.push((level, hash));
        }
    }

    /// The root of the tree so far.
    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some((_, last)) = peaks.next() else {
            return empty_root();
        };
        peaks.fold(*last, |right, (_, left)| node_hash(left, &right))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn split_point_is_the_largest_power_of_two_below() {
        assert_eq!(split_point(2), 1);
        assert_eq!(split_point(3), 2);
        assert_eq!(split_point(4), 2);
        assert_eq!(split_point(5), 4);
        assert_eq!(split_point(1 << 40), 1 << 39);
    }

    #[test]
    fn frontier_stores_every_perfect_subtree() {
        let mut nodes = HashMap::new();
        let mut frontier = Frontier::default();
        for i in 0..13u64 {
            frontier.push(leaf_hash(&i.to_be_bytes()), |l, x, h| {
                nodes.insert((l, x), *h);
            });
        }
        // 13 leaves: 13 + 6 + 3 + 1 perfect subtrees.
        assert_eq!(nodes.len(), 23);
        assert!(nodes.contains_key(&(3, 0)));
        assert!(!nodes.contains_key(&(3, 1)));
    }
}
