//! Tile readers: a log's checkpoint and tiles below a URL prefix (a grantline server, a static
//! web server, an object store, a CDN) or in a directory (a mirror on disk). Readers only
//! read, within size limits; authenticating what they return is `ledger::tile`'s job.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use ledger::tile::{self, Kind, Tile, TileReader, TILE_WIDTH};

use crate::client::{Client, ClientError};
use crate::limits::{NOTE_FILE_BYTES_MAX, TILE_BUNDLE_BYTES_MAX, TILE_FETCHES_PARALLEL_MAX, TILE_HASH_BYTES_MAX};

/// The checkpoint note's path below a log's prefix (C2SP tlog-tiles).
pub(crate) const CHECKPOINT_PATH: &str = "checkpoint";

/// The most bytes `tile` may have: its width's share of a full tile or bundle.
pub(crate) fn bytes_max(tile: &Tile) -> u64 {
    let full = match tile.kind {
        Kind::Hash(_) => TILE_HASH_BYTES_MAX,
        Kind::Entries => TILE_BUNDLE_BYTES_MAX,
    };
    full / TILE_WIDTH * u64::from(tile.width)
}

/// Why a read found nothing: absent (a reader may try the full tile for a partial one), or
/// failed.
enum Miss {
    NotFound(String),
    Failed(String),
}

/// Reads `tile`; when a partial tile is absent, reads the full tile and keeps its prefix, as
/// C2SP allows (a host may drop a partial tile once the log has grown past it).
fn read_or_full(tile: &Tile, get: impl Fn(&Tile) -> Result<Vec<u8>, Miss>) -> Result<Vec<u8>, String> {
    match get(tile) {
        Ok(bytes) => Ok(bytes),
        Err(Miss::NotFound(why)) if !tile.is_full() => {
            let full = Tile { width: TILE_WIDTH as u16, ..*tile };
            match get(&full) {
                Ok(bytes) => prefix_of(tile, &bytes).ok_or(why),
                Err(_) => Err(why),
            }
        }
        Err(Miss::NotFound(why) | Miss::Failed(why)) => Err(why),
    }
}

/// The first `tile.width` hashes or entries of a wider tile's bytes.
fn prefix_of(tile: &Tile, bytes: &[u8]) -> Option<Vec<u8>> {
    let width = usize::from(tile.width);
    match tile.kind {
        Kind::Hash(_) => bytes.get(..width * tile::HASH_BYTES).map(<[u8]>::to_vec),
        Kind::Entries => {
            let entries = tile::decode_bundle(bytes).ok()?;
            Some(tile::encode_bundle(entries.get(..width)?.iter().copied()))
        }
    }
}

/// A log's tiles below a URL prefix.
pub(crate) struct HttpTiles {
    client: Client,
}

impl HttpTiles {
    pub(crate) fn new(url: &str) -> Result<HttpTiles, ClientError> {
        Ok(HttpTiles { client: Client::new(url)? })
    }

    pub(crate) fn base(&self) -> &str {
        self.client.base()
    }

    /// `GET <prefix>/checkpoint`: the note's bytes exactly as served (cosignatures included).
    pub(crate) fn checkpoint(&self) -> Result<Vec<u8>, String> {
        let path = format!("/{CHECKPOINT_PATH}");
        self.get(&path, NOTE_FILE_BYTES_MAX).map_err(|(Miss::NotFound(why) | Miss::Failed(why))| why)
    }

    fn get(&self, path: &str, bytes_max: u64) -> Result<Vec<u8>, Miss> {
        let url = format!("{}{path}", self.client.base());
        match self.client.get_bytes(path, bytes_max) {
            Ok(bytes) => Ok(bytes),
            Err(ClientError::Problem(p)) if p.status == 404 => Err(Miss::NotFound(format!("GET {url}: HTTP 404"))),
            // A static host answers errors in HTML: the status says enough.
            Err(ClientError::Problem(p)) => Err(Miss::Failed(format!("GET {url}: HTTP {}", p.status))),
            Err(e) => Err(Miss::Failed(format!("GET {url}: {e}"))),
        }
    }
}

impl TileReader for HttpTiles {
    fn read(&self, tile: &Tile) -> Result<Vec<u8>, String> {
        read_or_full(tile, |t| self.get(&format!("/{}", t.path()), bytes_max(t)))
    }
}

/// A log's tiles in a directory: `DIR/checkpoint`, `DIR/tile/...`.
pub(crate) struct DirTiles {
    dir: PathBuf,
}

impl DirTiles {
    pub(crate) fn new(dir: &Path) -> DirTiles {
        DirTiles { dir: dir.to_path_buf() }
    }

    pub(crate) fn checkpoint(&self) -> Result<Vec<u8>, String> {
        let path = self.dir.join(CHECKPOINT_PATH);
        match read_file(&path, NOTE_FILE_BYTES_MAX) {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Err(format!("{}: no such file", path.display())),
            Err(e) => Err(e),
        }
    }

    fn get(&self, tile: &Tile) -> Result<Vec<u8>, Miss> {
        let path = self.dir.join(tile.path());
        match read_file(&path, bytes_max(tile)) {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Err(Miss::NotFound(format!("{}: no such file", path.display()))),
            Err(e) => Err(Miss::Failed(e)),
        }
    }
}

impl TileReader for DirTiles {
    fn read(&self, tile: &Tile) -> Result<Vec<u8>, String> {
        read_or_full(tile, |t| self.get(t))
    }
}

/// Reads a whole file of at most `bytes_max` bytes; `Ok(None)` when there is no such file.
pub(crate) fn read_file(path: &Path, bytes_max: u64) -> Result<Option<Vec<u8>>, String> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut bytes = Vec::new();
    file.take(bytes_max + 1).read_to_end(&mut bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() as u64 > bytes_max {
        return Err(format!("{}: larger than {bytes_max} bytes", path.display()));
    }
    Ok(Some(bytes))
}

/// Where `verify --tiles` reads: a URL prefix (`http://`, `https://`) or a directory.
pub(crate) enum Tiles {
    Http(HttpTiles),
    Dir(DirTiles),
}

impl Tiles {
    /// A URL prefix, or else a directory, which must exist.
    pub(crate) fn open(url_or_dir: &str) -> Result<Tiles, String> {
        if url_or_dir.starts_with("http://") || url_or_dir.starts_with("https://") {
            return HttpTiles::new(url_or_dir).map(Tiles::Http).map_err(|e| e.to_string());
        }
        let dir = Path::new(url_or_dir);
        if !dir.is_dir() {
            return Err(format!(
                "--tiles {url_or_dir:?} is neither an http(s):// URL nor a directory (a mirror written by `grantline mirror`)"
            ));
        }
        Ok(Tiles::Dir(DirTiles::new(dir)))
    }

    /// The checkpoint note's bytes, as served or stored.
    pub(crate) fn checkpoint(&self) -> Result<Vec<u8>, String> {
        match self {
            Tiles::Http(http) => http.checkpoint(),
            Tiles::Dir(dir) => dir.checkpoint(),
        }
    }

    /// For messages: the URL prefix or the directory.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tiles::Http(http) => format!("tiles at {}", http.base()),
            Tiles::Dir(dir) => format!("tiles in {}", dir.dir.display()),
        }
    }

    /// Where the checkpoint comes from, for messages.
    pub(crate) fn checkpoint_location(&self) -> String {
        match self {
            Tiles::Http(http) => format!("{}/{CHECKPOINT_PATH}", http.base()),
            Tiles::Dir(dir) => dir.dir.join(CHECKPOINT_PATH).display().to_string(),
        }
    }
}

impl TileReader for Tiles {
    fn read(&self, tile: &Tile) -> Result<Vec<u8>, String> {
        match self {
            Tiles::Http(http) => http.read(tile),
            Tiles::Dir(dir) => dir.read(tile),
        }
    }
}

/// `work` on every item, on up to [`TILE_FETCHES_PARALLEL_MAX`] threads, results in order.
/// After a failure no new item starts; the failure of the first failing item is returned.
pub(crate) fn map_parallel<T: Sync, R: Send, E: Send>(
    items: &[T],
    work: impl Fn(&T) -> Result<R, E> + Sync,
) -> Result<Vec<R>, E> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let slots: Mutex<Vec<Option<Result<R, E>>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..TILE_FETCHES_PARALLEL_MAX.min(items.len()) {
            s.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let result = work(item);
                    if result.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner())[i] = Some(result);
                }
            });
        }
    });
    let slots = slots.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut out = Vec::with_capacity(items.len());
    let mut unfinished = false;
    for slot in slots {
        match slot {
            Some(Ok(r)) => out.push(r),
            Some(Err(e)) => return Err(e),
            None => unfinished = true,
        }
    }
    // Items are skipped only after a failure, which the loop above returned.
    debug_assert!(!unfinished);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_partial_tile_is_read_as_the_prefix_of_the_full_one() {
        let dir = tempfile::tempdir().unwrap();
        let hashes: Vec<u8> = (0..TILE_WIDTH * 32).map(|i| i as u8).collect();
        let leaves: Vec<Vec<u8>> = (0..TILE_WIDTH).map(|i| format!("leaf {i}").into_bytes()).collect();
        std::fs::create_dir_all(dir.path().join("tile/1")).unwrap();
        std::fs::create_dir_all(dir.path().join("tile/entries")).unwrap();
        std::fs::write(dir.path().join("tile/1/000"), &hashes).unwrap();
        std::fs::write(dir.path().join("tile/entries/000"), tile::encode_bundle(leaves.iter().map(Vec::as_slice)))
            .unwrap();
        let tiles = DirTiles::new(dir.path());
        let partial = Tile { kind: Kind::Hash(1), index: 0, width: 3 };
        assert_eq!(tiles.read(&partial).unwrap(), hashes[..96]);
        let bundle = Tile { kind: Kind::Entries, index: 0, width: 2 };
        assert_eq!(tiles.read(&bundle).unwrap(), tile::encode_bundle([leaves[0].as_slice(), leaves[1].as_slice()]));
        // A full tile has no fallback; the message names the file.
        let err = tiles.read(&Tile::full(0, 7)).unwrap_err();
        assert!(err.contains("tile/0/007: no such file"), "{err}");
    }

    #[test]
    fn files_past_their_limit_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tile/0/000.p")).unwrap();
        std::fs::write(dir.path().join("tile/0/000.p/1"), [0u8; 33]).unwrap();
        let err = DirTiles::new(dir.path()).read(&Tile { kind: Kind::Hash(0), index: 0, width: 1 }).unwrap_err();
        assert!(err.contains("larger than 32 bytes"), "{err}");
    }

    #[test]
    fn map_parallel_keeps_order_and_returns_the_first_failure() {
        let items: Vec<u32> = (0..100).collect();
        assert_eq!(
            map_parallel(&items, |i| Ok::<u32, String>(i * 2)).unwrap(),
            (0..100).map(|i| i * 2).collect::<Vec<_>>()
        );
        let err = map_parallel(&items, |&i| if i % 10 == 7 { Err(i) } else { Ok(i) }).unwrap_err();
        // Item 7 is taken before any later item, and a taken item always finishes.
        assert_eq!(err, 7);
        assert!(map_parallel(&[] as &[u32], |&i| Ok::<u32, ()>(i)).unwrap().is_empty());
    }
}
