//! The refresh lease on SQLite: acquire, renew and release, each owner-checked, on the
//! connection's row in `connection_leases` (migration 0008).
//!
//! Acquiring reads the holder and takes the lease in one `BEGIN IMMEDIATE` transaction, so two
//! processes on one file never both hold it and a miss tells `Busy` from `Missing` without a
//! retry. A lease is never compared with SQLite's clock: `now` comes from the caller.

use chrono::{DateTime, Utc};
use forcelink_core::{ConnectionKey, LeaseOutcome, StoreError};
use sqlx::SqlitePool;

use crate::connections;
use crate::rows::{self, micros, unavailable};

pub(crate) async fn acquire(
    pool: &SqlitePool,
    key: &ConnectionKey,
    owner: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<LeaseOutcome, StoreError> {
    let mut transaction = pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(unavailable("acquire_lease begin"))?;
    let holder = sqlx::query(
        "SELECT l.lease_owner AS lease_owner, l.lease_until AS lease_until \
         FROM connections c LEFT JOIN connection_leases l \
         ON l.org_id = c.org_id AND l.context = c.context \
         WHERE c.org_id = ?1 AND c.context = ?2",
    )
    .bind(key.org_id.as_str())
    .bind(key.context.as_str())
    .fetch_optional(&mut *transaction)
    .await
    .map_err(unavailable("acquire_lease read"))?;
    let Some(holder) = holder else {
        return Ok(LeaseOutcome::Missing);
    };
    let holder_owner: Option<String> = rows::get(&holder, "lease_owner")?;
    let holder_until = rows::optional_time(&holder, "lease_until")?;
    if let (Some(holder_owner), Some(holder_until)) = (holder_owner, holder_until)
        && holder_owner != owner
        && holder_until > now
    {
        return Ok(LeaseOutcome::Busy {
            owner: holder_owner,
            until: holder_until,
        });
    }
    sqlx::query(
        "INSERT INTO connection_leases (org_id, context, lease_owner, lease_until) \
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (org_id, context) DO UPDATE \
         SET lease_owner = excluded.lease_owner, lease_until = excluded.lease_until",
    )
    .bind(key.org_id.as_str())
    .bind(key.context.as_str())
    .bind(owner)
    .bind(micros(until))
    .execute(&mut *transaction)
    .await
    .map_err(unavailable("acquire_lease"))?;
    let connection = connections::read(&mut *transaction, key, "acquire_lease read back")
        .await?
        .ok_or_else(|| StoreError::Unavailable("sqlite acquire_lease: row vanished".into()))?;
    transaction
        .commit()
        .await
        .map_err(unavailable("acquire_lease commit"))?;
    Ok(LeaseOutcome::Acquired(connection))
}

pub(crate) async fn renew(
    pool: &SqlitePool,
    key: &ConnectionKey,
    owner: &str,
    until: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE connection_leases SET lease_until = ?4 \
         WHERE org_id = ?1 AND context = ?2 AND lease_owner = ?3",
    )
    .bind(key.org_id.as_str())
    .bind(key.context.as_str())
    .bind(owner)
    .bind(micros(until))
    .execute(pool)
    .await
    .map_err(unavailable("renew_lease"))?;
    Ok(done.rows_affected() > 0)
}

/// A row left with no in-flight record is deleted by migration 0008's trigger.
pub(crate) async fn release(
    pool: &SqlitePool,
    key: &ConnectionKey,
    owner: &str,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE connection_leases SET lease_owner = NULL, lease_until = NULL \
         WHERE org_id = ?1 AND context = ?2 AND lease_owner = ?3",
    )
    .bind(key.org_id.as_str())
    .bind(key.context.as_str())
    .bind(owner)
    .execute(pool)
    .await
    .map_err(unavailable("release_lease"))?;
    Ok(done.rows_affected() > 0)
}
