//! C2SP tlog-tiles (v0.1.0): the log's Merkle hashes and leaves cut into immutable tiles of
//! 256, so any static host can serve the log and any reader can check it.
//!
//! - Hash tile `tile/<L>/<N>[.p/<W>]`: hash *i* is the RFC 6962 hash of the leaves
//!   `[(N·256+i)·256^L, (N·256+i+1)·256^L)`; a full tile has 256 hashes, a partial one `W`.
//! - Entry bundle `tile/entries/<N>[.p/<W>]`: the leaf bytes (SPEC §5) of those leaves, each
//!   after a u16 big-endian length, so an entry's leaf hash is the level-0 tile's hash.
//!
//! Serving reads stored hashes ([`read_hash_tile`]); reading authenticates every tile
//! against a checkpoint ([`authenticate`]): the partial tiles of the right edge against the
//! root, each full tile against its authenticated parent, each entry against its leaf hash.
//! Go's `TileHashReader` skips that check for some tiles (see ARCHITECTURE.md); this does not.

use std::collections::HashMap;

use crate::merkle::{self, node_hash, stored_hash_index, HashReader, MerkleError};
use crate::Hash;

/// Hashes per full tile (the tile height is 8: 2^8).
pub const TILE_WIDTH: u64 = 256;

/// log2 of [`TILE_WIDTH`]: one tile level is this many Merkle levels.
pub const TILE_HEIGHT: u32 = 8;

/// Bytes per hash in a hash tile.
pub const HASH_BYTES: usize = 32;

/// The highest tile level a tree of at most [`merkle::TREE_SIZE_MAX`] leaves has.
pub const TILE_LEVEL_MAX: u8 = 7;

/// An entry is at most this long: its length is a u16.
pub const ENTRY_BYTES_MAX: usize = u16::MAX as usize;

/// Which tile: a hash tile at `level`, or an entry bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Hash tile at this tile level (level L holds Merkle level 8·L).
    Hash(u8),
    /// Entry bundle (the leaves under level-0 tile N).
    Entries,
}

/// One tile or entry bundle: its kind, index and width (1 to 256; 256 is a full tile).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tile {
    /// Hash tile or entry bundle.
    pub kind: Kind,
    /// `N`: the tile's index at its level.
    pub index: u64,
    /// `W`: how many hashes or entries, 1 to [`TILE_WIDTH`].
    pub width: u16,
}

/// Why a tile path is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a tile path: {0}")]
pub struct PathError(pub &'static str);

impl Tile {
    /// A full hash tile.
    pub fn full(level: u8, index: u64) -> Tile {
        Tile { kind: Kind::Hash(level), index, width: TILE_WIDTH as u16 }
    }

    /// Whether it holds all 256 hashes or entries (and so never changes).
    pub fn is_full(&self) -> bool {
        u64::from(self.width) == TILE_WIDTH
    }

    /// The path below the log's prefix, e.g. `tile/1/x001/234.p/17` or `tile/entries/000`.
    pub fn path(&self) -> String {
        let kind = match self.kind {
            Kind::Hash(level) => level.to_string(),
            Kind::Entries => "entries".to_string(),
        };
        let mut path = format!("tile/{kind}/{}", encode_index(self.index));
        if !self.is_full() {
            path.push_str(&format!(".p/{}", self.width));
        }
        path
    }

    /// Parses a path as [`Tile::path`] writes it (with or without the leading `tile/`).
    pub fn parse_path(path: &str) -> Result<Tile, PathError> {
        let path = path.strip_prefix("tile/").unwrap_or(path);
        let (kind, rest) = path.split_once('/').ok_or(PathError("expected tile/<L>/<N>"))?;
        let kind = match kind {
            "entries" => Kind::Entries,
            l if l.len() == 1 && l.as_bytes()[0].is_ascii_digit() => {
                let level = l.as_bytes()[0] - b'0';
                if level > TILE_LEVEL_MAX {
                    return Err(PathError("tile level too high"));
                }
                Kind::Hash(level)
            }
            _ => return Err(PathError("the level must be one digit or \"entries\"")),
        };
        let (index, width) = match rest.split_once(".p/") {
            Some((index, width)) => {
                let ok = !width.is_empty() && width.len() <= 3 && width.bytes().all(|b| b.is_ascii_digit());
                let w: u16 = if ok && !width.starts_with('0') { width.parse().unwrap_or(0) } else { 0 };
                if w == 0 || u64::from(w) >= TILE_WIDTH {
                    return Err(PathError("a partial width must be 1 to 255, without leading zeros"));
                }
                (index, w)
            }
            None => (rest, TILE_WIDTH as u16),
        };
        Ok(Tile { kind, index: decode_index(index)?, width })
    }

    /// The hash tile's Merkle level (8·L). Entry bundles sit at level 0.
    fn merkle_level(&self) -> u32 {
        match self.kind {
            Kind::Hash(level) => u32::from(level) * TILE_HEIGHT,
            Kind::Entries => 0,
        }
    }

    /// The first hash (at the tile's Merkle level) or leaf it holds.
    pub fn first(&self) -> u64 {
        self.index * TILE_WIDTH
    }
}

/// `1234067` → `x001/x234/067`: groups of three digits, all but the last prefixed with `x`.
pub fn encode_index(mut n: u64) -> String {
    let mut groups = vec![format!("{:03}", n % 1000)];
    n /= 1000;
    while n > 0 {
        groups.push(format!("x{:03}", n % 1000));
        n /= 1000;
    }
    groups.reverse();
    groups.join("/")
}

fn decode_index(text: &str) -> Result<u64, PathError> {
    let groups: Vec<&str> = text.split('/').collect();
    if groups.len() > 7 {
        return Err(PathError("tile index too long"));
    }
    let mut n: u64 = 0;
    for (i, group) in groups.iter().enumerate() {
        let last = i + 1 == groups.len();
        let digits = if last { Some(*group) } else { group.strip_prefix('x') };
        let digits = digits.ok_or(PathError("every index group but the last starts with x"))?;
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PathError("index groups are three digits"));
        }
        if i == 0 && groups.len() > 1 && digits == "000" {
            return Err(PathError("index with a leading zero group"));
        }
        let value: u64 = digits.parse().map_err(|_| PathError("index groups are three digits"))?;
        n = n.checked_mul(1000).and_then(|n| n.checked_add(value)).ok_or(PathError("tile index too large"))?;
    }
    Ok(n)
}

/// How many hashes at tile level `level` a tree of `size` leaves has in all (complete
/// subtrees of 256^level leaves).
pub fn hashes_at_level(size: u64, level: u8) -> u64 {
    size.checked_shr(u32::from(level) * TILE_HEIGHT).unwrap_or(0)
}

/// The width of the partial tile at `level` for `size`: `floor(size / 256^L) mod 256`
/// (0 when there is none).
pub fn partial_width(size: u64, level: u8) -> u16 {
    (hashes_at_level(size, level) % TILE_WIDTH) as u16
}

/// Whether a tree of `size` leaves has this tile or bundle (full, or partial of this exact
/// width or narrower: a server can serve any prefix of a tile it has).
pub fn exists_in(tile: &Tile, size: u64) -> bool {
    let level = match tile.kind {
        Kind::Hash(level) => level,
        Kind::Entries => 0,
    };
    let end = tile.first().checked_add(u64::from(tile.width));
    matches!(end, Some(end) if tile.width > 0 && end <= hashes_at_level(size, level))
}

/// Every hash tile of a tree of `size` leaves, top level first, in index order within a
/// level: the full tiles and the partial tile of each level (C2SP's tile set). At 70,000
/// leaves: 273 full and `0/273.p/112`, `1/000` and `1/001.p/17`, `2/000.p/1`.
pub fn hash_tiles(size: u64) -> Vec<Tile> {
    let mut tiles = Vec::new();
    for level in (0..=TILE_LEVEL_MAX).rev() {
        let count = hashes_at_level(size, level);
        if count == 0 {
            continue;
        }
        for index in 0..count / TILE_WIDTH {
            tiles.push(Tile::full(level, index));
        }
        let width = partial_width(size, level);
        if width > 0 {
            tiles.push(Tile { kind: Kind::Hash(level), index: count / TILE_WIDTH, width });
        }
    }
    tiles
}

/// Every entry bundle of a tree of `size` leaves, in order.
pub fn entry_bundles(size: u64) -> Vec<Tile> {
    let mut bundles: Vec<Tile> =
        (0..size / TILE_WIDTH).map(|index| Tile { kind: Kind::Entries, index, width: TILE_WIDTH as u16 }).collect();
    let width = (size % TILE_WIDTH) as u16;
    if width > 0 {
        bundles.push(Tile { kind: Kind::Entries, index: size / TILE_WIDTH, width });
    }
    bundles
}

/// The bytes of a hash tile, read from the stored hashes (`r` must hold the tree of `size`
/// leaves). `Ok(None)` when the tree does not have the tile.
pub fn read_hash_tile(tile: &Tile, size: u64, r: &dyn HashReader) -> Result<Option<Vec<u8>>, MerkleError> {
    if tile.kind == Kind::Entries || !exists_in(tile, size) {
        return Ok(None);
    }
    let level = tile.merkle_level();
    let indexes: Vec<u64> =
        (tile.first()..tile.first() + u64::from(tile.width)).map(|n| stored_hash_index(level, n)).collect();
    let hashes = r.read_hashes(&indexes)?;
    if hashes.len() != indexes.len() {
        return Err(MerkleError::Storage(format!("read {} hashes for {} indexes", hashes.len(), indexes.len())));
    }
    Ok(Some(hashes.concat()))
}

/// Encodes leaves as an entry bundle.
pub fn encode_bundle<'a>(leaves: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for leaf in leaves {
        debug_assert!(leaf.len() <= ENTRY_BYTES_MAX);
        out.extend_from_slice(&(leaf.len() as u16).to_be_bytes());
        out.extend_from_slice(leaf);
    }
    out
}

/// Splits an entry bundle into its entries.
pub fn decode_bundle(bytes: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
    let mut entries = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        if rest.len() < 2 {
            return Err("a truncated entry length");
        }
        let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        let entry = rest.get(2..2 + len).ok_or("an entry longer than the bundle")?;
        entries.push(entry);
        rest = &rest[2 + len..];
        if entries.len() as u64 > TILE_WIDTH {
            return Err("more than 256 entries");
        }
    }
    Ok(entries)
}

/// Splits hash tile bytes into hashes.
pub fn split_hashes(bytes: &[u8]) -> Option<Vec<Hash>> {
    if bytes.len() % HASH_BYTES != 0 {
        return None;
    }
    Some(bytes.chunks_exact(HASH_BYTES).map(|c| c.try_into().unwrap_or([0; 32])).collect())
}

/// The RFC 6962 root over a run of hashes taken as the leaves' level (no leaf hashing): for
/// a full tile, the hash one tile level up.
pub fn run_root(hashes: &[Hash]) -> Hash {
    debug_assert!(!hashes.is_empty());
    if hashes.len() == 1 {
        return hashes[0];
    }
    let split = 1usize << (usize::BITS - 1 - (hashes.len() - 1).leading_zeros());
    node_hash(&run_root(&hashes[..split]), &run_root(&hashes[split..]))
}

/// The root of the tree of `size` leaves from the tiles of its right edge: for each level, the
/// first `partial_width(size, L)` hashes of tile `(L, floor(size / 256^(L+1)))`, which
/// `tile_at` returns (a longer tile is fine: only its prefix is used). `None` when a tile is
/// missing or too short. The empty tree's root is SHA-256("").
pub fn root_from_tiles<'a>(size: u64, tile_at: &dyn Fn(u8, u64) -> Option<&'a [Hash]>) -> Option<Hash> {
    if size == 0 {
        return Some(merkle::empty_root());
    }
    // The maximal complete subtrees, largest first; the root folds them from the right.
    let mut subtrees: Vec<Hash> = Vec::new();
    for level in (0..=TILE_LEVEL_MAX).rev() {
        let width = usize::from(partial_width(size, level));
        if width == 0 {
            continue;
        }
        let hashes = tile_at(level, hashes_at_level(size, level) / TILE_WIDTH)?;
        let hashes = hashes.get(..width)?;
        let mut at = 0;
        for bit in (0..TILE_HEIGHT).rev() {
            let run = 1usize << bit;
            if width & run != 0 {
                subtrees.push(run_root(&hashes[at..at + run]));
                at += run;
            }
        }
    }
    let mut root = subtrees.pop()?;
    while let Some(left) = subtrees.pop() {
        root = node_hash(&left, &root);
    }
    Some(root)
}

/// Why tiles do not authenticate. Each names the tile at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TileError {
    /// The tile could not be read.
    #[error("{path}: {reason}")]
    Unreadable {
        /// The tile's path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The tile has the wrong length for its width.
    #[error("{path}: {found} bytes, expected {expected}")]
    WrongLength {
        /// The tile's path.
        path: String,
        /// Its length.
        found: usize,
        /// The length of its width.
        expected: usize,
    },
    /// A full tile does not hash to the hash its parent holds for it.
    #[error("{path} does not match its hash in {parent}: the tile was altered")]
    NotInParent {
        /// The tile's path.
        path: String,
        /// The parent tile's path.
        parent: String,
    },
    /// The right edge does not hash to the checkpoint's root, and this tile is the one that
    /// disagrees with the tiles below it.
    #[error("{path} does not match the tiles below it, and with their hashes the checkpoint's root verifies: the tile was altered")]
    EdgeTile {
        /// The tile's path.
        path: String,
    },
    /// The right edge does not hash to the checkpoint's root (no single tile explains it).
    #[error("the tiles {paths} do not hash to the checkpoint's root")]
    RootMismatch {
        /// The right edge's tile paths.
        paths: String,
    },
    /// An entry's leaf hash is not the level-0 tile's hash for it.
    #[error("{path}: entry {entry} (record {seq}) does not match its hash in {tile}: the bundle was altered")]
    EntryMismatch {
        /// The bundle's path.
        path: String,
        /// The entry's position in the bundle.
        entry: u64,
        /// The record's seq.
        seq: u64,
        /// The level-0 tile that holds its hash.
        tile: String,
    },
    /// The bundle has another number of entries than its width, or bad framing.
    #[error("{path}: {reason}")]
    MalformedBundle {
        /// The bundle's path.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// Reads tiles by path: a directory, a static web server, the log itself. Called from
/// several threads at once.
pub trait TileReader: Sync {
    /// The bytes of `tile` (a hash tile or an entry bundle).
    fn read(&self, tile: &Tile) -> Result<Vec<u8>, String>;
}

/// How many tiles [`authenticate`] reads at once.
pub const TILE_READS_PARALLEL_MAX: usize = 8;

/// The hash tiles of one tree, every one authenticated against its checkpoint's root.
pub struct Authenticated {
    size: u64,
    root: Hash,
    /// (level, index) → the tile's hashes.
    tiles: HashMap<(u8, u64), Vec<Hash>>,
}

fn read_checked(reader: &dyn TileReader, tile: &Tile) -> Result<Vec<Hash>, TileError> {
    let path = tile.path();
    let bytes = reader.read(tile).map_err(|reason| TileError::Unreadable { path: path.clone(), reason })?;
    let expected = usize::from(tile.width) * HASH_BYTES;
    if bytes.len() != expected {
        return Err(TileError::WrongLength { path, found: bytes.len(), expected });
    }
    Ok(split_hashes(&bytes).unwrap_or_default())
}

fn read_all(reader: &dyn TileReader, tiles: &[Tile]) -> Vec<Result<Vec<Hash>, TileError>> {
    let mut results: Vec<Option<Result<Vec<Hash>, TileError>>> = vec![None; tiles.len()];
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots = std::sync::Mutex::new(&mut results);
    std::thread::scope(|s| {
        for _ in 0..TILE_READS_PARALLEL_MAX.min(tiles.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(tile) = tiles.get(i) else { break };
                let result = read_checked(reader, tile);
                if let Ok(mut slots) = slots.lock() {
                    slots[i] = Some(result);
                }
            });
        }
    });
    results
        .into_iter()
        .zip(tiles)
        .map(|(r, t)| r.unwrap_or_else(|| Err(TileError::Unreadable { path: t.path(), reason: "not read".into() })))
        .collect()
}

/// Reads every hash tile of the tree of `size` leaves with root `root` and authenticates each:
/// the right edge against the root, then each full tile against its parent, top level first.
/// A tile that fails is named; when the edge fails, the one edge tile that disagrees with the
/// tiles (or, at level 0, the entries) below it is named.
pub fn authenticate(size: u64, root: Hash, reader: &dyn TileReader) -> Result<Authenticated, TileError> {
    let mut auth = Authenticated { size, root, tiles: HashMap::new() };
    let all = hash_tiles(size);
    let edge: Vec<Tile> = all.iter().copied().filter(|t| !t.is_full()).collect();
    for (tile, result) in edge.iter().zip(read_all(reader, &edge)) {
        auth.tiles.insert((level_of(tile), tile.index), result?);
    }
    let edge_root = root_from_tiles(size, &|l, n| auth.tiles.get(&(l, n)).map(Vec::as_slice));
    let edge_ok = edge_root == Some(root);
    // Full tiles top level first, so each parent is authenticated before its children.
    for level in (0..=TILE_LEVEL_MAX).rev() {
        let full: Vec<Tile> = all.iter().copied().filter(|t| t.is_full() && level_of(t) == level).collect();
        for (tile, result) in full.iter().zip(read_all(reader, &full)) {
            let hashes = result?;
            if edge_ok {
                auth.check_in_parent(tile, &hashes)?;
            }
            auth.tiles.insert((level, tile.index), hashes);
        }
    }
    if !edge_ok {
        return Err(auth.blame_edge(&edge, reader));
    }
    debug_assert_eq!(auth.tiles.len(), all.len());
    Ok(auth)
}

fn level_of(tile: &Tile) -> u8 {
    match tile.kind {
        Kind::Hash(level) => level,
        Kind::Entries => 0,
    }
}

impl Authenticated {
    /// The tree's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The checkpoint root every tile was checked against.
    pub fn root(&self) -> Hash {
        self.root
    }

    /// The authenticated hashes of a hash tile of this tree, as served.
    pub fn tile_bytes(&self, tile: &Tile) -> Option<Vec<u8>> {
        let hashes = self.tiles.get(&(level_of(tile), tile.index))?;
        (hashes.len() == usize::from(tile.width)).then(|| hashes.concat())
    }

    /// The leaf hash of record `seq` (below the size).
    pub fn leaf_hash(&self, seq: u64) -> Option<Hash> {
        self.tiles.get(&(0, seq / TILE_WIDTH))?.get((seq % TILE_WIDTH) as usize).copied()
    }

    /// The root of the first `size` leaves (at most the tree's size), from the authenticated
    /// tiles: how a reader checks that an older checkpoint is a prefix of this tree.
    pub fn root_at(&self, size: u64) -> Option<Hash> {
        if size > self.size {
            return None;
        }
        root_from_tiles(size, &|l, n| self.tiles.get(&(l, n)).map(Vec::as_slice))
    }

    /// Checks an entry bundle against the level-0 hashes and returns its entries.
    pub fn check_bundle<'b>(&self, bundle: &Tile, bytes: &'b [u8]) -> Result<Vec<&'b [u8]>, TileError> {
        let path = bundle.path();
        let entries =
            decode_bundle(bytes).map_err(|r| TileError::MalformedBundle { path: path.clone(), reason: r.into() })?;
        if entries.len() != usize::from(bundle.width) {
            return Err(TileError::MalformedBundle {
                path,
                reason: format!("{} entries, expected {}", entries.len(), bundle.width),
            });
        }
        for (i, entry) in entries.iter().enumerate() {
            let seq = bundle.first() + i as u64;
            if self.leaf_hash(seq) != Some(merkle::leaf_hash(entry)) {
                return Err(TileError::EntryMismatch { path, entry: i as u64, seq, tile: String::new() }
                    .with_level0_width(self.size, bundle.index));
            }
        }
        Ok(entries)
    }

    fn check_in_parent(&self, tile: &Tile, hashes: &[Hash]) -> Result<(), TileError> {
        let level = level_of(tile);
        let parent_index = tile.index / TILE_WIDTH;
        let parent = self.tiles.get(&(level + 1, parent_index));
        let expected = parent.and_then(|p| p.get((tile.index % TILE_WIDTH) as usize));
        if expected != Some(&run_root(hashes)) {
            let width = self.tiles.get(&(level + 1, parent_index)).map_or(TILE_WIDTH as u16, |p| p.len() as u16);
            let parent = Tile { kind: Kind::Hash(level + 1), index: parent_index, width };
            return Err(TileError::NotInParent { path: tile.path(), parent: parent.path() });
        }
        Ok(())
    }

    /// The edge did not hash to the root: find the one edge tile whose replacement by what the
    /// tiles (or entries) below give makes it hash to the root.
    fn blame_edge(&self, edge: &[Tile], reader: &dyn TileReader) -> TileError {
        for tile in edge {
            let level = level_of(tile);
            let below: Option<Vec<Hash>> = if level == 0 {
                let bundle = Tile { kind: Kind::Entries, index: tile.index, width: tile.width };
                reader.read(&bundle).ok().and_then(|bytes| {
                    let entries = decode_bundle(&bytes).ok()?;
                    (entries.len() == usize::from(tile.width))
                        .then(|| entries.iter().map(|e| merkle::leaf_hash(e)).collect())
                })
            } else {
                (0..u64::from(tile.width))
                    .map(|i| self.tiles.get(&(level - 1, tile.first() + i)).map(|h| run_root(h)))
                    .collect()
            };
            let Some(below) = below else { continue };
            if below == self.tiles[&(level, tile.index)] {
                continue;
            }
            let fixed = root_from_tiles(self.size, &|l, n| {
                if (l, n) == (level, tile.index) {
                    Some(below.as_slice())
                } else {
                    self.tiles.get(&(l, n)).map(Vec::as_slice)
                }
            });
            if fixed == Some(self.root) {
                return TileError::EdgeTile { path: tile.path() };
            }
        }
        TileError::RootMismatch { paths: edge.iter().map(Tile::path).collect::<Vec<_>>().join(", ") }
    }
}

impl TileError {
    /// Names the level-0 tile as served (partial at the right edge).
    fn with_level0_width(self, size: u64, index: u64) -> TileError {
        match self {
            TileError::EntryMismatch { path, entry, seq, .. } => {
                let full = index < size / TILE_WIDTH;
                let width = if full { TILE_WIDTH as u16 } else { partial_width(size, 0) };
                TileError::EntryMismatch { path, entry, seq, tile: Tile { kind: Kind::Hash(0), index, width }.path() }
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::MemoryTree;

    #[test]
    fn paths_follow_c2sp() {
        assert_eq!(encode_index(1234067), "x001/x234/067");
        assert_eq!(encode_index(0), "000");
        assert_eq!(encode_index(1000), "x001/000");
        assert_eq!(Tile { kind: Kind::Hash(1), index: 1, width: 17 }.path(), "tile/1/001.p/17");
        assert_eq!(Tile { kind: Kind::Entries, index: 1234067, width: 256 }.path(), "tile/entries/x001/x234/067");
        for path in ["tile/0/x001/x234/067", "tile/2/000.p/1", "tile/entries/273.p/112", "tile/1/x999/999"] {
            assert_eq!(Tile::parse_path(path).unwrap().path(), path);
        }
        for bad in [
            "tile/0/1",
            "tile/0/0001",
            "tile/0/x000/001",
            "tile/0/001/002",
            "tile/0/000.p/0",
            "tile/0/000.p/256",
            "tile/0/000.p/01",
            "tile/8/000",
            "tile/a/000",
            "tile/0/000.p/",
            "tile/entries",
            "tile/00/000",
        ] {
            assert!(Tile::parse_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_tile_set_at_70000_is_the_spec_example() {
        let tiles = hash_tiles(70_000);
        let paths: Vec<String> = tiles.iter().map(Tile::path).collect();
        assert_eq!(paths.iter().filter(|p| p.starts_with("tile/0/") && !p.contains(".p/")).count(), 273);
        let rest: Vec<&str> =
            paths.iter().map(String::as_str).filter(|p| !p.starts_with("tile/0/") || p.contains(".p/")).collect();
        assert_eq!(rest, ["tile/2/000.p/1", "tile/1/000", "tile/1/001.p/17", "tile/0/273.p/112"]);
        assert_eq!(hash_tiles(256).iter().map(Tile::path).collect::<Vec<_>>(), ["tile/1/000.p/1", "tile/0/000"]);
        assert!(hash_tiles(0).is_empty());
    }

    struct Served {
        tree: MemoryTree,
        leaves: Vec<Vec<u8>>,
        flip: Option<(String, usize)>,
    }

    impl TileReader for Served {
        fn read(&self, tile: &Tile) -> Result<Vec<u8>, String> {
            let mut bytes = match tile.kind {
                Kind::Entries => encode_bundle(
                    self.leaves[tile.first() as usize..(tile.first() + u64::from(tile.width)) as usize]
                        .iter()
                        .map(Vec::as_slice),
                ),
                Kind::Hash(_) => read_hash_tile(tile, self.tree.size(), &self.tree)
                    .map_err(|e| e.to_string())?
                    .ok_or("no such tile")?,
            };
            if let Some((path, at)) = &self.flip {
                if *path == tile.path() {
                    let at = *at % bytes.len();
                    bytes[at] ^= 1;
                }
            }
            Ok(bytes)
        }
    }

    fn served(size: u64) -> Served {
        let mut tree = MemoryTree::new();
        let leaves: Vec<Vec<u8>> = (0..size).map(|i| format!("leaf {i}").into_bytes()).collect();
        for leaf in &leaves {
            tree.push(merkle::leaf_hash(leaf));
        }
        Served { tree, leaves, flip: None }
    }

    #[test]
    fn the_edge_gives_the_root_at_every_size() {
        let s = served(70_000);
        let auth = authenticate(70_000, s.tree.root(), &s).unwrap();
        for size in [0, 1, 2, 3, 255, 256, 257, 511, 512, 65_535, 65_536, 65_537, 69_999, 70_000] {
            assert_eq!(auth.root_at(size), Some(s.tree.root_at(size).unwrap()), "size {size}");
        }
        for size in [1, 255, 256, 257, 65_536] {
            let s = served(size);
            assert!(authenticate(size, s.tree.root(), &s).is_ok(), "size {size}");
        }
    }

    #[test]
    fn a_flipped_byte_in_any_tile_is_named() {
        let mut s = served(70_000);
        let root = s.tree.root();
        for (path, expected) in [
            ("tile/0/000", "tile/0/000 does not match its hash in tile/1/000"),
            ("tile/0/272", "tile/0/272 does not match its hash in tile/1/001.p/17"),
            ("tile/1/000", "tile/1/000 does not match its hash in tile/2/000.p/1"),
            ("tile/0/273.p/112", "tile/0/273.p/112 does not match the tiles below it"),
            ("tile/1/001.p/17", "tile/1/001.p/17 does not match the tiles below it"),
            ("tile/2/000.p/1", "tile/2/000.p/1 does not match the tiles below it"),
        ] {
            s.flip = Some((path.to_string(), 40));
            let err = authenticate(70_000, root, &s).err().expect(path).to_string();
            assert!(err.starts_with(expected), "{path}: {err}");
        }
        s.flip = Some(("tile/entries/005".to_string(), 30));
        let auth = authenticate(70_000, root, &Served { flip: None, ..served(70_000) }).unwrap();
        let bundle = Tile { kind: Kind::Entries, index: 5, width: 256 };
        let err = auth.check_bundle(&bundle, &s.read(&bundle).unwrap()).unwrap_err().to_string();
        assert!(
            err.starts_with("tile/entries/005: entry 2 (record 1282) does not match its hash in tile/0/005"),
            "{err}"
        );
    }
}
