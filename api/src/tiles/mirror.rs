//! `grantline mirror`: copies a log's checkpoint and tiles into a directory any static web
//! server, object store or CDN can serve (DESIGN.md section 12), extending an earlier copy.
//!
//! Verify, then write, checkpoint last:
//! 1. the server's checkpoint must verify with the pinned log key, and extend the mirror's
//!    (`DIR/checkpoint`): a smaller size (the log shrank) or the same size with another root
//!    (a fork) is refused before anything is read;
//! 2. every hash tile is authenticated against it (`ledger::tile::authenticate`), tiles the
//!    mirror has read from disk and checked like fetched ones, and the mirror's checkpoint must
//!    be a prefix of the new tree (its root from the authenticated tiles). When one of the
//!    mirror's own tiles fails, they are checked against the mirror's checkpoint too, to tell a
//!    fork (they hold) from a file altered on disk (they do not);
//! 3. the new hash tiles are written; then each entry bundle, once checked against the level-0
//!    hashes;
//! 4. `DIR/checkpoint` is replaced last, so a reader of DIR never sees a checkpoint whose tiles
//!    are missing; then the partial tiles neither checkpoint needs are removed (a reader of the
//!    previous one, through a CDN's cache say, still finds its own).
//!
//! Every file is written to a temp file in its directory, fsynced and renamed; the directories
//! are fsynced before the checkpoint is. A run that stops part-way leaves verified tiles only,
//! which the next run reads instead of fetching them again. An existing full tile is never
//! rewritten, and one that does not authenticate is reported, never silently replaced.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use indicatif::ProgressBar;
use ledger::b64;
use ledger::checkpoint::Checkpoint;
use ledger::keys::VerifierKey;
use ledger::tile::{self, Authenticated, Tile, TileError, TileReader};

use super::read::{self, map_parallel, HttpTiles, CHECKPOINT_PATH};
use crate::limits::NOTE_FILE_BYTES_MAX;

/// Temp files are named `.<name><TEMP_INFIX><pid>` beside the file they become.
const TEMP_INFIX: &str = ".mirror-tmp-";

/// Why a mirror run wrote no new checkpoint.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MirrorError {
    /// What the server serves does not verify: its checkpoint with the pinned log key, or a
    /// tile against that checkpoint.
    #[error("{0}")]
    Unverified(String),
    /// The server's log does not extend the mirror's: it shrank or forked.
    #[error("{0}")]
    Inconsistent(String),
    /// A file the mirror already holds does not authenticate: it changed after it was written.
    #[error("{0}")]
    Damaged(String),
    /// The server or the directory could not be read or written.
    #[error("{0}")]
    Io(String),
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MirrorReport {
    /// The new checkpoint's size.
    pub size: u64,
    /// The size of the mirror's checkpoint before the run, if it had one.
    pub previous_size: Option<u64>,
    /// Tiles and bundles fetched from the server.
    pub fetched: u64,
    /// Tiles and bundles read from the mirror (and checked) instead.
    pub reused: u64,
    /// Partial tiles and bundles removed, and temp files left by an interrupted run.
    pub removed: u64,
    /// What could not be cleaned up (the mirror itself is complete).
    pub warnings: Vec<String>,
    pub elapsed_ms: u64,
}

impl MirrorReport {
    /// Records authenticated per second (all of them, fetched or reused).
    pub(crate) fn records_per_s(&self) -> f64 {
        self.size as f64 * 1000.0 / self.elapsed_ms.max(1) as f64
    }
}

/// Reads each tile from the mirror when it has it (exactly that path), else from the server,
/// and remembers which came from where: a tile that fails is the mirror's fault or the server's.
struct Staged<'a> {
    server: &'a HttpTiles,
    out: &'a Path,
    local: Mutex<HashSet<Tile>>,
    fetched: AtomicU64,
    reused: AtomicU64,
    bar: &'a ProgressBar,
}

impl<'a> Staged<'a> {
    fn new(server: &'a HttpTiles, out: &'a Path, bar: &'a ProgressBar) -> Staged<'a> {
        Staged {
            server,
            out,
            local: Mutex::new(HashSet::new()),
            fetched: AtomicU64::new(0),
            reused: AtomicU64::new(0),
            bar,
        }
    }

    fn read_local(&self, tile: &Tile) -> Result<Option<Vec<u8>>, String> {
        read::read_file(&self.out.join(tile.path()), read::bytes_max(tile))
    }

    /// The mirror's own tile that `e` blames, if it blames one.
    fn blamed_tile(&self, e: &TileError) -> Option<Tile> {
        let tile = Tile::parse_path(blamed(e)?).ok()?;
        self.local.lock().unwrap_or_else(|p| p.into_inner()).contains(&tile).then_some(tile)
    }

    /// The tile's bytes, and whether they are the mirror's own copy.
    fn read_tracked(&self, tile: &Tile) -> Result<(Vec<u8>, bool), String> {
        self.bar.inc(1);
        if let Some(bytes) = self.read_local(tile)? {
            self.local.lock().unwrap_or_else(|p| p.into_inner()).insert(*tile);
            self.reused.fetch_add(1, Ordering::Relaxed);
            return Ok((bytes, true));
        }
        self.fetched.fetch_add(1, Ordering::Relaxed);
        Ok((self.server.read(tile)?, false))
    }
}

impl TileReader for Staged<'_> {
    fn read(&self, tile: &Tile) -> Result<Vec<u8>, String> {
        self.read_tracked(tile).map(|(bytes, _)| bytes)
    }
}

/// The tile a [`TileError`] blames (the first path it names).
fn blamed(e: &TileError) -> Option<&str> {
    match e {
        TileError::Unreadable { path, .. }
        | TileError::WrongLength { path, .. }
        | TileError::NotInParent { path, .. }
        | TileError::EdgeTile { path }
        | TileError::EntryMismatch { path, .. }
        | TileError::MalformedBundle { path, .. } => Some(path),
        TileError::RootMismatch { .. } => None,
    }
}

/// Copies the log at `server` into `out`, verified against `log_key`.
pub(crate) fn mirror(
    server: &HttpTiles,
    log_key: &VerifierKey,
    out: &Path,
    bar: &ProgressBar,
) -> Result<MirrorReport, MirrorError> {
    let started = Instant::now();
    let served_at = format!("{}/{CHECKPOINT_PATH}", server.base());
    let note = server.checkpoint().map_err(|e| MirrorError::Io(format!("cannot read the checkpoint: {e}")))?;
    let new = Checkpoint::open(&note, log_key).map_err(|e| {
        MirrorError::Unverified(format!("{served_at} does not verify with the pinned log key {log_key}: {e}"))
    })?;
    let old_path = out.join(CHECKPOINT_PATH);
    let old_note = read::read_file(&old_path, NOTE_FILE_BYTES_MAX).map_err(MirrorError::Io)?;
    let old = match &old_note {
        Some(bytes) => Some(Checkpoint::open(bytes, log_key).map_err(|e| {
            MirrorError::Damaged(format!(
                "{} does not verify with the pinned log key {log_key} ({e}): is {} a mirror of another log?",
                old_path.display(),
                out.display()
            ))
        })?),
        None => None,
    };
    if let Some(old) = &old {
        refuse_unless_extends(old, &new, &served_at, &old_path)?;
    }

    let hash_tiles = tile::hash_tiles(new.size);
    let bundles = tile::entry_bundles(new.size);
    bar.set_length((hash_tiles.len() + bundles.len()) as u64);
    let staged = Staged::new(server, out, bar);
    let auth = match tile::authenticate(new.size, new.root, &staged) {
        Ok(auth) => auth,
        Err(e) => return Err(blame(&e, &staged, old.as_ref(), &old_path, &served_at)),
    };
    if let Some(old) = &old {
        if auth.root_at(old.size) != Some(old.root) {
            return Err(MirrorError::Inconsistent(format!(
                "the log at {} does not extend this mirror: the first {} records of its checkpoint of {} \
                 hash to {}, but {} (signed by the same log key) says {}: the log forked; nothing was written",
                server.base(),
                old.size,
                new.size,
                auth.root_at(old.size).map(b64::encode).unwrap_or_default(),
                old_path.display(),
                b64::encode(old.root)
            )));
        }
    }

    let written = Mutex::new(BTreeSet::new());
    let local = staged.local.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let new_hash_tiles: Vec<Tile> = hash_tiles.iter().copied().filter(|t| !local.contains(t)).collect();
    map_parallel(&new_hash_tiles, |t| {
        let bytes = auth.tile_bytes(t).ok_or_else(|| MirrorError::Io(format!("{}: not authenticated", t.path())))?;
        write_tile(out, t, &bytes, &written)
    })?;
    map_parallel(&bundles, |b| mirror_bundle(&staged, &auth, b, &served_at, &written))?;

    sync_dirs(out, &written.into_inner().unwrap_or_else(|p| p.into_inner()))?;
    if old_note.as_deref() != Some(note.as_slice()) {
        write_atomically(&old_path, &note).map_err(|e| MirrorError::Io(format!("{}: {e}", old_path.display())))?;
        sync_dir(out)?;
    }

    let mut keep: HashSet<Tile> = hash_tiles.into_iter().chain(bundles).collect();
    if let Some(old) = &old {
        keep.extend(tile::hash_tiles(old.size));
        keep.extend(tile::entry_bundles(old.size));
    }
    let (removed, warnings) = remove_stale(out, &keep);
    Ok(MirrorReport {
        size: new.size,
        previous_size: old.map(|o| o.size),
        fetched: staged.fetched.into_inner(),
        reused: staged.reused.into_inner(),
        removed,
        warnings,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

/// Refuses a checkpoint that cannot extend the mirror's: fewer records, or as many with
/// another root. Both are signed by the log key, so either is evidence against the log.
fn refuse_unless_extends(
    old: &Checkpoint,
    new: &Checkpoint,
    served_at: &str,
    old_path: &Path,
) -> Result<(), MirrorError> {
    if new.size < old.size {
        return Err(MirrorError::Inconsistent(format!(
            "{served_at} is a checkpoint of {} records, but {} has {}: the log shrank; nothing was written \
             (keep both notes: each is signed by the log key)",
            new.size,
            old_path.display(),
            old.size
        )));
    }
    if new.size == old.size && new.root != old.root {
        return Err(MirrorError::Inconsistent(format!(
            "{served_at} and {} are checkpoints of {} records with different roots ({} and {}), both signed by \
             the log key: the log forked; nothing was written (keep both notes as evidence)",
            old_path.display(),
            new.size,
            b64::encode(new.root),
            b64::encode(old.root)
        )));
    }
    Ok(())
}

/// Why the new tree's tiles did not authenticate. When the failing tile is the mirror's own, the
/// mirror's tiles are authenticated against its own checkpoint (only now: a run that succeeds
/// reads them once): if they hold, the server's tree contradicts a tile the log vouched for
/// before, which is a fork; if not, the file changed on disk.
fn blame(
    e: &TileError,
    staged: &Staged<'_>,
    old: Option<&Checkpoint>,
    old_path: &Path,
    served_at: &str,
) -> MirrorError {
    let (Some(old), Some(blamed)) = (old, staged.blamed_tile(e)) else {
        return tile_error(e, staged, served_at);
    };
    let hidden = ProgressBar::hidden();
    let own = Staged::new(staged.server, staged.out, &hidden);
    match tile::authenticate(old.size, old.root, &own) {
        Err(old_e @ TileError::Unreadable { .. }) => MirrorError::Io(format!("cannot read a tile: {old_e}")),
        Err(old_e) if own.blamed_tile(&old_e).is_some() => tile_error(&old_e, &own, served_at),
        Err(old_e) => MirrorError::Inconsistent(format!(
            "the log at {} does not extend this mirror: its tiles for the {} records of {} do not \
             authenticate against it ({old_e}): the log forked; nothing was written",
            staged.server.base(),
            old.size,
            old_path.display()
        )),
        Ok(_) if own.blamed_tile(e) == Some(blamed) => MirrorError::Inconsistent(format!(
            "the log at {} does not extend this mirror: {e}, but the mirror's {} authenticates against {} \
             ({} records, signed by the same log key): the log forked; nothing was written",
            staged.server.base(),
            blamed.path(),
            old_path.display(),
            old.size
        )),
        Ok(_) => tile_error(e, staged, served_at),
    }
}

/// Says whose copy of a tile failed: the mirror's (damaged on disk) or the server's.
fn tile_error(e: &TileError, staged: &Staged<'_>, served_at: &str) -> MirrorError {
    match (e, blamed(e)) {
        (TileError::Unreadable { .. }, _) => MirrorError::Io(format!("cannot read a tile: {e}")),
        (_, Some(path)) if staged.blamed_tile(e).is_some() => MirrorError::Damaged(format!(
            "{}: the mirror's own copy does not authenticate: {e}. It changed after a run wrote it; remove it \
             and run mirror again to fetch it anew",
            staged.out.join(path).display()
        )),
        _ => MirrorError::Unverified(format!(
            "the server's tiles do not authenticate against {served_at}: {e}; nothing unverified was written"
        )),
    }
}

/// Checks one entry bundle (the mirror's copy, or else the server's) and writes a fetched one.
fn mirror_bundle(
    staged: &Staged<'_>,
    auth: &Authenticated,
    bundle: &Tile,
    served_at: &str,
    written: &Mutex<BTreeSet<PathBuf>>,
) -> Result<(), MirrorError> {
    let (bytes, was_local) = staged.read_tracked(bundle).map_err(|reason| {
        MirrorError::Io(format!("cannot read a tile: {}", TileError::Unreadable { path: bundle.path(), reason }))
    })?;
    if let Err(e) = auth.check_bundle(bundle, &bytes) {
        return Err(tile_error(&e, staged, served_at));
    }
    if !was_local {
        write_tile(staged.out, bundle, &bytes, written)?;
    }
    Ok(())
}

fn write_tile(out: &Path, tile: &Tile, bytes: &[u8], written: &Mutex<BTreeSet<PathBuf>>) -> Result<(), MirrorError> {
    let path = out.join(tile.path());
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| out.to_path_buf());
    std::fs::create_dir_all(&dir).map_err(|e| MirrorError::Io(format!("{}: {e}", dir.display())))?;
    write_atomically(&path, bytes).map_err(|e| MirrorError::Io(format!("{}: {e}", path.display())))?;
    written.lock().unwrap_or_else(|p| p.into_inner()).insert(dir);
    Ok(())
}

/// Writes through a temp file in the same directory, fsynced before the rename: a reader sees
/// the whole file or none. The directory is the caller's to fsync.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}{TEMP_INFIX}{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn sync_dir(dir: &Path) -> Result<(), MirrorError> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| MirrorError::Io(format!("{}: {e}", dir.display())))
}

/// Fsyncs each directory a tile was written to and every directory above it up to `out`
/// (some were just created), so the tiles are durable before the checkpoint names them.
fn sync_dirs(out: &Path, written: &BTreeSet<PathBuf>) -> Result<(), MirrorError> {
    let mut dirs = BTreeSet::new();
    for dir in written {
        let mut at = Some(dir.as_path());
        while let Some(d) = at {
            if !dirs.insert(d.to_path_buf()) || d == out {
                break;
            }
            at = d.parent();
        }
    }
    // Deepest first: a directory's entry in its parent is synced after its own contents.
    for dir in dirs.iter().rev() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Removes the partial tiles and bundles under `out/tile` that are not in `keep`, and the temp
/// files of interrupted runs. Full tiles and anything that is not a tile stay.
fn remove_stale(out: &Path, keep: &HashSet<Tile>) -> (u64, Vec<String>) {
    let mut removed = 0;
    let mut warnings = Vec::new();
    let mut stale = Vec::new();
    if let Ok(entries) = std::fs::read_dir(out) {
        stale.extend(entries.flatten().map(|e| e.path()).filter(|p| is_temp(p)));
    }
    let mut dirs = vec![out.join("tile")];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                warnings.push(format!("{}: {e}", dir.display()));
                continue;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(path);
                continue;
            }
            let rel: Vec<String> = match path.strip_prefix(out) {
                Ok(rel) => rel.iter().map(|s| s.to_string_lossy().into_owned()).collect(),
                Err(_) => continue,
            };
            let unneeded = Tile::parse_path(&rel.join("/")).is_ok_and(|t| !t.is_full() && !keep.contains(&t));
            if unneeded || is_temp(&path) {
                stale.push(path);
            }
        }
    }
    for path in stale {
        match std::fs::remove_file(&path) {
            Ok(()) => removed += 1,
            Err(e) => warnings.push(format!("cannot remove {}: {e}", path.display())),
        }
    }
    (removed, warnings)
}

fn is_temp(path: &Path) -> bool {
    path.file_name().is_some_and(|n| {
        let n = n.to_string_lossy();
        n.starts_with('.') && n.contains(TEMP_INFIX)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_partials_and_temp_files_go_full_tiles_stay() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        for path in [
            "tile/0/000",
            "tile/0/001.p/3",
            "tile/0/001.p/5",
            "tile/entries/001.p/3",
            "tile/entries/001.p/5",
            "tile/1/000.p/1",
            "tile/0/.002.mirror-tmp-77",
            "tile/0/notes.txt",
        ] {
            let path = out.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, b"x").unwrap();
        }
        std::fs::write(out.join(".checkpoint.mirror-tmp-77"), b"x").unwrap();
        let keep: HashSet<Tile> = tile::hash_tiles(256 + 5).into_iter().chain(tile::entry_bundles(256 + 5)).collect();
        let (removed, warnings) = remove_stale(out, &keep);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(removed, 4);
        let mut left: Vec<String> = Vec::new();
        let mut dirs = vec![out.to_path_buf()];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                if e.file_type().unwrap().is_dir() {
                    dirs.push(e.path());
                } else {
                    left.push(e.path().strip_prefix(out).unwrap().to_string_lossy().into_owned());
                }
            }
        }
        left.sort();
        assert_eq!(
            left,
            ["tile/0/000", "tile/0/001.p/5", "tile/0/notes.txt", "tile/1/000.p/1", "tile/entries/001.p/5"]
        );
    }

    #[test]
    fn a_smaller_or_forked_checkpoint_is_refused() {
        let old = Checkpoint { origin: "log".into(), size: 10, root: [1; 32] };
        let at = Path::new("m/checkpoint");
        let shrunk = Checkpoint { size: 9, ..old.clone() };
        assert!(
            matches!(refuse_unless_extends(&old, &shrunk, "s", at), Err(MirrorError::Inconsistent(m)) if m.contains("shrank"))
        );
        let forked = Checkpoint { root: [2; 32], ..old.clone() };
        assert!(
            matches!(refuse_unless_extends(&old, &forked, "s", at), Err(MirrorError::Inconsistent(m)) if m.contains("forked"))
        );
        assert!(refuse_unless_extends(&old, &old, "s", at).is_ok());
        assert!(refuse_unless_extends(&old, &Checkpoint { size: 11, ..old.clone() }, "s", at).is_ok());
    }
}
