//! Conformance checks for what the heartbeat reports: refresh tokens idle for too long (least
//! recently used first, active connections only), the at-risk level raised per connection,
//! and how many connections are in each state.

use super::fixtures::*;

/// A first grant for `key` whose refresh token was last used at `used`.
async fn used_at(
    store: &Arc<dyn Store>,
    ring: &KeyRing,
    key: &ConnectionKey,
    used: DateTime<Utc>,
) -> Connection {
    store
        .save_grant(&grant(ring, key, "one", used))
        .await
        .unwrap()
        .connection
}

fn keys_of(connections: &[Connection]) -> Vec<ConnectionKey> {
    connections
        .iter()
        .map(|connection| connection.key.clone())
        .collect()
}

pub(super) async fn idle_refresh_tokens_are_active_and_least_recently_used_first(
    store: Arc<dyn Store>,
) {
    let ring = ring();
    let newest = key("00D000000000061", "api");
    let oldest = key("00D000000000062", "api");
    let middle = key("00D000000000063", "api");
    let dead = key("00D000000000064", "api");
    let revoked = key("00D000000000065", "api");
    let refreshed = key("00D000000000066", "api");
    used_at(&store, &ring, &newest, at(30)).await;
    let first = used_at(&store, &ring, &oldest, at(0)).await;
    used_at(&store, &ring, &middle, at(10)).await;
    used_at(&store, &ring, &dead, at(5)).await;
    used_at(&store, &ring, &revoked, at(6)).await;
    used_at(&store, &ring, &refreshed, at(1)).await;
    assert!(
        store
            .set_state(&dead, None, ConnectionState::NeedsReauth, None, at(7))
            .await
            .unwrap()
    );
    assert!(
        store
            .set_state(&revoked, None, ConnectionState::Revoked, None, at(7))
            .await
            .unwrap()
    );
    committed(
        store
            .commit_refresh(
                &refreshed,
                1,
                None,
                &refresh(&ring, &refreshed, "r", false, at(40)),
            )
            .await
            .unwrap(),
    );

    let idle = store.idle_refresh_tokens(at(31), 10).await.unwrap();
    assert_eq!(
        keys_of(&idle),
        vec![oldest.clone(), middle.clone(), newest.clone()]
    );
    assert_eq!(idle[0], first);
    // `used_before` is exclusive, and `limit` keeps the least recently used.
    assert_eq!(
        keys_of(&store.idle_refresh_tokens(at(30), 10).await.unwrap()),
        vec![oldest.clone(), middle.clone()]
    );
    assert_eq!(
        keys_of(&store.idle_refresh_tokens(at(31), 2).await.unwrap()),
        vec![oldest.clone(), middle.clone()]
    );
    assert!(
        store
            .idle_refresh_tokens(at(0), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .idle_refresh_tokens(at(41), 0)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        keys_of(&store.idle_refresh_tokens(at(41), 10).await.unwrap()),
        vec![oldest, middle, newest, refreshed]
    );
}

pub(super) async fn set_at_risk_level_reports_whether_it_changed(store: Arc<dyn Store>) {
    let ring = ring();
    let key = key("00D000000000062", "api");
    let saved = connected(&store, &ring, &key).await;
    assert_eq!(saved.at_risk_level, 0);
    assert!(!store.set_at_risk_level(&key, 0).await.unwrap());
    assert!(store.set_at_risk_level(&key, 7).await.unwrap());
    assert!(!store.set_at_risk_level(&key, 7).await.unwrap());
    let raised = stored(&store, &key).await;
    assert_eq!(raised.at_risk_level, 7);
    // Only the level moved.
    assert_eq!(
        Connection {
            at_risk_level: 0,
            ..raised
        },
        saved
    );
    assert!(store.set_at_risk_level(&key, 3).await.unwrap());
    assert!(store.set_at_risk_level(&key, 1).await.unwrap());
    assert_eq!(stored(&store, &key).await.at_risk_level, 1);
    assert!(store.set_at_risk_level(&key, 0).await.unwrap());
    assert_eq!(stored(&store, &key).await.at_risk_level, 0);

    let missing = self::key("00D000000000063", "api");
    assert!(!store.set_at_risk_level(&missing, 7).await.unwrap());
}

pub(super) async fn count_by_state_counts_each_present_state(store: Arc<dyn Store>) {
    assert!(store.count_by_state().await.unwrap().is_empty());
    let ring = ring();
    let states = [
        ("00D000000000061", ConnectionState::Revoked),
        ("00D000000000062", ConnectionState::Active),
        ("00D000000000063", ConnectionState::NeedsReauth),
        ("00D000000000064", ConnectionState::Active),
        ("00D000000000065", ConnectionState::NeedsReauth),
        ("00D000000000066", ConnectionState::Active),
    ];
    for (org_raw, state) in states {
        let key = key(org_raw, "api");
        connected(&store, &ring, &key).await;
        if state != ConnectionState::Active {
            assert!(
                store
                    .set_state(&key, None, state, None, at(1))
                    .await
                    .unwrap()
            );
        }
    }
    assert_eq!(
        store.count_by_state().await.unwrap(),
        vec![
            (ConnectionState::Active, 3),
            (ConnectionState::NeedsReauth, 2),
            (ConnectionState::Revoked, 1),
        ]
    );
    // A state with no connections left is omitted.
    let revoked = key("00D000000000061", "api");
    assert!(store.delete_connection(&revoked).await.unwrap().is_some());
    let reauth = key("00D000000000063", "api");
    assert!(
        store
            .set_state(&reauth, None, ConnectionState::Active, None, at(2))
            .await
            .unwrap()
    );
    assert_eq!(
        store.count_by_state().await.unwrap(),
        vec![
            (ConnectionState::Active, 4),
            (ConnectionState::NeedsReauth, 1)
        ]
    );
}
