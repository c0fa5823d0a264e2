//! A follower hands writes to the leader over HTTP, so a submission sent to any node gets the
//! answer the leader gives (SPEC.md section 11). Forwarding (rather than a pending table in
//! PostgreSQL) keeps one admission path: the leader's sequencer, with the leader's
//! signature checks and receipts, and no second queue to drain or expire.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::cluster::Role;
use super::extract::{body_bytes, BodyError};
use super::AppState;
use crate::limits::{FORWARD_BODY_BYTES_MAX, FORWARD_CATCH_UP_MS, FORWARD_TIMEOUT_MS};
use crate::problem::Problem;

/// The routes that write: only these are forwarded (reads are served by every node).
const WRITE_PATHS: [&str; 2] = ["/v1/events", "/v1/github/webhook"];
/// Marks a forwarded request, so it is never forwarded twice (two nodes that each think the
/// other leads answer 503 instead of looping).
const FORWARDED: &str = "x-grantline-forwarded";
/// Request headers the leader needs (GitHub's signature and delivery id among them).
const PASSED_ON: [&str; 5] =
    ["content-type", "x-github-event", "x-github-delivery", "x-hub-signature-256", "x-github-hook-id"];
/// Response headers the client needs.
const PASSED_BACK: [&str; 3] = ["content-type", "retry-after", "location"];

/// The HTTP client followers forward with.
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(FORWARD_TIMEOUT_MS))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

fn no_leader(detail: &str) -> Response {
    Problem::new(StatusCode::SERVICE_UNAVAILABLE, "no_leader", detail).into_response()
}

/// Middleware: passes requests through on the leader (and on sled); on a follower, forwards
/// writes to the leader.
pub(crate) async fn writes_to_leader(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let Some(cluster) = app.cluster.as_ref() else { return next.run(req).await };
    if req.method() != Method::POST || !WRITE_PATHS.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    match cluster.role() {
        Role::Leader | Role::Standalone => next.run(req).await,
        Role::Halted => no_leader("this node halted: the database is behind what it has seen (see /healthz)"),
        Role::Follower if req.headers().contains_key(FORWARDED) => {
            no_leader("this node no longer leads (a failover is under way); retry shortly")
        }
        Role::Follower => match cluster.leader_url() {
            None => no_leader("no node leads the cluster right now (a failover is under way); retry shortly"),
            Some(leader) => {
                let response = forward(&app.forwarder, &leader, &cluster.advertise, req).await;
                read_your_writes(&app, response).await
            }
        },
    }
}

/// Holds a forwarded write's answer until this node has published the record it names (at most
/// [`FORWARD_CATCH_UP_MS`]), so a client that reads from the node it wrote to sees its write.
async fn read_your_writes(app: &AppState, response: Response) -> Response {
    if !response.status().is_success() {
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, FORWARD_BODY_BYTES_MAX).await {
        Ok(bytes) => bytes,
        Err(e) => return Problem::internal(format!("the leader's answer: {e}")).into_response(),
    };
    let seq = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("seq").or_else(|| v.get("record").and_then(|r| r.get("seq"))).and_then(|s| s.as_u64()));
    if let Some(seq) = seq {
        app.queue.wake();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(FORWARD_CATCH_UP_MS);
        while app.snapshot().size <= seq && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }
    Response::from_parts(parts, Body::from(bytes))
}

async fn forward(client: &reqwest::Client, leader: &str, me: &str, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match body_bytes(&parts.headers, body, FORWARD_BODY_BYTES_MAX).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            return Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the body is larger than {FORWARD_BODY_BYTES_MAX} bytes"),
            )
            .into_response()
        }
        Err(BodyError::Unreadable(why)) => return Problem::bad_request("body_unreadable", why).into_response(),
    };
    let path = parts.uri.path_and_query().map_or(parts.uri.path(), |p| p.as_str());
    let mut out = client.post(format!("{}{path}", leader.trim_end_matches('/'))).header(FORWARDED, me).body(body);
    for name in PASSED_ON {
        if let Some(value) = parts.headers.get(name) {
            out = out.header(name, value.as_bytes());
        }
    }
    let answer = match out.send().await {
        Ok(answer) => answer,
        Err(e) => {
            tracing::warn!(leader, "cannot forward a write to the leader: {e}");
            return no_leader("the leader cannot be reached (a failover is under way); retry shortly");
        }
    };
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let headers: Vec<(HeaderName, HeaderValue)> = PASSED_BACK
        .iter()
        .filter_map(|name| {
            let value = answer.headers().get(*name)?;
            Some((HeaderName::from_static(name), HeaderValue::from_bytes(value.as_bytes()).ok()?))
        })
        .collect();
    match answer.bytes().await {
        Ok(bytes) => {
            let mut response = Response::new(Body::from(bytes));
            *response.status_mut() = status;
            response.headers_mut().extend(headers);
            response
        }
        Err(e) => {
            tracing::warn!(leader, "the leader's answer broke off: {e}");
            no_leader("the leader's answer broke off; retry (an identical resubmission returns the same receipt)")
        }
    }
}
