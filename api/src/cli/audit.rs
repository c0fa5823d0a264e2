//! Auditing: `verify`, `export`, `import`, `monitor`, `prove`, `verify-receipt`. The work is
//! done by [`crate::audit`]; this module parses arguments and prints.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use ledger::keys::VerifierKey;

use super::error::{CliError, CliResult};
use crate::audit::engine::{self, VerifyJob};
use crate::audit::monitor::{MonitorOptions, POLL_MS_DEFAULT};
use crate::audit::receipt::Wanted;
use crate::audit::source::{DataDirSource, ExportSource, RecordSource, ServerSource};
use crate::audit::statefile::{self, SignedCheckpoint};
use crate::audit::tiles::TilesSource;
use crate::audit::{archive, exit_codes_help, read_log_key, read_small_file, receipt, AuditError, Witnesses};
use crate::audit::{exit, Failure, FailureKind};
use crate::client::Client;
use crate::limits::{NOTE_FILE_BYTES_MAX, RECEIPT_FILE_BYTES_MAX};
use crate::tiles::read::Tiles;

/// Where the `log.pub` of the examples comes from, as help text to `concat!`.
macro_rules! log_key_help {
    () => {
        "\
--log-key is the log's verifier key, or a file holding it. `grantline init` prints it and writes
it to <DATA>/log.pub; get it from the operator over a channel you trust. To pin what the server
says today instead (trust on first use):
  curl -s https://ledger.example.org/v1/log | jq -r .log_key > log.pub"
    };
}

const VERIFY_HELP: &str = concat!(
    "\
Examples:
  grantline verify --server https://ledger.example.org --log-key 'ledger.example.org/ci+1234abcd+AX...' --state auditor.json
  grantline verify --export log.jsonl --checkpoint checkpoint.txt --log-key log.pub
  grantline verify --data /var/lib/grantline --checkpoint checkpoint.txt --log-key /var/lib/grantline/log.pub
  grantline verify --tiles https://mirror.example.org/ledger --log-key log.pub

Checks every DSSE signature (Ed25519 batch verification on all cores), that each signer's key
was registered and not revoked at that seq, the BLAKE3 chain and dense seqs, the Merkle root
against a checkpoint signed by the pinned log key, consistency with the checkpoint saved in
--state by the previous run (updated atomically only after success), and replays the projector
over the whole log. On failure it names the first bad seq and the check.

The checkpoint is --checkpoint FILE, else the server's latest (--server), else <URL_OR_DIR>/checkpoint
(--tiles), else the one saved in --state. Get one with `curl URL/v1/checkpoint` or
`grantline export --checkpoint-out FILE`. With --tiles, every hash tile is authenticated against
the checkpoint and every entry bundle against its hashes before the records are checked; a tile
that fails is named.

With --witness VKEY (repeat it; e.g. the FILE.pub of `grantline witness keygen`) the checkpoint
must also carry --witness-quorum valid cosignatures (default: all listed) by distinct listed
witnesses, or verification fails with the checkpoint exit code and names the shortfall:
  grantline verify --server https://ledger.example.org --log-key log.pub --witness w1.pub --witness w2.pub

",
    log_key_help!(),
    "\n\n",
    exit_codes_help!()
);

/// Verify the whole log without trusting the server.
#[derive(Args, Debug)]
#[command(after_help = VERIFY_HELP)]
pub(crate) struct VerifyArgs {
    #[command(flatten)]
    pub from: LogSource,
    /// With --data: the PostgreSQL database the log lives in; DIR's replica catches up first.
    #[arg(long, value_name = "URL", requires = "data")]
    pub db: Option<String>,

    /// The log's verifier key (or a file holding it): the only thing trusted.
    #[arg(long, value_name = "VKEY")]
    pub log_key: String,
    /// The auditor's state: the last checkpoint it verified (created on first run).
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// A signed checkpoint note to check the Merkle root against.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    #[command(flatten)]
    pub witnesses: WitnessArgs,
}

/// The witnesses a reader requires on every checkpoint it accepts.
#[derive(Args, Debug)]
pub(crate) struct WitnessArgs {
    /// A witness's verifier key (or a file holding it, e.g. from `grantline witness keygen`);
    /// repeat for more. Checkpoints then need --witness-quorum valid cosignatures by distinct
    /// listed witnesses.
    #[arg(long = "witness", value_name = "VKEY")]
    pub witness: Vec<String>,
    /// How many of the listed witnesses must have cosigned [default: all of them].
    #[arg(long, value_name = "K", requires = "witness")]
    pub witness_quorum: Option<usize>,
}

impl WitnessArgs {
    fn required(&self) -> Result<Option<Witnesses>, CliError> {
        Ok(Witnesses::from_flags(&self.witness, self.witness_quorum)?)
    }
}

/// Exactly one place to read the log from.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub(crate) struct LogSource {
    /// A running server (pages through GET /v1/events).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// A data directory (the server must not be running on it).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// An export file (JSON Lines, as written by `grantline export`).
    #[arg(long, value_name = "FILE")]
    pub export: Option<PathBuf>,
    /// The log's C2SP tiles alone: a URL prefix (a server, a static mirror) or a directory
    /// written by `grantline mirror`.
    #[arg(long, value_name = "URL_OR_DIR")]
    pub tiles: Option<String>,
}

/// Write the log as JSON Lines (one record per line, seq order) to stdout or --out.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  grantline export --data /var/lib/grantline > log.jsonl\n  grantline export --server http://127.0.0.1:8080 --checkpoint-out checkpoint.txt > log.jsonl\n\nWith --server, the export holds exactly the records of the checkpoint written to --checkpoint-out.\nWith --data, --checkpoint-out signs a checkpoint with the data directory's log key."
)]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    pub from: ExportSourceArgs,
    /// With --data: the PostgreSQL database the log lives in; DIR's replica catches up first.
    #[arg(long, value_name = "URL", requires = "data")]
    pub db: Option<String>,
    /// Write the export here instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Also write the signed checkpoint that covers exactly the exported records.
    #[arg(long, value_name = "FILE")]
    pub checkpoint_out: Option<PathBuf>,
}

/// Exactly one place to export from.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub(crate) struct ExportSourceArgs {
    /// A running server.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// A data directory (the server must not be running on it).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
}

/// Read an export into a new data directory, verifying it completely first.
#[derive(Args, Debug)]
#[command(after_help = concat!("\
Example (restoring /var/lib/grantline from an export and a backup of its keys):
  grantline export --server https://ledger.example.org --checkpoint-out checkpoint.txt > log.jsonl
  grantline import log.jsonl --data /var/lib/grantline-restored --checkpoint checkpoint.txt \\
      --log-key /backup/grantline/log.pub
  cp /backup/grantline/log.key /backup/grantline/automation.key /var/lib/grantline-restored/
  chmod 600 /var/lib/grantline-restored/log.key /var/lib/grantline-restored/automation.key
  grantline serve --data /var/lib/grantline-restored

Nothing is written unless every check passes; the directory appears only when complete.
The private keys are not part of an export: the server needs log.key and automation.key from a
backup of the old data directory before it serves the restored one.", "\n\n", log_key_help!(), "\n\n", exit_codes_help!()))]
pub(crate) struct ImportArgs {
    /// The export file.
    pub file: PathBuf,
    /// The new data directory (must not exist, or be empty).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// The log's verifier key (or a file holding it).
    #[arg(long, value_name = "VKEY")]
    pub log_key: String,
    /// A signed checkpoint note covering the export.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,
    /// Import into this PostgreSQL database (empty; the schema is created) instead of
    /// DIR/db; DIR then holds this node's replica.
    #[arg(long, value_name = "URL")]
    pub db: Option<String>,
}

/// Watch a server: every checkpoint must be consistent with the last, every record linked.
#[derive(Args, Debug)]
#[command(after_help = concat!("Example:\n  grantline monitor --server https://ledger.example.org --log-key log.pub --state monitor.json\n\nFollows GET /v1/events/stream and polls GET /v1/checkpoint. Saves the last good checkpoint in\n--state. Exits non-zero, loudly, at the first inconsistency or invalid record.", "\n\n", log_key_help!(), "\n\n", exit_codes_help!()))]
pub(crate) struct MonitorArgs {
    /// The server to watch.
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// The log's verifier key (or a file holding it).
    #[arg(long, value_name = "VKEY")]
    pub log_key: String,
    /// The last good checkpoint (created on first run).
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
    /// How often to poll the checkpoint.
    #[arg(long, value_name = "MS", default_value_t = POLL_MS_DEFAULT)]
    pub poll_ms: u64,
    /// Check the current checkpoint and the records up to it, then exit.
    #[arg(long)]
    pub once: bool,
    /// Stop successfully after this long.
    #[arg(long, value_name = "MS")]
    pub duration_ms: Option<u64>,
    #[command(flatten)]
    pub witnesses: WitnessArgs,
}

/// Print an offline receipt for an event: its record, inclusion proof and checkpoint.
#[derive(Args, Debug)]
#[command(after_help = concat!("\
Examples:
  grantline prove open-gpu-1 > receipt.json          # by statement id
  grantline prove 7 > receipt.json                   # by seq (the genesis is seq 0)
  grantline prove --seq 7 --log-key log.pub --out receipt.json
  grantline verify-receipt receipt.json --log-key log.pub", "\n\n", log_key_help!()))]
pub(crate) struct ProveArgs {
    #[command(flatten)]
    pub event: EventArg,
    #[command(flatten)]
    pub server: super::signer::ServerOpt,
    /// Pin the log key (default: the server's, from GET /v1/log).
    #[arg(long, value_name = "VKEY")]
    pub log_key: Option<String>,
    /// Write the receipt here instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Exactly one way to name the event to prove.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub(crate) struct EventArg {
    /// The event: a number is its seq, anything else its statement id.
    #[arg(value_name = "ID|SEQ")]
    pub event: Option<String>,
    /// The event's seq in the log (0 is the genesis).
    #[arg(long, value_name = "N")]
    pub seq: Option<u64>,
    /// The event's statement id, even one made only of digits.
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
}

impl EventArg {
    fn wanted(&self) -> Result<Wanted, CliError> {
        match (&self.event, self.seq, &self.id) {
            (Some(arg), None, None) => Ok(Wanted::from_arg(arg)),
            (None, Some(seq), None) => Ok(Wanted::Seq(seq)),
            (None, None, Some(id)) => Ok(Wanted::Id(id.clone())),
            _ => Err(CliError::new("name the event once: ID|SEQ, --seq N or --id ID")),
        }
    }
}

/// Check a receipt with no server: checkpoint signature, leaf hash, inclusion proof, fields.
#[derive(Args, Debug)]
#[command(after_help = concat!("Example:\n  grantline verify-receipt receipt.json --log-key log.pub", "\n\n", log_key_help!(), "\n\n", exit_codes_help!()))]
pub(crate) struct VerifyReceiptArgs {
    /// The receipt file (from `grantline prove`).
    pub file: PathBuf,
    /// The log's verifier key (or a file holding it).
    #[arg(long, value_name = "VKEY")]
    pub log_key: String,
    #[command(flatten)]
    pub witnesses: WitnessArgs,
}

impl From<AuditError> for CliError {
    fn from(e: AuditError) -> CliError {
        let message = match &e {
            AuditError::Failed(f) => format!("VERIFICATION FAILED: {f}"),
            other => other.to_string(),
        };
        let problem = match &e {
            AuditError::Server(crate::client::ClientError::Problem(p)) => Some(Box::new(p.clone())),
            _ => None,
        };
        CliError { message, code: e.exit_code(), problem }
    }
}

fn log_key(text: &str) -> Result<VerifierKey, CliError> {
    Ok(read_log_key(text)?)
}

fn read_checkpoint(path: &Path, key: &VerifierKey) -> Result<SignedCheckpoint, CliError> {
    let bytes = read_small_file(path, NOTE_FILE_BYTES_MAX)?;
    let note = String::from_utf8(bytes).map_err(|_| CliError::new(format!("{}: not UTF-8", path.display())))?;
    Ok(archive::open_checkpoint(&note, key, &format!("checkpoint {}", path.display()))?)
}

pub(super) fn verify(a: VerifyArgs) -> CliResult {
    let key = log_key(&a.log_key)?;
    let witnesses = a.witnesses.required()?;
    let given = a.checkpoint.as_deref().map(|p| read_checkpoint(p, &key)).transpose()?;
    let saved = || -> Result<Option<SignedCheckpoint>, CliError> {
        Ok(match &a.state {
            Some(path) => statefile::load(path, &key)?,
            None => None,
        })
    };
    let server = a.from.server.as_deref().map(Client::new).transpose()?;
    let tiles =
        a.from.tiles.as_deref().map(Tiles::open).transpose().map_err(|e| CliError::with_code(e, exit::USAGE))?;
    let given = match (given, &tiles) {
        (None, Some(tiles)) => Some(tiles_checkpoint(tiles, &key)?),
        (given, _) => given,
    };
    let checkpoint = match (given, &server) {
        (Some(cp), _) => cp,
        (None, Some(server)) => archive::open_checkpoint(&server.checkpoint()?, &key, "the server's checkpoint")?,
        (None, None) => saved()?.ok_or_else(|| {
            CliError::with_code("no checkpoint to verify the Merkle root against: pass --checkpoint FILE (from `curl URL/v1/checkpoint` or `grantline export --checkpoint-out`)", crate::audit::exit::USAGE)
        })?,
    };
    if let Some(w) = &witnesses {
        w.require(&checkpoint.note, checkpoint.checkpoint.size, "the checkpoint verified against")?;
    }
    let mut source: Box<dyn RecordSource + '_> = match (&server, &a.from.data, &a.from.export) {
        (Some(server), _, _) => Box::new(ServerSource::new(server, checkpoint.checkpoint.size)),
        (None, Some(dir), _) => Box::new(DataDirSource::open(dir, a.db.as_deref())?),
        (None, None, Some(file)) => Box::new(ExportSource::open(file)?),
        (None, None, None) => match &tiles {
            Some(tiles) => Box::new(TilesSource::open(tiles, &checkpoint.checkpoint)?),
            None => return Err(CliError::new("give --server, --data, --export or --tiles")),
        },
    };
    eprintln!("verifying {} against a checkpoint of {} records", source.describe(), checkpoint.checkpoint.size);
    let job = VerifyJob { log_key: &key, checkpoint: &checkpoint, state_path: a.state.as_deref(), progress: true };
    let (report, _) = engine::verify(source.as_mut(), &job)?;
    print!("{}", report.render());
    if let Some(path) = &a.state {
        println!("state saved to {}", path.display());
    }
    Ok(())
}

/// `<tiles>/checkpoint`, opened with the pinned log key.
fn tiles_checkpoint(tiles: &Tiles, key: &VerifierKey) -> Result<SignedCheckpoint, CliError> {
    let whence = tiles.checkpoint_location();
    let bytes =
        tiles.checkpoint().map_err(|e| CliError::with_code(format!("cannot read the checkpoint: {e}"), exit::IO))?;
    let note = String::from_utf8(bytes)
        .map_err(|_| AuditError::Failed(Failure::new(FailureKind::Checkpoint, None, format!("{whence}: not UTF-8"))))?;
    Ok(archive::open_checkpoint(&note, key, &whence)?)
}

fn output(out: Option<&Path>) -> Result<Box<dyn Write>, CliError> {
    Ok(match out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|e| CliError::new(format!("{}: {e}", path.display())))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    })
}

pub(super) fn export(a: ExportArgs) -> CliResult {
    let mut out = output(a.out.as_deref())?;
    let (count, note) = match (&a.from.server, &a.from.data) {
        (Some(url), _) => {
            let server = Client::new(url)?;
            let note = server.checkpoint()?;
            let info = server.log_info()?;
            let key =
                VerifierKey::parse(&info.log_key).map_err(|e| CliError::new(format!("the server's log key: {e}")))?;
            let size = archive::open_checkpoint(&note, &key, "the server's checkpoint")?.checkpoint.size;
            (archive::export_server(&server, size, &mut out)?, Some(note))
        }
        (None, Some(dir)) => {
            let store = crate::audit::source::open_store(dir, a.db.as_deref())?;
            let count = archive::export_store(&store, &mut out)?;
            let note = match &a.checkpoint_out {
                Some(_) => {
                    let log_key = ledger::keys::SigningKey::read_file(&crate::datadir::DataDir::new(dir).log_key())?;
                    let root = store.root_at(count).map_err(|e| CliError::new(e.to_string()))?;
                    let cp = ledger::checkpoint::Checkpoint { origin: log_key.name().to_string(), size: count, root };
                    Some(cp.sign(&log_key).map_err(|e| CliError::new(e.to_string()))?)
                }
                None => None,
            };
            (count, note)
        }
        (None, None) => return Err(CliError::new("give --server or --data")),
    };
    out.flush().map_err(|e| CliError::new(format!("writing the export: {e}")))?;
    if let (Some(path), Some(note)) = (&a.checkpoint_out, note) {
        statefile::write_atomically(path, note.as_bytes())?;
    }
    eprintln!("exported {count} records");
    Ok(())
}

pub(super) fn import(a: ImportArgs) -> CliResult {
    let key = log_key(&a.log_key)?;
    let checkpoint = read_checkpoint(&a.checkpoint, &key)?;
    let job = VerifyJob { log_key: &key, checkpoint: &checkpoint, state_path: None, progress: true };
    let report = archive::import(&a.file, &a.data, a.db.as_deref(), &job)?;
    print!("{}", report.render());
    println!("imported {} records into {}", report.events, a.data.display());
    let db = a.db.as_ref().map(|_| " --db URL").unwrap_or_default();
    println!(
        "before `grantline serve --data {dir}{db}`: copy log.key and automation.key from the backup of the old data \
         directory into {dir} (mode 0600); an export holds no private key",
        dir = a.data.display()
    );
    Ok(())
}

pub(super) fn monitor(a: MonitorArgs) -> CliResult {
    let key = log_key(&a.log_key)?;
    let server = Client::new(&a.server)?;
    let opts = MonitorOptions {
        poll_ms: a.poll_ms,
        once: a.once,
        duration_ms: a.duration_ms,
        witnesses: a.witnesses.required()?,
    };
    let mut say = |line: &str| eprintln!("{line}");
    match crate::audit::monitor::run(&server, &key, &a.state, &opts, &mut say) {
        Ok(report) => {
            println!(
                "monitor: {} records followed, {} checkpoints verified; last good checkpoint: {} records (saved in {})",
                report.records,
                report.checkpoints,
                report.size,
                a.state.display()
            );
            Ok(())
        }
        Err(e) => {
            if let AuditError::Failed(f) = &e {
                eprintln!("!!! ALERT: {f}");
            }
            Err(e.into())
        }
    }
}

pub(super) fn prove(a: ProveArgs) -> CliResult {
    let server = Client::new(&a.server.server)?;
    let key = a.log_key.as_deref().map(log_key).transpose()?;
    let receipt = receipt::prove(&server, &a.event.wanted()?, key.as_ref())?;
    let mut out = output(a.out.as_deref())?;
    out.write_all(&receipt.to_bytes()).and_then(|_| out.flush()).map_err(|e| CliError::new(format!("writing: {e}")))?;
    Ok(())
}

pub(super) fn verify_receipt(a: VerifyReceiptArgs) -> CliResult {
    let key = log_key(&a.log_key)?;
    let witnesses = a.witnesses.required()?;
    let bytes = read_small_file(&a.file, RECEIPT_FILE_BYTES_MAX)?;
    let proven = match &witnesses {
        Some(w) => receipt::verify_witnessed(&bytes, &key, w)?,
        None => receipt::verify(&bytes, &key)?,
    };
    let cosigned = witnesses
        .map(|w| format!(", cosigned by at least {} of the {} witnesses listed", w.quorum, w.keys.len()))
        .unwrap_or_default();
    println!(
        "receipt verified: event {} ({}) is seq {} of the log {} (checkpoint of {} records{cosigned})",
        proven.id,
        proven.kind,
        proven.seq,
        key.name(),
        proven.tree_size
    );
    Ok(())
}
