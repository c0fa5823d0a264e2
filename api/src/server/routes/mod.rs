//! HTTP routes, one module per area. Each exposes `routes() -> Router<AppState>`.

pub(super) mod events;
pub(super) mod ops;
pub(super) mod pages;
pub(super) mod proofs;
pub(super) mod stream;
pub(super) mod views;

use crate::problem::Problem;

/// Any path that is not a route.
pub(super) async fn not_found() -> Problem {
    Problem::not_found("no such endpoint; see /openapi.json")
}

/// A store read failure, as the client sees it.
pub(super) fn store_error(e: impl std::fmt::Display) -> Problem {
    tracing::error!("store read failed: {e}");
    Problem::unavailable("the store cannot be read right now; retry later")
}
