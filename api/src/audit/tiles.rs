//! `grantline verify --tiles`: the records of a log read from its C2SP tiles alone (a server's
//! tile API, a static mirror over HTTP, or a mirror on disk).
//!
//! Every hash tile is authenticated against the checkpoint before the first record is read,
//! and every entry bundle against the level-0 hashes before its entries go to the engine, which
//! then runs the same checks as for any source (signatures, chain, Merkle root, replay). A tile
//! that fails is a checkpoint failure naming the tile's path; a tile that cannot be read
//! proves nothing and is an unreadable input.

use ledger::checkpoint::Checkpoint;
use ledger::tile::{self, Authenticated, Tile, TileError, TileReader, TILE_WIDTH};

use super::source::{Raw, RecordSource};
use super::{AuditError, Failure, FailureKind};
use crate::tiles::read::{map_parallel, Tiles};

/// The entries of every bundle of a checkpoint's tree, checked, in seq order.
pub(crate) struct TilesSource<'a> {
    tiles: &'a Tiles,
    auth: Authenticated,
    bundles: Vec<Tile>,
    next: usize,
}

impl<'a> TilesSource<'a> {
    /// Reads and authenticates every hash tile of `checkpoint`'s tree.
    pub(crate) fn open(tiles: &'a Tiles, checkpoint: &Checkpoint) -> Result<TilesSource<'a>, AuditError> {
        let auth = tile::authenticate(checkpoint.size, checkpoint.root, tiles).map_err(|e| failure(tiles, &e))?;
        Ok(TilesSource { tiles, auth, bundles: tile::entry_bundles(checkpoint.size), next: 0 })
    }
}

fn failure(tiles: &Tiles, e: &TileError) -> AuditError {
    match e {
        TileError::Unreadable { .. } => AuditError::Unreadable(format!("{}: {e}", tiles.describe())),
        TileError::EntryMismatch { seq, .. } => {
            AuditError::Failed(Failure::at(FailureKind::Checkpoint, *seq, format!("{e} ({})", tiles.describe())))
        }
        _ => AuditError::Failed(Failure::new(FailureKind::Checkpoint, None, format!("{e} ({})", tiles.describe()))),
    }
}

impl RecordSource for TilesSource<'_> {
    fn next_window(&mut self, max: usize) -> Result<Vec<Raw>, AuditError> {
        let count = (max / TILE_WIDTH as usize).max(1).min(self.bundles.len() - self.next);
        let window = &self.bundles[self.next..self.next + count];
        let (tiles, auth) = (self.tiles, &self.auth);
        let entries = map_parallel(window, |bundle| {
            let bytes = tiles
                .read(bundle)
                .map_err(|reason| failure(tiles, &TileError::Unreadable { path: bundle.path(), reason }))?;
            let entries = auth.check_bundle(bundle, &bytes).map_err(|e| failure(tiles, &e))?;
            Ok::<Vec<Raw>, AuditError>(entries.into_iter().map(|e| Raw::Leaf(e.to_vec())).collect())
        })?;
        self.next += count;
        Ok(entries.into_iter().flatten().collect())
    }

    fn len_hint(&self) -> Option<u64> {
        Some(self.auth.size())
    }

    fn describe(&self) -> String {
        self.tiles.describe()
    }
}
