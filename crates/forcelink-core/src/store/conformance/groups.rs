//! Conformance checks for grouped rotation writes (`write_rotations`): each write of a group
//! is fenced exactly as its single-row counterpart, gets its own answer, carries its lineage
//! entry and lease change only when it takes effect, and repeated connections apply in order.

use super::fixtures::*;
use crate::store::{BeginWrite, CommitWrite, RotationWrite, RotationWritten};

/// `key`'s first grant, leased by `owner` until `at(100)`.
async fn leased_by(store: &Arc<dyn Store>, key: &ConnectionKey, owner: &str) -> Connection {
    connected(store, &ring(), key).await;
    acquired(
        store
            .acquire_lease(key, owner, at(1), at(100))
            .await
            .unwrap(),
    )
}

fn pending_attempt(key: &ConnectionKey, record: &RotationInFlight) -> RefreshAttempt {
    RefreshAttempt {
        attempt_id: record.attempt_id.clone(),
        org_id: key.org_id.clone(),
        context: key.context.clone(),
        instance: record.owner.clone(),
        started_at: record.started_at,
        finished_at: None,
        old_refresh_hash: record.old_refresh_hash.clone(),
        new_refresh_hash: None,
        latency_ms: None,
        outcome: "pending".to_string(),
        detail: None,
        egress: None,
        recovery: record.recovery,
    }
}

fn begin(
    key: &ConnectionKey,
    generation: i64,
    replacing: Option<&str>,
    record: RotationInFlight,
) -> RotationWrite {
    RotationWrite::Begin(BeginWrite {
        key: key.clone(),
        expected_generation: generation,
        replacing: replacing.map(str::to_string),
        attempt: pending_attempt(key, &record),
        record,
        lease_until: at(200),
    })
}

fn commit(
    ring: &KeyRing,
    key: &ConnectionKey,
    generation: i64,
    attempt_id: &str,
    owner: &str,
) -> RotationWrite {
    let mut finished = attempt(attempt_id, key, "sha256-old", at(2));
    finished.instance = owner.to_string();
    RotationWrite::Commit(CommitWrite {
        key: key.clone(),
        expected_generation: generation,
        attempt_id: attempt_id.to_string(),
        write: refresh(ring, key, attempt_id, true, at(10)),
        lease_owner: owner.to_string(),
        attempt: finished,
    })
}

pub(super) async fn grouped_begins_are_fenced_like_begin_rotation(store: Arc<dyn Store>) {
    let keys: Vec<ConnectionKey> = ["00D000000000071", "00D000000000072", "00D000000000073"]
        .iter()
        .map(|org| key(org, "api"))
        .collect();
    let owned_by_b = key("00D000000000074", "api");
    let missing = key("00D000000000075", "api");
    let mut before = Vec::new();
    for key in &keys {
        before.push(leased_by(&store, key, "a").await);
    }
    let b_before = leased_by(&store, &owned_by_b, "b").await;
    assert!(store.write_rotations(&[]).await.unwrap().is_empty());

    let record = flight("g1", "a", at(2));
    let group = [
        begin(&keys[0], 1, None, record.clone()),
        begin(&keys[1], 2, None, flight("g2", "a", at(2))), // not the generation
        begin(&keys[2], 1, Some("g0"), flight("g3", "a", at(2))), // nothing to replace
        begin(&owned_by_b, 1, None, flight("g4", "a", at(2))), // not the lease owner
        begin(&missing, 1, None, flight("g5", "a", at(2))),
    ];
    let written = store.write_rotations(&group).await.unwrap();
    assert_eq!(
        written,
        vec![
            RotationWritten::Begun,
            RotationWritten::NotBegun,
            RotationWritten::NotBegun,
            RotationWritten::NotBegun,
            RotationWritten::NotBegun,
        ]
    );
    let begun = stored(&store, &keys[0]).await;
    assert_eq!(begun.in_flight, Some(record.clone()));
    assert_eq!(
        begun.lease,
        Some(Lease {
            owner: "a".to_string(),
            until: at(200)
        }),
        "the begin extends the lease"
    );
    assert_eq!(
        Connection {
            in_flight: None,
            lease: before[0].lease.clone(),
            ..begun
        },
        before[0]
    );
    for (key, before) in keys.iter().zip(&before).skip(1) {
        assert_eq!(&stored(&store, key).await, before);
        assert!(store.attempts(key, 0).await.unwrap().is_empty());
    }
    assert_eq!(stored(&store, &owned_by_b).await, b_before);
    assert!(store.connection(&missing).await.unwrap().is_none());
    assert_eq!(
        store.attempts(&keys[0], 0).await.unwrap(),
        vec![pending_attempt(&keys[0], &record)]
    );

    // The record is fenced as before: a second begin must name it.
    let written = store
        .write_rotations(&[
            begin(&keys[0], 1, None, flight("g6", "a", at(3))),
            begin(&keys[1], 1, None, flight("g7", "a", at(3))),
        ])
        .await
        .unwrap();
    assert_eq!(
        written,
        vec![RotationWritten::NotBegun, RotationWritten::Begun]
    );
    let mut recovery = flight("g8", "a", at(4));
    recovery.recovery = true;
    let written = store
        .write_rotations(&[begin(&keys[0], 1, Some("g1"), recovery.clone())])
        .await
        .unwrap();
    assert_eq!(written, vec![RotationWritten::Begun]);
    assert_eq!(stored(&store, &keys[0]).await.in_flight, Some(recovery));
}

pub(super) async fn grouped_commits_are_fenced_like_commit_refresh_and_release_the_lease(
    store: Arc<dyn Store>,
) {
    let ring = ring();
    let [one, two, three, four, missing] = [
        "00D000000000081",
        "00D000000000082",
        "00D000000000083",
        "00D000000000084",
        "00D000000000085",
    ]
    .map(|org| key(org, "api"));
    for (key, owner, attempt_id) in [
        (&one, "a", "c1"),
        (&two, "a", "c2"),
        (&three, "b", "c3"),
        (&four, "a", "c4"),
    ] {
        leased_by(&store, key, owner).await;
        assert!(
            store
                .begin_rotation(key, 1, None, &flight(attempt_id, owner, at(2)))
                .await
                .unwrap()
        );
    }
    let two_before = stored(&store, &two).await;
    let four_before = stored(&store, &four).await;
    let group = [
        commit(&ring, &one, 1, "c1", "a"),
        commit(&ring, &two, 1, "other", "a"), // another attempt owns the rotation
        commit(&ring, &three, 1, "c3", "a"),  // committed; b's lease is not a's to release
        commit(&ring, &four, 5, "c4", "a"),   // not the generation
        commit(&ring, &missing, 1, "c5", "a"),
    ];
    let written = store.write_rotations(&group).await.unwrap();
    assert_eq!(
        written,
        vec![
            RotationWritten::Committed { generation: 2 },
            RotationWritten::Stale {
                current_generation: 1
            },
            RotationWritten::Committed { generation: 2 },
            RotationWritten::Stale {
                current_generation: 1
            },
            RotationWritten::Missing,
        ]
    );
    let RotationWrite::Commit(expected) = &group[0] else {
        unreachable!()
    };
    let after = stored(&store, &one).await;
    let write = &expected.write;
    assert_eq!(after.generation, 2);
    assert_eq!(after.in_flight, None);
    assert_eq!(after.lease, None, "the commit releases its owner's lease");
    assert_eq!(
        (after.health, after.health_detail),
        (ConnectionHealth::Ok, None)
    );
    assert!(after.rotation_seen);
    assert_eq!(after.tokens.access_token, write.access_token);
    assert_eq!(after.tokens.access_issued_at, write.access_issued_at);
    assert_eq!(after.tokens.access_expires_at, write.access_expires_at);
    assert_eq!(after.tokens.refresh_token, write.refresh_token);
    assert_eq!(after.instance_url, write.instance_url);
    assert_eq!(after.last_refresh_at, Some(write.refreshed_at));
    assert_eq!(after.refresh_token_used_at, write.refreshed_at);
    assert_eq!(after.heartbeat_due_at, write.heartbeat_due_at);
    assert_eq!(
        store.attempts(&one, 0).await.unwrap(),
        vec![expected.attempt.clone()]
    );

    let three_after = stored(&store, &three).await;
    assert_eq!(three_after.generation, 2);
    assert_eq!(three_after.lease.map(|lease| lease.owner), Some("b".into()));

    assert_eq!(stored(&store, &two).await, two_before);
    assert_eq!(stored(&store, &four).await, four_before);
    for key in [&two, &four, &missing] {
        assert!(store.attempts(key, 0).await.unwrap().is_empty());
    }
}

pub(super) async fn a_group_applies_writes_to_one_connection_in_order(store: Arc<dyn Store>) {
    let ring = ring();
    let key = key("00D000000000091", "api");
    leased_by(&store, &key, "a").await;
    let group = [
        begin(&key, 1, None, flight("o1", "a", at(2))),
        commit(&ring, &key, 1, "o1", "a"),
        // The commit released the lease: a begin after it in the same group is refused.
        begin(&key, 2, None, flight("o2", "a", at(3))),
    ];
    let written = store.write_rotations(&group).await.unwrap();
    assert_eq!(
        written,
        vec![
            RotationWritten::Begun,
            RotationWritten::Committed { generation: 2 },
            RotationWritten::NotBegun,
        ]
    );
    let after = stored(&store, &key).await;
    assert_eq!(
        (after.generation, after.in_flight, after.lease),
        (2, None, None)
    );
    let lineage = store.attempts(&key, 0).await.unwrap();
    assert_eq!(lineage.len(), 1);
    assert_eq!(
        lineage[0].outcome, "rotated",
        "the commit's entry replaces the pending one"
    );
}
