//! The append-only store on sled: records by seq and by statement id, and the Merkle tree's
//! stored hashes, written together and made durable with one flush per batch.
//!
//! On disk: one sled tree, `log`, with key prefixes
//!
//! ```text
//! "f"                    format marker, STORE_FORMAT
//! "r" || seq u64 BE      leaf bytes of record seq
//! "i" || statement id    seq u64 BE
//! "h" || tile u64 BE     stored Merkle hashes [256·tile, 256·tile + 256), 32 bytes each
//! "m" || key             meta blobs (projection snapshots), not part of the log
//! ```
//!
//! A batch writes its records, ids and the touched hash tiles (the last partial tile is
//! rewritten) with one atomic `apply_batch`, then one flush: after a crash either the whole
//! batch is there or none of it. In memory the store keeps the last hash tile and the hashes
//! of levels 4 and up (about 4 MB per million records, loaded from the ~8k tiles per million
//! records at open); a proof reads its lowest levels from one or two tiles in sled.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use crate::merkle::{self, HashReader, MerkleError};
use crate::record::{Record, RecordError, LEAF_BYTES_MAX, LEAF_HEADER_BYTES};
use crate::statement::STATEMENT_ID_BYTES_MAX;
use crate::Hash;

pub use crate::limits::{BATCH_ENTRIES_MAX, META_KEY_BYTES_MAX, RANGE_RECORDS_MAX};
pub use crate::limits::{STORE_CACHE_BYTES as CACHE_BYTES, STORE_OPEN_LOCK_WAIT_MS as OPEN_LOCK_WAIT_MS};

/// Why a store operation failed. Once a write fails during an append, later appends get
/// [`StoreError::Failed`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled could not read or write.
    #[error("storage I/O failed: {0}")]
    Io(#[source] sled::Error),
    /// What is on disk is not what this store writes: the store must not be used as is.
    #[error("stored data is corrupt at {what}: {reason}")]
    Corrupt {
        /// Where: a record, a hash tile, the format marker, sled itself.
        what: String,
        /// What is wrong with it.
        reason: String,
        /// The error that found it, when one did (sled's corruption report, the record
        /// decoder, the Merkle tree).
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// A record could not be built (the entry is too large).
    #[error(transparent)]
    Record(#[from] RecordError),
    /// A root or proof could not be computed (sizes out of range, hashes unreadable).
    #[error(transparent)]
    Merkle(#[from] MerkleError),
    /// The batch has more than [`BATCH_ENTRIES_MAX`] entries; nothing was written.
    #[error("batch has {0} entries, at most {BATCH_ENTRIES_MAX} are allowed")]
    BatchTooLarge(usize),
    /// A batch entry is invalid; nothing of the batch was written.
    #[error("batch entry {index} is invalid: {reason}")]
    InvalidEntry {
        /// The entry's position in the batch.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A meta key is empty or longer than [`META_KEY_BYTES_MAX`] bytes (its length).
    #[error("invalid meta key of {0} bytes: must be 1 to {META_KEY_BYTES_MAX} bytes")]
    InvalidMetaKey(usize),
    /// A seen-set key is empty or longer than [`crate::limits::SEEN_KEY_BYTES_MAX`] bytes (its length).
    #[error("invalid key of {0} bytes: must be 1 to {max} bytes", max = crate::limits::SEEN_KEY_BYTES_MAX)]
    InvalidSeenKey(usize),
    /// The log of record (PostgreSQL) holds fewer records than this node's replica: the
    /// database is behind what this node saw (an old backup restored, a failover that lost
    /// commits). Nothing may be written until an operator looks.
    #[error("the database holds {upstream} records but this node's replica holds {local}: the database is behind what this node saw (restored from an old backup?); refusing to continue another history")]
    UpstreamBehind {
        /// Records in the local replica.
        local: u64,
        /// Records in the log of record.
        upstream: u64,
    },
    /// The log of record holds fewer records than a checkpoint recorded in it was signed for:
    /// restored from an older backup after a node vouched for more.
    #[error("the database holds {upstream} records but a checkpoint of {checkpoint} records was signed for it: the database is behind (restored from an older backup?); refusing to continue another history")]
    CheckpointAhead {
        /// The size of the largest checkpoint recorded.
        checkpoint: u64,
        /// Records in the log of record.
        upstream: u64,
    },
    /// The log of record's record `seq` does not link to this replica's history.
    #[error("the database's record {seq} is not the one this node's replica holds: another history")]
    Diverged {
        /// The first seq that differs.
        seq: u64,
    },
    /// The log of record moved on under this writer (another node committed, or another
    /// leader took over): nothing of the batch was written.
    #[error("the log head moved: {0}")]
    HeadMoved(String),
    /// The log of record (PostgreSQL) failed or could not be reached.
    #[error("the database failed: {0}")]
    Upstream(String),
    /// An earlier append failed after reaching sled, so memory may be ahead of the disk.
    #[error("an earlier write failed; the store must be reopened")]
    Failed,
    /// Another process (a running server, an export or verify of the same directory) holds
    /// the store's lock; `open` waited [`OPEN_LOCK_WAIT_MS`] for it.
    #[error("{path} is locked by another process (another grantline server or command is using it)")]
    Locked {
        /// The store's directory, as given.
        path: String,
        /// sled's report of the failed lock.
        #[source]
        source: sled::Error,
    },
}

/// Written under key "f"; a store with another marker is not opened.
pub const STORE_FORMAT: &[u8] = b"grantline-ledger-store/1";
/// Stored Merkle hashes are persisted in tiles of this many hashes.
pub const TILE_HASHES: u64 = 256;
/// How often `open` retries while waiting for the lock.
const OPEN_LOCK_RETRY_MS: u64 = 20;

const TREE_NAME: &str = "log";
const KEY_FORMAT: &[u8] = b"f";
const PREFIX_RECORD: u8 = b'r';
const PREFIX_ID: u8 = b'i';
const PREFIX_TILE: u8 = b'h';
const PREFIX_META: u8 = b'm';
const HASH_BYTES: usize = 32;
/// A replica catches up in pages of this many records (bounded memory however far behind).
pub const CATCH_UP_RECORDS_MAX: usize = 1024;
/// Stored hashes of this level and up are also kept in memory: 1/8 of all stored hashes
/// (4 MB per million records), and a proof's reads from sled stay within levels 0 to 3.
const UPPER_LEVEL_MIN: u32 = 4;

fn record_key(seq: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = PREFIX_RECORD;
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn tile_key(tile: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = PREFIX_TILE;
    k[1..].copy_from_slice(&tile.to_be_bytes());
    k
}

fn id_key(id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + id.len());
    k.push(PREFIX_ID);
    k.extend_from_slice(id.as_bytes());
    k
}

fn meta_key(key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(PREFIX_META);
    k.extend_from_slice(key.as_bytes());
    k
}

/// Opens sled, retrying briefly while another handle in this process still holds the lock;
/// a lock still held after [`OPEN_LOCK_WAIT_MS`] is [`StoreError::Locked`].
fn open_sled(path: &Path) -> Result<sled::Db, StoreError> {
    // Every write is flushed explicitly, so sled's periodic flusher thread is not needed.
    let config = sled::Config::new().path(path).cache_capacity(CACHE_BYTES).flush_every_ms(None);
    let mut waited_ms = 0;
    loop {
        match config.open() {
            Ok(db) => return Ok(db),
            // sled reports a held lock only in the message of an `Other` I/O error.
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                if waited_ms >= OPEN_LOCK_WAIT_MS {
                    return Err(StoreError::Locked { path: path.display().to_string(), source: sled::Error::Io(e) });
                }
                std::thread::sleep(std::time::Duration::from_millis(OPEN_LOCK_RETRY_MS));
                waited_ms += OPEN_LOCK_RETRY_MS;
            }
            Err(e) => return Err(io(e)),
        }
    }
}

fn io(e: sled::Error) -> StoreError {
    match e {
        sled::Error::Corruption { .. } => corrupt_by("sled", e),
        other => StoreError::Io(other),
    }
}

fn corrupt(what: impl Into<String>, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt { what: what.into(), reason: reason.into(), source: None }
}

/// Corruption that `source` found; its message is the reason.
fn corrupt_by(what: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Corrupt { what: what.into(), reason: source.to_string(), source: Some(Box::new(source)) }
}

fn seq_from(bytes: &[u8], what: &str) -> Result<u64, StoreError> {
    let raw: [u8; 8] = bytes.try_into().map_err(|_| corrupt(what, "not 8 bytes"))?;
    Ok(u64::from_be_bytes(raw))
}

/// The stored Merkle hashes of the published tree. Every hash is in sled, in tiles of
/// `TILE_HASHES` (full tiles never change). In memory: the last tile, so appends rarely read
/// sled, and the hashes of levels `UPPER_LEVEL_MIN` and up (one hash per 8 records), so a
/// proof reads sled only for its lowest levels, which sit in one or two neighbouring tiles.
#[derive(Default)]
struct Hashes {
    len: u64,
    /// The hashes from index `len - tail.len()`: the last tile, 1 to `TILE_HASHES` hashes
    /// (none while `len` is 0).
    tail: Vec<Hash>,
    /// `upper[k][n]` is the hash of (level `UPPER_LEVEL_MIN + k`, n).
    upper: Vec<Vec<Hash>>,
    /// The (leaf, level) of the next hash pushed: leaf n adds levels 0..=trailing_zeros(n + 1).
    next_leaf: u64,
    next_level: u32,
}

impl Hashes {
    fn push(&mut self, h: Hash) {
        if self.tail.len() as u64 == TILE_HASHES {
            self.tail.clear();
        }
        self.tail.push(h);
        self.len += 1;
        debug_assert_eq!((self.len - self.tail.len() as u64) % TILE_HASHES, 0);

        let (level, leaf) = (self.next_level, self.next_leaf);
        debug_assert_eq!(merkle::stored_hash_index(level, leaf >> level), self.len - 1);
        if level >= UPPER_LEVEL_MIN {
            let k = (level - UPPER_LEVEL_MIN) as usize;
            if self.upper.len() <= k {
                self.upper.resize_with(k + 1, Vec::new);
            }
            debug_assert_eq!(self.upper[k].len() as u64, leaf >> level);
            self.upper[k].push(h);
        }
        if level == (leaf + 1).trailing_zeros() {
            self.next_leaf += 1;
            self.next_level = 0;
        } else {
            self.next_level += 1;
        }
    }

    fn tail_start(&self) -> u64 {
        self.len - self.tail.len() as u64
    }

    /// A hash held in memory: in the last tile or on an upper level.
    fn in_memory(&self, i: u64) -> Option<Hash> {
        if i >= self.len {
            return None;
        }
        let tail_start = self.tail_start();
        if i >= tail_start {
            return self.tail.get(usize::try_from(i - tail_start).ok()?).copied();
        }
        let (level, n) = merkle::split_stored_hash_index(i);
        let k = level.checked_sub(UPPER_LEVEL_MIN)? as usize;
        self.upper.get(k)?.get(usize::try_from(n).ok()?).copied()
    }
}

/// What readers see: the hashes and chain head of the published size.
struct Published {
    hashes: Hashes,
    head: Hash,
}

/// Reads committed hashes below `limit` (from the tail in memory, or a full tile in sled),
/// then the batch's pending ones.
struct HashView<'a> {
    committed: &'a Hashes,
    tree: &'a sled::Tree,
    limit: u64,
    pending: &'a [Hash],
}

impl HashView<'_> {
    /// A full tile from sled; `tiles` holds the ones this call already read.
    fn read_from_tile(&self, i: u64, tiles: &mut Vec<(u64, sled::IVec)>) -> Result<Hash, MerkleError> {
        let tile = i / TILE_HASHES;
        let bytes = match tiles.iter().find(|(t, _)| *t == tile) {
            Some((_, bytes)) => bytes.clone(),
            None => {
                let bytes =
                    self.tree.get(tile_key(tile)).map_err(MerkleError::Io)?.ok_or(MerkleError::MissingHash(i))?;
                if bytes.len() != TILE_HASHES as usize * HASH_BYTES {
                    return Err(MerkleError::Storage(format!("hash tile {tile} has {} bytes", bytes.len())));
                }
                tiles.push((tile, bytes.clone()));
                bytes
            }
        };
        let at = (i % TILE_HASHES) as usize * HASH_BYTES;
        let mut hash = [0u8; HASH_BYTES];
        hash.copy_from_slice(&bytes[at..at + HASH_BYTES]);
        Ok(hash)
    }
}

impl HashReader for HashView<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, MerkleError> {
        let mut tiles = Vec::new();
        indexes
            .iter()
            .map(|&i| {
                if i >= self.limit {
                    let p = usize::try_from(i - self.limit).map_err(|_| MerkleError::MissingHash(i))?;
                    self.pending.get(p).copied().ok_or(MerkleError::MissingHash(i))
                } else if let Some(h) = self.committed.in_memory(i) {
                    Ok(h)
                } else {
                    self.read_from_tile(i, &mut tiles)
                }
            })
            .collect()
    }
}

/// The stored hashes that appending `leaf_hashes` (seq, leaf hash), in seq order right after
/// the committed tree, adds.
fn new_stored_hashes(
    committed: &Hashes,
    tree: &sled::Tree,
    leaf_hashes: &[(u64, Hash)],
) -> Result<Vec<Hash>, MerkleError> {
    let mut pending: Vec<Hash> = Vec::with_capacity(leaf_hashes.len() * 2 + 64);
    for &(seq, leaf_hash) in leaf_hashes {
        debug_assert_eq!(committed.len + pending.len() as u64, merkle::stored_hash_index(0, seq));
        let view = HashView { committed, tree, limit: committed.len, pending: &pending };
        let new = merkle::stored_hashes_for_leaf(seq, leaf_hash, &view)?;
        pending.extend_from_slice(&new);
    }
    Ok(pending)
}

/// Adds to `writes` every tile that `pending` touches: the last partial committed tile is
/// rewritten whole, earlier tiles never change.
fn write_tiles(
    writes: &mut sled::Batch,
    committed: &Hashes,
    tree: &sled::Tree,
    pending: &[Hash],
) -> Result<(), MerkleError> {
    if pending.is_empty() {
        return Ok(());
    }
    let view = HashView { committed, tree, limit: committed.len, pending };
    let end = committed.len + pending.len() as u64;
    for tile in committed.len / TILE_HASHES..=(end - 1) / TILE_HASHES {
        let from = tile * TILE_HASHES;
        let indexes: Vec<u64> = (from..end.min(from + TILE_HASHES)).collect();
        let mut bytes = Vec::with_capacity(indexes.len() * HASH_BYTES);
        for h in view.read_hashes(&indexes)? {
            bytes.extend_from_slice(&h);
        }
        writes.insert(&tile_key(tile), bytes);
    }
    Ok(())
}

/// Reads every hash tile once: dense tile numbers, all full but the last. Keeps the last tile
/// and the upper levels (see [`Hashes`]).
fn load_hashes(tree: &sled::Tree) -> Result<Hashes, StoreError> {
    let mut hashes = Hashes::default();
    for (expected_tile, kv) in (0u64..).zip(tree.scan_prefix([PREFIX_TILE])) {
        let (key, value) = kv.map_err(io)?;
        let tile = seq_from(&key[1..], "hash tile key")?;
        if tile != expected_tile {
            return Err(corrupt(format!("hash tile {expected_tile}"), "missing"));
        }
        if hashes.len != tile * TILE_HASHES {
            return Err(corrupt(format!("hash tile {}", tile - 1), "partial tile before the last"));
        }
        if value.is_empty() || value.len() % HASH_BYTES != 0 || value.len() > TILE_HASHES as usize * HASH_BYTES {
            return Err(corrupt(format!("hash tile {tile}"), format!("{} bytes", value.len())));
        }
        for h in value.chunks_exact(HASH_BYTES) {
            let mut hash = [0u8; HASH_BYTES];
            hash.copy_from_slice(h);
            hashes.push(hash);
        }
    }
    Ok(hashes)
}

struct Inner {
    db: sled::Db,
    tree: sled::Tree,
    /// Serialises appends; readers never take it.
    append_lock: Mutex<()>,
    /// The number of durable, published records.
    size: AtomicU64,
    /// Held for writing only while a flushed batch is published.
    published: RwLock<Published>,
    /// Set when a write failed after reaching sled: the in-memory state may be ahead of
    /// the disk, so no further append is allowed.
    failed: AtomicBool,
    /// The log of record this store replicates (PostgreSQL), if any: a batch is committed
    /// there first, and applied here only once that commit succeeded.
    upstream: Option<Arc<dyn Upstream>>,
}

/// A batch as the log of record commits it: the new records, their ids, the stored Merkle
/// hashes they add, and the head before and after.
pub struct UpstreamBatch<'a> {
    /// The size the batch extends; the commit fails unless the log of record still has it.
    pub old_size: u64,
    /// The chain hash of the last record before the batch (zeros for an empty log).
    pub old_chain: Hash,
    /// The records, seq `old_size` on, dense.
    pub records: &'a [Record],
    /// (statement id, seq) of each record.
    pub ids: &'a [(&'a str, u64)],
    /// Index of the first stored Merkle hash the batch adds (tlog layout).
    pub first_hash_index: u64,
    /// The stored Merkle hashes the batch adds, in index order.
    pub hashes: &'a [Hash],
    /// The Merkle root after the batch.
    pub new_root: Hash,
    /// The chain hash of the batch's last record.
    pub new_chain: Hash,
}

/// The log of record of a replica store (the PostgreSQL backend, `crate::pg`): it orders and
/// keeps the records; the local sled store is a replica that serves the reads.
pub trait Upstream: Send + Sync {
    /// Commits `batch` durably, only if the log of record still ends at `old_size` with
    /// `old_chain` (and this writer still may write): otherwise an error, and nothing written.
    fn commit(&self, batch: &UpstreamBatch<'_>) -> Result<(), StoreError>;
    /// Up to `limit` records from `seq` on, as (statement id, leaf bytes), in seq order.
    fn records_from(&self, seq: u64, limit: usize) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// How many records the log of record holds.
    fn size(&self) -> Result<u64, StoreError>;
}

/// One envelope to append.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The statement id: the idempotency key.
    pub id: String,
    /// The canonical envelope JSON.
    pub envelope: Vec<u8>,
    /// The server clock when the envelope was accepted (Unix milliseconds).
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
    Conflict {
        /// The seq of the record logged under the id.
        seq: u64,
    },
}

/// A handle to the store. Cheap to clone; reads may run on any thread while one writer
/// appends.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl Store {
    /// Opens or creates a store, resuming at the right seq and chain head.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Ok(Store { inner: Arc::new(Store::open_inner(path, None)?) })
    }

    fn open_inner(path: &Path, upstream: Option<Arc<dyn Upstream>>) -> Result<Inner, StoreError> {
        let db = open_sled(path)?;
        let tree = db.open_tree(TREE_NAME).map_err(io)?;
        match tree.get(KEY_FORMAT).map_err(io)? {
            Some(format) if format.as_ref() == STORE_FORMAT => {}
            Some(format) => {
                return Err(corrupt("format marker", format!("unknown format {:?}", String::from_utf8_lossy(&format))))
            }
            None if tree.is_empty() => {
                tree.insert(KEY_FORMAT, STORE_FORMAT).map_err(io)?;
                db.flush().map_err(io)?;
            }
            None => return Err(corrupt("format marker", "missing in a non-empty store")),
        }

        // The last record gives the size and the chain head.
        let (size, head, last_leaf_hash) = match tree.scan_prefix([PREFIX_RECORD]).next_back() {
            None => (0, [0u8; 32], None),
            Some(kv) => {
                let (key, leaf) = kv.map_err(io)?;
                let seq = seq_from(&key[1..], "record key")?;
                let record = Record::decode(&leaf).map_err(|e| corrupt_by(format!("record {seq}"), e))?;
                if record.seq != seq {
                    return Err(corrupt(format!("record {seq}"), format!("leaf says seq {}", record.seq)));
                }
                if seq > 0 {
                    let prev = tree
                        .get(record_key(seq - 1))
                        .map_err(io)?
                        .ok_or_else(|| corrupt(format!("record {}", seq - 1), "missing"))?;
                    if crate::record::chain_hash(&prev) != record.prev {
                        return Err(corrupt(
                            format!("record {seq}"),
                            "prev is not the chain hash of the record before",
                        ));
                    }
                }
                (seq + 1, record.chain_hash(), Some(record.leaf_hash()))
            }
        };

        let hashes = load_hashes(&tree)?;
        if hashes.len != merkle::stored_hash_count(size) {
            return Err(corrupt(
                "merkle hashes",
                format!("{} stored, {} expected for {size} records", hashes.len, merkle::stored_hash_count(size)),
            ));
        }
        if let Some(leaf_hash) = last_leaf_hash {
            let view = HashView { committed: &hashes, tree: &tree, limit: hashes.len, pending: &[] };
            let stored =
                view.read_hashes(&[merkle::stored_hash_index(0, size - 1)]).map_err(|e| StoreError::Corrupt {
                    what: "merkle hashes".into(),
                    reason: format!("the last leaf hash cannot be read: {e}"),
                    source: Some(Box::new(e)),
                })?;
            if stored[0] != leaf_hash {
                return Err(corrupt("merkle hashes", "the last leaf hash does not match the last record"));
            }
        }

        Ok(Inner {
            db,
            tree,
            append_lock: Mutex::new(()),
            size: AtomicU64::new(size),
            published: RwLock::new(Published { hashes, head }),
            failed: AtomicBool::new(false),
            upstream,
        })
    }

    /// Opens (or creates) the local replica at `path` of the log of record `upstream`, and
    /// catches up with it. Refuses a replica that holds records the log of record lacks
    /// (the database is behind this node: a restore from an old backup, a lost failover) or
    /// whose last record is not the log of record's (another history).
    pub fn open_replica(path: &Path, upstream: Arc<dyn Upstream>) -> Result<Store, StoreError> {
        let store = Store { inner: Arc::new(Store::open_inner(path, Some(upstream.clone()))?) };
        let (local_size, local_head) = store.tip();
        let upstream_size = upstream.size()?;
        if upstream_size < local_size {
            return Err(StoreError::UpstreamBehind { local: local_size, upstream: upstream_size });
        }
        if local_size > 0 {
            let rows = upstream.records_from(local_size - 1, 1)?;
            let same = rows.first().is_some_and(|(_, leaf)| crate::record::chain_hash(leaf) == local_head);
            if !same {
                return Err(StoreError::Diverged { seq: local_size - 1 });
            }
        }
        store.catch_up()?;
        Ok(store)
    }

    /// Applies the records the log of record holds past this replica's size (other nodes'
    /// commits); returns how many. A store without an upstream has nothing to catch up.
    pub fn catch_up(&self) -> Result<u64, StoreError> {
        let Some(upstream) = &self.inner.upstream else { return Ok(0) };
        let _writer = self.inner.append_lock.lock().unwrap_or_else(|e| e.into_inner());
        if self.inner.failed.load(Ordering::Acquire) {
            return Err(StoreError::Failed);
        }
        let mut total = 0;
        loop {
            let size = self.size();
            let rows = upstream.records_from(size, CATCH_UP_RECORDS_MAX)?;
            if rows.is_empty() {
                return Ok(total);
            }
            let published = self.published();
            let mut head = published.head;
            let mut records = Vec::with_capacity(rows.len());
            for (i, (_, leaf)) in rows.iter().enumerate() {
                let seq = size + i as u64;
                let record = Record::decode(leaf).map_err(|e| corrupt_by(format!("upstream record {seq}"), e))?;
                if record.seq != seq || record.prev != head {
                    return Err(StoreError::Diverged { seq });
                }
                head = record.chain_hash();
                records.push(record);
            }
            let ids: Vec<(&str, u64)> = rows.iter().zip(&records).map(|((id, _), r)| (id.as_str(), r.seq)).collect();
            total += records.len() as u64;
            self.write_records(size, published, &records, &ids, head, false)?;
        }
    }

    fn published(&self) -> RwLockReadGuard<'_, Published> {
        // Published state is replaced only by plain pushes, so a poisoned lock still holds
        // consistent data.
        self.inner.published.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a batch: assigns dense seqs, links the chain, writes records, id index and
    /// stored hashes atomically, then flushes once. Returns after the batch is durable.
    ///
    /// Entries are checked first (ids 1 to [`STATEMENT_ID_BYTES_MAX`] bytes, leaves at most
    /// [`LEAF_BYTES_MAX`] bytes); an invalid entry fails the whole batch and nothing is written.
    pub fn append(&self, batch: &[Entry]) -> Result<Vec<AppendOutcome>, StoreError> {
        if batch.len() > BATCH_ENTRIES_MAX {
            return Err(StoreError::BatchTooLarge(batch.len()));
        }
        for (index, entry) in batch.iter().enumerate() {
            if entry.id.is_empty() || entry.id.len() > STATEMENT_ID_BYTES_MAX {
                return Err(StoreError::InvalidEntry {
                    index,
                    reason: format!("id must be 1 to {STATEMENT_ID_BYTES_MAX} bytes"),
                });
            }
            if LEAF_HEADER_BYTES + entry.envelope.len() > LEAF_BYTES_MAX {
                return Err(StoreError::Record(RecordError::TooLarge(LEAF_HEADER_BYTES + entry.envelope.len())));
            }
        }
        let inner = &*self.inner;
        let _writer = inner.append_lock.lock().unwrap_or_else(|e| e.into_inner());
        if inner.failed.load(Ordering::Acquire) {
            return Err(StoreError::Failed);
        }

        let size = inner.size.load(Ordering::Acquire);
        let published = self.published();
        let mut head = published.head;
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut appended: Vec<Record> = Vec::with_capacity(batch.len());
        let mut batch_ids: HashMap<&str, usize> = HashMap::with_capacity(batch.len());
        for entry in batch {
            if let Some(&k) = batch_ids.get(entry.id.as_str()) {
                let original = &appended[k];
                outcomes.push(if original.envelope() == entry.envelope.as_slice() {
                    AppendOutcome::Duplicate(original.clone())
                } else {
                    AppendOutcome::Conflict { seq: original.seq }
                });
                continue;
            }
            if let Some(seq) = inner.tree.get(id_key(&entry.id)).map_err(io)? {
                let seq = seq_from(&seq, "id index")?;
                let original = self.read_record(seq)?;
                outcomes.push(if original.envelope() == entry.envelope.as_slice() {
                    AppendOutcome::Duplicate(original)
                } else {
                    AppendOutcome::Conflict { seq }
                });
                continue;
            }
            let seq = size + appended.len() as u64;
            let record = Record::new(seq, head, entry.received_at_ms, &entry.envelope)?;
            head = record.chain_hash();
            batch_ids.insert(&entry.id, appended.len());
            appended.push(record.clone());
            outcomes.push(AppendOutcome::Appended(record));
        }
        if appended.is_empty() {
            return Ok(outcomes);
        }

        let ids: Vec<(&str, u64)> = batch_ids.iter().map(|(id, &k)| (*id, appended[k].seq)).collect();
        self.write_records(size, published, &appended, &ids, head, true)?;
        Ok(outcomes)
    }

    /// Writes `appended` (seq `size` on, linked, ending with chain hash `head`) with their ids
    /// and stored hashes, first to the upstream when `commit_upstream`, then here, and publishes
    /// them. The caller holds the append lock.
    fn write_records(
        &self,
        size: u64,
        published: RwLockReadGuard<'_, Published>,
        appended: &[Record],
        ids: &[(&str, u64)],
        head: Hash,
        commit_upstream: bool,
    ) -> Result<(), StoreError> {
        let inner = &*self.inner;
        // New stored hashes, reading left siblings from the committed and pending ones.
        let base = merkle::stored_hash_count(size);
        let leaf_hashes: Vec<(u64, Hash)> = appended.iter().map(|r| (r.seq, r.leaf_hash())).collect();
        let pending = new_stored_hashes(&published.hashes, &inner.tree, &leaf_hashes)?;
        let new_size = size + appended.len() as u64;
        debug_assert_eq!(base + pending.len() as u64, merkle::stored_hash_count(new_size));

        let mut writes = sled::Batch::default();
        for record in appended {
            writes.insert(&record_key(record.seq), record.leaf());
        }
        for (id, seq) in ids {
            writes.insert(id_key(id), &seq.to_be_bytes());
        }
        write_tiles(&mut writes, &published.hashes, &inner.tree, &pending)?;
        if let (true, Some(upstream)) = (commit_upstream, &inner.upstream) {
            let view = HashView { committed: &published.hashes, tree: &inner.tree, limit: base, pending: &pending };
            let new_root = merkle::tree_hash(new_size, &view)?;
            upstream.commit(&UpstreamBatch {
                old_size: size,
                old_chain: published.head,
                records: appended,
                ids,
                first_hash_index: base,
                hashes: &pending,
                new_root,
                new_chain: head,
            })?;
        }
        drop(published);

        if let Err(e) = inner.tree.apply_batch(writes) {
            inner.failed.store(true, Ordering::Release);
            return Err(io(e));
        }
        // A replica flushes too, before it publishes: its size is the node's durable memory of
        // the largest log it has signed a checkpoint for, so a database restored to an older
        // backup is found behind it (`UpstreamBehind`) and never extended into a second history.
        if let Err(e) = inner.db.flush() {
            inner.failed.store(true, Ordering::Release);
            return Err(io(e));
        }

        // Durable: publish the hashes, head and size together.
        let mut published = inner.published.write().unwrap_or_else(|e| e.into_inner());
        for h in pending {
            published.hashes.push(h);
        }
        published.head = head;
        inner.size.store(new_size, Ordering::Release);
        Ok(())
    }

    /// The number of durable records.
    pub fn size(&self) -> u64 {
        self.inner.size.load(Ordering::Acquire)
    }

    /// Chain hash of the last record (32 zero bytes when empty).
    pub fn head(&self) -> Hash {
        self.published().head
    }

    /// The size and the chain head of the last record, from the same batch.
    pub fn tip(&self) -> (u64, Hash) {
        let published = self.published();
        (self.size(), published.head)
    }

    /// Merkle root of the first `size` records.
    pub fn root_at(&self, size: u64) -> Result<Hash, StoreError> {
        self.check_size(size)?;
        Ok(merkle::tree_hash(size, self)?)
    }

    fn check_size(&self, size: u64) -> Result<(), StoreError> {
        if size > self.size() {
            return Err(StoreError::Merkle(MerkleError::InvalidSizes("size is larger than the log")));
        }
        Ok(())
    }

    /// Reads a record that must exist (seq below a size this store published or is writing).
    fn read_record(&self, seq: u64) -> Result<Record, StoreError> {
        let leaf = self
            .inner
            .tree
            .get(record_key(seq))
            .map_err(io)?
            .ok_or_else(|| corrupt(format!("record {seq}"), "missing"))?;
        let record = Record::decode_vec(leaf.to_vec()).map_err(|e| corrupt_by(format!("record {seq}"), e))?;
        if record.seq != seq {
            return Err(corrupt(format!("record {seq}"), format!("leaf says seq {}", record.seq)));
        }
        Ok(record)
    }

    /// The durable record `seq`, or `None` past the end of the log.
    pub fn get(&self, seq: u64) -> Result<Option<Record>, StoreError> {
        if seq >= self.size() {
            return Ok(None);
        }
        self.read_record(seq).map(Some)
    }

    /// Records from `from` (inclusive), at most `limit` (capped at RANGE_RECORDS_MAX).
    pub fn range(&self, from: u64, limit: usize) -> Result<Vec<Record>, StoreError> {
        let size = self.size();
        let end = size.min(from.saturating_add(limit.min(RANGE_RECORDS_MAX) as u64));
        if from >= end {
            return Ok(Vec::new());
        }
        let mut records = Vec::with_capacity((end - from) as usize);
        for kv in self.inner.tree.range(record_key(from)..record_key(end)) {
            let (_, leaf) = kv.map_err(io)?;
            let seq = from + records.len() as u64;
            let record = Record::decode_vec(leaf.to_vec()).map_err(|e| corrupt_by(format!("record {seq}"), e))?;
            if record.seq != seq {
                return Err(corrupt(format!("record {seq}"), format!("found seq {} instead", record.seq)));
            }
            records.push(record);
        }
        if records.len() as u64 != end - from {
            return Err(corrupt(format!("record {}", from + records.len() as u64), "missing"));
        }
        Ok(records)
    }

    /// The record whose statement has this id (the idempotency lookup), if logged.
    pub fn get_by_id(&self, id: &str) -> Result<Option<Record>, StoreError> {
        if id.is_empty() || id.len() > STATEMENT_ID_BYTES_MAX {
            return Ok(None);
        }
        let Some(seq) = self.inner.tree.get(id_key(id)).map_err(io)? else {
            return Ok(None);
        };
        self.get(seq_from(&seq, "id index")?)
    }

    /// Inclusion proof of record `index` in the tree of the first `size` records (argument
    /// order: see [`merkle`]).
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, StoreError> {
        self.check_size(size)?;
        Ok(merkle::prove_inclusion(index, size, self)?)
    }

    /// Consistency proof from the first `old_size` records to the first `new_size`
    /// (`old_size <= new_size`; argument order: see [`merkle`]).
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, StoreError> {
        self.check_size(new_size)?;
        Ok(merkle::prove_consistency(old_size, new_size, self)?)
    }

    /// Stores an opaque blob next to the log (projection snapshots); not part of the log.
    /// Durable when it returns.
    pub fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        check_meta_key(key)?;
        self.inner.tree.insert(meta_key(key), value).map_err(io)?;
        self.inner.db.flush().map_err(io)?;
        Ok(())
    }

    /// The durable set of seen keys named `name` (for example webhook delivery ids), kept in
    /// this store's database beside the log but not part of it.
    pub fn seen_set(&self, name: &str, retention: crate::seen::Retention) -> Result<crate::seen::SeenSet, StoreError> {
        check_meta_key(name)?;
        let tree = self.inner.db.open_tree(format!("seen/{name}")).map_err(io)?;
        crate::seen::SeenSet::open(self.inner.db.clone(), tree, retention)
    }

    /// The blob stored with [`Store::put_meta`] under `key`, if any.
    pub fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check_meta_key(key)?;
        Ok(self.inner.tree.get(meta_key(key)).map_err(io)?.map(|v| v.to_vec()))
    }
}

fn check_meta_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() || key.len() > META_KEY_BYTES_MAX {
        return Err(StoreError::InvalidMetaKey(key.len()));
    }
    Ok(())
}

/// Reads the stored hashes of the published tree (indexes below
/// `stored_hash_count(size())`), e.g. to serve tlog tiles.
impl HashReader for Store {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, MerkleError> {
        let limit = merkle::stored_hash_count(self.size());
        let published = self.published();
        let view = HashView { committed: &published.hashes, tree: &self.inner.tree, limit, pending: &[] };
        view.read_hashes(indexes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RFC 6962 test leaves and roots (see merkle.rs), through the sled hash tiles.
    #[test]
    fn ct_roots_through_the_sled_hash_tiles() {
        use crate::merkle::tests::{CT_LEAVES, CT_ROOTS};
        let dir = tempfile::tempdir().unwrap();
        // Leaves arrive in batches of 1, 2, 2 and 3; each batch goes to sled and is reloaded.
        let mut next = 0u64;
        for batch in [1usize, 2, 2, 3] {
            let db = open_sled(dir.path()).unwrap();
            let tree = db.open_tree(TREE_NAME).unwrap();
            let committed = load_hashes(&tree).unwrap();
            assert_eq!(committed.len, merkle::stored_hash_count(next));
            let leaf_hashes: Vec<(u64, Hash)> = (next..next + batch as u64)
                .map(|seq| (seq, merkle::leaf_hash(&hex::decode(CT_LEAVES[seq as usize]).unwrap())))
                .collect();
            let pending = new_stored_hashes(&committed, &tree, &leaf_hashes).unwrap();
            let mut writes = sled::Batch::default();
            write_tiles(&mut writes, &committed, &tree, &pending).unwrap();
            tree.apply_batch(writes).unwrap();
            db.flush().unwrap();
            next += batch as u64;
        }
        let db = open_sled(dir.path()).unwrap();
        let tree = db.open_tree(TREE_NAME).unwrap();
        let loaded = load_hashes(&tree).unwrap();
        assert_eq!(loaded.len, merkle::stored_hash_count(8));
        let view = HashView { committed: &loaded, tree: &tree, limit: loaded.len, pending: &[] };
        for (size, root) in (1..=8).zip(CT_ROOTS) {
            assert_eq!(hex::encode(merkle::tree_hash(size, &view).unwrap()), root);
        }
    }

    #[test]
    fn tiles_are_full_except_the_last_and_survive_reload() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree(TREE_NAME).unwrap();
        let mut memory = merkle::MemoryTree::new();
        // 300 leaves in uneven batches: hash counts cross several tile boundaries.
        let mut seq = 0u64;
        for batch in [1u64, 7, 100, 3, 130, 59] {
            let committed = load_hashes(&tree).unwrap();
            let leaf_hashes: Vec<(u64, Hash)> =
                (seq..seq + batch).map(|s| (s, merkle::leaf_hash(&s.to_be_bytes()))).collect();
            for (_, h) in &leaf_hashes {
                memory.push(*h);
            }
            let pending = new_stored_hashes(&committed, &tree, &leaf_hashes).unwrap();
            let mut writes = sled::Batch::default();
            write_tiles(&mut writes, &committed, &tree, &pending).unwrap();
            tree.apply_batch(writes).unwrap();
            seq += batch;
            let loaded = load_hashes(&tree).unwrap();
            assert_eq!(loaded.len, merkle::stored_hash_count(seq));
            let indexes: Vec<u64> = (0..loaded.len).collect();
            let view = HashView { committed: &loaded, tree: &tree, limit: loaded.len, pending: &[] };
            assert_eq!(view.read_hashes(&indexes).unwrap(), memory.stored_hashes());
        }
        for kv in tree.scan_prefix([PREFIX_TILE]) {
            let (key, value) = kv.unwrap();
            let tile = u64::from_be_bytes(key[1..].try_into().unwrap());
            let last = (merkle::stored_hash_count(seq) - 1) / TILE_HASHES;
            if tile < last {
                assert_eq!(value.len(), TILE_HASHES as usize * HASH_BYTES);
            }
        }
    }

    #[test]
    fn batch_and_meta_limits_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let entry = |id: &str, len: usize| Entry { id: id.into(), envelope: vec![b'x'; len], received_at_ms: 0 };
        let too_many = vec![entry("a", 1); BATCH_ENTRIES_MAX + 1];
        assert!(matches!(store.append(&too_many), Err(StoreError::BatchTooLarge(4097))));
        let big = [entry("a", 1), entry("b", LEAF_BYTES_MAX)];
        assert!(matches!(store.append(&big), Err(StoreError::Record(RecordError::TooLarge(_)))));
        assert!(matches!(store.append(&[entry("", 1)]), Err(StoreError::InvalidEntry { index: 0, .. })));
        assert!(matches!(store.append(&[entry(&"i".repeat(129), 1)]), Err(StoreError::InvalidEntry { .. })));
        assert_eq!(store.size(), 0);
        assert!(store.append(&[]).unwrap().is_empty());
        assert!(matches!(store.put_meta("", b"x"), Err(StoreError::InvalidMetaKey(_))));
        assert!(matches!(store.get_meta(&"k".repeat(257)), Err(StoreError::InvalidMetaKey(_))));
    }

    #[test]
    fn a_store_held_open_is_locked_with_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let held = Store::open(dir.path()).unwrap();
        let waited = std::time::Instant::now();
        let err = Store::open(dir.path()).err().unwrap();
        assert!(waited.elapsed().as_millis() as u64 >= OPEN_LOCK_WAIT_MS);
        assert!(matches!(&err, StoreError::Locked { path, .. } if path == &dir.path().display().to_string()), "{err}");
        assert!(err.to_string().contains("locked by another process"), "{err}");
        assert!(std::error::Error::source(&err).is_some());
        drop(held);
        assert!(Store::open(dir.path()).is_ok());
    }

    #[test]
    fn a_foreign_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            db.open_tree(TREE_NAME).unwrap().insert(KEY_FORMAT, b"something-else/9".as_slice()).unwrap();
            db.flush().unwrap();
        }
        assert!(matches!(Store::open(dir.path()), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn corruption_keeps_its_cause() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.append(&[Entry { id: "a".into(), envelope: b"x".to_vec(), received_at_ms: 0 }]).unwrap();
        }
        {
            let db = open_sled(dir.path()).unwrap();
            db.open_tree(TREE_NAME).unwrap().insert(record_key(0), b"\x01short".as_slice()).unwrap();
            db.flush().unwrap();
        }
        let Err(err) = Store::open(dir.path()) else { panic!("a truncated record opened") };
        assert_eq!(err.to_string(), "stored data is corrupt at record 0: leaf is truncated (6 bytes)");
        let cause = std::error::Error::source(&err).and_then(|e| e.downcast_ref::<RecordError>());
        assert_eq!(cause, Some(&RecordError::Truncated(6)));
    }

    #[test]
    fn missing_hash_tiles_are_detected_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let entries: Vec<Entry> =
                (0..200).map(|i| Entry { id: format!("e{i}"), envelope: vec![b'x'; 10], received_at_ms: i }).collect();
            store.append(&entries).unwrap();
        }
        {
            let db = open_sled(dir.path()).unwrap();
            db.open_tree(TREE_NAME).unwrap().remove(tile_key(0)).unwrap();
            db.flush().unwrap();
        }
        assert!(matches!(Store::open(dir.path()), Err(StoreError::Corrupt { .. })));
    }
}
