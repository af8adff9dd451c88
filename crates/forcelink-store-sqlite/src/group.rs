//! Groups of rotation writes on SQLite: many refreshes' in-flight records and commits in one
//! `BEGIN IMMEDIATE` transaction, so one fsync and a handful of statements serve the group.
//!
//! Each round of a group (`group::rounds`: no connection twice) is at most four set-based
//! statements: one `WITH w(…) AS (VALUES …) UPDATE … FROM w … RETURNING` for the begins (on
//! `connection_leases`), one for the commits (on `connections`), one that clears the committed
//! connections' in-flight records and their committer's leases, and one multi-row lineage upsert
//! for the writes that took effect. Every row keeps the condition of the single-row statement
//! it stands for (`rotation::begin`, `connections::commit_refresh`), so a group answers each
//! write as it would alone. This module must not read SQLite's clock. Connection keys are bound
//! as their shared `Arc<str>`, which sqlx keeps as it is; every other bound text or blob sqlx
//! copies.
//!
//! The statements say `OR FAIL`: a multi-row statement that could abort keeps a statement
//! journal (a copy of every page it changes, so it can undo itself alone), which at N = 100,000
//! cost about 3.5 % of forcelink's CPU per heartbeat refresh (BENCHMARKS.md). A group never
//! needs that undo: any error drops the whole `BEGIN IMMEDIATE` transaction, which rolls back
//! every statement in it, so `OR FAIL` (stop at the failing row, undo nothing) loses nothing.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::OnceLock;

use forcelink_core::store::group::rounds;
use forcelink_core::{
    BeginWrite, CommitWrite, RefreshAttempt, RotationWrite, RotationWritten, StoreError,
};
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, Row, Sqlite, SqliteConnection, SqlitePool};

use crate::rows::{micros, unavailable};

pub(crate) async fn write(
    pool: &SqlitePool,
    writes: &[RotationWrite],
) -> Result<Vec<RotationWritten>, StoreError> {
    let mut written = vec![RotationWritten::NotBegun; writes.len()];
    if writes.is_empty() {
        return Ok(written);
    }
    let mut transaction = crate::write_transaction(pool, "write_rotations begin").await?;
    for round in rounds(writes) {
        let mut begins = Vec::new();
        let mut commits = Vec::new();
        for index in round {
            match &writes[index] {
                RotationWrite::Begin(begin) => begins.push((index, begin)),
                RotationWrite::Commit(commit) => commits.push((index, commit)),
            }
        }
        let mut lineage: Vec<&RefreshAttempt> = Vec::new();
        if !begins.is_empty() {
            let rows = begin_all(&mut transaction, &begins).await?;
            let begun = returned(&rows)?;
            for (index, begin) in &begins {
                if begun.contains_key(&key_of(&begin.key)) {
                    written[*index] = RotationWritten::Begun;
                    lineage.push(&begin.attempt);
                }
            }
        }
        if !commits.is_empty() {
            let rows = commit_all(&mut transaction, &commits).await?;
            let committed = returned(&rows)?;
            let mut settled = Vec::with_capacity(committed.len());
            for (index, commit) in &commits {
                written[*index] = match committed.get(&key_of(&commit.key)) {
                    Some(generation) => {
                        lineage.push(&commit.attempt);
                        settled.push(*commit);
                        RotationWritten::Committed {
                            generation: *generation,
                        }
                    }
                    None => why_not_committed(&mut transaction, commit).await?,
                };
            }
            if !settled.is_empty() {
                settle_all(&mut transaction, &settled).await?;
            }
        }
        if !lineage.is_empty() {
            record_all(&mut transaction, &lineage).await?;
        }
    }
    transaction
        .commit()
        .await
        .map_err(unavailable("write_rotations commit"))?;
    Ok(written)
}

/// A connection's key as text borrowed from a write or a returned row: matching `RETURNING` rows
/// to writes copies no strings. (SQLite's `RETURNING` may not name the `FROM` table, so a row
/// cannot give back the position of its write, as PostgreSQL's does.)
type Key<'a> = (&'a str, &'a str);

fn key_of(key: &forcelink_core::ConnectionKey) -> Key<'_> {
    (key.org_id.as_str(), key.context.as_str())
}

/// `(?, ?, …), (?, ?, …)`: `rows` rows of `columns` placeholders.
fn placeholders(rows: usize, columns: usize) -> String {
    let row = format!("({})", vec!["?"; columns].join(", "));
    vec![row; rows].join(", ")
}

/// The number of rows a statement for `rows` writes is built with: the next power of two, the
/// rest bound as all-NULL rows that match no connection and are not inserted. So a group's
/// statements come in eight sizes per kind and stay in the connection's statement cache:
/// with a text per group size, the cache (100 statements) thrashed under load and SQLite
/// parsed and planned statements of up to 1,664 parameters again for almost every group.
fn padded(rows: usize) -> usize {
    rows.next_power_of_two()
}

/// Binds `count` all-NULL rows of `columns` columns.
fn bind_padding<'q>(
    mut query: sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments>,
    count: usize,
    columns: usize,
) -> sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments> {
    for _ in 0..count * columns {
        query = query.bind(None::<i64>);
    }
    query
}

/// A kind of statement's texts by padded row count (1, 2, 4, … 128, `group_commit`'s largest
/// group), each built once instead of formatted again (up to 1,664 placeholders) for every
/// group. Larger groups (`group_commit` never sends one) are built each time.
struct Texts {
    by_size: [OnceLock<String>; 8],
    build: fn(usize) -> String,
}

impl Texts {
    const fn new(build: fn(usize) -> String) -> Self {
        Self {
            by_size: [const { OnceLock::new() }; 8],
            build,
        }
    }

    /// The text for `rows` rows, a power of two (`padded`).
    fn sql(&'static self, rows: usize) -> AssertSqlSafe<Cow<'static, str>> {
        match self.by_size.get(rows.trailing_zeros() as usize) {
            Some(text) => AssertSqlSafe(Cow::Borrowed(
                text.get_or_init(|| (self.build)(rows)).as_str(),
            )),
            None => AssertSqlSafe(Cow::Owned((self.build)(rows))),
        }
    }
}

static BEGIN: Texts = Texts::new(begin_sql);
static COMMIT: Texts = Texts::new(commit_sql);
static SETTLE: Texts = Texts::new(settle_sql);
static RECORD: Texts = Texts::new(record_sql);

/// The keys a statement's `RETURNING org_id, context[, generation]` gave back.
fn returned(rows: &[SqliteRow]) -> Result<HashMap<Key<'_>, i64>, StoreError> {
    rows.iter()
        .map(|row| {
            let org: &str = row.try_get(0).map_err(unavailable("returning org_id"))?;
            let context: &str = row.try_get(1).map_err(unavailable("returning context"))?;
            let generation: i64 = if row.len() > 2 {
                row.try_get(2)
                    .map_err(unavailable("returning generation"))?
            } else {
                0
            };
            Ok(((org, context), generation))
        })
        .collect()
}

fn begin_sql(rows: usize) -> String {
    format!(
        "WITH w(w_org, w_context, w_owner, w_generation, w_attempt, w_started, w_hash, \
         w_recovery, w_replacing, w_until) AS (VALUES {}) \
         UPDATE OR FAIL connection_leases SET inflight_attempt = w_attempt, \
         inflight_owner = w_owner, inflight_started_at = w_started, inflight_old_hash = w_hash, \
         inflight_recovery = w_recovery, lease_until = w_until \
         FROM w JOIN connections c ON c.org_id = w_org AND c.context = w_context \
         WHERE connection_leases.org_id = w_org AND connection_leases.context = w_context \
         AND connection_leases.lease_owner = w_owner AND c.generation = w_generation \
         AND connection_leases.inflight_attempt IS w_replacing \
         RETURNING org_id, context",
        placeholders(rows, 10)
    )
}

async fn begin_all(
    connection: &mut SqliteConnection,
    begins: &[(usize, &BeginWrite)],
) -> Result<Vec<SqliteRow>, StoreError> {
    let sql = BEGIN.sql(padded(begins.len()));
    let mut query = sqlx::query::<Sqlite>(sql);
    for (_, begin) in begins {
        query = query
            .bind(begin.key.org_id.shared())
            .bind(begin.key.context.shared())
            .bind(&begin.record.owner)
            .bind(begin.expected_generation)
            .bind(&begin.record.attempt_id)
            .bind(micros(begin.record.started_at))
            .bind(&begin.record.old_refresh_hash)
            .bind(begin.record.recovery)
            .bind(begin.replacing.as_deref())
            .bind(micros(begin.lease_until));
    }
    let query = bind_padding(query, padded(begins.len()) - begins.len(), 10);
    query
        .fetch_all(&mut *connection)
        .await
        .map_err(unavailable("write_rotations begin_rotation"))
}

fn commit_sql(rows: usize) -> String {
    format!(
        "WITH w(w_org, w_context, w_generation, w_attempt, w_access, w_issued, w_expires, \
         w_refresh, w_instance, w_refreshed, w_due) AS (VALUES {}) \
         UPDATE OR FAIL connections SET access_token = w_access, access_issued_at = w_issued, \
         access_expires_at = w_expires, refresh_token = COALESCE(w_refresh, refresh_token), \
         rotation_seen = CASE WHEN w_refresh IS NULL THEN rotation_seen ELSE 1 END, \
         instance_url = w_instance, last_refresh_at = w_refreshed, updated_at = w_refreshed, \
         generation = generation + 1, health = 'ok', health_detail = NULL, \
         refresh_token_used_at = w_refreshed, heartbeat_due_at = w_due, at_risk_level = 0 \
         FROM w JOIN connection_leases l ON l.org_id = w_org AND l.context = w_context \
         WHERE connections.org_id = w_org AND connections.context = w_context \
         AND connections.generation = w_generation AND l.inflight_attempt = w_attempt \
         RETURNING org_id, context, generation",
        placeholders(rows, 11)
    )
}

async fn commit_all(
    connection: &mut SqliteConnection,
    commits: &[(usize, &CommitWrite)],
) -> Result<Vec<SqliteRow>, StoreError> {
    let sql = COMMIT.sql(padded(commits.len()));
    let mut query = sqlx::query::<Sqlite>(sql);
    for (_, commit) in commits {
        let write = &commit.write;
        query = query
            .bind(commit.key.org_id.shared())
            .bind(commit.key.context.shared())
            .bind(commit.expected_generation)
            .bind(&commit.attempt_id)
            .bind(write.access_token.as_bytes())
            .bind(micros(write.access_issued_at))
            .bind(micros(write.access_expires_at))
            .bind(write.refresh_token.as_ref().map(|sealed| sealed.as_bytes()))
            .bind(&write.instance_url)
            .bind(micros(write.refreshed_at))
            .bind(micros(write.heartbeat_due_at));
    }
    let query = bind_padding(query, padded(commits.len()) - commits.len(), 11);
    query
        .fetch_all(&mut *connection)
        .await
        .map_err(unavailable("write_rotations commit_refresh"))
}

fn settle_sql(rows: usize) -> String {
    format!(
        "WITH w(w_org, w_context, w_owner) AS (VALUES {}) \
         UPDATE OR FAIL connection_leases SET inflight_attempt = NULL, inflight_owner = NULL, \
         inflight_started_at = NULL, inflight_old_hash = NULL, inflight_recovery = 0, \
         lease_owner = CASE WHEN lease_owner = w_owner THEN NULL ELSE lease_owner END, \
         lease_until = CASE WHEN lease_owner = w_owner THEN NULL ELSE lease_until END \
         FROM w WHERE org_id = w_org AND context = w_context",
        placeholders(rows, 3)
    )
}

/// Clears the in-flight record of each committed connection, and its lease if the committer
/// holds it (a lease another owner took over stays theirs). Migration 0008's trigger deletes
/// the rows this leaves empty.
async fn settle_all(
    connection: &mut SqliteConnection,
    commits: &[&CommitWrite],
) -> Result<(), StoreError> {
    let sql = SETTLE.sql(padded(commits.len()));
    let mut query = sqlx::query::<Sqlite>(sql);
    for commit in commits {
        query = query
            .bind(commit.key.org_id.shared())
            .bind(commit.key.context.shared())
            .bind(&commit.lease_owner);
    }
    let query = bind_padding(query, padded(commits.len()) - commits.len(), 3);
    query
        .execute(&mut *connection)
        .await
        .map_err(unavailable("write_rotations settle"))?;
    Ok(())
}

/// A commit that did not match: stale (reported with the current generation) or missing.
async fn why_not_committed(
    connection: &mut SqliteConnection,
    commit: &CommitWrite,
) -> Result<RotationWritten, StoreError> {
    let current = crate::connections::current_generation(
        &mut *connection,
        &commit.key,
        "write_rotations commit read",
    )
    .await?;
    Ok(match current {
        Some(current_generation) => RotationWritten::Stale { current_generation },
        None => RotationWritten::Missing,
    })
}

fn record_sql(rows: usize) -> String {
    format!(
        "INSERT OR FAIL INTO refresh_attempts (attempt_id, org_id, context, instance, started_at, \
         finished_at, old_refresh_hash, new_refresh_hash, latency_ms, outcome, detail, egress, \
         recovery) SELECT * FROM (VALUES {}) WHERE column1 IS NOT NULL \
         ON CONFLICT (attempt_id) DO UPDATE SET finished_at = excluded.finished_at, \
         new_refresh_hash = excluded.new_refresh_hash, latency_ms = excluded.latency_ms, \
         outcome = excluded.outcome, detail = excluded.detail, egress = excluded.egress, \
         recovery = excluded.recovery",
        placeholders(rows, 13)
    )
}

/// Writes the lineage entries of the writes that took effect (the padding rows, whose attempt
/// id is NULL, are filtered out before the insert). A commit's entry finishes the
/// pending one its begin wrote (same attempt id, connection, instance, start and presented
/// token): only the columns a finish sets are updated, so the lineage's index by connection
/// is not rewritten.
async fn record_all(
    connection: &mut SqliteConnection,
    attempts: &[&RefreshAttempt],
) -> Result<(), StoreError> {
    let sql = RECORD.sql(padded(attempts.len()));
    let mut query = sqlx::query::<Sqlite>(sql);
    for attempt in attempts {
        query = query
            .bind(&attempt.attempt_id)
            .bind(attempt.org_id.shared())
            .bind(attempt.context.shared())
            .bind(&attempt.instance)
            .bind(micros(attempt.started_at))
            .bind(attempt.finished_at.map(micros))
            .bind(&attempt.old_refresh_hash)
            .bind(attempt.new_refresh_hash.as_deref())
            .bind(attempt.latency_ms)
            .bind(&attempt.outcome)
            .bind(attempt.detail.as_deref())
            .bind(attempt.egress.as_deref())
            .bind(attempt.recovery);
    }
    let query = bind_padding(query, padded(attempts.len()) - attempts.len(), 13);
    query
        .execute(&mut *connection)
        .await
        .map_err(unavailable("write_rotations record_attempt"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_texts_are_built_once_per_padded_size() {
        for (texts, columns) in [(&BEGIN, 10), (&COMMIT, 11), (&SETTLE, 3), (&RECORD, 13)] {
            for rows in [1, 2, 4, 8, 16, 32, 64, 128, 256] {
                let AssertSqlSafe(text) = texts.sql(rows);
                assert_eq!(text.matches('?').count(), rows * columns);
                // Up to `group_commit`'s largest group the text is the cached one.
                assert_eq!(matches!(text, Cow::Borrowed(_)), rows <= 128, "{rows}");
            }
            let (AssertSqlSafe(first), AssertSqlSafe(again)) = (texts.sql(8), texts.sql(8));
            assert!(std::ptr::eq(first.as_ptr(), again.as_ptr()));
        }
    }

    /// The begins, commits and settles find each row through an index on (org_id, context),
    /// one lookup per write: a scan of `connections` would cost every group the whole table,
    /// and a scan of `connection_leases` every lease in the store.
    #[tokio::test]
    async fn group_statements_look_connections_up_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::SqliteStore::open(&dir.path().join("plan.db"))
            .await
            .unwrap();
        for (texts, searched) in [
            (&BEGIN, ["connections", "connection_leases"].as_slice()),
            (&COMMIT, ["connections", "connection_leases"].as_slice()),
            (&SETTLE, ["connection_leases"].as_slice()),
        ] {
            for rows in [1, 128] {
                let AssertSqlSafe(sql) = texts.sql(rows);
                let plan: Vec<(i64, i64, i64, String)> =
                    sqlx::query_as(AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                        .fetch_all(store.pool())
                        .await
                        .unwrap();
                let steps: Vec<&str> = plan.iter().map(|row| row.3.as_str()).collect();
                // Aliased in the statement: `c` is connections, `l` connection_leases.
                let names = |table: &str| match table {
                    "connections" => ["connections", "c"],
                    _ => ["connection_leases", "l"],
                };
                for table in searched {
                    assert!(
                        steps.iter().any(|step| names(table).iter().any(|name| {
                            step.starts_with(&format!("SEARCH {name} USING "))
                                && step.contains("org_id=? AND context=?")
                        })),
                        "{table}, {rows}: {steps:?}"
                    );
                    assert!(
                        !steps.iter().any(|step| names(table)
                            .iter()
                            .any(|name| step.starts_with(&format!("SCAN {name}")))),
                        "{table}, {rows}: {steps:?}"
                    );
                }
            }
        }
    }
}
