//! Target `note`: arbitrary bytes as a C2SP signed note and as a checkpoint.

use ledger::checkpoint::Checkpoint;
use ledger::note::{self, NOTE_SIGNATURES_MAX};

use crate::keys::log_key;

pub fn run(data: &[u8]) {
    let key = log_key().verifier();
    if let Ok(parsed) = note::parse(data) {
        assert!(parsed.text.ends_with('\n'), "a parsed note's text does not end in a newline");
        assert!(!parsed.signatures.is_empty() && parsed.signatures.len() <= NOTE_SIGNATURES_MAX);
        checkpoint_text(&parsed.text);
    }
    if let Ok(opened) = note::open(data, std::slice::from_ref(&key)) {
        // Only the known key's signatures are kept, and each one verifies.
        assert!(!opened.signatures.is_empty());
        for sig in &opened.signatures {
            assert_eq!((sig.name.as_str(), sig.id), (key.name(), key.id()), "open kept a signature by another key");
            assert!(key.verify(opened.text.as_bytes(), &sig.sig), "open kept a signature that does not verify");
        }
    }
    if let Ok(checkpoint) = Checkpoint::open(data, &key) {
        assert_eq!(checkpoint.origin, key.name(), "an opened checkpoint names another origin");
    }
    if let Ok(text) = std::str::from_utf8(data) {
        checkpoint_text(text);
    }
}

fn checkpoint_text(text: &str) {
    let Ok(checkpoint) = Checkpoint::parse_text(text) else { return };
    // The body without extension lines parses back to the same checkpoint.
    let body = checkpoint.to_text();
    assert!(text.starts_with(&body), "a checkpoint body is not a prefix of the text it was parsed from");
    assert_eq!(Checkpoint::parse_text(&body).as_ref(), Ok(&checkpoint));
    // Signed by the log key, it opens to itself.
    if checkpoint.origin == log_key().name() {
        let signed = checkpoint.sign(log_key()).unwrap_or_else(|e| panic!("a parsed checkpoint does not sign: {e}"));
        assert_eq!(Checkpoint::open(signed.as_bytes(), &log_key().verifier()).as_ref(), Ok(&checkpoint));
    }
}
