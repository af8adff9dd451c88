//! Salesforce's JSON shapes for token, identity and error answers, and their translation into
//! core's types. No networking here.

use forcelink_core::{
    AccessToken, Identity, OrgId, RefreshToken, SalesforceError, TokenResponse, UserId,
};
use serde::Deserialize;

#[derive(Deserialize)]
pub(crate) struct RawToken {
    access_token: String,
    refresh_token: Option<String>,
    instance_url: String,
    id: String,
    /// Salesforce sends a string of milliseconds; tolerate a number too.
    issued_at: Option<serde_json::Value>,
    signature: Option<String>,
    scope: Option<String>,
}

impl RawToken {
    pub(crate) fn into_response(self) -> TokenResponse {
        let issued_at = match self.issued_at {
            Some(serde_json::Value::String(text)) => text,
            Some(serde_json::Value::Number(number)) => number.to_string(),
            _ => String::new(),
        };
        TokenResponse {
            access_token: AccessToken::new(self.access_token),
            refresh_token: self.refresh_token.map(RefreshToken::new),
            instance_url: self.instance_url,
            id: self.id,
            issued_at,
            signature: self.signature,
            scope: self.scope,
        }
    }
}

impl std::fmt::Debug for RawToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawToken([redacted])")
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct RawIdentity {
    user_id: String,
    organization_id: String,
    username: String,
    display_name: Option<String>,
    email: Option<String>,
}

impl RawIdentity {
    pub(crate) fn into_identity(self) -> Result<Identity, SalesforceError> {
        let protocol = |what: &str| SalesforceError::Protocol {
            detail: format!("identity has a bad {what}"),
        };
        Ok(Identity {
            org_id: OrgId::parse(&self.organization_id).map_err(|_| protocol("organization_id"))?,
            user_id: UserId::parse(&self.user_id).map_err(|_| protocol("user_id"))?,
            username: self.username,
            display_name: self.display_name,
            email: self.email,
        })
    }
}

/// An introspection answer: `exp` in seconds since the epoch.
#[derive(Debug, Deserialize)]
pub(crate) struct RawIntrospection {
    active: bool,
    exp: Option<i64>,
}

impl RawIntrospection {
    pub(crate) fn into_introspection(self) -> forcelink_core::salesforce::Introspection {
        use chrono::TimeZone;
        forcelink_core::salesforce::Introspection {
            active: self.active,
            expires_at: self
                .exp
                .and_then(|exp| chrono::Utc.timestamp_opt(exp, 0).single()),
        }
    }
}

/// A revoke or other endpoint error body.
#[derive(Debug, Deserialize)]
pub(crate) struct RawError {
    pub(crate) error: Option<String>,
    pub(crate) error_description: Option<String>,
}
