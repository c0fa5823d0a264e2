//! The one admission path from a statement to the projector's state.
//!
//! The project rests on one invariant: replaying the log with `check` + `apply` accepts every
//! record (the log proves its policy). So there is exactly one place that checks and then
//! applies: [`Fold::admit`]. The sequencer, `init`, the load generator's `fill`, the auditor
//! and the test logs all admit through it; [`Fold::apply_logged`] folds a record that is
//! already in the log (where the log, not the check, is the truth); [`Fold::replay`] pages a
//! store through `apply_logged`, verifying signatures on all cores first.

use ledger::dsse::{Envelope, EnvelopeError, SignatureFailure};
use ledger::keys::VerifierKey;
use ledger::record::Record;
use ledger::statement::{Statement, StatementError};
use ledger::store::{Store, StoreError, RANGE_RECORDS_MAX};
use projector::{Event, Rejection, State};

/// A verified signature: its keyid with the key that verified it.
pub(crate) type Signer = (String, VerifierKey);

/// Why [`Fold::admit`] refused a statement. Nothing was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdmitError {
    /// A key that verified the envelope is not an active key at this point of the log (it
    /// was revoked since, possibly earlier in the same batch).
    KeyInactive {
        /// The keyid of the signature whose key is no longer active.
        keyid: String,
    },
    /// The projector's `check` rejects the statement here.
    Rejected(Rejection),
}

impl std::fmt::Display for AdmitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdmitError::KeyInactive { keyid } => write!(f, "key {keyid} is not active"),
            AdmitError::Rejected(rejection) => write!(f, "{rejection}"),
        }
    }
}

/// A logged record that did not verify. It was folded anyway (the log is the truth; the server
/// keeps serving the log it has) and `grantline verify` names it.
#[derive(Debug, thiserror::Error)]
pub enum LoggedProblem {
    /// The record's envelope does not parse; nothing was applied.
    #[error("record {seq}: {source}")]
    Envelope {
        /// Where in the log.
        seq: u64,
        /// Why the envelope does not parse.
        #[source]
        source: EnvelopeError,
    },
    /// The envelope's statement does not parse; nothing was applied.
    #[error("record {seq}: {source}")]
    Statement {
        /// Where in the log.
        seq: u64,
        /// Why the statement does not parse.
        #[source]
        source: StatementError,
    },
    /// A signature does not verify against the keys at this point; the record was applied
    /// with no signers.
    #[error("record {seq}: {source}")]
    Signature {
        /// Where in the log.
        seq: u64,
        /// The first signature that failed.
        #[source]
        source: SignatureFailure,
    },
}

/// Why a store could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The store could not be read.
    #[error("cannot read the store: {0}")]
    Store(#[from] StoreError),
    /// The store's size promises a record it does not have.
    #[error("record {0} is missing from the store")]
    Missing(u64),
    /// A page of the store came back out of order.
    #[error("expected record {expected}, found {found}")]
    OutOfOrder {
        /// The seq the replay needed next.
        expected: u64,
        /// The seq the store returned.
        found: u64,
    },
}

/// The projector's state, changed only through [`Fold::admit`], [`Fold::apply_logged`] and
/// [`Fold::replay`]. Cloning is O(1) (the state is built from persistent maps), so the
/// sequencer admits a batch into a clone and keeps it only once the batch is durable.
#[derive(Clone, Default)]
pub struct Fold {
    state: State,
}

impl Fold {
    /// The fold of the empty log.
    pub fn new() -> Fold {
        Fold::default()
    }

    /// Continues from a state that is the fold of the first `state.size()` records of a log
    /// (a projection snapshot).
    pub fn from_state(state: State) -> Fold {
        Fold { state }
    }

    /// The state so far.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The state so far, by value.
    pub fn into_state(self) -> State {
        self.state
    }

    /// How many records were folded: the seq the next admitted statement gets.
    pub fn size(&self) -> u64 {
        self.state.size()
    }

    /// Checks `statement`, signed by `signers` (verified against an earlier state), as the
    /// next record received at `at_ms`, and applies it if it is accepted. Returns its seq.
    pub fn admit(&mut self, statement: &Statement, signers: &[Signer], at_ms: i64) -> Result<u64, AdmitError> {
        if let Some((keyid, _)) =
            signers.iter().find(|(keyid, key)| signer_key(&self.state, keyid, statement).as_ref() != Some(key))
        {
            return Err(AdmitError::KeyInactive { keyid: keyid.clone() });
        }
        let keyids: Vec<String> = signers.iter().map(|(keyid, _)| keyid.clone()).collect();
        projector::check(&self.state, statement, &keyids, at_ms).map_err(AdmitError::Rejected)?;
        let seq = self.state.size();
        projector::apply(&mut self.state, &Event { seq, received_at_ms: at_ms, statement, signers: &keyids });
        debug_assert_eq!(self.state.size(), seq + 1, "an admitted statement is one record");
        Ok(seq)
    }

    /// Folds one record that is already in the log. A record that no longer verifies is still
    /// applied (with no signers) and reported.
    pub fn apply_logged(&mut self, rec: &Record) -> Result<(), LoggedProblem> {
        let seq = rec.seq;
        let env = Envelope::parse(rec.envelope()).map_err(|source| LoggedProblem::Envelope { seq, source })?;
        let statement = Statement::parse(&env.payload).map_err(|source| LoggedProblem::Statement { seq, source })?;
        let (signers, problem) = match verify_signers(&self.state, &env, &statement) {
            Ok(signers) => (signers.into_iter().map(|(keyid, _)| keyid).collect::<Vec<_>>(), None),
            Err(source) => (Vec::new(), Some(LoggedProblem::Signature { seq, source })),
        };
        self.apply_verified(rec, &statement, &signers);
        problem.map_or(Ok(()), Err)
    }

    fn apply_verified(&mut self, rec: &Record, statement: &Statement, keyids: &[String]) {
        projector::apply(
            &mut self.state,
            &Event { seq: rec.seq, received_at_ms: rec.received_at_ms, statement, signers: keyids },
        );
    }

    /// Folds records `self.size()..store.size()` of `store`; returns the fold and how many
    /// records did not verify ([`LoggedProblem`]s, logged as warnings).
    ///
    /// Signatures are checked on all cores first, one page at a time, against the keys of the
    /// state at the page's start. The fold then reuses a signature's result only if the key the
    /// state names at that record is the very key that verified it; otherwise (a key added or
    /// revoked within the page, a failure) it folds the record through [`Fold::apply_logged`].
    /// So the result is exactly that of `apply_logged` on every record in order.
    pub fn replay(mut self, store: &Store) -> Result<(Fold, u64), ReplayError> {
        use rayon::prelude::*;
        let size = store.size();
        let mut warnings = 0u64;
        let mut next = self.size();
        while next < size {
            let page = store.range(next, RANGE_RECORDS_MAX)?;
            if page.is_empty() {
                return Err(ReplayError::Missing(next));
            }
            let at_start = &self.state;
            let verified: Vec<Option<Verified>> = page.par_iter().map(|rec| Verified::new(at_start, rec)).collect();
            for (rec, verified) in page.iter().zip(verified) {
                if rec.seq != next {
                    return Err(ReplayError::OutOfOrder { expected: next, found: rec.seq });
                }
                let still_valid = verified.filter(|v| {
                    v.signers
                        .iter()
                        .all(|(keyid, key)| signer_key(&self.state, keyid, &v.statement).as_ref() == Some(key))
                });
                match still_valid {
                    Some(v) => {
                        let keyids: Vec<String> = v.signers.into_iter().map(|(keyid, _)| keyid).collect();
                        self.apply_verified(rec, &v.statement, &keyids);
                    }
                    None => {
                        if let Err(problem) = self.apply_logged(rec) {
                            warnings += 1;
                            tracing::warn!("replay: {problem}");
                        }
                    }
                }
                next += 1;
            }
        }
        debug_assert_eq!(self.size(), size);
        Ok((self, warnings))
    }
}

/// A record whose every signature verified against the keys of an earlier state.
struct Verified {
    statement: Statement,
    signers: Vec<Signer>,
}

impl Verified {
    fn new(state: &State, rec: &Record) -> Option<Verified> {
        let env = Envelope::parse(rec.envelope()).ok()?;
        let statement = Statement::parse(&env.payload).ok()?;
        let signers = verify_signers(state, &env, &statement).ok()?;
        Some(Verified { statement, signers })
    }
}

/// The key that may have made `keyid`'s signature on `statement` in `state`: an active key of
/// an actor (or a genesis key while the state is empty), or the automation key named in
/// genesis.
pub(crate) fn signer_key(state: &State, keyid: &str, statement: &Statement) -> Option<VerifierKey> {
    state.signing_key(keyid, statement).or_else(|| state.automation_key().filter(|k| k.keyid() == keyid).cloned())
}

/// Verifies every signature of `env` against the keys of `state`; returns the keyids with
/// the keys that verified them.
pub fn verify_signers(state: &State, env: &Envelope, statement: &Statement) -> Result<Vec<Signer>, SignatureFailure> {
    let keyids = env.verify(|keyid| signer_key(state, keyid, statement))?;
    let mut out = Vec::with_capacity(keyids.len());
    for (index, keyid) in keyids.into_iter().enumerate() {
        match signer_key(state, &keyid, statement) {
            Some(key) => out.push((keyid, key)),
            None => return Err(SignatureFailure::UnknownKey { index, keyid }),
        }
    }
    Ok(out)
}
