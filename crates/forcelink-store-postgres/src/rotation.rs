//! The rotation-in-flight record and connection health on PostgreSQL.
//!
//! `begin` writes the record only if the caller holds the lease (expired or not: the caller
//! renews), the generation is the expected one and the current record is the one it replaces
//! (`IS NOT DISTINCT FROM`, so `NULL` means "none"). `end` acts only on its own attempt. Each
//! is one `UPDATE`, re-checked by PostgreSQL against the row as committed by a concurrent
//! writer; the commit that stores new tokens and clears the record is in `connections`. This
//! module must not read the clock (`now()`).

use chrono::{DateTime, Utc};
use forcelink_core::{ConnectionHealth, ConnectionKey, RotationEnd, RotationInFlight, StoreError};
use sqlx::PgPool;

use crate::rows::unavailable;

pub(crate) async fn begin(
    pool: &PgPool,
    key: &ConnectionKey,
    expected_generation: i64,
    replacing: Option<&str>,
    record: &RotationInFlight,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE connections SET inflight_attempt = $5, inflight_owner = $3, \
         inflight_started_at = $6, inflight_old_hash = $7, inflight_recovery = $8 \
         WHERE org_id = $1 AND context = $2 AND lease_owner = $3 AND generation = $4 \
         AND inflight_attempt IS NOT DISTINCT FROM $9::text",
    )
    .bind(key.org_id.as_str())
    .bind(key.context.as_str())
    .bind(&record.owner)
    .bind(expected_generation)
    .bind(&record.attempt_id)
    .bind(record.started_at)
    .bind(&record.old_refresh_hash)
    .bind(record.recovery)
    .bind(replacing)
    .execute(pool)
    .await
    .map_err(unavailable("begin_rotation"))?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn end(
    pool: &PgPool,
    key: &ConnectionKey,
    attempt_id: &str,
    end: &RotationEnd,
) -> Result<bool, StoreError> {
    let (state, cause) = match &end.state {
        Some((state, cause)) => (Some(state.as_str()), Some(cause.as_str())),
        None => (None, None),
    };
    let done = sqlx::query(
        "UPDATE connections SET health = $4, health_detail = $5, \
         state = COALESCE($6::text, state), \
         state_cause = CASE WHEN $6::text IS NULL THEN state_cause ELSE $7 END, \
         inflight_attempt = CASE WHEN $8 THEN inflight_attempt END, \
         inflight_owner = CASE WHEN $8 THEN inflight_owner END, \
         inflight_started_at = CASE WHEN $8 THEN inflight_started_at END, \
         inflight_old_hash = CASE WHEN $8 THEN inflight_old_hash END, \
         inflight_recovery = CASE WHEN $8 THEN inflight_recovery ELSE FALSE END, \
         updated_at = $9 \
         WHERE org_id = $1 AND context = $2 AND inflight_attempt = $3",
    )
    .bind(key.org_id.as_str())
    .bind(key.context.as_str())
    .bind(attempt_id)
    .bind(end.health.as_str())
    .bind(end.health_detail.as_deref())
    .bind(state)
    .bind(cause)
    .bind(end.keep_in_flight)
    .bind(end.now)
    .execute(pool)
    .await
    .map_err(unavailable("end_rotation"))?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn set_health(
    pool: &PgPool,
    key: &ConnectionKey,
    health: ConnectionHealth,
    detail: Option<&str>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE connections SET health = $3, health_detail = $4, updated_at = $5 \
         WHERE org_id = $1 AND context = $2",
    )
    .bind(key.org_id.as_str())
    .bind(key.context.as_str())
    .bind(health.as_str())
    .bind(detail)
    .bind(now)
    .execute(pool)
    .await
    .map_err(unavailable("set_health"))?;
    Ok(done.rows_affected() > 0)
}
