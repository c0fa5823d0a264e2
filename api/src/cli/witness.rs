//! Running a witness (DESIGN.md section 12): `witness keygen`, `witness serve`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use ledger::cosignature::Cosigner;
use ledger::keys::VerifierKey;

use super::error::{CliError, CliResult};
use crate::witness::{self, WitnessConfig};

/// Run a C2SP tlog-witness: cosign the checkpoints of the logs it follows.
#[derive(Args, Debug)]
pub(crate) struct WitnessArgs {
    #[command(subcommand)]
    pub command: WitnessCommand,
}

#[derive(Subcommand, Debug)]
pub(crate) enum WitnessCommand {
    Keygen(KeygenArgs),
    Serve(ServeArgs),
}

impl WitnessArgs {
    /// Whether this runs a long-lived service (it logs at info by default).
    pub(crate) fn serves(&self) -> bool {
        matches!(self.command, WitnessCommand::Serve(_))
    }
}

/// Make a witness key: the private key in FILE (mode 0600), the verifier key in FILE.pub.
#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  grantline witness keygen witness.example.org/w1 --out w1.key\n\nPrints the verifier key \
                  (<name>+<hex id>+<base64>, tlog-cosignature v1): give it to the logs that ask this witness\n\
                  (`grantline serve --witness URL=VKEY`) and to their readers (`--witness VKEY`)."
)]
pub(crate) struct KeygenArgs {
    /// The witness's name, URL-like without scheme, e.g. witness.example.org/w1.
    pub name: String,
    /// Where to write the private key (mode 0600; never overwritten); FILE.pub gets the verifier key.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// Run a witness: `POST /add-checkpoint` (C2SP tlog-witness v1.0.0).
#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  grantline witness serve --key w1.key --data /var/lib/grantline-witness \\\n      --log \
                  ledger.example.org/ci=ledger.example.org/ci+1234abcd+AQ... --addr 0.0.0.0:8081\n\nThe last \
                  cosigned checkpoint of each log is kept in DIR, written durably before each answer.\nStop with \
                  Ctrl-C or SIGTERM."
)]
pub(crate) struct ServeArgs {
    /// The witness's private key (made by `grantline witness keygen`; mode 0600).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// A log to follow: its origin and its verifier key (`log.pub`), split at the first '='.
    /// Repeat for more logs, or for more keys of one log.
    #[arg(long = "log", value_name = "ORIGIN=VKEY", required = true)]
    pub logs: Vec<String>,
    /// Directory for the witness's state (created if missing).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8081")]
    pub addr: SocketAddr,
}

pub(super) fn run(a: WitnessArgs) -> CliResult {
    match a.command {
        WitnessCommand::Keygen(a) => keygen(a),
        WitnessCommand::Serve(a) => serve(a),
    }
}

fn keygen(a: KeygenArgs) -> CliResult {
    let key = Cosigner::generate(&a.name)?;
    let mut pub_path = a.out.clone().into_os_string();
    pub_path.push(".pub");
    let pub_path = PathBuf::from(pub_path);
    if pub_path.exists() {
        return Err(CliError::new(format!("{} exists; refusing to overwrite", pub_path.display())));
    }
    write_new(&a.out, &format!("{}\n", key.to_private_text()), true)
        .map_err(|e| CliError::new(format!("cannot write {}: {e}", a.out.display())))?;
    let verifier = key.verifier().to_string();
    write_new(&pub_path, &format!("{verifier}\n"), false)
        .map_err(|e| CliError::new(format!("cannot write {}: {e}", pub_path.display())))?;
    println!("{verifier}");
    eprintln!(
        "private key: {} (keep it secret)\nverifier key: {} (give it to the logs and readers that trust this witness)",
        a.out.display(),
        pub_path.display()
    );
    Ok(())
}

/// Writes a new file (never an existing one), 0600 when `secret`, and syncs it.
fn write_new(path: &Path, text: &str, secret: bool) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = opts.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// `ORIGIN=VKEY`, split at the first '='; the key's name must be the origin.
fn parse_log(arg: &str) -> Result<VerifierKey, CliError> {
    let (origin, vkey) = arg
        .split_once('=')
        .ok_or_else(|| CliError::new(format!("--log {arg:?}: expected ORIGIN=VKEY (the log's origin and log.pub)")))?;
    let key = VerifierKey::parse(vkey.trim())
        .map_err(|e| CliError::new(format!("--log {origin}=…: the log key is not usable: {e}")))?;
    if key.name() != origin {
        return Err(CliError::new(format!(
            "--log {origin}=…: the key is named {:?}, not {origin:?}; a log signs its checkpoints with a key \
             named after its origin (C2SP tlog-checkpoint), so a checkpoint of {origin:?} could never be \
             signed by this key",
            key.name()
        )));
    }
    Ok(key)
}

fn serve(a: ServeArgs) -> CliResult {
    let cosigner = Cosigner::read_file(&a.key)?;
    let log_keys = a.logs.iter().map(|arg| parse_log(arg)).collect::<Result<Vec<_>, _>>()?;
    let config = WitnessConfig { cosigner, log_keys, data: a.data, addr: a.addr };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(witness::serve(config)).map_err(|e| CliError::new(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_arguments_split_at_the_first_equals_and_need_the_origin_as_key_name() {
        let key = ledger::keys::SigningKey::generate("log.example/a").unwrap().verifier();
        assert_eq!(parse_log(&format!("log.example/a={key}")).ok(), Some(key.clone()));
        // A '=' after the first one belongs to the key text (and breaks it).
        assert!(parse_log(&format!("log.example/a={key}=")).is_err());
        let other = ledger::keys::SigningKey::generate("log.example/other").unwrap().verifier();
        let err = parse_log(&format!("log.example/a={other}")).err().unwrap().message;
        assert!(err.contains("named \"log.example/other\""), "{err}");
        assert!(parse_log("log.example/a").is_err());
        assert!(parse_log("log.example/a=garbage").is_err());
    }
}
