//! What the witness remembers of each log: the last cosigned checkpoint, one file per origin,
//! replaced atomically (temp file, fsync, rename, fsync of the directory) before a cosignature
//! is answered. Checking a request against it and persisting the new checkpoint happen under
//! one lock per origin, so two requests cannot both pass the check (the rollback race of
//! tlog-witness), and a size is never cosigned with two roots, even across a crash.
//!
//! On disk, `DIR/<hex SHA-256 of the origin>.checkpoint`:
//!
//! ```text
//! grantline-witness-state/1
//! <the signed checkpoint note last cosigned, as the log sent it>
//! ```
//!
//! `DIR/lock` is held (an advisory lock) while a witness runs on the directory.
//! A missing file is the empty tree (size 0). A file that does not parse, or names another
//! origin, stops start-up: guessing could cosign a second root for a size.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ledger::checkpoint::{accept_newer, Acceptance, Checkpoint, CheckpointFork};
use ledger::keys::VerifierKey;
use ledger::{note, Hash};
use sha2::{Digest, Sha256};

use super::fault::Fault;
use crate::limits::WITNESS_BODY_BYTES_MAX;

/// The first line of a state file: its format.
const STATE_HEADER: &[u8] = b"grantline-witness-state/1\n";
/// The state files' extension (a temp file adds `.tmp`).
const STATE_EXTENSION: &str = "checkpoint";

/// Why the witness's data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StateError {
    #[error("witness data directory {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("witness state file {path} is corrupt ({reason}); it is left as it is, and the witness will not guess")]
    Corrupt { path: String, reason: String },
    #[error("witness data directory {path} is in use by another witness process")]
    InUse { path: String },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io { path: path.display().to_string(), source }
}

/// Why a checkpoint is not cosigned, once its signature verified.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// `old` is not the last cosigned size, which is given (409).
    Conflict(u64),
    /// A bad consistency proof, a proof where none belongs, or the same size with another
    /// root (422).
    Inconsistent(String),
    /// An earlier write of this origin's state failed; the witness needs a restart (503).
    Broken,
    /// Writing the new state failed (500).
    Persist(String),
}

/// The last cosigned size and root of one log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Latest {
    size: u64,
    root: Hash,
}

/// One log the witness follows.
pub(super) struct Log {
    pub keys: Vec<VerifierKey>,
    origin: String,
    path: PathBuf,
    /// `None` once a write failed: what is on disk is then unknown until a restart reads it.
    latest: Mutex<Option<Latest>>,
}

/// Every log the witness follows, by origin, and the directory their states live in.
pub(super) struct Logs {
    by_origin: HashMap<String, Arc<Log>>,
    dir: PathBuf,
    fault: Fault,
    _lock: DirLock,
}

impl Logs {
    /// Opens (creating it if needed) the data directory, takes its lock and reads the state of
    /// each configured log. `keys` are the trusted log keys; each key's name is its origin.
    pub(super) fn open(dir: &Path, keys: &[VerifierKey], fault: Fault) -> Result<Logs, StateError> {
        if !dir.is_dir() {
            fs::create_dir_all(dir).map_err(io_error(dir))?;
            // A new directory's entry must be durable before anything in it is: losing the
            // whole directory to a power cut would forget every cosigned size.
            let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            File::open(parent).and_then(|f| f.sync_all()).map_err(io_error(parent))?;
        }
        let lock = DirLock::take(dir)?;
        let mut by_origin: HashMap<String, Vec<VerifierKey>> = HashMap::new();
        for key in keys {
            let keys = by_origin.entry(key.name().to_string()).or_default();
            if !keys.contains(key) {
                keys.push(key.clone());
            }
        }
        let mut logs = HashMap::new();
        for (origin, keys) in by_origin {
            let path = dir.join(format!("{}.{STATE_EXTENSION}", hex::encode(Sha256::digest(origin.as_bytes()))));
            let latest = read_state(&path, &origin)?;
            logs.insert(origin.clone(), Arc::new(Log { keys, origin, path, latest: Mutex::new(Some(latest)) }));
        }
        Ok(Logs { by_origin: logs, dir: dir.to_path_buf(), fault, _lock: lock })
    }

    pub(super) fn get(&self, origin: &str) -> Option<Arc<Log>> {
        self.by_origin.get(origin).cloned()
    }

    /// Each log's origin and last cosigned size, by origin (a log whose state could not be
    /// written is left out: its size is unknown until a restart).
    pub(super) fn sizes(&self) -> Vec<(String, u64)> {
        let mut sizes: Vec<_> =
            self.by_origin.values().filter_map(|log| Some((log.origin.clone(), log.size()?))).collect();
        sizes.sort();
        sizes
    }

    /// The check and the write of tlog-witness, atomically for `log`: `old` must be the last
    /// cosigned size; the same size must have the same root (and no proof); a larger one needs
    /// a consistency proof from the last cosigned checkpoint. A new checkpoint is durable
    /// before this returns `Ok`; the caller then cosigns it. Blocking (fsync).
    pub(super) fn advance(
        &self,
        log: &Log,
        old: u64,
        proof: &[Hash],
        new: &Checkpoint,
        note: &[u8],
    ) -> Result<(), Refusal> {
        debug_assert_eq!(new.origin, log.origin);
        // A poisoned lock means a panic between the check and the assignment, and the
        // assignment happens only after a successful write: the value is still what is on disk.
        let mut guard = log.latest.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let latest = (*guard).ok_or(Refusal::Broken)?;
        if old != latest.size {
            return Err(Refusal::Conflict(latest.size));
        }
        if !proof.is_empty() && (old == 0 || old == new.size) {
            return Err(Refusal::Inconsistent(format!(
                "a consistency proof from size {old} to {} must be empty, and this one has {} hashes",
                new.size,
                proof.len()
            )));
        }
        let prev = Checkpoint { origin: log.origin.clone(), size: latest.size, root: latest.root };
        match accept_newer(&prev, new, proof) {
            Ok(Acceptance::Unchanged) => Ok(()),
            Ok(Acceptance::Extended) => {
                if let Err(e) = write_state(&self.dir, &log.path, note) {
                    *guard = None;
                    tracing::error!(origin = %log.origin, "cannot persist the witness state: {e}; restart the witness");
                    return Err(Refusal::Persist(format!("cannot persist the new checkpoint: {e}")));
                }
                *guard = Some(Latest { size: new.size, root: new.root });
                self.fault.after_persist();
                Ok(())
            }
            Err(e @ CheckpointFork::Forked { .. }) => {
                tracing::warn!(origin = %log.origin, size = new.size, "log signed a second root for a cosigned size: {e}");
                Err(Refusal::Inconsistent(format!(
                    "size {} already has another root at this witness: the log forked",
                    new.size
                )))
            }
            Err(e @ CheckpointFork::Inconsistent { .. }) => {
                tracing::warn!(origin = %log.origin, "inconsistent checkpoint: {e}");
                Err(Refusal::Inconsistent(e.to_string()))
            }
            // `old` is the last size and at most the new size, and the origin is the log's.
            Err(e @ (CheckpointFork::Shrunk { .. } | CheckpointFork::OtherLog { .. })) => {
                Err(Refusal::Inconsistent(e.to_string()))
            }
        }
    }
}

impl Log {
    fn size(&self) -> Option<u64> {
        self.latest.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).map(|l| l.size)
    }
}

/// Reads one log's state; no file is the empty tree.
fn read_state(path: &Path, origin: &str) -> Result<Latest, StateError> {
    let corrupt = |reason: String| StateError::Corrupt { path: path.display().to_string(), reason };
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Latest { size: 0, root: ledger::merkle::empty_root() });
        }
        Err(e) => return Err(io_error(path)(e)),
    };
    if bytes.len() > STATE_HEADER.len() + WITNESS_BODY_BYTES_MAX {
        return Err(corrupt(format!("larger than {WITNESS_BODY_BYTES_MAX} bytes")));
    }
    let note_bytes = bytes.strip_prefix(STATE_HEADER).ok_or_else(|| corrupt("unknown format".into()))?;
    let parsed = note::parse(note_bytes).map_err(|e| corrupt(e.to_string()))?;
    let checkpoint = Checkpoint::parse_text(&parsed.text).map_err(|e| corrupt(e.to_string()))?;
    if checkpoint.origin != origin {
        return Err(corrupt(format!("it holds a checkpoint of {:?}, not of {origin:?}", checkpoint.origin)));
    }
    Ok(Latest { size: checkpoint.size, root: checkpoint.root })
}

/// Replaces `path` with the state holding `note`: a temp file written and fsynced, renamed
/// over the old one, then the directory fsynced so the rename itself is durable. A crash at
/// any point leaves the old file or the new one, never a mix.
fn write_state(dir: &Path, path: &Path, note: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("{STATE_EXTENSION}.tmp"));
    let mut file = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
    file.write_all(STATE_HEADER)?;
    file.write_all(note)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

/// The file whose lock holds the data directory.
const LOCK_FILE: &str = "lock";

/// Holds the data directory for this process: two witnesses over one directory could each
/// pass their own check and cosign two roots for one size. An advisory lock on `DIR/lock`:
/// the kernel drops it when the process dies, `kill -9` included, so no stale lock remains.
struct DirLock {
    _file: File,
}

impl DirLock {
    fn take(dir: &Path) -> Result<DirLock, StateError> {
        use fs2::FileExt;
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error(dir))?;
        match file.try_lock_exclusive() {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(e) if e.kind() == fs2::lock_contended_error().kind() => {
                Err(StateError::InUse { path: dir.display().to_string() })
            }
            Err(e) => Err(io_error(dir)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::keys::SigningKey;
    use ledger::merkle::{leaf_hash, MemoryTree};

    const ORIGIN: &str = "log.example/w";

    fn tree(leaves: &[u8]) -> MemoryTree {
        let mut t = MemoryTree::new();
        for leaf in leaves {
            t.push(leaf_hash(&[*leaf]));
        }
        t
    }

    fn signed(key: &SigningKey, t: &MemoryTree, size: u64) -> (Checkpoint, String) {
        let cp = Checkpoint { origin: ORIGIN.into(), size, root: t.root_at(size).unwrap() };
        let note = cp.sign(key).unwrap();
        (cp, note)
    }

    #[test]
    fn advances_persists_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate(ORIGIN).unwrap();
        let t = tree(&[1, 2, 3, 4, 5, 6, 7]);
        let logs = Logs::open(dir.path(), &[key.verifier()], Fault::None).unwrap();
        let log = logs.get(ORIGIN).unwrap();
        let (cp3, note3) = signed(&key, &t, 3);
        assert_eq!(logs.advance(&log, 0, &[], &cp3, note3.as_bytes()), Ok(()));
        assert_eq!(logs.advance(&log, 0, &[], &cp3, note3.as_bytes()), Err(Refusal::Conflict(3)));
        // The same checkpoint again is cosigned again; another root for size 3 never is.
        assert_eq!(logs.advance(&log, 3, &[], &cp3, note3.as_bytes()), Ok(()));
        let other = tree(&[1, 2, 9]);
        let (fork, fork_note) = signed(&key, &other, 3);
        assert!(matches!(logs.advance(&log, 3, &[], &fork, fork_note.as_bytes()), Err(Refusal::Inconsistent(_))));
        let (cp7, note7) = signed(&key, &t, 7);
        let mut bad = t.consistency_proof(3, 7).unwrap();
        bad[0][0] ^= 1;
        assert!(matches!(logs.advance(&log, 3, &bad, &cp7, note7.as_bytes()), Err(Refusal::Inconsistent(_))));
        assert_eq!(logs.advance(&log, 3, &t.consistency_proof(3, 7).unwrap(), &cp7, note7.as_bytes()), Ok(()));
        drop(log);
        drop(logs);
        let reopened = Logs::open(dir.path(), &[key.verifier()], Fault::None).unwrap();
        assert_eq!(reopened.sizes(), vec![(ORIGIN.to_string(), 7)]);
        let files: Vec<_> =
            fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).filter(|n| n != LOCK_FILE).collect();
        assert_eq!(files.len(), 1, "no temp file left: {files:?}");
    }

    #[test]
    fn a_second_process_on_the_directory_and_a_corrupt_state_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate(ORIGIN).unwrap();
        let logs = Logs::open(dir.path(), &[key.verifier()], Fault::None).unwrap();
        let again = Logs::open(dir.path(), &[key.verifier()], Fault::None).err().unwrap();
        assert!(matches!(again, StateError::InUse { .. }), "{again}");
        let path = logs.get(ORIGIN).unwrap().path.clone();
        drop(logs);
        fs::write(&path, b"grantline-witness-state/1\nnot a note").unwrap();
        let err = Logs::open(dir.path(), &[key.verifier()], Fault::None).err().unwrap();
        assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
    }
}
