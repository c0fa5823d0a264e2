//! The `grantline` command line. One module per group of commands; a new command is a new
//! variant of [`Command`] plus a module.

mod audit;
mod error;
mod interop;
mod loadgen;
mod mirror;
mod operate;
mod read;
mod signer;
mod table;
mod witness;
mod write;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use error::CliResult;

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
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
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
    Mirror(mirror::MirrorArgs),
    // Benchmarks.
    Loadgen(loadgen::LoadgenArgs),
    // Witnessing other logs.
    Witness(witness::WitnessArgs),
}

/// Runs the command line; on failure, the error on stderr (and with `--json`, the server's
/// problem document on stdout) and its exit code.
pub fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let json = wants_json(&matches);
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.format(&mut Cli::command()).exit(),
    };
    init_tracing(matches!(cli.command, Command::Serve(_)) || matches!(&cli.command, Command::Witness(w) if w.serves()));
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if json {
                if let Some(problem) = &e.problem {
                    println!("{}", serde_json::to_string_pretty(problem).unwrap_or_default());
                }
            }
            if !e.message.is_empty() {
                eprintln!("error: {}", e.message);
            }
            ExitCode::from(e.code)
        }
    }
}

/// Whether the subcommand was given `--json` (any command that has the flag).
fn wants_json(matches: &clap::ArgMatches) -> bool {
    matches.subcommand().is_some_and(|(_, sub)| sub.try_get_one::<bool>("json").ok().flatten().copied() == Some(true))
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

pub(crate) fn run(cli: Cli) -> CliResult {
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
        Command::Mirror(a) => mirror::run(a),
        Command::Loadgen(a) => loadgen::run(a),
        Command::Witness(a) => witness::run(a),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every option and argument of every command says what it is for (`--help` lists them).
    #[test]
    fn every_argument_has_help() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                let help = arg.get_help().or(arg.get_long_help()).map(|h| h.to_string()).unwrap_or_default();
                if help.trim().is_empty() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut command = Cli::command();
        command.build();
        let mut missing = Vec::new();
        walk(&command, "grantline", &mut missing);
        assert!(missing.is_empty(), "arguments without help:\n{}", missing.join("\n"));
    }
}
