//! The refresh-token heartbeat on SQLite: claiming due connections, moving their next beat,
//! the idle report, the at-risk level, and counts by state.
//!
//! A claim is one `UPDATE … WHERE rowid IN (SELECT … LIMIT) RETURNING` statement (by rowid:
//! the due index leads straight to each row, with no detour through the index on `id`):
//! SQLite runs one writer at a time, so two processes on one file never claim the same
//! connection. The due and idle queries read `connections_by_heartbeat_due` and
//! `connections_by_refresh_token_use` (migration 0003), so their cost follows the rows they
//! return. Times come from the caller, never SQLite's clock.

use chrono::{DateTime, Utc};
use forcelink_core::{Connection, ConnectionKey, ConnectionState, StoreError};
use sqlx::SqlitePool;

use crate::rows::{self, connection_columns, corrupt, micros, unavailable};

pub(crate) async fn claim_due(
    pool: &SqlitePool,
    owner: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<Connection>, StoreError> {
    let found = sqlx::query(concat!(
        "UPDATE connections SET lease_owner = ?1, lease_until = ?3 \
         WHERE rowid IN (SELECT rowid FROM connections \
         WHERE state = 'active' AND heartbeat_due_at <= ?2 \
         AND (lease_owner IS NULL OR lease_until IS NULL OR lease_until <= ?2) \
         ORDER BY heartbeat_due_at LIMIT ?4) RETURNING ",
        connection_columns!()
    ))
    .bind(owner)
    .bind(micros(now))
    .bind(micros(lease_until))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(unavailable("claim_due_heartbeats"))?;
    let mut claimed = found
        .iter()
        .map(rows::connection)
        .collect::<Result<Vec<_>, _>>()?;
    // RETURNING has no order of its own.
    claimed.sort_by_key(|connection| connection.heartbeat_due_at);
    Ok(claimed)
}

pub(crate) async fn set_due(
    pool: &SqlitePool,
    key: &ConnectionKey,
    due_at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE connections SET heartbeat_due_at = ?3 WHERE org_id = ?1 AND context = ?2",
    )
    .bind(key.org_id.as_str())
    .bind(key.context.as_str())
    .bind(micros(due_at))
    .execute(pool)
    .await
    .map_err(unavailable("set_heartbeat_due"))?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn idle(
    pool: &SqlitePool,
    used_before: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<Connection>, StoreError> {
    let found = sqlx::query(concat!(
        "SELECT ",
        connection_columns!(),
        " FROM connections WHERE state = 'active' AND refresh_token_used_at < ?1 \
         ORDER BY refresh_token_used_at LIMIT ?2"
    ))
    .bind(micros(used_before))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(unavailable("idle_refresh_tokens"))?;
    found.iter().map(rows::connection).collect()
}

pub(crate) async fn lost_rotations(
    pool: &SqlitePool,
    started_before: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<Connection>, StoreError> {
    let found = sqlx::query(concat!(
        "SELECT ",
        connection_columns!(),
        " FROM connections WHERE inflight_attempt IS NOT NULL AND state = 'active' \
         AND inflight_started_at < ?1 ORDER BY inflight_started_at LIMIT ?2"
    ))
    .bind(micros(started_before))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(unavailable("lost_rotations"))?;
    found.iter().map(rows::connection).collect()
}

pub(crate) async fn set_at_risk_level(
    pool: &SqlitePool,
    key: &ConnectionKey,
    level: i32,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE connections SET at_risk_level = ?3 \
         WHERE org_id = ?1 AND context = ?2 AND at_risk_level <> ?3",
    )
    .bind(key.org_id.as_str())
    .bind(key.context.as_str())
    .bind(level)
    .execute(pool)
    .await
    .map_err(unavailable("set_at_risk_level"))?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn count_by_state(
    pool: &SqlitePool,
) -> Result<Vec<(ConnectionState, u64)>, StoreError> {
    let found: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, COUNT(*) FROM connections GROUP BY state ORDER BY state")
            .fetch_all(pool)
            .await
            .map_err(unavailable("count_by_state"))?;
    found
        .into_iter()
        .map(|(state, count)| {
            let state =
                ConnectionState::parse(&state).ok_or_else(|| corrupt("state", "unknown state"))?;
            let count = u64::try_from(count).map_err(|_| corrupt("state", "negative count"))?;
            Ok((state, count))
        })
        .collect()
}
