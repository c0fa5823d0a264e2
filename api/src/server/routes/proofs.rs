//! The transparency log: `/v1/log`, `/v1/checkpoint` and the Merkle proofs.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use ledger::b64;
use serde::Deserialize;

use super::store_error;
use crate::json::{hashes_b64, ConsistencyProof, InclusionProof, LogInfo};
use crate::problem::Problem;
use crate::server::extract::{P, Q};
use crate::server::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/log", get(log_info))
        .route("/v1/checkpoint", get(checkpoint))
        .route("/v1/proofs/inclusion/:seq", get(inclusion))
        .route("/v1/proofs/consistency", get(consistency))
}

async fn log_info(State(app): State<AppState>) -> Json<LogInfo> {
    let s = app.snapshot();
    Json(LogInfo {
        origin: s.origin.clone(),
        log_key: app.identities.log_key().to_string(),
        automation_key: app.identities.automation_key().to_string(),
        size: s.size,
        root: b64::encode(s.root),
    })
}

async fn checkpoint(State(app): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], app.checkpoint_note())
}

#[derive(Deserialize)]
struct SizeParam {
    size: Option<u64>,
}

/// `GET /v1/proofs/inclusion/{seq}?size=`: 404 for a record the log does not have, 400 for a
/// size beyond the log or not above `seq`.
async fn inclusion(
    State(app): State<AppState>,
    P(seq): P<u64>,
    Q(p): Q<SizeParam>,
) -> Result<Json<InclusionProof>, Problem> {
    let published = app.snapshot().size;
    if seq >= published {
        return Err(Problem::not_found(format!("no record {seq}; the log has {published} records")));
    }
    let size = p.size.unwrap_or(published);
    if size > published {
        return Err(Problem::bad_request(
            "invalid_size",
            format!("size {size} is beyond the log ({published} records)"),
        ));
    }
    if seq >= size {
        return Err(Problem::bad_request("invalid_size", format!("record {seq} is not in the tree of size {size}")));
    }
    let hashes = app.store.inclusion_proof(seq, size).map_err(store_error)?;
    Ok(Json(InclusionProof { index: seq, tree_size: size, hashes: hashes_b64(&hashes) }))
}

#[derive(Deserialize)]
struct ConsistencyParams {
    from: Option<u64>,
    to: Option<u64>,
}

/// `GET /v1/proofs/consistency?from=&to=` (`to` defaults to the latest size).
async fn consistency(
    State(app): State<AppState>,
    Q(p): Q<ConsistencyParams>,
) -> Result<Json<ConsistencyProof>, Problem> {
    let published = app.snapshot().size;
    let from = p.from.ok_or_else(|| Problem::bad_request("invalid_size", "the `from` size is required"))?;
    let to = p.to.unwrap_or(published);
    if from == 0 {
        return Err(Problem::bad_request(
            "invalid_size",
            "`from` must be at least 1 (every tree is consistent with the empty one)",
        ));
    }
    if from > to {
        return Err(Problem::bad_request("invalid_size", format!("`from` ({from}) is larger than `to` ({to})")));
    }
    if to > published {
        return Err(Problem::bad_request(
            "invalid_size",
            format!("`to` ({to}) is beyond the log ({published} records)"),
        ));
    }
    let hashes = app.store.consistency_proof(from, to).map_err(store_error)?;
    Ok(Json(ConsistencyProof { from, to, hashes: hashes_b64(&hashes) }))
}
