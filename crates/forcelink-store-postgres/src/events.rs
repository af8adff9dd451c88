//! Events and app-wide incidents on PostgreSQL.
//!
//! Event ids come from an identity column. A sequence alone hands out ids in call order but
//! commits may land out of order, and a reader paging with `after_id` would then skip an id
//! that becomes visible later; so writers take a self-conflicting lock on `events` (readers
//! are not blocked) and insert in a short transaction, making ids visible in order. Raising an
//! incident is one upsert that returns a row only when it newly became active, so of many
//! concurrent raisers exactly one is told to act. Events outlive the connection they name.

use chrono::{DateTime, Utc};
use forcelink_core::{Event, EventFilter, Incident, NewEvent, OrgId, StoreError};
use sqlx::PgPool;
use sqlx::postgres::PgRow;

use crate::rows::{self, unavailable};

/// How many events a `limit` of 0 means.
const DEFAULT_LIMIT: u32 = 1000;

pub(crate) async fn record(pool: &PgPool, event: &NewEvent) -> Result<i64, StoreError> {
    let mut transaction = pool
        .begin()
        .await
        .map_err(unavailable("record_event begin"))?;
    sqlx::query("LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *transaction)
        .await
        .map_err(unavailable("record_event lock"))?;
    let id = sqlx::query_scalar(
        "INSERT INTO events (at, kind, org_id, context, detail) \
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(event.at)
    .bind(&event.kind)
    .bind(event.org_id.as_ref().map(OrgId::as_str))
    .bind(event.context.as_ref().map(|context| context.as_str()))
    .bind(&event.detail)
    .fetch_one(&mut *transaction)
    .await
    .map_err(unavailable("record_event"))?;
    transaction
        .commit()
        .await
        .map_err(unavailable("record_event commit"))?;
    Ok(id)
}

pub(crate) async fn list(pool: &PgPool, filter: &EventFilter) -> Result<Vec<Event>, StoreError> {
    let limit = if filter.limit == 0 {
        DEFAULT_LIMIT
    } else {
        filter.limit
    };
    let (org_id, context) = match &filter.key {
        Some(key) => (Some(key.org_id.as_str()), Some(key.context.as_str())),
        None => (None, None),
    };
    let found = sqlx::query(
        "SELECT id, at, kind, org_id, context, detail FROM events \
         WHERE ($1::text IS NULL OR (org_id = $1 AND context = $2)) \
         AND ($3::bigint IS NULL OR id > $3) \
         ORDER BY id LIMIT $4",
    )
    .bind(org_id)
    .bind(context)
    .bind(filter.after_id)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(unavailable("events"))?;
    found.iter().map(event).collect()
}

fn event(row: &PgRow) -> Result<Event, StoreError> {
    let org_id = rows::get::<Option<String>>(row, "org_id")?
        .map(|text| {
            OrgId::parse(&text).map_err(|error| rows::corrupt("org_id", &error.to_string()))
        })
        .transpose()?;
    let context = match rows::get::<Option<String>>(row, "context")? {
        Some(_) => Some(rows::context(row, "context")?),
        None => None,
    };
    Ok(Event {
        id: rows::get(row, "id")?,
        at: rows::time(row, "at")?,
        kind: rows::get(row, "kind")?,
        org_id,
        context,
        detail: rows::get(row, "detail")?,
    })
}

pub(crate) async fn raise_incident(
    pool: &PgPool,
    kind: &str,
    detail: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let raised: Option<String> = sqlx::query_scalar(
        "INSERT INTO incidents (kind, active, since, detail) VALUES ($1, TRUE, $2, $3) \
         ON CONFLICT (kind) DO UPDATE SET active = TRUE, since = excluded.since, \
         detail = excluded.detail WHERE NOT incidents.active RETURNING kind",
    )
    .bind(kind)
    .bind(now)
    .bind(detail)
    .fetch_optional(pool)
    .await
    .map_err(unavailable("raise_incident"))?;
    Ok(raised.is_some())
}

pub(crate) async fn clear_incident(
    pool: &PgPool,
    kind: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done =
        sqlx::query("UPDATE incidents SET active = FALSE, since = $2 WHERE kind = $1 AND active")
            .bind(kind)
            .bind(now)
            .execute(pool)
            .await
            .map_err(unavailable("clear_incident"))?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn incidents(pool: &PgPool) -> Result<Vec<Incident>, StoreError> {
    let found = sqlx::query("SELECT kind, active, since, detail FROM incidents ORDER BY kind")
        .fetch_all(pool)
        .await
        .map_err(unavailable("incidents"))?;
    found
        .iter()
        .map(|row| {
            Ok(Incident {
                kind: rows::get(row, "kind")?,
                active: rows::get(row, "active")?,
                since: rows::time(row, "since")?,
                detail: rows::get(row, "detail")?,
            })
        })
        .collect()
}
