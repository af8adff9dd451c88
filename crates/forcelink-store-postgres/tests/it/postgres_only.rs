//! PostgreSQL-specific behaviour: instances starting together on one database migrate once,
//! racing instances commit one refresh and take one lease, and a version-1 database upgrades
//! in place. Must not rely on another test's database.

use chrono::{DateTime, Duration, TimeZone, Utc};
use forcelink_core::{
    CommitOutcome, ConnectionContext, ConnectionKey, GrantWrite, KeyRing, LoginHost, OrgId,
    RefreshWrite, SealedField, SealedRef, SealedTokens, Store, UserId,
};
use forcelink_core::{ConnectionHealth, LeaseOutcome};
use forcelink_store_postgres::PostgresStore;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{Connection, SqlSafeStr};

use crate::database::{server_url, with_database};

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(1_800_000_000_000).unwrap() + Duration::seconds(seconds)
}

fn api_key() -> ConnectionKey {
    ConnectionKey::new(
        OrgId::parse("00D000000000062").unwrap(),
        ConnectionContext::api(),
    )
}

fn seal(ring: &KeyRing, field: SealedField, plain: &str) -> forcelink_core::Sealed {
    ring.seal(
        plain.as_bytes(),
        &SealedRef::connection(&api_key(), field).aad(),
    )
}

fn grant(ring: &KeyRing) -> GrantWrite {
    GrantWrite {
        key: api_key(),
        user_id: UserId::parse("005000000000001").unwrap(),
        username: "admin@example.com".to_string(),
        instance_url: "https://acme.my.salesforce.com".to_string(),
        login_host: LoginHost::parse("https://login.salesforce.com").unwrap(),
        identity_url: "https://login.salesforce.com/id/00D000000000062EAA/005000000000001AAA"
            .to_string(),
        scopes: vec!["api".to_string()],
        pkce: true,
        signature_verified: true,
        tokens: SealedTokens {
            access_token: seal(ring, SealedField::AccessToken, "access"),
            access_issued_at: at(0),
            access_expires_at: at(7200),
            refresh_token: Some(seal(ring, SealedField::RefreshToken, "refresh")),
        },
        now: at(0),
        heartbeat_due_at: at(0) + Duration::days(14),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_together_migrate_once_and_race_one_commit() {
    let Some(server) = server_url() else { return };
    with_database(&server, |url| async move {
        let mut starting = Vec::new();
        for _ in 0..4 {
            let url = url.clone();
            starting.push(tokio::spawn(async move {
                PostgresStore::connect(&url, 3).await
            }));
        }
        let mut instances = Vec::new();
        for handle in starting {
            instances.push(handle.await.unwrap().unwrap());
        }
        let key = KeyRing::generate_key();
        let ring = std::sync::Arc::new(KeyRing::new([("k1", &key)], "k1").unwrap());
        instances[0].save_grant(&grant(&ring)).await.unwrap();
        let mut racing = Vec::new();
        for (index, store) in instances.iter().cycle().take(12).enumerate() {
            let (store, ring) = (store.clone(), std::sync::Arc::clone(&ring));
            racing.push(tokio::spawn(async move {
                let write = RefreshWrite {
                    access_token: seal(&ring, SealedField::AccessToken, &format!("a{index}")),
                    access_issued_at: at(1),
                    access_expires_at: at(7201),
                    refresh_token: None,
                    instance_url: "https://acme.my.salesforce.com".to_string(),
                    refreshed_at: at(1),
                    heartbeat_due_at: at(1) + Duration::days(14),
                };
                store
                    .commit_refresh(&api_key(), 1, None, &write)
                    .await
                    .unwrap()
            }));
        }
        let mut winners = 0;
        for handle in racing {
            if let CommitOutcome::Committed(_) = handle.await.unwrap() {
                winners += 1;
            }
        }
        assert_eq!(winners, 1);
        for store in &instances {
            store.ping().await.unwrap();
            store.close().await;
        }
    })
    .await;
}

#[tokio::test]
async fn concurrent_first_grants_for_one_key_make_one_connection() {
    let Some(server) = server_url() else { return };
    with_database(&server, |url| async move {
        let store = PostgresStore::connect(&url, 6).await.unwrap();
        let key = KeyRing::generate_key();
        let ring = std::sync::Arc::new(KeyRing::new([("k1", &key)], "k1").unwrap());
        let mut saving = Vec::new();
        for _ in 0..6 {
            let (store, ring) = (store.clone(), std::sync::Arc::clone(&ring));
            saving.push(tokio::spawn(async move {
                store.save_grant(&grant(&ring)).await
            }));
        }
        let mut generations = Vec::new();
        for handle in saving {
            generations.push(handle.await.unwrap().unwrap().connection.generation);
        }
        generations.sort_unstable();
        assert_eq!(generations, (1..=6).collect::<Vec<i64>>());
        assert_eq!(store.connections().await.unwrap().len(), 1);
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn instances_racing_for_one_lease_have_one_holder() {
    let Some(server) = server_url() else { return };
    with_database(&server, |url| async move {
        let mut instances = Vec::new();
        for _ in 0..3 {
            instances.push(PostgresStore::connect(&url, 4).await.unwrap());
        }
        let key = KeyRing::generate_key();
        let ring = KeyRing::new([("k1", &key)], "k1").unwrap();
        instances[0].save_grant(&grant(&ring)).await.unwrap();
        let mut racing = Vec::new();
        for (index, store) in instances.iter().cycle().take(12).enumerate() {
            let store = store.clone();
            racing.push(tokio::spawn(async move {
                let owner = format!("instance-{index}");
                store
                    .acquire_lease(&api_key(), &owner, at(1), at(31))
                    .await
                    .unwrap()
            }));
        }
        let mut holders = 0;
        for handle in racing {
            if let LeaseOutcome::Acquired(_) = handle.await.unwrap() {
                holders += 1;
            }
        }
        assert_eq!(holders, 1);
        for store in &instances {
            store.close().await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_version_one_database_upgrades_in_place_keeping_its_connections() {
    let Some(server) = server_url() else { return };
    with_database(&server, |url| async move {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        let version_one = Migrator::with_migrations(vec![Migration::new(
            1,
            std::borrow::Cow::Borrowed("init"),
            MigrationType::Simple,
            include_str!("../../migrations/0001_init.sql").into_sql_str(),
            false,
        )]);
        version_one.run(&pool).await.unwrap();
        sqlx::query(
            "INSERT INTO connections (id, org_id, context, user_id, username, instance_url, \
             login_host, identity_url, scopes, state, pkce, rotation_seen, signature_verified, \
             created_at, updated_at, generation, access_token, access_issued_at, \
             access_expires_at, refresh_token) VALUES ('6f1c1d4e-2a57-4c1b-9a53-0d6f4b8f2e11', \
             '00D000000000062EAA', 'api', '005000000000001AAA', 'old@example.com', \
             'https://acme.my.salesforce.com', 'https://login.salesforce.com', \
             'https://login.salesforce.com/id/x/y', 'api', 'active', TRUE, TRUE, FALSE, \
             '2027-01-01T00:00:00Z', '2027-01-01T00:00:00Z', 4, '\\x00', \
             '2027-01-01T00:00:00Z', '2027-01-01T02:00:00Z', '\\x01')",
        )
        .execute(&pool)
        .await
        .unwrap();
        // A refreshed connection: its heartbeat backfills from the last refresh, not creation.
        sqlx::query(
            "INSERT INTO connections (id, org_id, context, user_id, username, instance_url, \
             login_host, identity_url, scopes, state, pkce, rotation_seen, signature_verified, \
             created_at, updated_at, last_refresh_at, generation, access_token, \
             access_issued_at, access_expires_at, refresh_token) VALUES \
             ('6f1c1d4e-2a57-4c1b-9a53-0d6f4b8f2e12', '00D000000000062EAA', 'reports', \
             '005000000000001AAA', 'old@example.com', 'https://acme.my.salesforce.com', \
             'https://login.salesforce.com', 'https://login.salesforce.com/id/x/y', 'api', \
             'active', TRUE, TRUE, FALSE, '2027-01-01T00:00:00Z', '2027-01-02T00:00:00Z', \
             '2027-01-02T00:00:00Z', 2, '\\x00', '2027-01-02T00:00:00Z', \
             '2027-01-02T02:00:00Z', '\\x01')",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;

        let store = PostgresStore::connect(&url, 2).await.unwrap();
        store.ping().await.unwrap();
        let upgraded = store.connection(&api_key()).await.unwrap().unwrap();
        assert_eq!(upgraded.generation, 4);
        assert_eq!(
            (upgraded.health, upgraded.health_detail.clone()),
            (ConnectionHealth::Ok, None)
        );
        assert_eq!((upgraded.lease, upgraded.in_flight), (None, None));
        let created = Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(
            (
                upgraded.refresh_token_used_at,
                upgraded.heartbeat_due_at,
                upgraded.at_risk_level
            ),
            (created, created, 0)
        );
        let reports = ConnectionKey::new(
            api_key().org_id,
            ConnectionContext::parse("reports").unwrap(),
        );
        let refreshed = store.connection(&reports).await.unwrap().unwrap();
        let last_refresh = Utc.with_ymd_and_hms(2027, 1, 2, 0, 0, 0).unwrap();
        assert_eq!(
            (refreshed.refresh_token_used_at, refreshed.heartbeat_due_at),
            (last_refresh, last_refresh)
        );
        // Both come due at once.
        let claimed = store
            .claim_due_heartbeats("a", at(0), at(30), 10)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 2);
        let outcome = store
            .acquire_lease(&api_key(), "a", at(0), at(30))
            .await
            .unwrap();
        assert!(matches!(outcome, LeaseOutcome::Acquired(_)), "{outcome:?}");
        store.close().await;
    })
    .await;
}

/// A database that a newer build migrated past what this build knows is refused with a message
/// that says so and what to run.
#[tokio::test]
async fn a_database_migrated_by_a_newer_build_is_refused() {
    let Some(server) = server_url() else { return };
    with_database(&server, |url| async move {
        let key = KeyRing::generate_key();
        let ring = KeyRing::new([("k1", &key)], "k1").unwrap();
        let store = PostgresStore::connect(&url, 2).await.unwrap();
        store.save_grant(&grant(&ring)).await.unwrap();
        let mut raw = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
             execution_time) VALUES (9999, 'from the future', true, '\\x00', 0)",
        )
        .execute(&mut raw)
        .await
        .unwrap();
        let error = PostgresStore::connect(&url, 2)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("schema is at version 9999, newer than this build")
                && error.contains("run that version"),
            "{error}"
        );
        assert_eq!(store.connections().await.unwrap().len(), 1);
    })
    .await;
}

/// Connected as found, an empty database stays empty: `ping` reports the schema behind this
/// build, and no migration runs.
#[tokio::test]
async fn connecting_as_found_migrates_nothing() {
    let Some(server) = server_url() else { return };
    with_database(&server, |url| async move {
        let store = PostgresStore::connect_as_found(&url, 2).await.unwrap();
        let error = store.ping().await.unwrap_err().to_string();
        assert!(error.contains("schema is at version 0"), "{error}");
        let mut raw = sqlx::PgConnection::connect(&url).await.unwrap();
        let tables: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public'",
        )
        .fetch_one(&mut raw)
        .await
        .unwrap();
        assert_eq!(tables, 0, "connecting as found created tables");
    })
    .await;
}
