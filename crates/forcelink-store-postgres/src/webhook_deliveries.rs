//! The outbox of webhook deliveries on PostgreSQL: fan-out, claims, attempts and retries (the
//! delivery log and the backlog are read in `webhook_log`).
//!
//! The fan-out locks each endpoint row (`FOR UPDATE SKIP LOCKED`: another instance's pass
//! skips it rather than waits), reads the events after its cursor and inserts the deliveries
//! and the new cursor in one transaction, so a crash leaves either both or neither. Event ids
//! become visible in id order (events.rs), so a cursor never passes an event that commits
//! later. A claim is one statement whose chosen rows are locked `FOR UPDATE SKIP LOCKED`, so
//! instances never claim one delivery together; finishing an attempt checks the claim's owner
//! and records the attempt in the same transaction. Times are bound from the caller (never
//! `now()`); sealed secrets are moved as bytes, never opened.

use chrono::{DateTime, Utc};
use forcelink_core::store::{
    AttemptWrite, ClaimedDelivery, DeliveryNext, DeliveryState, Enqueued, Retried, RetryTarget,
};
use forcelink_core::{Event, OrgId, Sealed, StoreError};
use sqlx::PgPool;
use sqlx::postgres::PgRow;

use crate::rows::{self, corrupt, unavailable};

pub(crate) async fn enqueue(
    pool: &PgPool,
    now: DateTime<Utc>,
    batch: u32,
) -> Result<Enqueued, StoreError> {
    // Most passes find nothing new: answer those without taking the write lock.
    let behind: Option<i64> = sqlx::query_scalar(
        "SELECT 1::bigint FROM webhook_endpoints w \
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
    let mut transaction = pool
        .begin()
        .await
        .map_err(unavailable("enqueue_webhook_deliveries begin"))?;
    let endpoints: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT id, event_kinds, cursor FROM webhook_endpoints ORDER BY id \
             FOR UPDATE SKIP LOCKED",
    )
    .fetch_all(&mut *transaction)
    .await
    .map_err(unavailable("enqueue_webhook_deliveries endpoints"))?;
    let mut report = Enqueued {
        deliveries: 0,
        caught_up: true,
    };
    for (endpoint_id, kinds, cursor) in endpoints {
        let events: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, kind FROM events WHERE id > $1 ORDER BY id LIMIT $2")
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
                 VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5, $5) \
                 ON CONFLICT (endpoint_id, event_id) DO NOTHING",
            )
            .bind(format!("msg_{}", uuid::Uuid::new_v4().simple()))
            .bind(&endpoint_id)
            .bind(event_id)
            .bind(kind)
            .bind(now)
            .execute(&mut *transaction)
            .await
            .map_err(unavailable("enqueue_webhook_deliveries insert"))?;
            report.deliveries += inserted.rows_affected();
        }
        sqlx::query("UPDATE webhook_endpoints SET cursor = $2 WHERE id = $1 AND cursor < $2")
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

/// The advisory lock webhook claims take turns on (`pg_advisory_xact_lock`): a fixed key (the
/// ASCII of "fl_whclm"), which no other lock of ours uses (the migrator's is derived from the
/// database name).
pub const WEBHOOK_CLAIM_LOCK: i64 = 0x666c_5f77_6863_6c6d;

pub(crate) async fn claim(
    pool: &PgPool,
    owner: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: u32,
    per_endpoint: u32,
) -> Result<Vec<ClaimedDelivery>, StoreError> {
    // Most polls find nothing due: answer those without the lock.
    let due: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM webhook_deliveries WHERE state = 'pending' AND next_attempt_at <= $1 \
         AND (lease_owner IS NULL OR lease_until <= $1) LIMIT 1",
    )
    .bind(now)
    .fetch_optional(pool)
    .await
    .map_err(unavailable("claim_webhook_deliveries due"))?;
    if due.is_none() {
        return Ok(Vec::new());
    }
    // Claims take turns (a transaction-scoped advisory lock). Under READ COMMITTED, whatever
    // the database's default, the claim statement's snapshot is taken once the lock is granted,
    // so it counts every lease an earlier claim committed, and racing instances together stay
    // within the bound. A claim is short; a holder that stalls makes the others give up after
    // the lock timeout (and retry at their next poll) instead of queueing forever. `finish` and
    // the fan-out do not take the lock.
    let mut transaction = pool
        .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
        .await
        .map_err(unavailable("claim_webhook_deliveries begin"))?;
    sqlx::query("SET LOCAL lock_timeout = '5s'")
        .execute(&mut *transaction)
        .await
        .map_err(unavailable("claim_webhook_deliveries lock timeout"))?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(WEBHOOK_CLAIM_LOCK)
        .execute(&mut *transaction)
        .await
        .map_err(unavailable("claim_webhook_deliveries lock"))?;
    // `busy`: each endpoint's deliveries under an unexpired lease; `due`: the claimable ones,
    // numbered per endpoint in claim order. Both read only pending rows (partial indexes).
    // A window function cannot share a SELECT with FOR UPDATE, so the rows within the bound
    // are locked (skipping any row `finish` is updating) in a SELECT of their own, which checks
    // again that each is still free.
    let claimed = sqlx::query(
        "WITH busy AS (SELECT endpoint_id, COUNT(*) AS leased FROM webhook_deliveries \
         WHERE state = 'pending' AND lease_owner IS NOT NULL AND lease_until > $2 \
         GROUP BY endpoint_id), \
         due AS (SELECT id, endpoint_id, \
         ROW_NUMBER() OVER (PARTITION BY endpoint_id ORDER BY event_id, id) AS n \
         FROM webhook_deliveries WHERE state = 'pending' AND next_attempt_at <= $2 \
         AND (lease_owner IS NULL OR lease_until <= $2)), \
         picked AS (SELECT d.id FROM webhook_deliveries d \
         WHERE d.id IN (SELECT due.id FROM due LEFT JOIN busy \
         ON busy.endpoint_id = due.endpoint_id WHERE due.n + COALESCE(busy.leased, 0) <= $5) \
         AND d.state = 'pending' AND (d.lease_owner IS NULL OR d.lease_until <= $2) \
         ORDER BY d.event_id, d.id LIMIT $4 FOR UPDATE OF d SKIP LOCKED) \
         UPDATE webhook_deliveries SET lease_owner = $1, lease_until = $3 \
         WHERE id IN (SELECT id FROM picked)",
    )
    .bind(owner)
    .bind(now)
    .bind(lease_until)
    .bind(i64::from(limit))
    .bind(i64::from(per_endpoint))
    .execute(&mut *transaction)
    .await
    .map_err(unavailable("claim_webhook_deliveries"))?;
    if claimed.rows_affected() == 0 {
        return Ok(Vec::new());
    }
    // The owner is unique to this claim, so it names exactly the rows just leased. Read in the
    // claim's transaction: if the read fails, no lease is left held by a claim that sends nothing.
    let found = sqlx::query(
        "SELECT d.id AS delivery_id, d.endpoint_id, d.attempts, d.retry_base, w.url, w.secret, \
         e.id AS event_id, e.at, e.kind, e.org_id, e.context, e.detail \
         FROM webhook_deliveries d JOIN webhook_endpoints w ON w.id = d.endpoint_id \
         JOIN events e ON e.id = d.event_id \
         WHERE d.lease_owner = $1 AND d.state = 'pending' ORDER BY d.event_id, d.id",
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

fn claimed_delivery(row: &PgRow) -> Result<ClaimedDelivery, StoreError> {
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

pub(crate) fn count(row: &PgRow, column: &'static str) -> Result<u32, StoreError> {
    u32::try_from(rows::get::<i32>(row, column)?).map_err(|_| corrupt(column, "out of range"))
}

pub(crate) fn status(row: &PgRow, column: &'static str) -> Result<Option<u16>, StoreError> {
    rows::get::<Option<i32>>(row, column)?
        .map(|code| u16::try_from(code).map_err(|_| corrupt(column, "not an http status")))
        .transpose()
}

pub(crate) async fn finish(
    pool: &PgPool,
    delivery_id: &str,
    owner: &str,
    attempt: &AttemptWrite,
) -> Result<bool, StoreError> {
    let (state, next_at) = match attempt.next {
        DeliveryNext::Delivered => (DeliveryState::Delivered, None),
        DeliveryNext::RetryAt(at) => (DeliveryState::Pending, Some(at)),
        DeliveryNext::Failed => (DeliveryState::Failed, None),
    };
    let mut transaction = pool
        .begin()
        .await
        .map_err(unavailable("finish_webhook_attempt begin"))?;
    let number: Option<i32> = sqlx::query_scalar(
        "UPDATE webhook_deliveries SET attempts = attempts + 1, state = $3, \
         next_attempt_at = $4, lease_owner = NULL, lease_until = NULL, last_status_code = $5, \
         last_error = $6, updated_at = $7 \
         WHERE id = $1 AND lease_owner = $2 AND state = 'pending' RETURNING attempts",
    )
    .bind(delivery_id)
    .bind(owner)
    .bind(state.as_str())
    .bind(next_at)
    .bind(attempt.status_code.map(i32::from))
    .bind(&attempt.error)
    .bind(attempt.at)
    .fetch_optional(&mut *transaction)
    .await
    .map_err(unavailable("finish_webhook_attempt"))?;
    let Some(number) = number else {
        return Ok(false);
    };
    sqlx::query(
        "INSERT INTO webhook_attempts (delivery_id, number, at, status_code, error, latency_ms) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(delivery_id)
    .bind(number)
    .bind(attempt.at)
    .bind(attempt.status_code.map(i32::from))
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
/// indexes by endpoint), or the primary key for one delivery. A claim racing the second
/// statement is safe: `UPDATE` re-checks the lease on the row a claim has just leased, and
/// skips it.
pub(crate) async fn retry(
    pool: &PgPool,
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
    // READ COMMITTED whatever the database's default, as the claim: the re-check below holds
    // only there (stricter levels would fail the statement instead).
    let mut transaction = pool
        .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
        .await
        .map_err(unavailable("retry_webhook_deliveries begin"))?;
    let mut retried = Retried::default();
    let [failed, waiting] = retry_statements(column);
    for (statement, ids) in [
        (failed, &mut retried.failed),
        (waiting, &mut retried.brought_forward),
    ] {
        *ids = sqlx::query_scalar(sqlx::AssertSqlSafe(statement))
            .bind(id)
            .bind(now)
            .bind(event_kind)
            .bind(since)
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
        "{column} = $1 AND ($3::text IS NULL OR event_kind = $3) \
         AND ($4::timestamptz IS NULL OR created_at >= $4)"
    );
    [
        format!(
            "UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = $2, \
             retry_base = attempts, retried_at = $2, lease_owner = NULL, lease_until = NULL, \
             updated_at = $2 \
             WHERE {chosen} AND state = 'failed' RETURNING id"
        ),
        format!(
            "UPDATE webhook_deliveries SET next_attempt_at = $2, lease_owner = NULL, \
             lease_until = NULL, updated_at = $2 \
             WHERE {chosen} AND state = 'pending' AND next_attempt_at > $2 \
             AND (lease_until IS NULL OR lease_until <= $2) RETURNING id"
        ),
    ]
}

pub(crate) async fn state(pool: &PgPool, id: &str) -> Result<Option<DeliveryState>, StoreError> {
    let state: Option<String> =
        sqlx::query_scalar("SELECT state FROM webhook_deliveries WHERE id = $1")
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
