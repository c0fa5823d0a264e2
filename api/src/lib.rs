//! The grantline service and CLI: thin glue over `ledger` and `projector`.
//!
//! - [`server`]: the axum/tokio HTTP service (handlers, sequencer, snapshot, SSE, metrics).
//! - [`cli`]: the `grantline` command line (operating, writing, reading, interop).
//! - [`client`]: the blocking HTTP client the CLI (and later `verify`/`monitor`) use.
//! - [`datadir`]: the data directory layout, `init` and the genesis record.
//! - [`json`]: the wire shapes shared by server and clients (record, receipt, proofs).
//! - [`problem`]: RFC 9457 problem details.
//! - [`limits`]: every limit, as a named constant.
//! - [`replay`]: folding records into the projector state (server startup, CLI).

pub mod cli;
pub mod client;
pub mod datadir;
pub mod json;
pub mod limits;
pub mod loadgen;
pub mod problem;
pub mod replay;
pub mod server;
pub mod state_snapshot;

/// The server clock in Unix milliseconds.
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

pub mod audit;
pub mod pages;
