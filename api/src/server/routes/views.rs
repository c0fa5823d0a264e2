//! Projections of the published state: allocations, access, requests, definitions, sponsor
//! usage and exports. Each answers from one snapshot, at the server clock.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use projector::AccessQuery;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::problem::Problem;
use crate::server::extract::{P, Q};
use crate::server::AppState;

pub(crate) const REQUEST_STATUSES: [&str; 4] = ["pending", "granted", "denied", "withdrawn"];

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/allocations", get(allocations))
        .route("/v1/access/check", get(access_check))
        .route("/v1/access/explain", get(access_explain))
        .route("/v1/requests", get(requests))
        .route("/v1/requests/:id", get(request))
        .route("/v1/resources", get(resources))
        .route("/v1/actors", get(actors))
        .route("/v1/sponsors", get(sponsors))
        .route("/v1/sponsors/:sponsor/usage", get(sponsor_usage))
        .route("/v1/exports/cirun-access.yml", get(export_cirun))
        .route("/v1/exports/users.json", get(export_users))
        .route("/v1/exports/runner-labels.json", get(export_runner_labels))
}

#[derive(Deserialize)]
struct AllocationParams {
    resource: Option<String>,
    project: Option<String>,
    /// Only grants unused for at least this many days (last use, or issue if never used).
    unused_days: Option<u64>,
}

async fn allocations(State(app): State<AppState>, Q(p): Q<AllocationParams>) -> Json<projector::Allocations> {
    let s = app.snapshot();
    let (resource, project, now_ms) = (p.resource.as_deref(), p.project.as_deref(), crate::now_ms());
    Json(match p.unused_days {
        Some(days) => s.state.allocations_unused(resource, project, days, now_ms),
        None => s.state.allocations(resource, project, now_ms),
    })
}

async fn access_check(State(app): State<AppState>, Q(q): Q<AccessQuery>) -> Json<projector::AccessAnswer> {
    Json(app.snapshot().state.access_check(&q, crate::now_ms()))
}

async fn access_explain(State(app): State<AppState>, Q(q): Q<AccessQuery>) -> Json<projector::Explanation> {
    Json(app.snapshot().state.explain(&q, crate::now_ms()))
}

#[derive(Deserialize)]
struct RequestParams {
    status: Option<String>,
}

async fn requests(State(app): State<AppState>, Q(p): Q<RequestParams>) -> Result<Json<Value>, Problem> {
    if let Some(status) = p.status.as_deref() {
        if !REQUEST_STATUSES.contains(&status) {
            return Err(Problem::bad_request(
                "invalid_query",
                format!("status must be one of {}", REQUEST_STATUSES.join(", ")),
            ));
        }
    }
    Ok(Json(json!({ "requests": app.snapshot().state.requests(p.status.as_deref()) })))
}

async fn request(State(app): State<AppState>, P(id): P<String>) -> Result<Json<projector::RequestView>, Problem> {
    app.snapshot().state.request(&id).map(Json).ok_or_else(|| Problem::not_found(format!("no request {id:?}")))
}

async fn resources(State(app): State<AppState>) -> Json<Value> {
    Json(json!({ "resources": app.snapshot().state.resources() }))
}

async fn actors(State(app): State<AppState>) -> Json<Value> {
    Json(json!({ "actors": app.snapshot().state.actors() }))
}

async fn sponsors(State(app): State<AppState>) -> Json<Value> {
    Json(json!({ "sponsors": app.snapshot().state.sponsors() }))
}

#[derive(Deserialize)]
struct UsageParams {
    from: Option<String>,
    to: Option<String>,
    bucket: Option<String>,
}

/// An RFC 3339 time or a `YYYY-MM-DD` day (UTC midnight), in Unix milliseconds.
pub(crate) fn parse_time_param(name: &str, text: &str) -> Result<i64, Problem> {
    ledger::statement::parse_rfc3339_ms(text)
        .or_else(|| ledger::statement::parse_rfc3339_ms(&format!("{text}T00:00:00Z")))
        .ok_or_else(|| {
            Problem::bad_request("invalid_query", format!("`{name}` must be an RFC 3339 time or a YYYY-MM-DD day"))
        })
}

async fn sponsor_usage(
    State(app): State<AppState>,
    P(sponsor): P<String>,
    Q(p): Q<UsageParams>,
) -> Result<Json<projector::SponsorUsage>, Problem> {
    if p.bucket.as_deref().is_some_and(|b| b != "day") {
        return Err(Problem::bad_request("invalid_query", "bucket must be `day`"));
    }
    let from = p.from.as_deref().map(|t| parse_time_param("from", t)).transpose()?;
    let to = p.to.as_deref().map(|t| parse_time_param("to", t)).transpose()?;
    app.snapshot()
        .state
        .sponsor_usage(&sponsor, from, to)
        .map(Json)
        .ok_or_else(|| Problem::not_found(format!("no sponsor {sponsor:?}")))
}

async fn export_cirun(State(app): State<AppState>) -> impl IntoResponse {
    let yaml = projector::interop::cirun_access_yaml(&app.snapshot().state, crate::now_ms());
    ([(header::CONTENT_TYPE, "application/yaml; charset=utf-8")], yaml)
}

async fn export_users(State(app): State<AppState>) -> Json<Vec<projector::UserEntry>> {
    Json(app.snapshot().state.users_json())
}

async fn export_runner_labels(State(app): State<AppState>) -> Json<std::collections::BTreeMap<String, Vec<String>>> {
    Json(app.snapshot().state.runner_labels(crate::now_ms()))
}
