//! RFC 9457 problem details: `application/problem+json` with a stable `type` per code.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use projector::{Rejection, RejectionKind};
use serde::{Deserialize, Serialize};

pub(crate) const CONTENT_TYPE: &str = "application/problem+json";
/// `type` is this prefix followed by the code: stable, one per code.
pub(crate) const TYPE_PREFIX: &str = "urn:grantline:problem:";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: String,
}

impl Problem {
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Problem {
        Problem {
            kind: format!("{TYPE_PREFIX}{code}"),
            title: title(status).to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            code: code.to_string(),
        }
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn bad_request(code: &str, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    pub fn unauthorized(code: &str, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::UNAUTHORIZED, code, detail)
    }

    pub fn overloaded(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", detail)
    }

    pub fn unavailable(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", detail)
    }

    pub fn internal(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
    }

    /// A projector rejection, with the status its kind maps to.
    pub fn from_rejection(r: &Rejection) -> Problem {
        Problem::new(rejection_status(r.kind), &r.code, r.message.clone())
    }
}

/// RejectionKind → HTTP status (SPEC.md section 8).
pub(crate) fn rejection_status(kind: RejectionKind) -> StatusCode {
    match kind {
        RejectionKind::Malformed => StatusCode::BAD_REQUEST,
        RejectionKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        RejectionKind::Forbidden => StatusCode::FORBIDDEN,
        RejectionKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

fn title(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "Malformed request",
        401 => "Bad or unknown signature",
        403 => "Role not allowed",
        404 => "Not found",
        405 => "Method not allowed",
        408 => "Request timed out",
        409 => "Id reused with other content",
        413 => "Request too large",
        422 => "Not valid in the current state",
        503 => "Service unavailable, retry later",
        _ => status.canonical_reason().unwrap_or("Error"),
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (HTTP {}, {}): {}", self.title, self.status, self.code, self.detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut resp = (status, body).into_response();
        let headers = resp.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(crate::limits::RETRY_AFTER_S));
        }
        resp
    }
}
