//! `X-Hub-Signature-256`: HMAC-SHA256 of the raw body under the webhook secret, checked in
//! constant time against the current and the previous secret (so a secret can be rotated
//! without losing deliveries).

use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const PREFIX: &str = "sha256=";
const DIGEST_HEX_CHARS: usize = 64;

/// The webhook secrets a server accepts.
pub(crate) struct WebhookSecrets {
    current: Vec<u8>,
    previous: Option<Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SecretError {
    #[error("--github-webhook-secret: {0}")]
    File(#[from] ledger::keys::KeyError),
    #[error("--github-webhook-secret: {path} is empty; put the secret you gave GitHub in it")]
    Empty { path: String },
    #[error("--github-org {0:?} is not a GitHub organisation name (letters, digits and single hyphens, at most 39)")]
    Org(String),
}

/// Why a delivery's signature is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignatureError {
    /// No `X-Hub-Signature-256` header.
    Missing,
    /// Not `sha256=` and 64 hex digits.
    Malformed,
    /// A well-formed signature that neither secret gives.
    Mismatch,
}

impl SignatureError {
    pub(crate) fn detail(self) -> &'static str {
        match self {
            SignatureError::Missing => {
                "no X-Hub-Signature-256 header: set a secret on the webhook (the same one this server reads)"
            }
            SignatureError::Malformed => "X-Hub-Signature-256 is not \"sha256=\" followed by 64 hex digits",
            SignatureError::Mismatch => {
                "X-Hub-Signature-256 does not match the body under the current or the previous secret"
            }
        }
    }
}

/// Which secret verified a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verified {
    Current,
    Previous,
}

fn read_secret(path: &Path) -> Result<Vec<u8>, SecretError> {
    let mut bytes = ledger::keys::read_secret_file(path)?;
    // `echo secret > file` adds a newline that is not part of the secret.
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    if bytes.is_empty() {
        return Err(SecretError::Empty { path: path.display().to_string() });
    }
    Ok(bytes)
}

impl WebhookSecrets {
    pub(crate) fn load(current: &Path, previous: Option<&Path>) -> Result<WebhookSecrets, SecretError> {
        Ok(WebhookSecrets { current: read_secret(current)?, previous: previous.map(read_secret).transpose()? })
    }

    #[cfg(test)]
    fn new(current: &[u8], previous: Option<&[u8]>) -> WebhookSecrets {
        WebhookSecrets { current: current.to_vec(), previous: previous.map(<[u8]>::to_vec) }
    }

    /// Checks `header` (the value of `X-Hub-Signature-256`) against `body`.
    pub(crate) fn verify(&self, header: Option<&[u8]>, body: &[u8]) -> Result<Verified, SignatureError> {
        let header = header.ok_or(SignatureError::Missing)?;
        let digest = header
            .strip_prefix(PREFIX.as_bytes())
            .filter(|hex| hex.len() == DIGEST_HEX_CHARS)
            .and_then(|hex| hex::decode(hex).ok())
            .ok_or(SignatureError::Malformed)?;
        // Both secrets are always tried, so the time taken does not say which one matched.
        let current = matches(&self.current, body, &digest);
        let previous = self.previous.as_deref().is_some_and(|secret| matches(secret, body, &digest));
        match (current, previous) {
            (true, _) => Ok(Verified::Current),
            (false, true) => Ok(Verified::Previous),
            (false, false) => Err(SignatureError::Mismatch),
        }
    }
}

/// Constant-time comparison (hmac's `verify_slice`).
fn matches(secret: &[u8], body: &[u8], digest: &[u8]) -> bool {
    match HmacSha256::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(body);
            mac.verify_slice(digest).is_ok()
        }
        Err(_) => false,
    }
}

/// The `X-Hub-Signature-256` value GitHub sends for `body` under `secret` (the load generator
/// signs with it; the tests sign with GitHub's own code instead).
pub(crate) fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length; new_from_slice cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(body);
    format!("{PREFIX}{}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // GitHub's documented test vector ("Validating webhook deliveries").
    const SECRET: &[u8] = b"It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";
    const SIGNATURE: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn githubs_documented_vector() {
        assert_eq!(sign(SECRET, BODY), SIGNATURE);
        let secrets = WebhookSecrets::new(SECRET, None);
        assert_eq!(secrets.verify(Some(SIGNATURE.as_bytes()), BODY), Ok(Verified::Current));
    }

    #[test]
    fn the_previous_secret_still_verifies_during_a_rotation() {
        let secrets = WebhookSecrets::new(b"new secret", Some(SECRET));
        assert_eq!(secrets.verify(Some(SIGNATURE.as_bytes()), BODY), Ok(Verified::Previous));
        let without = WebhookSecrets::new(b"new secret", None);
        assert_eq!(without.verify(Some(SIGNATURE.as_bytes()), BODY), Err(SignatureError::Mismatch));
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        let secrets = WebhookSecrets::new(SECRET, None);
        assert_eq!(secrets.verify(None, BODY), Err(SignatureError::Missing));
        let sha1 = SIGNATURE.replace("sha256=", "sha1=");
        assert_eq!(secrets.verify(Some(sha1.as_bytes()), BODY), Err(SignatureError::Malformed));
        assert_eq!(secrets.verify(Some(&SIGNATURE.as_bytes()[..70]), BODY), Err(SignatureError::Malformed));
        assert_eq!(secrets.verify(Some(SIGNATURE.as_bytes()), b"Hello, World?"), Err(SignatureError::Mismatch));
        let upper = SIGNATURE.to_uppercase().replace("SHA256=", "sha256=");
        // Hex is case-insensitive; the digest is what counts.
        assert_eq!(secrets.verify(Some(upper.as_bytes()), BODY), Ok(Verified::Current));
    }
}
