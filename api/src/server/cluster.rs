//! Several nodes on one PostgreSQL log of record (SPEC.md section 11).
//!
//! Each node runs a cluster thread next to its sequencer. The thread decides the node's
//! role; the sequencer acts on it (it alone writes the store and the state):
//!
//! - **leader**: holds the advisory lock and the current epoch; beats every
//!   [`HEARTBEAT_MS`]. A beat that finds another epoch, or a commit that finds the head moved,
//!   makes it a follower at once.
//! - **follower**: tries the lock every beat; when the leader has not beaten for
//!   [`LEADER_LEASE_MS`] (paused, partitioned) it ends the leader's session
//!   (`pg_terminate_backend`) so the lock frees. Its sequencer catches up with the log of
//!   record (on NOTIFY, and every [`FOLLOW_POLL_MS`]); its routes forward writes to the
//!   leader's advertised URL.
//! - **halted**: the database holds fewer records than this node has seen (an old backup
//!   restored, a failover that lost commits). It signs nothing more and refuses writes until
//!   an operator looks; reads go on from what it has.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use ledger::pg::PgLog;
use ledger::store::{Store, StoreError};

use super::snapshot::Snapshot;

/// How often the leader beats and a follower tries the lock.
pub(crate) const HEARTBEAT_MS: u64 = 500;
/// A leader silent this long loses its session to the next node (DESIGN: lead within 10 s,
/// goal 5 s; a lease of 3 s plus a beat leaves room for the takeover itself).
pub(crate) const LEADER_LEASE_MS: u64 = 3_000;
/// A follower polls the log of record at least this often (NOTIFY may be lost).
pub(crate) const FOLLOW_POLL_MS: u64 = 200;

/// The node's role, as `/healthz` and `/metrics` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Role {
    /// One node on sled: no cluster.
    Standalone = 0,
    Leader = 1,
    Follower = 2,
    Halted = 3,
}

impl Role {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Standalone => "standalone",
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Halted => "halted",
        }
    }

    fn from_u8(v: u8) -> Role {
        match v {
            1 => Role::Leader,
            2 => Role::Follower,
            3 => Role::Halted,
            _ => Role::Standalone,
        }
    }
}

/// What the cluster thread, the sequencer and the routes share.
pub(crate) struct Cluster {
    pub(crate) pg: Arc<PgLog>,
    role: AtomicU8,
    /// This node's advertised URL (its name in the head row).
    pub(crate) advertise: String,
    /// The leader's advertised URL, as the head row last said.
    leader_url: Mutex<Option<String>>,
    /// Why the node halted, for `/healthz`.
    halted_because: Mutex<Option<String>>,
    /// Records the log of record holds beyond this node's published size (followers).
    pub(crate) lag_records: AtomicU64,
    /// When this node was last level with the log of record (Unix ms).
    pub(crate) level_at_ms: AtomicI64,
    /// The leader epoch in the head row at the last beat.
    pub(crate) epoch_seen: AtomicU64,
    stopping: AtomicBool,
}

impl Cluster {
    pub(crate) fn new(pg: Arc<PgLog>, advertise: String) -> Cluster {
        Cluster {
            pg,
            role: AtomicU8::new(Role::Follower as u8),
            advertise,
            leader_url: Mutex::new(None),
            halted_because: Mutex::new(None),
            lag_records: AtomicU64::new(0),
            level_at_ms: AtomicI64::new(crate::now_ms()),
            epoch_seen: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
        }
    }

    pub(crate) fn role(&self) -> Role {
        Role::from_u8(self.role.load(Ordering::Acquire))
    }

    fn set_role(&self, role: Role) {
        let old = Role::from_u8(self.role.swap(role as u8, Ordering::AcqRel));
        if old != role {
            tracing::warn!(
                from = old.as_str(),
                to = role.as_str(),
                epoch = self.pg.epoch(),
                at_ms = crate::now_ms(),
                "role changed"
            );
        }
    }

    /// The sequencer found the head moved under a commit: another node leads.
    pub(crate) fn step_down(&self, why: &str) {
        if self.role() == Role::Leader {
            tracing::warn!("stepping down: {why}");
            // Free the lock so the cluster does not wait for a lease.
            if let Err(e) = self.pg.resign() {
                tracing::warn!("could not release the leader lock: {e}");
            }
            self.set_role(Role::Follower);
        }
    }

    /// The database is behind what this node saw: stop for good.
    pub(crate) fn halt(&self, why: String) {
        if self.role() == Role::Halted {
            return;
        }
        tracing::error!("halting: {why}");
        if let Ok(mut slot) = self.halted_because.lock() {
            *slot = Some(why);
        }
        self.set_role(Role::Halted);
    }

    pub(crate) fn halted_because(&self) -> Option<String> {
        self.halted_because.lock().ok().and_then(|slot| slot.clone())
    }

    /// Where a follower forwards writes, if a leader is known and it is not this node.
    pub(crate) fn leader_url(&self) -> Option<String> {
        self.leader_url.lock().ok().and_then(|slot| slot.clone()).filter(|url| *url != self.advertise)
    }

    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// One beat of the cluster thread.
    fn beat(&self, store: &Store, published: &ArcSwap<Snapshot>, recorded_size: &mut u64) {
        match self.role() {
            Role::Standalone => {}
            Role::Halted => {
                // The database forgot what this node signed: put the evidence back in it, so a
                // node that joins later refuses to extend the older history.
                let snapshot = published.load();
                if snapshot.size > *recorded_size {
                    match self.pg.put_checkpoint(snapshot.size, &snapshot.checkpoint) {
                        Ok(()) => *recorded_size = snapshot.size,
                        Err(e) => tracing::warn!("cannot record the checkpoint in the database: {e}"),
                    }
                }
                return;
            }
            Role::Leader => match self.pg.heartbeat() {
                Ok(true) => {
                    // The leader's latest checkpoint joins the log of record (its size committed).
                    let snapshot = published.load();
                    if snapshot.size > *recorded_size {
                        match self.pg.put_checkpoint(snapshot.size, &snapshot.checkpoint) {
                            Ok(()) => *recorded_size = snapshot.size,
                            Err(e) => tracing::warn!("cannot record the checkpoint: {e}"),
                        }
                    }
                }
                Ok(false) => self.step_down("another node took over (the epoch moved)"),
                Err(e) => tracing::warn!("heartbeat failed: {e}"),
            },
            Role::Follower => self.follower_beat(store),
        }
        // The replica's size before the head: the replica only grows with what the database
        // committed, so a head read after it is never smaller unless the database lost records.
        // (Read the other way round, a catch-up between the two reads looked like a lost head.)
        let seen = store.size();
        match self.pg.head() {
            Ok(head) if head.size < seen => self.halt(format!(
                "the database holds {} records but this node has seen {seen}: it is behind (an old backup \
                 restored?); nothing will be signed for that history",
                head.size
            )),
            Ok(head) => {
                self.epoch_seen.store(head.epoch, Ordering::Relaxed);
                self.lag_records.store(head.size - seen, Ordering::Relaxed);
                if head.size == seen {
                    self.level_at_ms.store(crate::now_ms(), Ordering::Relaxed);
                }
            }
            Err(e) => tracing::warn!("cannot read the head: {e}"),
        }
    }

    fn follower_beat(&self, store: &Store) {
        match self.pg.leader() {
            Ok(leader) => {
                let silent_ms = leader.as_ref().map(|(_, ms)| *ms);
                if let Ok(mut slot) = self.leader_url.lock() {
                    *slot = leader.map(|(url, _)| url);
                }
                if silent_ms.is_some_and(|ms| ms > LEADER_LEASE_MS) {
                    match self.pg.end_silent_leader(LEADER_LEASE_MS) {
                        Ok(true) => {
                            tracing::warn!("ended the session of a leader silent for {} ms", silent_ms.unwrap_or(0))
                        }
                        Ok(false) => {}
                        Err(e) => tracing::warn!("cannot end a silent leader: {e}"),
                    }
                }
            }
            Err(e) => {
                tracing::warn!("cannot read the leader: {e}");
                return;
            }
        }
        // A database behind a checkpoint recorded in it is never led.
        if let Err(e) = self.pg.check_not_behind() {
            match e {
                StoreError::CheckpointAhead { .. } => self.halt(e.to_string()),
                other => tracing::warn!("cannot compare the database with its checkpoints: {other}"),
            }
            return;
        }
        let started = Instant::now();
        match self.pg.lead(&self.advertise) {
            Ok(Some(epoch)) => {
                // Level with every commit of the previous leader before writing.
                if let Err(e) = store.catch_up() {
                    tracing::error!("cannot catch up before leading: {e}");
                    self.step_down("catch-up failed");
                    return;
                }
                if let Ok(mut slot) = self.leader_url.lock() {
                    *slot = Some(self.advertise.clone());
                }
                tracing::warn!(epoch, took_ms = started.elapsed().as_millis() as u64, "leading");
                self.set_role(Role::Leader);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("cannot try the leader lock: {e}"),
        }
    }
}

/// Runs the cluster thread until [`Cluster::stop`].
pub(crate) fn spawn(
    cluster: Arc<Cluster>,
    store: Store,
    published: Arc<ArcSwap<Snapshot>>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("grantline-cluster".into()).spawn(move || {
        let mut recorded_size = 0;
        while !cluster.stopping.load(Ordering::SeqCst) {
            cluster.beat(&store, &published, &mut recorded_size);
            std::thread::sleep(Duration::from_millis(HEARTBEAT_MS));
        }
        if cluster.role() == Role::Leader {
            if let Err(e) = cluster.pg.resign() {
                tracing::warn!("could not release the leader lock: {e}");
            }
        }
    })
}

/// Listens for the leader's NOTIFY after each commit and calls `wake`, so a follower publishes
/// a commit at once rather than at its next poll. Reconnects after a lost connection; polling
/// covers the gap (and any lost notification).
pub(crate) fn spawn_listener(
    cluster: Arc<Cluster>,
    wake: impl Fn() + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("grantline-listen".into()).spawn(move || {
        while !cluster.stopping.load(Ordering::SeqCst) {
            let mut client = match cluster.pg.listener() {
                Ok(client) => client,
                Err(e) => {
                    tracing::debug!("cannot LISTEN: {e}");
                    std::thread::sleep(Duration::from_millis(HEARTBEAT_MS));
                    continue;
                }
            };
            while !cluster.stopping.load(Ordering::SeqCst) {
                match client.wait(HEARTBEAT_MS) {
                    Ok(true) if cluster.role() != Role::Leader => wake(),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!("{e}");
                        break;
                    }
                }
            }
        }
    })
}
