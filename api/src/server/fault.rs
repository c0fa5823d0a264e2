//! Fault injection for the crash and hygiene tests (`tests/crash_harness.rs`,
//! `tests/hygiene.rs`). Inert unless `GRANTLINE_FAULT` is set when the server starts; an
//! unknown value refuses to start, so a typo in a test never silently tests nothing.
//!
//! | `GRANTLINE_FAULT` | effect |
//! |---|---|
//! | `abort_before_append:<id>` | `abort()` before writing the batch that holds statement `<id>` |
//! | `abort_after_append:<id>` | `abort()` once that batch is durable, before it is published or answered |
//! | `abort_before_automation` | `abort()` when the automation has statements to append (e.g. quorum reached, `grant.issued` not yet written) |
//! | `io_error_while_exists:<path>` | while `<path>` exists, every append fails as if the disk refused the write |
//! | `fork_checkpoint` | with witnesses: once a checkpoint of size S has their quorum, the log signs a second checkpoint of size S with another root (one byte flipped), serves it and offers it to the witnesses (a split view; `tests/witness_log.rs`) |

use std::path::PathBuf;

use ledger::store::Entry;

/// The environment variable that selects a fault.
pub(super) const FAULT_ENV: &str = "GRANTLINE_FAULT";

/// `GRANTLINE_FAULT` names no fault this build knows.
#[derive(Debug, thiserror::Error)]
#[error("unknown {FAULT_ENV} value {0:?}")]
pub(crate) struct UnknownFault(String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Fault {
    None,
    AbortBeforeAppend(String),
    AbortAfterAppend(String),
    AbortBeforeAutomation,
    IoErrorWhileExists(PathBuf),
    ForkCheckpoint,
}

impl Fault {
    /// The fault named by `GRANTLINE_FAULT`, `Fault::None` when it is unset or empty.
    pub(super) fn from_env() -> Result<Fault, UnknownFault> {
        match std::env::var(FAULT_ENV) {
            Ok(v) if !v.is_empty() => Fault::parse(&v),
            _ => Ok(Fault::None),
        }
    }

    pub(super) fn parse(text: &str) -> Result<Fault, UnknownFault> {
        let (name, arg) = match text.split_once(':') {
            Some((name, arg)) => (name, Some(arg)),
            None => (text, None),
        };
        match (name, arg) {
            ("abort_before_append", Some(id)) if !id.is_empty() => Ok(Fault::AbortBeforeAppend(id.to_string())),
            ("abort_after_append", Some(id)) if !id.is_empty() => Ok(Fault::AbortAfterAppend(id.to_string())),
            ("abort_before_automation", None) => Ok(Fault::AbortBeforeAutomation),
            ("fork_checkpoint", None) => Ok(Fault::ForkCheckpoint),
            ("io_error_while_exists", Some(path)) if !path.is_empty() => {
                Ok(Fault::IoErrorWhileExists(PathBuf::from(path)))
            }
            _ => Err(UnknownFault(text.to_string())),
        }
    }

    /// Called with a checked batch just before the store writes it.
    pub(super) fn before_append(&self, entries: &[Entry]) -> std::io::Result<()> {
        match self {
            Fault::AbortBeforeAppend(id) if entries.iter().any(|e| &e.id == id) => abort("before_append"),
            Fault::IoErrorWhileExists(path) if path.exists() => {
                Err(std::io::Error::other(format!("injected I/O error ({FAULT_ENV}): no space left on device")))
            }
            _ => Ok(()),
        }
    }

    /// Called once a batch is durable, before it is published or answered.
    pub(super) fn after_append(&self, entries: &[Entry]) {
        if let Fault::AbortAfterAppend(id) = self {
            if entries.iter().any(|e| &e.id == id) {
                abort("after_append");
            }
        }
    }

    /// Called when the automation has statements to append.
    pub(super) fn before_automation(&self) {
        if *self == Fault::AbortBeforeAutomation {
            abort("before_automation");
        }
    }
}

fn abort(point: &str) -> ! {
    eprintln!("{FAULT_ENV}: aborting {point}");
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_fault_and_refuses_unknown_ones() {
        assert_eq!(Fault::parse("abort_before_append:x").unwrap(), Fault::AbortBeforeAppend("x".into()));
        assert_eq!(Fault::parse("abort_after_append:a:b").unwrap(), Fault::AbortAfterAppend("a:b".into()));
        assert_eq!(Fault::parse("abort_before_automation").unwrap(), Fault::AbortBeforeAutomation);
        assert_eq!(Fault::parse("fork_checkpoint").unwrap(), Fault::ForkCheckpoint);
        assert_eq!(Fault::parse("io_error_while_exists:/tmp/f").unwrap(), Fault::IoErrorWhileExists("/tmp/f".into()));
        for bad in [
            "abort",
            "abort_after_append",
            "abort_after_append:",
            "abort_before_automation:x",
            "io_error",
            "fork_checkpoint:1",
        ] {
            assert!(Fault::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_io_fault_holds_only_while_its_file_exists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk-full");
        let fault = Fault::IoErrorWhileExists(path.clone());
        let entries = [Entry { id: "x".into(), envelope: b"{}".to_vec(), received_at_ms: 0 }];
        assert!(fault.before_append(&entries).is_ok());
        std::fs::write(&path, b"").unwrap();
        assert!(fault.before_append(&entries).is_err());
        std::fs::remove_file(&path).unwrap();
        assert!(fault.before_append(&entries).is_ok());
        assert!(Fault::None.before_append(&entries).is_ok());
    }
}
