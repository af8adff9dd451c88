//! SQLite-specific behaviour: two pools on one file (as two processes), idempotent
//! migrations, upgrading a version-1 file in place, WAL journal, plaintext never on disk,
//! corrupt rows reported by column.
//! Must not rely on another test's file.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use chrono::{DateTime, Duration, TimeZone, Utc};
use forcelink_core::{
    CommitOutcome, ConnectionContext, ConnectionKey, GrantWrite, KeyRing, LoginHost, OrgId,
    RefreshWrite, SealedField, SealedRef, SealedTokens, Store, StoreError, UserId,
};
use forcelink_core::{ConnectionHealth, LeaseOutcome};
use forcelink_store_sqlite::SqliteStore;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, SqlSafeStr};

fn ring() -> KeyRing {
    let key = KeyRing::generate_key();
    KeyRing::new([("k1", &key)], "k1").unwrap()
}

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

fn grant(ring: &KeyRing, access: &str, refresh: &str) -> GrantWrite {
    GrantWrite {
        key: api_key(),
        user_id: UserId::parse("005000000000001").unwrap(),
        username: "visible-username@example.com".to_string(),
        instance_url: "https://acme.my.salesforce.com".to_string(),
        login_host: LoginHost::parse("https://login.salesforce.com").unwrap(),
        identity_url: "https://login.salesforce.com/id/00D000000000062EAA/005000000000001AAA"
            .to_string(),
        scopes: vec!["api".to_string(), "refresh_token".to_string()],
        pkce: true,
        signature_verified: false,
        tokens: SealedTokens {
            access_token: seal(ring, SealedField::AccessToken, access),
            access_issued_at: at(0),
            access_expires_at: at(7200),
            refresh_token: Some(seal(ring, SealedField::RefreshToken, refresh)),
        },
        now: at(0),
        heartbeat_due_at: at(0) + Duration::days(14),
    }
}

fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("forcelink.db");
    (directory, path)
}

async fn raw_connection(path: &Path) -> sqlx::SqliteConnection {
    SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pools_on_one_file_racing_commit_refresh_have_one_winner() {
    let (_directory, path) = temp_db();
    let first = SqliteStore::open(&path).await.unwrap();
    let second = SqliteStore::open(&path).await.unwrap();
    let ring = std::sync::Arc::new(ring());
    first
        .save_grant(&grant(&ring, "access-0", "refresh-0"))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for index in 0..10 {
        let store = if index % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        let ring = std::sync::Arc::clone(&ring);
        tasks.push(tokio::spawn(async move {
            let write = RefreshWrite {
                access_token: seal(&ring, SealedField::AccessToken, &format!("access-{index}")),
                access_issued_at: at(index),
                access_expires_at: at(index + 7200),
                refresh_token: Some(seal(&ring, SealedField::RefreshToken, "rotated")),
                instance_url: "https://acme.my.salesforce.com".to_string(),
                refreshed_at: at(index),
                heartbeat_due_at: at(index) + Duration::days(14),
            };
            store
                .commit_refresh(&api_key(), 1, None, &write)
                .await
                .unwrap()
        }));
    }
    let mut winners = 0;
    for task in tasks {
        match task.await.unwrap() {
            CommitOutcome::Committed(connection) => {
                winners += 1;
                assert_eq!(connection.generation, 2);
            }
            CommitOutcome::Stale { current_generation } => assert_eq!(current_generation, 2),
            CommitOutcome::Missing => panic!("connection vanished"),
        }
    }
    assert_eq!(winners, 1);
    // A grant through one pool replaces what the other wrote, atomically.
    let saved = second
        .save_grant(&grant(&ring, "access-9", "refresh-9"))
        .await
        .unwrap();
    assert_eq!(saved.connection.generation, 3);
    assert!(saved.replaced.is_some());
}

#[tokio::test]
async fn opening_twice_runs_migrations_once_and_keeps_data() {
    let (_directory, path) = temp_db();
    let ring = ring();
    let first = SqliteStore::open(&path).await.unwrap();
    first.save_grant(&grant(&ring, "a", "r")).await.unwrap();
    first.ping().await.unwrap();
    let again = SqliteStore::open(&path).await.unwrap();
    again.ping().await.unwrap();
    assert_eq!(again.connections().await.unwrap().len(), 1);
    let url = format!("sqlite://{}", path.display());
    let by_url = SqliteStore::open_url(&url).await.unwrap();
    assert_eq!(by_url.connections().await.unwrap().len(), 1);
    let mut raw = raw_connection(&path).await;
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&mut raw)
        .await
        .unwrap();
    // Counted from the files, so adding a migration does not touch this test.
    let files = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations"))
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .is_ok_and(|entry| entry.path().extension().is_some_and(|ext| ext == "sql"))
        })
        .count();
    assert_eq!(
        applied,
        i64::try_from(files).unwrap(),
        "each migration applied exactly once"
    );
}

/// A file that a newer build migrated past what this build knows is refused with a message
/// that says so and what to run, and is left as it was.
#[tokio::test]
async fn a_file_migrated_by_a_newer_build_is_refused_and_left_alone() {
    let (_directory, path) = temp_db();
    let ring = ring();
    let store = SqliteStore::open(&path).await.unwrap();
    store.save_grant(&grant(&ring, "a", "r")).await.unwrap();
    drop(store);
    let mut raw = raw_connection(&path).await;
    // The newest real migration is taken out of the record too, so that an open which ran
    // migrations would apply it again.
    let (latest, description, checksum): (i64, String, Vec<u8>) = sqlx::query_as(
        "SELECT version, description, checksum FROM _sqlx_migrations \
         ORDER BY version DESC LIMIT 1",
    )
    .fetch_one(&mut raw)
    .await
    .unwrap();
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = ?1")
        .bind(latest)
        .execute(&mut raw)
        .await
        .unwrap();
    let record = |version: i64, description: &str, checksum: &[u8]| {
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
             execution_time) VALUES (?1, ?2, 1, ?3, 0)",
        )
        .bind(version)
        .bind(description.to_string())
        .bind(checksum.to_vec())
    };
    record(9999, "from the future", &[0])
        .execute(&mut raw)
        .await
        .unwrap();
    let error = SqliteStore::open(&path).await.unwrap_err().to_string();
    assert!(
        error.contains("schema is at version 9999, newer than this build")
            && error.contains("run that version"),
        "{error}"
    );
    let reapplied: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE version = ?1")
            .bind(latest)
            .fetch_one(&mut raw)
            .await
            .unwrap();
    assert_eq!(reapplied, 0, "the refused open applied a migration");
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM connections")
        .fetch_one(&mut raw)
        .await
        .unwrap();
    assert_eq!(rows, 1);
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 9999")
        .execute(&mut raw)
        .await
        .unwrap();
    record(latest, &description, &checksum)
        .execute(&mut raw)
        .await
        .unwrap();
    let reopened = SqliteStore::open(&path).await.unwrap();
    assert_eq!(reopened.connections().await.unwrap().len(), 1);
}

/// Opened as found, a file is left byte for byte as it was: not switched to WAL, nothing
/// created, and `ping` says its schema is behind.
#[tokio::test]
async fn a_file_opened_as_found_is_left_as_it_was() {
    let (_directory, path) = temp_db();
    let url = format!("sqlite:{}?mode=rwc", path.display());
    let mut raw = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("CREATE TABLE elsewhere (id INTEGER PRIMARY KEY)")
        .execute(&mut raw)
        .await
        .unwrap();
    raw.close().await.unwrap();
    let before = std::fs::read(&path).unwrap();
    let store = SqliteStore::open_as_found(&path).await.unwrap();
    let error = store.ping().await.unwrap_err().to_string();
    assert!(error.contains("schema is at version 0"), "{error}");
    drop(store);
    assert_eq!(std::fs::read(&path).unwrap(), before, "the file changed");
    let wal = path.with_extension("db-wal");
    assert!(!wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0);
    let missing = path.with_file_name("missing.db");
    assert!(SqliteStore::open_as_found(&missing).await.is_err());
    assert!(!missing.exists(), "opening as found created a file");
}

#[tokio::test]
async fn database_is_in_wal_mode_with_foreign_keys_on() {
    let (_directory, path) = temp_db();
    let _store = SqliteStore::open(&path).await.unwrap();
    let mut raw = raw_connection(&path).await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut raw)
        .await
        .unwrap();
    assert_eq!(mode.to_lowercase(), "wal");
    raw.close().await.unwrap();
}

#[tokio::test]
async fn token_plaintext_never_reaches_the_database_files() {
    let (directory, path) = temp_db();
    let ring = ring();
    let store = SqliteStore::open(&path).await.unwrap();
    store
        .save_grant(&grant(
            &ring,
            "ACCESS-PLAINTEXT-7f3a",
            "REFRESH-PLAINTEXT-9c1e",
        ))
        .await
        .unwrap();
    drop(store);
    let mut everything = Vec::new();
    for entry in std::fs::read_dir(directory.path()).unwrap() {
        everything.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    let contains = |needle: &str| {
        everything
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    };
    assert!(
        contains("visible-username@example.com"),
        "read the wrong files"
    );
    assert!(!contains("ACCESS-PLAINTEXT-7f3a"));
    assert!(!contains("REFRESH-PLAINTEXT-9c1e"));
}

#[tokio::test]
async fn unreadable_rows_are_corrupt_errors_naming_the_column() {
    let (_directory, path) = temp_db();
    let ring = ring();
    let store = SqliteStore::open(&path).await.unwrap();
    store.save_grant(&grant(&ring, "a", "r")).await.unwrap();
    let mut raw = raw_connection(&path).await;
    for (statement, column) in [
        ("UPDATE connections SET state = 'exploded'", "state"),
        (
            "UPDATE connections SET state = 'active', login_host = 'not a url'",
            "login_host",
        ),
        (
            "UPDATE connections SET login_host = 'https://x.example', health = 'sick'",
            "health",
        ),
        (
            "UPDATE connections SET health = 'ok'; \
             INSERT INTO connection_leases (org_id, context, lease_owner) \
             SELECT org_id, context, 'a' FROM connections",
            "lease_until",
        ),
        (
            "UPDATE connection_leases SET lease_owner = NULL, inflight_attempt = 'x'",
            "inflight_owner",
        ),
        (
            "DELETE FROM connection_leases; UPDATE connections SET org_id = 'zzz'",
            "org_id",
        ),
    ] {
        sqlx::query(statement).execute(&mut raw).await.unwrap();
        match store.connections().await {
            Err(StoreError::Corrupt(message)) => assert!(message.contains(column), "{message}"),
            other => panic!("expected corrupt {column}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_version_one_file_upgrades_in_place_keeping_its_connections() {
    let (_directory, path) = temp_db();
    let options = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
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
         'https://login.salesforce.com/id/x/y', 'api', 'active', 1, 1, 0, 0, 0, 4, x'00', \
         0, 7200000000, x'01')",
    )
    .execute(&pool)
    .await
    .unwrap();
    // A refreshed connection: its heartbeat backfills from the last refresh, not creation.
    sqlx::query(
        "INSERT INTO connections (id, org_id, context, user_id, username, instance_url, \
         login_host, identity_url, scopes, state, pkce, rotation_seen, signature_verified, \
         created_at, updated_at, last_refresh_at, generation, access_token, access_issued_at, \
         access_expires_at, refresh_token) VALUES ('6f1c1d4e-2a57-4c1b-9a53-0d6f4b8f2e12', \
         '00D000000000062EAA', 'reports', '005000000000001AAA', 'old@example.com', \
         'https://acme.my.salesforce.com', 'https://login.salesforce.com', \
         'https://login.salesforce.com/id/x/y', 'api', 'active', 1, 1, 0, 0, 5000000, \
         5000000, 2, x'00', 5000000, 7205000000, x'01')",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let store = SqliteStore::open(&path).await.unwrap();
    store.ping().await.unwrap();
    let upgraded = store.connection(&api_key()).await.unwrap().unwrap();
    assert_eq!(upgraded.generation, 4);
    assert_eq!(
        (upgraded.health, upgraded.health_detail.clone()),
        (ConnectionHealth::Ok, None)
    );
    assert_eq!((upgraded.lease, upgraded.in_flight), (None, None));
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    assert_eq!(
        (
            upgraded.refresh_token_used_at,
            upgraded.heartbeat_due_at,
            upgraded.at_risk_level
        ),
        (epoch, epoch, 0)
    );
    let reports = ConnectionKey::new(
        api_key().org_id,
        ConnectionContext::parse("reports").unwrap(),
    );
    let refreshed = store.connection(&reports).await.unwrap().unwrap();
    let five = epoch + Duration::seconds(5);
    assert_eq!(
        (refreshed.refresh_token_used_at, refreshed.heartbeat_due_at),
        (five, five)
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
}

/// Migrations 0001 to 0007, as a file written by a build before leases had a table of their own.
fn migrations_up_to_seven() -> Migrator {
    let files = [
        include_str!("../../migrations/0001_init.sql"),
        include_str!("../../migrations/0002_rotation.sql"),
        include_str!("../../migrations/0003_heartbeat.sql"),
        include_str!("../../migrations/0004_lost_rotations.sql"),
        include_str!("../../migrations/0005_agent_keys.sql"),
        include_str!("../../migrations/0006_webhooks.sql"),
        include_str!("../../migrations/0007_lineage_index.sql"),
    ];
    let names = [
        "init",
        "rotation",
        "heartbeat",
        "lost_rotations",
        "agent_keys",
        "webhooks",
        "lineage_index",
    ];
    Migrator::with_migrations(
        files
            .into_iter()
            .zip(names)
            .zip(1_i64..)
            .map(|((sql, name), version)| {
                Migration::new(
                    version,
                    std::borrow::Cow::Borrowed(name),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

#[tokio::test]
async fn a_version_seven_file_keeps_its_leases_and_rotations_in_flight() {
    let (_directory, path) = temp_db();
    let options = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    migrations_up_to_seven().run(&pool).await.unwrap();
    let insert = |id: &str, context: &str, lease: &str, in_flight: &str| {
        format!(
            "INSERT INTO connections (id, org_id, context, user_id, username, instance_url, \
             login_host, identity_url, scopes, state, pkce, rotation_seen, signature_verified, \
             created_at, updated_at, generation, access_token, access_issued_at, \
             access_expires_at, refresh_token, lease_owner, lease_until, inflight_attempt, \
             inflight_owner, inflight_started_at, inflight_old_hash, inflight_recovery) \
             VALUES ('{id}', '00D000000000062EAA', '{context}', '005000000000001AAA', \
             'old@example.com', 'https://acme.my.salesforce.com', \
             'https://login.salesforce.com', 'https://login.salesforce.com/id/x/y', 'api', \
             'active', 1, 1, 0, 0, 0, 3, x'00', 0, 7200000000, x'01', {lease}, {in_flight})"
        )
    };
    for statement in [
        // Leased and rotating (a crash left both behind).
        insert(
            "6f1c1d4e-2a57-4c1b-9a53-0d6f4b8f2e11",
            "api",
            "'worker-1', 30000000",
            "'attempt-1', 'worker-1', 1000000, 'old-hash', 1",
        ),
        // Only leased.
        insert(
            "6f1c1d4e-2a57-4c1b-9a53-0d6f4b8f2e12",
            "reports",
            "'worker-2', 40000000",
            "NULL, NULL, NULL, NULL, 0",
        ),
        // Neither.
        insert(
            "6f1c1d4e-2a57-4c1b-9a53-0d6f4b8f2e13",
            "idle",
            "NULL, NULL",
            "NULL, NULL, NULL, NULL, 0",
        ),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;

    let store = SqliteStore::open(&path).await.unwrap();
    store.ping().await.unwrap();
    let key = |context: &str| {
        ConnectionKey::new(api_key().org_id, ConnectionContext::parse(context).unwrap())
    };
    // The file's times are microseconds since the epoch.
    let second = |seconds: i64| DateTime::<Utc>::UNIX_EPOCH + Duration::seconds(seconds);
    let both = store.connection(&key("api")).await.unwrap().unwrap();
    assert_eq!(
        both.lease,
        Some(forcelink_core::Lease {
            owner: "worker-1".into(),
            until: second(30)
        })
    );
    let in_flight = both.in_flight.clone().unwrap();
    assert_eq!(
        (
            in_flight.attempt_id.as_str(),
            in_flight.owner.as_str(),
            in_flight.started_at,
            in_flight.old_refresh_hash.as_str(),
            in_flight.recovery
        ),
        ("attempt-1", "worker-1", second(1), "old-hash", true)
    );
    let leased = store.connection(&key("reports")).await.unwrap().unwrap();
    assert_eq!(
        leased.lease.map(|lease| lease.owner),
        Some("worker-2".into())
    );
    assert_eq!(leased.in_flight, None);
    let idle = store.connection(&key("idle")).await.unwrap().unwrap();
    assert_eq!((idle.lease, idle.in_flight), (None, None));
    // The rotation left in flight is still found to be settled.
    let lost = store.lost_rotations(second(2), 10).await.unwrap();
    assert_eq!(
        lost.iter()
            .map(|c| c.key.context.as_str())
            .collect::<Vec<_>>(),
        ["api"]
    );
    // Only connections holding something have a lease row.
    let mut raw = raw_connection(&path).await;
    let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM connection_leases")
        .fetch_one(&mut raw)
        .await
        .unwrap();
    assert_eq!(rows, 2);
    // Releasing the only-leased one's lease leaves it nothing, so its row goes.
    assert!(
        store
            .release_lease(&key("reports"), "worker-2")
            .await
            .unwrap()
    );
    let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM connection_leases")
        .fetch_one(&mut raw)
        .await
        .unwrap();
    assert_eq!(rows, 1);
    raw.close().await.unwrap();
}

#[tokio::test]
async fn heartbeat_queries_read_their_indexes() {
    let (_directory, path) = temp_db();
    let _store = SqliteStore::open(&path).await.unwrap();
    let mut raw = raw_connection(&path).await;
    for (statement, index) in [
        (
            "EXPLAIN QUERY PLAN SELECT c.rowid FROM connections c LEFT JOIN connection_leases l \
             ON l.org_id = c.org_id AND l.context = c.context \
             WHERE c.state = 'active' AND c.heartbeat_due_at <= ?1 \
             AND (l.lease_owner IS NULL OR l.lease_until IS NULL OR l.lease_until <= ?1) \
             ORDER BY c.heartbeat_due_at LIMIT ?2",
            "connections_by_heartbeat_due",
        ),
        (
            "EXPLAIN QUERY PLAN SELECT id FROM connections \
             WHERE state = 'active' AND refresh_token_used_at < ?1 \
             ORDER BY refresh_token_used_at LIMIT ?2",
            "connections_by_refresh_token_use",
        ),
    ] {
        assert_reads_index_in_order(&mut raw, statement, index).await;
    }
    raw.close().await.unwrap();
}

/// `statement` (an `EXPLAIN QUERY PLAN`) uses `index` and reads it in order: no sort.
async fn assert_reads_index_in_order(
    raw: &mut sqlx::SqliteConnection,
    statement: &'static str,
    index: &str,
) {
    let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(statement)
        .fetch_all(&mut *raw)
        .await
        .unwrap();
    let details: Vec<&str> = plan.iter().map(|row| row.3.as_str()).collect();
    assert!(
        details.iter().any(|detail| detail.contains(index)),
        "{index} not used: {details:?}"
    );
    assert!(
        !details.iter().any(|detail| detail.contains("TEMP B-TREE")),
        "sorts instead of reading the index in order: {details:?}"
    );
}
