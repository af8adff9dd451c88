//! Conformance checks for pending authorizations: single use, expiry, concurrent takes, purge.

use super::fixtures::*;

pub(super) async fn ping_succeeds_on_a_fresh_store(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
    assert!(store.connections().await.unwrap().is_empty());
}

pub(super) async fn pending_round_trips_and_is_single_use(store: Arc<dyn Store>) {
    let ring = ring();
    let with_org = pending(&ring, "hash-a", at(0), at(600));
    let mut without_org = pending(&ring, "hash-b", at(1), at(601));
    without_org.expected_org = None;
    without_org.context = ConnectionContext::parse("user.005x").unwrap();
    without_org.login_host = host("https://acme.my.salesforce.com:444/ignored/path");
    store.insert_pending(&with_org).await.unwrap();
    store.insert_pending(&without_org).await.unwrap();

    assert_eq!(
        store.take_pending("hash-a", at(10)).await.unwrap(),
        Some(with_org)
    );
    assert_eq!(store.take_pending("hash-a", at(10)).await.unwrap(), None);
    let taken = store
        .take_pending("hash-b", at(600))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(taken, without_org);
    assert_eq!(
        open_text(&ring, &SealedRef::pending("hash-b"), &taken.verifier),
        "verifier-plaintext"
    );
    assert_eq!(
        store.take_pending("never-stored", at(10)).await.unwrap(),
        None
    );
}

pub(super) async fn expired_pending_is_removed_and_not_returned(store: Arc<dyn Store>) {
    let ring = ring();
    store
        .insert_pending(&pending(&ring, "late", at(0), at(600)))
        .await
        .unwrap();
    store
        .insert_pending(&pending(&ring, "edge", at(0), at(600)))
        .await
        .unwrap();
    assert_eq!(store.take_pending("late", at(601)).await.unwrap(), None);
    // Expiry is inclusive: at expires_at the authorization is over.
    assert_eq!(store.take_pending("edge", at(600)).await.unwrap(), None);
    // Both rows are gone, not merely hidden.
    assert_eq!(store.purge_expired_pending(at(10_000)).await.unwrap(), 0);
    assert_eq!(store.take_pending("late", at(0)).await.unwrap(), None);
}

pub(super) async fn concurrent_takes_of_one_pending_yield_exactly_one(store: Arc<dyn Store>) {
    let ring = ring();
    store
        .insert_pending(&pending(&ring, "contended", at(0), at(600)))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store.take_pending("contended", at(5)).await
        }));
    }
    let mut winners = 0;
    for task in tasks {
        if task.await.unwrap().unwrap().is_some() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
}

pub(super) async fn purge_removes_only_expired_pending(store: Arc<dyn Store>) {
    let ring = ring();
    for (hash, expires) in [("p1", 100), ("p2", 200), ("p3", 300), ("p4", 400)] {
        store
            .insert_pending(&pending(&ring, hash, at(0), at(expires)))
            .await
            .unwrap();
    }
    assert_eq!(store.purge_expired_pending(at(50)).await.unwrap(), 0);
    assert_eq!(store.purge_expired_pending(at(200)).await.unwrap(), 2);
    assert_eq!(store.take_pending("p1", at(0)).await.unwrap(), None);
    assert_eq!(store.take_pending("p2", at(0)).await.unwrap(), None);
    assert!(store.take_pending("p3", at(250)).await.unwrap().is_some());
    assert_eq!(store.purge_expired_pending(at(1000)).await.unwrap(), 1);
}
