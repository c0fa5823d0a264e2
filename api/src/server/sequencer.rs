//! The single writer. It takes verified envelopes from a bounded queue, batches them, and for
//! each batch:
//!
//! 1. **plan**: idempotency (in the batch and in the store), then [`Fold::admit`] on a working
//!    copy of the state; refusals are answered at once;
//! 2. **commit**: appends the admitted entries with one durable flush (group commit) and keeps
//!    the working state only if the store appended exactly the plan;
//! 3. **deliver**: publishes the new snapshot, answers the callers, feeds the SSE subscribers.
//!
//! The automation's statements (grants on quorum, expiries, exhaustions) take the same path.
//! The sequencer answers in domain terms ([`Outcome`], [`Refusal`]); the routes map them to HTTP.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use ledger::checkpoint::CheckpointError;
use ledger::record::Record;
use ledger::statement::Statement;
use ledger::store::{AppendOutcome, Entry, Store, StoreError};
use projector::Rejection;
use tokio::sync::{broadcast, oneshot};

use super::cluster::{Cluster, Role, FOLLOW_POLL_MS};
use super::fault::Fault;
use super::identity::Identities;
use super::metrics::Metrics;
use super::snapshot::Snapshot;
use crate::fold::{AdmitError, Fold, Signer};
use crate::json::RecordJson;
use crate::limits::{AUTOMATION_ROUNDS_MAX, AUTOMATION_TICK_MS, SEQUENCER_BATCH_MAX};
use crate::state_snapshot::SnapshotWriter;

// One sequencer batch is one store batch.
const _: () = assert!(SEQUENCER_BATCH_MAX <= ledger::store::BATCH_ENTRIES_MAX);

/// Where a submission comes from, and so who hears its outcome.
pub(crate) enum Source {
    /// A client over HTTP, waiting on its reply channel.
    Client(oneshot::Sender<Outcome>),
    /// The ledger's own automation: nobody waits; a refusal is logged and counted.
    Automation,
}

/// A verified envelope on its way to the log.
pub(crate) struct Submission {
    pub(crate) statement: Statement,
    /// The canonical envelope JSON (what the leaf holds).
    pub(crate) canonical: Vec<u8>,
    /// The envelope's signatures with the keys that verified them.
    pub(crate) signers: Vec<Signer>,
    pub(crate) source: Source,
}

/// The sequencer's answer to one submission.
pub(crate) enum Outcome {
    /// Logged now; the snapshot's checkpoint includes it.
    Appended { record: Record, snapshot: Arc<Snapshot> },
    /// The same envelope was logged before (or earlier in this batch).
    Duplicate { record: Record, snapshot: Arc<Snapshot> },
    /// Not logged, and nothing changed.
    Refused(Refusal),
}

/// Why a submission was not logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The projector's check rejects it here.
    Rejected(Rejection),
    /// A key that verified it was revoked since (possibly earlier in the same batch).
    KeyInactive { keyid: String },
    /// Its id was logged with other content, at `seq` when known.
    Conflict { id: String, seq: Option<u64> },
    /// The log cannot take it now; the client should retry.
    Unavailable(Unavailable),
}

/// Why the log cannot take a submission now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unavailable {
    /// Reading the store for idempotency failed.
    StoreUnreadable,
    /// The batch's append failed; nothing of it was logged.
    AppendFailed,
    /// The record is durable but its checkpoint could not be signed and published yet.
    NotPublished,
    /// This node does not lead the cluster (and the write was not forwarded).
    NotLeader,
    /// The database is behind what this node saw; it writes nothing more.
    Halted,
}

impl Refusal {
    /// The stable code clients and `/metrics` see.
    pub(crate) fn code(&self) -> &str {
        match self {
            Refusal::Rejected(rejection) => &rejection.code,
            Refusal::KeyInactive { .. } => "key_inactive",
            Refusal::Conflict { .. } => "id_conflict",
            Refusal::Unavailable(_) => "storage_unavailable",
        }
    }
}

impl From<AdmitError> for Refusal {
    fn from(e: AdmitError) -> Refusal {
        match e {
            AdmitError::KeyInactive { keyid } => Refusal::KeyInactive { keyid },
            AdmitError::Rejected(rejection) => Refusal::Rejected(rejection),
        }
    }
}

/// New records for SSE subscribers: (seq, record JSON) in seq order.
pub(crate) type LiveBatch = Arc<Vec<(u64, String)>>;

/// What the sequencer's queue carries.
enum Work {
    Submit(Box<Submission>),
    /// Another node committed (a NOTIFY): follow the log of record now, not at the next poll.
    Wake,
}

/// The sending side of the queue, as the handlers see it.
#[derive(Clone)]
pub(crate) struct Queue {
    tx: SyncSender<Work>,
    metrics: Arc<Metrics>,
}

pub(crate) enum QueueError {
    Full,
    Closed,
}

impl Queue {
    /// Wakes the sequencer to follow the log of record; a full queue needs no wake-up.
    pub(crate) fn wake(&self) {
        let _ = self.tx.try_send(Work::Wake);
    }

    pub(crate) fn try_send(&self, sub: Submission) -> Result<(), QueueError> {
        self.metrics.queue_depth.fetch_add(1, Ordering::Relaxed);
        self.tx.try_send(Work::Submit(Box::new(sub))).map_err(|e| {
            self.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
            match e {
                TrySendError::Full(_) => QueueError::Full,
                TrySendError::Disconnected(_) => QueueError::Closed,
            }
        })
    }
}

struct Sequencer {
    store: Store,
    identities: Arc<Identities>,
    origin: String,
    fold: Fold,
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
    snapshots: SnapshotWriter,
    /// The node's place in a PostgreSQL cluster; `None` on sled (always writable).
    cluster: Option<Arc<Cluster>>,
}

/// A running sequencer thread.
pub(crate) struct SequencerHandle {
    stopping: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl SequencerHandle {
    /// Finishes what is queued, then stops.
    pub(crate) fn stop(self) {
        self.stopping.store(true, Ordering::SeqCst);
        if self.thread.join().is_err() {
            tracing::error!("the sequencer thread panicked");
        }
    }
}

pub(crate) struct Started {
    pub(crate) queue: Queue,
    pub(crate) published: Arc<ArcSwap<Snapshot>>,
    pub(crate) handle: SequencerHandle,
}

/// Why a snapshot could not be published.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PublishError {
    #[error("cannot compute the root: {0}")]
    Root(#[from] StoreError),
    #[error("cannot sign the checkpoint: {0}")]
    Sign(#[from] CheckpointError),
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    #[error("cannot publish the initial snapshot: {0}")]
    Publish(#[from] PublishError),
    #[error("the genesis record names no origin, log key or automation key")]
    NoGenesis,
    #[error("cannot start the sequencer thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error(transparent)]
    Fault(#[from] super::fault::UnknownFault),
}

/// Why a batch was not appended; nothing of it was written.
#[derive(Debug, thiserror::Error)]
enum AppendError {
    /// A fault injected by a test (`GRANTLINE_FAULT`).
    #[error(transparent)]
    Injected(std::io::Error),
    #[error(transparent)]
    Store(StoreError),
}

/// What the sequencer starts from: an opened data directory's store and fold.
pub(crate) struct Start {
    pub(crate) store: Store,
    pub(crate) fold: Fold,
    pub(crate) identities: Arc<Identities>,
    pub(crate) replay_warnings: u64,
    pub(crate) queue_depth: usize,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) live: broadcast::Sender<LiveBatch>,
    pub(crate) cluster: Option<Arc<Cluster>>,
}

/// Publishes the snapshot of the replayed state and starts the sequencer thread.
pub(crate) fn start(start: Start) -> Result<Started, StartError> {
    let Start { store, fold, identities, replay_warnings, queue_depth, metrics, live, cluster } = start;
    let fault = Fault::from_env()?;
    if fault != Fault::None {
        tracing::warn!("fault injection is active: {fault:?}");
    }
    let origin = fold.state().origin().ok_or(StartError::NoGenesis)?.to_string();
    let size = store.size();
    debug_assert_eq!(fold.size(), size);
    let snapshot = make_snapshot(&store, &identities, &origin, &fold)?;
    let published = Arc::new(ArcSwap::from_pointee(snapshot));
    let last_received_at_ms = match size.checked_sub(1).map(|s| store.get(s)) {
        Some(Ok(Some(rec))) => rec.received_at_ms,
        _ => 0,
    };
    let stopping = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::sync_channel(queue_depth.max(1));
    let snapshots = SnapshotWriter::new(store.clone(), size, replay_warnings);
    let seq = Sequencer {
        store,
        identities,
        origin,
        fold,
        last_received_at_ms,
        publish_pending: false,
        published: published.clone(),
        metrics: metrics.clone(),
        live,
        stopping: stopping.clone(),
        fault,
        snapshots,
        cluster,
    };
    let thread = std::thread::Builder::new()
        .name("grantline-sequencer".into())
        .spawn(move || seq.run(rx))
        .map_err(StartError::Thread)?;
    Ok(Started { queue: Queue { tx, metrics }, published, handle: SequencerHandle { stopping, thread } })
}

fn make_snapshot(store: &Store, identities: &Identities, origin: &str, fold: &Fold) -> Result<Snapshot, PublishError> {
    let size = fold.size();
    let root = store.root_at(size)?;
    let checkpoint = identities.sign_checkpoint(origin, size, root)?;
    Ok(Snapshot { state: fold.state().clone(), size, root, checkpoint, origin: origin.to_string() })
}

/// Where a waiting submission's answer comes from once the batch is durable.
enum Waiter {
    /// It is the batch's entry at this index.
    New(usize),
    /// It repeats the batch's entry at this index.
    SameAsBatchEntry(usize),
}

/// A batch admitted into a working copy of the state, not yet durable.
struct Plan {
    base: u64,
    at_ms: i64,
    working: Fold,
    entries: Vec<Entry>,
    waiting: Vec<(Source, Waiter)>,
    batch_ids: HashMap<String, usize>,
    automation_entries: usize,
}

/// A client still to be answered, with its outcome.
type Receipt = (oneshot::Sender<Outcome>, Outcome);

impl Sequencer {
    fn run(mut self, rx: Receiver<Work>) {
        // A follower wakes often to follow the log of record.
        let tick = Duration::from_millis(if self.cluster.is_some() { FOLLOW_POLL_MS } else { AUTOMATION_TICK_MS });
        // Automation first: a crash between quorum and grant is finished on start.
        let mut next_tick = Instant::now();
        loop {
            let now = Instant::now();
            if now >= next_tick {
                self.follow();
                if self.publish_pending {
                    self.publish();
                }
                if self.writable() {
                    self.automation();
                }
                next_tick = Instant::now() + tick;
                continue;
            }
            let first = match rx.recv_timeout(next_tick - now) {
                Ok(Work::Submit(sub)) => *sub,
                Ok(Work::Wake) => {
                    self.follow();
                    continue;
                }
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
                    Ok(Work::Submit(sub)) => batch.push(*sub),
                    // `process` follows first anyway.
                    Ok(Work::Wake) => {}
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
                // The caller may have gone away (timeout); the record stays logged either way.
                let _ = reply.send(outcome);
            }
        }
        self.snapshots.finish(self.fold.state());
        tracing::info!("sequencer stopped at size {}", self.fold.size());
    }

    /// Received-at times never go backwards, so a replay with `check` at `received_at_ms`
    /// sees the same order of time as the live server did.
    fn clock(&self) -> i64 {
        crate::now_ms().max(self.last_received_at_ms)
    }

    /// Whether this node may append: always on sled; on PostgreSQL only while it leads.
    fn writable(&self) -> bool {
        self.cluster.as_ref().map_or(true, |c| c.role() == Role::Leader)
    }

    /// Applies the records other nodes committed to the log of record (a follower, or a
    /// leader that just took over), then publishes them. A database behind this node halts it.
    fn follow(&mut self) {
        let Some(cluster) = self.cluster.clone() else { return };
        if cluster.role() == Role::Halted {
            return;
        }
        if let Err(e) = self.store.catch_up() {
            match e {
                StoreError::UpstreamBehind { .. } | StoreError::Diverged { .. } => cluster.halt(e.to_string()),
                other => tracing::warn!("cannot follow the log of record: {other}"),
            }
            return;
        }
        if !self.writable() {
            // A follower's earlier failed commit (it lost the lead) is not a failing node.
            self.metrics.appends_failing.store(false, Ordering::Relaxed);
        }
        let to = self.store.size();
        let mut outcomes = Vec::new();
        while self.fold.size() < to {
            let page = match self.store.range(self.fold.size(), ledger::store::RANGE_RECORDS_MAX) {
                Ok(page) if !page.is_empty() => page,
                Ok(_) => break,
                Err(e) => {
                    tracing::error!("cannot read records to follow: {e}");
                    break;
                }
            };
            for rec in page {
                if let Err(problem) = self.fold.apply_logged(&rec) {
                    tracing::warn!("record {} does not verify: {problem}", rec.seq);
                }
                self.last_received_at_ms = self.last_received_at_ms.max(rec.received_at_ms);
                if self.live.receiver_count() > 0 {
                    outcomes.push(AppendOutcome::Appended(rec));
                }
            }
        }
        if outcomes.is_empty() && self.published.load().size == self.fold.size() {
            return;
        }
        self.snapshots.after_batch(self.fold.state());
        if let Some(snapshot) = self.publish() {
            self.broadcast(&outcomes, snapshot.size);
        }
    }

    /// Plans, commits and delivers one batch. Returns how many records were appended and the
    /// receipts still to deliver (refusals are answered at once).
    fn process(&mut self, batch: Vec<Submission>) -> (usize, Vec<Receipt>) {
        if let Some(cluster) = self.cluster.clone() {
            // Level with the log of record before deciding anything against the state.
            self.follow();
            let refusal = match cluster.role() {
                Role::Leader | Role::Standalone => None,
                Role::Halted => Some(Unavailable::Halted),
                Role::Follower => Some(Unavailable::NotLeader),
            };
            if let Some(why) = refusal {
                for sub in batch {
                    answer(sub.source, Outcome::Refused(Refusal::Unavailable(why)));
                }
                return (0, Vec::new());
            }
        }
        let mut plan = Plan {
            base: self.fold.size(),
            at_ms: self.clock(),
            working: self.fold.clone(),
            entries: Vec::with_capacity(batch.len()),
            waiting: Vec::with_capacity(batch.len()),
            batch_ids: HashMap::new(),
            automation_entries: 0,
        };
        for sub in batch {
            self.plan(&mut plan, sub);
        }
        if plan.entries.is_empty() {
            return (0, Vec::new());
        }
        let appended = plan.entries.len();
        match self.commit(&mut plan) {
            Some(outcomes) => (appended, self.deliver(plan, &outcomes)),
            None => (0, Vec::new()),
        }
    }

    /// Step 1 for one submission: answers duplicates of logged records and refusals at once;
    /// admits the rest into the plan's working state.
    fn plan(&self, plan: &mut Plan, sub: Submission) {
        let Submission { statement, canonical, signers, source } = sub;
        if let Some(&index) = plan.batch_ids.get(&statement.id) {
            if plan.entries[index].envelope == canonical {
                self.metrics.duplicates_total.fetch_add(1, Ordering::Relaxed);
                plan.waiting.push((source, Waiter::SameAsBatchEntry(index)));
            } else {
                let seq = Some(plan.base + index as u64);
                self.refuse(source, &statement, Refusal::Conflict { id: statement.id.clone(), seq });
            }
            return;
        }
        match self.store.get_by_id(&statement.id) {
            Ok(None) => {}
            Ok(Some(rec)) if rec.envelope() == canonical.as_slice() => {
                self.metrics.duplicates_total.fetch_add(1, Ordering::Relaxed);
                answer(source, Outcome::Duplicate { record: rec, snapshot: self.published.load_full() });
                return;
            }
            Ok(Some(rec)) => {
                self.refuse(source, &statement, Refusal::Conflict { id: statement.id.clone(), seq: Some(rec.seq) });
                return;
            }
            Err(e) => {
                tracing::error!("store read failed: {e}");
                self.refuse(source, &statement, Refusal::Unavailable(Unavailable::StoreUnreadable));
                return;
            }
        }
        if let Err(e) = plan.working.admit(&statement, &signers, plan.at_ms) {
            self.refuse(source, &statement, e.into());
            return;
        }
        let index = plan.entries.len();
        plan.batch_ids.insert(statement.id.clone(), index);
        if matches!(source, Source::Automation) {
            plan.automation_entries += 1;
        }
        plan.waiting.push((source, Waiter::New(index)));
        plan.entries.push(Entry { id: statement.id, envelope: canonical, received_at_ms: plan.at_ms });
    }

    /// Step 2: appends the plan with one durable flush and adopts its working state. `None`
    /// (with every waiter answered) when the append failed and nothing was logged.
    fn commit(&mut self, plan: &mut Plan) -> Option<Vec<AppendOutcome>> {
        let started = Instant::now();
        let appended = match self.fault.before_append(&plan.entries) {
            Ok(()) => self.store.append(&plan.entries).map_err(AppendError::Store),
            Err(injected) => Err(AppendError::Injected(injected)),
        };
        let outcomes = match appended {
            Ok(outcomes) => outcomes,
            Err(e) => {
                // Nothing was published; the working state is dropped with the plan.
                let hint = match e {
                    AppendError::Store(StoreError::Failed) => {
                        " (a write failed earlier; restart the server to reopen the store)"
                    }
                    _ => "",
                };
                tracing::error!("append of {} records failed: {e}{hint}", plan.entries.len());
                if let (Some(cluster), AppendError::Store(store_error)) = (&self.cluster, &e) {
                    match store_error {
                        StoreError::HeadMoved(why) => cluster.step_down(why),
                        StoreError::UpstreamBehind { .. } | StoreError::Diverged { .. } => {
                            cluster.halt(store_error.to_string())
                        }
                        _ => {}
                    }
                }
                self.metrics.append_failures_total.fetch_add(1, Ordering::Relaxed);
                self.metrics.appends_failing.store(true, Ordering::Relaxed);
                for (source, _) in plan.waiting.drain(..) {
                    answer(source, Outcome::Refused(Refusal::Unavailable(Unavailable::AppendFailed)));
                }
                return None;
            }
        };
        self.fault.after_append(&plan.entries);
        self.metrics.appends_failing.store(false, Ordering::Relaxed);
        self.metrics.observe_batch(plan.entries.len(), started.elapsed());
        self.metrics.automation_appends_total.fetch_add(plan.automation_entries as u64, Ordering::Relaxed);
        self.last_received_at_ms = plan.at_ms;

        let as_planned = outcomes.len() == plan.entries.len()
            && outcomes
                .iter()
                .enumerate()
                .all(|(i, o)| matches!(o, AppendOutcome::Appended(r) if r.seq == plan.base + i as u64));
        if as_planned {
            self.fold = std::mem::take(&mut plan.working);
            debug_assert_eq!(self.fold.size(), self.store.size());
        } else {
            // Cannot happen with one writer that checked ids first; recover from the store.
            tracing::error!("the store's append outcomes differ from the sequencer's plan; replaying the log");
            match Fold::new().replay(&self.store) {
                Ok((fold, _)) => self.fold = fold,
                Err(e) => tracing::error!("replay failed: {e}"),
            }
        }
        self.snapshots.after_batch(self.fold.state());
        Some(outcomes)
    }

    /// Step 3: publishes the snapshot that includes the batch, and the waiters' receipts.
    fn deliver(&mut self, plan: Plan, outcomes: &[AppendOutcome]) -> Vec<Receipt> {
        let snapshot = self.publish();
        let mut receipts = Vec::with_capacity(plan.waiting.len());
        for (source, waiter) in plan.waiting {
            let Source::Client(reply) = source else { continue };
            let (index, fresh) = match waiter {
                Waiter::New(i) => (i, true),
                Waiter::SameAsBatchEntry(i) => (i, false),
            };
            let outcome = match (&snapshot, outcomes.get(index)) {
                (None, _) => Outcome::Refused(Refusal::Unavailable(Unavailable::NotPublished)),
                (Some(snapshot), Some(AppendOutcome::Appended(record))) if fresh => {
                    Outcome::Appended { record: record.clone(), snapshot: snapshot.clone() }
                }
                (Some(snapshot), Some(AppendOutcome::Appended(record) | AppendOutcome::Duplicate(record))) => {
                    Outcome::Duplicate { record: record.clone(), snapshot: snapshot.clone() }
                }
                (Some(_), _) => {
                    let id = plan.entries.get(index).map(|e| e.id.clone()).unwrap_or_default();
                    Outcome::Refused(Refusal::Conflict { id, seq: None })
                }
            };
            receipts.push((reply, outcome));
        }
        if let Some(snapshot) = &snapshot {
            self.broadcast(outcomes, snapshot.size);
        }
        receipts
    }

    /// Signs and publishes the snapshot for the current size.
    fn publish(&mut self) -> Option<Arc<Snapshot>> {
        match make_snapshot(&self.store, &self.identities, &self.origin, &self.fold) {
            Ok(snapshot) => {
                let snapshot = Arc::new(snapshot);
                self.published.store(snapshot.clone());
                self.publish_pending = false;
                Some(snapshot)
            }
            Err(e) => {
                tracing::error!("cannot publish the snapshot at size {}: {e}", self.fold.size());
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
                let json = RecordJson::from_record(rec).map(|r| serde_json::to_string(&r));
                match json {
                    Ok(Ok(json)) => batch.push((rec.seq, json)),
                    Ok(Err(e)) => tracing::error!("cannot encode record {}: {e}", rec.seq),
                    Err(e) => tracing::error!("cannot encode record {}: {e}", rec.seq),
                }
            }
        }
        // No subscriber left is fine: they replay from the store.
        let _ = self.live.send(Arc::new(batch));
    }

    fn refuse(&self, source: Source, statement: &Statement, refusal: Refusal) {
        // Callers' refusals are counted by their handler; automation's here.
        if matches!(source, Source::Automation) {
            self.metrics.reject(refusal.code());
            tracing::warn!("automation statement {} ({}) refused: {refusal:?}", statement.id, statement.kind);
        }
        answer(source, Outcome::Refused(refusal));
    }

    /// Appends what the automation says must follow, as long as it keeps saying so.
    fn automation(&mut self) {
        for _ in 0..AUTOMATION_ROUNDS_MAX {
            let statements = projector::automation(self.fold.state(), self.clock());
            if statements.is_empty() {
                return;
            }
            self.fault.before_automation();
            let batch: Vec<Submission> = statements
                .into_iter()
                .take(SEQUENCER_BATCH_MAX)
                .map(|statement| {
                    let (canonical, signer) = self.identities.sign_as_automation(&statement);
                    Submission { statement, canonical, signers: vec![signer], source: Source::Automation }
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

fn answer(source: Source, outcome: Outcome) {
    if let Source::Client(reply) = source {
        // The caller may have gone away (timeout); the record stays logged either way.
        let _ = reply.send(outcome);
    }
}
