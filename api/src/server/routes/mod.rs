//! HTTP routes, one module per area. Each exposes `routes() -> Router<AppState>`.

pub(super) mod events;
pub(super) mod github;
pub(super) mod ops;
pub(super) mod pages;
pub(super) mod proofs;
pub(super) mod stream;
pub(super) mod tiles;
pub(super) mod views;

use axum::http::{Method, StatusCode, Uri};

use crate::problem::Problem;

/// Any path that is not a route.
pub(super) async fn not_found() -> Problem {
    Problem::not_found("no such endpoint; see /openapi.json")
}

/// A route asked with a method it does not serve (axum's own 405 has no body).
pub(super) async fn method_not_allowed(method: Method, uri: Uri) -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} does not accept {method}; the Allow header lists what it does, /openapi.json the whole API",
            uri.path()
        ),
    )
}

/// A store read failure, as the client sees it.
pub(super) fn store_error(e: impl std::fmt::Display) -> Problem {
    tracing::error!("store read failed: {e}");
    Problem::unavailable("the store cannot be read right now; retry later")
}
