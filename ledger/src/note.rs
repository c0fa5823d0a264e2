//! C2SP signed-note: text, a blank line, then `— <name> <base64(key id || signature)>` lines.

use crate::keys::{SigningKey, VerifierKey};

/// Notes larger than this are rejected before parsing.
pub const NOTE_BYTES_MAX: usize = 1 << 20;
/// At most this many signature lines are read.
pub const NOTE_SIGNATURES_MAX: usize = 100;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NoteError {
    #[error("note is not valid UTF-8")]
    NotUtf8,
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    #[error("note is too large")]
    TooLarge,
    #[error("note has no signature by a known key")]
    UnverifiedNote,
    #[error("invalid signature by key {0}")]
    InvalidSignature(String),
}

/// One signature line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub id: u32,
    /// The Ed25519 signature (without the 4-byte key id prefix).
    pub sig: Vec<u8>,
}

/// A parsed note: its text (ending in `\n`) and its signature lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub text: String,
    pub signatures: Vec<NoteSignature>,
}

/// Signs `text` (which must end in a newline) and returns the whole note.
pub fn sign(text: &str, key: &SigningKey) -> Result<String, NoteError> {
    todo!()
}

/// Parses a note without checking signatures.
pub fn parse(msg: &[u8]) -> Result<Note, NoteError> {
    todo!()
}

/// Parses a note and verifies the signatures of the `known` keys. Signature lines from
/// unknown keys are ignored (dropped from the result); a bad signature from a known key is an
/// error, and so is a note with no signature by any known key.
pub fn open(msg: &[u8], known: &[VerifierKey]) -> Result<Note, NoteError> {
    todo!()
}
