//! Operations: `/healthz`, `/metrics`, `/openapi.json`.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::server::cluster::Role;
use crate::server::AppState;

/// The hand-written OpenAPI 3.1 description of every endpoint.
pub(crate) const OPENAPI_JSON: &str = include_str!("../openapi.json");

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/metrics", get(metrics)).route("/openapi.json", get(openapi))
}

/// `{status, role, size}` (SPEC.md section 8): 200 `ok`; 503 `failing` while the last append
/// attempt failed (reads still work, but a supervisor should know that writes do not; a store
/// that failed a write is reopened only by a restart), or `halted` when the database is behind
/// what this node has seen.
async fn healthz(State(app): State<AppState>) -> (StatusCode, Json<Value>) {
    let size = app.snapshot().size;
    let role = app.cluster.as_ref().map_or(Role::Standalone, |c| c.role());
    if role == Role::Halted {
        let detail = app.cluster.as_ref().and_then(|c| c.halted_because()).unwrap_or_default();
        let body = json!({ "status": "halted", "role": role.as_str(), "size": size, "detail": detail });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body));
    }
    if app.metrics.appends_failing.load(Ordering::Relaxed) {
        let detail = "the last append failed (see the server log); writes answer 503 until one succeeds";
        let body = json!({ "status": "failing", "role": role.as_str(), "size": size, "detail": detail });
        (StatusCode::SERVICE_UNAVAILABLE, Json(body))
    } else {
        (StatusCode::OK, Json(json!({ "status": "ok", "role": role.as_str(), "size": size })))
    }
}

async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    let mut body = app.metrics.render(app.snapshot().size);
    if let Some(w) = &app.witnessing {
        crate::server::metrics::render_witnesses(&mut body, &w.metrics(), w.cosigned_size());
    }
    let role = app.cluster.as_ref().map_or(Role::Standalone, |c| c.role());
    let _ = writeln!(body, "# HELP grantline_role 1 for this node's role (standalone, leader, follower, halted).");
    let _ = writeln!(body, "# TYPE grantline_role gauge");
    for r in [Role::Standalone, Role::Leader, Role::Follower, Role::Halted] {
        let _ = writeln!(body, "grantline_role{{role=\"{}\"}} {}", r.as_str(), u8::from(r == role));
    }
    if let Some(cluster) = &app.cluster {
        let lag_s = (crate::now_ms() - cluster.level_at_ms.load(Ordering::Relaxed)).max(0) as f64 / 1000.0;
        let _ = writeln!(
            body,
            "# HELP grantline_epoch The leader epoch in the database at this node's last beat.\n# TYPE grantline_epoch gauge\n\
             grantline_epoch {}\n\
             # HELP grantline_follower_lag_records Records the database holds beyond this node's published log.\n\
             # TYPE grantline_follower_lag_records gauge\ngrantline_follower_lag_records {}\n\
             # HELP grantline_follower_lag_seconds Seconds since this node was last level with the database.\n\
             # TYPE grantline_follower_lag_seconds gauge\ngrantline_follower_lag_seconds {lag_s}",
            cluster.epoch_seen.load(Ordering::Relaxed),
            cluster.lag_records.load(Ordering::Relaxed),
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body)
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON)
}
