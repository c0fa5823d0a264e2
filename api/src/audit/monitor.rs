//! `grantline monitor`: the watchdog a community runs outside the server. It follows the SSE
//! stream of records and polls the checkpoint; every new checkpoint must be consistent with
//! the last one (RFC 9162 consistency proof) and must include the record the stream showed at
//! its last seq; every streamed record must link to the one before. The first violation ends
//! the monitor with a distinct exit code.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ledger::b64;
use ledger::checkpoint::{self, Acceptance, CheckpointFork};
use ledger::keys::VerifierKey;
use ledger::merkle;
use ledger::Hash;

use super::archive::open_checkpoint;
use super::engine::{leaf_of, record_fields_agree};
use super::statefile::{self, SignedCheckpoint};
use super::{AuditError, Failure, FailureKind, Witnesses};
use crate::client::Client;
use crate::json::{hashes_from_b64, RecordJson};
use crate::limits::EXPORT_LINE_BYTES_MAX;
use crate::limits::{RECENT_RECORDS_MAX, STREAM_QUEUE_RECORDS_MAX};

/// How often the checkpoint is polled, by default.
pub(crate) const POLL_MS_DEFAULT: u64 = 1000;

#[derive(Debug, Clone)]
pub(crate) struct MonitorOptions {
    pub poll_ms: u64,
    /// Check the current checkpoint and the records up to it, then exit.
    pub once: bool,
    /// Stop (successfully) after this long.
    pub duration_ms: Option<u64>,
    /// Witnesses whose quorum every accepted checkpoint must carry.
    pub witnesses: Option<Witnesses>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct MonitorReport {
    pub checkpoints: u64,
    pub records: u64,
    pub size: u64,
}

struct Monitor<'a> {
    server: &'a Client,
    log_key: &'a VerifierKey,
    state_path: &'a Path,
    witnesses: Option<&'a Witnesses>,
    last: Option<SignedCheckpoint>,
    next_seq: u64,
    head: Hash,
    recent: VecDeque<(u64, Hash)>,
    /// Chain hashes of records proven in a checkpoint, not streamed yet.
    expected: BTreeMap<u64, Hash>,
    report: MonitorReport,
}

fn failed(kind: FailureKind, seq: Option<u64>, why: impl Into<String>) -> AuditError {
    AuditError::Failed(Failure::new(kind, seq, why))
}

impl Monitor<'_> {
    /// Verifies a new checkpoint against the last one and saves it.
    fn accept(&mut self, note: &str) -> Result<(), AuditError> {
        let new = open_checkpoint(note, self.log_key, "the server's checkpoint")?;
        let cp = &new.checkpoint;
        if let Some(witnesses) = self.witnesses {
            witnesses.require(note, cp.size, "the server's checkpoint")?;
        }
        if let Some(last) = &self.last {
            let old = &last.checkpoint;
            // The acceptance rule is the ledger's; the proof is fetched only when it needs one.
            let mut hashes = Vec::new();
            if checkpoint::needs_consistency_proof(old, cp) {
                let proof = self.server.consistency(old.size, cp.size)?;
                hashes = hashes_from_b64(&proof.hashes)
                    .ok_or_else(|| failed(FailureKind::Consistency, None, "a consistency proof hash is malformed"))?;
                if proof.from != old.size || proof.to != cp.size {
                    return Err(failed(FailureKind::Consistency, None, "the server answered a proof for other sizes"));
                }
            }
            match checkpoint::accept_newer(old, cp, &hashes) {
                Ok(Acceptance::Unchanged) => return Ok(()),
                Ok(Acceptance::Extended) => {}
                Err(CheckpointFork::Shrunk { .. }) => {
                    return Err(failed(
                        FailureKind::Consistency,
                        Some(cp.size),
                        format!(
                            "the log key signed a checkpoint of {} records after one of {}: the log shrank",
                            cp.size, old.size
                        ),
                    ));
                }
                Err(CheckpointFork::Forked { .. }) => {
                    return Err(failed(
                        FailureKind::Consistency,
                        None,
                        format!(
                            "the log key signed two inconsistent checkpoints of {} records: roots {} and {}",
                            cp.size,
                            b64::encode(old.root),
                            b64::encode(cp.root)
                        ),
                    ));
                }
                Err(CheckpointFork::Inconsistent { source: e, .. }) => {
                    return Err(failed(
                        FailureKind::Consistency,
                        None,
                        format!(
                            "the log key signed two inconsistent checkpoints: {} records (root {}) and {} records \
                             (root {}): {e}",
                            old.size,
                            b64::encode(old.root),
                            cp.size,
                            b64::encode(cp.root)
                        ),
                    ));
                }
                // Both were opened with the same log key, so they name the same origin.
                Err(e @ CheckpointFork::OtherLog { .. }) => {
                    return Err(failed(FailureKind::Consistency, None, e.to_string()));
                }
            }
        }
        self.bind(&new)?;
        statefile::save(self.state_path, &new.note)?;
        self.report.checkpoints += 1;
        self.report.size = cp.size;
        self.last = Some(new);
        Ok(())
    }

    /// Fetches the checkpoint's last record and proves it is in the tree; returns its chain
    /// hash. Through the chain, that record commits to every record before it.
    fn prove_last(&self, cp: &SignedCheckpoint) -> Result<Option<(u64, Hash)>, AuditError> {
        let size = cp.checkpoint.size;
        if size == 0 {
            return Ok(None);
        }
        let seq = size - 1;
        let rj = self.server.event(seq)?.ok_or_else(|| {
            failed(
                FailureKind::Consistency,
                Some(seq),
                format!("the server has no record {seq} but its checkpoint does"),
            )
        })?;
        let rec = check_record(&rj, seq)?;
        let proof = self.server.inclusion(seq, size)?;
        let hashes = hashes_from_b64(&proof.hashes)
            .ok_or_else(|| failed(FailureKind::Checkpoint, Some(seq), "an inclusion proof hash is malformed"))?;
        merkle::verify_inclusion(seq, size, &rec.leaf_hash(), &hashes, &cp.checkpoint.root).map_err(|e| {
            failed(
                FailureKind::Checkpoint,
                Some(seq),
                format!("the record served at seq {seq} is not in the checkpoint of {size} records: {e}"),
            )
        })?;
        Ok(Some((seq, rec.chain_hash())))
    }

    /// Records that the checkpoint's last record must match what the stream shows.
    fn bind(&mut self, cp: &SignedCheckpoint) -> Result<(), AuditError> {
        let Some((seq, chain_hash)) = self.prove_last(cp)? else {
            return Ok(());
        };
        if seq >= self.next_seq {
            self.expected.insert(seq, chain_hash);
            return Ok(());
        }
        let seen = if seq + 1 == self.next_seq {
            Some(self.head)
        } else {
            self.recent.iter().find(|(s, _)| *s == seq).map(|(_, h)| *h)
        };
        match seen {
            Some(h) if h != chain_hash => Err(failed(
                FailureKind::Consistency,
                Some(seq),
                "the record the checkpoint includes differs from the one the stream showed",
            )),
            _ => Ok(()),
        }
    }

    /// Starts the chain at the saved checkpoint's last record (proven in it).
    fn anchor(&mut self, saved: &SignedCheckpoint) -> Result<(), AuditError> {
        if let Some((seq, chain_hash)) = self.prove_last(saved)? {
            self.next_seq = seq + 1;
            self.head = chain_hash;
        }
        Ok(())
    }

    fn on_record(&mut self, rj: &RecordJson) -> Result<(), AuditError> {
        let seq = self.next_seq;
        let rec = check_record(rj, seq)?;
        if rec.prev != self.head {
            return Err(failed(
                FailureKind::Chain,
                Some(seq),
                format!("prev is not the chain hash of seq {}", seq.wrapping_sub(1)),
            ));
        }
        let chain_hash = rec.chain_hash();
        if let Some(want) = self.expected.remove(&seq) {
            if want != chain_hash {
                return Err(failed(
                    FailureKind::Consistency,
                    Some(seq),
                    "the streamed record differs from the one the checkpoint includes",
                ));
            }
        }
        self.head = chain_hash;
        self.next_seq += 1;
        self.report.records += 1;
        if self.recent.len() == RECENT_RECORDS_MAX {
            self.recent.pop_front();
        }
        self.recent.push_back((seq, chain_hash));
        Ok(())
    }
}

/// Decodes a streamed record and checks it is seq `seq` and agrees with its leaf.
fn check_record(rj: &RecordJson, seq: u64) -> Result<ledger::record::Record, AuditError> {
    let rec =
        leaf_of(rj).map_err(|e| failed(FailureKind::Chain, Some(seq), format!("the record does not decode: {e}")))?;
    if rec.seq != seq {
        return Err(failed(
            FailureKind::Chain,
            Some(seq),
            format!("the server sent the record of seq {} where seq {seq} belongs", rec.seq),
        ));
    }
    record_fields_agree(rj, &rec)
        .map_err(|e| failed(FailureKind::Chain, Some(seq), format!("the record disagrees with its leaf: {e}")))?;
    Ok(rec)
}

/// Reads `data:` lines of an SSE stream into records, on its own thread.
fn spawn_stream_reader(body: impl Read + Send + 'static) -> mpsc::Receiver<Result<RecordJson, String>> {
    let (tx, rx) = mpsc::sync_channel(STREAM_QUEUE_RECORDS_MAX);
    std::thread::spawn(move || {
        let mut reader = BufReader::new(body);
        let mut data = Vec::new();
        loop {
            let mut line = Vec::new();
            let n = match (&mut reader).take(EXPORT_LINE_BYTES_MAX as u64 + 1).read_until(b'\n', &mut line) {
                Ok(n) => n,
                Err(e) => {
                    let _ = tx.send(Err(format!("the event stream failed: {e}")));
                    return;
                }
            };
            if n == 0 {
                let _ = tx.send(Err("the server closed the event stream".into()));
                return;
            }
            if line.len() > EXPORT_LINE_BYTES_MAX {
                let _ = tx.send(Err("the event stream sent an overlong line".into()));
                return;
            }
            while matches!(line.last(), Some(b'\n' | b'\r')) {
                line.pop();
            }
            if line.is_empty() {
                if !data.is_empty() {
                    let item = serde_json::from_slice::<RecordJson>(&data)
                        .map_err(|e| format!("the event stream sent something that is not a record: {e}"));
                    data.clear();
                    if tx.send(item).is_err() {
                        return;
                    }
                }
                continue;
            }
            if let Some(rest) = line.strip_prefix(b"data:") {
                let rest = rest.strip_prefix(b" ").unwrap_or(rest);
                if !data.is_empty() {
                    data.push(b'\n');
                }
                data.extend_from_slice(rest);
            }
            // Comments (keep-alives), `event:`, `id:` and `retry:` lines carry no record.
        }
    });
    rx
}

/// Runs the monitor until it fails, or until `--once`/`--duration-ms` says stop.
pub(crate) fn run(
    server: &Client,
    log_key: &VerifierKey,
    state_path: &Path,
    opts: &MonitorOptions,
    say: &mut dyn FnMut(&str),
) -> Result<MonitorReport, AuditError> {
    let started = Instant::now();
    let saved = statefile::load(state_path, log_key)?;
    let mut m = Monitor {
        server,
        log_key,
        state_path,
        witnesses: opts.witnesses.as_ref(),
        last: saved.clone(),
        next_seq: 0,
        head: [0; 32],
        recent: VecDeque::new(),
        expected: BTreeMap::new(),
        report: MonitorReport::default(),
    };
    m.report.size = saved.as_ref().map_or(0, |s| s.checkpoint.size);
    // The new checkpoint first: an inconsistent log is reported as such, before anything else.
    m.accept(&server.checkpoint()?)?;
    if let Some(saved) = &saved {
        m.anchor(saved)?;
    }
    say(&format!("monitor: checkpoint of {} records is consistent; following from seq {}", m.report.size, m.next_seq));

    let target = |m: &Monitor| m.last.as_ref().map_or(0, |l| l.checkpoint.size);
    if opts.once && m.next_seq >= target(&m) {
        return Ok(m.report);
    }
    let records = spawn_stream_reader(server.stream(m.next_seq)?);
    let poll = Duration::from_millis(opts.poll_ms.max(1));
    let deadline = opts.duration_ms.map(|ms| started + Duration::from_millis(ms));
    let mut next_poll = Instant::now() + poll;
    loop {
        if opts.once && m.next_seq >= target(&m) {
            return Ok(m.report);
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Ok(m.report);
        }
        if !opts.once && now >= next_poll {
            let size_before = m.report.size;
            m.accept(&server.checkpoint()?)?;
            if m.report.size != size_before {
                say(&format!("monitor: checkpoint of {} records is consistent", m.report.size));
            }
            next_poll = now + poll;
        }
        let mut wait = next_poll.saturating_duration_since(now);
        if let Some(d) = deadline {
            wait = wait.min(d.saturating_duration_since(now));
        }
        match records.recv_timeout(wait.max(Duration::from_millis(1))) {
            Ok(Ok(rj)) => m.on_record(&rj)?,
            Ok(Err(why)) => return Err(AuditError::Unreadable(why)),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(AuditError::Unreadable("the event stream ended".into()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_data_lines_become_records_and_garbage_is_reported() {
        let rec = ledger::record::Record::new(0, [0; 32], 1, b"{}").unwrap();
        let rj = RecordJson {
            seq: 0,
            received_at_ms: 1,
            prev: b64::encode([0u8; 32]),
            chain_hash: b64::encode(rec.chain_hash()),
            leaf_hash: b64::encode(rec.leaf_hash()),
            leaf: b64::encode(rec.leaf()),
            envelope: serde_json::json!({}),
            statement: serde_json::json!({}),
        };
        let body =
            format!(": keep-alive\n\ndata: {}\n\nevent: x\ndata: nonsense\n\n", serde_json::to_string(&rj).unwrap());
        let rx = spawn_stream_reader(std::io::Cursor::new(body.into_bytes()));
        assert_eq!(rx.recv().unwrap().unwrap(), rj);
        assert!(rx.recv().unwrap().unwrap_err().contains("not a record"));
        assert!(rx.recv().unwrap().unwrap_err().contains("closed"));
    }
}
