//! C2SP tlog-checkpoint: `<origin>\n<size>\n<base64 root>\n`, signed as a note by the log key.

use crate::b64;
use crate::keys::{is_valid_key_name, SigningKey, VerifierKey};
use crate::limits::CHECKPOINT_SIZE_DIGITS_MAX;
use crate::merkle::{self, ProofError};
use crate::note::{self, NoteError};
use crate::Hash;

/// Why a checkpoint note is not a checkpoint of the expected log.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CheckpointError {
    /// The signed note does not parse or verify.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// The note's text is not a C2SP checkpoint body.
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
    /// The checkpoint names another log than the key's.
    #[error("checkpoint origin {found:?} is not the expected {expected:?}")]
    WrongOrigin {
        /// The origin the log key names.
        expected: String,
        /// The origin the checkpoint names.
        found: String,
    },
}

/// A log's signed statement of its Merkle tree at one size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's name: its log key's name.
    pub origin: String,
    /// The number of records in the tree.
    pub size: u64,
    /// The RFC 6962 root of the first `size` records.
    pub root: Hash,
}

/// What accepting a newer checkpoint after an older one found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acceptance {
    /// Same size, same root: nothing new (the proof is not looked at).
    Unchanged,
    /// The log grew, and the consistency proof shows the old tree is a prefix of the new.
    Extended,
}

/// Why a newer checkpoint must not be accepted after an older one. Each case, signed by the
/// log key, is evidence that the log misbehaved (except [`CheckpointFork::OtherLog`], which
/// is the caller's mix-up).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CheckpointFork {
    /// The two checkpoints are of different logs: there is nothing to compare.
    #[error("the checkpoints are of two logs, {old:?} and {new:?}")]
    OtherLog {
        /// The older checkpoint's origin.
        old: String,
        /// The newer checkpoint's origin.
        new: String,
    },
    /// The newer checkpoint has fewer records: the log shrank.
    #[error("a checkpoint of {new_size} records after one of {old_size}: the log shrank")]
    Shrunk {
        /// The older checkpoint's size.
        old_size: u64,
        /// The newer checkpoint's (smaller) size.
        new_size: u64,
    },
    /// Two checkpoints of the same size with different roots: two histories.
    #[error("two checkpoints of {size} records with different roots")]
    Forked {
        /// The size both checkpoints have.
        size: u64,
        /// The older checkpoint's root.
        old_root: Hash,
        /// The newer checkpoint's root.
        new_root: Hash,
    },
    /// The log grew, but the consistency proof does not show the old tree is a prefix of
    /// the new one.
    #[error("no consistency from {old_size} to {new_size} records: {source}")]
    Inconsistent {
        /// The older checkpoint's size.
        old_size: u64,
        /// The newer checkpoint's size.
        new_size: u64,
        /// Why the proof failed.
        #[source]
        source: ProofError,
    },
}

/// Whether accepting `new` after `old` needs a consistency proof: only when the log grew.
/// A monitor or witness fetches the proof `{from: old.size, to: new.size}` only then, and
/// passes an empty one otherwise.
pub fn needs_consistency_proof(old: &Checkpoint, new: &Checkpoint) -> bool {
    new.size > old.size
}

/// The rule for accepting a newer checkpoint of a log after an older one, shared by the
/// monitor and (later) a witness. The same origin is required; a smaller size is refused
/// (the log shrank); the same size must have the same root (otherwise the log forked);
/// a larger size needs `proof`, an RFC 9162 consistency proof from `old.size` to
/// `new.size`, to verify. `proof` is only looked at when the log grew
/// ([`needs_consistency_proof`]).
pub fn accept_newer(old: &Checkpoint, new: &Checkpoint, proof: &[Hash]) -> Result<Acceptance, CheckpointFork> {
    if old.origin != new.origin {
        return Err(CheckpointFork::OtherLog { old: old.origin.clone(), new: new.origin.clone() });
    }
    if new.size < old.size {
        return Err(CheckpointFork::Shrunk { old_size: old.size, new_size: new.size });
    }
    if new.size == old.size {
        if new.root != old.root {
            return Err(CheckpointFork::Forked { size: new.size, old_root: old.root, new_root: new.root });
        }
        return Ok(Acceptance::Unchanged);
    }
    merkle::verify_consistency(old.size, new.size, &old.root, &new.root, proof)
        .map_err(|source| CheckpointFork::Inconsistent { old_size: old.size, new_size: new.size, source })?;
    Ok(Acceptance::Extended)
}

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
            && size.len() <= CHECKPOINT_SIZE_DIGITS_MAX
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

    /// A log of `n` leaves `[i]` and its checkpoints at every size.
    fn tree(n: u8) -> merkle::MemoryTree {
        let mut tree = merkle::MemoryTree::new();
        for i in 0..n {
            tree.push(merkle::leaf_hash(&[i]));
        }
        tree
    }

    fn at(tree: &merkle::MemoryTree, size: u64) -> Checkpoint {
        Checkpoint { origin: "ledger.example/ci".into(), size, root: tree.root_at(size).unwrap() }
    }

    #[test]
    fn a_shrunk_log_is_refused() {
        let t = tree(7);
        let (old, new) = (at(&t, 7), at(&t, 5));
        assert!(!needs_consistency_proof(&old, &new));
        assert_eq!(accept_newer(&old, &new, &[]), Err(CheckpointFork::Shrunk { old_size: 7, new_size: 5 }));
        // Even with a proof that would verify the other way round.
        let proof = t.consistency_proof(5, 7).unwrap();
        assert_eq!(accept_newer(&old, &new, &proof), Err(CheckpointFork::Shrunk { old_size: 7, new_size: 5 }));
    }

    #[test]
    fn the_same_size_and_root_is_unchanged() {
        let t = tree(7);
        assert!(!needs_consistency_proof(&at(&t, 7), &at(&t, 7)));
        assert_eq!(accept_newer(&at(&t, 7), &at(&t, 7), &[]), Ok(Acceptance::Unchanged));
        assert_eq!(accept_newer(&at(&t, 0), &at(&t, 0), &[]), Ok(Acceptance::Unchanged));
    }

    #[test]
    fn the_same_size_with_another_root_is_a_fork() {
        let t = tree(7);
        let old = at(&t, 7);
        let new = Checkpoint { root: [9; 32], ..old.clone() };
        assert_eq!(
            accept_newer(&old, &new, &[]),
            Err(CheckpointFork::Forked { size: 7, old_root: old.root, new_root: [9; 32] })
        );
    }

    #[test]
    fn a_grown_log_with_a_good_proof_is_extended() {
        let t = tree(13);
        for (old_size, new_size) in [(0, 13), (1, 13), (6, 13), (8, 13), (12, 13)] {
            let (old, new) = (at(&t, old_size), at(&t, new_size));
            assert!(needs_consistency_proof(&old, &new));
            let proof = t.consistency_proof(old_size, new_size).unwrap();
            assert_eq!(accept_newer(&old, &new, &proof), Ok(Acceptance::Extended), "{old_size} -> {new_size}");
        }
    }

    #[test]
    fn a_grown_log_with_a_bad_proof_is_inconsistent() {
        let t = tree(13);
        let (old, new) = (at(&t, 6), at(&t, 13));
        let mut proof = t.consistency_proof(6, 13).unwrap();
        proof[0][0] ^= 1;
        assert_eq!(
            accept_newer(&old, &new, &proof),
            Err(CheckpointFork::Inconsistent { old_size: 6, new_size: 13, source: ProofError::RootMismatch })
        );
        assert_eq!(
            accept_newer(&old, &new, &[]),
            Err(CheckpointFork::Inconsistent { old_size: 6, new_size: 13, source: ProofError::WrongLength })
        );
        // A rewritten history: the old root is not a prefix of the new tree.
        let rewritten = Checkpoint { root: [1; 32], ..old };
        let proof = t.consistency_proof(6, 13).unwrap();
        assert!(matches!(accept_newer(&rewritten, &new, &proof), Err(CheckpointFork::Inconsistent { .. })));
    }

    #[test]
    fn checkpoints_of_two_logs_are_not_compared() {
        let t = tree(3);
        let other = Checkpoint { origin: "other.example/log".into(), ..at(&t, 3) };
        assert!(matches!(accept_newer(&at(&t, 2), &other, &[]), Err(CheckpointFork::OtherLog { .. })));
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
