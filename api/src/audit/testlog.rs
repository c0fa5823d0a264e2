//! A real log built in memory for the auditor's unit tests: envelopes signed with real keys,
//! every record checked and applied by the real projector, chained and hashed by the ledger.

use ledger::checkpoint::Checkpoint;
use ledger::dsse::Envelope;
use ledger::keys::SigningKey;
use ledger::merkle::MemoryTree;
use ledger::record::Record;
use ledger::statement::{format_rfc3339_ms, Statement};
use projector::{Rejection, State};

use crate::fold::{AdmitError, Fold};
use serde_json::{json, Value};

use super::source::Raw;
use super::statefile::SignedCheckpoint;
use crate::json::RecordJson;

pub(crate) const ORIGIN: &str = "ledger.test/ci";
/// 2026-11-29T00:00:00Z.
pub(crate) const START_MS: i64 = 1_795_910_400_000;

pub(crate) struct TestLog {
    pub log_key: SigningKey,
    pub automation: SigningKey,
    pub admin: SigningKey,
    pub records: Vec<Record>,
    pub state: State,
    pub now_ms: i64,
    counter: u64,
}

impl TestLog {
    /// A log holding only its genesis.
    pub(crate) fn new() -> TestLog {
        let log_key = SigningKey::generate(ORIGIN).unwrap();
        let automation = SigningKey::generate("automation").unwrap();
        let admin = SigningKey::generate("admin").unwrap();
        let mut log = TestLog {
            log_key,
            automation,
            admin,
            records: Vec::new(),
            state: State::new(),
            now_ms: START_MS,
            counter: 0,
        };
        let data = json!({
            "admins": [log.admin.verifier().to_string()],
            "automation_key": log.automation.verifier().to_string(),
            "log_key": log.log_key.verifier().to_string(),
        });
        let admin = log.admin.clone();
        log.append_as("genesis", "ledger.genesis", "admin", data, &[&admin]).unwrap();
        log
    }

    /// A statement by `actor`, with a fresh id.
    pub(crate) fn statement(&mut self, kind: &str, actor: &str, data: Value) -> Statement {
        self.counter += 1;
        let id = format!("t-{}", self.counter);
        self.statement_with_id(&id, kind, actor, data)
    }

    fn statement_with_id(&self, id: &str, kind: &str, actor: &str, data: Value) -> Statement {
        Statement {
            ledger: ORIGIN.to_string(),
            id: id.to_string(),
            actor: actor.to_string(),
            issued_at: format_rfc3339_ms(self.now_ms),
            kind: kind.to_string(),
            data,
        }
    }

    fn append_as(
        &mut self,
        id: &str,
        kind: &str,
        actor: &str,
        data: Value,
        keys: &[&SigningKey],
    ) -> Result<Record, Rejection> {
        let st = self.statement_with_id(id, kind, actor, data);
        self.append_statement(&st, keys)
    }

    /// Signs, checks with the projector, appends and applies: what the server does.
    pub(crate) fn append_statement(&mut self, st: &Statement, keys: &[&SigningKey]) -> Result<Record, Rejection> {
        self.now_ms += 1000;
        let env = Envelope::sign(st.to_payload(), keys);
        let signers = crate::fold::verify_signers(&self.state, &env, st).map_err(|e| Rejection {
            code: "bad_signature".into(),
            message: e.to_string(),
            kind: projector::RejectionKind::Unauthenticated,
        })?;
        let mut fold = Fold::from_state(std::mem::take(&mut self.state));
        let admitted = fold.admit(st, &signers, self.now_ms);
        self.state = fold.into_state();
        match admitted {
            Ok(_) => Ok(self.push_envelope(&env.canonical_json())),
            Err(AdmitError::Rejected(rejection)) => Err(rejection),
            Err(e @ AdmitError::KeyInactive { .. }) => Err(Rejection {
                code: "key_inactive".into(),
                message: e.to_string(),
                kind: projector::RejectionKind::Unauthenticated,
            }),
        }
    }

    /// Appends an envelope as a record, linked into the chain, with no check at all.
    pub(crate) fn push_envelope(&mut self, envelope: &[u8]) -> Record {
        let seq = self.records.len() as u64;
        let prev = self.records.last().map_or([0; 32], Record::chain_hash);
        let rec = Record::new(seq, prev, self.now_ms, envelope).unwrap();
        self.records.push(rec.clone());
        rec
    }

    pub(crate) fn event(&mut self, kind: &str, actor: &str, data: Value, keys: &[&SigningKey]) -> Record {
        let st = self.statement(kind, actor, data);
        self.append_statement(&st, keys).unwrap_or_else(|e| panic!("{kind} by {actor}: {e}"))
    }

    /// Registers an actor with roles; returns its key.
    pub(crate) fn register(&mut self, name: &str, roles: &[&str]) -> SigningKey {
        let key = SigningKey::generate(name).unwrap();
        let admin = self.admin.clone();
        self.event(
            "actor.registered",
            "admin",
            json!({"actor": name, "key": key.verifier().to_string(), "roles": roles}),
            &[&admin],
        );
        key
    }

    /// Appends what the automation key must append now (grants on quorum).
    pub(crate) fn run_automation(&mut self) -> Vec<Record> {
        let automation = self.automation.clone();
        projector::automation(&self.state, self.now_ms)
            .into_iter()
            .map(|st| self.append_statement(&st, &[&automation]).unwrap())
            .collect()
    }

    /// A typical log: reviewers, a requester, a resource needing two approvals, `requests`
    /// requests each approved twice and granted by the automation key.
    pub(crate) fn typical(requests: usize) -> (TestLog, Keys) {
        let mut log = TestLog::new();
        let alice = log.register("alice", &["reviewer"]);
        let bob = log.register("bob", &["reviewer"]);
        let carol = log.register("carol", &["requester"]);
        let admin = log.admin.clone();
        log.event(
            "resource.defined",
            "admin",
            json!({"resource": "gpu-large", "provider": "cirun", "unit": "runner-minutes", "approvals_required": 2}),
            &[&admin],
        );
        for i in 0..requests {
            let request = format!("req-{i}");
            log.event(
                "access.requested",
                "carol",
                json!({"request": request, "project": format!("feedstock-{i}"), "resource": "gpu-large",
                       "justification": "CUDA builds", "pull_request": false}),
                &[&carol],
            );
            log.event("request.approved", "alice", json!({"request": request}), &[&alice]);
            log.event("request.approved", "bob", json!({"request": request}), &[&bob]);
            assert_eq!(log.run_automation().len(), 1, "request {i} reached its quorum");
        }
        (log, Keys { alice, carol })
    }

    pub(crate) fn size(&self) -> u64 {
        self.records.len() as u64
    }

    /// The checkpoint of the first `size` records, signed by the log key.
    pub(crate) fn checkpoint_at(&self, size: u64) -> SignedCheckpoint {
        let mut tree = MemoryTree::new();
        for rec in &self.records[..size as usize] {
            tree.push(rec.leaf_hash());
        }
        let note = Checkpoint { origin: ORIGIN.into(), size, root: tree.root() }.sign(&self.log_key).unwrap();
        SignedCheckpoint::open(&note, &self.log_key.verifier()).unwrap()
    }

    pub(crate) fn checkpoint(&self) -> SignedCheckpoint {
        self.checkpoint_at(self.size())
    }

    pub(crate) fn leaves(&self) -> Vec<Raw> {
        self.records.iter().map(|r| Raw::Leaf(r.leaf().to_vec())).collect()
    }

    /// The records as export lines.
    pub(crate) fn lines(&self) -> Vec<Raw> {
        self.records
            .iter()
            .enumerate()
            .map(|(i, r)| Raw::Line {
                number: i as u64 + 1,
                text: serde_json::to_vec(&RecordJson::from_record(r).unwrap()).unwrap(),
            })
            .collect()
    }
}

pub(crate) struct Keys {
    pub alice: SigningKey,
    pub carol: SigningKey,
}

/// Re-chains `records` from `from` on, so only the records' own content is wrong.
pub(crate) fn relink(records: &mut [Record], from: usize) {
    for i in from..records.len() {
        let prev = if i == 0 { [0; 32] } else { records[i - 1].chain_hash() };
        let r = &records[i];
        records[i] = Record::new(i as u64, prev, r.received_at_ms, r.envelope()).unwrap();
    }
}
