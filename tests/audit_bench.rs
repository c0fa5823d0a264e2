//! The auditor's speed on a 100,000-event log, next to the single-core Ed25519 verify rate
//! measured in the same run. Ignored by default (it builds a big log); run it in release:
//!
//! ```text
//! cargo test --release -p grantline --test audit_bench -- --ignored --nocapture
//! ```
//!
//! The log is built with the library (the same store, keys, DSSE signing and projector checks
//! the server uses), not over HTTP, so building it takes seconds, not minutes. The figures go
//! in BENCHMARKS.md, "Auditor verification".

mod common;
mod common_audit;

use std::time::Instant;

use api::testing::{self as datadir, DataDir, Fold};
use common::BIN;
use common_audit::*;
use ledger::checkpoint::Checkpoint;
use ledger::dsse::Envelope;
use ledger::keys::SigningKey;
use ledger::statement::{format_rfc3339_ms, Statement};
use ledger::store::{AppendOutcome, Entry};
use serde_json::json;

/// Events in the benchmark log.
const EVENTS: u64 = 100_000;
/// Signatures verified to measure the single-core baseline.
const BASELINE_SIGNATURES: usize = 20_000;
const ORIGIN: &str = "bench.example/ci";

struct Builder {
    store: ledger::store::Store,
    fold: Fold,
    pending: Vec<(Entry, Statement)>,
    now_ms: i64,
}

impl Builder {
    fn seq(&self) -> u64 {
        self.store.size() + self.pending.len() as u64
    }

    /// Checks and applies like the sequencer, buffering the entry for the next batch.
    fn add(&mut self, st: Statement, key: &SigningKey) {
        self.now_ms += 1;
        let env = Envelope::sign(st.to_payload(), &[key]);
        let signers = [(key.keyid(), key.verifier())];
        let seq = self.fold.admit(&st, &signers, self.now_ms).unwrap_or_else(|e| panic!("{}: {e}", st.id));
        assert_eq!(seq, self.seq());
        let entry = Entry { id: st.id.clone(), envelope: env.canonical_json(), received_at_ms: self.now_ms };
        self.pending.push((entry, st));
        if self.pending.len() == ledger::store::BATCH_ENTRIES_MAX {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let entries: Vec<Entry> = self.pending.drain(..).map(|(e, _)| e).collect();
        for outcome in self.store.append(&entries).unwrap() {
            assert!(matches!(outcome, AppendOutcome::Appended(_)));
        }
    }

    fn statement(&self, id: String, actor: &str, kind: &str, data: serde_json::Value) -> Statement {
        Statement {
            ledger: ORIGIN.to_string(),
            id,
            actor: actor.to_string(),
            issued_at: format_rfc3339_ms(self.now_ms),
            kind: kind.to_string(),
            data,
        }
    }
}

/// Builds the log; returns the log's verifier key and the checkpoint file.
fn build_log(dir: &std::path::Path) -> (String, std::path::PathBuf) {
    let data = DataDir::new(dir.join("data"));
    let admin_path = dir.join("admin.key");
    datadir::init(&data, ORIGIN, "admin", &admin_path).unwrap();
    let admin = SigningKey::read_file(&admin_path).unwrap();
    let opened = datadir::open(&data).unwrap();
    let mut b = Builder { store: opened.store, fold: opened.fold, pending: Vec::new(), now_ms: api::now_ms() };
    let alice = SigningKey::generate("alice").unwrap();
    let bob = SigningKey::generate("bob").unwrap();
    let carol = SigningKey::generate("carol").unwrap();
    for (key, role) in [(&alice, "reviewer"), (&bob, "reviewer"), (&carol, "requester")] {
        let st = b.statement(
            format!("register-{}", key.name()),
            "admin",
            "actor.registered",
            json!({"actor": key.name(), "key": key.verifier().to_string(), "roles": [role]}),
        );
        b.add(st, &admin);
    }
    let st = b.statement(
        "define-gpu".into(),
        "admin",
        "resource.defined",
        json!({"resource": "gpu-large", "provider": "cirun", "unit": "runner-minutes", "approvals_required": 2}),
    );
    b.add(st, &admin);
    let mut i = 0u64;
    while b.seq() < EVENTS {
        let request = format!("req-{i}");
        let st = b.statement(
            format!("open-{request}"),
            "carol",
            "access.requested",
            json!({"request": request, "project": format!("feedstock-{i}"), "resource": "gpu-large",
                   "justification": "CUDA builds", "pull_request": false}),
        );
        b.add(st, &carol);
        for reviewer in [&alice, &bob] {
            let st = b.statement(
                format!("approve-{request}-{}", reviewer.name()),
                reviewer.name(),
                "request.approved",
                json!({"request": request}),
            );
            b.add(st, reviewer);
        }
        for st in projector::automation(b.fold.state(), b.now_ms) {
            b.add(st, &opened.automation_key);
        }
        i += 1;
    }
    b.flush();
    let size = b.store.size();
    let root = b.store.root_at(size).unwrap();
    let note = Checkpoint { origin: ORIGIN.into(), size, root }.sign(&opened.log_key).unwrap();
    let checkpoint = dir.join("checkpoint.txt");
    std::fs::write(&checkpoint, note).unwrap();
    (opened.log_key.verifier().to_string(), checkpoint)
}

/// Single-core strict Ed25519 verifications per second (what a naive auditor does).
fn single_core_verify_rate() -> f64 {
    let key = SigningKey::generate("alice").unwrap();
    let msgs: Vec<Vec<u8>> = (0..BASELINE_SIGNATURES).map(|i| format!("message {i}").into_bytes()).collect();
    let sigs: Vec<[u8; 64]> = msgs.iter().map(|m| key.sign(m)).collect();
    let verifier = key.verifier();
    let started = Instant::now();
    for (m, s) in msgs.iter().zip(&sigs) {
        assert!(verifier.verify(m, s));
    }
    BASELINE_SIGNATURES as f64 / started.elapsed().as_secs_f64()
}

#[test]
#[ignore = "builds a 100,000-event log; run in release, see the module docs"]
fn verify_a_100k_event_log() {
    let tmp = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (log_key, checkpoint) = build_log(tmp.path());
    let built_s = started.elapsed().as_secs_f64();
    let baseline = single_core_verify_rate();

    let data = tmp.path().join("data");
    // In process, through the library: the engine alone.
    let key = ledger::keys::VerifierKey::parse(&log_key).unwrap();
    let note = std::fs::read_to_string(&checkpoint).unwrap();
    let cp = api::testing::SignedCheckpoint::open(&note, &key).unwrap();
    let job = api::testing::VerifyJob { log_key: &key, checkpoint: &cp, state_path: None, progress: false };
    let mut source = api::testing::DataDirSource::open(&data, None).unwrap();
    let (report, replayed) = api::testing::verify(&mut source, &job).unwrap();
    drop((source, replayed));
    println!("log built in {built_s:.1} s");
    println!("single-core Ed25519 verify_strict baseline: {baseline:.0} signatures/s");
    println!("in process: {}", report.render());

    let started = Instant::now();
    let out = std::process::Command::new(BIN)
        .args(["verify", "--data", data.to_str().unwrap(), "--checkpoint", checkpoint.to_str().unwrap()])
        .args(["--log-key", &log_key])
        .output()
        .unwrap();
    let wall_s = started.elapsed().as_secs_f64();
    let said = assert_ok(&out);
    assert!(said.contains("verified: "), "{said}");
    let events: f64 =
        said.split("verified: ").nth(1).and_then(|s| s.split(' ').next()).and_then(|n| n.parse().ok()).unwrap();
    assert!(events >= EVENTS as f64);
    println!("{said}");
    println!("grantline verify --data: {events} events in {wall_s:.2} s wall = {:.0} events/s", events / wall_s);
    println!("single-core Ed25519 verify_strict baseline: {baseline:.0} signatures/s");
    println!("cores: {}", std::thread::available_parallelism().map_or(1, |n| n.get()));
}
