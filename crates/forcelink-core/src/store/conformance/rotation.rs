//! Conformance checks for the rotation-in-flight record: fenced begin, commit by attempt id,
//! end with or without keeping the record, reconnect clearing it, and connection health.

use super::fixtures::*;

/// A connection whose lease `owner` holds until `at(100)`; returns it as stored.
async fn leased(store: &Arc<dyn Store>, key: &ConnectionKey, owner: &str) -> Connection {
    connected(store, &ring(), key).await;
    acquired(
        store
            .acquire_lease(key, owner, at(1), at(100))
            .await
            .unwrap(),
    )
}

pub(super) async fn begin_rotation_requires_lease_generation_and_replacing(store: Arc<dyn Store>) {
    let key = key("00D000000000062", "api");
    connected(&store, &ring(), &key).await;
    let record = flight("a1", "a", at(2));
    // Nobody holds the lease.
    assert!(!store.begin_rotation(&key, 1, None, &record).await.unwrap());
    let before = acquired(
        store
            .acquire_lease(&key, "a", at(1), at(100))
            .await
            .unwrap(),
    );
    let refused = [
        (1, None, flight("a1", "b", at(2))), // not the lease owner
        (2, None, record.clone()),           // not the generation
        (0, None, record.clone()),           // not the generation
        (1, Some("a0"), record.clone()),     // nothing to replace
    ];
    for (generation, replacing, attempt) in &refused {
        assert!(
            !store
                .begin_rotation(&key, *generation, *replacing, attempt)
                .await
                .unwrap()
        );
        assert_eq!(stored(&store, &key).await, before);
    }

    assert!(store.begin_rotation(&key, 1, None, &record).await.unwrap());
    let begun = stored(&store, &key).await;
    assert_eq!(begun.in_flight, Some(record.clone()));
    // Health, lease, generation and tokens are untouched.
    assert_eq!(
        Connection {
            in_flight: None,
            ..begun.clone()
        },
        before
    );

    // A second record must name the one it replaces.
    let mut recovery = flight("a2", "a", at(3));
    recovery.recovery = true;
    for replacing in [None, Some("a0"), Some("a2")] {
        assert!(
            !store
                .begin_rotation(&key, 1, replacing, &recovery)
                .await
                .unwrap()
        );
        assert_eq!(stored(&store, &key).await, begun);
    }
    assert!(
        store
            .begin_rotation(&key, 1, Some("a1"), &recovery)
            .await
            .unwrap()
    );
    assert_eq!(stored(&store, &key).await.in_flight, Some(recovery.clone()));

    // The lease's `until` is the caller's business: an owner past it may still begin.
    let missing = self::key("00D000000000063", "api");
    assert!(
        !store
            .begin_rotation(&missing, 1, None, &record)
            .await
            .unwrap()
    );
    let late = flight("a3", "a", at(500));
    assert!(
        store
            .begin_rotation(&key, 1, Some("a2"), &late)
            .await
            .unwrap()
    );
    assert_eq!(stored(&store, &key).await.in_flight, Some(late));
}

pub(super) async fn commit_refresh_is_fenced_by_the_in_flight_attempt(store: Arc<dyn Store>) {
    let ring = ring();
    let key = key("00D000000000062", "api");
    leased(&store, &key, "a").await;
    assert!(
        store
            .begin_rotation(&key, 1, None, &flight("a1", "a", at(2)))
            .await
            .unwrap()
    );
    assert!(
        store
            .set_health(&key, ConnectionHealth::OutcomeUnknown, Some("lost"), at(3))
            .await
            .unwrap()
    );
    let before = stored(&store, &key).await;
    // Another attempt, or none, while a record exists: stale at the same generation.
    for attempt_id in [None, Some("a2")] {
        match store
            .commit_refresh(&key, 1, attempt_id, &refresh(&ring, &key, "x", true, at(4)))
            .await
            .unwrap()
        {
            CommitOutcome::Stale { current_generation } => assert_eq!(current_generation, 1),
            other => panic!("expected stale for {attempt_id:?}, got {other:?}"),
        }
        assert_eq!(stored(&store, &key).await, before);
    }

    let write = refresh(&ring, &key, "two", true, at(5));
    let after = committed(
        store
            .commit_refresh(&key, 1, Some("a1"), &write)
            .await
            .unwrap(),
    );
    assert_eq!(after.generation, 2);
    assert_eq!(after.in_flight, None);
    assert_eq!(
        (after.health, after.health_detail.clone()),
        (ConnectionHealth::Ok, None)
    );
    assert_eq!(
        after.lease, before.lease,
        "the lease is released separately"
    );
    assert_eq!(after.tokens.refresh_token, write.refresh_token);
    assert_eq!(stored(&store, &key).await, after);

    // The record is gone: the same attempt id no longer commits.
    match store
        .commit_refresh(&key, 2, Some("a1"), &refresh(&ring, &key, "y", true, at(6)))
        .await
        .unwrap()
    {
        CommitOutcome::Stale { current_generation } => assert_eq!(current_generation, 2),
        other => panic!("expected stale, got {other:?}"),
    }
    assert_eq!(stored(&store, &key).await, after);
}

pub(super) async fn end_rotation_keeps_or_clears_the_record(store: Arc<dyn Store>) {
    let key = key("00D000000000062", "api");
    leased(&store, &key, "a").await;
    let record = flight("a1", "a", at(2));
    assert!(store.begin_rotation(&key, 1, None, &record).await.unwrap());
    let begun = stored(&store, &key).await;

    let unknown = ending(ConnectionHealth::OutcomeUnknown, true, at(10));
    assert!(!store.end_rotation(&key, "a2", &unknown).await.unwrap());
    assert_eq!(stored(&store, &key).await, begun);
    let missing = self::key("00D000000000063", "api");
    assert!(!store.end_rotation(&missing, "a1", &unknown).await.unwrap());

    assert!(store.end_rotation(&key, "a1", &unknown).await.unwrap());
    let kept = stored(&store, &key).await;
    assert_eq!(kept.in_flight, Some(record));
    assert_eq!(kept.health, ConnectionHealth::OutcomeUnknown);
    assert_eq!(kept.health_detail, unknown.health_detail);
    assert_eq!(kept.updated_at, at(10));
    assert_eq!(
        (kept.state, kept.generation),
        (begun.state, begun.generation)
    );
    assert_eq!(kept.lease, begun.lease);

    let degraded = RotationEnd {
        health_detail: None,
        ..ending(ConnectionHealth::Degraded, false, at(20))
    };
    assert!(store.end_rotation(&key, "a1", &degraded).await.unwrap());
    let cleared = stored(&store, &key).await;
    assert_eq!(cleared.in_flight, None);
    assert_eq!(
        (cleared.health, cleared.health_detail.clone()),
        (ConnectionHealth::Degraded, None)
    );
    assert_eq!(
        (cleared.updated_at, cleared.state),
        (at(20), ConnectionState::Active)
    );
    assert!(!store.end_rotation(&key, "a1", &degraded).await.unwrap());
    // With the record gone a new rotation begins from "none".
    assert!(
        store
            .begin_rotation(&key, 1, None, &flight("a2", "a", at(30)))
            .await
            .unwrap()
    );
}

pub(super) async fn end_rotation_with_a_state_marks_the_grant_dead(store: Arc<dyn Store>) {
    let key = key("00D000000000062", "api");
    leased(&store, &key, "a").await;
    assert!(
        store
            .begin_rotation(&key, 1, None, &flight("a1", "a", at(2)))
            .await
            .unwrap()
    );
    let end = RotationEnd {
        state: Some((
            ConnectionState::NeedsReauth,
            "invalid_grant: expired".to_string(),
        )),
        ..ending(ConnectionHealth::Ok, false, at(7))
    };
    assert!(store.end_rotation(&key, "a1", &end).await.unwrap());
    let dead = stored(&store, &key).await;
    assert_eq!(dead.state, ConnectionState::NeedsReauth);
    assert_eq!(dead.state_cause.as_deref(), Some("invalid_grant: expired"));
    assert_eq!((dead.health, dead.in_flight), (ConnectionHealth::Ok, None));
    assert_eq!((dead.generation, dead.updated_at), (1, at(7)));
}

pub(super) async fn reconnect_clears_the_record_and_health_but_not_the_lease(
    store: Arc<dyn Store>,
) {
    let ring = ring();
    let key = key("00D000000000062", "api");
    let leased = leased(&store, &key, "a").await;
    assert!(
        store
            .begin_rotation(&key, 1, None, &flight("a1", "a", at(2)))
            .await
            .unwrap()
    );
    assert!(
        store
            .set_health(
                &key,
                ConnectionHealth::IpBlocked,
                Some("ip restricted"),
                at(3)
            )
            .await
            .unwrap()
    );
    let reconnected = store
        .save_grant(&grant(&ring, &key, "two", at(10)))
        .await
        .unwrap()
        .connection;
    assert_eq!(reconnected.generation, 2);
    assert_eq!(reconnected.in_flight, None);
    assert_eq!(
        (reconnected.health, reconnected.health_detail.clone()),
        (ConnectionHealth::Ok, None)
    );
    assert_eq!(reconnected.lease, leased.lease);
    assert_eq!(stored(&store, &key).await, reconnected);
}

pub(super) async fn set_health_sets_health_and_detail(store: Arc<dyn Store>) {
    let key = key("00D000000000062", "api");
    let saved = connected(&store, &ring(), &key).await;
    for (health, detail, second) in [
        (
            ConnectionHealth::Degraded,
            Some("503 from token endpoint"),
            1,
        ),
        (ConnectionHealth::IpBlocked, Some("ip restricted"), 2),
        (ConnectionHealth::OutcomeUnknown, None, 3),
        (ConnectionHealth::Ok, None, 4),
    ] {
        assert!(
            store
                .set_health(&key, health, detail, at(second))
                .await
                .unwrap()
        );
        let read = stored(&store, &key).await;
        assert_eq!(
            (read.health, read.health_detail.as_deref()),
            (health, detail)
        );
        assert_eq!(
            (read.updated_at, read.generation),
            (at(second), saved.generation)
        );
    }
    let missing = self::key("00D000000000063", "api");
    assert!(
        !store
            .set_health(&missing, ConnectionHealth::Ok, None, at(5))
            .await
            .unwrap()
    );
}
