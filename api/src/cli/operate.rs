//! Operating the ledger: `init`, `serve`, `keygen`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use ledger::keys::SigningKey;
use ledger::statement::is_valid_actor_name;

use super::error::{CliError, CliResult};
use crate::datadir::{self, DataDir, DEFAULT_ADMIN, DEFAULT_DATA_DIR, DEFAULT_ORIGIN};
use crate::github::{GitHub, GitHubFlags};
use crate::limits::{QUEUE_DEPTH_ENV, SEQUENCER_QUEUE_DEPTH_MAX};
use crate::server::witnessing::{WitnessConfig, WitnessSpec};
use crate::server::{self, ServeConfig};

/// Create a new ledger: log and automation keys, the admin key and the genesis record.
#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  grantline init --data /var/lib/grantline --origin ledger.example.org/ci \\\n      --admin alice --admin-key-out alice.key\n\nPrints the log's verifier key and writes it to <DATA>/log.pub: give it to auditors so they can\npin it (`--log-key <DATA>/log.pub`). Keep log.key and automation.key (mode 0600) backed up:\nan export holds no private key, and a restored log needs these two files back."
)]
pub(crate) struct InitArgs {
    /// Data directory to create (mode 0700); holds the database and the server's keys.
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// The log's name, URL-like without scheme, e.g. ledger.example.org/ci.
    #[arg(long, value_name = "NAME")]
    pub origin: String,
    /// Name of the first admin actor.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_ADMIN)]
    pub admin: String,
    /// Where to write the admin's private key (mode 0600; never overwritten).
    #[arg(long, value_name = "FILE")]
    pub admin_key_out: PathBuf,
    /// Keep the log in this PostgreSQL database (empty; the schema is created), e.g.
    /// postgres://grantline@db.example.org/grantline. Without it the log is in DIR/db (sled).
    #[arg(long, value_name = "URL", env = "GRANTLINE_DB")]
    pub db: Option<String>,
}

/// Run the HTTP server (with no --data, over ./grantline-data, created on first run).
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  grantline serve                      # ./grantline-data on 127.0.0.1:8080\n  grantline serve --data /var/lib/grantline --addr 0.0.0.0:8080\n\nWith no --data, the first run creates ./grantline-data (a ledger named by --origin) and writes\nthe admin key to grantline-data/admin.key; it says so on stdout. A directory given with --data\nmust already be a ledger: make one with `grantline init`. Stop with Ctrl-C or SIGTERM. Logs go\nto stderr (RUST_LOG=debug for more)."
)]
pub(crate) struct ServeArgs {
    /// Data directory made by `grantline init` [default: ./grantline-data, created on first run].
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Origin of the ledger created in ./grantline-data on the first run without --data.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_ORIGIN)]
    pub origin: String,
    /// Admin name of the ledger created in ./grantline-data on the first run without --data.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_ADMIN)]
    pub admin: String,
    /// Serve the log kept in this PostgreSQL database (made by `init --db`); any number of
    /// nodes may serve one database. DIR then needs only copies of log.key and automation.key.
    #[arg(long, value_name = "URL", env = "GRANTLINE_DB", requires = "data")]
    pub db: Option<String>,
    /// With --db: the URL other nodes forward writes to while this node leads, e.g.
    /// http://10.0.0.5:8080 [default: http://ADDR].
    #[arg(long, value_name = "URL", requires = "db")]
    pub advertise: Option<String>,
    /// Depth of the write queue (tests lower it to exercise 503).
    #[arg(long, env = QUEUE_DEPTH_ENV, default_value_t = SEQUENCER_QUEUE_DEPTH_MAX, hide = true)]
    pub queue_depth: usize,
    /// GitHub organisation whose repositories are the ledger's projects: turns on the webhook
    /// (POST /v1/github/webhook) and the job gate (POST /v1/access/job).
    #[arg(long, value_name = "ORG", requires = "github_webhook_secret")]
    pub github_org: Option<String>,
    /// File (mode 0600) holding the webhook secret set on GitHub's webhook.
    #[arg(long, value_name = "FILE", requires = "github_org")]
    pub github_webhook_secret: Option<PathBuf>,
    /// File (mode 0600) holding the previous webhook secret, still accepted while rotating.
    #[arg(long, value_name = "FILE", requires = "github_webhook_secret")]
    pub github_webhook_secret_previous: Option<PathBuf>,
    /// A witness to ask for cosignatures: its URL prefix (POST /add-checkpoint is appended),
    /// '=', and its verifier key or a file holding it; repeat for more. Readers then get the
    /// newest checkpoint with --witness-quorum cosignatures.
    #[arg(long = "witness", value_name = "URL=VKEY")]
    pub witness: Vec<String>,
    /// How many witnesses must cosign a checkpoint before readers get it [default: all listed].
    #[arg(long, value_name = "K", requires = "witness")]
    pub witness_quorum: Option<usize>,
}

/// Generate a key pair for an actor.
#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  grantline keygen alice --out alice.key\n\nWrites the private key to FILE (mode 0600) and the verifier key to FILE.pub, and prints the\nverifier key: give it to an admin, who registers you with `grantline register-actor`."
)]
pub(crate) struct KeygenArgs {
    /// Actor name: lowercase letters, digits, '.', '_' and '-' (e.g. conda-forge-bot).
    pub name: String,
    /// Where to write the private key (never overwritten).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

pub(super) fn init(a: InitArgs) -> CliResult {
    let dir = DataDir::new(&a.data).with_database(a.db.clone());
    let report = datadir::init(&dir, &a.origin, &a.admin, &a.admin_key_out)?;
    print_init_report(&dir, &report);
    Ok(())
}

fn print_init_report(dir: &DataDir, report: &datadir::InitReport) {
    println!("initialised ledger {} in {}", report.origin, dir.root.display());
    println!("  admin {:?} key (secret, mode 0600): {}", report.admin_key.name(), report.admin_key_path.display());
    println!("  admin verifier key: {}", report.admin_key);
    println!("  log verifier key (auditors pin this): {}", report.log_key);
    println!("  log verifier key file (for --log-key): {}", dir.log_pub().display());
}

pub(super) fn serve(a: ServeArgs) -> CliResult {
    if a.queue_depth == 0 {
        return Err(CliError::new("--queue-depth must be at least 1"));
    }
    let dir = match &a.data {
        // Named explicitly: never made up here, where a typo would start a second ledger
        // with a new log key.
        Some(path) => DataDir::new(path).with_database(a.db.clone()),
        None => {
            let dir = DataDir::new(DEFAULT_DATA_DIR);
            if !dir.is_initialised() {
                println!(
                    "no --data given and ./{DEFAULT_DATA_DIR} holds no ledger yet: creating one there (first run)"
                );
                let report = datadir::init(&dir, &a.origin, &a.admin, &dir.default_admin_key())?;
                print_init_report(&dir, &report);
            }
            dir
        }
    };
    // Read before the data directory is opened: a bad secret file stops start-up at once.
    let github = match (a.github_org, a.github_webhook_secret) {
        (Some(org), Some(secret)) => {
            let flags = GitHubFlags { org, secret, secret_previous: a.github_webhook_secret_previous };
            Some(GitHub::load(&flags).map_err(|e| CliError::new(e.to_string()))?)
        }
        _ => None,
    };
    let witnesses = witness_config(&a.witness, a.witness_quorum)?;
    let opened = datadir::open(&dir)?;
    let config = ServeConfig {
        data: dir,
        addr: a.addr,
        queue_depth: a.queue_depth.min(SEQUENCER_QUEUE_DEPTH_MAX),
        github,
        advertise: a.advertise,
        witnesses,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(server::serve(config, opened)).map_err(|e| CliError::new(e.to_string()))
}

/// `--witness URL=VKEY …` (split at the first '=') and `--witness-quorum K`.
fn witness_config(flags: &[String], quorum: Option<usize>) -> Result<Option<WitnessConfig>, CliError> {
    if flags.is_empty() {
        return Ok(None);
    }
    let mut specs = Vec::with_capacity(flags.len());
    for flag in flags {
        let (url, vkey) = flag.split_once('=').ok_or_else(|| {
            CliError::new(format!("--witness {flag:?}: give URL=VKEY (the witness's URL prefix and its verifier key)"))
        })?;
        let key = crate::audit::read_witness_key(vkey)?;
        specs.push(WitnessSpec::new(url, key).map_err(CliError::new)?);
    }
    Ok(Some(WitnessConfig::new(specs, quorum).map_err(CliError::new)?))
}

pub(super) fn keygen(a: KeygenArgs) -> CliResult {
    if !is_valid_actor_name(&a.name) {
        return Err(CliError::new(format!(
            "invalid actor name {:?}: use lowercase letters, digits, '.', '_' and '-' (at most 64)",
            a.name
        )));
    }
    let key = SigningKey::generate(&a.name)?;
    let mut pub_path = a.out.clone().into_os_string();
    pub_path.push(".pub");
    let pub_path = PathBuf::from(pub_path);
    if pub_path.exists() {
        return Err(CliError::new(format!("{} exists; refusing to overwrite", pub_path.display())));
    }
    key.write_file(&a.out).map_err(|e| CliError::new(format!("cannot write {}: {e}", a.out.display())))?;
    let verifier = key.verifier().to_string();
    std::fs::write(&pub_path, format!("{verifier}\n"))
        .map_err(|e| CliError::new(format!("cannot write {}: {e}", pub_path.display())))?;
    println!("{verifier}");
    eprintln!(
        "private key: {} (keep it secret)\nverifier key: {} (give it to an admin to register {:?})",
        a.out.display(),
        pub_path.display(),
        a.name
    );
    Ok(())
}
