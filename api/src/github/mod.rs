//! The GitHub runner layer's glue (SPEC.md section 13): webhook secrets and signatures, and
//! the `workflow_job` payload. The rules themselves (the label rule, the job gate, what a
//! finished job meters) live in `projector::runner`; the routes in `server/routes/github.rs`.

pub(crate) mod payload;
pub(crate) mod signature;

use std::path::PathBuf;

use signature::{SecretError, WebhookSecrets};

/// What `serve --github-org ORG --github-webhook-secret FILE [--github-webhook-secret-previous
/// FILE]` turns on.
pub(crate) struct GitHub {
    /// The organisation whose repositories are the ledger's projects.
    pub(crate) org: String,
    pub(crate) secrets: WebhookSecrets,
}

/// The `serve` flags, as given.
#[derive(Debug, Clone)]
pub(crate) struct GitHubFlags {
    pub(crate) org: String,
    pub(crate) secret: PathBuf,
    pub(crate) secret_previous: Option<PathBuf>,
}

impl GitHub {
    /// Reads the secret files (each must be mode 0600).
    pub(crate) fn load(flags: &GitHubFlags) -> Result<GitHub, SecretError> {
        if !is_valid_org(&flags.org) {
            return Err(SecretError::Org(flags.org.clone()));
        }
        let secrets = WebhookSecrets::load(&flags.secret, flags.secret_previous.as_deref())?;
        Ok(GitHub { org: flags.org.clone(), secrets })
    }
}

/// GitHub's rule for account names: 1 to 39 ASCII letters, digits and single hyphens, not at
/// either end.
fn is_valid_org(org: &str) -> bool {
    !org.is_empty()
        && org.len() <= 39
        && !org.starts_with('-')
        && !org.ends_with('-')
        && !org.contains("--")
        && org.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}
