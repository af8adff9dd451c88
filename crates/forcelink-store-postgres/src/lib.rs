//! forcelink's `Store` on PostgreSQL: for several forcelink instances sharing one database.
//!
//! Compare-and-swap writes are single `UPDATE … WHERE generation = $n RETURNING` statements;
//! `save_grant` locks the existing row (`FOR UPDATE`) in a transaction. Migrations run under
//! sqlx's advisory lock, so instances may start together. Times are always bound from Rust,
//! never `now()`. This crate must not hold plaintext tokens (it sees only `Sealed` bytes) and
//! must not put bound values in errors.

mod agents;
mod connections;
mod events;
mod group;
mod heartbeat;
mod leases;
mod lineage;
mod migrate;
mod pending;
mod rotation;
mod rows;
mod sealed;
mod webhook_deliveries;
mod webhook_log;
mod webhooks;

/// The advisory lock webhook claims take turns on, for the race test in `tests/it` (not an API).
#[doc(hidden)]
pub use webhook_deliveries::WEBHOOK_CLAIM_LOCK;
/// The webhook backlog's statement, for the plan test in `tests/it` (not an API).
#[doc(hidden)]
pub use webhook_log::BACKLOG as WEBHOOK_BACKLOG_SQL;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use forcelink_core::{
    CommitOutcome, Connection, ConnectionHealth, ConnectionKey, ConnectionState, Event,
    EventFilter, GrantWrite, Incident, LeaseOutcome, NewEvent, PendingAuthorization,
    RefreshAttempt, RefreshWrite, RotationEnd, RotationInFlight, RotationWrite, RotationWritten,
    SavedGrant, Sealed, SealedPage, SealedRef, Store, StoreError,
};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// The PostgreSQL store. Cheap to clone; clones share one pool.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host:port/database`) with a pool of at most
    /// `max_connections`, and brings the schema up to date.
    pub async fn connect(url: &str, max_connections: u32) -> Result<PostgresStore, StoreError> {
        let store = Self::connect_as_found(url, max_connections).await?;
        migrate::run(store.pool()).await?;
        Ok(store)
    }

    /// Connects like `connect` but takes the schema as it is: it runs no migration (`ping`
    /// says whether the schema is current), for checks that must change nothing. Refuses a
    /// schema newer than this build.
    pub async fn connect_as_found(
        url: &str,
        max_connections: u32,
    ) -> Result<PostgresStore, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            // Fail start-up within seconds, not the default 30 s, when the server is down.
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(rows::unavailable("connect"))?;
        migrate::refuse_newer_schema(&pool).await?;
        Ok(PostgresStore { pool })
    }

    /// Closes every connection of the pool; later calls fail as unavailable.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> Result<(), StoreError> {
        migrate::check_current(self.pool()).await
    }

    async fn insert_pending(&self, pending: &PendingAuthorization) -> Result<(), StoreError> {
        pending::insert(self.pool(), pending).await
    }

    async fn take_pending(
        &self,
        state_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<PendingAuthorization>, StoreError> {
        pending::take(self.pool(), state_hash, now).await
    }

    async fn purge_expired_pending(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        pending::purge_expired(self.pool(), now).await
    }

    async fn save_grant(&self, grant: &GrantWrite) -> Result<SavedGrant, StoreError> {
        connections::save_grant(self.pool(), grant).await
    }

    async fn connection(&self, key: &ConnectionKey) -> Result<Option<Connection>, StoreError> {
        connections::find(self.pool(), key).await
    }

    async fn connections(&self) -> Result<Vec<Connection>, StoreError> {
        connections::list(self.pool()).await
    }

    async fn commit_refresh(
        &self,
        key: &ConnectionKey,
        expected_generation: i64,
        attempt_id: Option<&str>,
        write: &RefreshWrite,
    ) -> Result<CommitOutcome, StoreError> {
        connections::commit_refresh(self.pool(), key, expected_generation, attempt_id, write).await
    }

    async fn acquire_lease(
        &self,
        key: &ConnectionKey,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<LeaseOutcome, StoreError> {
        leases::acquire(self.pool(), key, owner, now, until).await
    }

    async fn renew_lease(
        &self,
        key: &ConnectionKey,
        owner: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        leases::renew(self.pool(), key, owner, until).await
    }

    async fn release_lease(&self, key: &ConnectionKey, owner: &str) -> Result<bool, StoreError> {
        leases::release(self.pool(), key, owner).await
    }

    async fn begin_rotation(
        &self,
        key: &ConnectionKey,
        expected_generation: i64,
        replacing: Option<&str>,
        record: &RotationInFlight,
    ) -> Result<bool, StoreError> {
        rotation::begin(self.pool(), key, expected_generation, replacing, record).await
    }

    async fn end_rotation(
        &self,
        key: &ConnectionKey,
        attempt_id: &str,
        end: &RotationEnd,
    ) -> Result<bool, StoreError> {
        rotation::end(self.pool(), key, attempt_id, end).await
    }

    async fn set_health(
        &self,
        key: &ConnectionKey,
        health: ConnectionHealth,
        detail: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        rotation::set_health(self.pool(), key, health, detail, now).await
    }

    async fn write_rotations(
        &self,
        writes: &[RotationWrite],
    ) -> Result<Vec<RotationWritten>, StoreError> {
        group::write(self.pool(), writes).await
    }

    async fn record_attempt(&self, attempt: &RefreshAttempt) -> Result<(), StoreError> {
        lineage::record(self.pool(), attempt).await
    }

    async fn attempts(
        &self,
        key: &ConnectionKey,
        limit: u32,
    ) -> Result<Vec<RefreshAttempt>, StoreError> {
        lineage::for_connection(self.pool(), key, limit).await
    }

    async fn attempts_presenting(
        &self,
        key: &ConnectionKey,
        old_refresh_hash: &str,
    ) -> Result<Vec<RefreshAttempt>, StoreError> {
        lineage::presenting(self.pool(), key, old_refresh_hash).await
    }

    async fn record_event(&self, event: &NewEvent) -> Result<i64, StoreError> {
        events::record(self.pool(), event).await
    }

    async fn events(&self, filter: &EventFilter) -> Result<Vec<Event>, StoreError> {
        events::list(self.pool(), filter).await
    }

    async fn raise_incident(
        &self,
        kind: &str,
        detail: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        events::raise_incident(self.pool(), kind, detail, now).await
    }

    async fn clear_incident(&self, kind: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        events::clear_incident(self.pool(), kind, now).await
    }

    async fn incidents(&self) -> Result<Vec<Incident>, StoreError> {
        events::incidents(self.pool()).await
    }

    async fn set_state(
        &self,
        key: &ConnectionKey,
        expected_generation: Option<i64>,
        state: ConnectionState,
        cause: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        connections::set_state(self.pool(), key, expected_generation, state, cause, now).await
    }

    async fn claim_due_heartbeats(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Connection>, StoreError> {
        heartbeat::claim_due(self.pool(), owner, now, lease_until, limit).await
    }

    async fn set_heartbeat_due(
        &self,
        key: &ConnectionKey,
        due_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        heartbeat::set_due(self.pool(), key, due_at).await
    }

    async fn idle_refresh_tokens(
        &self,
        used_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Connection>, StoreError> {
        heartbeat::idle(self.pool(), used_before, limit).await
    }

    async fn lost_rotations(
        &self,
        started_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Connection>, StoreError> {
        heartbeat::lost_rotations(self.pool(), started_before, limit).await
    }

    async fn set_at_risk_level(&self, key: &ConnectionKey, level: i32) -> Result<bool, StoreError> {
        heartbeat::set_at_risk_level(self.pool(), key, level).await
    }

    async fn count_by_state(&self) -> Result<Vec<(ConnectionState, u64)>, StoreError> {
        heartbeat::count_by_state(self.pool()).await
    }

    async fn set_access_expiry(
        &self,
        key: &ConnectionKey,
        expected_generation: i64,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        connections::set_access_expiry(self.pool(), key, expected_generation, expires_at).await
    }

    async fn delete_connection(
        &self,
        key: &ConnectionKey,
    ) -> Result<Option<Connection>, StoreError> {
        connections::delete(self.pool(), key).await
    }

    async fn sealed_values(
        &self,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<SealedPage, StoreError> {
        sealed::page(self.pool(), cursor, limit).await
    }

    async fn replace_sealed(
        &self,
        reference: &SealedRef,
        expected: &Sealed,
        replacement: &Sealed,
    ) -> Result<bool, StoreError> {
        sealed::replace(self.pool(), reference, expected, replacement).await
    }
}
