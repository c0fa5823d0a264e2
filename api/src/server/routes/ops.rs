//! Operations: `/healthz`, `/metrics`, `/openapi.json`.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::server::AppState;

/// The hand-written OpenAPI 3.1 description of every endpoint.
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

pub fn routes() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/metrics", get(metrics)).route("/openapi.json", get(openapi))
}

async fn healthz(State(app): State<AppState>) -> Json<Value> {
    Json(json!({ "status": "ok", "size": app.snapshot().size }))
}

async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    let body = app.metrics.render(app.snapshot().size);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body)
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON)
}
