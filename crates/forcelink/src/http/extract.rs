//! The query, path and body extractors of the API: axum's, with their rejections turned into
//! the API's error body (400 `invalid_query` / `invalid_path` / `invalid_body` and a message
//! naming the field, 413 `body_too_large`), instead of axum's plain-text answer. A rejection
//! that is the server's fault stays a 500.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request, rejection};
use axum::http::StatusCode;
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

/// The largest request body an API route reads (the proxy has its own cap,
/// `proxy.max_body_bytes`).
pub const BODY_LIMIT: usize = 64 * 1024;

/// The request body, whole, refusing one over the route's limit (`BODY_LIMIT`, set with
/// `DefaultBodyLimit`) with 413 `body_too_large` and a body that could not be read with 400
/// `invalid_body`, in the API's error body. axum's `Bytes` and tower-http's limit layer
/// answered in plain text.
#[derive(Debug, Clone, Default)]
pub struct Body(pub Bytes);

impl<S> FromRequest<S> for Body
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match Bytes::from_request(request, state).await {
            Ok(bytes) => Ok(Self(bytes)),
            Err(rejection) => Err(body_error(&rejection)),
        }
    }
}

fn body_error(rejection: &rejection::BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!(
                "the request body is larger than {} KiB, the most this API reads",
                BODY_LIMIT / 1024
            ),
        );
    }
    ApiError::bad_request(
        "invalid_body",
        format!(
            "the request body could not be read: {}",
            rejection.body_text()
        ),
    )
}
