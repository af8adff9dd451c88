//! Reading SQLite rows back into domain types, and the encodings both directions share
//! (times as epoch microseconds, scopes as space-separated text).
//!
//! A value that does not parse is `StoreError::Corrupt` naming the column; sealed bytes and
//! bound values never appear in an error. This module must not run queries.

use chrono::{DateTime, Utc};
use forcelink_core::{
    Connection, ConnectionContext, ConnectionHealth, ConnectionKey, ConnectionState, Lease,
    LoginHost, OrgId, PendingAuthorization, RotationInFlight, Sealed, SealedTokens, StoreError,
    UserId,
};
use sqlx::sqlite::SqliteRow;
use sqlx::{Decode, Row, Sqlite, Type};
use uuid::Uuid;

/// The columns of a connection, in the order every query selects them: its `connections` row
/// (`c`) and its lease and in-flight record (`l`, absent unless the connection holds one),
/// read `FROM connection_source!()`.
macro_rules! connection_columns {
    () => {
        "c.id AS id, c.org_id AS org_id, c.context AS context, c.user_id AS user_id, \
         c.username AS username, c.instance_url AS instance_url, c.login_host AS login_host, \
         c.identity_url AS identity_url, c.scopes AS scopes, c.state AS state, \
         c.state_cause AS state_cause, c.pkce AS pkce, c.rotation_seen AS rotation_seen, \
         c.signature_verified AS signature_verified, c.created_at AS created_at, \
         c.updated_at AS updated_at, c.last_refresh_at AS last_refresh_at, \
         c.generation AS generation, c.access_token AS access_token, \
         c.access_issued_at AS access_issued_at, c.access_expires_at AS access_expires_at, \
         c.refresh_token AS refresh_token, c.health AS health, \
         c.health_detail AS health_detail, l.lease_owner AS lease_owner, \
         l.lease_until AS lease_until, l.inflight_attempt AS inflight_attempt, \
         l.inflight_owner AS inflight_owner, l.inflight_started_at AS inflight_started_at, \
         l.inflight_old_hash AS inflight_old_hash, \
         COALESCE(l.inflight_recovery, 0) AS inflight_recovery, \
         c.refresh_token_used_at AS refresh_token_used_at, \
         c.heartbeat_due_at AS heartbeat_due_at, c.at_risk_level AS at_risk_level"
    };
}
pub(crate) use connection_columns;

/// Where `connection_columns!()` are read from: each connection with its lease row, if any.
macro_rules! connection_source {
    () => {
        "connections c LEFT JOIN connection_leases l \
         ON l.org_id = c.org_id AND l.context = c.context"
    };
}
pub(crate) use connection_source;

/// The columns of `pending_authorizations`.
macro_rules! pending_columns {
    () => {
        "state_hash, verifier, expected_org, context, login_host, redirect_uri, created_at, \
         expires_at"
    };
}
pub(crate) use pending_columns;

/// Maps a driver error to `Unavailable`, naming the operation but no bound value.
pub(crate) fn unavailable(operation: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |error| StoreError::Unavailable(format!("sqlite {operation}: {error}"))
}

pub(crate) fn corrupt(column: &str, problem: &str) -> StoreError {
    StoreError::Corrupt(format!("sqlite column {column}: {problem}"))
}

pub(crate) fn micros(time: DateTime<Utc>) -> i64 {
    time.timestamp_micros()
}

pub(crate) fn scopes_text(scopes: &[String]) -> String {
    scopes.join(" ")
}

pub(crate) fn get<'r, T>(row: &'r SqliteRow, column: &'static str) -> Result<T, StoreError>
where
    T: Decode<'r, Sqlite> + Type<Sqlite>,
{
    row.try_get(column)
        .map_err(|error| corrupt(column, &error.to_string()))
}

pub(crate) fn text(row: &SqliteRow, column: &'static str) -> Result<String, StoreError> {
    get(row, column)
}

/// Sealed bytes; the error never carries them.
fn sealed(row: &SqliteRow, column: &'static str) -> Result<Sealed, StoreError> {
    let bytes: Vec<u8> = row
        .try_get(column)
        .map_err(|_| corrupt(column, "not a blob"))?;
    Ok(Sealed::from_stored(bytes))
}

fn optional_sealed(row: &SqliteRow, column: &'static str) -> Result<Option<Sealed>, StoreError> {
    let bytes: Option<Vec<u8>> = row
        .try_get(column)
        .map_err(|_| corrupt(column, "not a blob"))?;
    Ok(bytes.map(Sealed::from_stored))
}

fn time_from(column: &str, value: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(value).ok_or_else(|| corrupt(column, "time out of range"))
}

pub(crate) fn time(row: &SqliteRow, column: &'static str) -> Result<DateTime<Utc>, StoreError> {
    time_from(column, get(row, column)?)
}

pub(crate) fn optional_time(
    row: &SqliteRow,
    column: &'static str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    get::<Option<i64>>(row, column)?
        .map(|value| time_from(column, value))
        .transpose()
}

fn login_host(row: &SqliteRow, column: &'static str) -> Result<LoginHost, StoreError> {
    LoginHost::parse(&get::<String>(row, column)?)
        .ok_or_else(|| corrupt(column, "not a login host url"))
}

pub(crate) fn context(
    row: &SqliteRow,
    column: &'static str,
) -> Result<ConnectionContext, StoreError> {
    ConnectionContext::parse(&get::<String>(row, column)?)
        .map_err(|error| corrupt(column, &error.to_string()))
}

pub(crate) fn org_id(row: &SqliteRow, column: &'static str) -> Result<OrgId, StoreError> {
    OrgId::parse(&get::<String>(row, column)?).map_err(|error| corrupt(column, &error.to_string()))
}

/// The key of a `connections` row.
pub(crate) fn connection_key(row: &SqliteRow) -> Result<ConnectionKey, StoreError> {
    Ok(ConnectionKey::new(
        org_id(row, "org_id")?,
        context(row, "context")?,
    ))
}

/// The token columns of a `connections` row.
pub(crate) fn tokens(row: &SqliteRow) -> Result<SealedTokens, StoreError> {
    Ok(SealedTokens {
        access_token: sealed(row, "access_token")?,
        access_issued_at: time(row, "access_issued_at")?,
        access_expires_at: time(row, "access_expires_at")?,
        refresh_token: optional_sealed(row, "refresh_token")?,
    })
}

/// A full `connections` row, selected with `connection_columns!()`.
pub(crate) fn connection(row: &SqliteRow) -> Result<Connection, StoreError> {
    let id_text: String = get(row, "id")?;
    let id = Uuid::parse_str(&id_text).map_err(|_| corrupt("id", "not a uuid"))?;
    let state_text: String = get(row, "state")?;
    let state =
        ConnectionState::parse(&state_text).ok_or_else(|| corrupt("state", "unknown state"))?;
    let scopes: String = get(row, "scopes")?;
    Ok(Connection {
        id,
        key: connection_key(row)?,
        user_id: UserId::parse(&get::<String>(row, "user_id")?)
            .map_err(|error| corrupt("user_id", &error.to_string()))?,
        username: get(row, "username")?,
        instance_url: get(row, "instance_url")?,
        login_host: login_host(row, "login_host")?,
        identity_url: get(row, "identity_url")?,
        scopes: scopes.split_whitespace().map(str::to_string).collect(),
        state,
        state_cause: get(row, "state_cause")?,
        pkce: get(row, "pkce")?,
        rotation_seen: get(row, "rotation_seen")?,
        signature_verified: get(row, "signature_verified")?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
        last_refresh_at: optional_time(row, "last_refresh_at")?,
        generation: get(row, "generation")?,
        tokens: tokens(row)?,
        health: health(row)?,
        health_detail: get(row, "health_detail")?,
        lease: lease(row)?,
        in_flight: in_flight(row)?,
        refresh_token_used_at: time(row, "refresh_token_used_at")?,
        heartbeat_due_at: time(row, "heartbeat_due_at")?,
        at_risk_level: get(row, "at_risk_level")?,
    })
}

fn health(row: &SqliteRow) -> Result<ConnectionHealth, StoreError> {
    ConnectionHealth::parse(&get::<String>(row, "health")?)
        .ok_or_else(|| corrupt("health", "unknown health"))
}

/// The lease, if it has an owner (expired or not: callers compare `until` with their clock).
fn lease(row: &SqliteRow) -> Result<Option<Lease>, StoreError> {
    let Some(owner) = get::<Option<String>>(row, "lease_owner")? else {
        return Ok(None);
    };
    let until = optional_time(row, "lease_until")?
        .ok_or_else(|| corrupt("lease_until", "missing for an owned lease"))?;
    Ok(Some(Lease { owner, until }))
}

/// The in-flight record, present exactly when `inflight_attempt` is set.
fn in_flight(row: &SqliteRow) -> Result<Option<RotationInFlight>, StoreError> {
    let Some(attempt_id) = get::<Option<String>>(row, "inflight_attempt")? else {
        return Ok(None);
    };
    let missing = |column: &'static str| move || corrupt(column, "missing for an in-flight record");
    Ok(Some(RotationInFlight {
        attempt_id,
        owner: get::<Option<String>>(row, "inflight_owner")?
            .ok_or_else(missing("inflight_owner"))?,
        started_at: optional_time(row, "inflight_started_at")?
            .ok_or_else(missing("inflight_started_at"))?,
        old_refresh_hash: get::<Option<String>>(row, "inflight_old_hash")?
            .ok_or_else(missing("inflight_old_hash"))?,
        recovery: get(row, "inflight_recovery")?,
    }))
}

/// The expiry of a `pending_authorizations` row, read before anything else.
pub(crate) fn pending_expires_at(row: &SqliteRow) -> Result<DateTime<Utc>, StoreError> {
    time(row, "expires_at")
}

/// A full `pending_authorizations` row, selected with `pending_columns!()`.
pub(crate) fn pending(row: &SqliteRow) -> Result<PendingAuthorization, StoreError> {
    let expected_org = get::<Option<String>>(row, "expected_org")?
        .map(|text| {
            OrgId::parse(&text).map_err(|error| corrupt("expected_org", &error.to_string()))
        })
        .transpose()?;
    Ok(PendingAuthorization {
        state_hash: get(row, "state_hash")?,
        verifier: sealed(row, "verifier")?,
        expected_org,
        context: context(row, "context")?,
        login_host: login_host(row, "login_host")?,
        redirect_uri: get(row, "redirect_uri")?,
        created_at: time(row, "created_at")?,
        expires_at: time(row, "expires_at")?,
    })
}
