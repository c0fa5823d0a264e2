//! A C2SP tlog-witness v1.0.0 (DESIGN.md section 12): `grantline witness serve`.
//!
//! `POST /add-checkpoint` takes a log's signed checkpoint with a consistency proof from the
//! last checkpoint this witness cosigned for that log, and answers a tlog-cosignature v1
//! line once the new checkpoint is durable. [`state`] holds the per-log record and the one
//! rule that matters: a size is never cosigned with two roots, even across a crash;
//! [`request`] parses the body; [`http`] has the route and the accept loop.

mod fault;
mod http;
mod request;
mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ledger::cosignature::Cosigner;
use ledger::keys::VerifierKey;

pub(crate) use fault::{Fault, UnknownFault};
pub(crate) use state::StateError;

use crate::limits::WITNESS_CONNECTIONS_MAX;

/// What `grantline witness serve` was given.
pub(crate) struct WitnessConfig {
    pub cosigner: Cosigner,
    /// The trusted log keys; each key's name is its log's origin (several keys per origin
    /// are allowed: any one of them may sign).
    pub log_keys: Vec<VerifierKey>,
    pub data: PathBuf,
    pub addr: SocketAddr,
}

/// Why the witness stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WitnessError {
    #[error(transparent)]
    Fault(#[from] UnknownFault),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
}

/// What the handler shares.
struct Witness {
    cosigner: Cosigner,
    logs: state::Logs,
}

/// Runs the witness until SIGTERM or Ctrl-C. Prints exactly one line,
/// `grantline witness listening on http://<addr>`, once bound.
pub(crate) async fn serve(config: WitnessConfig) -> Result<(), WitnessError> {
    let fault = Fault::from_env()?;
    let logs = state::Logs::open(&config.data, &config.log_keys, fault)?;
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|e| WitnessError::Bind { addr: config.addr, reason: e.to_string() })?;
    let local = listener.local_addr().map_err(|e| WitnessError::Bind { addr: config.addr, reason: e.to_string() })?;
    tracing::info!(witness = %config.cosigner.verifier(), data = %config.data.display(), "witness opened");
    for (origin, size) in logs.sizes() {
        tracing::info!(%origin, last_cosigned_size = size, "following log");
    }
    let witness = Arc::new(Witness { cosigner: config.cosigner, logs });

    let line = format!("grantline witness listening on http://{local}");
    let (stopping, _) = tokio::sync::watch::channel(false);
    crate::server::listen::serve_until_signal(
        listener,
        http::router(witness),
        WITNESS_CONNECTIONS_MAX,
        &line,
        stopping,
    )
    .await;
    Ok(())
}
