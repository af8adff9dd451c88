//! Webhook endpoints on SQLite (API and config ones, their sealed secrets, each endpoint's
//! fan-out cursor), and the `WebhookStore` port over this file and `webhook_deliveries`.
//! Times are bound from the caller; sealed secrets are moved as bytes, never opened.

use chrono::{DateTime, Utc};
use forcelink_core::store::{
    AttemptWrite, ClaimedDelivery, DeliveryFilter, DeliveryState, EndpointSource, EndpointWrite,
    Enqueued, Retried, RetryTarget, WebhookBacklog, WebhookDelivery, WebhookEndpoint,
};
use forcelink_core::{Sealed, StoreError};
use sqlx::SqlitePool;
use sqlx::sqlite::SqliteRow;

use crate::rows::{self, corrupt, micros, unavailable};
use crate::webhook_deliveries::{claim, enqueue, finish, retry, state};
use crate::webhook_log::{backlog, deliveries};

const ENDPOINT_COLUMNS: &str =
    "id, url, event_kinds, secret, source, created_at, updated_at, cursor";

fn endpoint(row: &SqliteRow) -> Result<WebhookEndpoint, StoreError> {
    let source: String = rows::get(row, "source")?;
    let kinds: String = rows::get(row, "event_kinds")?;
    let secret: Vec<u8> =
        sqlx::Row::try_get(row, "secret").map_err(|_| corrupt("secret", "not a blob"))?;
    Ok(WebhookEndpoint {
        id: rows::get(row, "id")?,
        url: rows::get(row, "url")?,
        event_kinds: kinds.split_whitespace().map(str::to_string).collect(),
        secret: Sealed::from_stored(secret),
        source: EndpointSource::parse(&source)
            .ok_or_else(|| corrupt("source", "unknown source"))?,
        created_at: rows::time(row, "created_at")?,
        updated_at: rows::time(row, "updated_at")?,
        cursor: rows::get(row, "cursor")?,
    })
}

pub(crate) async fn save_endpoint(
    pool: &SqlitePool,
    write: &EndpointWrite,
) -> Result<WebhookEndpoint, StoreError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO webhook_endpoints ({ENDPOINT_COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, (SELECT COALESCE(MAX(id), 0) FROM events)) \
         ON CONFLICT (id) DO UPDATE SET url = excluded.url, event_kinds = excluded.event_kinds, \
         secret = excluded.secret, source = excluded.source, updated_at = excluded.updated_at \
         RETURNING {ENDPOINT_COLUMNS}"
    )))
    .bind(&write.id)
    .bind(&write.url)
    .bind(write.event_kinds.join(" "))
    .bind(write.secret.as_bytes())
    .bind(write.source.as_str())
    .bind(micros(write.now))
    .fetch_one(pool)
    .await
    .map_err(unavailable("save_webhook_endpoint"))?;
    endpoint(&row)
}

pub(crate) async fn endpoints(pool: &SqlitePool) -> Result<Vec<WebhookEndpoint>, StoreError> {
    let found = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints ORDER BY created_at, id"
    )))
    .fetch_all(pool)
    .await
    .map_err(unavailable("webhook_endpoints"))?;
    found.iter().map(endpoint).collect()
}

pub(crate) async fn find_endpoint(
    pool: &SqlitePool,
    id: &str,
) -> Result<Option<WebhookEndpoint>, StoreError> {
    let found = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = ?1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await
    .map_err(unavailable("webhook_endpoint"))?;
    found.as_ref().map(endpoint).transpose()
}

pub(crate) async fn delete_endpoint(pool: &SqlitePool, id: &str) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM webhook_endpoints WHERE id = ?1")
        .bind(id)
        .execute(pool)
        .await
        .map_err(unavailable("delete_webhook_endpoint"))?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn replace_secret(
    pool: &SqlitePool,
    id: &str,
    expected: &Sealed,
    replacement: &Sealed,
) -> Result<bool, StoreError> {
    let done =
        sqlx::query("UPDATE webhook_endpoints SET secret = ?2 WHERE id = ?1 AND secret = ?3")
            .bind(id)
            .bind(replacement.as_bytes())
            .bind(expected.as_bytes())
            .execute(pool)
            .await
            .map_err(unavailable("replace_webhook_secret"))?;
    Ok(done.rows_affected() > 0)
}

#[async_trait::async_trait]
impl forcelink_core::WebhookStore for crate::SqliteStore {
    async fn save_webhook_endpoint(
        &self,
        write: &EndpointWrite,
    ) -> Result<WebhookEndpoint, StoreError> {
        save_endpoint(self.pool(), write).await
    }

    async fn webhook_endpoints(&self) -> Result<Vec<WebhookEndpoint>, StoreError> {
        endpoints(self.pool()).await
    }

    async fn webhook_endpoint(&self, id: &str) -> Result<Option<WebhookEndpoint>, StoreError> {
        find_endpoint(self.pool(), id).await
    }

    async fn delete_webhook_endpoint(&self, id: &str) -> Result<bool, StoreError> {
        delete_endpoint(self.pool(), id).await
    }

    async fn replace_webhook_secret(
        &self,
        id: &str,
        expected: &Sealed,
        replacement: &Sealed,
    ) -> Result<bool, StoreError> {
        replace_secret(self.pool(), id, expected, replacement).await
    }

    async fn enqueue_webhook_deliveries(
        &self,
        now: DateTime<Utc>,
        batch: u32,
    ) -> Result<Enqueued, StoreError> {
        enqueue(self.pool(), now, batch).await
    }

    async fn claim_webhook_deliveries(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        per_endpoint: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        claim(self.pool(), owner, now, lease_until, limit, per_endpoint).await
    }

    async fn finish_webhook_attempt(
        &self,
        delivery_id: &str,
        owner: &str,
        attempt: &AttemptWrite,
    ) -> Result<bool, StoreError> {
        finish(self.pool(), delivery_id, owner, attempt).await
    }

    async fn retry_webhook_deliveries(
        &self,
        target: &RetryTarget,
        now: DateTime<Utc>,
    ) -> Result<Retried, StoreError> {
        retry(self.pool(), target, now).await
    }

    async fn webhook_delivery_state(&self, id: &str) -> Result<Option<DeliveryState>, StoreError> {
        state(self.pool(), id).await
    }

    async fn webhook_deliveries(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        deliveries(self.pool(), filter).await
    }

    async fn webhook_backlog(&self) -> Result<Vec<WebhookBacklog>, StoreError> {
        backlog(self.pool()).await
    }
}
