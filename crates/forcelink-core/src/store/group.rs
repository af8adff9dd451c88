//! Rotation writes in groups: what `Store::write_rotations` takes and answers.
//!
//! A refresh makes two durable writes that matter: the in-flight record before the request
//! (with its lineage entry) and the compare-and-swap commit after it (with its lineage entry
//! and the lease release). `group_commit` collects these from many refreshes and hands them to
//! the store as one group, which the adapter applies in one transaction: one fsync or commit
//! for the group instead of several per refresh. Each write keeps its own condition and gets
//! its own answer. This module holds vocabulary only; it must not do IO.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use crate::connection::RotationInFlight;
use crate::ids::ConnectionKey;
use crate::store::{RefreshAttempt, RefreshWrite};

/// Records a rotation about to be sent, as `Store::begin_rotation` does, and in the same
/// transaction extends the lease of `record.owner` to `lease_until` and writes `attempt`
/// (the lineage entry, outcome `pending`). Nothing is written unless the record is.
#[derive(Debug, Clone)]
pub struct BeginWrite {
    pub key: ConnectionKey,
    pub expected_generation: i64,
    /// The attempt id of the in-flight record this one replaces (`None`: there must be none).
    pub replacing: Option<String>,
    pub record: RotationInFlight,
    pub lease_until: DateTime<Utc>,
    pub attempt: RefreshAttempt,
}

/// Commits refreshed tokens, as `Store::commit_refresh` does with `Some(attempt_id)`, and in
/// the same transaction releases the lease if `lease_owner` holds it and writes `attempt`
/// (the finished lineage entry). Nothing is written unless the commit is. If the attempt's
/// pending entry exists (its begin wrote it), only the fields a finish sets are updated:
/// finished_at, new hash, latency, outcome, detail, egress, recovery.
#[derive(Debug, Clone)]
pub struct CommitWrite {
    pub key: ConnectionKey,
    pub expected_generation: i64,
    pub attempt_id: String,
    pub write: RefreshWrite,
    pub lease_owner: String,
    pub attempt: RefreshAttempt,
}

/// One write of a group.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // moved once per refresh; boxing buys nothing
pub enum RotationWrite {
    Begin(BeginWrite),
    Commit(CommitWrite),
}

impl RotationWrite {
    pub fn key(&self) -> &ConnectionKey {
        match self {
            Self::Begin(begin) => &begin.key,
            Self::Commit(commit) => &commit.key,
        }
    }
}

/// What one write of a group did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationWritten {
    /// The in-flight record (and its lineage entry) is durable.
    Begun,
    /// The lease, generation or current in-flight record was not as required: nothing written.
    NotBegun,
    /// The tokens are durable at this generation; the record is cleared, the lease released.
    Committed { generation: i64 },
    /// Someone else wrote first (or another attempt owns the rotation): nothing written.
    Stale { current_generation: i64 },
    /// No such connection.
    Missing,
}

/// Splits a group into consecutive rounds in which no connection appears twice, keeping the
/// order: an adapter applies round after round (within one transaction), each round's writes
/// as set-based statements. Returns the indexes of each round's writes.
pub fn rounds(writes: &[RotationWrite]) -> Vec<Vec<usize>> {
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    let mut keys: HashSet<&ConnectionKey> = HashSet::new();
    for (index, write) in writes.iter().enumerate() {
        if rounds.is_empty() || !keys.insert(write.key()) {
            keys.clear();
            keys.insert(write.key());
            rounds.push(Vec::new());
        }
        if let Some(round) = rounds.last_mut() {
            round.push(index);
        }
    }
    rounds
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ids::{ConnectionContext, OrgId};
    use crate::vault::Sealed;

    fn key(org: &str) -> ConnectionKey {
        ConnectionKey::new(OrgId::parse(org).unwrap(), ConnectionContext::api())
    }

    fn commit(org: &str) -> RotationWrite {
        let now = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let key = key(org);
        RotationWrite::Commit(CommitWrite {
            key: key.clone(),
            expected_generation: 1,
            attempt_id: "a".into(),
            write: RefreshWrite {
                access_token: Sealed::from_stored(vec![1]),
                access_issued_at: now,
                access_expires_at: now,
                refresh_token: None,
                instance_url: "https://x".into(),
                refreshed_at: now,
                heartbeat_due_at: now,
            },
            lease_owner: "o".into(),
            attempt: RefreshAttempt {
                attempt_id: "a".into(),
                org_id: key.org_id.clone(),
                context: key.context.clone(),
                instance: "o".into(),
                started_at: now,
                finished_at: None,
                old_refresh_hash: "h".into(),
                new_refresh_hash: None,
                latency_ms: None,
                outcome: "pending".into(),
                detail: None,
                egress: None,
                recovery: false,
            },
        })
    }

    #[test]
    fn rounds_never_repeat_a_connection_and_keep_the_order() {
        let (a, b, c) = ("00D000000000001", "00D000000000002", "00D000000000003");
        let writes = [commit(a), commit(b), commit(a), commit(c), commit(a)];
        assert_eq!(rounds(&writes), vec![vec![0, 1], vec![2, 3], vec![4]]);
        assert_eq!(rounds(&[]), Vec::<Vec<usize>>::new());
        assert_eq!(rounds(&writes[..2]), vec![vec![0, 1]]);
    }
}
