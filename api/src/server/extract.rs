//! Extractors whose rejections are problem+json (axum's defaults are plain text).

use axum::async_trait;
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
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
