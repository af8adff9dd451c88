//! The outbox of webhook deliveries on SQLite: fan-out, claims, attempts and retries (the
//! delivery log and the backlog are read in `webhook_log`).
//!
//! The fan-out reads events after each endpoint's cursor and inserts the deliveries and the
//! new cursor in one `BEGIN IMMEDIATE` transaction (SQLite's single writer also makes event ids
//! visible in order), so a crash leaves either both or neither. A claim is one
//! `UPDATE … WHERE id IN (SELECT …)` statement that leases due deliveries within each
//! endpoint's bound; finishing an attempt checks the claim's owner and records the attempt in
//! the same transaction. Times are bound from the caller; sealed secrets are moved as bytes,
//! never opened.

use chrono::{DateTime, Utc};
use forcelink_core::store::{
    AttemptWrite, ClaimedDelivery, DeliveryNext, DeliveryState, Enqueued, Retried, RetryTarget,
};
use forcelink_core::{Event, OrgId, Sealed, StoreError};
use sqlx::SqlitePool;
use sqlx::sqlite::SqliteRow;

use crate::rows::{self, corrupt, micros, unavailable};

pub(crate) async fn enqueue(
    pool: &SqlitePool,
    now: DateTime<Utc>,
    batch: u32,
) -> Result<Enqueued, StoreError> {
    // Most passes find nothing new: answer those without taking the write lock.
    let behind: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM webhook_endpoints w \
         WHERE EXISTS (SELECT 1 FROM events e WHERE e.id > w.cursor) LIMIT 1",
    )
    .fetch_optional(pool)
    .await
    .map_err(unavailable("enqueue_webhook_deliveries check"))?;
    if behind.is_none() {
        return Ok(Enqueued {
            deliveries: 0,
            caught_up: true,
        });
    }
    let mut transaction =
        crate::write_transaction(pool, "enqueue_webhook_deliveries begin").await?;
    let endpoints: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT id, event_kinds, cursor FROM webhook_endpoints ORDER BY id")
            .fetch_all(&mut *transaction)
            .await
            .map_err(unavailable("enqueue_webhook_deliveries endpoints"))?;
    let mut report = Enqueued {
        deliveries: 0,
        caught_up: true,
    };
    for (endpoint_id, kinds, cursor) in endpoints {
        let events: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, kind FROM events WHERE id > ?1 ORDER BY id LIMIT ?2")
                .bind(cursor)
                .bind(i64::from(batch))
                .fetch_all(&mut *transaction)
                .await
                .map_err(unavailable("enqueue_webhook_deliveries events"))?;
        let Some(last) = events.last().map(|(id, _)| *id) else {
            continue;
        };
        if events.len() as u64 >= u64::from(batch) {
            report.caught_up = false;
        }
        let wanted: Vec<&str> = kinds.split_whitespace().collect();
        for (event_id, kind) in events
            .iter()
            .filter(|(_, kind)| wanted.contains(&kind.as_str()))
        {
            let inserted = sqlx::query(
                "INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_kind, state, \
                 attempts, next_attempt_at, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, ?5, ?5) \
                 ON CONFLICT (endpoint_id, event_id) DO NOTHING",
            )
            .bind(format!("msg_{}", uuid::Uuid::new_v4().simple()))
            .bind(&endpoint_id)
            .bind(event_id)
            .bind(kind)
            .bind(micros(now))
            .execute(&mut *transaction)
            .await
            .map_err(unavailable("enqueue_webhook_deliveries insert"))?;
            report.deliveries += inserted.rows_affected();
        }
        sqlx::query("UPDATE webhook_endpoints SET cursor = ?2 WHERE id = ?1 AND cursor < ?2")
            .bind(&endpoint_id)
            .bind(last)
            .execute(&mut *transaction)
            .await
            .map_err(unavailable("enqueue_webhook_deliveries cursor"))?;
    }
    transaction
        .commit()
        .await
        .map_err(unavailable("enqueue_webhook_deliveries commit"))?;
    Ok(report)
}

pub(crate) async fn claim(
    pool: &SqlitePool,
    owner: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: u32,
    per_endpoint: u32,
) -> Result<Vec<ClaimedDelivery>, StoreError> {
    // Most polls find nothing due: answer those without taking the write lock.
    let due: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM webhook_deliveries WHERE state = 'pending' AND next_attempt_at <= ?1 \
         AND (lease_owner IS NULL OR lease_until <= ?1) LIMIT 1",
    )
    .bind(micros(now))
    .fetch_optional(pool)
    .await
    .map_err(unavailable("claim_webhook_deliveries due"))?;
    if due.is_none() {
        return Ok(Vec::new());
    }
    // The lease and the read of what it leased are one transaction: if the read fails, no lease
    // is left held by a claim that sends nothing.
    let mut transaction = crate::write_transaction(pool, "claim_webhook_deliveries begin").await?;
    // `busy`: each endpoint's deliveries under an unexpired lease; `due`: the claimable ones,
    // numbered per endpoint in claim order. Both read only pending rows (partial indexes).
    let claimed = sqlx::query(
        "WITH busy (endpoint_id, leased) AS (SELECT endpoint_id, COUNT(*) \
         FROM webhook_deliveries WHERE state = 'pending' AND lease_owner IS NOT NULL \
         AND lease_until > ?2 GROUP BY endpoint_id), \
         due (id, endpoint_id, event_id, n) AS (SELECT id, endpoint_id, event_id, \
         ROW_NUMBER() OVER (PARTITION BY endpoint_id ORDER BY event_id, id) \
         FROM webhook_deliveries WHERE state = 'pending' AND next_attempt_at <= ?2 \
         AND (lease_owner IS NULL OR lease_until <= ?2)) \
         UPDATE webhook_deliveries SET lease_owner = ?1, lease_until = ?3 \
         WHERE id IN (SELECT due.id FROM due LEFT JOIN busy \
         ON busy.endpoint_id = due.endpoint_id \
         WHERE due.n + COALESCE(busy.leased, 0) <= ?5 \
         ORDER BY due.event_id, due.id LIMIT ?4)",
    )
    .bind(owner)
    .bind(micros(now))
    .bind(micros(lease_until))
    .bind(i64::from(limit))
    .bind(i64::from(per_endpoint))
    .execute(&mut *transaction)
    .await
    .map_err(unavailable("claim_webhook_deliveries"))?;
    if claimed.rows_affected() == 0 {
        return Ok(Vec::new());
    }
    // The owner is unique to this claim, so it names exactly the rows just leased.
    let found = sqlx::query(
        "SELECT d.id AS delivery_id, d.endpoint_id, d.attempts, d.retry_base, w.url, w.secret, \
         e.id AS event_id, e.at, e.kind, e.org_id, e.context, e.detail \
         FROM webhook_deliveries d JOIN webhook_endpoints w ON w.id = d.endpoint_id \
         JOIN events e ON e.id = d.event_id \
         WHERE d.lease_owner = ?1 AND d.state = 'pending' ORDER BY d.event_id, d.id",
    )
    .bind(owner)
    .fetch_all(&mut *transaction)
    .await
    .map_err(unavailable("claim_webhook_deliveries read"))?;
    let claimed = found
        .iter()
        .map(claimed_delivery)
        .collect::<Result<Vec<_>, _>>()?;
    transaction
        .commit()
        .await
        .map_err(unavailable("claim_webhook_deliveries commit"))?;
    Ok(claimed)
}

fn claimed_delivery(row: &SqliteRow) -> Result<ClaimedDelivery, StoreError> {
    let secret: Vec<u8> =
        sqlx::Row::try_get(row, "secret").map_err(|_| corrupt("secret", "not a blob"))?;
    let org_id = rows::get::<Option<String>>(row, "org_id")?
        .map(|text| OrgId::parse(&text).map_err(|error| corrupt("org_id", &error.to_string())))
        .transpose()?;
    let context = match rows::get::<Option<String>>(row, "context")? {
        Some(_) => Some(rows::context(row, "context")?),
        None => None,
    };
    Ok(ClaimedDelivery {
        id: rows::get(row, "delivery_id")?,
        endpoint_id: rows::get(row, "endpoint_id")?,
        url: rows::get(row, "url")?,
        secret: Sealed::from_stored(secret),
        event: Event {
            id: rows::get(row, "event_id")?,
            at: rows::time(row, "at")?,
            kind: rows::get(row, "kind")?,
            org_id,
            context,
            detail: rows::get(row, "detail")?,
        },
        attempts: count(row, "attempts")?,
        attempts_before_retry: count(row, "retry_base")?,
    })
}

pub(crate) fn count(row: &SqliteRow, column: &'static str) -> Result<u32, StoreError> {
    u32::try_from(rows::get::<i64>(row, column)?).map_err(|_| corrupt(column, "out of range"))
}

pub(crate) fn status(row: &SqliteRow, column: &'static str) -> Result<Option<u16>, StoreError> {
    rows::get::<Option<i64>>(row, column)?
        .map(|code| u16::try_from(code).map_err(|_| corrupt(column, "not an http status")))
        .transpose()
}

pub(crate) async fn finish(
    pool: &SqlitePool,
    delivery_id: &str,
    owner: &str,
    attempt: &AttemptWrite,
) -> Result<bool, StoreError> {
    let (state, next_at) = match attempt.next {
        DeliveryNext::Delivered => (DeliveryState::Delivered, None),
        DeliveryNext::RetryAt(at) => (DeliveryState::Pending, Some(micros(at))),
        DeliveryNext::Failed => (DeliveryState::Failed, None),
    };
    let mut transaction = crate::write_transaction(pool, "finish_webhook_attempt begin").await?;
    let number: Option<i64> = sqlx::query_scalar(
        "UPDATE webhook_deliveries SET attempts = attempts + 1, state = ?3, \
         next_attempt_at = ?4, lease_owner = NULL, lease_until = NULL, last_status_code = ?5, \
         last_error = ?6, updated_at = ?7 \
         WHERE id = ?1 AND lease_owner = ?2 AND state = 'pending' RETURNING attempts",
    )
    .bind(delivery_id)
    .bind(owner)
    .bind(state.as_str())
    .bind(next_at)
    .bind(attempt.status_code.map(i64::from))
    .bind(&attempt.error)
    .bind(micros(attempt.at))
    .fetch_optional(&mut *transaction)
    .await
    .map_err(unavailable("finish_webhook_attempt"))?;
    let Some(number) = number else {
        return Ok(false);
    };
    sqlx::query(
        "INSERT INTO webhook_attempts (delivery_id, number, at, status_code, error, latency_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .bind(delivery_id)
    .bind(number)
    .bind(micros(attempt.at))
    .bind(attempt.status_code.map(i64::from))
    .bind(&attempt.error)
    .bind(attempt.latency_ms)
    .execute(&mut *transaction)
    .await
    .map_err(unavailable("finish_webhook_attempt record"))?;
    transaction
        .commit()
        .await
        .map_err(unavailable("finish_webhook_attempt commit"))?;
    Ok(true)
}

/// See `WebhookStore::retry_webhook_deliveries`. Two statements in one transaction, each
/// reading its own index for an endpoint (the failed rows' and the pending rows' partial
/// indexes by endpoint), or the primary key for one delivery.
pub(crate) async fn retry(
    pool: &SqlitePool,
    target: &RetryTarget,
    now: DateTime<Utc>,
) -> Result<Retried, StoreError> {
    let (column, id, event_kind, since) = match target {
        RetryTarget::Delivery(id) => ("id", id, None, None),
        RetryTarget::Endpoint {
            id,
            event_kind,
            since,
        } => ("endpoint_id", id, event_kind.as_deref(), *since),
    };
    let mut transaction = crate::write_transaction(pool, "retry_webhook_deliveries begin").await?;
    let mut retried = Retried::default();
    let [failed, waiting] = retry_statements(column);
    for (statement, ids) in [
        (failed, &mut retried.failed),
        (waiting, &mut retried.brought_forward),
    ] {
        *ids = sqlx::query_scalar(sqlx::AssertSqlSafe(statement))
            .bind(id)
            .bind(micros(now))
            .bind(event_kind)
            .bind(since.map(micros))
            .fetch_all(&mut *transaction)
            .await
            .map_err(unavailable("retry_webhook_deliveries"))?;
    }
    transaction
        .commit()
        .await
        .map_err(unavailable("retry_webhook_deliveries commit"))?;
    Ok(retried)
}

/// The retry's two statements for deliveries chosen by `column` (`id` or `endpoint_id`): the
/// failed ones made pending with a fresh budget, and the waiting ones brought forward.
fn retry_statements(column: &str) -> [String; 2] {
    let chosen = format!(
        "{column} = ?1 AND (?3 IS NULL OR event_kind = ?3) AND (?4 IS NULL OR created_at >= ?4)"
    );
    [
        format!(
            "UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = ?2, \
             retry_base = attempts, retried_at = ?2, lease_owner = NULL, lease_until = NULL, \
             updated_at = ?2 \
             WHERE {chosen} AND state = 'failed' RETURNING id"
        ),
        format!(
            "UPDATE webhook_deliveries SET next_attempt_at = ?2, lease_owner = NULL, \
             lease_until = NULL, updated_at = ?2 \
             WHERE {chosen} AND state = 'pending' AND next_attempt_at > ?2 \
             AND (lease_until IS NULL OR lease_until <= ?2) RETURNING id"
        ),
    ]
}

pub(crate) async fn state(
    pool: &SqlitePool,
    id: &str,
) -> Result<Option<DeliveryState>, StoreError> {
    let state: Option<String> =
        sqlx::query_scalar("SELECT state FROM webhook_deliveries WHERE id = ?1")
            .bind(id)
            .fetch_optional(pool)
            .await
            .map_err(unavailable("webhook_delivery_state"))?;
    state
        .map(|text| {
            DeliveryState::parse(&text).ok_or_else(|| corrupt("state", "unknown delivery state"))
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use sqlx::AssertSqlSafe;

    use super::*;

    /// An endpoint retry reads the failed rows' and the pending rows' partial indexes by
    /// endpoint, not the delivery log.
    #[tokio::test]
    async fn an_endpoint_retry_reads_its_partial_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::SqliteStore::open(&dir.path().join("plan.db"))
            .await
            .unwrap();
        let [failed, waiting] = retry_statements("endpoint_id");
        for (statement, index) in [
            (failed, "webhook_deliveries_failed"),
            (waiting, "webhook_deliveries_pending"),
        ] {
            let plan: Vec<(i64, i64, i64, String)> =
                sqlx::query_as(AssertSqlSafe(format!("EXPLAIN QUERY PLAN {statement}")))
                    .fetch_all(store.pool())
                    .await
                    .unwrap();
            let steps: Vec<&str> = plan.iter().map(|row| row.3.as_str()).collect();
            assert!(
                steps
                    .iter()
                    .any(|step| step.contains(&format!("INDEX {index}"))),
                "{index} not used: {steps:?}"
            );
        }
    }
}
