//! The refresh lease on PostgreSQL: acquire, renew and release, each owner-checked.
//!
//! Acquiring is one `UPDATE … WHERE <free, expired or ours> RETURNING`; a concurrent acquirer
//! waits for the row lock and re-checks the condition against the winner's row, so two
//! instances never both hold the lease. Only on a miss is the row read, to tell `Busy` from
//! `Missing`. A lease is never compared with `now()`: `now` comes from the caller.

use chrono::{DateTime, Utc};
use forcelink_core::{ConnectionKey, LeaseOutcome, StoreError};
use sqlx::PgPool;

use crate::rows::{self, connection_columns, unavailable};

/// How often `acquire` retries when the lease it found taken was freed before it could read
/// who held it.
const ACQUIRE_ATTEMPTS: usize = 5;

pub(crate) async fn acquire(
    pool: &PgPool,
    key: &ConnectionKey,
    owner: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<LeaseOutcome, StoreError> {
    for _attempt in 0..ACQUIRE_ATTEMPTS {
        let row = sqlx::query(concat!(
            "UPDATE connections SET lease_owner = $3, lease_until = $5 \
             WHERE org_id = $1 AND context = $2 AND (lease_owner IS NULL OR lease_owner = $3 \
             OR lease_until IS NULL OR lease_until <= $4) RETURNING ",
            connection_columns!()
        ))
        .bind(key.org_id.as_str())
        .bind(key.context.as_str())
        .bind(owner)
        .bind(now)
        .bind(until)
        .fetch_optional(pool)
        .await
        .map_err(unavailable("acquire_lease"))?;
        if let Some(row) = row {
            return rows::connection(&row).map(LeaseOutcome::Acquired);
        }
        let holder = sqlx::query(
            "SELECT lease_owner, lease_until FROM connections WHERE org_id = $1 AND context = $2",
        )
        .bind(key.org_id.as_str())
        .bind(key.context.as_str())
        .fetch_optional(pool)
        .await
        .map_err(unavailable("acquire_lease read"))?;
        let Some(holder) = holder else {
            return Ok(LeaseOutcome::Missing);
        };
        let holder_owner: Option<String> = rows::get(&holder, "lease_owner")?;
        let holder_until = rows::optional_time(&holder, "lease_until")?;
        if let (Some(owner), Some(until)) = (holder_owner, holder_until)
            && until > now
        {
            return Ok(LeaseOutcome::Busy { owner, until });
        }
        // Released or expired between the update and the read: try again.
    }
    Err(StoreError::Unavailable(
        "postgres acquire_lease: the lease kept changing".into(),
    ))
}

pub(crate) async fn renew(
    pool: &PgPool,
    key: &ConnectionKey,
    owner: &str,
    until: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE connections SET lease_until = $4 \
         WHERE org_id = $1 AND context = $2 AND lease_owner = $3",
    )
    .bind(key.org_id.as_str())
    .bind(key.context.as_str())
    .bind(owner)
    .bind(until)
    .execute(pool)
    .await
    .map_err(unavailable("renew_lease"))?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn release(
    pool: &PgPool,
    key: &ConnectionKey,
    owner: &str,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE connections SET lease_owner = NULL, lease_until = NULL \
         WHERE org_id = $1 AND context = $2 AND lease_owner = $3",
    )
    .bind(key.org_id.as_str())
    .bind(key.context.as_str())
    .bind(owner)
    .execute(pool)
    .await
    .map_err(unavailable("release_lease"))?;
    Ok(done.rows_affected() > 0)
}
