//! Ed25519 keys in the C2SP signed-note text formats (SPEC.md section 2).
//!
//! Verifier key: `<name>+<8 hex key id>+<base64(0x01 || public key)>`.
//! Private key:  `PRIVATE+KEY+<name>+<8 hex key id>+<base64(0x01 || seed)>`.

use std::fmt;
use std::io::Write;
use std::path::Path;

use ed25519_dalek::Signer;
use sha2::{Digest, Sha256};

use crate::b64;

pub use crate::limits::KEY_NAME_BYTES_MAX;

/// The signed-note algorithm byte for Ed25519.
pub const ALG_ED25519: u8 = 0x01;

/// Why a key, key text or key file is not usable.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key text does not have the signed-note shape.
    #[error("malformed key: {0}")]
    Malformed(&'static str),
    /// The name breaks the signed-note key name rule ([`is_valid_key_name`]).
    #[error(
        "invalid key name {0:?}: it must be 1 to {KEY_NAME_BYTES_MAX} bytes, without spaces, '+' or control characters"
    )]
    InvalidName(String),
    /// The key id in the text is not the one the name and key hash to.
    #[error("key id mismatch: the text says {stated:08x}, the key hashes to {computed:08x}")]
    IdMismatch {
        /// The id written in the key text.
        stated: u32,
        /// The id of the name and key ([`key_id`]).
        computed: u32,
    },
    /// The algorithm byte is not [`ALG_ED25519`].
    #[error("unsupported key algorithm {0:#04x}")]
    Algorithm(u8),
    /// The key file could not be read.
    #[error("cannot read key file {path}: {source}")]
    File {
        /// The file, as given.
        path: String,
        /// Why reading it failed.
        #[source]
        source: std::io::Error,
    },
}

/// `std::io::Error` has no equality: two read failures are equal when they have the same
/// kind and message.
impl PartialEq for KeyError {
    fn eq(&self, other: &Self) -> bool {
        use KeyError::*;
        match self {
            Malformed(a) => matches!(other, Malformed(b) if a == b),
            InvalidName(a) => matches!(other, InvalidName(b) if a == b),
            IdMismatch { stated, computed } => {
                matches!(other, IdMismatch { stated: s, computed: c } if stated == s && computed == c)
            }
            Algorithm(a) => matches!(other, Algorithm(b) if a == b),
            File { path, source } => matches!(other, File { path: p, source: s }
                if path == p && source.kind() == s.kind() && source.to_string() == s.to_string()),
        }
    }
}

impl Eq for KeyError {}

/// A name is valid for a signed-note key when it is non-empty and has no spaces, `+` or
/// control characters (C2SP signed-note).
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= KEY_NAME_BYTES_MAX
        && name.chars().all(|c| !c.is_whitespace() && !c.is_control() && c != '+')
}

/// key id = first 4 bytes of SHA-256(name || 0x0A || 0x01 || public key), big-endian.
pub fn key_id(name: &str, public: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ALG_ED25519]);
    h.update(public);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// A public key with its signed-note name and id.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: u32,
    key: ed25519_dalek::VerifyingKey,
}

impl VerifierKey {
    /// A verifier key named `name`; its key id is computed ([`key_id`]).
    pub fn new(name: &str, key: ed25519_dalek::VerifyingKey) -> Result<Self, KeyError> {
        if !is_valid_key_name(name) {
            return Err(KeyError::InvalidName(name.to_string()));
        }
        let id = key_id(name, key.as_bytes());
        Ok(VerifierKey { name: name.to_string(), id, key })
    }

    /// Parses `<name>+<hex id>+<base64>`; the id must match the key.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let (name, stated, public) = split_key_text(text.trim(), "public key must be 32 bytes")?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&public)
            .map_err(|_| KeyError::Malformed("not a valid Ed25519 public key"))?;
        let vk = VerifierKey::new(name, key)?;
        if vk.id != stated {
            return Err(KeyError::IdMismatch { stated, computed: vk.id });
        }
        Ok(vk)
    }

    /// The signed-note key name (for actors, the actor's name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id: the first 4 bytes of a hash of name and key ([`key_id`]).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The DSSE `keyid`: `<name>+<hex id>`.
    pub fn keyid(&self) -> String {
        format!("{}+{:08x}", self.name, self.id)
    }

    /// The Ed25519 public key.
    pub fn verifying_key(&self) -> &ed25519_dalek::VerifyingKey {
        &self.key
    }

    /// Verifies a 64-byte Ed25519 signature over `msg` (strict verification).
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Ok(sig) = ed25519_dalek::Signature::from_slice(sig) else {
            return false;
        };
        self.key.verify_strict(msg, &sig).is_ok()
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = [0u8; 33];
        raw[0] = ALG_ED25519;
        raw[1..].copy_from_slice(self.key.as_bytes());
        write!(f, "{}+{:08x}+{}", self.name, self.id, b64::encode(raw))
    }
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifierKey({self})")
    }
}

impl serde::Serialize for VerifierKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for VerifierKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        VerifierKey::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A private key with its signed-note name. Its Debug output never shows the secret, and
/// it has no Display: the private text form is only produced by [`SigningKey::to_private_text`].
#[derive(Clone)]
pub struct SigningKey {
    name: String,
    id: u32,
    key: ed25519_dalek::SigningKey,
}

impl SigningKey {
    /// A new random key named `name` (from the OS random number generator).
    pub fn generate(name: &str) -> Result<Self, KeyError> {
        let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        Self::from_dalek(name, key)
    }

    /// The key with this 32-byte Ed25519 seed (deterministic: for tests and key files).
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, KeyError> {
        Self::from_dalek(name, ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    fn from_dalek(name: &str, key: ed25519_dalek::SigningKey) -> Result<Self, KeyError> {
        if !is_valid_key_name(name) {
            return Err(KeyError::InvalidName(name.to_string()));
        }
        let id = key_id(name, key.verifying_key().as_bytes());
        Ok(SigningKey { name: name.to_string(), id, key })
    }

    /// Parses `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || seed)>`.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let rest =
            text.trim().strip_prefix("PRIVATE+KEY+").ok_or(KeyError::Malformed("expected PRIVATE+KEY+ prefix"))?;
        let (name, stated, seed) = split_key_text(rest, "seed must be 32 bytes")?;
        let sk = SigningKey::from_seed(name, seed)?;
        if sk.id != stated {
            return Err(KeyError::IdMismatch { stated, computed: sk.id });
        }
        Ok(sk)
    }

    /// The private text form. Handle with care: this is the secret.
    pub fn to_private_text(&self) -> String {
        let mut raw = [0u8; 33];
        raw[0] = ALG_ED25519;
        raw[1..].copy_from_slice(self.key.as_bytes());
        format!("PRIVATE+KEY+{}+{:08x}+{}", self.name, self.id, b64::encode(raw))
    }

    /// The signed-note key name (for actors, the actor's name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id: the first 4 bytes of a hash of name and public key ([`key_id`]).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The DSSE `keyid`: `<name>+<hex id>`.
    pub fn keyid(&self) -> String {
        format!("{}+{:08x}", self.name, self.id)
    }

    /// The public half, with the same name and id.
    pub fn verifier(&self) -> VerifierKey {
        VerifierKey { name: self.name.clone(), id: self.id, key: self.key.verifying_key() }
    }

    /// The Ed25519 signature over `msg`.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }

    /// Writes the private text form to a new file created with mode 0600. Fails if the file
    /// exists, so a key is never silently overwritten.
    pub fn write_file(&self, path: &Path) -> std::io::Result<()> {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(path)?;
        f.write_all(self.to_private_text().as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()
    }

    /// Reads a key file in the private text form (as [`SigningKey::write_file`] writes it).
    pub fn read_file(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| KeyError::File { path: path.display().to_string(), source })?;
        SigningKey::parse(&text)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({}, <secret>)", self.keyid())
    }
}

/// Splits `<name>+<hex id>+<base64(0x01 || 32 bytes)>`, the shape both key texts share.
fn split_key_text<'a>(text: &'a str, wrong_length: &'static str) -> Result<(&'a str, u32, [u8; 32]), KeyError> {
    let (name, rest) = text.split_once('+').ok_or(KeyError::Malformed("expected name+id+key"))?;
    let (id_hex, key_b64) = rest.split_once('+').ok_or(KeyError::Malformed("expected name+id+key"))?;
    let stated = parse_key_id(id_hex)?;
    let raw = b64::decode(key_b64).map_err(|_| KeyError::Malformed("bad base64 in key"))?;
    let (alg, bytes) = raw.split_first().ok_or(KeyError::Malformed("empty key"))?;
    if *alg != ALG_ED25519 {
        return Err(KeyError::Algorithm(*alg));
    }
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| KeyError::Malformed(wrong_length))?;
    Ok((name, stated, bytes))
}

fn parse_key_id(hex: &str) -> Result<u32, KeyError> {
    if hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(KeyError::Malformed("key id must be 8 lowercase hex digits"));
    }
    u32::from_str_radix(hex, 16).map_err(|_| KeyError::Malformed("bad key id"))
}

/// Splits a DSSE keyid `<name>+<hex id>` into its parts.
pub fn split_keyid(keyid: &str) -> Option<(&str, u32)> {
    let (name, hex) = keyid.rsplit_once('+')?;
    let id = parse_key_id(hex).ok()?;
    Some((name, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_signed_note_vector_key() {
        let vk = VerifierKey::parse("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k").unwrap();
        assert_eq!(vk.name(), "example.com/foo");
        assert_eq!(vk.id(), 0x530d903a);
        assert_eq!(vk.to_string(), "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k");
    }

    #[test]
    fn private_key_round_trips_and_matches_its_verifier() {
        let sk = SigningKey::generate("alice").unwrap();
        let back = SigningKey::parse(&sk.to_private_text()).unwrap();
        assert_eq!(back.verifier(), sk.verifier());
        let sig = sk.sign(b"msg");
        assert!(sk.verifier().verify(b"msg", &sig));
        assert!(!sk.verifier().verify(b"msh", &sig));
        assert!(!format!("{sk:?}").contains(&sk.to_private_text()));
    }

    #[test]
    fn rejects_wrong_id_and_bad_names() {
        let vk = SigningKey::generate("bob").unwrap().verifier().to_string();
        assert!(VerifierKey::parse(&vk).is_ok());
        // The base64 part may itself contain '+'.
        let wrong_id = format!("bob+00000000+{}", vk.splitn(3, '+').nth(2).unwrap());
        assert!(matches!(VerifierKey::parse(&wrong_id), Err(KeyError::IdMismatch { .. })));
        assert!(SigningKey::generate("a b").is_err());
        assert!(SigningKey::generate("a+b").is_err());
        assert!(VerifierKey::parse("nonsense").is_err());
        assert!(VerifierKey::parse("x+zzzzzzzz+AAAA").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn key_files_are_0600_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let sk = SigningKey::generate("carol").unwrap();
        sk.write_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(sk.write_file(&path).is_err());
        assert_eq!(SigningKey::read_file(&path).unwrap().verifier(), sk.verifier());
    }
}
