//! Records: the leaf bytes of SPEC.md section 5, and their BLAKE3 chain hash and RFC 6962
//! leaf hash.
//!
//! ```text
//! leaf = 0x01 || seq u64 BE || prev [32] || received_at_ms i64 BE || len u32 BE || envelope
//! ```

use crate::Hash;

pub use crate::limits::LEAF_BYTES_MAX;

/// The leaf format version byte; another value is refused, so the format can change later.
pub const LEAF_VERSION: u8 = 0x01;
/// version + seq + prev + received_at_ms + len.
pub const LEAF_HEADER_BYTES: usize = 1 + 8 + 32 + 8 + 4;

/// Why bytes are not a leaf this ledger writes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    /// Shorter than the header (the length).
    #[error("leaf is truncated ({0} bytes)")]
    Truncated(usize),
    /// Longer than [`LEAF_BYTES_MAX`] (the length).
    #[error("leaf is too large ({0} bytes, at most {LEAF_BYTES_MAX})")]
    TooLarge(usize),
    /// A version byte other than [`LEAF_VERSION`].
    #[error("unknown leaf format version {0}")]
    Version(u8),
    /// The length field disagrees with the bytes that follow the header.
    #[error("leaf length field says {stated} envelope bytes, {actual} follow")]
    Length {
        /// The envelope length the header states.
        stated: usize,
        /// The envelope bytes there are.
        actual: usize,
    },
}

/// One record of the log. The leaf bytes are kept, so hashing never re-encodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The record's position in the log, from 0.
    pub seq: u64,
    /// The chain hash of the record before (32 zero bytes for seq 0).
    pub prev: Hash,
    /// The server clock when the envelope was accepted (Unix milliseconds).
    pub received_at_ms: i64,
    leaf: Vec<u8>,
}

impl Record {
    /// Builds a record around canonical envelope JSON.
    pub fn new(seq: u64, prev: Hash, received_at_ms: i64, envelope: &[u8]) -> Result<Record, RecordError> {
        let total = LEAF_HEADER_BYTES + envelope.len();
        if total > LEAF_BYTES_MAX {
            return Err(RecordError::TooLarge(total));
        }
        // Fits in u32: total <= LEAF_BYTES_MAX.
        let len = envelope.len() as u32;
        let mut leaf = Vec::with_capacity(total);
        leaf.push(LEAF_VERSION);
        leaf.extend_from_slice(&seq.to_be_bytes());
        leaf.extend_from_slice(&prev);
        leaf.extend_from_slice(&received_at_ms.to_be_bytes());
        leaf.extend_from_slice(&len.to_be_bytes());
        leaf.extend_from_slice(envelope);
        debug_assert_eq!(leaf.len(), total);
        Ok(Record { seq, prev, received_at_ms, leaf })
    }

    /// Decodes leaf bytes; the envelope is not parsed here.
    pub fn decode(leaf: &[u8]) -> Result<Record, RecordError> {
        let (seq, prev, received_at_ms) = parse_header(leaf)?;
        Ok(Record { seq, prev, received_at_ms, leaf: leaf.to_vec() })
    }

    /// Like [`Record::decode`], taking ownership of leaf bytes (no copy).
    pub fn decode_vec(leaf: Vec<u8>) -> Result<Record, RecordError> {
        let (seq, prev, received_at_ms) = parse_header(&leaf)?;
        Ok(Record { seq, prev, received_at_ms, leaf })
    }

    /// The leaf bytes: what the chain hash and the Merkle leaf hash are over.
    pub fn leaf(&self) -> &[u8] {
        &self.leaf
    }

    /// The canonical envelope JSON inside the leaf.
    pub fn envelope(&self) -> &[u8] {
        &self.leaf[LEAF_HEADER_BYTES..]
    }

    /// BLAKE3(leaf).
    pub fn chain_hash(&self) -> Hash {
        chain_hash(&self.leaf)
    }

    /// SHA-256(0x00 || leaf).
    pub fn leaf_hash(&self) -> Hash {
        crate::merkle::leaf_hash(&self.leaf)
    }
}

/// BLAKE3(leaf): the chain hash of the record with these leaf bytes.
pub fn chain_hash(leaf: &[u8]) -> Hash {
    *blake3::hash(leaf).as_bytes()
}

/// Checks the leaf's size, version and length field; returns seq, prev and received_at_ms.
fn parse_header(leaf: &[u8]) -> Result<(u64, Hash, i64), RecordError> {
    if leaf.len() > LEAF_BYTES_MAX {
        return Err(RecordError::TooLarge(leaf.len()));
    }
    if leaf.len() < LEAF_HEADER_BYTES {
        return Err(RecordError::Truncated(leaf.len()));
    }
    if leaf[0] != LEAF_VERSION {
        return Err(RecordError::Version(leaf[0]));
    }
    let seq = u64::from_be_bytes(field(leaf, 1));
    let prev: Hash = field(leaf, 9);
    let received_at_ms = i64::from_be_bytes(field(leaf, 41));
    let stated = u32::from_be_bytes(field(leaf, 49)) as usize;
    let actual = leaf.len() - LEAF_HEADER_BYTES;
    if stated != actual {
        return Err(RecordError::Length { stated, actual });
    }
    Ok((seq, prev, received_at_ms))
}

/// Copies the fixed-size field at `at`; callers have checked the length.
fn field<const N: usize>(leaf: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&leaf[at..at + N]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        Record::new(7, [3u8; 32], -5, br#"{"payloadType":"x"}"#).unwrap()
    }

    #[test]
    fn leaf_layout_is_the_design_encoding() {
        let r = sample();
        let leaf = r.leaf();
        assert_eq!(leaf[0], 0x01);
        assert_eq!(&leaf[1..9], &7u64.to_be_bytes());
        assert_eq!(&leaf[9..41], &[3u8; 32]);
        assert_eq!(&leaf[41..49], &(-5i64).to_be_bytes());
        assert_eq!(&leaf[49..53], &19u32.to_be_bytes());
        assert_eq!(r.envelope(), br#"{"payloadType":"x"}"#);
        assert_eq!(Record::decode(leaf).unwrap(), r);
        assert_eq!(Record::decode_vec(leaf.to_vec()).unwrap(), r);
    }

    #[test]
    fn hashes_are_blake3_and_rfc6962_leaf_hash() {
        use sha2::{Digest, Sha256};
        let r = sample();
        assert_eq!(r.chain_hash(), *blake3::hash(r.leaf()).as_bytes());
        let mut h = Sha256::new();
        h.update([0u8]);
        h.update(r.leaf());
        let want: Hash = h.finalize().into();
        assert_eq!(r.leaf_hash(), want);
        assert_ne!(r.leaf_hash(), r.chain_hash());
    }

    #[test]
    fn bad_leaves_are_typed_errors() {
        let r = sample();
        let leaf = r.leaf().to_vec();
        assert_eq!(Record::decode(&[]), Err(RecordError::Truncated(0)));
        assert_eq!(Record::decode(&leaf[..52]), Err(RecordError::Truncated(52)));
        // Truncated inside the envelope: the length field no longer matches.
        assert_eq!(Record::decode(&leaf[..60]), Err(RecordError::Length { stated: 19, actual: 7 }));
        let mut trailing = leaf.clone();
        trailing.push(b' ');
        assert_eq!(Record::decode(&trailing), Err(RecordError::Length { stated: 19, actual: 20 }));
        let mut v2 = leaf.clone();
        v2[0] = 2;
        assert_eq!(Record::decode(&v2), Err(RecordError::Version(2)));
        assert_eq!(Record::decode(&vec![1u8; LEAF_BYTES_MAX + 1]), Err(RecordError::TooLarge(LEAF_BYTES_MAX + 1)));
    }

    #[test]
    fn leaf_size_limit_is_exact() {
        let max_envelope = LEAF_BYTES_MAX - LEAF_HEADER_BYTES;
        let r = Record::new(0, [0; 32], 0, &vec![b'a'; max_envelope]).unwrap();
        assert_eq!(r.leaf().len(), LEAF_BYTES_MAX);
        assert_eq!(Record::decode(r.leaf()).unwrap(), r);
        assert_eq!(
            Record::new(0, [0; 32], 0, &vec![b'a'; max_envelope + 1]),
            Err(RecordError::TooLarge(LEAF_BYTES_MAX + 1))
        );
    }
}
