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
use std::time::Duration;

use ledger::cosignature::Cosigner;
use ledger::keys::VerifierKey;

pub(crate) use fault::{Fault, UnknownFault};
pub(crate) use state::StateError;

use crate::limits::{
    lowered_by_env, HEADER_READ_TIMEOUT_ENV, HEADER_READ_TIMEOUT_MS, SHUTDOWN_GRACE_MS, WITNESS_CONNECTIONS_MAX,
};

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

    // Registered before the "listening" line: a SIGTERM right after it must stop the witness
    // cleanly, not kill it by the default action.
    let signals = ShutdownSignals::register();
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "grantline witness listening on http://{local}");
        let _ = out.flush();
    }
    let header_read_timeout = Duration::from_millis(lowered_by_env(HEADER_READ_TIMEOUT_ENV, HEADER_READ_TIMEOUT_MS));
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server =
        http::serve(listener, http::router(witness), WITNESS_CONNECTIONS_MAX, header_read_timeout, async move {
            signals.wait().await;
            tracing::info!("shutting down");
            let _ = stop_tx.send(true);
        });
    tokio::select! {
        _ = server => {}
        _ = async {
            let _ = stop_rx.wait_for(|stop| *stop).await;
            tokio::time::sleep(Duration::from_millis(SHUTDOWN_GRACE_MS)).await;
        } => tracing::warn!("connections still open after the grace period; closing them"),
    }
    Ok(())
}

/// SIGTERM and Ctrl-C, listened for from the moment they are registered.
struct ShutdownSignals {
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignals {
    fn register() -> ShutdownSignals {
        #[cfg(unix)]
        {
            let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            ShutdownSignals { terminate }
        }
        #[cfg(not(unix))]
        ShutdownSignals {}
    }

    async fn wait(self) {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let terminate = async move {
            match self.terminate {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {},
            _ = terminate => {},
        }
    }
}
