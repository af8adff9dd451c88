//! forcelink's `Store` on SQLite: the embedded default, one file shared by any number of
//! processes on one machine.
//!
//! Every read-then-write is a single `UPDATE/DELETE … RETURNING` statement or a
//! `BEGIN IMMEDIATE` transaction, so concurrent processes never lose or double-apply a write.
//! Times are always bound from Rust, never taken from SQLite's clock. This crate must not hold
//! plaintext tokens (it sees only `Sealed` bytes) and must not put bound values in errors.

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

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use forcelink_core::{
    CommitOutcome, Connection, ConnectionHealth, ConnectionKey, ConnectionState, Event,
    EventFilter, GrantWrite, Incident, LeaseOutcome, NewEvent, PendingAuthorization,
    RefreshAttempt, RefreshWrite, RotationEnd, RotationInFlight, RotationWrite, RotationWritten,
    SavedGrant, Sealed, SealedPage, SealedRef, Store, StoreError,
};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CONNECTIONS: u32 = 8;

/// WAL pages after which a commit checkpoints (SQLite's default: 1,000).
const WAL_AUTOCHECKPOINT_PAGES: u32 = 16_384;

/// Page cache of the rotations connection (negative: KiB; SQLite's default is 2 MiB). It is the
/// heartbeat's only writer, so its cache stays valid between its transactions and can hold the
/// pages a round touches. The pool's connections keep the default: another connection's
/// commit empties their caches anyway.
const ROTATIONS_CACHE_SIZE: &str = "-65536";

/// A `BEGIN IMMEDIATE` transaction: it takes the write lock up front, so what it reads cannot
/// be changed by another process before it writes.
pub(crate) async fn write_transaction(
    pool: &SqlitePool,
    operation: &'static str,
) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
    pool.begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(rows::unavailable(operation))
}

/// Whether opening brings the schema up to date, or takes the file as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opening {
    Migrate,
    AsFound,
}

/// The SQLite store. Cheap to clone; clones share its pools.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// One connection of its own for grouped rotation writes and heartbeat claims: its page
    /// cache stays warm between them (a connection that another one wrote behind must re-read
    /// its pages).
    rotations: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path` and brings its schema up to
    /// date.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        Self::connect_with(SqliteConnectOptions::new().filename(path), Opening::Migrate).await
    }

    /// Opens the existing database file at `path` as it is: it neither creates the file nor
    /// migrates its schema (`ping` says whether the schema is current), for checks that must
    /// change nothing. Refuses a schema newer than this build.
    pub async fn open_as_found(path: &Path) -> Result<SqliteStore, StoreError> {
        Self::connect_with(SqliteConnectOptions::new().filename(path), Opening::AsFound).await
    }

    /// Opens a `sqlite://…` URL with the same settings as `open`.
    pub async fn open_url(url: &str) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|error| StoreError::Unavailable(format!("invalid sqlite url: {error}")))?;
        Self::connect_with(options, Opening::Migrate).await
    }

    async fn connect_with(
        options: SqliteConnectOptions,
        opening: Opening,
    ) -> Result<SqliteStore, StoreError> {
        let options = options.create_if_missing(opening == Opening::Migrate);
        // WAL is a property of the file: set it when creating or migrating, and leave a file
        // opened as found as it is (a store `open` made is WAL already).
        let options = match opening {
            Opening::Migrate => options.journal_mode(SqliteJournalMode::Wal),
            Opening::AsFound => options,
        };
        let options = options
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            // Statement journals (a multi-row UPDATE or upsert keeps one) in memory, not in a
            // temporary file: they only ever roll back a statement, never a commit.
            .pragma("temp_store", "memory")
            // A checkpoint copies each page once however often the WAL holds it, so a larger
            // WAL (64 MiB instead of 4 MiB) writes the hot pages (indexes, the lineage's tail)
            // back to the database file far less often. Commits still fsync the WAL.
            .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string());
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options.clone())
            .await
            .map_err(rows::unavailable("open"))?;
        match opening {
            Opening::Migrate => migrate::run(&pool).await?,
            Opening::AsFound => migrate::refuse_newer_schema(&pool).await?,
        }
        let rotations = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.pragma("cache_size", ROTATIONS_CACHE_SIZE))
            .await
            .map_err(rows::unavailable("open"))?;
        Ok(SqliteStore { pool, rotations })
    }

    /// The underlying pool, for tests and operator tooling in this crate.
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

#[async_trait]
impl Store for SqliteStore {
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
        group::write(&self.rotations, writes).await
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
        heartbeat::claim_due(&self.rotations, owner, now, lease_until, limit).await
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
