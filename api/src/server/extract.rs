//! Extractors whose rejections are problem+json (axum's defaults are plain text).

use axum::async_trait;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use futures::StreamExt;
use serde::de::DeserializeOwned;

use crate::problem::Problem;

/// A query string, 400 `invalid_query` when it does not parse.
pub(super) struct Q<T>(pub T);

#[async_trait]
impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Q<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Q(v)),
            Err(e) => Err(Problem::bad_request(
                "invalid_query",
                format!(
                    "the query string {:?} does not fit {}: {}; /openapi.json lists each endpoint's parameters",
                    parts.uri.query().unwrap_or_default(),
                    parts.uri.path(),
                    e.body_text()
                ),
            )),
        }
    }
}

/// Path parameters, 400 `invalid_path` when they do not parse.
pub(super) struct P<T>(pub T);

#[async_trait]
impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for P<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(P(v)),
            Err(e) => Err(Problem::bad_request(
                "invalid_path",
                format!(
                    "the path {} does not fit its route: {}; /openapi.json lists each route",
                    parts.uri.path(),
                    e.body_text()
                ),
            )),
        }
    }
}

/// Why a body was not read.
pub(super) enum BodyError {
    /// More than the route's limit (declared or sent).
    TooLarge,
    /// The connection failed mid-body.
    Unreadable(String),
}

/// Reads a body of at most `bytes_max` bytes, refusing a larger declared length before
/// reading any of it.
pub(super) async fn body_bytes(headers: &HeaderMap, body: Body, bytes_max: usize) -> Result<Vec<u8>, BodyError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > bytes_max as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut buf = Vec::with_capacity(declared.unwrap_or(0).min(bytes_max as u64) as usize);
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| BodyError::Unreadable(e.to_string()))?;
        if buf.len() + chunk.len() > bytes_max {
            return Err(BodyError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}
