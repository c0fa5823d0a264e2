//! Folding records into the projector's state, shared by the server (startup replay, the
//! sequencer) and the CLI (client-side state for admin-request files).

use ledger::dsse::{Envelope, SignatureFailure};
use ledger::keys::VerifierKey;
use ledger::record::Record;
use ledger::statement::Statement;
use projector::{Event, State};

/// The key that may have made `keyid`'s signature on `statement`: an active key of an actor
/// (or a genesis key while the state is empty), or the automation key named in genesis.
pub fn signer_key(state: &State, keyid: &str, statement: &Statement) -> Option<VerifierKey> {
    state.signing_key(keyid, statement).or_else(|| state.automation_key().filter(|k| k.keyid() == keyid).cloned())
}

/// Verifies every signature of `env` against `state`; returns the keyids with their keys.
pub fn verify_signers(
    state: &State,
    env: &Envelope,
    statement: &Statement,
) -> Result<Vec<(String, VerifierKey)>, SignatureFailure> {
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

/// Applies one logged record. The log is the truth: a record that no longer verifies is
/// still applied (with the signers that do verify) and reported, so `grantline verify` can
/// name it; the server keeps serving the log it has.
pub fn apply_record(state: &mut State, rec: &Record) -> Result<(), String> {
    let env = Envelope::parse(rec.envelope()).map_err(|e| format!("record {}: {e}", rec.seq))?;
    let statement = Statement::parse(&env.payload).map_err(|e| format!("record {}: {e}", rec.seq))?;
    let (signers, problem) = match verify_signers(state, &env, &statement) {
        Ok(signers) => (signers.into_iter().map(|(k, _)| k).collect::<Vec<_>>(), None),
        Err(e) => (Vec::new(), Some(format!("record {}: {e}", rec.seq))),
    };
    projector::apply(
        state,
        &Event { seq: rec.seq, received_at_ms: rec.received_at_ms, statement: &statement, signers: &signers },
    );
    match problem {
        Some(p) => Err(p),
        None => Ok(()),
    }
}
