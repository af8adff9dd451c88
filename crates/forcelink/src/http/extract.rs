//! The query and path extractors of the API: axum's, with their rejections turned into the
//! API's error body (400 `invalid_query` / `invalid_path` and a message naming the field),
//! instead of axum's plain-text answer. A rejection that is the server's fault stays a 500.

use axum::extract::{FromRequestParts, rejection};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::http::error::ApiError;

/// `axum::extract::Query`, refusing a malformed query string with 400 `invalid_query`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(query_error(&rejection)),
        }
    }
}

fn query_error(rejection: &rejection::QueryRejection) -> ApiError {
    ApiError::bad_request(
        "invalid_query",
        format!("the query string is not valid: {}", rejection.body_text()),
    )
}

/// A path rejection that is the server's fault (a handler asking for a parameter its route
/// lacks) stays a 500, without its text.
fn path_error(rejection: &rejection::PathRejection) -> ApiError {
    if rejection.status().is_server_error() {
        tracing::error!(rejection = %rejection.body_text(), "path parameters do not fit the route");
        return ApiError::internal();
    }
    ApiError::bad_request(
        "invalid_path",
        format!("the path is not valid: {}", rejection.body_text()),
    )
}

/// `axum::extract::Path`, refusing a path segment that does not decode with 400
/// `invalid_path`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(path_error(&rejection)),
        }
    }
}
