//! The rotation-in-flight record and connection health on SQLite.
//!
//! The record lives on the connection's lease row in `connection_leases` (migration 0008).
//! `begin` writes the record only if the caller holds the lease (expired or not: the caller
//! renews), the generation is the expected one and the current record is the one it replaces
//! (`IS`, so `NULL` means "none"): one `UPDATE`. `end` acts only on its own attempt: it sets
//! the connection's health (and state) and clears the record in one `BEGIN IMMEDIATE`
//! transaction. The commit that stores new tokens and clears the record is in `connections`.
//! This module must not read SQLite's clock.

use chrono::{DateTime, Utc};
use forcelink_core::{ConnectionHealth, ConnectionKey, RotationEnd, RotationInFlight, StoreError};
use sqlx::SqlitePool;

use crate::rows::{micros, unavailable};

pub(crate) async fn begin(
    pool: &SqlitePool,
    key: &ConnectionKey,
    expected_generation: i64,
    replacing: Option<&str>,
    record: &RotationInFlight,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE connection_leases SET inflight_attempt = ?5, inflight_owner = ?3, \
         inflight_started_at = ?6, inflight_old_hash = ?7, inflight_recovery = ?8 \
         WHERE org_id = ?1 AND context = ?2 AND lease_owner = ?3 AND inflight_attempt IS ?9 \
         AND (SELECT generation FROM connections c \
              WHERE c.org_id = ?1 AND c.context = ?2) = ?4",
    )
    .bind(key.org_id.as_str())
    .bind(key.context.as_str())
    .bind(&record.owner)
    .bind(expected_generation)
    .bind(&record.attempt_id)
    .bind(micros(record.started_at))
    .bind(&record.old_refresh_hash)
    .bind(record.recovery)
    .bind(replacing)
    .execute(pool)
    .await
    .map_err(unavailable("begin_rotation"))?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn end(
    pool: &SqlitePool,
    key: &ConnectionKey,
    attempt_id: &str,
    end: &RotationEnd,
) -> Result<bool, StoreError> {
    let (state, cause) = match &end.state {
        Some((state, cause)) => (Some(state.as_str()), Some(cause.as_str())),
        None => (None, None),
    };
    let mut transaction = crate::write_transaction(pool, "end_rotation begin").await?;
    let done = sqlx::query(
        "UPDATE connections SET health = ?4, health_detail = ?5, \
         state = COALESCE(?6, state), \
         state_cause = CASE WHEN ?6 IS NULL THEN state_cause ELSE ?7 END, updated_at = ?8 \
         WHERE org_id = ?1 AND context = ?2 AND EXISTS (SELECT 1 FROM connection_leases l \
         WHERE l.org_id = ?1 AND l.context = ?2 AND l.inflight_attempt = ?3)",
    )
    .bind(key.org_id.as_str())
    .bind(key.context.as_str())
    .bind(attempt_id)
    .bind(end.health.as_str())
    .bind(end.health_detail.as_deref())
    .bind(state)
    .bind(cause)
    .bind(micros(end.now))
    .execute(&mut *transaction)
    .await
    .map_err(unavailable("end_rotation"))?;
    let ended = done.rows_affected() > 0;
    if ended && !end.keep_in_flight {
        crate::connections::clear_in_flight(&mut *transaction, key, "end_rotation clear").await?;
    }
    transaction
        .commit()
        .await
        .map_err(unavailable("end_rotation commit"))?;
    Ok(ended)
}

pub(crate) async fn set_health(
    pool: &SqlitePool,
    key: &ConnectionKey,
    health: ConnectionHealth,
    detail: Option<&str>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE connections SET health = ?3, health_detail = ?4, updated_at = ?5 \
         WHERE org_id = ?1 AND context = ?2",
    )
    .bind(key.org_id.as_str())
    .bind(key.context.as_str())
    .bind(health.as_str())
    .bind(detail)
    .bind(micros(now))
    .execute(pool)
    .await
    .map_err(unavailable("set_health"))?;
    Ok(done.rows_affected() > 0)
}
