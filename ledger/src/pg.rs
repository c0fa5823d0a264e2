//! PostgreSQL as the log of record (SPEC.md section 11): records, the id index, the stored
//! Merkle hashes, the head and the checkpoints live in tables; each node keeps a local sled
//! replica ([`crate::store::Store::open_replica`]) that serves the reads.
//!
//! One history: every batch commits in one transaction that first compare-and-swaps the one
//! head row (size, chain hash, epoch). A writer whose view is stale (another node committed)
//! or whose epoch is old (another node took over leadership) fails and writes nothing. The
//! advisory lock ([`PgLog::lead`]) only decides which node tries.
//!
//! The client is `postgres`, the blocking wrapper of `tokio-postgres` (pure Rust, no libpq). It
//! runs its own small runtime, so it is used only on plain threads (the sequencer, the
//! follower, the CLI), never inside async code.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use postgres::{Client, NoTls, Statement};

use crate::store::{StoreError, Upstream, UpstreamBatch};
use crate::Hash;

/// The schema this code reads and writes; `connect` refuses any other.
pub const SCHEMA_VERSION: i32 = 1;
/// The advisory lock whose holder leads (the bytes of "grantlin").
pub const LEADER_LOCK_KEY: i64 = 0x6772_616e_746c_696e;
/// NOTIFY channel: the new size after every commit (a wake-up; followers also poll).
pub const NOTIFY_CHANNEL: &str = "grantline_log";

/// How long a connection that just failed a call gets to show it is still alive.
const CONNECTION_CHECK_TIMEOUT: Duration = Duration::from_millis(1_000);
/// Connecting gives up after this long.
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;

const SCHEMA: &str = "
CREATE TABLE grantline_schema (
    version integer NOT NULL
);
CREATE TABLE grantline_head (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    size bigint NOT NULL,
    root bytea NOT NULL,
    chain bytea NOT NULL,
    epoch bigint NOT NULL,
    leader text,
    heartbeat_at timestamptz
);
CREATE TABLE grantline_records (
    seq bigint PRIMARY KEY,
    id text NOT NULL UNIQUE,
    leaf bytea NOT NULL
);
CREATE TABLE grantline_hashes (
    idx bigint PRIMARY KEY,
    hash bytea NOT NULL
);
CREATE TABLE grantline_checkpoints (
    size bigint PRIMARY KEY,
    note text NOT NULL
);
CREATE FUNCTION grantline_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'grantline: % on % refused: the log is append-only', TG_OP, TG_TABLE_NAME;
END $$;
CREATE TRIGGER grantline_records_append_only BEFORE UPDATE OR DELETE ON grantline_records
    FOR EACH ROW EXECUTE FUNCTION grantline_append_only();
CREATE TRIGGER grantline_records_no_truncate BEFORE TRUNCATE ON grantline_records
    FOR EACH STATEMENT EXECUTE FUNCTION grantline_append_only();
CREATE TRIGGER grantline_hashes_append_only BEFORE UPDATE OR DELETE ON grantline_hashes
    FOR EACH ROW EXECUTE FUNCTION grantline_append_only();
CREATE TRIGGER grantline_hashes_no_truncate BEFORE TRUNCATE ON grantline_hashes
    FOR EACH STATEMENT EXECUTE FUNCTION grantline_append_only();
CREATE TRIGGER grantline_checkpoints_append_only BEFORE UPDATE OR DELETE ON grantline_checkpoints
    FOR EACH ROW EXECUTE FUNCTION grantline_append_only();
CREATE TRIGGER grantline_checkpoints_no_truncate BEFORE TRUNCATE ON grantline_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION grantline_append_only();
-- The head row is updated by every commit, but never removed.
CREATE TRIGGER grantline_head_kept BEFORE DELETE ON grantline_head
    FOR EACH ROW EXECUTE FUNCTION grantline_append_only();
CREATE TRIGGER grantline_head_no_truncate BEFORE TRUNCATE ON grantline_head
    FOR EACH STATEMENT EXECUTE FUNCTION grantline_append_only();
";

/// The head row: what the log of record holds, and the leader epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Records committed.
    pub size: u64,
    /// Merkle root of those records.
    pub root: Hash,
    /// Chain hash of the last record (zeros when empty).
    pub chain: Hash,
    /// Bumped by every leader that takes over; a commit must name the current one.
    pub epoch: u64,
}

/// A connection to the log of record. Commits, catch-up reads and the leader lock share one
/// dedicated connection (never pooled: a pool's reset would drop the advisory lock).
pub struct PgLog {
    url: String,
    client: Mutex<Option<Client>>,
    /// The commit statement, prepared once per connection (cleared with the connection): a
    /// batch is then one round trip.
    commit_statement: Mutex<Option<Statement>>,
    /// The epoch this writer commits under.
    epoch: AtomicU64,
}

/// A whole batch in one statement, so one round trip and one implicit transaction: lock the
/// head, and only if it still is (size, chain, epoch) as this writer expects, insert the
/// records and hashes, move the head and notify the followers. The head as locked comes back
/// for the error message when it moved.
const COMMIT_SQL: &str = "\
WITH head AS (SELECT size, chain, epoch FROM grantline_head FOR UPDATE), \
ok AS (SELECT 1 FROM head WHERE size = $1 AND chain = $2 AND epoch = $3), \
records AS (INSERT INTO grantline_records (seq, id, leaf) \
    SELECT * FROM unnest($4::bigint[], $5::text[], $6::bytea[]) WHERE EXISTS (SELECT 1 FROM ok) RETURNING 1), \
hashes AS (INSERT INTO grantline_hashes (idx, hash) \
    SELECT * FROM unnest($7::bigint[], $8::bytea[]) WHERE EXISTS (SELECT 1 FROM ok) RETURNING 1), \
moved AS (UPDATE grantline_head SET size = $9, root = $10, chain = $11 WHERE EXISTS (SELECT 1 FROM ok) RETURNING 1) \
SELECT head.size, head.epoch, (SELECT count(*) FROM moved), (SELECT count(*) FROM records), \
    (SELECT count(*) FROM hashes), (SELECT count(*) FROM (SELECT pg_notify($12, $13) FROM ok) AS notified) \
FROM head";

fn db_error(what: &str, e: postgres::Error) -> StoreError {
    // The server's own message (e.g. the append-only trigger's) is in the source.
    let detail = match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => e.to_string(),
    };
    StoreError::Upstream(format!("{what}: {detail}"))
}

fn to_u64(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Upstream(format!("{what} is negative ({v})")))
}

fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Upstream(format!("{v} does not fit a bigint")))
}

fn to_hash(bytes: &[u8], what: &str) -> Result<Hash, StoreError> {
    bytes.try_into().map_err(|_| StoreError::Upstream(format!("{what} is {} bytes, not 32", bytes.len())))
}

fn connect_client(url: &str) -> Result<Client, StoreError> {
    let mut config: postgres::Config =
        url.parse().map_err(|e: postgres::Error| StoreError::Upstream(format!("database URL: {e}")))?;
    config.connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS));
    // A paused leader's connection must not hold the lock forever.
    config.keepalives_idle(Duration::from_secs(5));
    let mut client = config.connect(NoTls).map_err(|e| db_error("cannot connect to the database", e))?;
    // The commit is the durability point of a 201: never acknowledge before the WAL flush.
    client.batch_execute("SET synchronous_commit = on").map_err(|e| db_error("session setup", e))?;
    Ok(client)
}

impl PgLog {
    /// Creates the schema in a database that holds none, with an empty head. A database whose
    /// schema is there but holds no record (an init interrupted before its genesis) is reused.
    pub fn create(url: &str) -> Result<PgLog, StoreError> {
        let mut client = connect_client(url)?;
        let exists: bool = client
            .query_one("SELECT to_regclass('grantline_schema') IS NOT NULL", &[])
            .map_err(|e| db_error("reading the schema", e))?
            .get(0);
        if exists {
            drop(client);
            let log = PgLog::connect(url)?;
            if log.head()?.size == 0 {
                return Ok(log);
            }
            return Err(StoreError::Upstream(
                "the database already holds a grantline ledger: serve it with `grantline serve --data DIR --db URL` \
                 (a node needs only copies of log.key and automation.key), or give init an empty database"
                    .into(),
            ));
        }
        let mut tx = client.transaction().map_err(|e| db_error("creating the schema", e))?;
        tx.batch_execute(SCHEMA).map_err(|e| db_error("creating the schema", e))?;
        tx.execute("INSERT INTO grantline_schema (version) VALUES ($1)", &[&SCHEMA_VERSION])
            .map_err(|e| db_error("creating the schema", e))?;
        let zeros = [0u8; 32];
        let empty_root = crate::merkle::empty_root();
        tx.execute(
            "INSERT INTO grantline_head (size, root, chain, epoch) VALUES (0, $1, $2, 1)",
            &[&&empty_root[..], &&zeros[..]],
        )
        .map_err(|e| db_error("creating the schema", e))?;
        tx.commit().map_err(|e| db_error("creating the schema", e))?;
        Ok(PgLog {
            url: url.to_string(),
            client: Mutex::new(Some(client)),
            commit_statement: Mutex::new(None),
            epoch: AtomicU64::new(1),
        })
    }

    /// Connects to a database made by [`PgLog::create`]; refuses one without a ledger or of
    /// another schema version. Commits under the current epoch until [`PgLog::lead`].
    pub fn connect(url: &str) -> Result<PgLog, StoreError> {
        let mut client = connect_client(url)?;
        let exists: bool = client
            .query_one("SELECT to_regclass('grantline_schema') IS NOT NULL", &[])
            .map_err(|e| db_error("reading the schema", e))?
            .get(0);
        if !exists {
            return Err(StoreError::Upstream(
                "the database holds no grantline ledger: create one with `grantline init --db URL`".into(),
            ));
        }
        let version: i32 = client
            .query_one("SELECT version FROM grantline_schema", &[])
            .map_err(|e| db_error("reading the schema version", e))?
            .get(0);
        if version != SCHEMA_VERSION {
            return Err(StoreError::Upstream(format!(
                "the database's schema version is {version}; this grantline reads version {SCHEMA_VERSION}"
            )));
        }
        let log = PgLog {
            url: url.to_string(),
            client: Mutex::new(Some(client)),
            commit_statement: Mutex::new(None),
            epoch: AtomicU64::new(0),
        };
        let head = log.head()?;
        log.epoch.store(head.epoch, Ordering::Release);
        Ok(log)
    }

    /// Runs `f` on the connection, reconnecting first if it was lost (a lost connection also
    /// lost the leader lock; the epoch check catches a writer that did not notice).
    fn with_client<T>(&self, f: impl FnOnce(&mut Client) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut guard = self.client.lock().unwrap_or_else(|e| e.into_inner());
        if guard.as_ref().map_or(true, Client::is_closed) {
            *guard = None;
            // A statement belongs to the connection that prepared it.
            *self.commit_statement.lock().unwrap_or_else(|e| e.into_inner()) = None;
            *guard = Some(connect_client(&self.url)?);
        }
        match guard.as_mut() {
            Some(client) => {
                let result = f(client);
                // A failed call may see the connection gone before the client marks it closed;
                // ask, so the next call reconnects instead of failing the same way.
                if client.is_closed() || (result.is_err() && client.is_valid(CONNECTION_CHECK_TIMEOUT).is_err()) {
                    *guard = None;
                }
                result
            }
            None => Err(StoreError::Upstream("no connection".into())),
        }
    }

    /// The head row.
    pub fn head(&self) -> Result<Head, StoreError> {
        self.with_client(|c| {
            let row = c
                .query_one("SELECT size, root, chain, epoch FROM grantline_head", &[])
                .map_err(|e| db_error("reading the head", e))?;
            Ok(Head {
                size: to_u64(row.get(0), "head size")?,
                root: to_hash(row.get(1), "head root")?,
                chain: to_hash(row.get(2), "head chain")?,
                epoch: to_u64(row.get(3), "head epoch")?,
            })
        })
    }

    /// The epoch this writer commits under.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Tries to become the leader: takes the advisory lock on this connection and, if it got
    /// it, bumps the epoch (so a previous leader's late commit fails). Returns the new epoch,
    /// or `None` when another session holds the lock.
    pub fn lead(&self, node: &str) -> Result<Option<u64>, StoreError> {
        self.with_client(|c| {
            let got: bool = c
                .query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK_KEY])
                .map_err(|e| db_error("taking the leader lock", e))?
                .get(0);
            if !got {
                return Ok(None);
            }
            let epoch: i64 = c
                .query_one(
                    "UPDATE grantline_head SET epoch = epoch + 1, leader = $1, heartbeat_at = now() RETURNING epoch",
                    &[&node],
                )
                .map_err(|e| db_error("bumping the epoch", e))?
                .get(0);
            let epoch = to_u64(epoch, "epoch")?;
            self.epoch.store(epoch, Ordering::Release);
            Ok(Some(epoch))
        })
    }

    /// The leader's heartbeat: true while this writer's epoch is still the head's.
    pub fn heartbeat(&self) -> Result<bool, StoreError> {
        let epoch = to_i64(self.epoch())?;
        self.with_client(|c| {
            let n = c
                .execute("UPDATE grantline_head SET heartbeat_at = now() WHERE epoch = $1", &[&epoch])
                .map_err(|e| db_error("heartbeat", e))?;
            Ok(n == 1)
        })
    }

    /// The current leader's name and how long ago it last beat (milliseconds), if any.
    pub fn leader(&self) -> Result<Option<(String, u64)>, StoreError> {
        self.with_client(|c| {
            let row = c
                .query_one(
                    "SELECT leader, (extract(epoch FROM now() - heartbeat_at) * 1000)::bigint FROM grantline_head",
                    &[],
                )
                .map_err(|e| db_error("reading the leader", e))?;
            let leader: Option<String> = row.get(0);
            let silent_ms: Option<i64> = row.get(1);
            Ok(leader.zip(silent_ms.map(|ms| u64::try_from(ms).unwrap_or(0))))
        })
    }

    /// Ends the session holding the leader lock when the leader has not beaten for
    /// `lease_ms` (paused or partitioned: its session would keep the lock until TCP gives
    /// up). Returns whether a session was ended.
    pub fn end_silent_leader(&self, lease_ms: u64) -> Result<bool, StoreError> {
        let lease_ms = to_i64(lease_ms)?;
        self.with_client(|c| {
            // Advisory locks are per database: only this database's leader session is ended.
            let rows = c
                .query(
                    "SELECT pg_terminate_backend(l.pid) FROM pg_locks l, grantline_head h
                     WHERE l.locktype = 'advisory' AND l.granted
                       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                       AND l.classid = (($1::bigint >> 32) & 4294967295)::oid
                       AND l.objid = ($1::bigint & 4294967295)::oid AND l.objsubid = 1
                       AND l.pid <> pg_backend_pid()
                       AND (h.heartbeat_at IS NULL OR h.heartbeat_at < now() - make_interval(secs => $2::bigint / 1000.0))",
                    &[&LEADER_LOCK_KEY, &lease_ms],
                )
                .map_err(|e| db_error("ending a silent leader", e))?;
            Ok(rows.iter().any(|row| row.get::<_, bool>(0)))
        })
    }

    /// Gives the leader lock up (a clean shutdown: the next leader need not wait for a lease).
    pub fn resign(&self) -> Result<(), StoreError> {
        self.with_client(|c| {
            c.query_one("SELECT pg_advisory_unlock_all()", &[]).map_err(|e| db_error("resigning", e))?;
            Ok(())
        })
    }

    /// Records a signed checkpoint (after its size committed).
    pub fn put_checkpoint(&self, size: u64, note: &str) -> Result<(), StoreError> {
        let size = to_i64(size)?;
        self.with_client(|c| {
            c.execute(
                "INSERT INTO grantline_checkpoints (size, note) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&size, &note],
            )
            .map_err(|e| db_error("recording a checkpoint", e))?;
            Ok(())
        })
    }

    /// The checkpoint of the largest size recorded, if any.
    pub fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, StoreError> {
        self.with_client(|c| {
            let row = c
                .query_opt("SELECT size, note FROM grantline_checkpoints ORDER BY size DESC LIMIT 1", &[])
                .map_err(|e| db_error("reading checkpoints", e))?;
            match row {
                Some(row) => Ok(Some((to_u64(row.get(0), "checkpoint size")?, row.get(1)))),
                None => Ok(None),
            }
        })
    }

    /// Refuses a database that holds fewer records than a checkpoint recorded in it says it
    /// had (restored from an older backup after nodes recorded their checkpoints, or halted):
    /// extending it would sign a second history.
    pub fn check_not_behind(&self) -> Result<(), StoreError> {
        let head = self.head()?;
        match self.latest_checkpoint()? {
            Some((size, _)) if size > head.size => {
                Err(StoreError::CheckpointAhead { checkpoint: size, upstream: head.size })
            }
            _ => Ok(()),
        }
    }

    /// A new connection that listens on [`NOTIFY_CHANNEL`] (a follower's wake-ups).
    pub fn listener(&self) -> Result<Listener, StoreError> {
        let mut client = connect_client(&self.url)?;
        client.batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}")).map_err(|e| db_error("LISTEN", e))?;
        Ok(Listener { client: Some(client) })
    }
}

/// A connection listening for commits ([`PgLog::listener`]).
pub struct Listener {
    client: Option<Client>,
}

impl Listener {
    /// Waits up to `timeout_ms` for a commit notification; true when one came (those already
    /// here are consumed too). An error means the connection is gone: make a new one.
    pub fn wait(&mut self, timeout_ms: u64) -> Result<bool, StoreError> {
        use postgres::fallible_iterator::FallibleIterator;
        let Some(client) = self.client.as_mut() else {
            return Err(StoreError::Upstream("the listener is closed".into()));
        };
        let mut notifications = client.notifications();
        // Only the first notification is waited for: a steady stream of commits must not
        // keep this call from returning.
        let first = notifications
            .timeout_iter(Duration::from_millis(timeout_ms))
            .next()
            .map_err(|e| db_error("waiting for commits", e))?;
        if first.is_none() {
            return Ok(false);
        }
        let mut pending = notifications.iter();
        while let Ok(Some(_)) = pending.next() {}
        Ok(true)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        drop_off_runtime(self.client.take());
    }
}

impl Drop for PgLog {
    fn drop(&mut self) {
        let client = self.client.get_mut().map(Option::take).unwrap_or_else(|e| e.into_inner().take());
        drop_off_runtime(client);
    }
}

/// Drops a client on a thread of its own: `postgres` runs a runtime to close the connection,
/// which panics inside another runtime (the last handle may go away in async code).
fn drop_off_runtime(client: Option<Client>) {
    if let Some(client) = client {
        let _ = std::thread::spawn(move || drop(client)).join();
    }
}

impl Upstream for PgLog {
    fn commit(&self, batch: &UpstreamBatch<'_>) -> Result<(), StoreError> {
        let epoch = to_i64(self.epoch())?;
        let old_size = to_i64(batch.old_size)?;
        let new_size = to_i64(batch.old_size + batch.records.len() as u64)?;
        let seqs = batch.records.iter().map(|r| to_i64(r.seq)).collect::<Result<Vec<i64>, _>>()?;
        let mut ids = vec![""; batch.records.len()];
        for (id, seq) in batch.ids {
            let k = usize::try_from(seq - batch.old_size).map_err(|_| StoreError::Upstream("seq".into()))?;
            if let Some(slot) = ids.get_mut(k) {
                *slot = id;
            }
        }
        let leaves: Vec<&[u8]> = batch.records.iter().map(|r| r.leaf()).collect();
        let first = to_i64(batch.first_hash_index)?;
        let indexes: Vec<i64> = (0..batch.hashes.len() as i64).map(|i| first + i).collect();
        let hashes: Vec<&[u8]> = batch.hashes.iter().map(|h| &h[..]).collect();
        let records_count = batch.records.len() as i64;
        let hashes_count = batch.hashes.len() as i64;
        self.with_client(|c| {
            let statement = {
                let mut cached = self.commit_statement.lock().unwrap_or_else(|e| e.into_inner());
                match cached.as_ref() {
                    Some(statement) => statement.clone(),
                    None => {
                        let statement = c.prepare(COMMIT_SQL).map_err(|e| db_error("commit: prepare", e))?;
                        *cached = Some(statement.clone());
                        statement
                    }
                }
            };
            let row = c
                .query_one(
                    &statement,
                    &[
                        &old_size,
                        &&batch.old_chain[..],
                        &epoch,
                        &seqs,
                        &ids,
                        &leaves,
                        &indexes,
                        &hashes,
                        &new_size,
                        &&batch.new_root[..],
                        &&batch.new_chain[..],
                        &NOTIFY_CHANNEL,
                        &new_size.to_string(),
                    ],
                )
                .map_err(|e| db_error("commit", e))?;
            let (size, head_epoch, moved): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
            if moved == 1 {
                let (records, hashes): (i64, i64) = (row.get(3), row.get(4));
                if (records, hashes) != (records_count, hashes_count) {
                    // The statement is atomic; this would be a database that broke it.
                    return Err(StoreError::Upstream(format!(
                        "commit wrote {records} records and {hashes} hashes of {records_count} and {hashes_count}"
                    )));
                }
                return Ok(());
            }
            if head_epoch != epoch {
                return Err(StoreError::HeadMoved(format!(
                    "another leader took over (epoch {head_epoch}, this writer's {epoch})"
                )));
            }
            Err(StoreError::HeadMoved(format!("the database holds {size} records, this writer expected {old_size}")))
        })
    }

    fn records_from(&self, seq: u64, limit: usize) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let seq = to_i64(seq)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with_client(|c| {
            let rows = c
                .query("SELECT id, leaf FROM grantline_records WHERE seq >= $1 ORDER BY seq LIMIT $2", &[&seq, &limit])
                .map_err(|e| db_error("reading records", e))?;
            Ok(rows.into_iter().map(|row| (row.get(0), row.get(1))).collect())
        })
    }

    fn size(&self) -> Result<u64, StoreError> {
        Ok(self.head()?.size)
    }
}
