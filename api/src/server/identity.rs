//! The server's signing identities: the log key (checkpoints) and the automation key
//! (statements the ledger appends itself). Reachable from the app state, so a route that must
//! sign (a webhook delivery, a witness request) does not reach into the sequencer.

use ledger::checkpoint::{Checkpoint, CheckpointError};
use ledger::dsse::Envelope;
use ledger::keys::{SigningKey, VerifierKey};
use ledger::statement::Statement;
use ledger::Hash;

use crate::fold::Signer;

/// The two keys a server signs with. Neither ever leaves the process.
pub(crate) struct Identities {
    log: SigningKey,
    automation: SigningKey,
}

impl Identities {
    pub(crate) fn new(log: SigningKey, automation: SigningKey) -> Identities {
        Identities { log, automation }
    }

    /// The log key's verifier key (its name is the origin).
    pub(crate) fn log_key(&self) -> VerifierKey {
        self.log.verifier()
    }

    /// The automation key's verifier key.
    pub(crate) fn automation_key(&self) -> VerifierKey {
        self.automation.verifier()
    }

    /// The signed checkpoint note for the tree of `size` records with `root`.
    pub(crate) fn sign_checkpoint(&self, origin: &str, size: u64, root: Hash) -> Result<String, CheckpointError> {
        Checkpoint { origin: origin.to_string(), size, root }.sign(&self.log)
    }

    /// `statement` signed by the automation key: the canonical envelope JSON and its signer.
    pub(crate) fn sign_as_automation(&self, statement: &Statement) -> (Vec<u8>, Signer) {
        let envelope = Envelope::sign(statement.to_payload(), &[&self.automation]);
        (envelope.canonical_json(), (self.automation.keyid(), self.automation.verifier()))
    }
}
