//! The single writer. It takes verified envelopes from a bounded queue, batches them, checks
//! each against a working copy of the state, appends the batch with one durable flush (group
//! commit), publishes the new snapshot, answers the callers, feeds the SSE subscribers and
//! runs the automation through the same path.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::http::StatusCode;
use ledger::checkpoint::Checkpoint;
use ledger::dsse::Envelope;
use ledger::keys::{SigningKey, VerifierKey};
use ledger::record::Record;
use ledger::statement::Statement;
use ledger::store::{AppendOutcome, Entry, Store};
use projector::{Event, State};
use tokio::sync::{broadcast, oneshot};

use super::fault::Fault;
use super::metrics::Metrics;
use super::snapshot::Snapshot;
use crate::json::RecordJson;
use crate::limits::{AUTOMATION_ROUNDS_MAX, AUTOMATION_TICK_MS, SEQUENCER_BATCH_MAX};
use crate::problem::Problem;

// One sequencer batch is one store batch.
const _: () = assert!(SEQUENCER_BATCH_MAX <= ledger::store::BATCH_ENTRIES_MAX);

/// A verified envelope on its way to the log.
pub struct Submission {
    pub statement: Statement,
    /// The canonical envelope JSON (what the leaf holds).
    pub canonical: Vec<u8>,
    /// The keyids of the envelope's signatures with the keys that verified them.
    pub signers: Vec<(String, VerifierKey)>,
    /// `None` for automation statements.
    pub reply: Option<oneshot::Sender<Outcome>>,
}

/// The sequencer's answer to one submission.
pub enum Outcome {
    Appended { record: Record, snapshot: Arc<Snapshot> },
    Duplicate { record: Record, snapshot: Arc<Snapshot> },
    Rejected(Problem),
}

/// New records for SSE subscribers: (seq, record JSON) in seq order.
pub type LiveBatch = Arc<Vec<(u64, String)>>;

/// The sending side of the queue, as the handlers see it.
#[derive(Clone)]
pub struct Queue {
    tx: SyncSender<Submission>,
    metrics: Arc<Metrics>,
}

pub enum QueueError {
    Full,
    Closed,
}

impl Queue {
    pub fn try_send(&self, sub: Submission) -> Result<(), QueueError> {
        self.metrics.queue_depth.fetch_add(1, Ordering::Relaxed);
        self.tx.try_send(sub).map_err(|e| {
            self.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
            match e {
                TrySendError::Full(_) => QueueError::Full,
                TrySendError::Disconnected(_) => QueueError::Closed,
            }
        })
    }
}

pub struct Sequencer {
    store: Store,
    log_key: SigningKey,
    automation_key: SigningKey,
    automation_signer: (String, VerifierKey),
    origin: String,
    state: State,
    size: u64,
    last_received_at_ms: i64,
    /// The store has records the published snapshot lacks (publishing failed once).
    publish_pending: bool,
    published: Arc<ArcSwap<Snapshot>>,
    metrics: Arc<Metrics>,
    live: broadcast::Sender<LiveBatch>,
    stopping: Arc<AtomicBool>,
    /// Test-only fault injection (`GRANTLINE_FAULT`); `Fault::None` otherwise.
    fault: Fault,
    /// Projection snapshots, so a restart replays only the records after the last one.
    snapshots: crate::state_snapshot::SnapshotWriter,
}

/// A running sequencer thread.
pub struct SequencerHandle {
    stopping: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl SequencerHandle {
    /// Finishes what is queued, then stops.
    pub fn stop(self) {
        self.stopping.store(true, Ordering::SeqCst);
        if self.thread.join().is_err() {
            tracing::error!("the sequencer thread panicked");
        }
    }
}

pub struct Started {
    pub queue: Queue,
    pub published: Arc<ArcSwap<Snapshot>>,
    pub handle: SequencerHandle,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot publish the initial snapshot: {0}")]
    Publish(String),
    #[error("the genesis record names no origin, log key or automation key")]
    NoGenesis,
    #[error("cannot start the sequencer thread: {0}")]
    Thread(String),
    #[error("{0}")]
    Fault(String),
}

/// Publishes the snapshot of the replayed state and starts the sequencer thread.
pub fn start(
    opened: crate::datadir::Opened,
    queue_depth: usize,
    metrics: Arc<Metrics>,
    live: broadcast::Sender<LiveBatch>,
) -> Result<Started, StartError> {
    let crate::datadir::Opened { store, state, log_key, automation_key, replay_warnings } = opened;
    let fault = Fault::from_env().map_err(StartError::Fault)?;
    if fault != Fault::None {
        tracing::warn!("fault injection is active: {fault:?}");
    }
    let origin = state.origin().ok_or(StartError::NoGenesis)?.to_string();
    let size = store.size();
    debug_assert_eq!(state.size(), size);
    let automation_signer = (automation_key.keyid(), automation_key.verifier());
    let snapshot =
        make_snapshot(&store, &log_key, &automation_key, &origin, state.clone(), size).map_err(StartError::Publish)?;
    let published = Arc::new(ArcSwap::from_pointee(snapshot));
    let last_received_at_ms = match size.checked_sub(1).map(|s| store.get(s)) {
        Some(Ok(Some(rec))) => rec.received_at_ms,
        _ => 0,
    };
    let stopping = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::sync_channel(queue_depth.max(1));
    let snapshots = crate::state_snapshot::SnapshotWriter::new(store.clone(), size, replay_warnings);
    let seq = Sequencer {
        store,
        log_key,
        automation_key,
        automation_signer,
        origin,
        state,
        size,
        last_received_at_ms,
        publish_pending: false,
        published: published.clone(),
        metrics: metrics.clone(),
        live,
        stopping: stopping.clone(),
        fault,
        snapshots,
    };
    let thread = std::thread::Builder::new()
        .name("grantline-sequencer".into())
        .spawn(move || seq.run(rx))
        .map_err(|e| StartError::Thread(e.to_string()))?;
    Ok(Started { queue: Queue { tx, metrics }, published, handle: SequencerHandle { stopping, thread } })
}

fn make_snapshot(
    store: &Store,
    log_key: &SigningKey,
    automation_key: &SigningKey,
    origin: &str,
    state: State,
    size: u64,
) -> Result<Snapshot, String> {
    let root = store.root_at(size).map_err(|e| e.to_string())?;
    let checkpoint = Checkpoint { origin: origin.to_string(), size, root }.sign(log_key).map_err(|e| e.to_string())?;
    Ok(Snapshot {
        state,
        size,
        root,
        checkpoint,
        origin: origin.to_string(),
        log_key: log_key.verifier(),
        automation_key: automation_key.verifier(),
    })
}

/// Where a waiting caller's answer comes from once the batch is durable.
enum Waiter {
    New(usize),
    SameAsBatchEntry(usize),
}

impl Sequencer {
    fn run(mut self, rx: Receiver<Submission>) {
        let tick = Duration::from_millis(AUTOMATION_TICK_MS);
        // Automation first: a crash between quorum and grant is finished on start.
        let mut next_tick = Instant::now();
        loop {
            let now = Instant::now();
            if now >= next_tick {
                if self.publish_pending {
                    self.publish();
                }
                self.automation();
                next_tick = Instant::now() + tick;
                continue;
            }
            let first = match rx.recv_timeout(next_tick - now) {
                Ok(sub) => sub,
                Err(RecvTimeoutError::Timeout) => {
                    if self.stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut batch = Vec::with_capacity(16);
            batch.push(first);
            while batch.len() < SEQUENCER_BATCH_MAX {
                match rx.try_recv() {
                    Ok(sub) => batch.push(sub),
                    Err(_) => break,
                }
            }
            self.metrics.queue_depth.fetch_sub(batch.len() as i64, Ordering::Relaxed);
            let (appended, receipts) = self.process(batch);
            // Automation first, so a caller whose event completed a quorum sees the grant
            // as soon as it has its receipt.
            if appended > 0 {
                self.automation();
            }
            for (reply, outcome) in receipts {
                answer(Some(reply), outcome);
            }
        }
        self.snapshots.finish(&self.state);
        tracing::info!("sequencer stopped at size {}", self.size);
    }

    /// Received-at times never go backwards, so a replay with `check` at `received_at_ms`
    /// sees the same order of time as the live server did.
    fn clock(&self) -> i64 {
        crate::now_ms().max(self.last_received_at_ms)
    }

    /// Checks, appends and publishes one batch. Returns how many records were appended and
    /// the receipts still to deliver (rejections are answered at once).
    fn process(&mut self, batch: Vec<Submission>) -> (usize, Vec<(oneshot::Sender<Outcome>, Outcome)>) {
        let now = self.clock();
        let base = self.size;
        let mut working = self.state.clone();
        let mut entries: Vec<Entry> = Vec::with_capacity(batch.len());
        let mut waiting: Vec<(Option<oneshot::Sender<Outcome>>, Waiter)> = Vec::with_capacity(batch.len());
        let mut batch_ids: HashMap<String, usize> = HashMap::new();
        let mut automation_entries = 0usize;

        for sub in batch {
            let Submission { statement, canonical, signers, reply } = sub;
            let by_automation = reply.is_none();
            if let Some(&index) = batch_ids.get(&statement.id) {
                if entries[index].envelope == canonical {
                    self.metrics.duplicates_total.fetch_add(1, Ordering::Relaxed);
                    waiting.push((reply, Waiter::SameAsBatchEntry(index)));
                } else {
                    self.reject(reply, &statement, conflict(&statement.id, base + index as u64));
                }
                continue;
            }
            match self.store.get_by_id(&statement.id) {
                Ok(None) => {}
                Ok(Some(rec)) if rec.envelope() == canonical.as_slice() => {
                    self.metrics.duplicates_total.fetch_add(1, Ordering::Relaxed);
                    answer(reply, Outcome::Duplicate { record: rec, snapshot: self.published.load_full() });
                    continue;
                }
                Ok(Some(rec)) => {
                    self.reject(reply, &statement, conflict(&statement.id, rec.seq));
                    continue;
                }
                Err(e) => {
                    tracing::error!("store read failed: {e}");
                    self.reject(reply, &statement, Problem::unavailable("the store cannot be read; retry later"));
                    continue;
                }
            }
            // A key verified by the handler may have been revoked since, earlier in this batch.
            if let Some((keyid, _)) = signers
                .iter()
                .find(|(keyid, key)| crate::replay::signer_key(&working, keyid, &statement).as_ref() != Some(key))
            {
                let problem = Problem::unauthorized("key_inactive", format!("key {keyid} is not active"));
                self.reject(reply, &statement, problem);
                continue;
            }
            let keyids: Vec<String> = signers.into_iter().map(|(k, _)| k).collect();
            if let Err(rejection) = projector::check(&working, &statement, &keyids, now) {
                self.reject(reply, &statement, Problem::from_rejection(&rejection));
                continue;
            }
            let seq = base + entries.len() as u64;
            projector::apply(
                &mut working,
                &Event { seq, received_at_ms: now, statement: &statement, signers: &keyids },
            );
            batch_ids.insert(statement.id.clone(), entries.len());
            waiting.push((reply, Waiter::New(entries.len())));
            if by_automation {
                automation_entries += 1;
            }
            entries.push(Entry { id: statement.id, envelope: canonical, received_at_ms: now });
        }
        if entries.is_empty() {
            return (0, Vec::new());
        }

        let started = Instant::now();
        let appended = self.fault.before_append(&entries).and_then(|()| {
            self.store.append(&entries).map_err(|e| match e {
                ledger::store::StoreError::Failed => {
                    format!("{e} (a write failed earlier; restart the server to reopen the store)")
                }
                e => e.to_string(),
            })
        });
        let outcomes = match appended {
            Ok(outcomes) => outcomes,
            Err(e) => {
                // Nothing was published; the working state is dropped with the batch.
                tracing::error!("append of {} records failed: {e}", entries.len());
                self.metrics.append_failures_total.fetch_add(1, Ordering::Relaxed);
                self.metrics.appends_failing.store(true, Ordering::Relaxed);
                for (reply, _) in waiting {
                    answer(reply, Outcome::Rejected(Problem::unavailable("the log could not be written; retry later")));
                }
                return (0, Vec::new());
            }
        };
        self.fault.after_append(&entries);
        self.metrics.appends_failing.store(false, Ordering::Relaxed);
        self.metrics.observe_batch(entries.len(), started.elapsed());
        self.metrics.automation_appends_total.fetch_add(automation_entries as u64, Ordering::Relaxed);
        self.last_received_at_ms = now;

        let all_appended = outcomes.len() == entries.len()
            && outcomes
                .iter()
                .enumerate()
                .all(|(i, o)| matches!(o, AppendOutcome::Appended(r) if r.seq == base + i as u64));
        if all_appended {
            self.state = working;
        } else {
            // Cannot happen with one writer that checked ids first; recover from the store.
            tracing::error!("the store's append outcomes differ from the sequencer's plan; replaying the log");
            match crate::datadir::replay_store(&self.store) {
                Ok((state, _)) => self.state = state,
                Err(e) => tracing::error!("replay failed: {e}"),
            }
        }
        self.size = self.store.size();
        debug_assert!(!all_appended || self.size == base + entries.len() as u64);

        self.snapshots.after_batch(&self.state);
        let snapshot = self.publish();
        let records: Vec<Option<Record>> = outcomes
            .iter()
            .map(|o| match o {
                AppendOutcome::Appended(r) | AppendOutcome::Duplicate(r) => Some(r.clone()),
                AppendOutcome::Conflict { .. } => None,
            })
            .collect();
        let mut receipts = Vec::with_capacity(waiting.len());
        for (reply, waiter) in waiting {
            let Some(reply) = reply else { continue };
            let (index, fresh) = match waiter {
                Waiter::New(i) => (i, true),
                Waiter::SameAsBatchEntry(i) => (i, false),
            };
            let outcome = match (&snapshot, records.get(index).cloned().flatten()) {
                (Some(snapshot), Some(record)) => {
                    let fresh = fresh && matches!(outcomes.get(index), Some(AppendOutcome::Appended(_)));
                    if fresh {
                        Outcome::Appended { record, snapshot: snapshot.clone() }
                    } else {
                        Outcome::Duplicate { record, snapshot: snapshot.clone() }
                    }
                }
                (None, _) => Outcome::Rejected(Problem::unavailable(
                    "the event is stored but its checkpoint is not published yet; resubmit the same envelope for the receipt",
                )),
                (Some(_), None) => Outcome::Rejected(Problem::new(
                    StatusCode::CONFLICT,
                    "id_conflict",
                    "this id was already logged with other content",
                )),
            };
            receipts.push((reply, outcome));
        }
        if let Some(snapshot) = &snapshot {
            self.broadcast(&outcomes, snapshot.size);
        }
        (entries.len(), receipts)
    }

    /// Signs and publishes the snapshot for the current size.
    fn publish(&mut self) -> Option<Arc<Snapshot>> {
        match make_snapshot(
            &self.store,
            &self.log_key,
            &self.automation_key,
            &self.origin,
            self.state.clone(),
            self.size,
        ) {
            Ok(snapshot) => {
                let snapshot = Arc::new(snapshot);
                self.published.store(snapshot.clone());
                self.publish_pending = false;
                Some(snapshot)
            }
            Err(e) => {
                tracing::error!("cannot publish the snapshot at size {}: {e}", self.size);
                self.publish_pending = true;
                None
            }
        }
    }

    fn broadcast(&self, outcomes: &[AppendOutcome], published_size: u64) {
        if self.live.receiver_count() == 0 {
            return;
        }
        let mut batch = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            if let AppendOutcome::Appended(rec) = outcome {
                debug_assert!(rec.seq < published_size);
                match RecordJson::from_record(rec).and_then(|r| serde_json::to_string(&r).map_err(|e| e.to_string())) {
                    Ok(json) => batch.push((rec.seq, json)),
                    Err(e) => tracing::error!("cannot encode record {}: {e}", rec.seq),
                }
            }
        }
        // No subscriber left is fine: they replay from the store.
        let _ = self.live.send(Arc::new(batch));
    }

    fn reject(&self, reply: Option<oneshot::Sender<Outcome>>, statement: &Statement, problem: Problem) {
        // Callers' rejections are counted by their handler; automation's here.
        if reply.is_none() {
            self.metrics.reject(&problem.code);
            tracing::warn!("automation statement {} ({}) rejected: {}", statement.id, statement.kind, problem);
        }
        answer(reply, Outcome::Rejected(problem));
    }

    /// Appends what the automation says must follow, as long as it keeps saying so.
    fn automation(&mut self) {
        for _ in 0..AUTOMATION_ROUNDS_MAX {
            let statements = projector::automation(&self.state, self.clock());
            if statements.is_empty() {
                return;
            }
            self.fault.before_automation();
            let batch: Vec<Submission> = statements
                .into_iter()
                .take(SEQUENCER_BATCH_MAX)
                .map(|statement| {
                    let envelope = Envelope::sign(statement.to_payload(), &[&self.automation_key]);
                    Submission {
                        statement,
                        canonical: envelope.canonical_json(),
                        signers: vec![self.automation_signer.clone()],
                        reply: None,
                    }
                })
                .collect();
            let (appended, receipts) = self.process(batch);
            debug_assert!(receipts.is_empty());
            if appended == 0 {
                return;
            }
        }
    }
}

fn answer(reply: Option<oneshot::Sender<Outcome>>, outcome: Outcome) {
    if let Some(reply) = reply {
        // The caller may have gone away (timeout); the record stays logged either way.
        let _ = reply.send(outcome);
    }
}

fn conflict(id: &str, seq: u64) -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "id_conflict",
        format!("id {id:?} was already used for another event (seq {seq}); pick a new id"),
    )
}
