//! Every sealed value on SQLite, a page at a time, and compare-and-swap replacement of one,
//! for key rotation and key-ring health checks.
//!
//! Order: pending verifiers by state hash, then each connection (by org id, context) with its
//! access token then its refresh token. The cursor names the last value handed out:
//! `pending/<state hash>` or `connection/<org id>/<context>/<field>`. This module must not
//! open or log sealed values; it moves bytes only.

use forcelink_core::store::SealedCursor;
use forcelink_core::{
    ConnectionKey, Sealed, SealedField, SealedPage, SealedRef, SealedRow, SealedValue, StoreError,
};
use sqlx::SqlitePool;

use crate::rows::{self, unavailable};

pub(crate) async fn page(
    pool: &SqlitePool,
    cursor: Option<&str>,
    limit: u32,
) -> Result<SealedPage, StoreError> {
    let limit = usize::try_from(limit.max(1)).unwrap_or(usize::MAX);
    let wanted = limit.saturating_add(1);
    let fetch = i64::try_from(wanted.saturating_add(1)).unwrap_or(i64::MAX);
    let cursor = SealedCursor::parse(cursor)?;
    let mut values = Vec::new();

    if let SealedCursor::Start | SealedCursor::Pending(_) = &cursor {
        let after = match &cursor {
            SealedCursor::Pending(hash) => Some(hash.as_str()),
            _ => None,
        };
        let found = sqlx::query(
            "SELECT state_hash, verifier FROM pending_authorizations \
             WHERE ?1 IS NULL OR state_hash > ?1 ORDER BY state_hash LIMIT ?2",
        )
        .bind(after)
        .bind(fetch)
        .fetch_all(pool)
        .await
        .map_err(unavailable("sealed_values pending"))?;
        for row in found.iter().take(wanted) {
            let hash = rows::text(row, "state_hash")?;
            let verifier: Vec<u8> = sqlx::Row::try_get(row, "verifier")
                .map_err(|_| rows::corrupt("verifier", "not a blob"))?;
            values.push(SealedValue {
                reference: SealedRef::pending(&hash),
                value: Sealed::from_stored(verifier),
            });
        }
    }

    if values.len() < wanted {
        let (after_org, after_context, after_field) = match &cursor {
            SealedCursor::Connection {
                org_id,
                context,
                field,
            } => (Some(org_id.as_str()), Some(context.as_str()), Some(*field)),
            _ => (None, None, None),
        };
        let found = sqlx::query(
            "SELECT org_id, context, access_token, access_issued_at, access_expires_at, \
             refresh_token FROM connections \
             WHERE ?1 IS NULL OR (org_id, context) >= (?1, ?2) ORDER BY org_id, context LIMIT ?3",
        )
        .bind(after_org)
        .bind(after_context)
        .bind(fetch)
        .fetch_all(pool)
        .await
        .map_err(unavailable("sealed_values connections"))?;
        'rows: for row in &found {
            let key = rows::connection_key(row)?;
            let tokens = rows::tokens(row)?;
            let at_cursor = after_org == Some(key.org_id.as_str())
                && after_context == Some(key.context.as_str());
            let candidates = [
                (SealedField::AccessToken, Some(tokens.access_token)),
                (SealedField::RefreshToken, tokens.refresh_token),
            ];
            for (field, value) in candidates {
                let Some(value) = value else { continue };
                let already_given = at_cursor
                    && (after_field == Some(SealedField::RefreshToken)
                        || field == SealedField::AccessToken);
                if already_given {
                    continue;
                }
                values.push(SealedValue {
                    reference: SealedRef::connection(&key, field),
                    value,
                });
                if values.len() >= wanted {
                    break 'rows;
                }
            }
        }
    }

    let next = if values.len() > limit {
        values.truncate(limit);
        values
            .last()
            .map(|last| SealedCursor::after(&last.reference))
    } else {
        None
    };
    Ok(SealedPage { values, next })
}

/// The connection a reference names, with its org and context as stored.
fn connection_key(reference: &SealedRef) -> Option<&ConnectionKey> {
    match &reference.row {
        SealedRow::Connection(key) => Some(key),
        SealedRow::Pending(_) | SealedRow::WebhookEndpoint(_) => None,
    }
}

pub(crate) async fn replace(
    pool: &SqlitePool,
    reference: &SealedRef,
    expected: &Sealed,
    replacement: &Sealed,
) -> Result<bool, StoreError> {
    let query = match (&reference.row, reference.field) {
        (SealedRow::Pending(hash), SealedField::PkceVerifier) => sqlx::query(
            "UPDATE pending_authorizations SET verifier = ?2 WHERE state_hash = ?1 AND verifier = ?3",
        )
        .bind(hash.as_str()),
        (SealedRow::Connection(_), SealedField::AccessToken) => sqlx::query(
            "UPDATE connections SET access_token = ?3 \
             WHERE org_id = ?1 AND context = ?2 AND access_token = ?4",
        ),
        (SealedRow::Connection(_), SealedField::RefreshToken) => sqlx::query(
            "UPDATE connections SET refresh_token = ?3 \
             WHERE org_id = ?1 AND context = ?2 AND refresh_token = ?4",
        ),
        _ => return Ok(false),
    };
    let query = match connection_key(reference) {
        Some(key) => query.bind(key.org_id.as_str()).bind(key.context.as_str()),
        None => query,
    };
    let done = query
        .bind(replacement.as_bytes())
        .bind(expected.as_bytes())
        .execute(pool)
        .await
        .map_err(unavailable("replace_sealed"))?;
    Ok(done.rows_affected() > 0)
}
