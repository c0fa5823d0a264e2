//! The grantline service and CLI: thin glue over `ledger` (stores and proves) and `projector`
//! (decides and derives). This crate is internal: its only public surface is what the
//! `grantline` binary needs ([`main`]), the wire shapes clients decode ([`json`]), and what the
//! end-to-end tests and benchmarks reach inside ([`testing`]). Everything else is
//! `pub(crate)`, and the `unreachable_pub` lint keeps it so.
//!
//! Modules, in the order data flows (ARCHITECTURE.md has the map):
//! - `fold`: the one admission path (`check`, then `apply`) and the replay of a store.
//! - `datadir`, `state_snapshot`: the data directory (`init`, `open`) and projection snapshots.
//! - `server`: the HTTP service (routes, sequencer, published snapshot, SSE, metrics) and the
//!   routes of the public pages, which `pages` renders.
//! - `client`: the one HTTP client (retries, limits) of the CLI, `verify` and `monitor`.
//! - `tiles`: C2SP tile readers (HTTP, a directory) and `mirror`, a verified static copy.
//! - `audit`: `verify`, `export`/`import`, receipts, `monitor`.
//! - `cli`: the `grantline` commands, the load generator among them.
//! - `json`, `problem`, `limits`: wire shapes, RFC 9457 problems, every limit of this crate.

mod audit;
mod cli;
mod client;
mod datadir;
mod fold;
mod github;
pub mod json;
mod limits;
mod pages;
mod problem;
mod server;
mod state_snapshot;
mod tiles;
mod witness;

pub use cli::main;

/// The server clock in Unix milliseconds.
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// What the end-to-end tests in `tests/` and the benchmarks use from inside the crate. Not an
/// API: it changes with the code.
pub mod testing {
    pub use crate::audit::engine::{verify, VerifyJob};
    pub use crate::audit::exit;
    pub use crate::audit::source::DataDirSource;
    pub use crate::audit::statefile::SignedCheckpoint;
    pub use crate::datadir::{init, open, DataDir, Opened};
    pub use crate::fold::{verify_signers, Fold};
    pub use crate::pages::{index, project, requests, sponsor, LogFacts, WitnessFact};
    pub use crate::state_snapshot::{restore, save, STATE_SNAPSHOT_META_KEY};
}
