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

pub use crate::limits::{KEY_NAME_BYTES_MAX, SECRET_FILE_BYTES_MAX};

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
    #[error(
        "key id mismatch: the text says {stated:08x}, but {name:?} with this key has id {computed:08x} \
         (the name, the id or the key was changed; copy the key text again from its source)"
    )]
    IdMismatch {
        /// The key name written in the key text.
        name: String,
        /// The id written in the key text.
        stated: u32,
        /// The id of the name and key ([`key_id`]).
        computed: u32,
    },
    /// The algorithm byte is not the expected one ([`ALG_ED25519`] for note keys, 0x04 for
    /// witness keys).
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
    /// A private key file is readable or writable by group or others (unix), so it is
    /// refused, as ssh refuses one.
    #[error(
        "permissions {mode:04o} for private key file {path} are too open: it must be readable by its \
         owner only; run `chmod 600 {path}`"
    )]
    Permissions {
        /// The file, as given.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// A key file holds text that is not a valid key.
    #[error("key file {path}: {source}")]
    InFile {
        /// The file, as given.
        path: String,
        /// What is wrong with its text.
        #[source]
        source: Box<KeyError>,
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
            IdMismatch { name, stated, computed } => {
                matches!(other, IdMismatch { name: n, stated: s, computed: c }
                    if name == n && stated == s && computed == c)
            }
            Algorithm(a) => matches!(other, Algorithm(b) if a == b),
            File { path, source } => matches!(other, File { path: p, source: s }
                if path == p && source.kind() == s.kind() && source.to_string() == s.to_string()),
            Permissions { path, mode } => matches!(other, Permissions { path: p, mode: m } if path == p && mode == m),
            InFile { path, source } => matches!(other, InFile { path: p, source: s } if path == p && source == s),
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
            return Err(KeyError::IdMismatch { name: vk.name, stated, computed: vk.id });
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
            return Err(KeyError::IdMismatch { name: sk.name, stated, computed: sk.id });
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
    /// On unix a file that group or others may read or write is refused
    /// ([`KeyError::Permissions`]): the secret may already have leaked, and ssh taught
    /// operators to expect the refusal.
    pub fn read_file(path: &Path) -> Result<Self, KeyError> {
        let text = read_secret_file(path)?;
        let text = String::from_utf8_lossy(&text);
        let shown = || path.display().to_string();
        SigningKey::parse(&text).map_err(|e| KeyError::InFile { path: shown(), source: Box::new(e) })
    }
}

/// Reads a file that holds a secret (a private key, a webhook secret), at most
/// [`SECRET_FILE_BYTES_MAX`] bytes. On unix a file that group or others may read or write is
/// refused ([`KeyError::Permissions`]): the secret may already have leaked, and ssh taught
/// operators to expect the refusal.
pub fn read_secret_file(path: &Path) -> Result<Vec<u8>, KeyError> {
    let shown = || path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| KeyError::File { path: shown(), source })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // The open file's own mode: no window between the check and the read.
        let mode = file.metadata().map_err(|source| KeyError::File { path: shown(), source })?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions { path: shown(), mode: mode & 0o7777 });
        }
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(file, SECRET_FILE_BYTES_MAX as u64 + 1), &mut bytes)
        .map_err(|source| KeyError::File { path: shown(), source })?;
    if bytes.len() > SECRET_FILE_BYTES_MAX {
        return Err(KeyError::File {
            path: shown(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("larger than {SECRET_FILE_BYTES_MAX} bytes: not a secret file"),
            ),
        });
    }
    Ok(bytes)
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({}, <secret>)", self.keyid())
    }
}

/// Splits `<name>+<hex id>+<base64(0x01 || 32 bytes)>`, the shape both key texts share.
fn split_key_text<'a>(text: &'a str, wrong_length: &'static str) -> Result<(&'a str, u32, [u8; 32]), KeyError> {
    split_key_text_of(text, ALG_ED25519, wrong_length)
}

/// Splits `<name>+<hex id>+<base64(alg || 32 bytes)>` for one algorithm byte (witness keys
/// use the same shape with 0x04).
pub(crate) fn split_key_text_of<'a>(
    text: &'a str,
    alg_expected: u8,
    wrong_length: &'static str,
) -> Result<(&'a str, u32, [u8; 32]), KeyError> {
    let (name, rest) = text.split_once('+').ok_or(KeyError::Malformed("expected name+id+key"))?;
    let (id_hex, key_b64) = rest.split_once('+').ok_or(KeyError::Malformed("expected name+id+key"))?;
    let stated = parse_key_id(id_hex)?;
    let raw = b64::decode(key_b64).map_err(|_| KeyError::Malformed("bad base64 in key"))?;
    let (alg, bytes) = raw.split_first().ok_or(KeyError::Malformed("empty key"))?;
    if *alg != alg_expected {
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

    #[cfg(unix)]
    #[test]
    fn key_files_readable_by_others_are_refused_with_the_chmod_to_run() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        SigningKey::generate("carol").unwrap().write_file(&path).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660, 0o602] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = SigningKey::read_file(&path).unwrap_err();
            assert_eq!(err, KeyError::Permissions { path: path.display().to_string(), mode });
            let said = err.to_string();
            assert!(said.contains(&format!("chmod 600 {}", path.display())), "{said}");
            assert!(said.contains(&format!("{mode:04o}")), "{said}");
        }
        for mode in [0o600, 0o400] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert!(SigningKey::read_file(&path).is_ok(), "mode {mode:o}");
        }
    }

    #[test]
    fn a_key_whose_id_does_not_match_says_so() {
        let sk = SigningKey::generate("dave").unwrap();
        let id = format!("{:08x}", sk.id());
        let other = if id == "00000000" { "00000001" } else { "00000000" };
        // Same key under another name: the id no longer matches.
        let renamed = sk.to_private_text().replacen("+dave+", "+erin+", 1);
        let err = SigningKey::parse(&renamed).unwrap_err();
        assert!(matches!(&err, KeyError::IdMismatch { name, stated, .. } if name == "erin" && *stated == sk.id()));
        assert!(err.to_string().starts_with("key id mismatch"), "{err}");
        let wrong_id = sk.verifier().to_string().replacen(&id, other, 1);
        let err = VerifierKey::parse(&wrong_id).unwrap_err();
        assert!(matches!(&err, KeyError::IdMismatch { computed, .. } if *computed == sk.id()));
        assert!(err.to_string().contains(&format!("says {other}")), "{err}");

        // Read from a file, the error names the file and keeps the cause as its source.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dave.key");
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        opts.open(&path).unwrap().write_all(renamed.as_bytes()).unwrap();
        let err = SigningKey::read_file(&path).unwrap_err();
        let said = err.to_string();
        assert!(said.contains(&path.display().to_string()) && said.contains("key id mismatch"), "{said}");
        let cause = std::error::Error::source(&err).and_then(|e| e.downcast_ref::<Box<KeyError>>());
        assert!(matches!(cause.map(|b| &**b), Some(KeyError::IdMismatch { .. })), "{cause:?}");
    }
}
