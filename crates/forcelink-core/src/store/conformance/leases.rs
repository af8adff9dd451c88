//! Conformance checks for the refresh lease: exclusive until it expires, owner-checked renew
//! and release, one winner among concurrent acquirers.

use super::fixtures::*;

pub(super) async fn fresh_connection_is_healthy_unleased_and_idle(store: Arc<dyn Store>) {
    let ring = ring();
    let key = key("00D000000000062", "api");
    let saved = connected(&store, &ring, &key).await;
    assert_eq!(saved.health, ConnectionHealth::Ok);
    assert_eq!(saved.health_detail, None);
    assert_eq!(saved.lease, None);
    assert_eq!(saved.in_flight, None);
    assert_eq!(stored(&store, &key).await, saved);
}

pub(super) async fn lease_is_exclusive_until_it_expires(store: Arc<dyn Store>) {
    let ring = ring();
    let key = key("00D000000000062", "api");
    let saved = connected(&store, &ring, &key).await;

    let first = acquired(
        store
            .acquire_lease(&key, "a", at(10), at(40))
            .await
            .unwrap(),
    );
    let lease_a = Lease {
        owner: "a".to_string(),
        until: at(40),
    };
    assert_eq!(first.lease, Some(lease_a.clone()));
    assert_eq!(first.generation, saved.generation);
    assert_eq!(first.tokens, saved.tokens);
    assert_eq!(stored(&store, &key).await, first);

    match store
        .acquire_lease(&key, "b", at(39), at(70))
        .await
        .unwrap()
    {
        LeaseOutcome::Busy { owner, until } => assert_eq!((owner, until), ("a".into(), at(40))),
        other => panic!("expected busy, got {other:?}"),
    }
    assert_eq!(stored(&store, &key).await.lease, Some(lease_a));

    // The owner may take it again, moving `until`.
    let again = acquired(
        store
            .acquire_lease(&key, "a", at(20), at(45))
            .await
            .unwrap(),
    );
    assert_eq!(again.lease.as_ref().map(|lease| lease.until), Some(at(45)));

    // At `until` the lease is over (inclusive), and another owner takes it.
    let taken = acquired(
        store
            .acquire_lease(&key, "b", at(45), at(80))
            .await
            .unwrap(),
    );
    assert_eq!(
        taken.lease,
        Some(Lease {
            owner: "b".to_string(),
            until: at(80)
        })
    );
    // An expired lease is still reported, with its owner; callers compare `until`.
    match store
        .acquire_lease(&key, "a", at(50), at(90))
        .await
        .unwrap()
    {
        LeaseOutcome::Busy { owner, until } => assert_eq!((owner, until), ("b".into(), at(80))),
        other => panic!("expected busy, got {other:?}"),
    }

    let missing = self::key("00D000000000063", "api");
    let outcome = store
        .acquire_lease(&missing, "a", at(0), at(30))
        .await
        .unwrap();
    assert!(matches!(outcome, LeaseOutcome::Missing), "got {outcome:?}");
}

pub(super) async fn renew_and_release_are_owner_checked(store: Arc<dyn Store>) {
    let ring = ring();
    let key = key("00D000000000062", "api");
    connected(&store, &ring, &key).await;
    assert!(!store.renew_lease(&key, "a", at(60)).await.unwrap());
    assert!(!store.release_lease(&key, "a").await.unwrap());
    assert_eq!(stored(&store, &key).await.lease, None);

    acquired(store.acquire_lease(&key, "a", at(0), at(30)).await.unwrap());
    assert!(!store.renew_lease(&key, "b", at(60)).await.unwrap());
    let held = stored(&store, &key).await;
    assert_eq!(held.lease.as_ref().map(|lease| lease.until), Some(at(30)));

    assert!(store.renew_lease(&key, "a", at(60)).await.unwrap());
    let renewed = stored(&store, &key).await;
    assert_eq!(
        renewed.lease,
        Some(Lease {
            owner: "a".to_string(),
            until: at(60)
        })
    );
    // Only the lease moved.
    assert_eq!(
        Connection {
            lease: held.lease.clone(),
            ..renewed.clone()
        },
        held
    );

    assert!(!store.release_lease(&key, "b").await.unwrap());
    assert_eq!(stored(&store, &key).await, renewed);
    assert!(store.release_lease(&key, "a").await.unwrap());
    assert_eq!(stored(&store, &key).await.lease, None);
    assert!(!store.release_lease(&key, "a").await.unwrap());
    assert!(!store.renew_lease(&key, "a", at(90)).await.unwrap());

    // Free again: anyone takes it at any time.
    acquired(store.acquire_lease(&key, "b", at(1), at(31)).await.unwrap());

    let missing = self::key("00D000000000063", "api");
    assert!(!store.renew_lease(&missing, "a", at(60)).await.unwrap());
    assert!(!store.release_lease(&missing, "a").await.unwrap());
}

pub(super) async fn concurrent_acquires_by_many_owners_have_one_winner(store: Arc<dyn Store>) {
    let ring = ring();
    let key = key("00D000000000062", "api");
    connected(&store, &ring, &key).await;
    let mut tasks = Vec::new();
    for index in 0..10 {
        let (store, key) = (Arc::clone(&store), key.clone());
        tasks.push(tokio::spawn(async move {
            let owner = format!("owner-{index}");
            let outcome = store
                .acquire_lease(&key, &owner, at(5), at(35))
                .await
                .unwrap();
            (owner, outcome)
        }));
    }
    let mut winners = Vec::new();
    let mut busy_with = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            (owner, LeaseOutcome::Acquired(connection)) => {
                assert_eq!(
                    connection.lease.map(|lease| lease.owner),
                    Some(owner.clone())
                );
                winners.push(owner);
            }
            (_, LeaseOutcome::Busy { owner, until }) => {
                assert_eq!(until, at(35));
                busy_with.push(owner);
            }
            (_, LeaseOutcome::Missing) => panic!("connection vanished"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    assert_eq!(busy_with.len(), 9);
    assert!(busy_with.iter().all(|owner| *owner == winners[0]));
    let lease = stored(&store, &key).await.lease.unwrap();
    assert_eq!(lease.owner, winners[0]);
}
