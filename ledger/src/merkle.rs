//! The RFC 6962 / RFC 9162 Merkle tree over leaf bytes, with SHA-256.
//!
//! Hashes are persisted in the dense layout of Go's `golang.org/x/mod/sumdb/tlog`: the hash of
//! the complete subtree at (level, n) is stored at `stored_hash_index(level, n)`, about two
//! hashes per leaf, so roots and proofs for any size read O(log n) stored hashes and never
//! re-hash the log.
//!
//! # Argument order
//!
//! One convention for every function here and in [`crate::store`]: the smaller, earlier
//! number comes first. Inclusion takes `(index, size)` (the leaf, then the tree it is proven
//! in), consistency takes `(old_size, new_size)`; these are the JSON shapes `{index,
//! tree_size}` and `{from, to}`. The helpers that walk a leaf range `[lo, hi)` take
//! `(lo, index, hi)` and `(lo, old_size, hi)`, again in increasing order. Go's tlog puts the
//! larger tree size first (`ProveRecord(t, n, r)`, `ProveTree(t, n, r)`); this module does not.

use sha2::{Digest, Sha256};

pub use crate::limits::TREE_SIZE_MAX;
use crate::Hash;

/// Why a root or proof could not be computed from the stored hashes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MerkleError {
    /// The leaf is not in the tree: `index >= size`.
    #[error("index {index} is out of range for tree size {size}")]
    IndexOutOfRange {
        /// The leaf asked for.
        index: u64,
        /// The tree it was asked in.
        size: u64,
    },
    /// The sizes asked for are impossible: larger than the tree, larger than
    /// [`TREE_SIZE_MAX`], or an old size above the new one.
    #[error("invalid sizes: {0}")]
    InvalidSizes(&'static str),
    /// A hash the tree of this size must have is not stored.
    #[error("stored hash {0} is missing")]
    MissingHash(u64),
    /// The hash storage answered something impossible (a wrong count or length).
    #[error("hash storage failed: {0}")]
    Storage(String),
    /// The hash storage (sled) could not be read.
    #[error("hash storage failed: {0}")]
    Io(#[source] sled::Error),
}

/// Why a proof does not verify.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum ProofError {
    /// The leaf cannot be in the tree: `index >= size`.
    #[error("index {index} is out of range for tree size {size}")]
    IndexOutOfRange {
        /// The leaf the proof is for.
        index: u64,
        /// The tree the proof is for.
        size: u64,
    },
    /// The old tree is larger than the new one.
    #[error("invalid sizes: old {old} > new {new}")]
    InvalidSizes {
        /// The size of the older tree.
        old: u64,
        /// The size of the newer tree.
        new: u64,
    },
    /// The proof has more or fewer hashes than the sizes call for.
    #[error("proof has the wrong length")]
    WrongLength,
    /// The proof does not lead to the root (or roots) given.
    #[error("proof does not match the root")]
    RootMismatch,
}

/// SHA-256(0x00 || leaf).
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(leaf);
    h.finalize().into()
}

/// SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 1 + 32 + 32];
    buf[0] = 0x01;
    buf[1..33].copy_from_slice(left);
    buf[33..].copy_from_slice(right);
    Sha256::digest(buf).into()
}

/// SHA-256("").
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Where the hash of the complete subtree at `level` with index `n` is stored
/// (tlog.StoredHashIndex).
pub fn stored_hash_index(level: u32, n: u64) -> u64 {
    // Level L's n'th hash is written right after level L+1's 2n+1'th hash: work down to the
    // level 0 ordering, where leaf n is at n + n/2 + n/4 + ..., then add the level back.
    // Saturating: out-of-range coordinates map to indexes beyond any stored tree.
    let mut n = n;
    for _ in 0..level {
        n = n.saturating_mul(2).saturating_add(1);
    }
    let mut i = 0u64;
    while n > 0 {
        i = i.saturating_add(n);
        n >>= 1;
    }
    i.saturating_add(u64::from(level))
}

/// The inverse of [`stored_hash_index`]: the (level, n) whose hash is stored at `index`
/// (Go tlog's `SplitStoredHashIndex`).
pub fn split_stored_hash_index(index: u64) -> (u32, u64) {
    // stored_hash_index(0, n) <= 2n, so the leaf whose hashes include `index` is in
    // [index/2, index/2 + log2(index)]; leaf n adds 1 + trailing_zeros(n + 1) hashes.
    let mut n = index / 2;
    let mut index_n = stored_hash_index(0, n);
    debug_assert!(index_n <= index);
    loop {
        let next = index_n + 1 + u64::from((n + 1).trailing_zeros());
        if next > index {
            break;
        }
        n += 1;
        index_n = next;
    }
    let level = (index - index_n) as u32;
    (level, n >> level)
}

/// How many hashes are stored for a tree of `n` leaves (tlog.StoredHashCount).
pub fn stored_hash_count(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    // The hashes up to the last leaf hash, plus one per subtree that leaf completed.
    stored_hash_index(0, n - 1).saturating_add(1 + u64::from((n - 1).trailing_ones()))
}

/// Reads stored hashes by index.
pub trait HashReader {
    /// The hashes stored at `indexes` ([`stored_hash_index`] order), one per index, in the
    /// order asked.
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, MerkleError>;
}

fn read_exact(r: &dyn HashReader, indexes: &[u64]) -> Result<Vec<Hash>, MerkleError> {
    if indexes.is_empty() {
        return Ok(Vec::new());
    }
    let hashes = r.read_hashes(indexes)?;
    if hashes.len() != indexes.len() {
        return Err(MerkleError::Storage(format!("read {} hashes for {} indexes", hashes.len(), indexes.len())));
    }
    Ok(hashes)
}

/// The hashes to store, in index order starting at `stored_hash_index(0, n)`, when leaf `n`
/// (0-based) with `leaf_hash` is appended to a tree of `n` leaves (tlog.StoredHashes).
pub fn stored_hashes_for_leaf(n: u64, leaf_hash: Hash, r: &dyn HashReader) -> Result<Vec<Hash>, MerkleError> {
    check_tree_size(n.saturating_add(1))?;
    // Each trailing 1 bit of n completes a subtree, consuming the left sibling's hash.
    let m = n.trailing_ones();
    let indexes: Vec<u64> = (0..m).rev().map(|i| stored_hash_index(i, (n >> i) - 1)).collect();
    let old = read_exact(r, &indexes)?;
    let mut hashes = Vec::with_capacity(1 + m as usize);
    let mut h = leaf_hash;
    hashes.push(h);
    for i in 0..m as usize {
        h = node_hash(&old[m as usize - 1 - i], &h);
        hashes.push(h);
    }
    Ok(hashes)
}

/// The root of the tree of the first `size` leaves (tlog.TreeHash). The empty tree's root
/// is SHA-256("") (RFC 6962), where Go's tlog uses 32 zero bytes.
pub fn tree_hash(size: u64, r: &dyn HashReader) -> Result<Hash, MerkleError> {
    check_tree_size(size)?;
    if size == 0 {
        return Ok(empty_root());
    }
    let mut indexes = Vec::with_capacity(64);
    sub_tree_index(0, size, &mut indexes);
    let hashes = read_exact(r, &indexes)?;
    let mut rest = hashes.as_slice();
    let h = sub_tree_hash(0, size, &mut rest);
    debug_assert!(rest.is_empty());
    Ok(h)
}

/// RFC 9162 inclusion proof (audit path) of leaf `index` in the tree of `size` leaves.
pub fn prove_inclusion(index: u64, size: u64, r: &dyn HashReader) -> Result<Vec<Hash>, MerkleError> {
    check_tree_size(size)?;
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    let mut indexes = Vec::with_capacity(128);
    leaf_proof_index(0, index, size, &mut indexes);
    let hashes = read_exact(r, &indexes)?;
    let mut rest = hashes.as_slice();
    let mut proof = Vec::with_capacity(64);
    leaf_proof(0, index, size, &mut rest, &mut proof);
    debug_assert!(rest.is_empty());
    Ok(proof)
}

/// RFC 9162 consistency proof from `old_size` to `new_size`. Equal sizes and `old_size` 0
/// have an empty proof.
pub fn prove_consistency(old_size: u64, new_size: u64, r: &dyn HashReader) -> Result<Vec<Hash>, MerkleError> {
    check_tree_size(new_size)?;
    if old_size > new_size {
        return Err(MerkleError::InvalidSizes("old size is larger than new size"));
    }
    if old_size == 0 || old_size == new_size {
        return Ok(Vec::new());
    }
    let mut indexes = Vec::with_capacity(128);
    tree_proof_index(0, old_size, new_size, &mut indexes);
    let hashes = read_exact(r, &indexes)?;
    let mut rest = hashes.as_slice();
    let mut proof = Vec::with_capacity(64);
    tree_proof(0, old_size, new_size, &mut rest, &mut proof);
    debug_assert!(rest.is_empty());
    Ok(proof)
}

fn check_tree_size(size: u64) -> Result<(), MerkleError> {
    if size > TREE_SIZE_MAX {
        return Err(MerkleError::InvalidSizes("tree size is larger than TREE_SIZE_MAX"));
    }
    Ok(())
}

/// The largest power of two strictly smaller than `n` (n >= 2), with its log2 (tlog.maxpow2).
fn maxpow2(n: u64) -> (u64, u32) {
    debug_assert!(n >= 2);
    let level = 63 - (n - 1).leading_zeros();
    (1 << level, level)
}

/// Indexes of the complete subtrees that make up leaves [lo, hi) (tlog.subTreeIndex).
fn sub_tree_index(mut lo: u64, hi: u64, need: &mut Vec<u64>) {
    while lo < hi {
        let (k, level) = maxpow2(hi - lo + 1);
        debug_assert_eq!(lo & (k - 1), 0);
        need.push(stored_hash_index(level, lo >> level));
        lo += k;
    }
}

/// Hash of leaves [lo, hi) from the hashes read for `sub_tree_index(lo, hi)` (tlog.subTreeHash).
fn sub_tree_hash(mut lo: u64, hi: u64, hashes: &mut &[Hash]) -> Hash {
    let mut num_tree = 0usize;
    while lo < hi {
        let (k, _) = maxpow2(hi - lo + 1);
        num_tree += 1;
        lo += k;
    }
    debug_assert!(num_tree >= 1 && hashes.len() >= num_tree);
    let (mine, rest) = hashes.split_at(num_tree);
    *hashes = rest;
    let mut h = mine[num_tree - 1];
    for left in mine[..num_tree - 1].iter().rev() {
        h = node_hash(left, &h);
    }
    h
}

/// Indexes of the stored hashes the inclusion proof of leaf `index` within leaves [lo, hi)
/// reads (tlog.leafProofIndex, which takes (lo, hi, n)).
fn leaf_proof_index(lo: u64, index: u64, hi: u64, need: &mut Vec<u64>) {
    debug_assert!(lo <= index && index < hi);
    if lo + 1 == hi {
        return;
    }
    let (k, _) = maxpow2(hi - lo);
    if index < lo + k {
        leaf_proof_index(lo, index, lo + k, need);
        sub_tree_index(lo + k, hi, need);
    } else {
        sub_tree_index(lo, lo + k, need);
        leaf_proof_index(lo + k, index, hi, need);
    }
}

/// The inclusion proof of leaf `index` within leaves [lo, hi), from the hashes read for
/// `leaf_proof_index(lo, index, hi)` (tlog.leafProof, which takes (lo, hi, n)).
fn leaf_proof(lo: u64, index: u64, hi: u64, hashes: &mut &[Hash], proof: &mut Vec<Hash>) {
    debug_assert!(lo <= index && index < hi);
    if lo + 1 == hi {
        return;
    }
    let (k, _) = maxpow2(hi - lo);
    let sibling = if index < lo + k {
        leaf_proof(lo, index, lo + k, hashes, proof);
        sub_tree_hash(lo + k, hi, hashes)
    } else {
        let th = sub_tree_hash(lo, lo + k, hashes);
        leaf_proof(lo + k, index, hi, hashes, proof);
        th
    };
    proof.push(sibling);
}

/// Indexes of the stored hashes the consistency proof from the first `old_size` leaves to
/// leaves [lo, hi) reads (tlog.treeProofIndex, which takes (lo, hi, n)).
fn tree_proof_index(lo: u64, old_size: u64, hi: u64, need: &mut Vec<u64>) {
    debug_assert!(lo < old_size && old_size <= hi);
    if old_size == hi {
        if lo != 0 {
            sub_tree_index(lo, hi, need);
        }
        return;
    }
    let (k, _) = maxpow2(hi - lo);
    if old_size <= lo + k {
        tree_proof_index(lo, old_size, lo + k, need);
        sub_tree_index(lo + k, hi, need);
    } else {
        sub_tree_index(lo, lo + k, need);
        tree_proof_index(lo + k, old_size, hi, need);
    }
}

/// The consistency proof from the first `old_size` leaves to leaves [lo, hi), from the
/// hashes read for `tree_proof_index(lo, old_size, hi)` (tlog.treeProof, which takes
/// (lo, hi, n)).
fn tree_proof(lo: u64, old_size: u64, hi: u64, hashes: &mut &[Hash], proof: &mut Vec<Hash>) {
    debug_assert!(lo < old_size && old_size <= hi);
    if old_size == hi {
        // Common ground: the verifier knows the old tree's hash when lo == 0.
        if lo != 0 {
            proof.push(sub_tree_hash(lo, hi, hashes));
        }
        return;
    }
    let (k, _) = maxpow2(hi - lo);
    let th = if old_size <= lo + k {
        tree_proof(lo, old_size, lo + k, hashes, proof);
        sub_tree_hash(lo + k, hi, hashes)
    } else {
        let th = sub_tree_hash(lo, lo + k, hashes);
        tree_proof(lo + k, old_size, hi, hashes, proof);
        th
    };
    proof.push(th);
}

/// (inner, border) lengths of the inclusion proof of `index` in a tree of `size` leaves.
fn decompose_inclusion(index: u64, size: u64) -> (usize, usize) {
    let inner = (64 - (index ^ (size - 1)).leading_zeros()) as usize;
    let border = index.checked_shr(inner as u32).unwrap_or(0).count_ones() as usize;
    (inner, border)
}

fn chain_inner(mut seed: Hash, proof: &[Hash], index: u64) -> Hash {
    for (i, h) in proof.iter().enumerate() {
        seed = if (index >> i) & 1 == 0 { node_hash(&seed, h) } else { node_hash(h, &seed) };
    }
    seed
}

fn chain_inner_right(mut seed: Hash, proof: &[Hash], index: u64) -> Hash {
    for (i, h) in proof.iter().enumerate() {
        if (index >> i) & 1 == 1 {
            seed = node_hash(h, &seed);
        }
    }
    seed
}

fn chain_border_right(mut seed: Hash, proof: &[Hash]) -> Hash {
    for h in proof {
        seed = node_hash(h, &seed);
    }
    seed
}

/// RFC 9162 section 2.1.3.2.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf_hash: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (inner, border) = decompose_inclusion(index, size);
    if proof.len() != inner + border {
        return Err(ProofError::WrongLength);
    }
    let h = chain_inner(*leaf_hash, &proof[..inner], index);
    let h = chain_border_right(h, &proof[inner..]);
    if h != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// RFC 9162 section 2.1.4.2. Equal sizes need an empty proof and equal roots; from size 0
/// the proof is empty and the old root must be the empty tree's root.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::InvalidSizes { old: old_size, new: new_size });
    }
    if old_size == new_size || old_size == 0 {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        // Size 0 has exactly one root; equal sizes need equal roots (also when both are 0).
        let old_is_empty_root = old_size != 0 || *old_root == empty_root();
        let matches = old_is_empty_root && (old_size != new_size || old_root == new_root);
        return if matches { Ok(()) } else { Err(ProofError::RootMismatch) };
    }
    // 0 < old_size < new_size. The proof is a suffix of the inclusion proof of leaf
    // old_size-1 in the new tree, starting at the level of the largest complete subtree of
    // the old tree that is aligned at its right edge.
    let (inner, border) = decompose_inclusion(old_size - 1, new_size);
    let shift = old_size.trailing_zeros() as usize;
    debug_assert!(shift < inner);
    let inner = inner - shift;
    let (seed, rest) = if old_size == 1 << shift {
        (*old_root, proof)
    } else {
        match proof.split_first() {
            Some((first, rest)) => (*first, rest),
            None => return Err(ProofError::WrongLength),
        }
    };
    if rest.len() != inner + border {
        return Err(ProofError::WrongLength);
    }
    let mask = (old_size - 1) >> shift;
    let h1 = chain_inner_right(seed, &rest[..inner], mask);
    let h1 = chain_border_right(h1, &rest[inner..]);
    if h1 != *old_root {
        return Err(ProofError::RootMismatch);
    }
    let h2 = chain_inner(seed, &rest[..inner], mask);
    let h2 = chain_border_right(h2, &rest[inner..]);
    if h2 != *new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// An in-memory stored-hash tree: for tests, verification and replay.
#[derive(Debug, Default, Clone)]
pub struct MemoryTree {
    hashes: Vec<Hash>,
    size: u64,
}

impl MemoryTree {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf's hash.
    pub fn push(&mut self, leaf_hash: Hash) {
        debug_assert_eq!(self.hashes.len() as u64, stored_hash_count(self.size));
        // The left siblings it reads are stored, by the invariant above.
        let new = stored_hashes_for_leaf(self.size, leaf_hash, self).expect("MemoryTree holds every stored hash"); // ok: own invariant
        self.hashes.extend_from_slice(&new);
        self.size += 1;
        debug_assert_eq!(self.hashes.len() as u64, stored_hash_count(self.size));
    }

    /// The root of all leaves pushed so far.
    pub fn root(&self) -> Hash {
        tree_hash(self.size, self).expect("MemoryTree holds every stored hash") // ok: own invariant
    }

    /// The root of the first `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash, MerkleError> {
        if size > self.size {
            return Err(MerkleError::InvalidSizes("size is larger than the tree"));
        }
        tree_hash(size, self)
    }

    /// Inclusion proof of `index` in the tree of the first `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, MerkleError> {
        if size > self.size {
            return Err(MerkleError::InvalidSizes("size is larger than the tree"));
        }
        prove_inclusion(index, size, self)
    }

    /// Consistency proof between the first `old_size` and `new_size` leaves.
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, MerkleError> {
        if new_size > self.size {
            return Err(MerkleError::InvalidSizes("size is larger than the tree"));
        }
        prove_consistency(old_size, new_size, self)
    }

    /// The stored hashes, in `stored_hash_index` order.
    pub fn stored_hashes(&self) -> &[Hash] {
        &self.hashes
    }
}

impl HashReader for MemoryTree {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, MerkleError> {
        indexes
            .iter()
            .map(|&i| {
                usize::try_from(i).ok().and_then(|i| self.hashes.get(i)).copied().ok_or(MerkleError::MissingHash(i))
            })
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The RFC 6962 test leaves of certificate-transparency's merkle_tree_test.
    pub(crate) const CT_LEAVES: [&str; 8] =
        ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];
    /// The roots of the first 1..=8 of those leaves.
    pub(crate) const CT_ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    #[test]
    fn ct_roots_through_memory_tree() {
        let mut tree = MemoryTree::new();
        assert_eq!(tree.root(), empty_root());
        for (leaf, root) in CT_LEAVES.iter().zip(CT_ROOTS) {
            tree.push(leaf_hash(&hex::decode(leaf).unwrap()));
            assert_eq!(hex::encode(tree.root()), root);
        }
        for (size, root) in (1..=8).zip(CT_ROOTS) {
            assert_eq!(hex::encode(tree.root_at(size).unwrap()), root);
        }
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(hex::encode(empty_root()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn stored_hash_layout_is_tlogs() {
        // Leaves 0..4 and the subtrees they complete, in storage order (tlog's layout).
        let order = [(0, 0), (0, 1), (1, 0), (0, 2), (0, 3), (1, 1), (2, 0), (0, 4)];
        for (i, (level, n)) in order.into_iter().enumerate() {
            assert_eq!(stored_hash_index(level, n), i as u64, "level {level} n {n}");
        }
        let counts = [0, 1, 3, 4, 7, 8, 10, 11, 15];
        for (n, count) in counts.into_iter().enumerate() {
            assert_eq!(stored_hash_count(n as u64), count, "n {n}");
        }
        // Every (level, n) maps to a distinct index below the count of a tree holding it.
        let mut seen = std::collections::HashSet::new();
        for level in 0..10u32 {
            for n in 0..(1024u64 >> level) {
                let i = stored_hash_index(level, n);
                assert!(seen.insert(i));
                assert!(i < stored_hash_count((n + 1) << level));
                assert_eq!(split_stored_hash_index(i), (level, n), "index {i}");
            }
        }
        // And every index below a count splits into a coordinate that maps back to it.
        for i in 0..stored_hash_count(5000) {
            let (level, n) = split_stored_hash_index(i);
            assert_eq!(stored_hash_index(level, n), i);
        }
    }

    #[test]
    fn proof_edge_cases_are_typed_errors() {
        let mut tree = MemoryTree::new();
        for i in 0..5u8 {
            tree.push(leaf_hash(&[i]));
        }
        let root = tree.root();
        assert_eq!(prove_inclusion(5, 5, &tree), Err(MerkleError::IndexOutOfRange { index: 5, size: 5 }));
        assert_eq!(prove_inclusion(0, 0, &tree), Err(MerkleError::IndexOutOfRange { index: 0, size: 0 }));
        assert!(matches!(prove_consistency(4, 3, &tree), Err(MerkleError::InvalidSizes(_))));
        assert_eq!(prove_consistency(5, 5, &tree).unwrap(), Vec::<Hash>::new());
        assert_eq!(prove_consistency(0, 5, &tree).unwrap(), Vec::<Hash>::new());
        // Reading beyond what is stored is an error, not a panic.
        assert!(matches!(tree_hash(6, &tree), Err(MerkleError::MissingHash(_))));
        assert!(matches!(tree.inclusion_proof(0, 6), Err(MerkleError::InvalidSizes(_))));

        let leaf = leaf_hash(&[0]);
        let proof = prove_inclusion(0, 5, &tree).unwrap();
        assert_eq!(verify_inclusion(0, 5, &leaf, &proof, &root), Ok(()));
        assert_eq!(
            verify_inclusion(5, 5, &leaf, &proof, &root),
            Err(ProofError::IndexOutOfRange { index: 5, size: 5 })
        );
        assert_eq!(verify_inclusion(0, 0, &leaf, &[], &root), Err(ProofError::IndexOutOfRange { index: 0, size: 0 }));
        assert_eq!(verify_inclusion(0, 5, &leaf, &proof[..2], &root), Err(ProofError::WrongLength));
        let mut longer = proof.clone();
        longer.push(root);
        assert_eq!(verify_inclusion(0, 5, &leaf, &longer, &root), Err(ProofError::WrongLength));
        assert_eq!(verify_inclusion(0, 5, &leaf_hash(&[9]), &proof, &root), Err(ProofError::RootMismatch));
        // A single-leaf tree: the empty proof, and the root is the leaf hash.
        assert_eq!(verify_inclusion(0, 1, &leaf, &[], &leaf), Ok(()));

        let old = tree.root_at(3).unwrap();
        let proof = prove_consistency(3, 5, &tree).unwrap();
        assert_eq!(verify_consistency(3, 5, &old, &root, &proof), Ok(()));
        assert_eq!(verify_consistency(5, 3, &root, &old, &proof), Err(ProofError::InvalidSizes { old: 5, new: 3 }));
        assert_eq!(verify_consistency(3, 5, &old, &root, &proof[1..]), Err(ProofError::WrongLength));
        assert_eq!(verify_consistency(3, 5, &old, &root, &[]), Err(ProofError::WrongLength));
        assert_eq!(verify_consistency(3, 5, &root, &root, &proof), Err(ProofError::RootMismatch));
        // Equal sizes: empty proof, equal roots.
        assert_eq!(verify_consistency(5, 5, &root, &root, &[]), Ok(()));
        assert_eq!(verify_consistency(5, 5, &root, &old, &[]), Err(ProofError::RootMismatch));
        assert_eq!(verify_consistency(5, 5, &root, &root, &[root]), Err(ProofError::WrongLength));
        // From the empty tree: empty proof, and the old root is SHA-256("").
        assert_eq!(verify_consistency(0, 5, &empty_root(), &root, &[]), Ok(()));
        assert_eq!(verify_consistency(0, 5, &root, &root, &[]), Err(ProofError::RootMismatch));
        assert_eq!(verify_consistency(0, 5, &empty_root(), &root, &[root]), Err(ProofError::WrongLength));
        assert_eq!(verify_consistency(0, 0, &empty_root(), &empty_root(), &[]), Ok(()));
    }

    #[test]
    fn huge_sizes_do_not_panic() {
        let h = [0u8; 32];
        assert_eq!(verify_inclusion(u64::MAX - 1, u64::MAX, &h, &[], &h), Err(ProofError::WrongLength));
        assert_eq!(verify_consistency(1, u64::MAX, &h, &h, &[]), Err(ProofError::WrongLength));
        assert_eq!(verify_consistency(u64::MAX - 1, u64::MAX, &h, &h, &[h; 3]), Err(ProofError::WrongLength));
        let tree = MemoryTree::new();
        assert!(matches!(prove_inclusion(u64::MAX - 1, u64::MAX, &tree), Err(MerkleError::InvalidSizes(_))));
        assert!(matches!(prove_consistency(u64::MAX - 1, u64::MAX, &tree), Err(MerkleError::InvalidSizes(_))));
        assert!(matches!(tree_hash(u64::MAX, &tree), Err(MerkleError::InvalidSizes(_))));
        let max = TREE_SIZE_MAX;
        assert!(matches!(prove_inclusion(max - 1, max, &tree), Err(MerkleError::MissingHash(_))));
        assert!(matches!(prove_consistency(max - 1, max, &tree), Err(MerkleError::MissingHash(_))));
        assert!(matches!(tree_hash(max, &tree), Err(MerkleError::MissingHash(_))));
        assert!(matches!(stored_hashes_for_leaf(max - 1, h, &tree), Err(MerkleError::MissingHash(_))));
        assert_eq!(stored_hash_index(70, u64::MAX), u64::MAX);
    }
}
