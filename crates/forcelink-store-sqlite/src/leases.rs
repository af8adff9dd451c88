//! The refresh lease on SQLite: acquire, renew and release, each owner-checked, on the
//! connection's row in `connection_leases` (migration 0008).
//!
//! Acquiring reads the connection and takes the lease in one `BEGIN IMMEDIATE` transaction, so
//! two processes on one file never both hold it and a miss tells `Busy` from `Missing` without
//! a retry. A lease is never compared with SQLite's clock: `now` comes from the caller.

use chrono::{DateTime, Utc};
use forcelink_core::{ConnectionKey, Lease, LeaseOutcome, StoreError};
use sqlx::SqlitePool;

use crate::connections;
use crate::rows::{micros, unavailable};

pub(crate) async fn acquire(
    pool: &SqlitePool,
    key: &ConnectionKey,
    owner: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<LeaseOutcome, StoreError> {
    let mut transaction = crate::write_transaction(pool, "acquire_lease begin").await?;
    let Some(mut connection) =
        connections::read(&mut *transaction, key, "acquire_lease read").await?
    else {
        return Ok(LeaseOutcome::Missing);
    };
    if let Some(held) = &connection.lease
        && held.owner != owner
        && held.until > now
    {
        return Ok(LeaseOutcome::Busy {
            owner: held.owner.clone(),
            until: held.until,
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
    transaction
        .commit()
        .await
        .map_err(unavailable("acquire_lease commit"))?;
    // The row as read, with the lease just written: nothing else changed it in between.
    connection.lease = Some(Lease {
        owner: owner.to_string(),
        until,
    });
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
