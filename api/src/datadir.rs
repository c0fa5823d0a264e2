//! The data directory: `<DIR>/db` (sled), `<DIR>/log.key`, `<DIR>/automation.key`,
//! `<DIR>/log.pub` (the log's verifier key, for auditors); `init` (keys and the genesis record)
//! and `open` (store, keys and the replayed state).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ledger::dsse::Envelope;
use ledger::keys::{KeyError, SigningKey, VerifierKey};
use ledger::limits::ACTOR_NAME_BYTES_MAX;
use ledger::pg::PgLog;
use ledger::statement::{format_rfc3339_ms, is_valid_actor_name, Statement};
use ledger::store::{AppendOutcome, Entry, Store, StoreError};

use crate::fold::{self, Fold, ReplayError};

/// Name of the automation key (SPEC.md section 2).
pub(crate) const AUTOMATION_KEY_NAME: &str = "automation";
/// Statement id of the genesis record.
pub(crate) const GENESIS_ID: &str = "genesis";
/// Origin `grantline serve` uses when it initialises a data dir on first run.
pub(crate) const DEFAULT_ORIGIN: &str = "localhost/grantline";
pub(crate) const DEFAULT_ADMIN: &str = "admin";
pub(crate) const DEFAULT_DATA_DIR: &str = "grantline-data";

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("{0} is already initialised (it has a log key or records)")]
    AlreadyInitialised(String),
    #[error(
        "{0} is not an initialised data directory; create the ledger first with\n  \
         grantline init --data {0} --origin NAME --admin-key-out FILE"
    )]
    NotInitialised(String),
    /// The log is there but the server's private keys are not: an `import`ed directory.
    #[error("{}", keys_missing(.dir, .missing))]
    KeysMissing { dir: String, missing: Vec<&'static str> },
    /// The database is locked by another process, most likely a server already serving it.
    #[error(
        "another grantline server (or another grantline command) is using {dir}: its database is locked. \
         Stop that process first, or give this server a data directory of its own"
    )]
    InUse {
        dir: String,
        #[source]
        source: StoreError,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: file exists; refusing to overwrite a key")]
    KeyExists(String),
    #[error("{0}")]
    Key(#[from] KeyError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Replay(#[from] ReplayError),
    #[error("invalid origin {0:?}: use a URL-like name without scheme, spaces or '+', e.g. ledger.example.org/ci")]
    InvalidOrigin(String),
    #[error("invalid admin name {0:?}: must match ^[a-z0-9][a-z0-9._-]{{0,{max}}}$", max = ACTOR_NAME_BYTES_MAX - 1)]
    InvalidAdmin(String),
    #[error("genesis rejected: {0}")]
    Genesis(String),
    #[error("{0}")]
    Mismatch(String),
}

/// Which key files are missing and the commands that restore them.
fn keys_missing(dir: &str, missing: &[&str]) -> String {
    let (files, them) = match missing {
        [one] => (format!("file {one}"), "it"),
        many => (format!("files {}", many.join(" and ")), "them"),
    };
    let from_backup: Vec<String> = missing.iter().map(|name| format!("OLD-DATA/{name}")).collect();
    let in_dir: Vec<String> = missing.iter().map(|name| format!("{dir}/{name}")).collect();
    format!(
        "{dir} holds a log but not the server's private key {files}: an export, and so an import, never \
         carries private keys. Copy {them} from the backup of the old data directory (OLD-DATA):\n  \
         cp {} {dir}/ && chmod 600 {}\n\
         They must be the keys named in the genesis record; a new key cannot replace them.",
        from_backup.join(" "),
        in_dir.join(" ")
    )
}

fn io_err(path: &Path, source: std::io::Error) -> DataDirError {
    DataDirError::Io { path: path.display().to_string(), source }
}

/// Paths inside a data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    pub root: PathBuf,
    /// The PostgreSQL URL of the log of record (`--db`), if the log lives there; `db/` is
    /// then this node's replica.
    pub database: Option<String>,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into(), database: None }
    }

    /// The same directory with its log in the PostgreSQL database at `url`.
    pub fn with_database(mut self, url: Option<String>) -> DataDir {
        self.database = url;
        self
    }

    pub fn db(&self) -> PathBuf {
        self.root.join("db")
    }

    pub fn log_key(&self) -> PathBuf {
        self.root.join("log.key")
    }

    pub fn automation_key(&self) -> PathBuf {
        self.root.join("automation.key")
    }

    /// The log's verifier key (public), written by `init` for auditors to pin.
    pub fn log_pub(&self) -> PathBuf {
        self.root.join("log.pub")
    }

    /// Where `grantline serve` puts the admin key when it initialises on first run.
    pub fn default_admin_key(&self) -> PathBuf {
        self.root.join("admin.key")
    }

    pub fn is_initialised(&self) -> bool {
        self.log_key().exists() || self.db().exists()
    }
}

/// What `init` made; only public keys and paths (never secrets).
#[derive(Debug, Clone)]
pub struct InitReport {
    pub origin: String,
    pub log_key: VerifierKey,
    pub automation_key: VerifierKey,
    pub admin_key: VerifierKey,
    pub admin_key_path: PathBuf,
}

/// A valid origin is a signed-note key name that looks like a URL without scheme.
pub(crate) fn is_valid_origin(origin: &str) -> bool {
    ledger::keys::is_valid_key_name(origin) && !origin.contains("://") && origin.len() <= 200
}

/// Creates the data directory (mode 0700), the log, automation and admin keys (0600), and the
/// genesis record signed by the admin.
pub fn init(dir: &DataDir, origin: &str, admin: &str, admin_key_out: &Path) -> Result<InitReport, DataDirError> {
    if !is_valid_origin(origin) {
        return Err(DataDirError::InvalidOrigin(origin.to_string()));
    }
    if !is_valid_actor_name(admin) {
        return Err(DataDirError::InvalidAdmin(admin.to_string()));
    }
    if dir.is_initialised() {
        return Err(DataDirError::AlreadyInitialised(dir.root.display().to_string()));
    }
    if admin_key_out.exists() {
        return Err(DataDirError::KeyExists(admin_key_out.display().to_string()));
    }
    create_private_dir(&dir.root)?;

    let log_key = SigningKey::generate(origin)?;
    let automation_key = SigningKey::generate(AUTOMATION_KEY_NAME)?;
    let admin_key = SigningKey::generate(admin)?;

    let now = crate::now_ms();
    let statement = Statement {
        ledger: origin.to_string(),
        id: GENESIS_ID.to_string(),
        actor: admin.to_string(),
        issued_at: format_rfc3339_ms(now),
        kind: "ledger.genesis".to_string(),
        data: serde_json::json!({
            "admins": [admin_key.verifier().to_string()],
            "automation_key": automation_key.verifier().to_string(),
            "log_key": log_key.verifier().to_string(),
        }),
    };
    let env = Envelope::sign(statement.to_payload(), &[&admin_key]);
    let mut fold = Fold::new();
    let signers =
        fold::verify_signers(fold.state(), &env, &statement).map_err(|e| DataDirError::Genesis(e.to_string()))?;
    fold.admit(&statement, &signers, now).map_err(|r| DataDirError::Genesis(r.to_string()))?;

    // The database before the keys: one that already holds a ledger stops init here.
    let pg = dir.database.as_deref().map(PgLog::create).transpose()?.map(Arc::new);
    // Keys first: a crash before the genesis leaves a directory `open` refuses clearly.
    admin_key.write_file(admin_key_out).map_err(|e| io_err(admin_key_out, e))?;
    log_key.write_file(&dir.log_key()).map_err(|e| io_err(&dir.log_key(), e))?;
    automation_key.write_file(&dir.automation_key()).map_err(|e| io_err(&dir.automation_key(), e))?;
    std::fs::write(dir.log_pub(), format!("{}\n", log_key.verifier())).map_err(|e| io_err(&dir.log_pub(), e))?;

    let store = match pg {
        Some(log) => Store::open_replica(&dir.db(), log).map_err(|e| store_error(dir, e))?,
        None => open_store(dir)?.0,
    };
    if store.size() != 0 {
        return Err(DataDirError::AlreadyInitialised(dir.root.display().to_string()));
    }
    let entry = Entry { id: statement.id.clone(), envelope: env.canonical_json(), received_at_ms: now };
    match store.append(&[entry])?.first() {
        Some(AppendOutcome::Appended(rec)) if rec.seq == 0 => {}
        other => return Err(DataDirError::Genesis(format!("unexpected append outcome {other:?}"))),
    }
    Ok(InitReport {
        origin: origin.to_string(),
        log_key: log_key.verifier(),
        automation_key: automation_key.verifier(),
        admin_key: admin_key.verifier(),
        admin_key_path: admin_key_out.to_path_buf(),
    })
}

fn create_private_dir(path: &Path) -> Result<(), DataDirError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path).map_err(|e| io_err(path, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(|e| io_err(path, e))?;
    }
    Ok(())
}

/// An open data directory: the store, the server's keys and the state replayed from the log.
pub struct Opened {
    pub store: Store,
    /// The log of record, when it is PostgreSQL (`--db`).
    pub pg: Option<Arc<PgLog>>,
    /// The fold of every record in the store.
    pub fold: Fold,
    pub log_key: SigningKey,
    pub automation_key: SigningKey,
    /// Records that did not verify during replay (logged; `grantline verify` names them).
    pub replay_warnings: u64,
}

fn store_error(dir: &DataDir, e: StoreError) -> DataDirError {
    match e {
        e @ StoreError::Locked { .. } => DataDirError::InUse { dir: dir.root.display().to_string(), source: e },
        other => DataDirError::Store(other),
    }
}

/// The store of `dir`: its sled store, or its replica of the PostgreSQL log of record; a lock
/// held by another process is [`DataDirError::InUse`].
pub(crate) fn open_store(dir: &DataDir) -> Result<(Store, Option<Arc<PgLog>>), DataDirError> {
    match &dir.database {
        None => Ok((Store::open(&dir.db()).map_err(|e| store_error(dir, e))?, None)),
        Some(url) => {
            let log = Arc::new(PgLog::connect(url)?);
            log.check_not_behind()?;
            let store = Store::open_replica(&dir.db(), log.clone()).map_err(|e| store_error(dir, e))?;
            Ok((store, Some(log)))
        }
    }
}

pub fn open(dir: &DataDir) -> Result<Opened, DataDirError> {
    let shown = dir.root.display().to_string();
    // A node joining a PostgreSQL ledger brings only its keys; its replica is made here.
    if !dir.db().exists() && dir.database.is_none() {
        if dir.log_key().exists() {
            return Err(DataDirError::Mismatch(format!(
                "{shown} has keys but no database (an interrupted init?); remove it and run init again"
            )));
        }
        return Err(DataDirError::NotInitialised(shown));
    }
    let missing: Vec<&'static str> = [(dir.log_key(), "log.key"), (dir.automation_key(), "automation.key")]
        .into_iter()
        .filter(|(path, _)| !path.exists())
        .map(|(_, name)| name)
        .collect();
    if !missing.is_empty() {
        return Err(DataDirError::KeysMissing { dir: shown, missing });
    }
    let log_key = SigningKey::read_file(&dir.log_key())?;
    let automation_key = SigningKey::read_file(&dir.automation_key())?;
    let opening = std::time::Instant::now();
    let (store, pg) = open_store(dir)?;
    // Worth logging: sled replays what was written since it was last opened, so this grows
    // with the previous run's writes (BENCHMARKS.md, restart).
    tracing::info!("opened the store ({} records) in {} ms", store.size(), opening.elapsed().as_millis());
    if store.size() == 0 {
        return Err(DataDirError::Mismatch(format!(
            "{} has keys but no genesis record (an interrupted init?); remove it and run init again",
            dir.root.display()
        )));
    }
    // A saved projection snapshot plus the records after it, or a full replay.
    let restoring = std::time::Instant::now();
    let (fold, replay_warnings) = crate::state_snapshot::restore(&store)?;
    let state = fold.state();
    tracing::info!("restored the projection in {} ms", restoring.elapsed().as_millis());
    if state.log_key() != Some(&log_key.verifier()) {
        return Err(DataDirError::Mismatch(format!(
            "{} does not match the log key named in the genesis record",
            dir.log_key().display()
        )));
    }
    if state.automation_key() != Some(&automation_key.verifier()) {
        return Err(DataDirError::Mismatch(format!(
            "{} does not match the automation key named in the genesis record",
            dir.automation_key().display()
        )));
    }
    Ok(Opened { store, pg, fold, log_key, automation_key, replay_warnings })
}
