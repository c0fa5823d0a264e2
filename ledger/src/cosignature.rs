//! C2SP tlog-cosignature v1 (Ed25519): a witness's statement that a checkpoint is the largest
//! consistent tree it has seen of that log.
//!
//! A cosignature is a note signature line whose key id is
//! `SHA-256(name || "\n" || 0x04 || public key)[:4]` and whose signature bytes are an 8-byte
//! big-endian Unix time followed by an Ed25519 signature over
//! `"cosignature/v1\ntime <seconds>\n" || <checkpoint body>`.

use std::fmt;
use std::path::Path;

use ed25519_dalek::Signer;
use sha2::{Digest, Sha256};

use crate::b64;
use crate::keys::{is_valid_key_name, read_secret_file, split_key_text_of, KeyError};
use crate::note::{self, NoteError, SIGNATURE_PREFIX};

/// The signature type byte of an Ed25519 cosigner key (in its key id and its vkey).
pub const ALG_COSIGNATURE_V1: u8 = 0x04;

/// The bytes of a cosignature after the key id: an 8-byte time and a 64-byte signature.
pub const COSIGNATURE_BYTES: usize = 8 + 64;

/// The largest timestamp the spec allows (2^63 - 1).
pub const TIMESTAMP_MAX: u64 = i64::MAX as u64;

/// The key id of a cosigner key: `SHA-256(name || "\n" || 0x04 || public key)[:4]`.
pub fn cosigner_key_id(name: &str, public: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ALG_COSIGNATURE_V1]);
    h.update(public);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// The message a cosigner signs for `body` (a checkpoint body, final newline included) at
/// `time` (Unix seconds).
pub fn signed_message(body: &str, time: u64) -> Vec<u8> {
    let mut msg = format!("cosignature/v1\ntime {time}\n").into_bytes();
    msg.extend_from_slice(body.as_bytes());
    msg
}

/// A witness's public key: `<name>+<hex id>+<base64(0x04 || public key)>`.
#[derive(Clone, PartialEq, Eq)]
pub struct CosignerKey {
    name: String,
    id: u32,
    key: ed25519_dalek::VerifyingKey,
}

/// A cosignature that verified: whose and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosigned {
    /// The witness's name.
    pub name: String,
    /// When the witness signed (Unix seconds).
    pub time: u64,
}

impl CosignerKey {
    /// A cosigner key named `name` (its id is computed).
    pub fn new(name: &str, key: ed25519_dalek::VerifyingKey) -> Result<Self, KeyError> {
        if !is_valid_key_name(name) {
            return Err(KeyError::InvalidName(name.to_string()));
        }
        Ok(CosignerKey { name: name.to_string(), id: cosigner_key_id(name, key.as_bytes()), key })
    }

    /// Parses `<name>+<hex id>+<base64(0x04 || public key)>`; the id must match.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let (name, stated, public) = split_key_text_of(text.trim(), ALG_COSIGNATURE_V1, "public key must be 32 bytes")?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&public)
            .map_err(|_| KeyError::Malformed("not a valid Ed25519 public key"))?;
        let ck = CosignerKey::new(name, key)?;
        if ck.id != stated {
            return Err(KeyError::IdMismatch { name: ck.name, stated, computed: ck.id });
        }
        Ok(ck)
    }

    /// The witness's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cosignature key id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Checks one signature line's bytes (without the key id) over `body`; returns the time.
    pub fn verify(&self, body: &str, sig: &[u8]) -> Option<u64> {
        if sig.len() != COSIGNATURE_BYTES {
            return None;
        }
        let time = u64::from_be_bytes(sig[..8].try_into().ok()?);
        if time > TIMESTAMP_MAX {
            return None;
        }
        let signature = ed25519_dalek::Signature::from_slice(&sig[8..]).ok()?;
        self.key.verify_strict(&signed_message(body, time), &signature).ok()?;
        Some(time)
    }
}

impl fmt::Display for CosignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = [0u8; 33];
        raw[0] = ALG_COSIGNATURE_V1;
        raw[1..].copy_from_slice(self.key.as_bytes());
        write!(f, "{}+{:08x}+{}", self.name, self.id, b64::encode(raw))
    }
}

impl fmt::Debug for CosignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CosignerKey({self})")
    }
}

/// A witness's private key. The file form is `PRIVATE+KEY+<name>+<hex id>+<base64(0x04 ||
/// seed)>`, the signed-note private key shape with the cosignature type byte.
#[derive(Clone)]
pub struct Cosigner {
    name: String,
    id: u32,
    key: ed25519_dalek::SigningKey,
}

impl Cosigner {
    /// A new random witness key named `name`.
    pub fn generate(name: &str) -> Result<Self, KeyError> {
        Self::from_seed(name, ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng).to_bytes())
    }

    /// The witness key with this 32-byte seed (deterministic: for tests).
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, KeyError> {
        if !is_valid_key_name(name) {
            return Err(KeyError::InvalidName(name.to_string()));
        }
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        Ok(Cosigner { name: name.to_string(), id: cosigner_key_id(name, key.verifying_key().as_bytes()), key })
    }

    /// Parses the private text form.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let rest =
            text.trim().strip_prefix("PRIVATE+KEY+").ok_or(KeyError::Malformed("expected PRIVATE+KEY+ prefix"))?;
        let (name, stated, seed) = split_key_text_of(rest, ALG_COSIGNATURE_V1, "seed must be 32 bytes")?;
        let c = Cosigner::from_seed(name, seed)?;
        if c.id != stated {
            return Err(KeyError::IdMismatch { name: c.name, stated, computed: c.id });
        }
        Ok(c)
    }

    /// The private text form. Handle with care: this is the secret.
    pub fn to_private_text(&self) -> String {
        let mut raw = [0u8; 33];
        raw[0] = ALG_COSIGNATURE_V1;
        raw[1..].copy_from_slice(self.key.as_bytes());
        format!("PRIVATE+KEY+{}+{:08x}+{}", self.name, self.id, b64::encode(raw))
    }

    /// Reads a private key file (0600 on unix, as every secret file).
    pub fn read_file(path: &Path) -> Result<Self, KeyError> {
        let text = read_secret_file(path)?;
        Cosigner::parse(&String::from_utf8_lossy(&text))
            .map_err(|e| KeyError::InFile { path: path.display().to_string(), source: Box::new(e) })
    }

    /// The public key.
    pub fn verifier(&self) -> CosignerKey {
        CosignerKey { name: self.name.clone(), id: self.id, key: self.key.verifying_key() }
    }

    /// The witness's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The signature line (ending in `\n`) cosigning `body` at `time`.
    pub fn cosign(&self, body: &str, time: u64) -> String {
        debug_assert!(time <= TIMESTAMP_MAX);
        let sig = self.key.sign(&signed_message(body, time));
        let mut raw = Vec::with_capacity(4 + COSIGNATURE_BYTES);
        raw.extend_from_slice(&self.id.to_be_bytes());
        raw.extend_from_slice(&time.to_be_bytes());
        raw.extend_from_slice(&sig.to_bytes());
        format!("{SIGNATURE_PREFIX}{} {}\n", self.name, b64::encode(raw))
    }
}

impl fmt::Debug for Cosigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cosigner({}+{:08x}, <secret>)", self.name, self.id)
    }
}

/// The distinct witnesses among `witnesses` whose cosignature on the note `msg` verifies,
/// in the order given. Lines by other keys are ignored; a line that names a listed witness
/// (name and id) but does not verify is ignored too, so one bad line cannot hide good ones.
pub fn verified_cosigners(msg: &[u8], witnesses: &[CosignerKey]) -> Result<Vec<Cosigned>, NoteError> {
    let parsed = note::parse(msg)?;
    let mut found = Vec::new();
    for w in witnesses {
        let time = parsed
            .signatures
            .iter()
            .filter(|s| s.name == w.name && s.id == w.id)
            .find_map(|s| w.verify(&parsed.text, &s.sig));
        if let Some(time) = time {
            if !found.iter().any(|c: &Cosigned| c.name == w.name) {
                found.push(Cosigned { name: w.name.clone(), time });
            }
        }
    }
    Ok(found)
}

/// Why a checkpoint lacks the cosignatures a reader requires.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the checkpoint of {size} records has {found} of the {quorum} witness cosignatures required \
     (valid from: {names}); a log showing different histories to different readers would look like this"
)]
pub struct QuorumError {
    /// The checkpoint's size.
    pub size: u64,
    /// Valid cosignatures by distinct listed witnesses.
    pub found: usize,
    /// How many were required.
    pub quorum: usize,
    /// The witnesses whose cosignatures verified, comma separated (or "none").
    pub names: String,
}

/// Requires `quorum` cosignatures by distinct witnesses of `witnesses` on the note `msg`, a
/// checkpoint of `size` records.
pub fn require_quorum(
    msg: &[u8],
    size: u64,
    witnesses: &[CosignerKey],
    quorum: usize,
) -> Result<Vec<Cosigned>, QuorumError> {
    let found = verified_cosigners(msg, witnesses).unwrap_or_default();
    if found.len() < quorum {
        let names = if found.is_empty() {
            "none".to_string()
        } else {
            found.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
        };
        return Err(QuorumError { size, found: found.len(), quorum, names });
    }
    Ok(found)
}

/// Adds cosignature lines to a signed note (which ends in `\n`), dropping lines already there.
pub fn add_lines(note: &str, lines: &[String]) -> String {
    let mut out = note.to_string();
    for line in lines {
        if !out.contains(line.as_str()) {
            out.push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of c2sp.org/tlog-cosignature.
    const SPEC_BODY: &str = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
    const SPEC_LINE: &str = "witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==";

    #[test]
    fn the_spec_example_has_the_spec_key_id_time_and_length() {
        let (name, encoded) = SPEC_LINE.split_once(' ').unwrap();
        assert_eq!(name, "witness.example.com/w1");
        let raw = b64::decode(encoded).unwrap();
        assert_eq!(raw.len(), 4 + COSIGNATURE_BYTES, "76 bytes: key id, time, signature");
        assert_eq!(u32::from_be_bytes(raw[..4].try_into().unwrap()), 0x8d66cf3f);
        assert_eq!(u64::from_be_bytes(raw[4..12].try_into().unwrap()), 1679315147);
        assert_eq!(
            signed_message(SPEC_BODY, 1679315147),
            b"cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
        );
    }

    #[test]
    fn key_id_uses_type_0x04_not_the_note_type() {
        let c = Cosigner::from_seed("w.example/1", [9; 32]).unwrap();
        let public = *c.key.verifying_key().as_bytes();
        let mut h = Sha256::new();
        h.update(b"w.example/1\n\x04");
        h.update(public);
        let d = h.finalize();
        assert_eq!(c.verifier().id(), u32::from_be_bytes([d[0], d[1], d[2], d[3]]));
        assert_ne!(c.verifier().id(), crate::keys::key_id("w.example/1", &public));
    }

    #[test]
    fn keys_round_trip_and_ids_are_checked() {
        let c = Cosigner::generate("witness.example/a").unwrap();
        let back = Cosigner::parse(&c.to_private_text()).unwrap();
        assert_eq!(back.verifier(), c.verifier());
        let text = c.verifier().to_string();
        assert_eq!(CosignerKey::parse(&text).unwrap(), c.verifier());
        // A note key (type 0x01) is not a witness key.
        let note_key = crate::keys::SigningKey::generate("witness.example/a").unwrap().verifier().to_string();
        assert_eq!(CosignerKey::parse(&note_key).unwrap_err(), KeyError::Algorithm(0x01));
        let (name, rest) = text.split_once('+').unwrap();
        let tampered = format!("{name}+00000000+{}", rest.split_once('+').unwrap().1);
        assert!(matches!(CosignerKey::parse(&tampered), Err(KeyError::IdMismatch { .. })));
    }

    #[test]
    fn cosignatures_verify_only_over_their_body_and_time() {
        let log = crate::keys::SigningKey::generate("log.example").unwrap();
        let body = "log.example\n3\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n";
        let note = note::sign(body, &log).unwrap();
        let (a, b) = (Cosigner::generate("w/a").unwrap(), Cosigner::generate("w/b").unwrap());
        let cosigned = add_lines(&note, &[a.cosign(body, 1_700_000_000)]);
        let keys = [a.verifier(), b.verifier()];
        assert_eq!(
            verified_cosigners(cosigned.as_bytes(), &keys).unwrap(),
            vec![Cosigned { name: "w/a".into(), time: 1_700_000_000 }]
        );
        assert!(require_quorum(cosigned.as_bytes(), 3, &keys, 1).is_ok());
        let err = require_quorum(cosigned.as_bytes(), 3, &keys, 2).unwrap_err();
        assert_eq!((err.found, err.quorum), (1, 2));
        // The same line on another body does not verify.
        let other = "log.example\n4\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n";
        let moved = add_lines(&note::sign(other, &log).unwrap(), &[a.cosign(body, 1_700_000_000)]);
        assert!(verified_cosigners(moved.as_bytes(), &keys).unwrap().is_empty());
        // The same witness twice counts once.
        let twice = add_lines(&cosigned, &[a.cosign(body, 1_700_000_001)]);
        assert_eq!(verified_cosigners(twice.as_bytes(), &keys).unwrap().len(), 1);
    }
}
