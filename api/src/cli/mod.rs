//! The `grantline` command line. One module per group of commands; a new command is a new
//! variant of [`Command`] plus a module.

pub mod audit;
pub mod interop;
pub mod operate;
pub mod read;
pub mod table;
pub mod write;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::client::{Client, ClientError};

/// Exit code for errors (clap uses 2 for usage errors).
pub const EXIT_ERROR: u8 = 1;
/// Exit code of `grantline check` when access is denied.
pub const EXIT_DENIED: u8 = 3;

const ABOUT: &str = "grantline: a transparent, signed ledger of who may use which CI runner.";

const LONG_ABOUT: &str = "\
grantline: a transparent, signed ledger of who may use which CI runner.

Every request, approval, grant, revocation, deposit and usage report is an Ed25519-signed event
in an append-only, verifiable log. The server derives who may use what from that log.

Getting started:
  grantline serve                      # starts a server on 127.0.0.1:8080 over ./grantline-data,
                                       # creating it (and ./grantline-data/admin.key) on first run
  grantline keygen alice --out alice.key
  grantline register-actor alice @alice.key.pub --roles reviewer --key grantline-data/admin.key

Client commands talk to --server (env GRANTLINE_SERVER, default http://127.0.0.1:8080) and sign
with --key FILE (env GRANTLINE_KEY): the key's name is the actor the event is made by.";

#[derive(Parser, Debug)]
#[command(name = "grantline", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    // Operating the ledger.
    Init(operate::InitArgs),
    Serve(operate::ServeArgs),
    Keygen(operate::KeygenArgs),
    // Writing events.
    Submit(write::SubmitArgs),
    Request(write::RequestArgs),
    Approve(write::ApproveArgs),
    Deny(write::DenyArgs),
    Withdraw(write::WithdrawArgs),
    Revoke(write::RevokeArgs),
    RegisterActor(write::RegisterActorArgs),
    DefineResource(write::DefineResourceArgs),
    RegisterSponsor(write::RegisterSponsorArgs),
    Deposit(write::DepositArgs),
    ReportUsage(write::ReportUsageArgs),
    // Reading.
    Allocations(read::AllocationsArgs),
    Check(read::CheckArgs),
    Usage(read::UsageArgs),
    Requests(read::RequestsArgs),
    // conda-forge interop.
    ImportCirunAccess(interop::ImportArgs),
    ExportCirunAccess(interop::ExportArgs),
    ExportRunnerLabels(interop::ExportRunnerLabelsArgs),
    // Auditing: trust nothing but the log key.
    Verify(audit::VerifyArgs),
    Export(audit::ExportArgs),
    Import(audit::ImportArgs),
    Monitor(audit::MonitorArgs),
    Prove(audit::ProveArgs),
    VerifyReceipt(audit::VerifyReceiptArgs),
    // Benchmarks.
    Loadgen(crate::loadgen::LoadgenArgs),
}

/// Which server to talk to.
#[derive(Args, Debug, Clone)]
pub struct ServerOpt {
    /// The grantline server (plain http).
    #[arg(long, env = "GRANTLINE_SERVER", default_value = "http://127.0.0.1:8080", value_name = "URL")]
    pub server: String,
}

impl ServerOpt {
    pub fn client(&self) -> Result<Client, CliError> {
        Ok(Client::new(&self.server)?)
    }
}

/// Which server to post to and which key signs.
#[derive(Args, Debug, Clone)]
pub struct SignerOpts {
    #[command(flatten)]
    pub server: ServerOpt,
    /// Private key file that signs the event; its name is the actor (made by `grantline keygen`).
    #[arg(long, env = "GRANTLINE_KEY", value_name = "FILE")]
    pub key: PathBuf,
    /// Print the receipt as JSON instead of a sentence.
    #[arg(long)]
    pub json: bool,
}

/// An error for the user: a message and an exit code.
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub code: u8,
}

impl CliError {
    pub fn new(message: impl Into<String>) -> CliError {
        CliError { message: message.into(), code: EXIT_ERROR }
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> CliError {
        match e {
            ClientError::Problem(p) => {
                CliError::new(format!("{} (HTTP {}, {})\n  {}", p.title, p.status, p.code, p.detail))
            }
            other => CliError::new(other.to_string()),
        }
    }
}

impl From<crate::datadir::DataDirError> for CliError {
    fn from(e: crate::datadir::DataDirError) -> CliError {
        CliError::new(e.to_string())
    }
}

impl From<ledger::keys::KeyError> for CliError {
    fn from(e: ledger::keys::KeyError) -> CliError {
        CliError::new(e.to_string())
    }
}

pub type CliResult = Result<(), CliError>;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(matches!(cli.command, Command::Serve(_)));
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.message.is_empty() {
                eprintln!("error: {}", e.message);
            }
            ExitCode::from(e.code)
        }
    }
}

fn init_tracing(serving: bool) {
    let default = if serving { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

pub fn run(cli: Cli) -> CliResult {
    match cli.command {
        Command::Init(a) => operate::init(a),
        Command::Serve(a) => operate::serve(a),
        Command::Keygen(a) => operate::keygen(a),
        Command::Submit(a) => write::submit(a),
        Command::Request(a) => write::request(a),
        Command::Approve(a) => write::approve(a),
        Command::Deny(a) => write::deny(a),
        Command::Withdraw(a) => write::withdraw(a),
        Command::Revoke(a) => write::revoke(a),
        Command::RegisterActor(a) => write::register_actor(a),
        Command::DefineResource(a) => write::define_resource(a),
        Command::RegisterSponsor(a) => write::register_sponsor(a),
        Command::Deposit(a) => write::deposit(a),
        Command::ReportUsage(a) => write::report_usage(a),
        Command::Allocations(a) => read::allocations(a),
        Command::Check(a) => read::check(a),
        Command::Usage(a) => read::usage(a),
        Command::Requests(a) => read::requests(a),
        Command::ImportCirunAccess(a) => interop::import(a),
        Command::ExportCirunAccess(a) => interop::export(a),
        Command::ExportRunnerLabels(a) => interop::export_runner_labels(a),
        Command::Verify(a) => audit::verify(a),
        Command::Export(a) => audit::export(a),
        Command::Import(a) => audit::import(a),
        Command::Monitor(a) => audit::monitor(a),
        Command::Prove(a) => audit::prove(a),
        Command::VerifyReceipt(a) => audit::verify_receipt(a),
        Command::Loadgen(a) => crate::loadgen::run(a),
    }
}

/// Reads a file the user named, with a size limit and a clear error.
pub fn read_input_file(path: &std::path::Path) -> Result<String, CliError> {
    let meta = std::fs::metadata(path).map_err(|e| CliError::new(format!("cannot read {}: {e}", path.display())))?;
    if meta.len() > crate::limits::CLIENT_FILE_BYTES_MAX {
        return Err(CliError::new(format!("{} is too large ({} bytes)", path.display(), meta.len())));
    }
    std::fs::read_to_string(path).map_err(|e| CliError::new(format!("cannot read {}: {e}", path.display())))
}
