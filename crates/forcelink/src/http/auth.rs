//! Who is calling: the admin key (`Admin`) or an agent key (`Agent`), both as
//! `Authorization: Bearer <key>`.
//!
//! The two never stand in for each other: an agent key on the admin API and the admin key on
//! an agent route are refused with a message that says which key the route wants. Only
//! hashes of keys are held; the admin comparison is constant-time and agent keys are found
//! by their SHA-256. A presented key is never logged.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use forcelink_core::agents::{AGENT_KEY_PREFIX, key_digest};
use forcelink_core::{AgentDenied, AgentKey};
use subtle::ConstantTimeEq;

use crate::http::AppState;
use crate::http::error::ApiError;

/// Proof that the request carried the admin key.
#[derive(Debug)]
pub struct Admin;

/// The live agent key the request carried. Scope and capability are checked by the route.
#[derive(Debug, Clone)]
pub struct Agent(pub Arc<AgentKey>);

/// The bearer credential of a request, if any.
pub fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
                .or_else(|| value.strip_prefix("OAuth "))
        })
        .map(str::trim)
}

fn is_admin_key(state: &AppState, presented: &str) -> bool {
    bool::from(key_digest(presented).ct_eq(&state.admin_key_hash))
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(presented) = bearer(parts) else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send the admin key as `Authorization: Bearer <key>`",
            ));
        };
        if presented.starts_with(AGENT_KEY_PREFIX) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "agent_key_not_allowed",
                "this route needs the admin key; agent keys may only use the token API and the proxy",
            ));
        }
        if is_admin_key(state, presented) {
            Ok(Admin)
        } else {
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the admin key is not valid",
            ))
        }
    }
}

impl FromRequestParts<AppState> for Agent {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(presented) = bearer(parts) else {
            return Err(denied(AgentDenied::Missing));
        };
        // An agent key never is the admin key (refused at start-up), so only others need the
        // comparison: the hot path hashes once.
        if !presented.starts_with(AGENT_KEY_PREFIX) && is_admin_key(state, presented) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "admin_key_not_allowed",
                "this route needs an agent key, not the admin key; create one with \
                 `forcelink agents create --name NAME --org ORGID`",
            ));
        }
        match state.agents.authenticate(presented).await {
            Ok(key) => Ok(Agent(key)),
            Err(error) => Err(denied(error)),
        }
    }
}

/// The HTTP face of a refused agent key.
pub fn denied(error: AgentDenied) -> ApiError {
    let message = error.to_string();
    match error {
        AgentDenied::Missing => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send an agent key as `Authorization: Bearer <key>`",
        ),
        AgentDenied::Unknown => ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message),
        AgentDenied::Revoked => {
            ApiError::new(StatusCode::UNAUTHORIZED, "agent_key_revoked", message)
        }
        AgentDenied::Capability(_) => {
            ApiError::new(StatusCode::FORBIDDEN, "capability_not_granted", message)
        }
        AgentDenied::Org(_) => ApiError::new(StatusCode::FORBIDDEN, "org_not_allowed", message),
        AgentDenied::Store(store) => ApiError::from(forcelink_core::BrokerError::from(store)),
    }
}
