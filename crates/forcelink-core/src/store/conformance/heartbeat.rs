//! Conformance checks for the refresh-token heartbeat's schedule and claims: grants and
//! refreshes set the next beat and the last use, a claim leases only due, active, unleased
//! connections (oldest due first, at most `limit`), concurrent claimers never share one, and
//! moving the next beat takes a connection out of the due set.

use super::fixtures::*;

/// A first grant for `key` at `at(0)` whose heartbeat is due at `due`.
async fn due_at(
    store: &Arc<dyn Store>,
    ring: &KeyRing,
    key: &ConnectionKey,
    due: DateTime<Utc>,
) -> Connection {
    let mut write = grant(ring, key, "one", at(0));
    write.heartbeat_due_at = due;
    store.save_grant(&write).await.unwrap().connection
}

fn keys_of(connections: &[Connection]) -> Vec<ConnectionKey> {
    connections
        .iter()
        .map(|connection| connection.key.clone())
        .collect()
}

pub(super) async fn grants_and_refreshes_schedule_the_heartbeat(store: Arc<dyn Store>) {
    let ring = ring();
    let key = key("00D000000000062", "api");
    let write = grant(&ring, &key, "one", at(10));
    let saved = store.save_grant(&write).await.unwrap().connection;
    assert_eq!(saved.refresh_token_used_at, at(10));
    assert_eq!(saved.heartbeat_due_at, write.heartbeat_due_at);
    assert_eq!(saved.at_risk_level, 0);
    assert_eq!(stored(&store, &key).await, saved);

    // A refresh without rotation still used the refresh token.
    assert!(store.set_at_risk_level(&key, 3).await.unwrap());
    let mut plain = refresh(&ring, &key, "r", false, at(100));
    plain.heartbeat_due_at = at(5000);
    let refreshed = committed(store.commit_refresh(&key, 1, None, &plain).await.unwrap());
    assert_eq!(refreshed.refresh_token_used_at, at(100));
    assert_eq!(refreshed.heartbeat_due_at, at(5000));
    assert_eq!(refreshed.at_risk_level, 0);
    assert_eq!(stored(&store, &key).await, refreshed);

    // A stale commit moves neither.
    assert!(store.set_at_risk_level(&key, 7).await.unwrap());
    let stale = refresh(&ring, &key, "s", true, at(200));
    let outcome = store.commit_refresh(&key, 1, None, &stale).await.unwrap();
    assert!(
        matches!(outcome, CommitOutcome::Stale { .. }),
        "{outcome:?}"
    );
    let after_stale = stored(&store, &key).await;
    assert_eq!(
        (
            after_stale.refresh_token_used_at,
            after_stale.heartbeat_due_at,
            after_stale.at_risk_level
        ),
        (at(100), at(5000), 7)
    );

    // A reconnect starts the schedule over.
    let mut again = grant(&ring, &key, "two", at(300));
    again.heartbeat_due_at = at(9000);
    let reconnected = store.save_grant(&again).await.unwrap().connection;
    assert_eq!(
        (
            reconnected.refresh_token_used_at,
            reconnected.heartbeat_due_at,
            reconnected.at_risk_level
        ),
        (at(300), at(9000), 0)
    );
    assert_eq!(stored(&store, &key).await, reconnected);
}

pub(super) async fn claim_leases_due_active_unleased_connections_oldest_first(
    store: Arc<dyn Store>,
) {
    let ring = ring();
    let later = key("00D000000000061", "api");
    let middle = key("00D000000000062", "api");
    let not_yet = key("00D000000000063", "api");
    let leased = key("00D000000000064", "api");
    let expired = key("00D000000000065", "api");
    let dead = key("00D000000000066", "api");
    due_at(&store, &ring, &later, at(100)).await;
    due_at(&store, &ring, &middle, at(50)).await;
    due_at(&store, &ring, &not_yet, at(151)).await;
    due_at(&store, &ring, &leased, at(10)).await;
    due_at(&store, &ring, &expired, at(20)).await;
    due_at(&store, &ring, &dead, at(5)).await;
    acquired(
        store
            .acquire_lease(&leased, "refresher", at(0), at(300))
            .await
            .unwrap(),
    );
    acquired(
        store
            .acquire_lease(&expired, "crashed", at(0), at(140))
            .await
            .unwrap(),
    );
    assert!(
        store
            .set_state(&dead, None, ConnectionState::NeedsReauth, None, at(1))
            .await
            .unwrap()
    );

    assert!(
        store
            .claim_due_heartbeats("beat-a", at(150), at(180), 0)
            .await
            .unwrap()
            .is_empty()
    );
    let first = store
        .claim_due_heartbeats("beat-a", at(150), at(180), 2)
        .await
        .unwrap();
    assert_eq!(keys_of(&first), vec![expired.clone(), middle.clone()]);
    let lease_a = Lease {
        owner: "beat-a".to_string(),
        until: at(180),
    };
    for connection in &first {
        assert_eq!(connection.lease, Some(lease_a.clone()));
        assert_eq!(stored(&store, &connection.key).await, *connection);
    }

    // Another owner at the same moment gets only what is left.
    let second = store
        .claim_due_heartbeats("beat-b", at(150), at(180), 10)
        .await
        .unwrap();
    assert_eq!(keys_of(&second), vec![later.clone()]);
    assert!(
        store
            .claim_due_heartbeats("beat-c", at(150), at(180), 10)
            .await
            .unwrap()
            .is_empty()
    );
    match store
        .acquire_lease(&middle, "refresher", at(160), at(190))
        .await
        .unwrap()
    {
        LeaseOutcome::Busy { owner, until } => {
            assert_eq!((owner, until), ("beat-a".into(), at(180)))
        }
        other => panic!("expected busy, got {other:?}"),
    }
    // Untouched: the leased, the not yet due and the dead connection.
    assert_eq!(
        stored(&store, &leased).await.lease.map(|lease| lease.owner),
        Some("refresher".to_string())
    );
    assert_eq!(stored(&store, &not_yet).await.lease, None);
    assert_eq!(stored(&store, &dead).await.lease, None);

    // When the claims' leases run out (inclusive), the connections are due again.
    let third = store
        .claim_due_heartbeats("beat-c", at(180), at(210), 10)
        .await
        .unwrap();
    assert_eq!(
        keys_of(&third),
        vec![
            expired.clone(),
            middle.clone(),
            later.clone(),
            not_yet.clone()
        ]
    );
    let fourth = store
        .claim_due_heartbeats("beat-d", at(300), at(330), 10)
        .await
        .unwrap();
    assert_eq!(
        keys_of(&fourth),
        vec![leased, expired, middle, later, not_yet]
    );
}

pub(super) async fn connections_that_are_not_active_are_never_claimed(store: Arc<dyn Store>) {
    let ring = ring();
    let reauth = key("00D000000000062", "api");
    let revoked = key("00D000000000063", "api");
    due_at(&store, &ring, &reauth, at(0)).await;
    due_at(&store, &ring, &revoked, at(0)).await;
    assert!(
        store
            .set_state(&reauth, Some(1), ConnectionState::NeedsReauth, None, at(1))
            .await
            .unwrap()
    );
    assert!(
        store
            .set_state(&revoked, Some(1), ConnectionState::Revoked, None, at(1))
            .await
            .unwrap()
    );
    assert!(
        store
            .claim_due_heartbeats("beat", at(1000), at(1030), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(stored(&store, &reauth).await.lease, None);
    // Back to active, it is claimed.
    assert!(
        store
            .set_state(&reauth, None, ConnectionState::Active, None, at(2))
            .await
            .unwrap()
    );
    let claimed = store
        .claim_due_heartbeats("beat", at(1000), at(1030), 10)
        .await
        .unwrap();
    assert_eq!(keys_of(&claimed), vec![reauth]);
}

pub(super) async fn concurrent_claimers_take_every_due_connection_exactly_once(
    store: Arc<dyn Store>,
) {
    let ring = ring();
    let mut due = Vec::new();
    for index in 0..60 {
        let key = key(&format!("00D{:012}", 100 + index), "api");
        due_at(&store, &ring, &key, at(index)).await;
        due.push(key);
    }
    let mut tasks = Vec::new();
    for claimer in 0..6 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let owner = format!("beat-{claimer}");
            let claimed = store
                .claim_due_heartbeats(&owner, at(1000), at(1030), 10)
                .await
                .unwrap();
            (owner, claimed)
        }));
    }
    let mut seen = Vec::new();
    for task in tasks {
        let (owner, claimed) = task.await.unwrap();
        assert!(claimed.len() <= 10, "{owner} claimed {}", claimed.len());
        for connection in claimed {
            assert_eq!(
                connection.lease.as_ref().map(|lease| lease.owner.as_str()),
                Some(owner.as_str())
            );
            assert_eq!(
                stored(&store, &connection.key)
                    .await
                    .lease
                    .map(|lease| lease.owner),
                Some(owner.clone())
            );
            seen.push(connection.key);
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "a connection was claimed twice");
    assert_eq!(unique, due, "every due connection is claimed once");
}

pub(super) async fn set_heartbeat_due_moves_a_connection_out_of_the_due_set(store: Arc<dyn Store>) {
    let ring = ring();
    let moved = key("00D000000000062", "api");
    let kept = key("00D000000000063", "api");
    let before = due_at(&store, &ring, &moved, at(10)).await;
    due_at(&store, &ring, &kept, at(20)).await;
    assert!(store.set_heartbeat_due(&moved, at(500)).await.unwrap());
    let after = stored(&store, &moved).await;
    assert_eq!(after.heartbeat_due_at, at(500));
    // Only the schedule moved.
    assert_eq!(
        Connection {
            heartbeat_due_at: before.heartbeat_due_at,
            ..after
        },
        before
    );
    let claimed = store
        .claim_due_heartbeats("beat", at(100), at(130), 10)
        .await
        .unwrap();
    assert_eq!(keys_of(&claimed), vec![kept]);

    // Moving it earlier makes it due again.
    assert!(store.set_heartbeat_due(&moved, at(99)).await.unwrap());
    let claimed = store
        .claim_due_heartbeats("beat", at(100), at(130), 10)
        .await
        .unwrap();
    assert_eq!(keys_of(&claimed), vec![moved]);

    let missing = key("00D000000000064", "api");
    assert!(!store.set_heartbeat_due(&missing, at(1)).await.unwrap());
}

pub(super) async fn lost_rotations_lists_only_settling_in_flight_records(store: Arc<dyn Store>) {
    let ring = ring();
    let lost = key("00D000000000062", "lost");
    let quiet = key("00D000000000062", "quiet");
    let dead = key("00D000000000062", "dead");
    for k in [&lost, &quiet, &dead] {
        connected(&store, &ring, k).await;
    }
    for k in [&lost, &dead] {
        acquired(
            store
                .acquire_lease(k, "owner", at(10), at(100))
                .await
                .unwrap(),
        );
        assert!(
            store
                .begin_rotation(k, 1, None, &flight("attempt", "owner", at(20)))
                .await
                .unwrap()
        );
    }
    assert!(
        store
            .set_state(&dead, None, ConnectionState::NeedsReauth, Some("x"), at(21))
            .await
            .unwrap()
    );
    assert!(
        store.lost_rotations(at(20), 10).await.unwrap().is_empty(),
        "not before it started"
    );
    let found: Vec<ConnectionKey> = store
        .lost_rotations(at(21), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.key)
        .collect();
    assert_eq!(
        found,
        vec![lost.clone()],
        "active connections with a record only"
    );
    assert!(store.lost_rotations(at(21), 0).await.unwrap().len() <= 1);
}
