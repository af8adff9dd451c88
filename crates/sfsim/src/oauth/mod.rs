//! The OAuth endpoints shared by every login host and My Domain, and their common pieces: the
//! exact error texts of reference §4.2 (UNCONFIRMED ones are named constants), the JSON error
//! shape, form parsing and fault-status answers. Endpoint logic lives in the submodules.

pub(crate) mod authorize;
pub(crate) mod client;
pub(crate) mod introspect;
pub(crate) mod refresh;
pub(crate) mod response;
pub(crate) mod revoke;
pub(crate) mod token;

use std::collections::HashMap;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Refresh token unknown, expired, revoked or rotated out (§4.2).
pub(crate) const EXPIRED_TOKEN: &str = "expired access/refresh token";
/// Concurrent refresh on the same token (§4.2, Winter '25 wording).
pub(crate) const ALREADY_PROCESSING: &str = "token request is already being processed";
/// Used or expired authorization code (UNCONFIRMED for used codes).
pub(crate) const EXPIRED_CODE: &str = "expired authorization code";
pub(crate) const INVALID_VERIFIER: &str = "invalid code verifier";
pub(crate) const AUTHENTICATION_FAILURE: &str = "authentication failure";
pub(crate) const INACTIVE_USER: &str = "inactive user";
/// UNCONFIRMED: no source shows the inactive-org description.
pub(crate) const INACTIVE_ORGANIZATION: &str = "inactive organization";
/// UNCONFIRMED: the authorize error when PKCE is required and no challenge was sent.
pub(crate) const MISSING_CODE_CHALLENGE: &str = "missing required code challenge";
/// UNCONFIRMED: the authorize error for a `code_challenge_method` other than S256.
pub(crate) const UNSUPPORTED_CHALLENGE_METHOD: &str = "unsupported code challenge method";
pub(crate) const END_USER_DENIED: &str = "end-user denied authorization";
pub(crate) const INVALID_CLIENT_CREDENTIALS: &str = "invalid client credentials";
pub(crate) const CLIENT_IDENTIFIER_INVALID: &str = "client identifier invalid";
pub(crate) const GRANT_TYPE_NOT_SUPPORTED: &str = "grant type not supported";
/// Refresh-token scopes (§2.1): either one yields a refresh token.
pub(crate) const REFRESH_SCOPES: [&str; 2] = ["refresh_token", "offline_access"];

/// An OAuth error answered as `{"error","error_description"}`.
#[derive(Debug, Clone)]
pub(crate) struct OAuthError {
    pub(crate) status: StatusCode,
    pub(crate) error: String,
    pub(crate) description: String,
}

impl OAuthError {
    pub(crate) fn new(status: StatusCode, error: &str, description: &str) -> OAuthError {
        OAuthError {
            status,
            error: error.to_owned(),
            description: description.to_owned(),
        }
    }

    pub(crate) fn invalid_grant(description: &str) -> OAuthError {
        OAuthError::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }

    pub(crate) fn invalid_client() -> OAuthError {
        OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            INVALID_CLIENT_CREDENTIALS,
        )
    }

    pub(crate) fn invalid_client_id() -> OAuthError {
        OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_client_id",
            CLIENT_IDENTIFIER_INVALID,
        )
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": self.error,
            "error_description": self.description,
        });
        json_response(self.status, &body)
    }
}

/// A JSON answer with the token endpoint's headers (§4.1).
pub(crate) fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The answer of a `FaultKind::Status` fault: HTML for 5xx (like a load balancer), JSON otherwise.
pub(crate) fn fault_status_response(status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    if status.is_server_error() {
        let reason = status.canonical_reason().unwrap_or("Error");
        let body = format!(
            "<html><head><title>{code} {reason}</title></head><body><h1>{reason}</h1></body></html>",
            code = status.as_u16()
        );
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html;charset=UTF-8"),
        );
        response
    } else {
        json_response(
            status,
            &serde_json::json!({"error": "server_error", "error_description": "injected fault"}),
        )
    }
}

/// Form or query parameters; empty values count as absent.
#[derive(Debug, Default, Clone)]
pub(crate) struct Params(HashMap<String, String>);

impl Params {
    pub(crate) fn parse(encoded: &[u8]) -> Params {
        Params(
            url::form_urlencoded::parse(encoded)
                .map(|(key, value)| (key.into_owned(), value.into_owned()))
                .collect(),
        )
    }

    /// Adds pairs that are not already present.
    pub(crate) fn merge(&mut self, other: Params) {
        for (key, value) in other.0 {
            self.0.entry(key).or_insert(value);
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }
}

/// Splits a space-separated scope string.
pub(crate) fn split_scopes(scope: &str) -> Vec<String> {
    let mut scopes: Vec<String> = Vec::new();
    for scope in scope.split([' ', '+']).filter(|s| !s.is_empty()) {
        if !scopes.iter().any(|existing| existing == scope) {
            scopes.push(scope.to_owned());
        }
    }
    scopes
}

pub(crate) fn grants_refresh_token(scopes: &[String]) -> bool {
    scopes
        .iter()
        .any(|scope| REFRESH_SCOPES.contains(&scope.as_str()))
}
