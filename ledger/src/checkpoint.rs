//! C2SP tlog-checkpoint: `<origin>\n<size>\n<base64 root>\n`, signed as a note by the log key.

use crate::b64;
use crate::keys::{is_valid_key_name, SigningKey, VerifierKey};
use crate::note::{self, NoteError};
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

/// Checkpoint sizes are ASCII decimal without leading zeros; u64 has at most 20 digits.
const SIZE_DIGITS_MAX: usize = 20;

impl Checkpoint {
    /// The checkpoint body: origin, size, base64 root, each line ending in `\n`.
    pub fn to_text(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, b64::encode(self.root))
    }

    /// Parses a checkpoint body (extension lines after the root are allowed and ignored).
    pub fn parse_text(text: &str) -> Result<Checkpoint, CheckpointError> {
        let body = text.strip_suffix('\n').ok_or(CheckpointError::Malformed("body must end in a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        let size = lines.next().ok_or(CheckpointError::Malformed("missing tree size"))?;
        let root = lines.next().ok_or(CheckpointError::Malformed("missing root hash"))?;
        if !is_valid_key_name(origin) {
            return Err(CheckpointError::Malformed("invalid origin"));
        }
        let size_ok = !size.is_empty()
            && size.len() <= SIZE_DIGITS_MAX
            && size.bytes().all(|b| b.is_ascii_digit())
            && (size == "0" || !size.starts_with('0'));
        let size: u64 = match size_ok.then(|| size.parse().ok()).flatten() {
            Some(size) => size,
            None => return Err(CheckpointError::Malformed("tree size must be decimal without leading zeros")),
        };
        let root = b64::decode_hash(root).ok_or(CheckpointError::Malformed("root must be base64 of 32 bytes"))?;
        if lines.any(str::is_empty) {
            return Err(CheckpointError::Malformed("empty extension line"));
        }
        Ok(Checkpoint { origin: origin.to_string(), size, root })
    }

    /// The signed note text. The key's name must be the origin.
    pub fn sign(&self, log_key: &SigningKey) -> Result<String, CheckpointError> {
        if log_key.name() != self.origin {
            return Err(CheckpointError::WrongOrigin {
                expected: log_key.name().to_string(),
                found: self.origin.clone(),
            });
        }
        if !is_valid_key_name(&self.origin) {
            return Err(CheckpointError::Malformed("invalid origin"));
        }
        Ok(note::sign(&self.to_text(), log_key)?)
    }

    /// Verifies a signed checkpoint note with the log key (whose name is the origin).
    pub fn open(note: &[u8], log_key: &VerifierKey) -> Result<Checkpoint, CheckpointError> {
        let opened = note::open(note, std::slice::from_ref(log_key))?;
        let checkpoint = Checkpoint::parse_text(&opened.text)?;
        if checkpoint.origin != log_key.name() {
            return Err(CheckpointError::WrongOrigin {
                expected: log_key.name().to_string(),
                found: checkpoint.origin,
            });
        }
        Ok(checkpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint() -> Checkpoint {
        Checkpoint { origin: "ledger.example/ci".into(), size: 42, root: [7u8; 32] }
    }

    #[test]
    fn text_is_the_c2sp_body() {
        assert_eq!(checkpoint().to_text(), "ledger.example/ci\n42\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n");
        assert_eq!(Checkpoint::parse_text(&checkpoint().to_text()).unwrap(), checkpoint());
        let with_ext = format!("{}extension line\n", checkpoint().to_text());
        assert_eq!(Checkpoint::parse_text(&with_ext).unwrap(), checkpoint());
    }

    #[test]
    fn signs_and_opens_with_the_log_key() {
        let key = SigningKey::generate("ledger.example/ci").unwrap();
        let note = checkpoint().sign(&key).unwrap();
        assert!(note.starts_with(&checkpoint().to_text()));
        assert!(note.contains("\n\n\u{2014} ledger.example/ci "));
        assert_eq!(Checkpoint::open(note.as_bytes(), &key.verifier()).unwrap(), checkpoint());
        let other = SigningKey::generate("ledger.example/ci").unwrap();
        assert_eq!(
            Checkpoint::open(note.as_bytes(), &other.verifier()),
            Err(CheckpointError::Note(NoteError::UnverifiedNote))
        );
        let tampered = note.replace("\n42\n", "\n43\n");
        assert!(matches!(
            Checkpoint::open(tampered.as_bytes(), &key.verifier()),
            Err(CheckpointError::Note(NoteError::InvalidSignature(_)))
        ));
    }

    #[test]
    fn origin_must_be_the_key_name() {
        let key = SigningKey::generate("other.example/log").unwrap();
        assert!(matches!(checkpoint().sign(&key), Err(CheckpointError::WrongOrigin { .. })));
        // A note by the right key over a body naming another origin.
        let body = Checkpoint { origin: "elsewhere".into(), ..checkpoint() }.to_text();
        let note = note::sign(&body, &key).unwrap();
        assert!(matches!(Checkpoint::open(note.as_bytes(), &key.verifier()), Err(CheckpointError::WrongOrigin { .. })));
    }

    #[test]
    fn malformed_bodies_are_rejected() {
        for bad in [
            "",
            "origin\n",
            "origin\n42\n",
            "origin\n42\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=",
            "origin\n042\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n",
            "origin\n-1\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n",
            "origin\n99999999999999999999\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n",
            "origin\n42\nBwcHBwcH\n",
            "origin\n42\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n\n",
            "two words\n42\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n",
        ] {
            assert!(matches!(Checkpoint::parse_text(bad), Err(CheckpointError::Malformed(_))), "{bad:?}");
        }
        let max = format!("origin\n{}\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n", u64::MAX);
        assert_eq!(Checkpoint::parse_text(&max).unwrap().size, u64::MAX);
    }
}
