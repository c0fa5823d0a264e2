//! The HTTP routes of the public pages, merged into the server's router.
//!
//! Each handler takes the published snapshot (never the writer's lock) and renders on a
//! blocking thread, so a large page does not hold up the async workers. Query parameters are
//! read leniently: a page number that does not parse shows the first page.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::store_error;
use crate::pages::{self, LogFacts};
use crate::problem::Problem;
use crate::server::extract::{P, Q};
use crate::server::snapshot::Snapshot;
use crate::server::AppState;

pub(crate) const CONTENT_TYPE_HTML: &str = "text/html; charset=utf-8";
/// No scripts, no frames, no forms, nothing loaded from elsewhere: the pages need only their
/// own inline stylesheet.
pub(crate) const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/requests", get(requests))
        .route("/projects/:project", get(project))
        .route("/sponsors/:sponsor", get(sponsor))
        .route("/events", get(events))
}

type Params = Q<HashMap<String, String>>;

fn number<T: std::str::FromStr>(params: &HashMap<String, String>, name: &str) -> Option<T> {
    params.get(name).and_then(|v| v.parse().ok())
}

fn facts(app: &AppState, snapshot: &Snapshot) -> LogFacts {
    LogFacts {
        origin: snapshot.origin.clone(),
        size: snapshot.size,
        checkpoint: snapshot.checkpoint.clone(),
        log_key: app.identities.log_key().to_string(),
        now_ms: crate::now_ms(),
        witnesses: app.witnessing.as_ref().map(|w| w.page_facts()).unwrap_or_default(),
    }
}

/// An HTML response with the pages' security headers.
pub(crate) fn html(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_HTML));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

/// Renders on a blocking thread; `None` from `render` is a 404 saying `missing`.
async fn render(
    app: AppState,
    missing: String,
    render: impl FnOnce(&Snapshot, &LogFacts) -> Option<String> + Send + 'static,
) -> Response {
    let snapshot = app.snapshot();
    let facts = facts(&app, &snapshot);
    let rendered = tokio::task::spawn_blocking(move || match render(&snapshot, &facts) {
        Some(page) => (StatusCode::OK, page),
        None => (StatusCode::NOT_FOUND, pages::not_found(&facts, &missing)),
    })
    .await;
    match rendered {
        Ok((status, page)) => html(status, page),
        Err(e) => {
            tracing::error!("page rendering failed: {e}");
            Problem::internal("the page could not be rendered").into_response()
        }
    }
}

async fn index(State(app): State<AppState>, Q(p): Params) -> Response {
    let resource = p.get("resource").cloned();
    let page = pages::page_number(number(&p, "page"));
    let missing = format!("There is no resource {:?}.", resource.as_deref().unwrap_or(""));
    render(app, missing, move |s, f| pages::index(&s.state, f, resource.as_deref(), page)).await
}

async fn requests(State(app): State<AppState>, Q(p): Params) -> Response {
    let page = pages::page_number(number(&p, "page"));
    render(app, String::new(), move |s, f| Some(pages::requests(&s.state, f, page))).await
}

async fn project(State(app): State<AppState>, P(project): P<String>) -> Response {
    let missing = format!("The log has no event about a project named {project:?}. Project names are exact.");
    render(app, missing, move |s, f| pages::project(&s.state, f, &project)).await
}

async fn sponsor(State(app): State<AppState>, P(sponsor): P<String>) -> Response {
    let missing = format!("There is no sponsor {sponsor:?}.");
    render(app, missing, move |s, f| pages::sponsor(&s.state, f, &sponsor)).await
}

async fn events(State(app): State<AppState>, Q(p): Params) -> Response {
    let snapshot = app.snapshot();
    let window = pages::events_window(snapshot.size, number(&p, "before"), number(&p, "page"));
    let records = if window.is_empty() {
        Vec::new()
    } else {
        match app.store.range(window.from, window.len()) {
            Ok(records) => records,
            Err(e) => return store_error(e).into_response(),
        }
    };
    let facts = facts(&app, &snapshot);
    html(StatusCode::OK, pages::events(&facts, &window, &records))
}
