//! The witness's HTTP side: the `add-checkpoint` route and the accept loop (a header read
//! timeout, as `server/listen.rs` has, and a cap on open connections: a witness is a public
//! service too).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use ledger::checkpoint::Checkpoint;
use ledger::note::{self, NoteError};

use super::request;
use super::state::Refusal;
use super::Witness;
use crate::limits::{REQUEST_TIMEOUT_MS, WITNESS_BODY_BYTES_MAX};

/// The media type of a 409's body (tlog-witness).
const TLOG_SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";
const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

pub(super) fn router(witness: Arc<Witness>) -> Router {
    Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .layer(DefaultBodyLimit::max(WITNESS_BODY_BYTES_MAX))
        .layer(tower_http::timeout::TimeoutLayer::new(Duration::from_millis(REQUEST_TIMEOUT_MS)))
        .with_state(witness)
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], body).into_response()
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    let mut message = message.into();
    message.push('\n');
    text(status, TEXT_CONTENT_TYPE, message)
}

/// `POST /add-checkpoint`: the checks of tlog-witness in its order (a malformed body, then
/// origin, signature, old size, last cosigned size, proof), then a cosignature.
async fn add_checkpoint(State(witness): State<Arc<Witness>>, body: Bytes) -> Response {
    let parsed = match request::parse(&body) {
        Ok(parsed) => parsed,
        Err(reason) => return refuse(StatusCode::BAD_REQUEST, format!("malformed add-checkpoint body: {reason}")),
    };
    let unverified = match note::parse(parsed.note) {
        Ok(note) => note,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("malformed checkpoint: {e}")),
    };
    let claimed = match Checkpoint::parse_text(&unverified.text) {
        Ok(checkpoint) => checkpoint,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("malformed checkpoint: {e}")),
    };
    let Some(log) = witness.logs.get(&claimed.origin) else {
        return refuse(
            StatusCode::NOT_FOUND,
            format!("unknown log origin {:?}: this witness does not follow it", claimed.origin),
        );
    };
    let opened = match note::open(parsed.note, &log.keys) {
        Ok(opened) => opened,
        Err(NoteError::UnverifiedNote) => {
            return refuse(
                StatusCode::FORBIDDEN,
                format!("the checkpoint has no signature by a trusted key of {:?}", claimed.origin),
            )
        }
        Err(NoteError::InvalidSignature(key)) => {
            return refuse(StatusCode::FORBIDDEN, format!("the checkpoint's signature by {key} does not verify"))
        }
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("malformed checkpoint: {e}")),
    };
    // The same text was parsed above; only its signatures are new.
    let checkpoint = claimed;
    if parsed.old > checkpoint.size {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("old size {} is larger than the checkpoint's size {}", parsed.old, checkpoint.size),
        );
    }
    let (old, proof, note_bytes) = (parsed.old, parsed.proof, body.slice_ref(parsed.note));
    let task_witness = witness.clone();
    let task_checkpoint = checkpoint.clone();
    // Blocking: the lock may wait for another request's fsync, and this one may fsync.
    let advanced = tokio::task::spawn_blocking(move || {
        task_witness.logs.advance(&log, old, &proof, &task_checkpoint, &note_bytes)
    })
    .await;
    match advanced {
        Ok(Ok(())) => {
            let time = u64::try_from(crate::now_ms() / 1000).unwrap_or(0);
            text(StatusCode::OK, TEXT_CONTENT_TYPE, witness.cosigner.cosign(&opened.text, time))
        }
        Ok(Err(Refusal::Conflict(size))) => text(StatusCode::CONFLICT, TLOG_SIZE_CONTENT_TYPE, format!("{size}\n")),
        Ok(Err(Refusal::Inconsistent(reason))) => refuse(StatusCode::UNPROCESSABLE_ENTITY, reason),
        Ok(Err(Refusal::Broken)) => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the witness could not persist its state of {:?}; it needs a restart", checkpoint.origin),
        ),
        Ok(Err(Refusal::Persist(reason))) => refuse(StatusCode::INTERNAL_SERVER_ERROR, reason),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("internal error: {e}")),
    }
}
