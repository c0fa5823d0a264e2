//! Who a client command talks to and signs as: `--server`, `--key`, and the [`Signer`] that
//! signs and posts events for the write and interop commands.

use std::path::PathBuf;

use clap::Args;
use ledger::keys::SigningKey;
use serde_json::Value;

use super::error::CliError;
use crate::client::{random_id, sign_statement, Client, Submitted};

#[derive(Args, Debug, Clone)]
pub(crate) struct ServerOpt {
    /// The grantline server's URL (http:// or https://).
    #[arg(long, env = "GRANTLINE_SERVER", default_value = "http://127.0.0.1:8080", value_name = "URL")]
    pub server: String,
}

impl ServerOpt {
    pub(crate) fn client(&self) -> Result<Client, CliError> {
        Ok(Client::new(&self.server)?)
    }
}

/// Which server to post to and which key signs.
#[derive(Args, Debug, Clone)]
pub(crate) struct SignerOpts {
    #[command(flatten)]
    pub server: ServerOpt,
    /// Private key file that signs the event; its name is the actor (made by `grantline keygen`).
    #[arg(long, env = "GRANTLINE_KEY", value_name = "FILE")]
    pub key: PathBuf,
    /// Print the receipt as JSON instead of a sentence; on a refusal, the server's problem
    /// document (RFC 9457) on stdout, with the same exit code.
    #[arg(long)]
    pub json: bool,
}

/// A client that signs as one actor for one log.
pub(super) struct Signer {
    pub client: Client,
    pub key: SigningKey,
    pub origin: String,
    pub json: bool,
}

impl Signer {
    pub(super) fn open(opts: &SignerOpts) -> Result<Signer, CliError> {
        let key = SigningKey::read_file(&opts.key)?;
        let client = opts.server.client()?;
        let origin = client.log_info()?.origin;
        Ok(Signer { client, key, origin, json: opts.json })
    }

    /// Signs and posts one event; `id` defaults to a random unique id.
    pub(super) fn post(&self, kind: &str, id: Option<String>, data: Value) -> Result<Submitted, CliError> {
        let id = id.unwrap_or_else(|| random_id(kind));
        let (_, envelope) = sign_statement(&self.key, &self.origin, &id, kind, data);
        self.client.post_envelope(envelope).map_err(|e| {
            let mut err = CliError::from(e);
            err.message = format!("the server did not log {kind} {id:?}: {}", err.message);
            err
        })
    }

    /// Prints what happened: the receipt as JSON with --json, else a sentence.
    pub(super) fn report(&self, submitted: &Submitted, summary: &str) {
        let r = &submitted.receipt;
        if self.json {
            println!("{}", serde_json::to_string_pretty(r).unwrap_or_default());
            return;
        }
        if submitted.new {
            println!("{summary}");
            println!("  logged as record {} (id {}), in checkpoint of size {}", r.seq, r.id, r.inclusion.tree_size);
        } else {
            println!("{summary} (already logged: identical re-submission)");
            println!("  record {} (id {})", r.seq, r.id);
        }
    }
}

/// Reads a file the user named, with a size limit and a clear error.
pub(super) fn read_input_file(path: &std::path::Path) -> Result<String, CliError> {
    let meta = std::fs::metadata(path).map_err(|e| CliError::new(format!("cannot read {}: {e}", path.display())))?;
    if meta.len() > crate::limits::CLIENT_FILE_BYTES_MAX {
        return Err(CliError::new(format!("{} is too large ({} bytes)", path.display(), meta.len())));
    }
    std::fs::read_to_string(path).map_err(|e| CliError::new(format!("cannot read {}: {e}", path.display())))
}
