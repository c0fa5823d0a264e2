//! The runner layer's routes (SPEC.md section 13): GitHub's webhook, the job gate, and the
//! public list of jobs that ran without access.
//!
//! A delivery flows: signature (nothing is read before it verifies) → delivery id seen? →
//! payload → `projector`'s metering against the published state → signed by the automation
//! key → the sequencer, like any client's event → 200 once durable → the delivery id is
//! remembered. The statement's id is the job attempt's (`gh:<repo>:<job>:<attempt>`), so the
//! log itself answers redeliveries and duplicate completions; the delivery ids only spare it
//! the work.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ledger::record::Record;
use ledger::statement::Statement;
use projector::runner::{FinishedJob, GateAnswer, JobFacts, Metering};
use serde::Deserialize;

use super::events::{record_json, refusal_problem, sequence};
use super::store_error;
use crate::github::payload::{self, WorkflowJob};
use crate::json::{LoggedJob, UnauthorizedJobs, WebhookAnswer};
use crate::limits::{
    GITHUB_DELIVERY_ID_BYTES_MAX, GITHUB_METERING_ATTEMPTS_MAX, GITHUB_WEBHOOK_BODY_BYTES_MAX, JOB_GATE_BODY_BYTES_MAX,
    UNAUTHORIZED_JOBS_PAGE_MAX,
};
use crate::problem::Problem;
use crate::server::extract::{body_bytes, BodyError, Q};
use crate::server::metrics::DeliveryOutcome;
use crate::server::sequencer::{Outcome, Refusal, Source, Submission};
use crate::server::{AppState, GitHubLayer};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/github/webhook", post(webhook))
        .route("/v1/access/job", post(job_gate))
        .route("/v1/usage/unauthorized", get(unauthorized))
}

fn not_configured() -> Problem {
    Problem::not_found(
        "the GitHub runner layer is off on this server: start it with \
         `grantline serve --github-org ORG --github-webhook-secret FILE`",
    )
}

fn too_large(bytes_max: usize) -> Problem {
    Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", format!("the body is larger than {bytes_max} bytes"))
}

/// How a delivery was answered, and the outcome `/metrics` counts.
type Answered = (DeliveryOutcome, Response);

async fn webhook(State(app): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let Some(github) = app.github.as_ref() else {
        return not_configured().into_response();
    };
    let (outcome, response) = deliver(&app, github, &headers, body).await;
    app.metrics.delivery(outcome);
    response
}

fn answer(
    status: StatusCode,
    outcome: DeliveryOutcome,
    delivery: &str,
    detail: Option<String>,
    record: Option<LoggedJob>,
) -> Answered {
    let body = WebhookAnswer { delivery: delivery.to_string(), outcome: outcome.as_str().to_string(), detail, record };
    (outcome, (status, Json(body)).into_response())
}

fn refused(outcome: DeliveryOutcome, problem: Problem) -> Answered {
    (outcome, problem.into_response())
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn deliver(app: &AppState, github: &GitHubLayer, headers: &HeaderMap, body: Body) -> Answered {
    let body = match body_bytes(headers, body, GITHUB_WEBHOOK_BODY_BYTES_MAX).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            return refused(DeliveryOutcome::Malformed, too_large(GITHUB_WEBHOOK_BODY_BYTES_MAX))
        }
        Err(BodyError::Unreadable(why)) => {
            return refused(DeliveryOutcome::Malformed, Problem::bad_request("body_unreadable", why))
        }
    };
    let signature = headers.get("x-hub-signature-256").map(|v| v.as_bytes());
    if let Err(e) = github.config.secrets.verify(signature, &body) {
        return refused(DeliveryOutcome::BadSignature, Problem::unauthorized("bad_signature", e.detail()));
    }
    let delivery = match header(headers, "x-github-delivery") {
        Some(id) if is_valid_delivery_id(id) => id,
        _ => {
            return refused(
                DeliveryOutcome::Malformed,
                Problem::bad_request(
                    "missing_delivery_id",
                    format!("X-GitHub-Delivery must be 1 to {GITHUB_DELIVERY_ID_BYTES_MAX} visible ASCII characters"),
                ),
            )
        }
    };
    let Some(event) = header(headers, "x-github-event") else {
        return refused(DeliveryOutcome::Malformed, Problem::bad_request("missing_event", "no X-GitHub-Event header"));
    };
    match github.deliveries.contains(delivery) {
        Ok(true) => return answer(StatusCode::OK, DeliveryOutcome::DuplicateDelivery, delivery, None, None),
        Ok(false) => {}
        Err(e) => return refused(DeliveryOutcome::Unavailable, store_error(e)),
    }
    let answered = match event {
        "ping" => answer(StatusCode::OK, DeliveryOutcome::Pong, delivery, None, None),
        "workflow_job" => match payload::workflow_job(&body) {
            Err(why) => return refused(DeliveryOutcome::Malformed, Problem::bad_request("malformed_payload", why)),
            Ok(WorkflowJob::NotCompleted { action }) => {
                ignored(delivery, format!("action {action:?}: only completed jobs are metered"))
            }
            Ok(WorkflowJob::Completed(job)) => meter(app, github, delivery, &job).await,
        },
        other => {
            ignored(delivery, format!("event {other:?} is not metered: subscribe the webhook to workflow_job only"))
        }
    };
    if matches!(answered.0, DeliveryOutcome::Unavailable | DeliveryOutcome::Malformed) {
        return answered;
    }
    // After the event is durable: a crash in between means a redelivery meters again, and
    // the log's id answers it (already_logged). So the id needs no flush of its own: it is
    // made durable by the next append's flush (or at shutdown); losing it in a crash costs a
    // redelivery one more look, never a second record. (Flushing each id capped ignored
    // deliveries at about 5,000/s: BENCHMARKS.md.)
    if let Err(e) = github.deliveries.insert(delivery, crate::now_ms(), false) {
        tracing::warn!(delivery, "could not remember the GitHub delivery id: {e}");
    }
    answered
}

fn is_valid_delivery_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= GITHUB_DELIVERY_ID_BYTES_MAX && id.bytes().all(|b| b.is_ascii_graphic())
}

fn ignored(delivery: &str, why: String) -> Answered {
    answer(StatusCode::ACCEPTED, DeliveryOutcome::Ignored, delivery, Some(why), None)
}

fn logged(record: &Record, id: &str) -> Result<LoggedJob, Problem> {
    let json = record_json(record)?;
    let kind = json.statement.get("type").and_then(|t| t.as_str()).unwrap_or_default().to_string();
    Ok(LoggedJob { seq: record.seq, id: id.to_string(), kind })
}

fn already_logged(delivery: &str, record: &Record, id: &str) -> Answered {
    match logged(record, id) {
        Ok(job) => answer(StatusCode::OK, DeliveryOutcome::AlreadyLogged, delivery, None, Some(job)),
        Err(problem) => refused(DeliveryOutcome::Unavailable, problem),
    }
}

/// Meters a finished job: the statement the published state gives, signed by the automation
/// key, through the sequencer. Metered again (a bounded number of times) when the state moved
/// between the decision and the sequencer's check.
async fn meter(app: &AppState, github: &GitHubLayer, delivery: &str, job: &FinishedJob) -> Answered {
    let mut last_refusal = None;
    for _ in 0..GITHUB_METERING_ATTEMPTS_MAX {
        let statement = match app.snapshot().state.meter(&github.config.org, job) {
            Metering::Ignored(why) => return ignored(delivery, why.to_string()),
            Metering::AlreadyRecorded { seq } => {
                return match app.store.get(seq) {
                    Ok(Some(record)) => already_logged(delivery, &record, &usage_id(job)),
                    Ok(None) => refused(DeliveryOutcome::Unavailable, store_error(format!("record {seq} is missing"))),
                    Err(e) => refused(DeliveryOutcome::Unavailable, store_error(e)),
                }
            }
            Metering::Statement(statement) => statement,
        };
        match app.store.get_by_id(&statement.id) {
            Ok(Some(record)) => return already_logged(delivery, &record, &statement.id),
            Ok(None) => {}
            Err(e) => return refused(DeliveryOutcome::Unavailable, store_error(e)),
        }
        match submit(app, &statement).await {
            Ok(Outcome::Appended { record, .. }) => {
                let outcome = if statement.kind == "usage.reported" {
                    DeliveryOutcome::Metered
                } else {
                    DeliveryOutcome::Unauthorized
                };
                let job = LoggedJob { seq: record.seq, id: statement.id.clone(), kind: statement.kind.clone() };
                return answer(StatusCode::OK, outcome, delivery, None, Some(job));
            }
            Ok(Outcome::Duplicate { record, .. }) => return already_logged(delivery, &record, &statement.id),
            // Another delivery of the same job (a duplicate completion) got there first.
            Ok(Outcome::Refused(Refusal::Conflict { .. })) => match app.store.get_by_id(&statement.id) {
                Ok(Some(record)) => return already_logged(delivery, &record, &statement.id),
                Ok(None) => last_refusal = Some(Refusal::Conflict { id: statement.id.clone(), seq: None }),
                Err(e) => return refused(DeliveryOutcome::Unavailable, store_error(e)),
            },
            // The state changed under the decision (a grant ended, a usage key was taken):
            // decide again on the newer state.
            Ok(Outcome::Refused(refusal @ Refusal::Rejected(_))) => last_refusal = Some(refusal),
            Ok(Outcome::Refused(refusal)) => return refused(DeliveryOutcome::Unavailable, refusal_problem(refusal)),
            Err(problem) => return refused(DeliveryOutcome::Unavailable, problem),
        }
    }
    let why = last_refusal.map(|r| r.code().to_string()).unwrap_or_default();
    tracing::error!(delivery, why, "a metered job was refused by the log on every attempt");
    refused(
        DeliveryOutcome::Unavailable,
        Problem::internal(format!("the job's usage could not be logged ({why}); redeliver it from GitHub")),
    )
}

/// The statement id (and `usage`) of a job attempt.
fn usage_id(job: &FinishedJob) -> String {
    format!("gh:{}:{}:{}", job.repository_id, job.job_id, job.run_attempt)
}

async fn submit(app: &AppState, statement: &Statement) -> Result<Outcome, Problem> {
    let (canonical, signer) = app.identities.sign_as_automation(statement);
    let statement = statement.clone();
    sequence(app, |tx| Submission { statement, canonical, signers: vec![signer], source: Source::Client(tx) }).await
}

/// `POST /v1/access/job`: may this queued job run on the runner its labels name?
async fn job_gate(State(app): State<AppState>, headers: HeaderMap, body: Body) -> Result<Json<GateAnswer>, Problem> {
    let github = app.github.as_ref().ok_or_else(not_configured)?;
    let body = body_bytes(&headers, body, JOB_GATE_BODY_BYTES_MAX).await.map_err(|e| match e {
        BodyError::TooLarge => too_large(JOB_GATE_BODY_BYTES_MAX),
        BodyError::Unreadable(why) => Problem::bad_request("body_unreadable", why),
    })?;
    let facts: JobFacts = serde_json::from_slice(&body).map_err(|e| {
        Problem::bad_request(
            "malformed_job",
            format!(
                "the body is not a job's facts ({e}); expected {{repository, labels, event, head_repository, \
                 head_sha, actor: {{login, id, type}}, triggering_actor}}"
            ),
        )
    })?;
    Ok(Json(app.snapshot().state.gate(&github.config.org, &facts, crate::now_ms())))
}

#[derive(Deserialize)]
struct UnauthorizedParams {
    project: Option<String>,
    resource: Option<String>,
}

/// `GET /v1/usage/unauthorized?project=&resource=`: newest first.
async fn unauthorized(State(app): State<AppState>, Q(p): Q<UnauthorizedParams>) -> Json<UnauthorizedJobs> {
    let mut jobs = app.snapshot().state.unauthorized_jobs(p.project.as_deref(), p.resource.as_deref());
    jobs.truncate(UNAUTHORIZED_JOBS_PAGE_MAX);
    Json(UnauthorizedJobs { jobs })
}
