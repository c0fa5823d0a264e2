//! A bounded, durable set of keys seen before (for example webhook delivery ids), kept in the
//! store's database beside the log but not part of it.
//!
//! Each key is stored twice in its own sled tree: `k` + key → time (u64 BE, Unix ms), and
//! `t` + time + key → nothing, so the oldest keys are found first; `n` holds the count. One
//! insert is one atomic sled batch (the key, its time entry, the count and any evictions)
//! followed, when the caller asks, by a flush.

use std::sync::Mutex;

use crate::limits::SEEN_KEY_BYTES_MAX;
use crate::store::StoreError;

/// At most this many old keys are evicted by one insert: the set shrinks back below its
/// bounds gradually and one insert never stalls on a large eviction.
pub const EVICTIONS_PER_INSERT_MAX: usize = 16;

const PREFIX_KEY: u8 = b'k';
const PREFIX_TIME: u8 = b't';
const KEY_COUNT: &[u8] = b"n";

/// How long keys are kept: a key is evicted once it is older than `age_ms_max`, or once more
/// than `count_max` newer keys are held. Both bounds keep at least what they name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Keys beyond this many (oldest first) are evicted.
    pub count_max: u64,
    /// Keys older than this are evicted.
    pub age_ms_max: i64,
}

/// A durable set of seen keys with bounded size. Cheap to share behind an `Arc`; inserts are
/// serialised (the count must stay exact), lookups are not.
pub struct SeenSet {
    db: sled::Db,
    tree: sled::Tree,
    retention: Retention,
    count: Mutex<u64>,
}

/// Why a key is refused before any storage is touched.
fn check_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() || key.len() > SEEN_KEY_BYTES_MAX {
        return Err(StoreError::InvalidSeenKey(key.len()));
    }
    Ok(())
}

fn key_entry(key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(PREFIX_KEY);
    k.extend_from_slice(key.as_bytes());
    k
}

fn time_entry(at_ms: u64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + key.len());
    k.push(PREFIX_TIME);
    k.extend_from_slice(&at_ms.to_be_bytes());
    k.extend_from_slice(key);
    k
}

fn u64_from(bytes: &[u8], what: &str) -> Result<u64, StoreError> {
    let raw: [u8; 8] = bytes.try_into().map_err(|_| StoreError::Corrupt {
        what: what.to_string(),
        reason: "not 8 bytes".to_string(),
        source: None,
    })?;
    Ok(u64::from_be_bytes(raw))
}

impl SeenSet {
    pub(crate) fn open(db: sled::Db, tree: sled::Tree, retention: Retention) -> Result<SeenSet, StoreError> {
        assert!(retention.count_max > 0 && retention.age_ms_max > 0);
        let count = match tree.get(KEY_COUNT).map_err(StoreError::Io)? {
            Some(v) => u64_from(&v, "seen-set count")?,
            None => 0,
        };
        Ok(SeenSet { db, tree, retention, count: Mutex::new(count) })
    }

    /// Whether `key` was inserted and not yet evicted.
    pub fn contains(&self, key: &str) -> Result<bool, StoreError> {
        check_key(key)?;
        self.tree.contains_key(key_entry(key)).map_err(StoreError::Io)
    }

    /// How many keys the set holds.
    pub fn len(&self) -> u64 {
        *self.count.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Remembers `key`, seen at `now_ms`. Returns true when it was not held yet. With `flush`
    /// it is durable when this returns; without, it becomes durable with the next flush of the
    /// store's database (any append, a flushed insert, [`SeenSet::flush`]). Evicts up to
    /// [`EVICTIONS_PER_INSERT_MAX`] keys past the retention.
    pub fn insert(&self, key: &str, now_ms: i64, flush: bool) -> Result<bool, StoreError> {
        check_key(key)?;
        let at_ms = u64::try_from(now_ms).unwrap_or(0);
        let mut count = self.count.lock().unwrap_or_else(|e| e.into_inner());
        let k = key_entry(key);
        if self.tree.contains_key(&k).map_err(StoreError::Io)? {
            return Ok(false);
        }
        let mut batch = sled::Batch::default();
        batch.insert(k, &at_ms.to_be_bytes());
        batch.insert(time_entry(at_ms, key.as_bytes()), &[]);
        let mut held = *count + 1;
        let oldest_kept_ms = at_ms.saturating_sub(u64::try_from(self.retention.age_ms_max).unwrap_or(u64::MAX));
        for entry in self.tree.scan_prefix([PREFIX_TIME]).take(EVICTIONS_PER_INSERT_MAX) {
            let (time_key, _) = entry.map_err(StoreError::Io)?;
            let seen_ms = u64_from(time_key.get(1..9).unwrap_or_default(), "seen-set time")?;
            if held <= self.retention.count_max && seen_ms >= oldest_kept_ms {
                break;
            }
            let mut old = Vec::with_capacity(time_key.len() - 8);
            old.push(PREFIX_KEY);
            old.extend_from_slice(&time_key[9..]);
            batch.remove(old);
            batch.remove(time_key);
            held -= 1;
        }
        batch.insert(KEY_COUNT, &held.to_be_bytes());
        self.tree.apply_batch(batch).map_err(StoreError::Io)?;
        if flush {
            self.db.flush().map_err(StoreError::Io)?;
        }
        *count = held;
        Ok(true)
    }

    /// Makes every insert so far durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(StoreError::Io)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn open(dir: &std::path::Path, retention: Retention) -> (Store, SeenSet) {
        let store = Store::open(dir).unwrap();
        let seen = store.seen_set("deliveries", retention).unwrap();
        (store, seen)
    }

    const WIDE: Retention = Retention { count_max: 1000, age_ms_max: 1_000_000 };

    #[test]
    fn a_key_is_new_once_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_store, seen) = open(dir.path(), WIDE);
            assert!(seen.insert("a", 10, true).unwrap());
            assert!(!seen.insert("a", 11, true).unwrap());
            assert!(seen.contains("a").unwrap());
            assert!(!seen.contains("b").unwrap());
        }
        let (store, seen) = open(dir.path(), WIDE);
        assert!(seen.contains("a").unwrap());
        assert_eq!(seen.len(), 1);
        // Not part of the log.
        assert_eq!(store.size(), 0);
    }

    #[test]
    fn the_oldest_keys_go_first_past_the_count() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, seen) = open(dir.path(), Retention { count_max: 3, age_ms_max: 1_000_000 });
        for (i, key) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            assert!(seen.insert(key, i as i64, false).unwrap());
        }
        assert_eq!(seen.len(), 3);
        assert!(!seen.contains("a").unwrap() && !seen.contains("b").unwrap());
        assert!(seen.contains("c").unwrap() && seen.contains("e").unwrap());
    }

    #[test]
    fn keys_older_than_the_age_go() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, seen) = open(dir.path(), Retention { count_max: 1000, age_ms_max: 100 });
        seen.insert("old", 0, false).unwrap();
        seen.insert("young", 50, false).unwrap();
        seen.insert("now", 150, true).unwrap();
        assert!(!seen.contains("old").unwrap());
        assert!(seen.contains("young").unwrap() && seen.contains("now").unwrap());
        assert_eq!(seen.len(), 2);
    }

    #[test]
    fn bad_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, seen) = open(dir.path(), WIDE);
        assert!(seen.insert("", 0, true).is_err());
        assert!(seen.insert(&"x".repeat(SEEN_KEY_BYTES_MAX + 1), 0, true).is_err());
        assert!(seen.is_empty());
    }
}
