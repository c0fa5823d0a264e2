//! The C2SP tlog-tiles read API (DESIGN section 12): `/checkpoint`, hash tiles
//! `/tile/<L>/<N>[.p/<W>]` and entry bundles `/tile/entries/<N>[.p/<W>]`.
//!
//! Everything is read at the published size, from the store's stored hashes and records (a
//! cluster follower's replica serves them the same way); a full tile is a copy of stored
//! hashes, never recomputed.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use ledger::tile::{self, Kind, Tile};

use super::store_error;
use crate::limits::{CHECKPOINT_MAX_AGE_S, PARTIAL_TILE_MAX_AGE_S, TILE_CACHE_TILES_MAX, TILE_IMMUTABLE_MAX_AGE_S};
use crate::problem::Problem;
use crate::server::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/checkpoint", get(checkpoint)).route("/tile/*path", get(tile_route))
}

/// `GET /checkpoint`: the same note as `/v1/checkpoint`, cacheable for a few seconds only
/// (it changes with every batch).
async fn checkpoint(State(app): State<AppState>) -> Response {
    let cache = format!("public, max-age={CHECKPOINT_MAX_AGE_S}");
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8".to_string()), (header::CACHE_CONTROL, cache)],
        app.checkpoint_note(),
    )
        .into_response()
}

/// `GET /tile/...`: a hash tile or an entry bundle of the published tree. 400 for a path that
/// is not a tile path, 404 for a tile the tree does not have (yet).
async fn tile_route(State(app): State<AppState>, uri: Uri) -> Result<Response, Problem> {
    // The raw path, not a percent-decoded one, with its `tile/`: a tile has exactly one name
    // (`parse_path` strips one `tile/`, so `/tile/tile/0/000` is refused).
    let path = uri.path().strip_prefix('/').unwrap_or(uri.path());
    let tile = Tile::parse_path(path).map_err(|e| {
        Problem::bad_request(
            "invalid_path",
            format!(
                "{} is not a tile path ({}); tiles are /tile/<L>/<N>[.p/<W>] and /tile/entries/<N>[.p/<W>] \
                 (C2SP tlog-tiles: L is 0 to {}, N in groups of three digits such as x001/234, W 1 to {})",
                uri.path(),
                e.0,
                tile::TILE_LEVEL_MAX,
                tile::TILE_WIDTH - 1
            ),
        )
    })?;
    let size = app.snapshot().size;
    if !tile::exists_in(&tile, size) {
        return Err(beyond(&tile, size));
    }
    let bytes: Bytes = match tile.kind {
        Kind::Hash(_) if tile.is_full() => match app.tiles.get(&tile) {
            Some(bytes) => bytes,
            None => {
                let bytes = read_hash_tile(&app, &tile, size)?;
                app.tiles.put(tile, bytes.clone());
                bytes
            }
        },
        Kind::Hash(_) => read_hash_tile(&app, &tile, size)?,
        Kind::Entries => {
            let width = usize::from(tile.width);
            let records = app.store.range(tile.first(), width).map_err(store_error)?;
            if records.len() != width {
                return Err(store_error(format!(
                    "{} read {} records below the published size {size}, expected {width}",
                    tile.path(),
                    records.len()
                )));
            }
            Bytes::from(tile::encode_bundle(records.iter().map(|r| r.leaf())))
        }
    };
    // A full tile never changes; a partial one is superseded as the log grows.
    let cache = if tile.is_full() {
        format!("public, max-age={TILE_IMMUTABLE_MAX_AGE_S}, immutable")
    } else {
        format!("public, max-age={PARTIAL_TILE_MAX_AGE_S}")
    };
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    if let Ok(cache) = HeaderValue::from_str(&cache) {
        headers.insert(header::CACHE_CONTROL, cache);
    }
    Ok(response)
}

fn read_hash_tile(app: &AppState, tile: &Tile, size: u64) -> Result<Bytes, Problem> {
    let bytes = tile::read_hash_tile(tile, size, &app.store).map_err(store_error)?;
    bytes.map(Bytes::from).ok_or_else(|| beyond(tile, size))
}

/// Full hash tiles already served, kept in memory (they never change), oldest dropped first
/// past [`TILE_CACHE_TILES_MAX`].
#[derive(Default)]
pub(crate) struct TileCache {
    kept: Mutex<(HashMap<Tile, Bytes>, VecDeque<Tile>)>,
}

impl TileCache {
    fn get(&self, tile: &Tile) -> Option<Bytes> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner()).0.get(tile).cloned()
    }

    fn put(&self, tile: Tile, bytes: Bytes) {
        debug_assert!(tile.is_full());
        let mut guard = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let (tiles, order) = &mut *guard;
        if tiles.insert(tile, bytes).is_none() {
            order.push_back(tile);
        }
        while order.len() > TILE_CACHE_TILES_MAX {
            if let Some(oldest) = order.pop_front() {
                tiles.remove(&oldest);
            }
        }
    }
}

/// 404 for a tile the tree of `size` leaves does not have, naming the last one it has at that
/// level.
fn beyond(tile: &Tile, size: u64) -> Problem {
    let level = match tile.kind {
        Kind::Hash(level) => level,
        Kind::Entries => 0,
    };
    let count = tile::hashes_at_level(size, level);
    let last = (count > 0).then(|| {
        let index = (count - 1) / tile::TILE_WIDTH;
        let width = (count - index * tile::TILE_WIDTH) as u16;
        Tile { kind: tile.kind, index, width }.path()
    });
    let has = match last {
        Some(last) => format!("its last tile there is {last}"),
        None => "it has no tile there".to_string(),
    };
    let records = if size == 1 { "record" } else { "records" };
    Problem::not_found(format!("{} is beyond the log: the log has {size} {records} and {has}", tile.path()))
}
