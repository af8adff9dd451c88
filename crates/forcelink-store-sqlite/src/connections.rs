//! Connections on SQLite: grants, reads, versioned refresh commits, state, deletion. Leases
//! and rotation records live in `leases` and `rotation` (table `connection_leases`).
//!
//! Compare-and-swap writes are `UPDATE … WHERE generation = ?` statements. A write that also
//! clears the connection's in-flight record, or returns the connection with its lease, runs in
//! one `BEGIN IMMEDIATE` transaction, which takes the write lock up front so another process
//! cannot interleave. This module must not read the clock: every time is bound from the
//! caller's values.

use chrono::{DateTime, Utc};
use forcelink_core::{
    CommitOutcome, Connection, ConnectionKey, ConnectionState, GrantWrite, RefreshWrite,
    SavedGrant, StoreError,
};
use sqlx::{SqliteExecutor, SqlitePool};
use uuid::Uuid;

use crate::rows::{self, connection_columns, connection_source, micros, scopes_text, unavailable};

pub(crate) async fn save_grant(
    pool: &SqlitePool,
    grant: &GrantWrite,
) -> Result<SavedGrant, StoreError> {
    let mut transaction = crate::write_transaction(pool, "save_grant begin").await?;
    let old = sqlx::query(
        "SELECT id, access_token, access_issued_at, access_expires_at, refresh_token \
         FROM connections WHERE org_id = ?1 AND context = ?2",
    )
    .bind(grant.key.org_id.as_str())
    .bind(grant.key.context.as_str())
    .fetch_optional(&mut *transaction)
    .await
    .map_err(unavailable("save_grant read"))?;
    let replaced = old.as_ref().map(rows::tokens).transpose()?;
    let id = match &old {
        Some(row) => rows::text(row, "id")?,
        None => Uuid::new_v4().to_string(),
    };
    let query = if old.is_some() {
        sqlx::query(
            "UPDATE connections SET user_id = ?3, username = ?4, instance_url = ?5, \
             login_host = ?6, identity_url = ?7, scopes = ?8, state = 'active', \
             state_cause = NULL, pkce = ?9, rotation_seen = 0, signature_verified = ?10, \
             updated_at = ?11, last_refresh_at = NULL, generation = generation + 1, \
             access_token = ?12, access_issued_at = ?13, access_expires_at = ?14, \
             refresh_token = ?15, health = 'ok', health_detail = NULL, \
             refresh_token_used_at = ?11, heartbeat_due_at = ?17, at_risk_level = 0 \
             WHERE id = ?16 AND org_id = ?1 AND context = ?2",
        )
    } else {
        sqlx::query(
            "INSERT INTO connections (org_id, context, user_id, username, instance_url, \
             login_host, identity_url, scopes, state, pkce, rotation_seen, signature_verified, \
             updated_at, access_token, access_issued_at, access_expires_at, refresh_token, \
             id, created_at, generation, refresh_token_used_at, heartbeat_due_at, \
             at_risk_level) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'active', ?9, 0, ?10, ?11, \
             ?12, ?13, ?14, ?15, ?16, ?11, 1, ?11, ?17, 0)",
        )
    };
    query
        .bind(grant.key.org_id.as_str())
        .bind(grant.key.context.as_str())
        .bind(grant.user_id.as_str())
        .bind(&grant.username)
        .bind(&grant.instance_url)
        .bind(grant.login_host.origin())
        .bind(&grant.identity_url)
        .bind(scopes_text(&grant.scopes))
        .bind(grant.pkce)
        .bind(grant.signature_verified)
        .bind(micros(grant.now))
        .bind(grant.tokens.access_token.as_bytes())
        .bind(micros(grant.tokens.access_issued_at))
        .bind(micros(grant.tokens.access_expires_at))
        .bind(
            grant
                .tokens
                .refresh_token
                .as_ref()
                .map(|sealed| sealed.as_bytes()),
        )
        .bind(id)
        .bind(micros(grant.heartbeat_due_at))
        .execute(&mut *transaction)
        .await
        .map_err(unavailable("save_grant write"))?;
    if old.is_some() {
        // A new grant ends any rotation of the old one; a lease stays with its holder.
        clear_in_flight(&mut *transaction, &grant.key, "save_grant clear").await?;
    }
    let connection = read_written(&mut *transaction, &grant.key, "save_grant read").await?;
    transaction
        .commit()
        .await
        .map_err(unavailable("save_grant commit"))?;
    Ok(SavedGrant {
        connection,
        replaced,
    })
}

pub(crate) async fn find(
    pool: &SqlitePool,
    key: &ConnectionKey,
) -> Result<Option<Connection>, StoreError> {
    read(pool, key, "connection").await
}

/// One connection with its lease and in-flight record, by key.
pub(crate) async fn read<'e>(
    executor: impl SqliteExecutor<'e>,
    key: &ConnectionKey,
    operation: &'static str,
) -> Result<Option<Connection>, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        connection_columns!(),
        " FROM ",
        connection_source!(),
        " WHERE c.org_id = ?1 AND c.context = ?2"
    ))
    .bind(key.org_id.as_str())
    .bind(key.context.as_str())
    .fetch_optional(executor)
    .await
    .map_err(unavailable(operation))?;
    row.as_ref().map(rows::connection).transpose()
}

/// The connection a write in the same transaction has just changed: its absence is an error.
async fn read_written<'e>(
    executor: impl SqliteExecutor<'e>,
    key: &ConnectionKey,
    operation: &'static str,
) -> Result<Connection, StoreError> {
    read(executor, key, operation)
        .await?
        .ok_or_else(|| StoreError::Unavailable(format!("sqlite {operation}: row vanished")))
}

/// A connection's generation, by key: what a compare-and-swap that did not match is told.
pub(crate) async fn current_generation<'e>(
    executor: impl SqliteExecutor<'e>,
    key: &ConnectionKey,
    operation: &'static str,
) -> Result<Option<i64>, StoreError> {
    sqlx::query_scalar("SELECT generation FROM connections WHERE org_id = ?1 AND context = ?2")
        .bind(key.org_id.as_str())
        .bind(key.context.as_str())
        .fetch_optional(executor)
        .await
        .map_err(unavailable(operation))
}

/// Ends a connection's rotation in flight, if any (its lease stays). A row left with neither
/// is deleted by migration 0008's trigger.
pub(crate) async fn clear_in_flight<'e>(
    executor: impl SqliteExecutor<'e>,
    key: &ConnectionKey,
    operation: &'static str,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE connection_leases SET inflight_attempt = NULL, inflight_owner = NULL, \
         inflight_started_at = NULL, inflight_old_hash = NULL, inflight_recovery = 0 \
         WHERE org_id = ?1 AND context = ?2 AND inflight_attempt IS NOT NULL",
    )
    .bind(key.org_id.as_str())
    .bind(key.context.as_str())
    .execute(executor)
    .await
    .map_err(unavailable(operation))?;
    Ok(())
}

pub(crate) async fn list(pool: &SqlitePool) -> Result<Vec<Connection>, StoreError> {
    let found = sqlx::query(concat!(
        "SELECT ",
        connection_columns!(),
        " FROM ",
        connection_source!(),
        " ORDER BY c.org_id, c.context"
    ))
    .fetch_all(pool)
    .await
    .map_err(unavailable("connections"))?;
    found.iter().map(rows::connection).collect()
}

pub(crate) async fn commit_refresh(
    pool: &SqlitePool,
    key: &ConnectionKey,
    expected_generation: i64,
    attempt_id: Option<&str>,
    write: &RefreshWrite,
) -> Result<CommitOutcome, StoreError> {
    let mut transaction = crate::write_transaction(pool, "commit_refresh begin").await?;
    let done = sqlx::query(
        "UPDATE connections SET access_token = ?4, access_issued_at = ?5, \
         access_expires_at = ?6, refresh_token = COALESCE(?7, refresh_token), \
         rotation_seen = CASE WHEN ?7 IS NULL THEN rotation_seen ELSE 1 END, \
         instance_url = ?8, last_refresh_at = ?9, updated_at = ?9, generation = generation + 1, \
         health = 'ok', health_detail = NULL, refresh_token_used_at = ?9, \
         heartbeat_due_at = ?11, at_risk_level = 0 \
         WHERE org_id = ?1 AND context = ?2 AND generation = ?3 \
         AND (SELECT inflight_attempt FROM connection_leases \
              WHERE org_id = ?1 AND context = ?2) IS ?10",
    )
    .bind(key.org_id.as_str())
    .bind(key.context.as_str())
    .bind(expected_generation)
    .bind(write.access_token.as_bytes())
    .bind(micros(write.access_issued_at))
    .bind(micros(write.access_expires_at))
    .bind(write.refresh_token.as_ref().map(|sealed| sealed.as_bytes()))
    .bind(&write.instance_url)
    .bind(micros(write.refreshed_at))
    .bind(attempt_id)
    .bind(micros(write.heartbeat_due_at))
    .execute(&mut *transaction)
    .await
    .map_err(unavailable("commit_refresh"))?;
    let outcome = if done.rows_affected() > 0 {
        clear_in_flight(&mut *transaction, key, "commit_refresh clear").await?;
        let connection = read_written(&mut *transaction, key, "commit_refresh read").await?;
        CommitOutcome::Committed(connection)
    } else {
        // Generations only grow, so a row found now at another generation was stale then too.
        // A row at the expected generation whose in-flight record is not `attempt_id` is stale
        // as well (another attempt owns the rotation): reported with that same generation.
        match current_generation(&mut *transaction, key, "commit_refresh read").await? {
            Some(current_generation) => CommitOutcome::Stale { current_generation },
            None => CommitOutcome::Missing,
        }
    };
    transaction
        .commit()
        .await
        .map_err(unavailable("commit_refresh commit"))?;
    Ok(outcome)
}

pub(crate) async fn set_state(
    pool: &SqlitePool,
    key: &ConnectionKey,
    expected_generation: Option<i64>,
    state: ConnectionState,
    cause: Option<&str>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE connections SET state = ?3, state_cause = ?4, updated_at = ?5 \
         WHERE org_id = ?1 AND context = ?2 AND (?6 IS NULL OR generation = ?6)",
    )
    .bind(key.org_id.as_str())
    .bind(key.context.as_str())
    .bind(state.as_str())
    .bind(cause)
    .bind(micros(now))
    .bind(expected_generation)
    .execute(pool)
    .await
    .map_err(unavailable("set_state"))?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn set_access_expiry(
    pool: &SqlitePool,
    key: &ConnectionKey,
    expected_generation: i64,
    expires_at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE connections SET access_expires_at = ?3 \
         WHERE org_id = ?1 AND context = ?2 AND generation = ?4",
    )
    .bind(key.org_id.as_str())
    .bind(key.context.as_str())
    .bind(micros(expires_at))
    .bind(expected_generation)
    .execute(pool)
    .await
    .map_err(unavailable("set_access_expiry"))?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn delete(
    pool: &SqlitePool,
    key: &ConnectionKey,
) -> Result<Option<Connection>, StoreError> {
    let mut transaction = crate::write_transaction(pool, "delete_connection begin").await?;
    let Some(connection) = read(&mut *transaction, key, "delete_connection read").await? else {
        return Ok(None);
    };
    // The lease row goes with it (ON DELETE CASCADE).
    sqlx::query("DELETE FROM connections WHERE org_id = ?1 AND context = ?2")
        .bind(key.org_id.as_str())
        .bind(key.context.as_str())
        .execute(&mut *transaction)
        .await
        .map_err(unavailable("delete_connection"))?;
    transaction
        .commit()
        .await
        .map_err(unavailable("delete_connection commit"))?;
    Ok(Some(connection))
}
