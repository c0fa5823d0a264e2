//! C2SP signed-note: text, a blank line, then `— <name> <base64(key id || signature)>` lines.

use crate::b64;
use crate::keys::{is_valid_key_name, SigningKey, VerifierKey};

pub use crate::limits::{NOTE_BYTES_MAX, NOTE_SIGNATURES_MAX, NOTE_TEXT_BYTES_MAX};

/// Why bytes are not a signed note, or not one signed by a known key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NoteError {
    /// Notes are UTF-8 text.
    #[error("note is not valid UTF-8")]
    NotUtf8,
    /// The text does not have the signed-note shape (what is wrong).
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    /// Larger than [`NOTE_BYTES_MAX`] (or, to sign, more text than [`NOTE_TEXT_BYTES_MAX`]).
    #[error("note is too large (at most {NOTE_BYTES_MAX} bytes, {NOTE_TEXT_BYTES_MAX} of text to sign)")]
    TooLarge,
    /// No signature line is by one of the keys given.
    #[error("note has no signature by a known key")]
    UnverifiedNote,
    /// A known key's signature line does not verify (its keyid).
    #[error("invalid signature by key {0}")]
    InvalidSignature(String),
}

/// One signature line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// The name of the key that signed.
    pub name: String,
    /// The id of the key that signed: with the name, it picks the key.
    pub id: u32,
    /// The Ed25519 signature (without the 4-byte key id prefix).
    pub sig: Vec<u8>,
}

/// A parsed note: its text (ending in `\n`) and its signature lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The signed text, ending in `\n`.
    pub text: String,
    /// The signature lines (after [`open`], only the verified ones).
    pub signatures: Vec<NoteSignature>,
}

/// The prefix of a signature line: em dash (U+2014) and a space.
pub const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// Signed notes may hold no ASCII control characters other than newline.
fn check_text_chars(text: &str) -> Result<(), NoteError> {
    if text.chars().any(|c| c < ' ' && c != '\n') {
        return Err(NoteError::Malformed("control character"));
    }
    Ok(())
}

/// Signs `text` (which must end in a newline) and returns the whole note.
pub fn sign(text: &str, key: &SigningKey) -> Result<String, NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::Malformed("text must end in a newline"));
    }
    check_text_chars(text)?;
    if text.len() > NOTE_TEXT_BYTES_MAX {
        return Err(NoteError::TooLarge);
    }
    let mut raw = Vec::with_capacity(4 + 64);
    raw.extend_from_slice(&key.id().to_be_bytes());
    raw.extend_from_slice(&key.sign(text.as_bytes()));
    Ok(format!("{text}\n{SIGNATURE_PREFIX}{} {}\n", key.name(), b64::encode(raw)))
}

/// Parses a note without checking signatures.
pub fn parse(msg: &[u8]) -> Result<Note, NoteError> {
    if msg.len() > NOTE_BYTES_MAX {
        return Err(NoteError::TooLarge);
    }
    let msg = std::str::from_utf8(msg).map_err(|_| NoteError::NotUtf8)?;
    check_text_chars(msg)?;
    // The text is separated from the signatures by the last blank line.
    let split = msg.rfind("\n\n").ok_or(NoteError::Malformed("no blank line before the signatures"))?;
    let (text, sigs) = (&msg[..split + 1], &msg[split + 2..]);
    if sigs.is_empty() {
        return Err(NoteError::Malformed("no signature lines"));
    }
    if !sigs.ends_with('\n') {
        return Err(NoteError::Malformed("signature lines must end in a newline"));
    }
    // Count first, so a hostile note with many lines costs no decoding.
    if sigs.bytes().filter(|&b| b == b'\n').count() > NOTE_SIGNATURES_MAX {
        return Err(NoteError::Malformed("too many signature lines"));
    }
    let mut signatures = Vec::new();
    for line in sigs[..sigs.len() - 1].split('\n') {
        let rest = line.strip_prefix(SIGNATURE_PREFIX).ok_or(NoteError::Malformed("signature line without em dash"))?;
        let (name, encoded) = rest.split_once(' ').ok_or(NoteError::Malformed("signature line without a space"))?;
        if !is_valid_key_name(name) {
            return Err(NoteError::Malformed("invalid key name in a signature line"));
        }
        let raw = b64::decode(encoded).map_err(|_| NoteError::Malformed("bad base64 in a signature line"))?;
        if raw.len() < 5 {
            return Err(NoteError::Malformed("signature too short"));
        }
        let id = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
        signatures.push(NoteSignature { name: name.to_string(), id, sig: raw[4..].to_vec() });
    }
    Ok(Note { text: text.to_string(), signatures })
}

/// Parses a note and verifies the signatures of the `known` keys. Signature lines from
/// unknown keys are ignored (dropped from the result); a bad signature from a known key is an
/// error, and so is a note with no signature by any known key.
pub fn open(msg: &[u8], known: &[VerifierKey]) -> Result<Note, NoteError> {
    let parsed = parse(msg)?;
    let mut verified: Vec<NoteSignature> = Vec::new();
    for sig in parsed.signatures {
        // A key is identified by name and id together; sharing one of them is not enough.
        let Some(key) = known.iter().find(|k| k.name() == sig.name && k.id() == sig.id) else {
            continue;
        };
        if !key.verify(parsed.text.as_bytes(), &sig.sig) {
            return Err(NoteError::InvalidSignature(key.keyid()));
        }
        if !verified.iter().any(|v| v.name == sig.name && v.id == sig.id) {
            verified.push(sig);
        }
    }
    if verified.is_empty() {
        return Err(NoteError::UnverifiedNote);
    }
    Ok(Note { text: parsed.text, signatures: verified })
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of c2sp.org/signed-note (also SPEC.md section 2).
    const SPEC_KEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
    const SPEC_NOTE: &str = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

    // golang.org/x/mod/sumdb/note: note_test.go TestOpen.
    const PETER_KEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const PETER_SKEY: &str = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const ENOCH_KEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
    const GO_TEXT: &str =
        "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    const PETER_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    const ENOCH_SIG: &str = "\u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

    fn key(text: &str) -> VerifierKey {
        VerifierKey::parse(text).unwrap()
    }

    #[test]
    fn spec_vector_verifies() {
        let note = open(SPEC_NOTE.as_bytes(), &[key(SPEC_KEY)]).unwrap();
        assert_eq!(note.text, "This is an example message.\n");
        assert_eq!(note.signatures.len(), 1);
        assert_eq!(note.signatures[0].name, "example.com/foo");
        assert_eq!(note.signatures[0].id, 0x530d903a);
        assert_eq!(note.signatures[0].sig.len(), 64);
    }

    #[test]
    fn spec_vector_fails_on_any_changed_text() {
        let changed = SPEC_NOTE.replace("example message", "example massage");
        assert_eq!(
            open(changed.as_bytes(), &[key(SPEC_KEY)]),
            Err(NoteError::InvalidSignature("example.com/foo+530d903a".into()))
        );
    }

    #[test]
    fn go_vector_signs_identically() {
        // Ed25519 is deterministic, so signing reproduces Go's exact note.
        let sk = SigningKey::parse(PETER_SKEY).unwrap();
        assert_eq!(sign(GO_TEXT, &sk).unwrap(), format!("{GO_TEXT}\n{PETER_SIG}"));
    }

    #[test]
    fn signatures_from_unknown_keys_are_ignored() {
        let msg = format!("{GO_TEXT}\n{PETER_SIG}{ENOCH_SIG}");
        let note = open(msg.as_bytes(), &[key(PETER_KEY)]).unwrap();
        assert_eq!(note.text, GO_TEXT);
        assert_eq!(note.signatures.len(), 1);
        assert_eq!(note.signatures[0].name, "PeterNeumann");
        let both = open(msg.as_bytes(), &[key(PETER_KEY), key(ENOCH_KEY)]).unwrap();
        assert_eq!(both.signatures.len(), 2);
        // Unknown keys only: nothing verified.
        assert_eq!(open(msg.as_bytes(), &[key(SPEC_KEY)]), Err(NoteError::UnverifiedNote));
        assert_eq!(open(msg.as_bytes(), &[]), Err(NoteError::UnverifiedNote));
        // An unknown extra signature on the spec vector does not matter either.
        let extra = format!("{SPEC_NOTE}{ENOCH_SIG}");
        assert_eq!(open(extra.as_bytes(), &[key(SPEC_KEY)]).unwrap().signatures.len(), 1);
    }

    #[test]
    fn same_name_other_id_is_an_unknown_key() {
        let other = SigningKey::generate("PeterNeumann").unwrap();
        let msg = format!("{GO_TEXT}\n{PETER_SIG}");
        assert_eq!(open(msg.as_bytes(), &[other.verifier()]), Err(NoteError::UnverifiedNote));
    }

    #[test]
    fn bad_signature_by_a_known_key_is_an_error() {
        let bad = format!("{GO_TEXT}\n{}ABCD{}", &PETER_SIG[..60], &PETER_SIG[60..]);
        assert_eq!(
            open(bad.as_bytes(), &[key(PETER_KEY)]),
            Err(NoteError::InvalidSignature("PeterNeumann+c74f20a3".into()))
        );
    }

    #[test]
    fn malformed_notes_are_rejected() {
        let bad = [
            GO_TEXT.to_string(),
            format!("{GO_TEXT}\n"),
            format!("{GO_TEXT}\n{}", &PETER_SIG[..PETER_SIG.len() - 1]),
            format!("\x01{GO_TEXT}\n{PETER_SIG}"),
            format!("{GO_TEXT}\n\u{2014} Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"),
            format!("{GO_TEXT}\n{PETER_SIG}Unexpected line.\n"),
            format!("{GO_TEXT}\n- PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"),
            format!("{GO_TEXT}\n\u{2014} PeterNeumann not*base64\n"),
            format!("{GO_TEXT}\n\u{2014} PeterNeumann AAAA\n"),
            format!("{GO_TEXT}\n{}", PETER_SIG.repeat(NOTE_SIGNATURES_MAX + 1)),
        ];
        for msg in &bad {
            assert!(matches!(open(msg.as_bytes(), &[key(PETER_KEY)]), Err(NoteError::Malformed(_))), "{msg:?}");
        }
        let max = format!("{GO_TEXT}\n{}", PETER_SIG.repeat(NOTE_SIGNATURES_MAX));
        assert_eq!(open(max.as_bytes(), &[key(PETER_KEY)]).unwrap().signatures.len(), 1);
    }

    #[test]
    fn non_utf8_and_oversize_notes_are_rejected() {
        let mut msg = format!("{GO_TEXT}\n{PETER_SIG}").into_bytes();
        msg[0] = 0xff;
        assert_eq!(parse(&msg), Err(NoteError::NotUtf8));
        assert_eq!(parse(&vec![b'a'; NOTE_BYTES_MAX + 1]), Err(NoteError::TooLarge));
    }

    #[test]
    fn sign_round_trips_and_requires_a_final_newline() {
        let sk = SigningKey::generate("log.example/ci").unwrap();
        let note = sign("a\n\nb\n", &sk).unwrap();
        let opened = open(note.as_bytes(), &[sk.verifier()]).unwrap();
        assert_eq!(opened.text, "a\n\nb\n");
        assert!(matches!(sign("no newline", &sk), Err(NoteError::Malformed(_))));
        assert!(matches!(sign("tab\there\n", &sk), Err(NoteError::Malformed(_))));
    }
}
