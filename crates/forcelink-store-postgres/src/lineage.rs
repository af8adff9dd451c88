//! The refresh lineage on PostgreSQL: one row per refresh attempt, upserted by attempt id.
//!
//! Rows are keyed by org id and context, not by the connection row, so they outlive a
//! deleted connection (they are forensic records). This module must not delete lineage.

use forcelink_core::{ConnectionKey, OrgId, RefreshAttempt, StoreError};
use sqlx::PgPool;
use sqlx::postgres::PgRow;

use crate::rows::{self, unavailable};

/// How many rows a `limit` of 0 means.
const DEFAULT_LIMIT: u32 = 1000;

macro_rules! attempt_columns {
    () => {
        "attempt_id, org_id, context, instance, started_at, finished_at, old_refresh_hash, \
         new_refresh_hash, latency_ms, outcome, detail, egress, recovery"
    };
}

pub(crate) async fn record(pool: &PgPool, attempt: &RefreshAttempt) -> Result<(), StoreError> {
    sqlx::query(concat!(
        "INSERT INTO refresh_attempts (",
        attempt_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
         ON CONFLICT (attempt_id) DO UPDATE SET org_id = excluded.org_id, \
         context = excluded.context, instance = excluded.instance, \
         started_at = excluded.started_at, finished_at = excluded.finished_at, \
         old_refresh_hash = excluded.old_refresh_hash, \
         new_refresh_hash = excluded.new_refresh_hash, latency_ms = excluded.latency_ms, \
         outcome = excluded.outcome, detail = excluded.detail, egress = excluded.egress, \
         recovery = excluded.recovery"
    ))
    .bind(&attempt.attempt_id)
    .bind(attempt.org_id.as_str())
    .bind(attempt.context.as_str())
    .bind(&attempt.instance)
    .bind(attempt.started_at)
    .bind(attempt.finished_at)
    .bind(&attempt.old_refresh_hash)
    .bind(attempt.new_refresh_hash.as_deref())
    .bind(attempt.latency_ms)
    .bind(&attempt.outcome)
    .bind(attempt.detail.as_deref())
    .bind(attempt.egress.as_deref())
    .bind(attempt.recovery)
    .execute(pool)
    .await
    .map_err(unavailable("record_attempt"))?;
    Ok(())
}

/// A connection's attempts, newest first; a `limit` of 0 means the default of 1000.
pub(crate) async fn for_connection(
    pool: &PgPool,
    key: &ConnectionKey,
    limit: u32,
) -> Result<Vec<RefreshAttempt>, StoreError> {
    let limit = if limit == 0 { DEFAULT_LIMIT } else { limit };
    let found = sqlx::query(concat!(
        "SELECT ",
        attempt_columns!(),
        " FROM refresh_attempts WHERE org_id = $1 AND context = $2 \
         ORDER BY started_at DESC, attempt_id DESC LIMIT $3"
    ))
    .bind(key.org_id.as_str())
    .bind(key.context.as_str())
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(unavailable("attempts"))?;
    found.iter().map(attempt).collect()
}

/// Every attempt of the connection that presented the refresh token with this hash, oldest
/// first: read through the connection's lineage index (`refresh_attempts_by_connection`).
pub(crate) async fn presenting(
    pool: &PgPool,
    key: &ConnectionKey,
    old_refresh_hash: &str,
) -> Result<Vec<RefreshAttempt>, StoreError> {
    let found = sqlx::query(concat!(
        "SELECT ",
        attempt_columns!(),
        " FROM refresh_attempts WHERE org_id = $1 AND context = $2 \
         AND old_refresh_hash = $3 ORDER BY started_at, attempt_id"
    ))
    .bind(key.org_id.as_str())
    .bind(key.context.as_str())
    .bind(old_refresh_hash)
    .fetch_all(pool)
    .await
    .map_err(unavailable("attempts_presenting"))?;
    found.iter().map(attempt).collect()
}

fn attempt(row: &PgRow) -> Result<RefreshAttempt, StoreError> {
    let org_id: OrgId = rows::org_id(row, "org_id")?;
    Ok(RefreshAttempt {
        attempt_id: rows::get(row, "attempt_id")?,
        org_id,
        context: rows::context(row, "context")?,
        instance: rows::get(row, "instance")?,
        started_at: rows::time(row, "started_at")?,
        finished_at: rows::optional_time(row, "finished_at")?,
        old_refresh_hash: rows::get(row, "old_refresh_hash")?,
        new_refresh_hash: rows::get(row, "new_refresh_hash")?,
        latency_ms: rows::get(row, "latency_ms")?,
        outcome: rows::get(row, "outcome")?,
        detail: rows::get(row, "detail")?,
        egress: rows::get(row, "egress")?,
        recovery: rows::get(row, "recovery")?,
    })
}
