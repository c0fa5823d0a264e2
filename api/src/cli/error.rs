//! The CLI's error: a message and the process exit code.

use crate::client::ClientError;

/// Exit code for errors (clap uses 2 for usage errors).
pub(super) const EXIT_ERROR: u8 = 1;
/// Exit code of `grantline check` when access is denied.
pub(super) const EXIT_DENIED: u8 = 3;

/// An error for the user: a message and an exit code.
#[derive(Debug)]
pub(crate) struct CliError {
    pub message: String,
    pub code: u8,
}

impl CliError {
    pub(crate) fn new(message: impl Into<String>) -> CliError {
        CliError { message: message.into(), code: EXIT_ERROR }
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> CliError {
        match e {
            ClientError::Problem(p) => {
                CliError::new(format!("{} (HTTP {}, {})\n  {}", p.title, p.status, p.code, p.detail))
            }
            other => CliError::new(other.to_string()),
        }
    }
}

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
