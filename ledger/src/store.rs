//! The append-only store on sled: records by seq and by statement id, and the Merkle tree's
//! stored hashes, written together and made durable with one flush per batch.

use std::path::Path;

use crate::merkle::MerkleError;
use crate::record::{Record, RecordError};
use crate::Hash;

/// At most this many entries are appended with one flush.
pub const BATCH_ENTRIES_MAX: usize = 4096;
/// `range` returns at most this many records.
pub const RANGE_RECORDS_MAX: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage I/O failed: {0}")]
    Io(String),
    #[error("stored data is corrupt at {what}: {reason}")]
    Corrupt { what: String, reason: String },
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Merkle(#[from] MerkleError),
    #[error("batch has {0} entries, at most 4096 are allowed")]
    BatchTooLarge(usize),
}

/// One envelope to append.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The statement id: the idempotency key.
    pub id: String,
    /// The canonical envelope JSON.
    pub envelope: Vec<u8>,
    pub received_at_ms: i64,
}

/// What `append` did with one entry, in batch order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// A new record.
    Appended(Record),
    /// The same id with the same envelope bytes was already logged: the original record.
    Duplicate(Record),
    /// The same id was logged with other bytes, at this seq. Nothing was written for it.
    Conflict { seq: u64 },
}

/// A handle to the store. Cheap to clone; reads may run on any thread while one writer
/// appends.
#[derive(Clone)]
pub struct Store {
    // Private: sled handles and the append state behind a mutex.
}

impl Store {
    /// Opens or creates a store, resuming at the right seq and chain head.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        todo!()
    }

    /// Appends a batch: assigns dense seqs, links the chain, writes records, id index and
    /// stored hashes atomically, then flushes once. Returns after the batch is durable.
    pub fn append(&self, batch: &[Entry]) -> Result<Vec<AppendOutcome>, StoreError> {
        todo!()
    }

    /// The number of durable records.
    pub fn size(&self) -> u64 {
        todo!()
    }

    /// Chain hash of the last record (32 zero bytes when empty).
    pub fn head(&self) -> Hash {
        todo!()
    }

    /// Merkle root of the first `size` records.
    pub fn root_at(&self, size: u64) -> Result<Hash, StoreError> {
        todo!()
    }

    pub fn get(&self, seq: u64) -> Result<Option<Record>, StoreError> {
        todo!()
    }

    /// Records from `from` (inclusive), at most `limit` (capped at RANGE_RECORDS_MAX).
    pub fn range(&self, from: u64, limit: usize) -> Result<Vec<Record>, StoreError> {
        todo!()
    }

    pub fn get_by_id(&self, id: &str) -> Result<Option<Record>, StoreError> {
        todo!()
    }

    /// Inclusion proof of `index` in the tree of `size` records.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, StoreError> {
        todo!()
    }

    /// Consistency proof between sizes `from` <= `to`.
    pub fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, StoreError> {
        todo!()
    }

    /// Stores an opaque blob next to the log (projection snapshots); not part of the log.
    pub fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        todo!()
    }

    pub fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        todo!()
    }
}
