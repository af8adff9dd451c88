//! Conformance checks for state changes, deletion and listing order.

use super::fixtures::*;

pub(super) async fn set_state_honours_expected_generation(store: Arc<dyn Store>) {
    let ring = ring();
    let key = key("00D000000000062", "api");
    store
        .save_grant(&grant(&ring, &key, "one", at(0)))
        .await
        .unwrap();
    assert!(
        !store
            .set_state(
                &key,
                Some(7),
                ConnectionState::Revoked,
                Some("stale"),
                at(1)
            )
            .await
            .unwrap()
    );
    let unchanged = store.connection(&key).await.unwrap().unwrap();
    assert_eq!(
        (unchanged.state, unchanged.updated_at),
        (ConnectionState::Active, at(0))
    );

    assert!(
        store
            .set_state(
                &key,
                Some(1),
                ConnectionState::NeedsReauth,
                Some("invalid_grant"),
                at(2)
            )
            .await
            .unwrap()
    );
    let changed = store.connection(&key).await.unwrap().unwrap();
    assert_eq!(changed.state, ConnectionState::NeedsReauth);
    assert_eq!(changed.state_cause.as_deref(), Some("invalid_grant"));
    assert_eq!((changed.generation, changed.updated_at), (1, at(2)));

    assert!(
        store
            .set_state(&key, None, ConnectionState::Active, None, at(3))
            .await
            .unwrap()
    );
    let cleared = store.connection(&key).await.unwrap().unwrap();
    assert_eq!(
        (cleared.state, cleared.state_cause),
        (ConnectionState::Active, None)
    );
    let missing = self::key("00D000000000063", "api");
    assert!(
        !store
            .set_state(&missing, None, ConnectionState::Revoked, None, at(4))
            .await
            .unwrap()
    );
}

pub(super) async fn delete_returns_the_record_once(store: Arc<dyn Store>) {
    let ring = ring();
    let key = key("00D000000000062", "api");
    let kept = self::key("00D000000000062", "kept");
    let saved = store
        .save_grant(&grant(&ring, &key, "one", at(0)))
        .await
        .unwrap()
        .connection;
    store
        .save_grant(&grant(&ring, &kept, "kept", at(0)))
        .await
        .unwrap();
    assert_eq!(store.delete_connection(&key).await.unwrap(), Some(saved));
    assert_eq!(store.delete_connection(&key).await.unwrap(), None);
    assert_eq!(store.connection(&key).await.unwrap(), None);
    assert!(store.connection(&kept).await.unwrap().is_some());
    // The key can be connected again from scratch.
    let again = store
        .save_grant(&grant(&ring, &key, "again", at(9)))
        .await
        .unwrap();
    assert!(again.replaced.is_none());
    assert_eq!(
        (again.connection.generation, again.connection.created_at),
        (1, at(9))
    );
}

pub(super) async fn connections_are_ordered_by_org_then_context_bytewise(store: Arc<dyn Store>) {
    let ring = ring();
    // Mixed case: a case-insensitive or locale collation would order these differently.
    let orgs = ["00Dab0000000001", "00DB00000000001", "00DAc0000000001"];
    let contexts = ["z", "api", "a-b", "a_b", "a.b", "a9"];
    let mut expected = Vec::new();
    for (index, org_raw) in orgs.iter().enumerate() {
        for context in contexts.iter().skip(index) {
            let key = key(org_raw, context);
            store
                .save_grant(&grant(&ring, &key, context, at(0)))
                .await
                .unwrap();
            expected.push(key);
        }
    }
    expected.sort();
    let listed: Vec<ConnectionKey> = store
        .connections()
        .await
        .unwrap()
        .into_iter()
        .map(|connection| connection.key)
        .collect();
    assert_eq!(listed, expected);
}

pub(super) async fn access_expiry_is_fenced_by_generation(store: Arc<dyn Store>) {
    let ring = ring();
    let key = key("00D000000000062", "api");
    store
        .save_grant(&grant(&ring, &key, "one", at(0)))
        .await
        .unwrap();
    let before = store.connection(&key).await.unwrap().unwrap();
    assert!(
        !store
            .set_access_expiry(&key, before.generation + 1, at(900))
            .await
            .unwrap()
    );
    assert_eq!(
        stored(&store, &key).await.tokens.access_expires_at,
        before.tokens.access_expires_at
    );
    assert!(
        store
            .set_access_expiry(&key, before.generation, at(900))
            .await
            .unwrap()
    );
    let after = stored(&store, &key).await;
    assert_eq!(after.tokens.access_expires_at, at(900));
    assert_eq!(
        (after.generation, after.updated_at),
        (before.generation, before.updated_at)
    );
}
