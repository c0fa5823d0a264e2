//! The auditor's memory between runs: `{"checkpoint": "<signed note>"}`, the last checkpoint
//! it verified. Written atomically (temp file, fsync, rename, fsync of the directory), so a
//! crash leaves the old state or the new one, never a torn file.

use std::io::Write;
use std::path::Path;

use ledger::checkpoint::Checkpoint;
use ledger::keys::VerifierKey;
use serde::{Deserialize, Serialize};

use super::{read_small_file, AuditError, NOTE_FILE_BYTES_MAX};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StateFile {
    /// The last checkpoint this auditor verified, as signed note text.
    pub checkpoint: String,
}

/// A checkpoint with the note it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    pub note: String,
}

impl SignedCheckpoint {
    /// Opens a note with the pinned log key.
    pub fn open(note: &str, log_key: &VerifierKey) -> Result<SignedCheckpoint, ledger::checkpoint::CheckpointError> {
        let checkpoint = Checkpoint::open(note.as_bytes(), log_key)?;
        Ok(SignedCheckpoint { checkpoint, note: note.to_string() })
    }
}

/// Loads the saved checkpoint; `None` when the file does not exist yet (first run).
pub(crate) fn load(path: &Path, log_key: &VerifierKey) -> Result<Option<SignedCheckpoint>, AuditError> {
    if !path.exists() {
        return Ok(None);
    }
    let bytes = read_small_file(path, NOTE_FILE_BYTES_MAX)?;
    let state: StateFile = serde_json::from_slice(&bytes)
        .map_err(|e| AuditError::Usage(format!("{}: not an auditor state file: {e}", path.display())))?;
    let signed = SignedCheckpoint::open(&state.checkpoint, log_key).map_err(|e| {
        AuditError::Usage(format!(
            "{}: the saved checkpoint does not verify with the pinned log key ({e}); is it another log's state?",
            path.display()
        ))
    })?;
    Ok(Some(signed))
}

/// Saves `note` as the last verified checkpoint, atomically.
pub(crate) fn save(path: &Path, note: &str) -> Result<(), AuditError> {
    let state = StateFile { checkpoint: note.to_string() };
    let mut bytes = serde_json::to_vec_pretty(&state).map_err(|e| AuditError::io(path.display(), e))?;
    bytes.push(b'\n');
    write_atomically(path, &bytes)
}

/// Writes `bytes` to `path` via a temp file in the same directory, fsync and rename.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), AuditError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| AuditError::Usage(format!("{}: not a file path", path.display())))?;
    let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename is durable once the directory is.
        std::fs::File::open(&dir)?.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(AuditError::io(path.display(), e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::keys::SigningKey;

    #[test]
    fn round_trip_and_first_run() {
        let key = SigningKey::generate("log.example/ci").unwrap();
        let note = Checkpoint { origin: "log.example/ci".into(), size: 3, root: [1; 32] }.sign(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auditor.json");
        assert_eq!(load(&path, &key.verifier()).unwrap(), None);
        save(&path, &note).unwrap();
        let loaded = load(&path, &key.verifier()).unwrap().unwrap();
        assert_eq!(loaded.checkpoint.size, 3);
        assert_eq!(loaded.note, note);
        // No temp file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn another_logs_state_is_refused() {
        let key = SigningKey::generate("log.example/ci").unwrap();
        let other = SigningKey::generate("log.example/ci").unwrap();
        let note = Checkpoint { origin: "log.example/ci".into(), size: 3, root: [1; 32] }.sign(&other).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auditor.json");
        save(&path, &note).unwrap();
        assert!(matches!(load(&path, &key.verifier()), Err(AuditError::Usage(_))));
        std::fs::write(&path, b"{not json").unwrap();
        assert!(matches!(load(&path, &key.verifier()), Err(AuditError::Usage(_))));
    }
}
