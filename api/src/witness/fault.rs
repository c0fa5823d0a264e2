//! Fault injection for the witness's crash test (`tests/witness.rs`). Inert unless
//! `GRANTLINE_FAULT` is set when the witness starts; an unknown value refuses to start (as the
//! server's `server/fault.rs` does), so a typo in a test never silently tests nothing.
//!
//! | `GRANTLINE_FAULT` | effect |
//! |---|---|
//! | `witness_abort_after_persist` | `abort()` once a new state is durable, before the cosignature is answered |

/// The environment variable that selects a fault (the server's, too).
const FAULT_ENV: &str = "GRANTLINE_FAULT";

/// `GRANTLINE_FAULT` names no fault the witness knows.
#[derive(Debug, thiserror::Error)]
#[error("unknown {FAULT_ENV} value {0:?} for the witness (it knows witness_abort_after_persist)")]
pub(crate) struct UnknownFault(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    None,
    AbortAfterPersist,
}

impl Fault {
    /// The fault named by `GRANTLINE_FAULT`, `Fault::None` when it is unset or empty.
    pub(crate) fn from_env() -> Result<Fault, UnknownFault> {
        match std::env::var(FAULT_ENV) {
            Ok(v) if !v.is_empty() => Fault::parse(&v),
            _ => Ok(Fault::None),
        }
    }

    fn parse(text: &str) -> Result<Fault, UnknownFault> {
        match text {
            "witness_abort_after_persist" => Ok(Fault::AbortAfterPersist),
            _ => Err(UnknownFault(text.to_string())),
        }
    }

    /// Called once a new state is durable, before the cosignature is answered.
    pub(super) fn after_persist(self) {
        if self == Fault::AbortAfterPersist {
            eprintln!("{FAULT_ENV}: aborting after persisting a new witness state");
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_one_fault_and_refuses_others() {
        assert_eq!(Fault::parse("witness_abort_after_persist").unwrap(), Fault::AbortAfterPersist);
        for bad in ["witness_abort", "abort_after_append:x", "witness_abort_after_persist:x", " "] {
            assert!(Fault::parse(bad).is_err(), "{bad:?}");
        }
    }
}
