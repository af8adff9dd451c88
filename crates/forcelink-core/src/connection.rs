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

/// How well refreshing works right now, apart from the grant's life (`ConnectionState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionHealth {
    Ok,
    /// Salesforce answered 5xx, timed out or could not be reached; retried with backoff.
    Degraded,
    /// A refresh was refused for the source IP: an allow-list incident, not a dead grant.
    IpBlocked,
    /// A refresh may or may not have rotated the token; recovery is pending.
    OutcomeUnknown,
}

impl ConnectionHealth {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Degraded => "degraded",
            Self::IpBlocked => "ip_blocked",
            Self::OutcomeUnknown => "outcome_unknown",
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ok" => Some(Self::Ok),
            "degraded" => Some(Self::Degraded),
            "ip_blocked" => Some(Self::IpBlocked),
            "outcome_unknown" => Some(Self::OutcomeUnknown),
            _ => None,
        }
    }
}

impl fmt::Display for ConnectionHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who may refresh a connection, until when (across instances).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub until: DateTime<Utc>,
}

/// The durable record of a refresh request that may be at Salesforce right now. Written before
/// the request is sent; cleared in the same write that stores its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationInFlight {
    pub attempt_id: String,
    pub owner: String,
    pub started_at: DateTime<Utc>,
    /// SHA-256 (hex) of the refresh token presented.
    pub old_refresh_hash: String,
    /// This attempt is the one-time probe after an outcome was lost.
    pub recovery: bool,
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
    pub health: ConnectionHealth,
    pub health_detail: Option<String>,
    pub lease: Option<Lease>,
    pub in_flight: Option<RotationInFlight>,
    /// Last successful use of the refresh token (the grant, or the last refresh): the idle TTL
    /// runs from here.
    pub refresh_token_used_at: DateTime<Utc>,
    /// When the heartbeat should next use the refresh token.
    pub heartbeat_due_at: DateTime<Utc>,
    /// The at-risk threshold last raised (days left: 7, 3 or 1), 0 when not at risk.
    pub at_risk_level: i32,
}

impl Connection {
    /// Whether the cached access token may be handed out at `now`, keeping `margin` in hand.
    pub fn access_token_fresh(&self, now: DateTime<Utc>, margin: chrono::Duration) -> bool {
        self.state == ConnectionState::Active && now + margin < self.tokens.access_expires_at
    }
}
