//! The verification pass: every record once, in windows, naming the first bad seq.
//!
//! Keys depend on earlier records (a `key.revoked` at seq 10 changes who may sign seq 11), so
//! the pass is split in three stages per window:
//!
//! 1. *prepare* (parallel): decode leaves, parse envelopes and statements, PAE, hashes, and
//!    compare served record fields with their leaf;
//! 2. *replay* (sequential, cheap): the chain link, the signer keys as of each seq, the
//!    projector check and apply, the Merkle tree;
//! 3. *signatures* (parallel): Ed25519 batch verification in chunks over all cores, falling
//!    back to single verification inside a failing chunk to name the seq.
//!
//! Stage 3 of one window runs while stages 1-2 of the next run. A failure is ranked by
//! (seq, check order), so the reported failure is always the first one in the log whatever
//! stage found it.

use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::Path;
use std::time::Instant;

use ed25519_dalek::{Signature, VerifyingKey};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ledger::b64;
use ledger::dsse::{Envelope, SIGNATURE_BYTES};
use ledger::keys::VerifierKey;
use ledger::merkle::MemoryTree;
use ledger::record::Record;
use ledger::statement::Statement;
use ledger::Hash;
use projector::State;
use rayon::prelude::*;

use super::source::{Raw, RecordSource};
use super::statefile::{self, SignedCheckpoint};
use super::{AuditError, Failure, FailureKind};
use crate::fold::{signer_key, Fold};
use crate::json::RecordJson;
use crate::limits::{SIGNATURE_CHUNK, WINDOW_RECORDS};

/// The order of checks on one record: at the same seq, the earlier check is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    Chain,
    Signature,
    Fields,
    Policy,
}

#[derive(Debug, Clone)]
struct Found {
    seq: u64,
    rank: Rank,
    failure: Failure,
}

impl Found {
    fn new(seq: u64, rank: Rank, kind: FailureKind, reason: impl Into<String>) -> Found {
        Found { seq, rank, failure: Failure::at(kind, seq, reason) }
    }

    fn key(&self) -> (u64, Rank) {
        (self.seq, self.rank)
    }
}

fn first(a: Option<Found>, b: Option<Found>) -> Option<Found> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.key() < a.key() { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// One record after stage 1.
struct Prepared {
    record: Result<Record, String>,
    envelope: Result<Envelope, String>,
    statement: Result<Statement, String>,
    pae: Vec<u8>,
    chain_hash: Hash,
    leaf_hash: Hash,
    /// How the served record fields disagree with the leaf, if they do.
    fields: Option<String>,
}

/// One signature to check in stage 3.
struct SigJob {
    item: usize,
    seq: u64,
    index: usize,
    keyid: String,
    key: VerifyingKey,
    sig: Signature,
}

/// Decodes a served record's leaf (the truth; the other fields are checked against it).
pub(crate) fn leaf_of(rj: &RecordJson) -> Result<Record, String> {
    let leaf = b64::decode(&rj.leaf).map_err(|_| "the leaf field is not padded base64".to_string())?;
    Record::decode_vec(leaf).map_err(|e| e.to_string())
}

/// Checks that a served record's fields (seq, received_at_ms, prev, chain_hash, leaf_hash,
/// envelope, statement) say exactly what its leaf says.
pub(crate) fn record_fields_agree(rj: &RecordJson, rec: &Record) -> Result<(), String> {
    record_fields_agree_with(rj, rec, &rec.chain_hash(), &rec.leaf_hash())
}

fn record_fields_agree_with(rj: &RecordJson, rec: &Record, chain_hash: &Hash, leaf_hash: &Hash) -> Result<(), String> {
    if rj.seq != rec.seq {
        return Err(format!("seq field is {}, the leaf says {}", rj.seq, rec.seq));
    }
    if rj.received_at_ms != rec.received_at_ms {
        return Err(format!("received_at_ms field is {}, the leaf says {}", rj.received_at_ms, rec.received_at_ms));
    }
    if rj.prev != b64::encode(rec.prev) {
        return Err("prev field differs from the leaf's prev".into());
    }
    if rj.chain_hash != b64::encode(chain_hash) {
        return Err("chain_hash field is not BLAKE3 of the leaf".into());
    }
    if rj.leaf_hash != b64::encode(leaf_hash) {
        return Err("leaf_hash field is not the RFC 6962 leaf hash of the leaf".into());
    }
    let env = Envelope::parse(rec.envelope()).map_err(|e| format!("the leaf's envelope is invalid: {e}"))?;
    if rj.envelope != env.to_json_value() {
        return Err("envelope field differs from the leaf's envelope".into());
    }
    let statement: serde_json::Value =
        serde_json::from_slice(&env.payload).map_err(|e| format!("the payload is not JSON: {e}"))?;
    if rj.statement != statement {
        return Err("statement field differs from the envelope's payload".into());
    }
    Ok(())
}

fn prepare(raw: Raw) -> Prepared {
    let (record, json) = match raw {
        Raw::Leaf(leaf) => (Record::decode_vec(leaf).map_err(|e| e.to_string()), None),
        Raw::Line { number, text } => match serde_json::from_slice::<RecordJson>(&text) {
            Ok(rj) => (leaf_of(&rj), Some(rj)),
            Err(e) => (Err(format!("line {number} is not a record: {e}")), None),
        },
        Raw::Json(rj) => (leaf_of(&rj), Some(*rj)),
    };
    let mut p = Prepared {
        record,
        envelope: Err(String::new()),
        statement: Err(String::new()),
        pae: Vec::new(),
        chain_hash: [0; 32],
        leaf_hash: [0; 32],
        fields: None,
    };
    let Ok(rec) = &p.record else {
        return p;
    };
    p.chain_hash = rec.chain_hash();
    p.leaf_hash = rec.leaf_hash();
    p.envelope = Envelope::parse(rec.envelope()).map_err(|e| e.to_string());
    if let Ok(env) = &p.envelope {
        p.pae = env.pae();
        p.statement = Statement::parse(&env.payload).map_err(|e| e.to_string());
    }
    if let Some(rj) = &json {
        p.fields = record_fields_agree_with(rj, rec, &p.chain_hash, &p.leaf_hash).err();
    }
    p
}

/// The replayed log: what a successful pass knows.
pub struct Replayed {
    pub state: State,
    pub tree: MemoryTree,
    /// Chain hash of the last record (zeros when empty).
    pub head: Hash,
    pub signatures: u64,
}

impl Replayed {
    pub fn size(&self) -> u64 {
        self.tree.size()
    }
}

struct Replay {
    fold: Fold,
    tree: MemoryTree,
    head: Hash,
    ids: HashSet<String>,
    log_key: VerifierKey,
    signatures: u64,
}

impl Replay {
    fn new(log_key: &VerifierKey) -> Replay {
        Replay {
            fold: Fold::new(),
            tree: MemoryTree::new(),
            head: [0; 32],
            ids: HashSet::new(),
            log_key: log_key.clone(),
            signatures: 0,
        }
    }

    fn next_seq(&self) -> u64 {
        self.tree.size()
    }

    /// Stage 2 over a window: stops at the first failure; returns the signatures to check.
    fn window(&mut self, items: &[Prepared]) -> (Vec<SigJob>, Option<Found>) {
        let mut jobs = Vec::with_capacity(items.len() * 2);
        for (item, p) in items.iter().enumerate() {
            if let Some(found) = self.step(item, p, &mut jobs) {
                return (jobs, Some(found));
            }
        }
        (jobs, None)
    }

    /// A key of some actor that is no longer (or not yet) active: (key, actor, revoked_seq).
    fn inactive_key(&self, keyid: &str) -> Option<(VerifierKey, String, Option<u64>)> {
        self.fold.state().actors().into_iter().find_map(|actor| {
            let key = actor.keys.iter().find(|k| k.keyid == keyid)?;
            Some((VerifierKey::parse(&key.key).ok()?, actor.actor.clone(), key.revoked_seq))
        })
    }

    fn step(&mut self, item: usize, p: &Prepared, jobs: &mut Vec<SigJob>) -> Option<Found> {
        use FailureKind::{Chain, Checkpoint, Policy, Signature as Sig};
        let seq = self.next_seq();
        let rec = match &p.record {
            Ok(rec) => rec,
            Err(e) => return Some(Found::new(seq, Rank::Chain, Chain, format!("the record does not decode: {e}"))),
        };
        if rec.seq != seq {
            return Some(Found::new(
                seq,
                Rank::Chain,
                Chain,
                format!("found the record of seq {} where seq {seq} belongs: seqs must be dense and in order", rec.seq),
            ));
        }
        if rec.prev != self.head {
            let why = if seq == 0 {
                "prev of seq 0 is not 32 zero bytes".to_string()
            } else {
                format!("prev is not the chain hash (BLAKE3) of seq {}", seq - 1)
            };
            return Some(Found::new(seq, Rank::Chain, Chain, why));
        }
        let env = match &p.envelope {
            Ok(env) => env,
            Err(e) => return Some(Found::new(seq, Rank::Signature, Sig, format!("not a valid DSSE envelope: {e}"))),
        };

        // Signer keys as of this seq. A signature whose key is known but not active is still
        // checked, so a forged signature is reported as such rather than as a policy breach.
        let placeholder;
        let lookup_statement = match &p.statement {
            Ok(st) => st,
            Err(_) => {
                placeholder = placeholder_statement();
                &placeholder
            }
        };
        let mut signers = Vec::with_capacity(env.signatures.len());
        let mut key_problem: Option<String> = None;
        for (index, s) in env.signatures.iter().enumerate() {
            let sig = match <[u8; 64]>::try_from(s.sig.as_slice()) {
                Ok(bytes) => Signature::from_bytes(&bytes),
                Err(_) => {
                    return Some(Found::new(
                        seq,
                        Rank::Signature,
                        Sig,
                        format!("signature {index} is not {SIGNATURE_BYTES} bytes"),
                    ))
                }
            };
            let key = match signer_key(self.fold.state(), &s.keyid, lookup_statement) {
                Some(key) if key.keyid() == s.keyid => {
                    signers.push((s.keyid.clone(), key.clone()));
                    key
                }
                _ => match self.inactive_key(&s.keyid) {
                    Some((key, actor, revoked_seq)) => {
                        let why = match revoked_seq {
                            Some(r) => {
                                format!("signature {index} is by key {} of {actor}, revoked at seq {r}", s.keyid)
                            }
                            None => format!("signature {index} is by key {} of {actor}, not active here", s.keyid),
                        };
                        key_problem.get_or_insert(why);
                        key
                    }
                    None => {
                        key_problem.get_or_insert(format!(
                            "signature {index} is by key {}, which is not a registered key at this seq",
                            s.keyid
                        ));
                        continue;
                    }
                },
            };
            jobs.push(SigJob { item, seq, index, keyid: s.keyid.clone(), key: *key.verifying_key(), sig });
        }
        if let Some(why) = &p.fields {
            return Some(Found::new(seq, Rank::Fields, Chain, format!("the record disagrees with its leaf: {why}")));
        }
        let statement = match &p.statement {
            Ok(st) => st,
            Err(e) => return Some(Found::new(seq, Rank::Policy, Policy, format!("the statement is malformed: {e}"))),
        };
        if let Some(why) = key_problem {
            return Some(Found::new(
                seq,
                Rank::Policy,
                Policy,
                format!("{} by {}: {why}", statement.kind, statement.actor),
            ));
        }
        if !self.ids.insert(statement.id.clone()) {
            return Some(Found::new(
                seq,
                Rank::Policy,
                Policy,
                format!("statement id {:?} was already used by an earlier record", statement.id),
            ));
        }
        if let Err(refusal) = self.fold.admit(statement, &signers, rec.received_at_ms) {
            return Some(Found::new(
                seq,
                Rank::Policy,
                Policy,
                format!("the replay rejects {} by {}: {refusal}", statement.kind, statement.actor),
            ));
        }
        debug_assert_eq!(self.fold.size(), seq + 1);
        if seq == 0 {
            let pinned = &self.log_key;
            let state = self.fold.state();
            if state.log_key() != Some(pinned) || state.origin() != Some(pinned.name()) {
                let named = state.log_key().map_or("none".to_string(), |k| k.to_string());
                return Some(Found::new(
                    seq,
                    Rank::Policy,
                    Checkpoint,
                    format!("the genesis names log key {named}, not the pinned key {pinned}: this is another log"),
                ));
            }
        }
        self.signatures += env.signatures.len() as u64;
        self.tree.push(p.leaf_hash);
        self.head = p.chain_hash;
        debug_assert_eq!(self.next_seq(), seq + 1);
        None
    }
}

/// Used only to look up keys by keyid when the statement itself is malformed.
fn placeholder_statement() -> Statement {
    Statement {
        ledger: String::new(),
        id: String::new(),
        actor: String::new(),
        issued_at: String::new(),
        kind: String::new(),
        data: serde_json::Value::Null,
    }
}

/// Stage 3: the first bad signature among `jobs`, if any.
fn verify_signatures(items: &[Prepared], jobs: &[SigJob]) -> Option<Found> {
    jobs.par_chunks(SIGNATURE_CHUNK)
        .filter_map(|chunk| {
            let msgs: Vec<&[u8]> = chunk.iter().map(|j| items[j.item].pae.as_slice()).collect();
            let sigs: Vec<Signature> = chunk.iter().map(|j| j.sig).collect();
            let keys: Vec<VerifyingKey> = chunk.iter().map(|j| j.key).collect();
            // Weak keys pass batch verification more easily than strict verification (which
            // the server uses), so they always take the single path.
            let weak = keys.iter().any(VerifyingKey::is_weak);
            if !weak && ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok() {
                return None;
            }
            chunk.iter().find(|j| j.key.verify_strict(&items[j.item].pae, &j.sig).is_err()).map(|j| {
                Found::new(
                    j.seq,
                    Rank::Signature,
                    FailureKind::Signature,
                    format!("signature {} by {} does not verify", j.index, j.keyid),
                )
            })
        })
        .min_by_key(Found::key)
}

/// Verifies signatures, chain and policy of every record of `source`, in one pass.
pub(crate) fn replay_source(
    source: &mut dyn RecordSource,
    log_key: &VerifierKey,
    progress: &ProgressBar,
) -> Result<Replayed, AuditError> {
    replay_in_windows(source, log_key, progress, WINDOW_RECORDS)
}

fn replay_in_windows(
    source: &mut dyn RecordSource,
    log_key: &VerifierKey,
    progress: &ProgressBar,
    window_records: usize,
) -> Result<Replayed, AuditError> {
    debug_assert!(window_records > 0);
    let mut replay = Replay::new(log_key);
    let mut pending: Option<(Vec<Prepared>, Vec<SigJob>)> = None;
    loop {
        let raws = source.next_window(window_records)?;
        if raws.is_empty() {
            break;
        }
        let count = raws.len() as u64;
        let (bad_signature, (items, (jobs, found))) = rayon::join(
            || pending.as_ref().and_then(|(items, jobs)| verify_signatures(items, jobs)),
            || {
                let items: Vec<Prepared> = raws.into_par_iter().map(prepare).collect();
                let outcome = replay.window(&items);
                (items, outcome)
            },
        );
        // The previous window's seqs are all lower than this one's.
        if let Some(f) = bad_signature {
            return Err(f.failure.into());
        }
        if let Some(f) = found {
            let earlier = verify_signatures(&items, &jobs);
            let f = first(earlier, Some(f)).map(|f| f.failure);
            return Err(f.map_or_else(|| AuditError::Unreadable("internal: lost a failure".into()), AuditError::Failed));
        }
        pending = Some((items, jobs));
        progress.inc(count);
    }
    if let Some(f) = pending.as_ref().and_then(|(items, jobs)| verify_signatures(items, jobs)) {
        return Err(f.failure.into());
    }
    Ok(Replayed {
        state: replay.fold.into_state(),
        tree: replay.tree,
        head: replay.head,
        signatures: replay.signatures,
    })
}

/// Checks 4 and 5 after the pass: the Merkle root against the signed checkpoint, and
/// consistency with the checkpoint saved by the previous run.
pub(crate) fn check_checkpoints(
    tree: &MemoryTree,
    checkpoint: &SignedCheckpoint,
    saved: Option<&SignedCheckpoint>,
) -> Result<(), Failure> {
    let n = tree.size();
    let cp = &checkpoint.checkpoint;
    if let Some(saved) = saved {
        let old = &saved.checkpoint;
        if old.size > n {
            return Err(Failure::at(
                FailureKind::Consistency,
                n,
                format!(
                    "the log has {n} records, but this auditor verified a checkpoint of {} records before: \
                     the log was truncated or its history rewritten",
                    old.size
                ),
            ));
        }
    }
    if cp.size > n {
        return Err(Failure::at(
            FailureKind::Checkpoint,
            n,
            format!("the checkpoint commits to {} records, but only {n} were read", cp.size),
        ));
    }
    let root = tree.root_at(cp.size).map_err(|e| Failure::new(FailureKind::Checkpoint, None, e.to_string()))?;
    if root != cp.root {
        return Err(Failure::new(
            FailureKind::Checkpoint,
            None,
            format!(
                "the Merkle root of the first {} records is {}, but the checkpoint signed by the log key says {}",
                cp.size,
                b64::encode(root),
                b64::encode(cp.root)
            ),
        ));
    }
    if let Some(saved) = saved {
        let old = &saved.checkpoint;
        if old.size > cp.size {
            return Err(Failure::new(
                FailureKind::Consistency,
                None,
                format!(
                    "the checkpoint has {} records, fewer than the {} of the checkpoint saved before: \
                     the log key signed two inconsistent checkpoints",
                    cp.size, old.size
                ),
            ));
        }
        let old_root =
            tree.root_at(old.size).map_err(|e| Failure::new(FailureKind::Consistency, None, e.to_string()))?;
        if old_root != old.root {
            return Err(Failure::new(
                FailureKind::Consistency,
                None,
                format!(
                    "the first {} records hash to {}, but the checkpoint saved before says {}: history was rewritten",
                    old.size,
                    b64::encode(old_root),
                    b64::encode(old.root)
                ),
            ));
        }
    }
    Ok(())
}

/// What `grantline verify` proved, with the figures it prints.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub events: u64,
    pub signatures: u64,
    pub actors: u64,
    pub grants: u64,
    pub checkpoint_size: u64,
    pub root: Hash,
    /// Records read after the checkpoint's size: checked, but not covered by the checkpoint.
    pub uncovered: u64,
    /// The size of the checkpoint of the previous run, when there was one.
    pub previous_size: Option<u64>,
    pub elapsed_ms: u64,
}

impl Report {
    pub fn events_per_s(&self) -> f64 {
        self.events as f64 * 1000.0 / (self.elapsed_ms.max(1) as f64)
    }

    /// The plain summary.
    pub fn render(&self) -> String {
        let mut out = format!(
            "verified: {} events, {} signatures, {} actors, {} grants in {:.3} s ({:.0} events/s)\n\
             checkpoint: {} records, root {}\n",
            self.events,
            self.signatures,
            self.actors,
            self.grants,
            self.elapsed_ms as f64 / 1000.0,
            self.events_per_s(),
            self.checkpoint_size,
            b64::encode(self.root),
        );
        match self.previous_size {
            Some(size) => out.push_str(&format!("consistent with the previous checkpoint ({size} records)\n")),
            None => out.push_str("no previous checkpoint to compare with (first run)\n"),
        }
        if self.uncovered > 0 {
            out.push_str(&format!(
                "note: {} records after the checkpoint were checked but are not covered by it\n",
                self.uncovered
            ));
        }
        out
    }
}

/// A progress bar on stderr when it is a terminal and `wanted`; hidden otherwise.
pub(crate) fn progress_bar(len: Option<u64>, wanted: bool) -> ProgressBar {
    if !wanted || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match len {
        Some(len) => ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr()),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
    };
    let template = if len.is_some() {
        "{spinner} verifying [{bar:40}] {pos}/{len} records ({per_sec}, eta {eta})"
    } else {
        "{spinner} verifying {pos} records ({per_sec})"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Everything `grantline verify` needs besides the records.
pub struct VerifyJob<'a> {
    pub log_key: &'a VerifierKey,
    /// The checkpoint to verify the Merkle root against (already opened with the log key).
    pub checkpoint: &'a SignedCheckpoint,
    /// `--state FILE`: compared with, and updated after full success.
    pub state_path: Option<&'a Path>,
    pub progress: bool,
}

/// Runs all six checks over `source`; on success saves the state file and returns the report.
pub fn verify(source: &mut dyn RecordSource, job: &VerifyJob<'_>) -> Result<(Report, Replayed), AuditError> {
    let started = Instant::now();
    let saved = match job.state_path {
        Some(path) => statefile::load(path, job.log_key)?,
        None => None,
    };
    let bar = progress_bar(source.len_hint(), job.progress);
    let replayed = replay_source(source, job.log_key, &bar);
    bar.finish_and_clear();
    let replayed = replayed?;
    check_checkpoints(&replayed.tree, job.checkpoint, saved.as_ref())?;
    if let Some(path) = job.state_path {
        statefile::save(path, &job.checkpoint.note)?;
    }
    let stats = replayed.state.stats(crate::now_ms());
    let cp = &job.checkpoint.checkpoint;
    let report = Report {
        events: replayed.size(),
        signatures: replayed.signatures,
        actors: stats.actors,
        grants: stats.grants,
        checkpoint_size: cp.size,
        root: cp.root,
        uncovered: replayed.size() - cp.size,
        previous_size: saved.map(|s| s.checkpoint.size),
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    Ok((report, replayed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::source::MemorySource;
    use crate::audit::testlog::{relink, TestLog};
    use serde_json::json;

    fn run(raws: Vec<Raw>, log: &TestLog, window: usize) -> Result<Replayed, AuditError> {
        replay_in_windows(&mut MemorySource::new(raws), &log.log_key.verifier(), &ProgressBar::hidden(), window)
    }

    fn leaves(records: &[Record]) -> Vec<Raw> {
        records.iter().map(|r| Raw::Leaf(r.leaf().to_vec())).collect()
    }

    fn failure(result: Result<Replayed, AuditError>) -> Failure {
        match result {
            Err(AuditError::Failed(f)) => f,
            Err(e) => panic!("expected a failure, got {e}"),
            Ok(r) => panic!("expected a failure, verified {} records", r.size()),
        }
    }

    /// The record with one bit of its first signature flipped.
    fn bad_signature(rec: &Record) -> Record {
        let mut env = Envelope::parse(rec.envelope()).unwrap();
        env.signatures[0].sig[10] ^= 0x01;
        Record::new(rec.seq, rec.prev, rec.received_at_ms, &env.canonical_json()).unwrap()
    }

    /// An envelope, signed by `keys`, that the server never accepted.
    fn forged(
        log: &mut TestLog,
        kind: &str,
        actor: &str,
        data: serde_json::Value,
        keys: &[&ledger::keys::SigningKey],
    ) -> Vec<u8> {
        let st = log.statement(kind, actor, data);
        Envelope::sign(st.to_payload(), keys).canonical_json()
    }

    #[test]
    fn an_untampered_log_verifies_in_any_window_size() {
        let (log, _) = TestLog::typical(5);
        for window in [1, 3, 7, WINDOW_RECORDS] {
            let replayed = run(log.leaves(), &log, window).unwrap();
            assert_eq!(replayed.size(), log.size());
            assert_eq!(replayed.head, log.records.last().unwrap().chain_hash());
            assert_eq!(replayed.tree.root(), log.checkpoint().checkpoint.root);
            assert_eq!(replayed.state.stats(TestLog::new().now_ms).grants, 5);
        }
        // Export lines carry the same records.
        assert_eq!(run(log.lines(), &log, 4).unwrap().size(), log.size());
    }

    #[test]
    fn a_flipped_byte_in_a_signature_names_its_seq() {
        let (log, _) = TestLog::typical(3);
        for seq in [0usize, 6, log.records.len() - 1] {
            let mut records = log.records.clone();
            records[seq] = bad_signature(&records[seq]);
            for window in [2, 5, 100] {
                let f = failure(run(leaves(&records), &log, window));
                assert_eq!((f.kind, f.seq), (FailureKind::Signature, Some(seq as u64)), "{f}");
            }
        }
    }

    #[test]
    fn a_flipped_byte_in_the_leaf_payload_is_a_signature_failure() {
        let (log, _) = TestLog::typical(2);
        let seq = 5;
        let mut leaf = log.records[seq].leaf().to_vec();
        let at = ledger::record::LEAF_HEADER_BYTES
            + r#"{"payloadType":"application/vnd.grantline.event+json","payload":""#.len()
            + 20;
        leaf[at] = if leaf[at] == b'A' { b'B' } else { b'A' };
        let mut raws = log.leaves();
        raws[seq] = Raw::Leaf(leaf);
        let f = failure(run(raws, &log, 4));
        assert_eq!((f.kind, f.seq), (FailureKind::Signature, Some(seq as u64)), "{f}");
    }

    #[test]
    fn swapped_records_break_the_chain_at_the_first() {
        let (log, _) = TestLog::typical(2);
        let mut records = log.records.clone();
        records.swap(4, 5);
        let f = failure(run(leaves(&records), &log, 3));
        assert_eq!((f.kind, f.seq), (FailureKind::Chain, Some(4)), "{f}");
        // Renumbered and relinked, the swap is still caught: by the replay.
        relink(&mut records, 0);
        let f = failure(run(leaves(&records), &log, 3));
        assert_eq!(f.seq, Some(4), "{f}");
    }

    #[test]
    fn a_changed_received_at_is_caught_by_the_next_link_or_the_fields() {
        let (log, _) = TestLog::typical(2);
        let seq = 6;
        let r = &log.records[seq];
        let changed = Record::new(r.seq, r.prev, r.received_at_ms + 1, r.envelope()).unwrap();
        let mut records = log.records.clone();
        records[seq] = changed.clone();
        let f = failure(run(leaves(&records), &log, 4));
        assert_eq!((f.kind, f.seq), (FailureKind::Chain, Some(seq as u64 + 1)), "{f}");
        // In an export the record's own fields still say the old value.
        let mut raws = log.lines();
        let mut rj = RecordJson::from_record(r).unwrap();
        rj.leaf = b64::encode(changed.leaf());
        raws[seq] = Raw::Json(Box::new(rj));
        let f = failure(run(raws, &log, 4));
        assert_eq!((f.kind, f.seq), (FailureKind::Chain, Some(seq as u64)), "{f}");
        assert!(f.reason.contains("received_at_ms"), "{f}");
    }

    #[test]
    fn a_gap_or_garbage_breaks_the_chain() {
        let (log, _) = TestLog::typical(1);
        let mut raws = log.leaves();
        raws.remove(3);
        let f = failure(run(raws, &log, 2));
        assert_eq!((f.kind, f.seq), (FailureKind::Chain, Some(3)), "{f}");
        let mut raws = log.lines();
        raws[2] = Raw::Line { number: 3, text: b"{\"seq\": 2}".to_vec() };
        let f = failure(run(raws, &log, 2));
        assert_eq!((f.kind, f.seq), (FailureKind::Chain, Some(2)), "{f}");
    }

    #[test]
    fn a_record_signed_with_a_revoked_key_is_a_policy_failure() {
        let (mut log, keys) = TestLog::typical(1);
        let admin = log.admin.clone();
        log.event(
            "access.requested",
            "carol",
            json!({"request": "late", "project": "late-feedstock", "resource": "gpu-large",
                   "justification": "x", "pull_request": false}),
            &[&keys.carol],
        );
        log.event(
            "key.revoked",
            "admin",
            json!({"actor": "alice", "key": keys.alice.verifier().to_string()}),
            &[&admin],
        );
        let env = forged(&mut log, "request.approved", "alice", json!({"request": "late"}), &[&keys.alice]);
        let seq = log.push_envelope(&env).seq;
        let f = failure(run(log.leaves(), &log, 4));
        assert_eq!((f.kind, f.seq), (FailureKind::Policy, Some(seq)), "{f}");
        assert!(f.reason.contains("revoked"), "{f}");
        // Had the signature itself been forged too, that is what is reported.
        let mut records = log.records.clone();
        let last = records.len() - 1;
        records[last] = bad_signature(&records[last]);
        let f = failure(run(leaves(&records), &log, 4));
        assert_eq!((f.kind, f.seq), (FailureKind::Signature, Some(seq)), "{f}");
    }

    #[test]
    fn a_grant_without_quorum_by_an_unauthorized_key_is_a_policy_failure() {
        let (mut log, keys) = TestLog::typical(2);
        let env = forged(
            &mut log,
            "grant.issued",
            "carol",
            json!({"grant": "g-forged", "project": "evil-feedstock", "resource": "gpu-large", "pull_request": true}),
            &[&keys.carol],
        );
        // Inserted in the middle, the rest renumbered and relinked: only the policy is wrong.
        let inserted = Record::new(0, [0; 32], log.now_ms, &env).unwrap();
        let mut records = log.records.clone();
        records.insert(7, inserted);
        relink(&mut records, 7);
        for window in [3, 8, 100] {
            let f = failure(run(leaves(&records), &log, window));
            assert_eq!((f.kind, f.seq), (FailureKind::Policy, Some(7)), "{f}");
        }
    }

    #[test]
    fn an_unknown_signer_is_a_policy_failure() {
        let (mut log, _) = TestLog::typical(1);
        let stranger = ledger::keys::SigningKey::generate("alice").unwrap();
        let env = forged(&mut log, "request.approved", "alice", json!({"request": "req-0"}), &[&stranger]);
        let seq = log.push_envelope(&env).seq;
        let f = failure(run(log.leaves(), &log, 4));
        assert_eq!((f.kind, f.seq), (FailureKind::Policy, Some(seq)), "{f}");
    }

    #[test]
    fn the_first_bad_seq_wins_across_windows_and_stages() {
        let (mut log, keys) = TestLog::typical(3);
        let env = forged(
            &mut log,
            "grant.issued",
            "carol",
            json!({"grant": "g-x", "project": "x", "resource": "gpu-large", "pull_request": false}),
            &[&keys.carol],
        );
        log.push_envelope(&env);
        let mut records = log.records.clone();
        records[3] = bad_signature(&records[3]);
        relink(&mut records, 3);
        for window in [1, 2, 4, 5, 100] {
            let f = failure(run(leaves(&records), &log, window));
            assert_eq!((f.kind, f.seq), (FailureKind::Signature, Some(3)), "window {window}: {f}");
        }
    }

    #[test]
    fn another_logs_genesis_is_refused() {
        let (log, _) = TestLog::typical(1);
        let other = TestLog::new();
        let f = failure(run(log.leaves(), &other, 4));
        assert_eq!((f.kind, f.seq), (FailureKind::Checkpoint, Some(0)), "{f}");
    }

    fn verify_with(
        log: &TestLog,
        raws: Vec<Raw>,
        cp: &SignedCheckpoint,
        state: Option<&Path>,
    ) -> Result<Report, AuditError> {
        let key = log.log_key.verifier();
        let job = VerifyJob { log_key: &key, checkpoint: cp, state_path: state, progress: false };
        verify(&mut MemorySource::new(raws), &job).map(|(report, _)| report)
    }

    #[test]
    fn the_root_must_match_the_signed_checkpoint() {
        let (log, _) = TestLog::typical(2);
        let report = verify_with(&log, log.leaves(), &log.checkpoint(), None).unwrap();
        assert_eq!((report.events, report.grants, report.uncovered), (log.size(), 2, 0));
        // An older checkpoint covers a prefix.
        let report = verify_with(&log, log.leaves(), &log.checkpoint_at(5), None).unwrap();
        assert_eq!(report.uncovered, log.size() - 5);
        // A checkpoint over other leaves, properly signed.
        let mut forged = log.checkpoint();
        forged.checkpoint.root[0] ^= 1;
        forged.note = forged.checkpoint.sign(&log.log_key).unwrap();
        let f = verify_with(&log, log.leaves(), &forged, None).unwrap_err();
        assert_eq!(f.failure().map(|f| f.kind), Some(FailureKind::Checkpoint), "{f}");
        // More records than present.
        let mut raws = log.leaves();
        raws.pop();
        let f = verify_with(&log, raws, &log.checkpoint(), None).unwrap_err();
        assert_eq!(f.failure().map(|f| (f.kind, f.seq)), Some((FailureKind::Checkpoint, Some(log.size() - 1))), "{f}");
    }

    #[test]
    fn the_state_file_catches_a_rewritten_history_and_is_updated_only_on_success() {
        let (mut log, keys) = TestLog::typical(2);
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("auditor.json");
        let full = log.checkpoint();
        verify_with(&log, log.leaves(), &full, Some(&state)).unwrap();
        assert_eq!(statefile::load(&state, &log.log_key.verifier()).unwrap().unwrap(), full);

        // Truncated, with an honest older checkpoint or the full one: the log shrank.
        let n = log.size() as usize;
        for cp in [log.checkpoint_at(n as u64 - 3), full.clone()] {
            let f = verify_with(&log, log.leaves()[..n - 3].to_vec(), &cp, Some(&state)).unwrap_err();
            assert_eq!(
                f.failure().map(|f| (f.kind, f.seq)),
                Some((FailureKind::Consistency, Some(n as u64 - 3))),
                "{f}"
            );
        }
        assert_eq!(statefile::load(&state, &log.log_key.verifier()).unwrap().unwrap(), full);

        // A rewritten history: the last record replaced by another valid event, checkpointed
        // anew with the log key. Every record passes; only the saved checkpoint catches it.
        let mut rewritten = log.records[..n - 1].to_vec();
        let env = forged(
            &mut log,
            "access.requested",
            "carol",
            json!({"request": "other", "project": "other-feedstock", "resource": "gpu-large",
                   "justification": "x", "pull_request": false}),
            &[&keys.carol],
        );
        rewritten.push(Record::new(0, [0; 32], log.now_ms, &env).unwrap());
        relink(&mut rewritten, n - 1);
        let mut tree = MemoryTree::new();
        rewritten.iter().for_each(|r| tree.push(r.leaf_hash()));
        let cp = ledger::checkpoint::Checkpoint {
            origin: full.checkpoint.origin.clone(),
            size: n as u64,
            root: tree.root(),
        };
        let cp = SignedCheckpoint::open(&cp.sign(&log.log_key).unwrap(), &log.log_key.verifier()).unwrap();
        let f = verify_with(&log, leaves(&rewritten), &cp, Some(&state)).unwrap_err();
        assert_eq!(f.failure().map(|f| f.kind), Some(FailureKind::Consistency), "{f}");
        assert_eq!(statefile::load(&state, &log.log_key.verifier()).unwrap().unwrap(), full);

        // Grown honestly: accepted, and the state moves on.
        log.event(
            "access.requested",
            "carol",
            json!({"request": "more", "project": "more-feedstock", "resource": "gpu-large",
                   "justification": "x", "pull_request": false}),
            &[&keys.carol],
        );
        let grown = log.checkpoint();
        let report = verify_with(&log, log.leaves(), &grown, Some(&state)).unwrap();
        assert_eq!(report.previous_size, Some(n as u64));
        assert_eq!(statefile::load(&state, &log.log_key.verifier()).unwrap().unwrap(), grown);
    }
}
