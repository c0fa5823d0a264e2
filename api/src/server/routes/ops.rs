//! Operations: `/healthz`, `/metrics`, `/openapi.json`.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::server::AppState;

/// The hand-written OpenAPI 3.1 description of every endpoint.
pub(crate) const OPENAPI_JSON: &str = include_str!("../openapi.json");

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/metrics", get(metrics)).route("/openapi.json", get(openapi))
}

/// 200 `ok`, or 503 `failing` while the last append attempt failed: reads still work, but a
/// supervisor should know that writes do not (a store that failed a write is reopened only by
/// a restart).
async fn healthz(State(app): State<AppState>) -> (StatusCode, Json<Value>) {
    let size = app.snapshot().size;
    if app.metrics.appends_failing.load(Ordering::Relaxed) {
        let detail = "the last append failed (see the server log); writes answer 503 until one succeeds";
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "failing", "size": size, "detail": detail })))
    } else {
        (StatusCode::OK, Json(json!({ "status": "ok", "size": size })))
    }
}

async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    let body = app.metrics.render(app.snapshot().size);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body)
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON)
}
