//! C2SP tlog-checkpoint: `<origin>\n<size>\n<base64 root>\n`, signed as a note by the log key.

use crate::keys::{SigningKey, VerifierKey};
use crate::note::NoteError;
use crate::Hash;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CheckpointError {
    #[error(transparent)]
    Note(#[from] NoteError),
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
    #[error("checkpoint origin {found:?} is not the expected {expected:?}")]
    WrongOrigin { expected: String, found: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The checkpoint body: origin, size, base64 root, each line ending in `\n`.
    pub fn to_text(&self) -> String {
        todo!()
    }

    /// Parses a checkpoint body (extension lines after the root are allowed and ignored).
    pub fn parse_text(text: &str) -> Result<Checkpoint, CheckpointError> {
        todo!()
    }

    /// The signed note text. The key's name must be the origin.
    pub fn sign(&self, log_key: &SigningKey) -> Result<String, CheckpointError> {
        todo!()
    }

    /// Verifies a signed checkpoint note with the log key (whose name is the origin).
    pub fn open(note: &[u8], log_key: &VerifierKey) -> Result<Checkpoint, CheckpointError> {
        todo!()
    }
}
