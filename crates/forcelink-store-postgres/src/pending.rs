//! Pending authorizations on PostgreSQL: insert, single-use take, purge of expired ones.
//!
//! `take` is one `DELETE … RETURNING`, so two processes taking one state never both get it.
//! This module must not compare times in SQL against the server's clock; `now` comes from Rust.

use chrono::{DateTime, Utc};
use forcelink_core::{PendingAuthorization, StoreError};
use sqlx::PgPool;

use crate::rows::{self, pending_columns, unavailable};

pub(crate) async fn insert(
    pool: &PgPool,
    pending: &PendingAuthorization,
) -> Result<(), StoreError> {
    sqlx::query(concat!(
        "INSERT INTO pending_authorizations (",
        pending_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    ))
    .bind(&pending.state_hash)
    .bind(pending.verifier.as_bytes())
    .bind(pending.expected_org.as_ref().map(|org| org.as_str()))
    .bind(pending.context.as_str())
    .bind(pending.login_host.origin())
    .bind(&pending.redirect_uri)
    .bind(pending.created_at)
    .bind(pending.expires_at)
    .execute(pool)
    .await
    .map_err(unavailable("insert_pending"))?;
    Ok(())
}

pub(crate) async fn take(
    pool: &PgPool,
    state_hash: &str,
    now: DateTime<Utc>,
) -> Result<Option<PendingAuthorization>, StoreError> {
    let row = sqlx::query(concat!(
        "DELETE FROM pending_authorizations WHERE state_hash = $1 RETURNING ",
        pending_columns!()
    ))
    .bind(state_hash)
    .fetch_optional(pool)
    .await
    .map_err(unavailable("take_pending"))?;
    let Some(row) = row else { return Ok(None) };
    if rows::pending_expires_at(&row)? <= now {
        return Ok(None);
    }
    rows::pending(&row).map(Some)
}

pub(crate) async fn purge_expired(pool: &PgPool, now: DateTime<Utc>) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM pending_authorizations WHERE expires_at <= $1")
        .bind(now)
        .execute(pool)
        .await
        .map_err(unavailable("purge_expired_pending"))?;
    Ok(done.rows_affected())
}
