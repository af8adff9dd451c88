//! The refresh-token heartbeat on SQLite: claiming due connections, moving their next beat,
//! the idle report, the at-risk level, and counts by state.
//!
//! A claim is one `BEGIN IMMEDIATE` transaction on the rotations connection: it selects the
//! due connections whose lease is free or expired (through `connections_by_heartbeat_due`, by
//! rowid) and writes their leases to `connection_leases` (migration 0008), so the claim
//! rewrites no connection row. SQLite runs one writer at a time, so two processes on one file
//! never claim the same connection. The due and idle queries read
//! `connections_by_heartbeat_due` and `connections_by_refresh_token_use` (migration 0003), so
//! their cost follows the rows they return. Times come from the caller, never SQLite's clock.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use forcelink_core::{Connection, ConnectionKey, ConnectionState, Lease, StoreError};
use sqlx::{Row, SqlitePool};

use crate::rows::{self, connection_columns, connection_source, corrupt, micros, unavailable};

pub(crate) async fn claim_due(
    pool: &SqlitePool,
    owner: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<Connection>, StoreError> {
    let mut transaction = crate::write_transaction(pool, "claim_due_heartbeats begin").await?;
    let found = sqlx::query(concat!(
        "SELECT c.rowid AS row_number, ",
        connection_columns!(),
        " FROM ",
        connection_source!(),
        " WHERE c.state = 'active' AND c.heartbeat_due_at <= ?1 \
         AND (l.lease_owner IS NULL OR l.lease_until IS NULL OR l.lease_until <= ?1) \
         ORDER BY c.heartbeat_due_at LIMIT ?2"
    ))
    .bind(micros(now))
    .bind(i64::from(limit))
    .fetch_all(&mut *transaction)
    .await
    .map_err(unavailable("claim_due_heartbeats"))?;
    if found.is_empty() {
        return Ok(Vec::new());
    }
    // The claimed rows' rowids as one JSON array: one bound value for the whole batch.
    // `OR FAIL`: no statement journal (see `group`); an error rolls the whole claim back.
    let mut row_numbers = String::with_capacity(found.len() * 8 + 2);
    row_numbers.push('[');
    for (i, row) in found.iter().enumerate() {
        let row_number: i64 = row
            .try_get("row_number")
            .map_err(unavailable("claim_due_heartbeats rowid"))?;
        if i > 0 {
            row_numbers.push(',');
        }
        let _ = write!(row_numbers, "{row_number}");
    }
    row_numbers.push(']');
    sqlx::query(
        "INSERT OR FAIL INTO connection_leases (org_id, context, lease_owner, lease_until) \
         SELECT org_id, context, ?1, ?2 FROM connections \
         WHERE rowid IN (SELECT value FROM json_each(?3)) \
         ON CONFLICT (org_id, context) DO UPDATE \
         SET lease_owner = excluded.lease_owner, lease_until = excluded.lease_until",
    )
    .bind(owner)
    .bind(micros(lease_until))
    .bind(row_numbers)
    .execute(&mut *transaction)
    .await
    .map_err(unavailable("claim_due_heartbeats lease"))?;
    let claimed = found
        .iter()
        .map(|row| {
            let mut connection = rows::connection(row)?;
            connection.lease = Some(Lease {
                owner: owner.to_string(),
                until: lease_until,
            });
            Ok(connection)
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    transaction
        .commit()
        .await
        .map_err(unavailable("claim_due_heartbeats commit"))?;
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
        " FROM ",
        connection_source!(),
        " WHERE c.state = 'active' AND c.refresh_token_used_at < ?1 \
         ORDER BY c.refresh_token_used_at LIMIT ?2"
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
        " FROM connection_leases l JOIN connections c \
         ON c.org_id = l.org_id AND c.context = l.context \
         WHERE l.inflight_attempt IS NOT NULL AND c.state = 'active' \
         AND l.inflight_started_at < ?1 ORDER BY l.inflight_started_at LIMIT ?2"
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
