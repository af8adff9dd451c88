//! forcelink's `Store` on PostgreSQL: for several forcelink instances sharing one database.
//!
//! Compare-and-swap writes are single `UPDATE … WHERE generation = $n RETURNING` statements;
//! `save_grant` locks the existing row (`FOR UPDATE`) in a transaction. Migrations run under
//! sqlx's advisory lock, so instances may start together. Times are always bound from Rust,
//! never `now()`. This crate must not hold plaintext tokens (it sees only `Sealed` bytes) and
//! must not put bound values in errors.

mod connections;
mod migrate;
mod pending;
mod rows;
mod sealed;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use forcelink_core::{
    CommitOutcome, Connection, ConnectionKey, ConnectionState, GrantWrite, PendingAuthorization,
    RefreshWrite, SavedGrant, Sealed, SealedPage, SealedRef, Store, StoreError,
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
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            // Fail start-up within seconds, not the default 30 s, when the server is down.
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(rows::unavailable("connect"))?;
        migrate::run(&pool).await?;
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
        write: &RefreshWrite,
    ) -> Result<CommitOutcome, StoreError> {
        connections::commit_refresh(self.pool(), key, expected_generation, write).await
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
