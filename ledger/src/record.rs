//! Records: the leaf bytes of DESIGN.md section 5, and their BLAKE3 chain hash and RFC 6962
//! leaf hash.
//!
//! ```text
//! leaf = 0x01 || seq u64 BE || prev [32] || received_at_ms i64 BE || len u32 BE || envelope
//! ```

use crate::Hash;

pub const LEAF_VERSION: u8 = 0x01;
/// A leaf is at most 65,535 bytes.
pub const LEAF_BYTES_MAX: usize = 65_535;
/// version + seq + prev + received_at_ms + len.
pub const LEAF_HEADER_BYTES: usize = 1 + 8 + 32 + 8 + 4;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("leaf is truncated ({0} bytes)")]
    Truncated(usize),
    #[error("leaf is too large ({0} bytes, at most 65535)")]
    TooLarge(usize),
    #[error("unknown leaf format version {0}")]
    Version(u8),
    #[error("leaf length field says {stated} envelope bytes, {actual} follow")]
    Length { stated: usize, actual: usize },
}

/// One record of the log. The leaf bytes are kept, so hashing never re-encodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub prev: Hash,
    pub received_at_ms: i64,
    leaf: Vec<u8>,
}

impl Record {
    /// Builds a record around canonical envelope JSON.
    pub fn new(seq: u64, prev: Hash, received_at_ms: i64, envelope: &[u8]) -> Result<Record, RecordError> {
        todo!()
    }

    /// Decodes leaf bytes; the envelope is not parsed here.
    pub fn decode(leaf: &[u8]) -> Result<Record, RecordError> {
        todo!()
    }

    pub fn leaf(&self) -> &[u8] {
        &self.leaf
    }

    /// The canonical envelope JSON inside the leaf.
    pub fn envelope(&self) -> &[u8] {
        &self.leaf[LEAF_HEADER_BYTES..]
    }

    /// BLAKE3(leaf).
    pub fn chain_hash(&self) -> Hash {
        todo!()
    }

    /// SHA-256(0x00 || leaf).
    pub fn leaf_hash(&self) -> Hash {
        crate::merkle::leaf_hash(&self.leaf)
    }
}
