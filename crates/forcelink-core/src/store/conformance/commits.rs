//! Conformance checks for refresh commits: the compare-and-swap on the generation.

use super::fixtures::*;

pub(super) async fn commit_refresh_with_current_generation_commits(store: Arc<dyn Store>) {
    let ring = ring();
    let key = key("00D000000000062", "api");
    let before = store
        .save_grant(&grant(&ring, &key, "one", at(0)))
        .await
        .unwrap()
        .connection;
    let write = refresh(&ring, &key, "two", true, at(100));
    let after = committed(store.commit_refresh(&key, 1, None, &write).await.unwrap());
    assert_eq!(after.generation, 2);
    assert_eq!(after.last_refresh_at, Some(at(100)));
    assert_eq!(after.updated_at, at(100));
    assert!(after.rotation_seen);
    assert_eq!(after.instance_url, write.instance_url);
    assert_eq!(after.tokens.access_token, write.access_token);
    assert_eq!(after.tokens.access_issued_at, write.access_issued_at);
    assert_eq!(after.tokens.access_expires_at, write.access_expires_at);
    assert_eq!(after.tokens.refresh_token, write.refresh_token);
    assert_eq!(
        (after.id, after.created_at, after.username.clone()),
        (before.id, before.created_at, before.username)
    );
    assert_eq!(store.connection(&key).await.unwrap(), Some(after));
}

pub(super) async fn commit_refresh_without_refresh_token_keeps_the_stored_one(
    store: Arc<dyn Store>,
) {
    let ring = ring();
    let key = key("00D000000000062", "api");
    let before = store
        .save_grant(&grant(&ring, &key, "one", at(0)))
        .await
        .unwrap()
        .connection;
    let after = committed(
        store
            .commit_refresh(&key, 1, None, &refresh(&ring, &key, "two", false, at(50)))
            .await
            .unwrap(),
    );
    assert_eq!(after.generation, 2);
    assert!(!after.rotation_seen);
    assert_eq!(after.tokens.refresh_token, before.tokens.refresh_token);
    let reference = SealedRef::connection(&key, SealedField::AccessToken);
    assert_eq!(
        open_text(&ring, &reference, &after.tokens.access_token),
        "access-two"
    );
}

pub(super) async fn commit_refresh_with_stale_generation_changes_nothing(store: Arc<dyn Store>) {
    let ring = ring();
    let key = key("00D000000000062", "api");
    store
        .save_grant(&grant(&ring, &key, "one", at(0)))
        .await
        .unwrap();
    let current = committed(
        store
            .commit_refresh(&key, 1, None, &refresh(&ring, &key, "two", true, at(10)))
            .await
            .unwrap(),
    );
    for stale in [1, 0, 3] {
        match store
            .commit_refresh(&key, stale, None, &refresh(&ring, &key, "x", true, at(20)))
            .await
            .unwrap()
        {
            CommitOutcome::Stale { current_generation } => assert_eq!(current_generation, 2),
            other => panic!("expected stale for generation {stale}, got {other:?}"),
        }
    }
    assert_eq!(store.connection(&key).await.unwrap(), Some(current));
}

pub(super) async fn commit_refresh_of_missing_connection_reports_missing(store: Arc<dyn Store>) {
    let ring = ring();
    let key = key("00D000000000062", "api");
    let outcome = store
        .commit_refresh(&key, 1, None, &refresh(&ring, &key, "x", true, at(0)))
        .await
        .unwrap();
    assert!(matches!(outcome, CommitOutcome::Missing), "got {outcome:?}");
}

pub(super) async fn concurrent_commits_with_one_generation_have_one_winner(store: Arc<dyn Store>) {
    let ring = Arc::new(ring());
    let key = key("00D000000000062", "api");
    store
        .save_grant(&grant(&ring, &key, "one", at(0)))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for index in 0..10 {
        let (store, ring, key) = (Arc::clone(&store), Arc::clone(&ring), key.clone());
        tasks.push(tokio::spawn(async move {
            let write = refresh(&ring, &key, &format!("racer{index}"), true, at(100 + index));
            store.commit_refresh(&key, 1, None, &write).await.unwrap()
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            CommitOutcome::Committed(connection) => winners.push(connection),
            CommitOutcome::Stale { current_generation } => assert_eq!(current_generation, 2),
            CommitOutcome::Missing => panic!("connection vanished"),
        }
    }
    assert_eq!(winners.len(), 1);
    assert_eq!(store.connection(&key).await.unwrap(), winners.pop());
}
