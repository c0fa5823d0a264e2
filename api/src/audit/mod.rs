//! Auditor verification (SPEC.md section 9): `grantline verify`, `export`/`import`, the
//! live `monitor`, and offline receipts (`prove`, `verify-receipt`).
//!
//! The auditor trusts nothing but the pinned log key. Records come from a running server, a
//! data directory or an export file ([`source`]); [`engine`] checks, in one pass and naming
//! the first bad seq: every DSSE signature (Ed25519 batch verification over all cores), the
//! signer's key at that seq, the BLAKE3 chain, the Merkle root against a signed checkpoint,
//! consistency with the checkpoint saved by the previous run ([`statefile`]), and a full
//! projector replay.
//!
//! Each kind of failure has its own process exit code ([`FailureKind::exit_code`]).

use std::fmt;

use crate::client::ClientError;
use crate::limits::{KEY_FILE_BYTES_MAX, NOTE_FILE_BYTES_MAX};

pub(crate) mod archive;
pub(crate) mod engine;
pub(crate) mod monitor;
pub(crate) mod receipt;
pub(crate) mod source;
pub(crate) mod statefile;
pub(crate) mod tiles;

/// Process exit codes of the auditor commands.
pub mod exit {
    /// Everything verified.
    pub const OK: u8 = 0;
    /// The input could not be read: file, network, database (nothing was proven either way).
    pub const IO: u8 = 1;
    /// Bad arguments or missing inputs (a checkpoint, a key). clap's own usage errors are 2 too.
    pub const USAGE: u8 = 2;
    /// A DSSE signature does not verify (or an envelope is not a valid DSSE envelope).
    pub const SIGNATURE: u8 = 10;
    /// The BLAKE3 chain is broken, seqs are not dense, or a record disagrees with its leaf.
    pub const CHAIN: u8 = 11;
    /// The Merkle root does not match a checkpoint signed by the pinned log key, or a proof
    /// does not verify against it.
    pub const CHECKPOINT: u8 = 12;
    /// The log is not consistent with a checkpoint seen before: history was rewritten.
    pub const CONSISTENCY: u8 = 13;
    /// The projector replay rejects a record: it was not allowed when it was logged (a grant
    /// without quorum, a missing role, a revoked or unknown signer key).
    pub const POLICY: u8 = 14;
}

/// The exit codes as help text, a literal so commands can `concat!` it into their help.
macro_rules! exit_codes_help {
    () => {
        "Exit codes: 0 verified; 1 input unreadable (file, network, database); 2 usage; \
10 signature; 11 chain (hash chain, dense seqs, record fields); 12 checkpoint (Merkle root, \
signed checkpoint, proofs); 13 consistency (history rewritten); 14 policy (the replay rejects \
a record: missing role or quorum, revoked or unknown signer key)."
    };
}
#[allow(unused_imports)] // used by the CLI's help texts
pub(crate) use exit_codes_help;

/// The help text that documents the exit codes.
#[cfg(test)]
pub(crate) const EXIT_CODES_HELP: &str = exit_codes_help!();

/// What a failed check says about the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    Signature,
    Chain,
    Checkpoint,
    Consistency,
    Policy,
}

impl FailureKind {
    pub fn exit_code(self) -> u8 {
        match self {
            FailureKind::Signature => exit::SIGNATURE,
            FailureKind::Chain => exit::CHAIN,
            FailureKind::Checkpoint => exit::CHECKPOINT,
            FailureKind::Consistency => exit::CONSISTENCY,
            FailureKind::Policy => exit::POLICY,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FailureKind::Signature => "signature",
            FailureKind::Chain => "chain",
            FailureKind::Checkpoint => "checkpoint",
            FailureKind::Consistency => "consistency",
            FailureKind::Policy => "policy",
        }
    }
}

/// A failed check: which, at which seq (when one record is to blame), and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub seq: Option<u64>,
    pub reason: String,
}

impl Failure {
    pub fn new(kind: FailureKind, seq: Option<u64>, reason: impl Into<String>) -> Failure {
        Failure { kind, seq, reason: reason.into() }
    }

    pub fn at(kind: FailureKind, seq: u64, reason: impl Into<String>) -> Failure {
        Failure::new(kind, Some(seq), reason)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.seq {
            Some(seq) => write!(f, "{} check failed at seq {seq}: {}", self.kind.name(), self.reason),
            None => write!(f, "{} check failed: {}", self.kind.name(), self.reason),
        }
    }
}

/// Why an auditor command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The log (or receipt) is not what it claims: tamper evidence.
    #[error("{0}")]
    Failed(Failure),
    /// Bad arguments or a missing input.
    #[error("{0}")]
    Usage(String),
    /// Reading or writing an input failed: what, and the underlying error.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The server could not be asked, or refused.
    #[error(transparent)]
    Server(ClientError),
    /// The input is incomplete or inconsistent in a way that proves nothing either way (a
    /// record missing from a store, a stream that ended).
    #[error("{0}")]
    Unreadable(String),
}

impl AuditError {
    pub fn exit_code(&self) -> u8 {
        match self {
            AuditError::Failed(f) => f.kind.exit_code(),
            AuditError::Usage(_) => exit::USAGE,
            AuditError::Io { .. } | AuditError::Server(_) | AuditError::Unreadable(_) => exit::IO,
        }
    }

    /// The failure, when the command found tamper evidence.
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            AuditError::Failed(f) => Some(f),
            _ => None,
        }
    }

    pub fn io(context: impl fmt::Display, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> AuditError {
        AuditError::Io { context: context.to_string(), source: source.into() }
    }
}

impl From<ClientError> for AuditError {
    fn from(e: ClientError) -> AuditError {
        match e {
            // A request the client refused to make (a bad URL, a malformed id) is a usage error.
            ClientError::Invalid(why) => AuditError::Usage(why),
            e => AuditError::Server(e),
        }
    }
}

impl From<Failure> for AuditError {
    fn from(f: Failure) -> AuditError {
        AuditError::Failed(f)
    }
}

/// Reads a pinned verifier key from its text (`name+id+base64`) or from a file holding it.
pub(crate) fn read_log_key(text_or_path: &str) -> Result<ledger::keys::VerifierKey, AuditError> {
    let as_key = ledger::keys::VerifierKey::parse(text_or_path);
    let path = std::path::Path::new(text_or_path);
    match as_key {
        Ok(key) => return Ok(key),
        // Meant as a key, not a path: say what is wrong with it (a mismatched key id, say).
        Err(e) if !path.exists() && text_or_path.contains('+') => {
            return Err(AuditError::Usage(format!("--log-key {text_or_path:?} is not a verifier key: {e}")));
        }
        Err(_) => {}
    }
    if path.is_file() {
        let text = read_small_file(path, KEY_FILE_BYTES_MAX)?;
        let text = String::from_utf8(text).map_err(|_| AuditError::Usage(format!("{}: not UTF-8", path.display())))?;
        return ledger::keys::VerifierKey::parse(&text)
            .map_err(|e| AuditError::Usage(format!("{}: not a verifier key: {e}", path.display())));
    }
    Err(AuditError::Usage(format!(
        "--log-key {text_or_path:?} is neither a verifier key (name+id+base64) nor a file holding one"
    )))
}

/// The witnesses a reader requires (`--witness VKEY … --witness-quorum K`): `quorum` valid
/// cosignatures by distinct listed witnesses on every checkpoint it accepts.
#[derive(Debug, Clone)]
pub(crate) struct Witnesses {
    pub keys: Vec<ledger::cosignature::CosignerKey>,
    pub quorum: usize,
}

impl Witnesses {
    /// From the flags: `keys` as given (text or files), `quorum` defaulting to all of them.
    /// `None` when no witness is listed.
    pub(crate) fn from_flags(keys: &[String], quorum: Option<usize>) -> Result<Option<Witnesses>, AuditError> {
        if keys.is_empty() {
            return match quorum {
                Some(_) => Err(AuditError::Usage("--witness-quorum needs at least one --witness".into())),
                None => Ok(None),
            };
        }
        if keys.len() > crate::limits::WITNESSES_MAX {
            return Err(AuditError::Usage(format!("at most {} --witness keys", crate::limits::WITNESSES_MAX)));
        }
        let keys = keys.iter().map(|k| read_witness_key(k)).collect::<Result<Vec<_>, _>>()?;
        let quorum = quorum.unwrap_or(keys.len());
        if quorum == 0 || quorum > keys.len() {
            return Err(AuditError::Usage(format!(
                "--witness-quorum {quorum} must be between 1 and the {} witnesses listed",
                keys.len()
            )));
        }
        Ok(Some(Witnesses { keys, quorum }))
    }

    /// Requires the quorum on `note`, a checkpoint of `size` records (`whence` names it); a
    /// shortfall is a checkpoint failure.
    pub(crate) fn require(
        &self,
        note: &str,
        size: u64,
        whence: &str,
    ) -> Result<Vec<ledger::cosignature::Cosigned>, AuditError> {
        ledger::cosignature::require_quorum(note.as_bytes(), size, &self.keys, self.quorum)
            .map_err(|e| AuditError::Failed(Failure::new(FailureKind::Checkpoint, None, format!("{whence}: {e}"))))
    }
}

/// Reads a witness's verifier key (`name+id+base64(0x04 || key)`) from its text or a file
/// holding it (`grantline witness keygen` writes FILE.pub).
pub(crate) fn read_witness_key(text_or_path: &str) -> Result<ledger::cosignature::CosignerKey, AuditError> {
    use ledger::cosignature::CosignerKey;
    let path = std::path::Path::new(text_or_path);
    match CosignerKey::parse(text_or_path) {
        Ok(key) => return Ok(key),
        Err(e) if !path.exists() && text_or_path.contains('+') => {
            return Err(AuditError::Usage(format!("--witness {text_or_path:?} is not a witness verifier key: {e}")));
        }
        Err(_) => {}
    }
    if path.is_file() {
        let text = read_small_file(path, KEY_FILE_BYTES_MAX)?;
        let text = String::from_utf8(text).map_err(|_| AuditError::Usage(format!("{}: not UTF-8", path.display())))?;
        return CosignerKey::parse(&text)
            .map_err(|e| AuditError::Usage(format!("{}: not a witness verifier key: {e}", path.display())));
    }
    Err(AuditError::Usage(format!(
        "--witness {text_or_path:?} is neither a witness verifier key (name+id+base64) nor a file holding one"
    )))
}

/// Reads a whole file of at most `bytes_max` bytes.
pub(crate) fn read_small_file(path: &std::path::Path, bytes_max: u64) -> Result<Vec<u8>, AuditError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| AuditError::io(path.display(), e))?;
    let mut out = Vec::new();
    file.take(bytes_max + 1).read_to_end(&mut out).map_err(|e| AuditError::io(path.display(), e))?;
    if out.len() as u64 > bytes_max {
        return Err(AuditError::Usage(format!("{}: larger than {bytes_max} bytes", path.display())));
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod testlog;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_distinct_per_kind() {
        let kinds = [
            FailureKind::Signature,
            FailureKind::Chain,
            FailureKind::Checkpoint,
            FailureKind::Consistency,
            FailureKind::Policy,
        ];
        let mut codes: Vec<u8> = kinds.iter().map(|k| k.exit_code()).collect();
        codes.extend([exit::OK, exit::IO, exit::USAGE]);
        let n = codes.len();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), n);
        for k in kinds {
            assert!(EXIT_CODES_HELP.contains(&format!("{} {}", k.exit_code(), k.name())), "{k:?}");
        }
    }

    #[test]
    fn failures_name_their_seq() {
        let f = Failure::at(FailureKind::Chain, 42, "prev is wrong");
        assert_eq!(f.to_string(), "chain check failed at seq 42: prev is wrong");
        assert_eq!(AuditError::from(f).exit_code(), exit::CHAIN);
    }

    #[test]
    fn log_key_from_text_or_file() {
        let key = ledger::keys::SigningKey::generate("log.example/ci").unwrap().verifier();
        assert_eq!(read_log_key(&key.to_string()).unwrap(), key);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.pub");
        std::fs::write(&path, format!("{key}\n")).unwrap();
        assert_eq!(read_log_key(path.to_str().unwrap()).unwrap(), key);
        assert!(matches!(read_log_key("nonsense"), Err(AuditError::Usage(_))));
    }
}
