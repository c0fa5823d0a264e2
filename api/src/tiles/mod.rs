//! C2SP tiles (DESIGN.md section 12) read from anywhere and copied to a static mirror.
//!
//! - [`read`]: tile readers (`ledger::tile::TileReader`) over HTTP(S), for a grantline server or
//!   any static host of a mirror, and over a directory.
//! - [`mirror`]: `grantline mirror`: copies a log's checkpoint and tiles into a directory after
//!   authenticating every one against the pinned log key, extending an earlier copy.
//!
//! Nothing here trusts a tile: `ledger::tile::authenticate` checks every hash tile against the
//! checkpoint and `Authenticated::check_bundle` every entry bundle, before anything is written
//! or handed to the auditor.

pub(crate) mod mirror;
pub(crate) mod read;
