//! The admin key check for the JSON API: `Authorization: Bearer <admin key>`.
//!
//! Only the key's SHA-256 is held; comparison is constant-time. The presented key is never
//! logged.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::http::AppState;
use crate::http::error::ApiError;

/// Proof that the request carried the admin key.
#[derive(Debug)]
pub struct Admin;

pub fn key_hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let presented = parts
            .headers
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
            })
            .map(str::trim);
        let Some(presented) = presented else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send the admin key as `Authorization: Bearer <key>`",
            ));
        };
        if bool::from(key_hash(presented).ct_eq(&state.admin_key_hash)) {
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
