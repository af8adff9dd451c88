//! Events and app-wide incidents on SQLite.
//!
//! Event ids come from `AUTOINCREMENT`: never reused, and since SQLite has one writer at a
//! time they become visible in id order, so `after_id` is a safe cursor. Raising an incident
//! is one upsert that returns a row only when it newly became active, so of many concurrent
//! raisers exactly one is told to act. Events outlive the connection they name.

use chrono::{DateTime, Utc};
use forcelink_core::{Event, EventFilter, Incident, NewEvent, OrgId, StoreError};
use sqlx::SqlitePool;
use sqlx::sqlite::SqliteRow;

use crate::rows::{self, micros, unavailable};

/// How many events a `limit` of 0 means.
const DEFAULT_LIMIT: u32 = 1000;

pub(crate) async fn record(pool: &SqlitePool, event: &NewEvent) -> Result<i64, StoreError> {
    sqlx::query_scalar(
        "INSERT INTO events (at, kind, org_id, context, detail) \
         VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
    )
    .bind(micros(event.at))
    .bind(&event.kind)
    .bind(event.org_id.as_ref().map(OrgId::as_str))
    .bind(event.context.as_ref().map(|context| context.as_str()))
    .bind(&event.detail)
    .fetch_one(pool)
    .await
    .map_err(unavailable("record_event"))
}

pub(crate) async fn list(
    pool: &SqlitePool,
    filter: &EventFilter,
) -> Result<Vec<Event>, StoreError> {
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
         WHERE (?1 IS NULL OR (org_id = ?1 AND context = ?2)) AND (?3 IS NULL OR id > ?3) \
         ORDER BY id LIMIT ?4",
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

fn event(row: &SqliteRow) -> Result<Event, StoreError> {
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
    pool: &SqlitePool,
    kind: &str,
    detail: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let raised: Option<String> = sqlx::query_scalar(
        "INSERT INTO incidents (kind, active, since, detail) VALUES (?1, 1, ?2, ?3) \
         ON CONFLICT (kind) DO UPDATE SET active = 1, since = excluded.since, \
         detail = excluded.detail WHERE incidents.active = 0 RETURNING kind",
    )
    .bind(kind)
    .bind(micros(now))
    .bind(detail)
    .fetch_optional(pool)
    .await
    .map_err(unavailable("raise_incident"))?;
    Ok(raised.is_some())
}

pub(crate) async fn clear_incident(
    pool: &SqlitePool,
    kind: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done =
        sqlx::query("UPDATE incidents SET active = 0, since = ?2 WHERE kind = ?1 AND active = 1")
            .bind(kind)
            .bind(micros(now))
            .execute(pool)
            .await
            .map_err(unavailable("clear_incident"))?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn incidents(pool: &SqlitePool) -> Result<Vec<Incident>, StoreError> {
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
