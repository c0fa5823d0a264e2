//! Every limit of the ledger, as a named constant (units last): the bounds that hostile input
//! meets, in one place.
//!
//! The modules that enforce a limit re-export it under its old path
//! (`ledger::store::BATCH_ENTRIES_MAX`, `ledger::dsse::SIGNATURES_MAX`, ...). A limit that
//! follows from another one is computed from it here, never copied.

use crate::record::LEAF_HEADER_BYTES;

/// A leaf (record header and canonical envelope) is at most this many bytes: one record stays
/// one small sled value and one HTTP body.
pub const LEAF_BYTES_MAX: usize = 65_535;
/// Envelopes larger than a leaf can hold are rejected before parsing. The canonical form is
/// never longer than the parsed text, so a parsed envelope always fits in a leaf.
pub const ENVELOPE_BYTES_MAX: usize = LEAF_BYTES_MAX - LEAF_HEADER_BYTES;
/// An envelope carries 1 to this many signatures (past it, signatures are only counted, so a
/// hostile envelope costs no decoding).
pub const ENVELOPE_SIGNATURES_MAX: usize = 16;

/// Statement ids (also the store's idempotency keys) are 1 to this many bytes.
pub const STATEMENT_ID_BYTES_MAX: usize = 128;
/// Actor names (`^[a-z0-9][a-z0-9._-]{0,63}$`) are 1 to this many bytes.
pub const ACTOR_NAME_BYTES_MAX: usize = 64;
/// Statement JSON nested deeper than this is rejected before parsing (hostile input).
pub const JSON_DEPTH_MAX: usize = 32;

/// Signed-note key names longer than this are rejected (actor names are at most
/// [`ACTOR_NAME_BYTES_MAX`], log origins a bit more).
pub const KEY_NAME_BYTES_MAX: usize = 256;
/// A secret file (a private key, a webhook secret) is at most this many bytes; anything
/// larger is the wrong file.
pub const SECRET_FILE_BYTES_MAX: usize = 4096;
/// Notes larger than this are rejected before parsing.
pub const NOTE_BYTES_MAX: usize = 1 << 20;
/// A note to sign holds at most this much text, so the signed note (text plus signature
/// lines) stays below [`NOTE_BYTES_MAX`].
pub const NOTE_TEXT_BYTES_MAX: usize = NOTE_BYTES_MAX / 2;
/// At most this many signature lines of a note are read.
pub const NOTE_SIGNATURES_MAX: usize = 100;
/// A checkpoint's tree size is ASCII decimal without leading zeros: at most as many digits
/// as `u64::MAX` has (20).
pub const CHECKPOINT_SIZE_DIGITS_MAX: usize = u64::MAX.ilog10() as usize + 1;

/// Trees larger than this are refused by the proving functions, so index arithmetic never
/// overflows (a stored hash index is below twice the size).
pub const TREE_SIZE_MAX: u64 = 1 << 62;

/// At most this many entries are appended with one flush.
pub const BATCH_ENTRIES_MAX: usize = 4096;
/// `Store::range` returns at most this many records.
pub const RANGE_RECORDS_MAX: usize = 10_000;
/// Meta keys (names of blobs stored next to the log) are 1 to this many bytes.
pub const META_KEY_BYTES_MAX: usize = 256;
/// Keys of a [`crate::seen::SeenSet`] (e.g. webhook delivery ids) are 1 to this many bytes.
pub const SEEN_KEY_BYTES_MAX: usize = 128;
/// sled's page cache (records, the id index and the hash tiles proofs read).
pub const STORE_CACHE_BYTES: u64 = 64 << 20;
/// How long `Store::open` waits for the lock of a store that was just closed in this process
/// (sled's background threads release it shortly after the last handle is dropped).
pub const STORE_OPEN_LOCK_WAIT_MS: u64 = 5_000;

// The leaf's length field is a u32.
const _: () = assert!(LEAF_BYTES_MAX <= u32::MAX as usize);
// Every actor's key carries the actor's name.
const _: () = assert!(ACTOR_NAME_BYTES_MAX <= KEY_NAME_BYTES_MAX);
