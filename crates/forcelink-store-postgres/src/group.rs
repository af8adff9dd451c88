//! Groups of rotation writes on PostgreSQL: many refreshes' in-flight records and commits in
//! one statement, so one round trip (and one commit) serves the group.
//!
//! Each round of a group (`group::rounds`: no connection twice) is one statement over `unnest`
//! of array parameters (fixed SQL, prepared once): an `UPDATE … FROM unnest(…) … RETURNING`
//! for the begins and one for the commits as data-modifying CTEs, and a multi-row lineage
//! upsert of the attempts whose write took effect (matched by attempt id in the updates'
//! `RETURNING`). Every row keeps the condition of the single-row statement it stands for
//! (`rotation::begin`, `connections::commit_refresh`), re-checked by PostgreSQL against rows a
//! concurrent writer committed, so a group answers each write as it would alone. A group of one
//! round (nearly all of them) is that one statement, atomic by itself; a group of several runs
//! its rounds in one transaction. Rows are updated in key order, so two instances' groups
//! cannot deadlock on each other. This module must not read the clock (`now()`).

use chrono::{DateTime, Utc};
use forcelink_core::store::group::rounds;
use forcelink_core::{
    BeginWrite, CommitWrite, RefreshAttempt, RotationWrite, RotationWritten, StoreError,
};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};

use crate::rows::unavailable;

pub(crate) async fn write(
    pool: &PgPool,
    writes: &[RotationWrite],
) -> Result<Vec<RotationWritten>, StoreError> {
    let mut written = vec![RotationWritten::NotBegun; writes.len()];
    if writes.is_empty() {
        return Ok(written);
    }
    let rounds = rounds(writes);
    if let [round] = rounds.as_slice() {
        let mut connection = pool
            .acquire()
            .await
            .map_err(unavailable("write_rotations acquire"))?;
        write_round(&mut connection, writes, round, &mut written).await?;
        return Ok(written);
    }
    let mut transaction = pool
        .begin()
        .await
        .map_err(unavailable("write_rotations begin"))?;
    for round in &rounds {
        write_round(&mut transaction, writes, round, &mut written).await?;
    }
    transaction
        .commit()
        .await
        .map_err(unavailable("write_rotations commit"))?;
    Ok(written)
}

/// Applies one round (no connection twice) as one statement and records each write's answer.
async fn write_round(
    connection: &mut PgConnection,
    writes: &[RotationWrite],
    round: &[usize],
    written: &mut [RotationWritten],
) -> Result<(), StoreError> {
    let mut begins = Vec::new();
    let mut commits = Vec::new();
    for index in round {
        match &writes[*index] {
            RotationWrite::Begin(begin) => begins.push((*index, begin)),
            RotationWrite::Commit(commit) => commits.push((*index, commit)),
        }
    }
    begins.sort_by(|a, b| a.1.key.cmp(&b.1.key));
    commits.sort_by(|a, b| a.1.key.cmp(&b.1.key));
    let attempts: Vec<&RefreshAttempt> = begins
        .iter()
        .map(|(_, begin)| &begin.attempt)
        .chain(commits.iter().map(|(_, commit)| &commit.attempt))
        .collect();
    let rows = round_statement(&begins, &commits, &attempts)
        .fetch_all(&mut *connection)
        .await
        .map_err(unavailable("write_rotations round"))?;
    let answer = returned(&rows, begins.len(), commits.len())?;
    for ((index, _), begun) in begins.iter().zip(&answer.begun) {
        if *begun {
            written[*index] = RotationWritten::Begun;
        }
    }
    for ((index, commit), committed) in commits.iter().zip(&answer.committed) {
        written[*index] = match committed {
            Some(generation) => RotationWritten::Committed {
                generation: *generation,
            },
            None => why_not_committed(&mut *connection, commit).await?,
        };
    }
    Ok(())
}

/// What a round's statement gave back, in the order the writes were bound: whether each begin
/// took effect, and for each commit that did, the connection's generation after it.
struct Returned {
    begun: Vec<bool>,
    committed: Vec<Option<i64>>,
}

/// Reads the `(is_commit, ordinality, generation)` rows: the ordinality (`WITH ORDINALITY`,
/// from 1) says which write of its kind a row stands for, so no keys are built to match them.
fn returned(rows: &[PgRow], begins: usize, commits: usize) -> Result<Returned, StoreError> {
    let mut answer = Returned {
        begun: vec![false; begins],
        committed: vec![None; commits],
    };
    for row in rows {
        let is_commit: bool = row.try_get(0).map_err(unavailable("returning kind"))?;
        let ordinality: i64 = row
            .try_get(1)
            .map_err(unavailable("returning ordinality"))?;
        let generation: i64 = row
            .try_get(2)
            .map_err(unavailable("returning generation"))?;
        let unknown =
            || StoreError::Corrupt("a round answered for a write it was not given".into());
        let index = usize::try_from(ordinality - 1).map_err(|_| unknown())?;
        if is_commit {
            *answer.committed.get_mut(index).ok_or_else(unknown)? = Some(generation);
        } else {
            *answer.begun.get_mut(index).ok_or_else(unknown)? = true;
        }
    }
    Ok(answer)
}

/// One round as one statement: the begins (`$1`–`$10`), the commits (`$11`–`$22`) and the
/// lineage entries of both (`$23`–`$35`), of which only those whose write took effect are
/// written. A commit's entry finishes the pending one its begin wrote (same attempt id,
/// connection, instance, start and presented token): only the columns a finish sets are
/// updated, so the lineage's index by connection is not rewritten.
const ROUND: &str = "WITH \
    b AS (UPDATE connections SET inflight_attempt = w_attempt, inflight_owner = w_owner, \
      inflight_started_at = w_started, inflight_old_hash = w_hash, \
      inflight_recovery = w_recovery, lease_until = w_until \
      FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], \
      $6::timestamptz[], $7::text[], $8::bool[], $9::text[], $10::timestamptz[]) \
      WITH ORDINALITY AS w(w_org, w_context, w_owner, w_generation, w_attempt, w_started, \
      w_hash, w_recovery, w_replacing, w_until, w_i) \
      WHERE org_id = w_org AND context = w_context AND lease_owner = w_owner \
      AND generation = w_generation AND inflight_attempt IS NOT DISTINCT FROM w_replacing \
      RETURNING w_i, generation, w_attempt), \
    c AS (UPDATE connections SET access_token = w_access, access_issued_at = w_issued, \
      access_expires_at = w_expires, refresh_token = COALESCE(w_refresh, refresh_token), \
      rotation_seen = rotation_seen OR w_refresh IS NOT NULL, \
      instance_url = w_instance, last_refresh_at = w_refreshed, updated_at = w_refreshed, \
      generation = generation + 1, health = 'ok', health_detail = NULL, \
      inflight_attempt = NULL, inflight_owner = NULL, inflight_started_at = NULL, \
      inflight_old_hash = NULL, inflight_recovery = FALSE, \
      refresh_token_used_at = w_refreshed, heartbeat_due_at = w_due, at_risk_level = 0, \
      lease_owner = CASE WHEN lease_owner = w_owner THEN NULL ELSE lease_owner END, \
      lease_until = CASE WHEN lease_owner = w_owner THEN NULL ELSE lease_until END \
      FROM unnest($11::text[], $12::text[], $13::int8[], $14::text[], $15::bytea[], \
      $16::timestamptz[], $17::timestamptz[], $18::bytea[], $19::text[], $20::timestamptz[], \
      $21::timestamptz[], $22::text[]) \
      WITH ORDINALITY AS w(w_org, w_context, w_generation, w_attempt, w_access, w_issued, \
      w_expires, w_refresh, w_instance, w_refreshed, w_due, w_owner, w_i) \
      WHERE org_id = w_org AND context = w_context AND generation = w_generation \
      AND inflight_attempt IS NOT DISTINCT FROM w_attempt \
      RETURNING w_i, generation, w_attempt), \
    l AS (INSERT INTO refresh_attempts (attempt_id, org_id, context, instance, started_at, \
      finished_at, old_refresh_hash, new_refresh_hash, latency_ms, outcome, detail, egress, \
      recovery) \
      SELECT * FROM unnest($23::text[], $24::text[], $25::text[], $26::text[], \
      $27::timestamptz[], $28::timestamptz[], $29::text[], $30::text[], $31::int8[], \
      $32::text[], $33::text[], $34::text[], $35::bool[]) \
      AS a(attempt_id, org_id, context, instance, started_at, finished_at, old_refresh_hash, \
      new_refresh_hash, latency_ms, outcome, detail, egress, recovery) \
      WHERE a.attempt_id IN (SELECT w_attempt FROM b UNION ALL SELECT w_attempt FROM c) \
      ON CONFLICT (attempt_id) DO UPDATE SET finished_at = excluded.finished_at, \
      new_refresh_hash = excluded.new_refresh_hash, latency_ms = excluded.latency_ms, \
      outcome = excluded.outcome, detail = excluded.detail, egress = excluded.egress, \
      recovery = excluded.recovery) \
    SELECT false, w_i, generation FROM b UNION ALL SELECT true, w_i, generation FROM c";

type Query<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

fn round_statement<'q>(
    begins: &[(usize, &'q BeginWrite)],
    commits: &[(usize, &'q CommitWrite)],
    attempts: &[&'q RefreshAttempt],
) -> Query<'q> {
    let begin_texts = |f: &dyn Fn(&'q BeginWrite) -> &'q str| -> Vec<&'q str> {
        begins.iter().map(|(_, begin)| f(begin)).collect()
    };
    let commit_texts = |f: &dyn Fn(&'q CommitWrite) -> &'q str| -> Vec<&'q str> {
        commits.iter().map(|(_, commit)| f(commit)).collect()
    };
    let commit_times = |f: &dyn Fn(&CommitWrite) -> DateTime<Utc>| -> Vec<DateTime<Utc>> {
        commits.iter().map(|(_, commit)| f(commit)).collect()
    };
    let texts = |f: &dyn Fn(&'q RefreshAttempt) -> &'q str| -> Vec<&'q str> {
        attempts.iter().map(|attempt| f(attempt)).collect()
    };
    let optional = |f: &dyn Fn(&'q RefreshAttempt) -> Option<&'q str>| -> Vec<Option<&'q str>> {
        attempts.iter().map(|attempt| f(attempt)).collect()
    };
    sqlx::query(ROUND)
        // The begins.
        .bind(begin_texts(&|b| b.key.org_id.as_str()))
        .bind(begin_texts(&|b| b.key.context.as_str()))
        .bind(begin_texts(&|b| b.record.owner.as_str()))
        .bind(
            begins
                .iter()
                .map(|(_, b)| b.expected_generation)
                .collect::<Vec<i64>>(),
        )
        .bind(begin_texts(&|b| b.record.attempt_id.as_str()))
        .bind(
            begins
                .iter()
                .map(|(_, b)| b.record.started_at)
                .collect::<Vec<DateTime<Utc>>>(),
        )
        .bind(begin_texts(&|b| b.record.old_refresh_hash.as_str()))
        .bind(
            begins
                .iter()
                .map(|(_, b)| b.record.recovery)
                .collect::<Vec<bool>>(),
        )
        .bind(
            begins
                .iter()
                .map(|(_, b)| b.replacing.as_deref())
                .collect::<Vec<Option<&str>>>(),
        )
        .bind(
            begins
                .iter()
                .map(|(_, b)| b.lease_until)
                .collect::<Vec<DateTime<Utc>>>(),
        )
        // The commits.
        .bind(commit_texts(&|c| c.key.org_id.as_str()))
        .bind(commit_texts(&|c| c.key.context.as_str()))
        .bind(
            commits
                .iter()
                .map(|(_, c)| c.expected_generation)
                .collect::<Vec<i64>>(),
        )
        .bind(commit_texts(&|c| c.attempt_id.as_str()))
        .bind(
            commits
                .iter()
                .map(|(_, c)| c.write.access_token.as_bytes())
                .collect::<Vec<&[u8]>>(),
        )
        .bind(commit_times(&|c| c.write.access_issued_at))
        .bind(commit_times(&|c| c.write.access_expires_at))
        .bind(
            commits
                .iter()
                .map(|(_, c)| {
                    c.write
                        .refresh_token
                        .as_ref()
                        .map(|sealed| sealed.as_bytes())
                })
                .collect::<Vec<Option<&[u8]>>>(),
        )
        .bind(commit_texts(&|c| c.write.instance_url.as_str()))
        .bind(commit_times(&|c| c.write.refreshed_at))
        .bind(commit_times(&|c| c.write.heartbeat_due_at))
        .bind(commit_texts(&|c| c.lease_owner.as_str()))
        // The lineage entries.
        .bind(texts(&|a| a.attempt_id.as_str()))
        .bind(texts(&|a| a.org_id.as_str()))
        .bind(texts(&|a| a.context.as_str()))
        .bind(texts(&|a| a.instance.as_str()))
        .bind(
            attempts
                .iter()
                .map(|a| a.started_at)
                .collect::<Vec<DateTime<Utc>>>(),
        )
        .bind(
            attempts
                .iter()
                .map(|a| a.finished_at)
                .collect::<Vec<Option<DateTime<Utc>>>>(),
        )
        .bind(texts(&|a| a.old_refresh_hash.as_str()))
        .bind(optional(&|a| a.new_refresh_hash.as_deref()))
        .bind(
            attempts
                .iter()
                .map(|a| a.latency_ms)
                .collect::<Vec<Option<i64>>>(),
        )
        .bind(texts(&|a| a.outcome.as_str()))
        .bind(optional(&|a| a.detail.as_deref()))
        .bind(optional(&|a| a.egress.as_deref()))
        .bind(attempts.iter().map(|a| a.recovery).collect::<Vec<bool>>())
}

/// A commit that did not match: stale (reported with the current generation) or missing.
async fn why_not_committed(
    connection: &mut PgConnection,
    commit: &CommitWrite,
) -> Result<RotationWritten, StoreError> {
    let current: Option<i64> =
        sqlx::query_scalar("SELECT generation FROM connections WHERE org_id = $1 AND context = $2")
            .bind(commit.key.org_id.as_str())
            .bind(commit.key.context.as_str())
            .fetch_optional(&mut *connection)
            .await
            .map_err(unavailable("write_rotations commit read"))?;
    Ok(match current {
        Some(current_generation) => RotationWritten::Stale { current_generation },
        None => RotationWritten::Missing,
    })
}
