//! The Store port: what forcelink needs from durable storage, and nothing about how.
//!
//! Both adapters (SQLite, PostgreSQL) implement it and pass the same conformance suite
//! (`conformance`, behind the `test-support` feature). Every write that depends on what was
//! read is a compare-and-swap on the connection's generation, so a stale writer can never
//! overwrite a newer grant. Tokens cross this port only as `Sealed` values.

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::connection::{
    Connection, ConnectionHealth, ConnectionState, RotationInFlight, SealedTokens,
};
use crate::ids::{ConnectionContext, ConnectionKey, OrgId, UserId};
use crate::salesforce::LoginHost;
use crate::vault::Sealed;

pub mod agents;
#[cfg(feature = "test-support")]
pub mod conformance;
pub mod cursor;
pub mod group;
pub mod schema;
pub mod sealed;
pub mod webhooks;

pub use agents::AgentKeyStore;
pub use cursor::SealedCursor;
pub use group::{BeginWrite, CommitWrite, RotationWrite, RotationWritten};
pub use sealed::{SealedField, SealedPage, SealedRef, SealedRow, SealedValue};
pub use webhooks::{
    AttemptWrite, ClaimedDelivery, DeliveryAttempt, DeliveryFilter, DeliveryNext, DeliveryState,
    EndpointSource, EndpointWrite, Enqueued, Retried, RetryTarget, WebhookBacklog, WebhookDelivery,
    WebhookEndpoint, WebhookStore,
};

/// A storage failure, named after what the caller can do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or the operation failed; retrying may help.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A stored row could not be read back into the domain (bad id, unknown state...).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The schema could not be brought up to date.
    #[error("migration failed: {0}")]
    Migration(String),
}

/// A started authorization, waiting for its callback. Single use; found by the hash of `state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingAuthorization {
    pub state_hash: String,
    pub verifier: Sealed,
    pub expected_org: Option<OrgId>,
    pub context: ConnectionContext,
    pub login_host: LoginHost,
    pub redirect_uri: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A new grant from a completed authorization.
#[derive(Debug, Clone)]
pub struct GrantWrite {
    pub key: ConnectionKey,
    pub user_id: UserId,
    pub username: String,
    pub instance_url: String,
    pub login_host: LoginHost,
    pub identity_url: String,
    pub scopes: Vec<String>,
    pub pkce: bool,
    pub signature_verified: bool,
    pub tokens: SealedTokens,
    pub now: DateTime<Utc>,
    pub heartbeat_due_at: DateTime<Utc>,
}

/// What `save_grant` did.
#[derive(Debug, Clone)]
pub struct SavedGrant {
    pub connection: Connection,
    /// The tokens of the grant this one replaced (a reconnect), to be revoked at Salesforce.
    pub replaced: Option<SealedTokens>,
}

/// New tokens from a refresh.
#[derive(Debug, Clone)]
pub struct RefreshWrite {
    pub access_token: Sealed,
    pub access_issued_at: DateTime<Utc>,
    pub access_expires_at: DateTime<Utc>,
    /// The rotated refresh token; `None` keeps the stored one (rotation off).
    pub refresh_token: Option<Sealed>,
    pub instance_url: String,
    pub refreshed_at: DateTime<Utc>,
    pub heartbeat_due_at: DateTime<Utc>,
}

/// What a compare-and-swap commit found.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // returned once per refresh; boxing buys nothing
pub enum CommitOutcome {
    Committed(Connection),
    /// Someone else wrote first; the current generation is given.
    Stale {
        current_generation: i64,
    },
    Missing,
}

/// What `acquire_lease` found.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // returned once per refresh; boxing buys nothing
pub enum LeaseOutcome {
    /// The caller holds the lease now; the connection as stored at that moment.
    Acquired(Connection),
    /// Another owner holds an unexpired lease.
    Busy {
        owner: String,
        until: DateTime<Utc>,
    },
    Missing,
}

/// How a rotation attempt ended without new tokens.
#[derive(Debug, Clone)]
pub struct RotationEnd {
    pub health: ConnectionHealth,
    pub health_detail: Option<String>,
    /// Also move the connection to this state with this cause (a dead grant).
    pub state: Option<(ConnectionState, String)>,
    /// Keep the in-flight record (the outcome is unknown) instead of clearing it.
    pub keep_in_flight: bool,
    pub now: DateTime<Utc>,
}

/// One refresh attempt in the rotation lineage (for forensics and incident reports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshAttempt {
    pub attempt_id: String,
    pub org_id: OrgId,
    pub context: ConnectionContext,
    /// Which forcelink instance made it.
    pub instance: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub old_refresh_hash: String,
    pub new_refresh_hash: Option<String>,
    pub latency_ms: Option<i64>,
    /// `pending`, `rotated`, `refreshed` (no rotation), or the failure class.
    pub outcome: String,
    pub detail: Option<String>,
    /// The local address or proxy the request left from, when known.
    pub egress: Option<String>,
    pub recovery: bool,
}

/// Something that happened, for people and machines (webhooks read these in id order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub at: DateTime<Utc>,
    /// `connection.needs_reauth`, `connection.ip_blocked`, `app.misconfigured`, ...
    pub kind: String,
    pub org_id: Option<OrgId>,
    pub context: Option<ConnectionContext>,
    /// A JSON object with the details; never a secret.
    pub detail: String,
}

/// A stored event with its store-assigned, strictly increasing id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub kind: String,
    pub org_id: Option<OrgId>,
    pub context: Option<ConnectionContext>,
    pub detail: String,
}

/// Which events to read.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub key: Option<ConnectionKey>,
    /// Only events with an id greater than this.
    pub after_id: Option<i64>,
    pub limit: u32,
}

/// An app-wide problem (not one connection's), raised once and cleared once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    pub kind: String,
    pub active: bool,
    pub since: DateTime<Utc>,
    pub detail: String,
}

/// Durable storage of connections and pending authorizations (and, through `WebhookStore`,
/// webhook endpoints and their outbox).
#[async_trait]
pub trait Store: AgentKeyStore + WebhookStore + Send + Sync + fmt::Debug + 'static {
    /// Reachable, and the schema is current.
    async fn ping(&self) -> Result<(), StoreError>;

    async fn insert_pending(&self, pending: &PendingAuthorization) -> Result<(), StoreError>;
    /// Removes and returns the pending authorization for `state_hash`. Returns `None` if there
    /// is none or it expired at `now` (an expired one is removed too). Two concurrent calls
    /// for one state never both get it.
    async fn take_pending(
        &self,
        state_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<PendingAuthorization>, StoreError>;
    /// Deletes pending authorizations that expired before `now`; returns how many.
    async fn purge_expired_pending(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Inserts a connection (generation 1), or replaces the grant of the existing connection
    /// with the same key in place: same id and created_at, generation + 1, state active,
    /// cause cleared, last_refresh_at cleared, rotation_seen false. Atomic.
    async fn save_grant(&self, grant: &GrantWrite) -> Result<SavedGrant, StoreError>;

    async fn connection(&self, key: &ConnectionKey) -> Result<Option<Connection>, StoreError>;
    /// All connections ordered by org id, then context.
    async fn connections(&self) -> Result<Vec<Connection>, StoreError>;

    /// Stores refreshed tokens if the generation is still `expected_generation` and the
    /// in-flight record is `attempt_id` (or, for `None`, there is none): generation + 1,
    /// last_refresh_at = refreshed_at, rotation_seen set when a refresh token is given,
    /// instance_url updated, health ok, in-flight record cleared. Otherwise changes nothing.
    async fn commit_refresh(
        &self,
        key: &ConnectionKey,
        expected_generation: i64,
        attempt_id: Option<&str>,
        write: &RefreshWrite,
    ) -> Result<CommitOutcome, StoreError>;

    /// Takes the refresh lease for `owner` until `until` if it is free, expired at `now`, or
    /// already `owner`'s. Atomic across processes: two owners never both hold it.
    async fn acquire_lease(
        &self,
        key: &ConnectionKey,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<LeaseOutcome, StoreError>;
    /// Extends the lease if `owner` still holds it. Returns whether it did.
    async fn renew_lease(
        &self,
        key: &ConnectionKey,
        owner: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Releases the lease if `owner` holds it; never someone else's. Returns whether it did.
    async fn release_lease(&self, key: &ConnectionKey, owner: &str) -> Result<bool, StoreError>;

    /// Durably records a rotation about to be sent, if `record.owner` holds the lease, the
    /// generation is `expected_generation`, and the current in-flight record's attempt id is
    /// `replacing` (`None`: there must be none). Returns whether it did.
    async fn begin_rotation(
        &self,
        key: &ConnectionKey,
        expected_generation: i64,
        replacing: Option<&str>,
        record: &RotationInFlight,
    ) -> Result<bool, StoreError>;
    /// Ends rotation `attempt_id` without new tokens: sets health (and state, if given), and
    /// clears the in-flight record unless `keep_in_flight`. Only if the in-flight record is
    /// `attempt_id`. Returns whether it did.
    async fn end_rotation(
        &self,
        key: &ConnectionKey,
        attempt_id: &str,
        end: &RotationEnd,
    ) -> Result<bool, StoreError>;
    /// Sets health outside a rotation (e.g. back to ok). Returns whether a row changed.
    async fn set_health(
        &self,
        key: &ConnectionKey,
        health: ConnectionHealth,
        detail: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Applies a group of rotation writes in order, all in one transaction: either every write
    /// is applied or, with an error, none is. Each write acts exactly as it would alone (see
    /// `BeginWrite`, `CommitWrite`), seeing the writes before it, and gets its own answer, in
    /// order. A connection may appear more than once (`group::rounds`).
    async fn write_rotations(
        &self,
        writes: &[RotationWrite],
    ) -> Result<Vec<RotationWritten>, StoreError>;

    /// Inserts or, by attempt id, updates one lineage entry.
    async fn record_attempt(&self, attempt: &RefreshAttempt) -> Result<(), StoreError>;
    /// The lineage of a connection, newest first.
    async fn attempts(
        &self,
        key: &ConnectionKey,
        limit: u32,
    ) -> Result<Vec<RefreshAttempt>, StoreError>;
    /// Every attempt of this connection that presented the refresh token with this hash,
    /// oldest first. (A refresh token belongs to one connection: the lookup goes through the
    /// connection's lineage, so the lineage needs no index by token hash, which every refresh
    /// would have written at a random place.)
    async fn attempts_presenting(
        &self,
        key: &ConnectionKey,
        old_refresh_hash: &str,
    ) -> Result<Vec<RefreshAttempt>, StoreError>;

    /// Appends an event; returns its id.
    async fn record_event(&self, event: &NewEvent) -> Result<i64, StoreError>;
    /// Events in id order, oldest first, filtered.
    async fn events(&self, filter: &EventFilter) -> Result<Vec<Event>, StoreError>;

    /// Raises an app-wide incident. Returns true only if it was not already active (so the
    /// caller raises it once across all instances).
    async fn raise_incident(
        &self,
        kind: &str,
        detail: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Clears an incident. Returns true only if it was active.
    async fn clear_incident(&self, kind: &str, now: DateTime<Utc>) -> Result<bool, StoreError>;
    async fn incidents(&self) -> Result<Vec<Incident>, StoreError>;

    /// Sets state and cause if the generation is still `expected_generation` (or always, for
    /// `None`). Returns whether a row changed.
    async fn set_state(
        &self,
        key: &ConnectionKey,
        expected_generation: Option<i64>,
        state: ConnectionState,
        cause: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Takes the refresh lease (for `owner`, until `lease_until`) on up to `limit` active
    /// connections whose heartbeat is due at `now` and whose lease is free or expired, oldest
    /// due first, and returns them as stored after the claim. Concurrent claimers (other
    /// processes) never get the same connection (PostgreSQL: `FOR UPDATE SKIP LOCKED`). Cost
    /// grows with the number due, not with the total (an index on the due time).
    async fn claim_due_heartbeats(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Connection>, StoreError>;
    /// Moves a connection's next heartbeat (e.g. later, after a failure). Returns whether it did.
    async fn set_heartbeat_due(
        &self,
        key: &ConnectionKey,
        due_at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Active connections whose refresh token was last used before `used_before`, least
    /// recently used first, at most `limit` (an index on the last use).
    async fn idle_refresh_tokens(
        &self,
        used_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Connection>, StoreError>;
    /// Active connections with an in-flight rotation that started before `started_before`
    /// (a lost outcome ready to settle), oldest first, at most `limit` (indexed).
    async fn lost_rotations(
        &self,
        started_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Connection>, StoreError>;
    /// Records the at-risk threshold last raised for a connection. Returns whether it changed.
    async fn set_at_risk_level(&self, key: &ConnectionKey, level: i32) -> Result<bool, StoreError>;
    /// How many connections are in each state, for metrics: (state, count).
    async fn count_by_state(&self) -> Result<Vec<(ConnectionState, u64)>, StoreError>;

    /// Sets the best known access-token expiry (e.g. introspected `exp`) if the generation is
    /// still `expected_generation`. Returns whether it did.
    async fn set_access_expiry(
        &self,
        key: &ConnectionKey,
        expected_generation: i64,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Removes a connection and returns what it was.
    async fn delete_connection(
        &self,
        key: &ConnectionKey,
    ) -> Result<Option<Connection>, StoreError>;

    /// Every sealed value in the store, a page at a time (pending rows, then connections),
    /// for key rotation and key-ring health checks. `cursor` is the `next` of the last page.
    async fn sealed_values(
        &self,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<SealedPage, StoreError>;
    /// Replaces one sealed value if it is still `expected`. Returns whether it did.
    async fn replace_sealed(
        &self,
        reference: &SealedRef,
        expected: &Sealed,
        replacement: &Sealed,
    ) -> Result<bool, StoreError>;
}
