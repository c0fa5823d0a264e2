//! Projection snapshots: the replayed [`State`] saved next to the log (a store meta blob), so a
//! restart folds only the records after it instead of re-verifying every signature.
//!
//! A snapshot names the size it was taken at and the chain hash of its last record; it is used
//! only if the store's record at that seq has that chain hash. Anything else (no snapshot, an
//! unknown format, another log) falls back to a full replay: a snapshot can only make start-up
//! faster, never change the state it produces.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ledger::b64;
use ledger::store::{Store, StoreError};
use projector::State;
use serde::{Deserialize, Serialize};

use crate::fold::{Fold, ReplayError};
use crate::limits::STATE_SNAPSHOT_INTERVAL_RECORDS;

/// Why a projection snapshot could not be saved (the log itself is unaffected).
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The store could not be read or written.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The state's size names a record the store does not have.
    #[error("record {0} is not in the store")]
    Missing(u64),
    /// The state did not serialise.
    #[error("cannot encode the state: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Store meta key of the projection snapshot.
pub const STATE_SNAPSHOT_META_KEY: &str = "projection-snapshot";
/// Bumped when [`State`]'s serialised form changes; an older snapshot is ignored.
pub(crate) const STATE_SNAPSHOT_FORMAT: u32 = 3;

#[derive(Serialize)]
struct StoredRef<'a> {
    format: u32,
    size: u64,
    /// Chain hash of record `size - 1`, base64.
    head: String,
    replay_warnings: u64,
    state: &'a State,
}

#[derive(Deserialize)]
struct Stored {
    format: u32,
    size: u64,
    head: String,
    replay_warnings: u64,
    state: State,
}

/// Saves `state` (the fold of the first `state.size()` records of `store`). Durable on return.
pub fn save(store: &Store, state: &State, replay_warnings: u64) -> Result<(), SnapshotError> {
    let size = state.size();
    if size == 0 {
        return Ok(());
    }
    let last = store.get(size - 1)?.ok_or(SnapshotError::Missing(size - 1))?;
    let stored =
        StoredRef { format: STATE_SNAPSHOT_FORMAT, size, head: b64::encode(last.chain_hash()), replay_warnings, state };
    let bytes = serde_json::to_vec(&stored)?;
    Ok(store.put_meta(STATE_SNAPSHOT_META_KEY, &bytes)?)
}

/// The saved snapshot, if there is one that belongs to this store's log.
fn load(store: &Store) -> Option<(State, u64)> {
    let bytes = match store.get_meta(STATE_SNAPSHOT_META_KEY) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!("cannot read the projection snapshot ({e}); replaying the whole log");
            return None;
        }
    };
    let stored: Stored = match serde_json::from_slice(&bytes) {
        Ok(stored) => stored,
        Err(e) => {
            tracing::warn!("the projection snapshot does not decode ({e}); replaying the whole log");
            return None;
        }
    };
    if stored.format != STATE_SNAPSHOT_FORMAT || stored.size == 0 || stored.state.size() != stored.size {
        tracing::warn!("the projection snapshot has another format; replaying the whole log");
        return None;
    }
    let matches = match store.get(stored.size - 1) {
        Ok(Some(rec)) => b64::encode(rec.chain_hash()) == stored.head,
        _ => false,
    };
    if !matches {
        tracing::warn!("the projection snapshot is not of this log; replaying the whole log");
        return None;
    }
    Some((stored.state, stored.replay_warnings))
}

/// The fold of the whole log: the snapshot, if usable, plus the records after it; otherwise
/// a full replay. Returns the fold and the number of records that did not verify.
pub fn restore(store: &Store) -> Result<(Fold, u64), ReplayError> {
    let Some((state, warnings)) = load(store) else {
        return Fold::new().replay(store);
    };
    let from = state.size();
    let (fold, tail_warnings) = Fold::from_state(state).replay(store)?;
    tracing::info!("restored the projection from its snapshot at {from} and {} later records", fold.size() - from);
    Ok((fold, warnings + tail_warnings))
}

/// Saves snapshots from the sequencer without stalling it: the state is cloned (O(1)) and
/// serialised on a background thread; at most one save runs at a time.
pub(crate) struct SnapshotWriter {
    store: Store,
    replay_warnings: u64,
    saved_size: u64,
    /// A snapshot at `saved_size` was written by this process.
    saved: bool,
    saving: Arc<AtomicBool>,
}

impl SnapshotWriter {
    pub(crate) fn new(store: Store, size: u64, replay_warnings: u64) -> SnapshotWriter {
        SnapshotWriter {
            store,
            replay_warnings,
            saved_size: size,
            saved: false,
            saving: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Starts a background save if the log grew by an interval since the last one.
    pub(crate) fn after_batch(&mut self, state: &State) {
        if state.size() < self.saved_size.saturating_add(STATE_SNAPSHOT_INTERVAL_RECORDS) {
            return;
        }
        if self.saving.swap(true, Ordering::AcqRel) {
            return;
        }
        self.saved_size = state.size();
        self.saved = true;
        let (store, state, warnings, saving) =
            (self.store.clone(), state.clone(), self.replay_warnings, self.saving.clone());
        let spawned = std::thread::Builder::new().name("grantline-snapshot".into()).spawn(move || {
            if let Err(e) = save(&store, &state, warnings) {
                tracing::warn!("cannot save the projection snapshot at {}: {e}", state.size());
            }
            saving.store(false, Ordering::Release);
        });
        if let Err(e) = spawned {
            tracing::warn!("cannot start the snapshot thread: {e}");
            self.saving.store(false, Ordering::Release);
        }
    }

    /// Saves synchronously (clean shutdown), after any background save finished.
    pub(crate) fn finish(&mut self, state: &State) {
        while self.saving.load(Ordering::Acquire) {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        if self.saved && state.size() == self.saved_size {
            return;
        }
        match save(&self.store, state, self.replay_warnings) {
            Ok(()) => {
                self.saved_size = state.size();
                self.saved = true;
            }
            Err(e) => tracing::warn!("cannot save the projection snapshot at {}: {e}", state.size()),
        }
    }
}
