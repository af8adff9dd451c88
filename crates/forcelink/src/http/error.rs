//! The one HTTP error type: a status and a stable body `{"error": code, "message": text}`.
//!
//! 5xx bodies carry no internals; the cause is logged here, once. Messages never contain a
//! secret (core's errors are built without them).

use axum::Json;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use forcelink_core::BrokerError;
use serde_json::json;

/// An API failure with its stable code.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub extra: Option<serde_json::Value>,
    pub retry_after: Option<i64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            extra: None,
            retry_after: None,
        }
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    /// 500 `internal`, saying nothing more: the cause is logged where it is handled.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }
    pub fn with_retry_after(mut self, seconds: i64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
    pub fn with_extra(mut self, extra: serde_json::Value) -> Self {
        self.extra = Some(extra);
        self
    }
}

impl From<BrokerError> for ApiError {
    fn from(error: BrokerError) -> Self {
        use StatusCode as S;
        let message = error.to_string();
        match &error {
            BrokerError::NotFound(_) => Self::new(S::NOT_FOUND, "connection_not_found", message),
            BrokerError::InvalidState => Self::new(S::BAD_REQUEST, "invalid_state", message),
            BrokerError::AuthorizationDenied { .. } => {
                Self::new(S::BAD_REQUEST, "authorization_denied", message)
            }
            BrokerError::OrgMismatch { .. } => Self::new(S::CONFLICT, "org_mismatch", message),
            BrokerError::SignatureInvalid => {
                Self::new(S::BAD_GATEWAY, "signature_invalid", message)
            }
            BrokerError::MissingRefreshToken => {
                Self::new(S::BAD_REQUEST, "missing_refresh_token", message)
            }
            BrokerError::NeedsReauth { .. } => Self::new(S::CONFLICT, "needs_reauth", message),
            BrokerError::IpBlocked { .. } => {
                Self::new(S::SERVICE_UNAVAILABLE, "ip_blocked", message)
            }
            BrokerError::AppMisconfigured { .. } => {
                Self::new(S::BAD_GATEWAY, "app_misconfigured", message)
            }
            BrokerError::Unavailable { .. } => {
                Self::new(S::SERVICE_UNAVAILABLE, "upstream_unavailable", message)
            }
            BrokerError::OutcomeUnknown { .. } => {
                Self::new(S::SERVICE_UNAVAILABLE, "outcome_unknown", message)
            }
            BrokerError::Busy { retry_after, .. } => {
                let seconds = retry_after.num_seconds().max(1);
                Self::new(S::SERVICE_UNAVAILABLE, "busy", message).with_retry_after(seconds)
            }
            BrokerError::Protocol { .. } => Self::new(S::BAD_GATEWAY, "upstream_protocol", message),
            BrokerError::Store(_) => {
                tracing::error!(%error, "store failure");
                Self::new(
                    S::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "storage is unavailable, try again",
                )
            }
            BrokerError::Vault(_) => {
                tracing::error!(%error, "vault failure");
                Self::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.code, "message": self.message });
        let extra = self.extra.as_ref().and_then(|extra| extra.as_object());
        if let (Some(fields), Some(map)) = (extra, body.as_object_mut()) {
            for (key, value) in fields {
                map.insert(key.clone(), value.clone());
            }
        }
        let mut response =
            (self.status, [("cache-control", "no-store")], Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(seconds),
            );
        }
        response
    }
}

/// The answer for a path no route serves: 404 `not_found` (the path only: a query string may
/// carry a secret).
pub async fn no_route(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route serves {}", uri.path()),
    )
}

/// The answer for a method a route does not serve: 405 `method_not_allowed`.
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not served at {}", uri.path()),
    )
}
