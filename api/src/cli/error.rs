//! The CLI's error: a message and the process exit code.

use crate::client::ClientError;
use crate::problem::Problem;

/// Exit code for errors (clap uses 2 for usage errors).
pub(super) const EXIT_ERROR: u8 = 1;
/// Exit code of `grantline check` when access is denied.
pub(super) const EXIT_DENIED: u8 = 3;

/// An error for the user: a message, an exit code, and the server's problem document when the
/// error is the server's answer (`--json` prints it).
#[derive(Debug)]
pub(crate) struct CliError {
    pub message: String,
    pub code: u8,
    pub problem: Option<Box<Problem>>,
}

impl CliError {
    pub(crate) fn new(message: impl Into<String>) -> CliError {
        CliError::with_code(message, EXIT_ERROR)
    }

    pub(crate) fn with_code(message: impl Into<String>, code: u8) -> CliError {
        CliError { message: message.into(), code, problem: None }
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> CliError {
        match e {
            ClientError::Problem(p) => {
                let mut message = format!("{} (HTTP {}, {})\n  {}", p.title, p.status, p.code, p.detail);
                if p.code == "too_large" {
                    message.push_str(TOO_LARGE_HINT);
                }
                CliError { message, code: EXIT_ERROR, problem: Some(Box::new(p)) }
            }
            other => CliError::new(other.to_string()),
        }
    }
}

/// A 413 on a short text surprises: the limit is on the signed envelope, not on the field.
const TOO_LARGE_HINT: &str = "\n  hint: the size limit applies to the whole signed envelope, where the event is \
    base64-encoded (a third larger); shorten the longest text (e.g. --justification)";

impl From<crate::datadir::DataDirError> for CliError {
    fn from(e: crate::datadir::DataDirError) -> CliError {
        CliError::new(e.to_string())
    }
}

impl From<ledger::keys::KeyError> for CliError {
    fn from(e: ledger::keys::KeyError) -> CliError {
        CliError::new(e.to_string())
    }
}

pub(super) type CliResult = Result<(), CliError>;
