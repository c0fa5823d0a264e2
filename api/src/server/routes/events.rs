//! `POST /v1/events` and the record reads.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ledger::b64;
use ledger::dsse::{Envelope, EnvelopeError, SignatureFailure, ENVELOPE_BYTES_MAX};
use ledger::record::{Record, LEAF_BYTES_MAX, LEAF_HEADER_BYTES};
use ledger::statement::{Statement, StatementError};
use projector::limits::TEXT_BYTES_MAX;
use serde::Deserialize;
use tokio::sync::oneshot;

use super::store_error;
use crate::json::{hashes_b64, InclusionProof, Receipt, RecordJson, RecordPage};
use crate::limits::{BODY_BYTES_MAX, EVENTS_PAGE_RECORDS_DEFAULT, EVENTS_PAGE_RECORDS_MAX};
use crate::problem::Problem;
use crate::server::extract::{body_bytes, BodyError, P, Q};
use crate::server::sequencer::{Outcome, QueueError, Refusal, Source, Submission, Unavailable};
use crate::server::snapshot::Snapshot;
use crate::server::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/events", get(list).post(submit))
        .route("/v1/events/:seq", get(by_seq))
        .route("/v1/events/by-id/:id", get(by_id))
}

/// A 413 that says why text far below the limit can reach it: the limit is on the whole
/// envelope, and the statement travels inside it base64-encoded (a third larger).
fn too_large(what: String) -> Problem {
    let statement_bytes_max = ENVELOPE_BYTES_MAX / 4 * 3;
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!(
            "{what}. The limit applies to the whole DSSE envelope, not to one field: the statement \
             (all its fields, e.g. a justification) is base64-encoded inside it, which adds a third, \
             so a statement of more than about {statement_bytes_max} bytes cannot fit; each text \
             field is at most {TEXT_BYTES_MAX} bytes anyway"
        ),
    )
}

/// Why the body is not an envelope (the ledger's error says whether it is JSON at all).
fn malformed_envelope(e: EnvelopeError) -> Problem {
    match &e {
        EnvelopeError::TooLarge(n) => too_large(format!("the envelope is {n} bytes, at most {ENVELOPE_BYTES_MAX}")),
        _ => Problem::bad_request("malformed_envelope", e.to_string()),
    }
}

/// Why the payload is not a statement.
fn malformed_statement(e: StatementError) -> Problem {
    Problem::bad_request("malformed_statement", e.to_string())
}

/// Reads the body, refusing more than BODY_BYTES_MAX bytes with a problem (not axum's text).
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Vec<u8>, Problem> {
    body_bytes(headers, body, BODY_BYTES_MAX).await.map_err(|e| match e {
        BodyError::TooLarge => too_large(format!("the body is larger than {BODY_BYTES_MAX} bytes")),
        BodyError::Unreadable(why) => Problem::bad_request("body_unreadable", why),
    })
}

async fn submit(State(app): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    match submit_inner(&app, &headers, body).await {
        Ok(resp) => resp,
        Err(problem) => {
            app.metrics.reject(&problem.code);
            problem.into_response()
        }
    }
}

async fn submit_inner(app: &AppState, headers: &HeaderMap, body: Body) -> Result<Response, Problem> {
    let body = read_body(headers, body).await?;
    let envelope = Envelope::parse(&body).map_err(malformed_envelope)?;
    let statement = Statement::parse(&envelope.payload).map_err(malformed_statement)?;
    // Signatures are checked here, on the handler's worker thread, in parallel across
    // requests; the sequencer only re-checks that the keys are still active.
    let snapshot = app.snapshot();
    let signers = crate::fold::verify_signers(&snapshot.state, &envelope, &statement).map_err(|e| match e {
        SignatureFailure::UnknownKey { .. } => Problem::unauthorized("unknown_key", e.to_string()),
        SignatureFailure::BadSignature { .. } => Problem::unauthorized("bad_signature", e.to_string()),
    })?;
    let id = statement.id.clone();
    let canonical = envelope.canonical_json();
    // Checked here so one oversized record can never fail a whole batch's append.
    if canonical.len() + LEAF_HEADER_BYTES > LEAF_BYTES_MAX {
        return Err(too_large(format!("the record would exceed {LEAF_BYTES_MAX} bytes")));
    }
    let outcome = sequence(app, |tx| Submission { statement, canonical, signers, source: Source::Client(tx) }).await?;
    match outcome {
        Outcome::Appended { record, snapshot } => {
            Ok((StatusCode::CREATED, Json(receipt(app, &id, &record, &snapshot)?)).into_response())
        }
        Outcome::Duplicate { record, snapshot } => {
            Ok((StatusCode::OK, Json(receipt(app, &id, &record, &snapshot)?)).into_response())
        }
        Outcome::Refused(refusal) => Err(refusal_problem(refusal)),
    }
}

/// Hands a submission to the sequencer and waits for its outcome.
pub(super) async fn sequence(
    app: &AppState,
    submission: impl FnOnce(oneshot::Sender<Outcome>) -> Submission,
) -> Result<Outcome, Problem> {
    let (tx, rx) = oneshot::channel();
    app.queue.try_send(submission(tx)).map_err(|e| match e {
        QueueError::Full => Problem::overloaded("the write queue is full; retry later"),
        QueueError::Closed => Problem::overloaded("the server is shutting down; retry later"),
    })?;
    rx.await.map_err(|_| Problem::overloaded("the server is shutting down; retry later"))
}

/// The sequencer's refusal as the client sees it.
pub(super) fn refusal_problem(refusal: Refusal) -> Problem {
    match refusal {
        Refusal::Rejected(rejection) => Problem::from_rejection(&rejection),
        Refusal::KeyInactive { keyid } => Problem::unauthorized("key_inactive", format!("key {keyid} is not active")),
        Refusal::Conflict { id, seq: Some(seq) } => Problem::new(
            StatusCode::CONFLICT,
            "id_conflict",
            format!("id {id:?} was already used for another event (seq {seq}); pick a new id"),
        ),
        Refusal::Conflict { seq: None, .. } => {
            Problem::new(StatusCode::CONFLICT, "id_conflict", "this id was already logged with other content")
        }
        Refusal::Unavailable(why) => Problem::unavailable(match why {
            Unavailable::StoreUnreadable => "the store cannot be read; retry later",
            Unavailable::AppendFailed => "the log could not be written; retry later",
            Unavailable::NotPublished => {
                "the event is stored but its checkpoint is not published yet; resubmit the same envelope for the receipt"
            }
            Unavailable::NotLeader => "no node leads the cluster right now (a failover is under way); retry shortly",
            Unavailable::Halted => {
                "this node halted: the database is behind what it has seen (see /healthz); it writes nothing more"
            }
        }),
    }
}

/// The receipt of `record` against the checkpoint of `snapshot` (which includes it).
fn receipt(app: &AppState, id: &str, record: &Record, snapshot: &Snapshot) -> Result<Receipt, Problem> {
    debug_assert!(record.seq < snapshot.size);
    let hashes = app.store.inclusion_proof(record.seq, snapshot.size).map_err(store_error)?;
    Ok(Receipt {
        seq: record.seq,
        id: id.to_string(),
        leaf_hash: b64::encode(record.leaf_hash()),
        chain_hash: b64::encode(record.chain_hash()),
        checkpoint: snapshot.checkpoint.clone(),
        inclusion: InclusionProof { index: record.seq, tree_size: snapshot.size, hashes: hashes_b64(&hashes) },
    })
}

pub(crate) fn record_json(rec: &Record) -> Result<RecordJson, Problem> {
    RecordJson::from_record(rec).map_err(|e| {
        tracing::error!("stored record does not decode: {e}");
        Problem::internal(format!("stored record {} does not decode", rec.seq))
    })
}

#[derive(Deserialize)]
struct ListParams {
    from: Option<u64>,
    limit: Option<usize>,
}

/// `GET /v1/events?from=&limit=`: `limit` defaults to 100 and is capped at 1000.
async fn list(State(app): State<AppState>, Q(p): Q<ListParams>) -> Result<Json<RecordPage>, Problem> {
    let size = app.snapshot().size;
    let from = p.from.unwrap_or(0);
    let limit = p.limit.unwrap_or(EVENTS_PAGE_RECORDS_DEFAULT).min(EVENTS_PAGE_RECORDS_MAX);
    if from >= size || limit == 0 {
        return Ok(Json(RecordPage { records: Vec::new() }));
    }
    let limit = limit.min(usize::try_from(size - from).unwrap_or(usize::MAX));
    let records = app.store.range(from, limit).map_err(store_error)?;
    let records = records.iter().filter(|r| r.seq < size).map(record_json).collect::<Result<Vec<_>, Problem>>()?;
    Ok(Json(RecordPage { records }))
}

async fn by_seq(State(app): State<AppState>, P(seq): P<u64>) -> Result<Json<RecordJson>, Problem> {
    let size = app.snapshot().size;
    if seq >= size {
        return Err(Problem::not_found(format!("no record {seq}; the log has {size} records")));
    }
    match app.store.get(seq).map_err(store_error)? {
        Some(rec) => Ok(Json(record_json(&rec)?)),
        None => Err(Problem::not_found(format!("no record {seq}"))),
    }
}

async fn by_id(State(app): State<AppState>, P(id): P<String>) -> Result<Json<RecordJson>, Problem> {
    let size = app.snapshot().size;
    match app.store.get_by_id(&id).map_err(store_error)? {
        Some(rec) if rec.seq < size => Ok(Json(record_json(&rec)?)),
        _ => Err(Problem::not_found(format!("no record with id {id:?}"))),
    }
}
