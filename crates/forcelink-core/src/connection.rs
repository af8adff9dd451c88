//! The connection record and its states: one Salesforce grant per org and context.
//!
//! Pure data and transitions. Tokens appear only sealed; opening them is the job of the use
//! cases that hold the key ring. Nothing here performs IO.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{ConnectionKey, UserId};
use crate::salesforce::LoginHost;
use crate::vault::Sealed;

/// Where a connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    /// The grant works (or is expected to).
    Active,
    /// The grant is dead; an admin of the org must reconnect.
    NeedsReauth,
    /// Revoked on purpose.
    Revoked,
}

impl ConnectionState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::NeedsReauth => "needs_reauth",
            Self::Revoked => "revoked",
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(Self::Active),
            "needs_reauth" => Some(Self::NeedsReauth),
            "revoked" => Some(Self::Revoked),
            _ => None,
        }
    }
}

impl fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The sealed tokens of a connection and what is known of the access token's life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedTokens {
    pub access_token: Sealed,
    pub access_issued_at: DateTime<Utc>,
    /// Best known expiry: introspected `exp`, else issued_at + the configured session timeout.
    pub access_expires_at: DateTime<Utc>,
    /// Absent when the grant carries no `refresh_token` scope.
    pub refresh_token: Option<Sealed>,
}

/// A stored connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub id: Uuid,
    pub key: ConnectionKey,
    pub user_id: UserId,
    pub username: String,
    pub instance_url: String,
    pub login_host: LoginHost,
    pub identity_url: String,
    pub scopes: Vec<String>,
    pub state: ConnectionState,
    /// Why the state is what it is, for `needs_reauth` and `revoked`.
    pub state_cause: Option<String>,
    /// The grant was obtained with PKCE S256.
    pub pkce: bool,
    /// Salesforce rotated the refresh token at least once for this grant.
    pub rotation_seen: bool,
    /// The token response `signature` was verified with the client secret.
    pub signature_verified: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_refresh_at: Option<DateTime<Utc>>,
    /// Grows by one with every write of new tokens; the fencing token for commits.
    pub generation: i64,
    pub tokens: SealedTokens,
}

impl Connection {
    /// Whether the cached access token may be handed out at `now`, keeping `margin` in hand.
    pub fn access_token_fresh(&self, now: DateTime<Utc>, margin: chrono::Duration) -> bool {
        self.state == ConnectionState::Active && now + margin < self.tokens.access_expires_at
    }
}
