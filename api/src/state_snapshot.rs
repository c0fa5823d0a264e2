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
use ledger::store::{Store, RANGE_RECORDS_MAX};
use projector::State;
use serde::{Deserialize, Serialize};

use crate::datadir::DataDirError;

/// Store meta key of the projection snapshot.
pub const STATE_SNAPSHOT_META_KEY: &str = "projection-snapshot";
/// Bumped when [`State`]'s serialised form changes; an older snapshot is ignored.
pub const STATE_SNAPSHOT_FORMAT: u32 = 1;
/// The sequencer saves a snapshot (in the background) each time the log grows by this many
/// records, and once more on a clean shutdown.
pub const STATE_SNAPSHOT_INTERVAL_RECORDS: u64 = 50_000;

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
pub fn save(store: &Store, state: &State, replay_warnings: u64) -> Result<(), String> {
    let size = state.size();
    if size == 0 {
        return Ok(());
    }
    let last = store
        .get(size - 1)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("record {} is not in the store", size - 1))?;
    let stored =
        StoredRef { format: STATE_SNAPSHOT_FORMAT, size, head: b64::encode(last.chain_hash()), replay_warnings, state };
    let bytes = serde_json::to_vec(&stored).map_err(|e| e.to_string())?;
    store.put_meta(STATE_SNAPSHOT_META_KEY, &bytes).map_err(|e| e.to_string())
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

/// The state of the whole log: the snapshot, if usable, plus the records after it; otherwise
/// a full replay. Returns the state and the number of records that did not verify.
pub fn restore(store: &Store) -> Result<(State, u64), DataDirError> {
    let Some((state, warnings)) = load(store) else {
        return replay_from(store, State::new());
    };
    let from = state.size();
    let (state, tail_warnings) = replay_from(store, state)?;
    tracing::info!("restored the projection from its snapshot at {from} and {} later records", state.size() - from);
    Ok((state, warnings + tail_warnings))
}

/// Folds records `state.size()..store.size()` into `state`.
///
/// Signatures are checked on all cores first, one page at a time, against the keys of the
/// state at the page's start; the fold then reuses a signature's result only if the key the
/// state names at that record is the very key that verified it, and otherwise (a key added or
/// revoked within the page, a failure) folds the record the ordinary, sequential way. So the
/// result is exactly that of [`crate::replay::apply_record`] on every record.
pub fn replay_from(store: &Store, mut state: State) -> Result<(State, u64), DataDirError> {
    let size = store.size();
    let mut warnings = 0u64;
    let mut next = state.size();
    while next < size {
        let page = store.range(next, RANGE_RECORDS_MAX)?;
        if page.is_empty() {
            return Err(DataDirError::Mismatch(format!("record {next} is missing from the store")));
        }
        let checked: Vec<Option<Checked>> = {
            use rayon::prelude::*;
            let at_start = &state;
            page.par_iter().map(|rec| Checked::new(at_start, rec)).collect()
        };
        for (rec, checked) in page.iter().zip(checked) {
            if rec.seq != next {
                return Err(DataDirError::Mismatch(format!("expected record {next}, found {}", rec.seq)));
            }
            let reused = checked.filter(|c| {
                c.signers
                    .iter()
                    .all(|(keyid, key)| crate::replay::signer_key(&state, keyid, &c.statement).as_ref() == Some(key))
            });
            match reused {
                Some(c) => {
                    let keyids: Vec<String> = c.signers.into_iter().map(|(k, _)| k).collect();
                    projector::apply(
                        &mut state,
                        &projector::Event {
                            seq: rec.seq,
                            received_at_ms: rec.received_at_ms,
                            statement: &c.statement,
                            signers: &keyids,
                        },
                    );
                }
                None => {
                    if let Err(e) = crate::replay::apply_record(&mut state, rec) {
                        warnings += 1;
                        tracing::warn!("replay: {e}");
                    }
                }
            }
            next += 1;
        }
    }
    debug_assert_eq!(state.size(), size);
    Ok((state, warnings))
}

/// A record whose every signature verified against the keys of an earlier state.
struct Checked {
    statement: ledger::statement::Statement,
    signers: Vec<(String, ledger::keys::VerifierKey)>,
}

impl Checked {
    fn new(state: &State, rec: &ledger::record::Record) -> Option<Checked> {
        let env = ledger::dsse::Envelope::parse(rec.envelope()).ok()?;
        let statement = ledger::statement::Statement::parse(&env.payload).ok()?;
        let signers = crate::replay::verify_signers(state, &env, &statement).ok()?;
        Some(Checked { statement, signers })
    }
}

/// Saves snapshots from the sequencer without stalling it: the state is cloned (O(1)) and
/// serialised on a background thread; at most one save runs at a time.
pub struct SnapshotWriter {
    store: Store,
    replay_warnings: u64,
    saved_size: u64,
    /// A snapshot at `saved_size` was written by this process.
    saved: bool,
    saving: Arc<AtomicBool>,
}

impl SnapshotWriter {
    pub fn new(store: Store, size: u64, replay_warnings: u64) -> SnapshotWriter {
        SnapshotWriter {
            store,
            replay_warnings,
            saved_size: size,
            saved: false,
            saving: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Starts a background save if the log grew by an interval since the last one.
    pub fn after_batch(&mut self, state: &State) {
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
    pub fn finish(&mut self, state: &State) {
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
