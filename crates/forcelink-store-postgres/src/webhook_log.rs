//! The delivery log and the backlog on PostgreSQL: what `GET /v1/webhooks/deliveries` and each
//! `/metrics` scrape read. Reads only; the outbox's writes are in `webhook_deliveries`.

use forcelink_core::StoreError;
use forcelink_core::store::{
    DeliveryAttempt, DeliveryFilter, DeliveryState, WebhookBacklog, WebhookDelivery,
};
use sqlx::PgPool;
use sqlx::postgres::PgRow;

use crate::rows::{self, corrupt, unavailable};
use crate::webhook_deliveries::{count, status};

/// Deliveries listed when a filter's `limit` is 0.
const DEFAULT_LIMIT: u32 = 100;

/// The filter of the delivery log, with `$1`…`$5` bound by `bind_filter`.
const FILTERED: &str = "SELECT id FROM webhook_deliveries \
     WHERE ($1::text IS NULL OR endpoint_id = $1) AND ($2::text IS NULL OR event_kind = $2) \
     AND ($3::bigint IS NULL OR event_id = $3) AND ($4::text IS NULL OR state = $4) \
     ORDER BY event_id DESC, endpoint_id LIMIT $5";

/// Binds `FILTERED`'s parameters, in order.
fn bind_filter<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    filter: &'q DeliveryFilter,
    state: Option<&'static str>,
    limit: i64,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(filter.endpoint_id.as_deref())
        .bind(filter.event_kind.as_deref())
        .bind(filter.event_id)
        .bind(state)
        .bind(limit)
}

pub(crate) async fn deliveries(
    pool: &PgPool,
    filter: &DeliveryFilter,
) -> Result<Vec<WebhookDelivery>, StoreError> {
    let limit = i64::from(if filter.limit == 0 {
        DEFAULT_LIMIT
    } else {
        filter.limit
    });
    let state = filter.state.map(DeliveryState::as_str);
    let found = bind_filter(
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, endpoint_id, event_id, event_kind, state, attempts, next_attempt_at, \
             last_status_code, last_error, created_at, updated_at, retried_at, retry_base \
             FROM webhook_deliveries \
             WHERE id IN ({FILTERED}) ORDER BY event_id DESC, endpoint_id"
        ))),
        filter,
        state,
        limit,
    )
    .fetch_all(pool)
    .await
    .map_err(unavailable("webhook_deliveries"))?;
    let attempts = bind_filter(
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT delivery_id, number, at, status_code, error, latency_ms FROM webhook_attempts \
             WHERE delivery_id IN ({FILTERED}) ORDER BY delivery_id, number"
        ))),
        filter,
        state,
        limit,
    )
    .fetch_all(pool)
    .await
    .map_err(unavailable("webhook_deliveries attempts"))?;
    let mut log: Vec<(String, DeliveryAttempt)> = Vec::with_capacity(attempts.len());
    for row in &attempts {
        log.push((
            rows::get(row, "delivery_id")?,
            DeliveryAttempt {
                number: count(row, "number")?,
                at: rows::time(row, "at")?,
                status_code: status(row, "status_code")?,
                error: rows::get(row, "error")?,
                latency_ms: rows::get(row, "latency_ms")?,
            },
        ));
    }
    found
        .iter()
        .map(|row| {
            let id: String = rows::get(row, "id")?;
            let state: String = rows::get(row, "state")?;
            Ok(WebhookDelivery {
                attempt_log: log
                    .iter()
                    .filter(|(delivery, _)| *delivery == id)
                    .map(|(_, attempt)| attempt.clone())
                    .collect(),
                id,
                endpoint_id: rows::get(row, "endpoint_id")?,
                event_id: rows::get(row, "event_id")?,
                event_kind: rows::get(row, "event_kind")?,
                state: DeliveryState::parse(&state)
                    .ok_or_else(|| corrupt("state", "unknown delivery state"))?,
                attempts: count(row, "attempts")?,
                retried_at: rows::optional_time(row, "retried_at")?,
                attempts_before_retry: count(row, "retry_base")?,
                next_attempt_at: rows::optional_time(row, "next_attempt_at")?,
                last_status_code: status(row, "last_status_code")?,
                last_error: rows::get(row, "last_error")?,
                created_at: rows::time(row, "created_at")?,
                updated_at: rows::time(row, "updated_at")?,
            })
        })
        .collect()
}

/// The backlog in one statement, so one snapshot: a delivery that fails while it runs counts
/// as pending or as failed, never in both or neither. Each arm reads its partial index
/// (migration 0008). COUNT(*) is a bigint, read as i64.
pub const BACKLOG: &str = "SELECT endpoint_id, 'pending' AS kind, COUNT(*) AS n, \
     MIN(COALESCE(retried_at, created_at)) AS oldest FROM webhook_deliveries \
     WHERE state = 'pending' \
     GROUP BY endpoint_id \
     UNION ALL SELECT endpoint_id, 'failed' AS kind, COUNT(*) AS n, NULL AS oldest \
     FROM webhook_deliveries WHERE state = 'failed' GROUP BY endpoint_id";

fn backlog_count(row: &PgRow) -> Result<u64, StoreError> {
    u64::try_from(rows::get::<i64>(row, "n")?).map_err(|_| corrupt("n", "negative count"))
}

pub(crate) async fn backlog(pool: &PgPool) -> Result<Vec<WebhookBacklog>, StoreError> {
    let found = sqlx::query(BACKLOG)
        .fetch_all(pool)
        .await
        .map_err(unavailable("webhook_backlog"))?;
    let (mut pending, mut failed) = (Vec::new(), Vec::new());
    for row in &found {
        let endpoint_id: String = rows::get(row, "endpoint_id")?;
        let n = backlog_count(row)?;
        if rows::get::<&str>(row, "kind")? == "pending" {
            pending.push((endpoint_id, n, rows::time(row, "oldest")?));
        } else {
            failed.push((endpoint_id, n));
        }
    }
    Ok(WebhookBacklog::merge(pending, failed))
}
