//! The RFC 6962 / RFC 9162 Merkle tree over leaf bytes, with SHA-256.
//!
//! Hashes are persisted in the dense layout of Go's `golang.org/x/mod/sumdb/tlog`: the hash of
//! the complete subtree at (level, n) is stored at `stored_hash_index(level, n)`, about two
//! hashes per leaf, so roots and proofs for any size read O(log n) stored hashes and never
//! re-hash the log.

use crate::Hash;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MerkleError {
    #[error("index {index} is out of range for tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("invalid sizes: {0}")]
    InvalidSizes(&'static str),
    #[error("stored hash {0} is missing")]
    MissingHash(u64),
    #[error("hash storage failed: {0}")]
    Storage(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProofError {
    #[error("index {index} is out of range for tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("invalid sizes: old {old} > new {new}")]
    InvalidSizes { old: u64, new: u64 },
    #[error("proof has the wrong length")]
    WrongLength,
    #[error("proof does not match the root")]
    RootMismatch,
}

/// SHA-256(0x00 || leaf).
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    todo!()
}

/// SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    todo!()
}

/// SHA-256("").
pub fn empty_root() -> Hash {
    todo!()
}

/// Where the hash of the complete subtree at `level` with index `n` is stored
/// (tlog.StoredHashIndex).
pub fn stored_hash_index(level: u32, n: u64) -> u64 {
    todo!()
}

/// How many hashes are stored for a tree of `n` leaves (tlog.StoredHashCount).
pub fn stored_hash_count(n: u64) -> u64 {
    todo!()
}

/// Reads stored hashes by index.
pub trait HashReader {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, MerkleError>;
}

/// The hashes to store, in index order starting at `stored_hash_index(0, n)`, when leaf `n`
/// (0-based) with `leaf_hash` is appended to a tree of `n` leaves (tlog.StoredHashes).
pub fn stored_hashes_for_leaf(n: u64, leaf_hash: Hash, r: &dyn HashReader) -> Result<Vec<Hash>, MerkleError> {
    todo!()
}

/// The root of the tree of the first `size` leaves (tlog.TreeHash).
pub fn tree_hash(size: u64, r: &dyn HashReader) -> Result<Hash, MerkleError> {
    todo!()
}

/// RFC 9162 inclusion proof (audit path) of leaf `index` in the tree of `size` leaves.
pub fn prove_inclusion(size: u64, index: u64, r: &dyn HashReader) -> Result<Vec<Hash>, MerkleError> {
    todo!()
}

/// RFC 9162 consistency proof from `old_size` to `new_size`.
pub fn prove_consistency(new_size: u64, old_size: u64, r: &dyn HashReader) -> Result<Vec<Hash>, MerkleError> {
    todo!()
}

/// RFC 9162 section 2.1.3.2.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf_hash: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    todo!()
}

/// RFC 9162 section 2.1.4.2.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    todo!()
}

/// An in-memory stored-hash tree: for tests, verification and replay.
#[derive(Debug, Default, Clone)]
pub struct MemoryTree {
    hashes: Vec<Hash>,
    size: u64,
}

impl MemoryTree {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf's hash.
    pub fn push(&mut self, leaf_hash: Hash) {
        todo!()
    }

    pub fn root(&self) -> Hash {
        todo!()
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
