//! Conformance checks for saving grants: first grant, in-place replacement, separate contexts.

use super::fixtures::*;

pub(super) async fn first_grant_round_trips_every_field_at_generation_one(store: Arc<dyn Store>) {
    let ring = ring();
    let key = key("00D000000000062", "api");
    let write = grant(&ring, &key, "one", at(0));
    let saved = store.save_grant(&write).await.unwrap();
    assert!(saved.replaced.is_none());
    let connection = saved.connection;
    assert_eq!(connection.key, key);
    assert_eq!(connection.user_id, write.user_id);
    assert_eq!(connection.username, write.username);
    assert_eq!(connection.instance_url, write.instance_url);
    assert_eq!(connection.login_host, write.login_host);
    assert_eq!(connection.identity_url, write.identity_url);
    assert_eq!(connection.scopes, write.scopes);
    assert_eq!(connection.state, ConnectionState::Active);
    assert_eq!(connection.state_cause, None);
    assert!(connection.pkce && connection.signature_verified && !connection.rotation_seen);
    assert_eq!(
        (connection.created_at, connection.updated_at),
        (at(0), at(0))
    );
    assert_eq!(connection.last_refresh_at, None);
    assert_eq!(connection.generation, 1);
    assert_eq!(connection.tokens, write.tokens);
    assert_eq!(
        (connection.health, connection.health_detail.clone()),
        (ConnectionHealth::Ok, None)
    );
    assert_eq!(
        (connection.lease.clone(), connection.in_flight.clone()),
        (None, None)
    );
    assert_eq!(
        (
            connection.refresh_token_used_at,
            connection.heartbeat_due_at,
            connection.at_risk_level
        ),
        (at(0), write.heartbeat_due_at, 0)
    );
    assert_eq!(
        store.connection(&key).await.unwrap(),
        Some(connection.clone())
    );
    assert_eq!(
        store
            .connection(&self::key("00D000000000062", "other"))
            .await
            .unwrap(),
        None
    );

    // The other variants: no refresh token, no scopes, flags off, a cause, a refresh time.
    let bare_key = self::key("00D000000000063", "bare");
    let mut bare = grant(&ring, &bare_key, "bare", at(5));
    bare.tokens.refresh_token = None;
    bare.scopes = Vec::new();
    bare.pkce = false;
    bare.signature_verified = false;
    let bare_saved = store.save_grant(&bare).await.unwrap().connection;
    assert_eq!(bare_saved.tokens.refresh_token, None);
    assert!(bare_saved.scopes.is_empty() && !bare_saved.pkce && !bare_saved.signature_verified);
    let cause = "invalid_grant: expired access/refresh token";
    assert!(
        store
            .set_state(
                &bare_key,
                Some(1),
                ConnectionState::Revoked,
                Some(cause),
                at(6)
            )
            .await
            .unwrap()
    );
    let read = store.connection(&bare_key).await.unwrap().unwrap();
    assert_eq!(
        (read.state, read.state_cause.as_deref()),
        (ConnectionState::Revoked, Some(cause))
    );
    assert_eq!((read.updated_at, read.created_at), (at(6), at(5)));
    let refreshed = committed(
        store
            .commit_refresh(&key, 1, None, &refresh(&ring, &key, "r", true, at(7)))
            .await
            .unwrap(),
    );
    assert_eq!(refreshed.last_refresh_at, Some(at(7)));
    assert_eq!(
        (refreshed.refresh_token_used_at, refreshed.heartbeat_due_at),
        (at(7), at(7) + HEARTBEAT)
    );
    assert_eq!(store.connection(&key).await.unwrap(), Some(refreshed));

    // Every optional column set at once, read back through `connection` and `connections`.
    acquired(
        store
            .acquire_lease(&key, "instance-a", at(8), at(38))
            .await
            .unwrap(),
    );
    let mut record = flight("attempt-1", "instance-a", at(9));
    record.recovery = true;
    assert!(store.begin_rotation(&key, 2, None, &record).await.unwrap());
    assert!(
        store
            .set_health(&key, ConnectionHealth::Degraded, Some("503"), at(10))
            .await
            .unwrap()
    );
    assert!(store.set_heartbeat_due(&key, at(11)).await.unwrap());
    assert!(store.set_at_risk_level(&key, 3).await.unwrap());
    let full = store.connection(&key).await.unwrap().unwrap();
    assert_eq!((full.heartbeat_due_at, full.at_risk_level), (at(11), 3));
    assert_eq!(
        full.lease,
        Some(Lease {
            owner: "instance-a".to_string(),
            until: at(38)
        })
    );
    assert_eq!(full.in_flight, Some(record));
    assert_eq!(
        (full.health, full.health_detail.as_deref()),
        (ConnectionHealth::Degraded, Some("503"))
    );
    assert!(store.connections().await.unwrap().contains(&full));
}

pub(super) async fn second_grant_replaces_in_place_and_returns_old_tokens(store: Arc<dyn Store>) {
    let ring = ring();
    let key = key("00D000000000062", "api");
    let first = store
        .save_grant(&grant(&ring, &key, "one", at(0)))
        .await
        .unwrap()
        .connection;
    let refreshed = committed(
        store
            .commit_refresh(&key, 1, None, &refresh(&ring, &key, "r", true, at(10)))
            .await
            .unwrap(),
    );
    assert!(
        store
            .set_state(
                &key,
                None,
                ConnectionState::NeedsReauth,
                Some("invalid_grant"),
                at(20)
            )
            .await
            .unwrap()
    );

    let second = grant(&ring, &key, "two", at(30));
    let saved = store.save_grant(&second).await.unwrap();
    assert_eq!(saved.replaced, Some(refreshed.tokens));
    let connection = saved.connection;
    assert_eq!(
        (connection.id, connection.created_at),
        (first.id, first.created_at)
    );
    assert_eq!(connection.generation, 3);
    assert_eq!(connection.updated_at, at(30));
    assert_eq!(
        (connection.state, connection.state_cause.clone()),
        (ConnectionState::Active, None)
    );
    assert_eq!(connection.last_refresh_at, None);
    assert!(!connection.rotation_seen);
    assert_eq!(connection.tokens, second.tokens);
    assert_eq!(connection.username, second.username);
    assert_eq!(connection.instance_url, second.instance_url);
    assert_eq!(store.connection(&key).await.unwrap(), Some(connection));
    assert_eq!(store.connections().await.unwrap().len(), 1);
}

pub(super) async fn grant_for_another_context_is_a_separate_connection(store: Arc<dyn Store>) {
    let ring = ring();
    let api = key("00D000000000062", "api");
    let reports = key("00D000000000062", "reports");
    let first = store
        .save_grant(&grant(&ring, &api, "api", at(0)))
        .await
        .unwrap();
    let second = store
        .save_grant(&grant(&ring, &reports, "reports", at(1)))
        .await
        .unwrap();
    assert!(second.replaced.is_none());
    assert_ne!(first.connection.id, second.connection.id);
    assert_eq!(second.connection.generation, 1);
    assert_eq!(
        store.connection(&api).await.unwrap(),
        Some(first.connection)
    );
    assert_eq!(store.connections().await.unwrap().len(), 2);
}
