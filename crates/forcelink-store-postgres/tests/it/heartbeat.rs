//! PostgreSQL-specific heartbeat behaviour: a claim skips rows another transaction holds
//! instead of waiting for them, instances claiming at once on one database never share a
//! connection, and the claim and idle queries can read their partial indexes. Must not rely
//! on another test's database.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use forcelink_core::{
    ConnectionContext, ConnectionKey, GrantWrite, KeyRing, LoginHost, OrgId, SealedField,
    SealedRef, SealedTokens, Store, UserId,
};
use forcelink_store_postgres::{PostgresStore, WEBHOOK_BACKLOG_SQL};
use sqlx::{AssertSqlSafe, Connection};

use crate::database::{server_url, with_database};

/// How long a claim may take before the test calls it blocked.
const NOT_BLOCKED: std::time::Duration = std::time::Duration::from_secs(10);

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(1_800_000_000_000).unwrap() + Duration::seconds(seconds)
}

fn key(index: usize) -> ConnectionKey {
    ConnectionKey::new(
        OrgId::parse(&format!("00D{:012}", 100 + index)).unwrap(),
        ConnectionContext::api(),
    )
}

/// A grant for `key` made at `at(0)`, due for its heartbeat at `due`.
fn grant(ring: &KeyRing, key: &ConnectionKey, due: DateTime<Utc>) -> GrantWrite {
    let seal = |field: SealedField, plain: &str| {
        ring.seal(plain.as_bytes(), &SealedRef::connection(key, field).aad())
    };
    GrantWrite {
        key: key.clone(),
        user_id: UserId::parse("005000000000001").unwrap(),
        username: "admin@example.com".to_string(),
        instance_url: "https://acme.my.salesforce.com".to_string(),
        login_host: LoginHost::parse("https://login.salesforce.com").unwrap(),
        identity_url: format!(
            "https://login.salesforce.com/id/{}/005000000000001AAA",
            key.org_id
        ),
        scopes: vec!["api".to_string(), "refresh_token".to_string()],
        pkce: true,
        signature_verified: true,
        tokens: SealedTokens {
            access_token: seal(SealedField::AccessToken, "access"),
            access_issued_at: at(0),
            access_expires_at: at(7200),
            refresh_token: Some(seal(SealedField::RefreshToken, "refresh")),
        },
        now: at(0),
        heartbeat_due_at: due,
    }
}

fn ring() -> KeyRing {
    let key = KeyRing::generate_key();
    KeyRing::new([("k1", &key)], "k1").unwrap()
}

#[tokio::test]
async fn a_claim_skips_rows_locked_elsewhere_instead_of_waiting() {
    let Some(server) = server_url() else { return };
    with_database(&server, |url| async move {
        let store = PostgresStore::connect(&url, 2).await.unwrap();
        let ring = ring();
        for index in 0..2 {
            store
                .save_grant(&grant(&ring, &key(index), at(index as i64)))
                .await
                .unwrap();
        }
        // Another instance is in the middle of claiming the oldest due connection.
        let mut other = sqlx::PgConnection::connect(&url).await.unwrap();
        let mut transaction = other.begin().await.unwrap();
        sqlx::query("SELECT id FROM connections WHERE org_id = $1 FOR UPDATE")
            .bind(key(0).org_id.as_str())
            .execute(&mut *transaction)
            .await
            .unwrap();
        let claim = store.claim_due_heartbeats("beat", at(100), at(130), 10);
        let claimed = tokio::time::timeout(NOT_BLOCKED, claim)
            .await
            .expect("the claim waited for a locked row")
            .unwrap();
        let keys: Vec<ConnectionKey> = claimed.into_iter().map(|c| c.key).collect();
        assert_eq!(keys, vec![key(1)]);
        transaction.rollback().await.unwrap();
        other.close().await.unwrap();
        let claimed = store
            .claim_due_heartbeats("beat", at(100), at(130), 10)
            .await
            .unwrap();
        let keys: Vec<ConnectionKey> = claimed.into_iter().map(|c| c.key).collect();
        assert_eq!(keys, vec![key(0)]);
        store.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_claiming_at_once_take_every_due_connection_once() {
    let Some(server) = server_url() else { return };
    with_database(&server, |url| async move {
        let mut instances = Vec::new();
        for _ in 0..3 {
            instances.push(PostgresStore::connect(&url, 3).await.unwrap());
        }
        let ring = ring();
        for index in 0..90 {
            instances[0]
                .save_grant(&grant(&ring, &key(index), at(index as i64)))
                .await
                .unwrap();
        }
        let claimers: Vec<_> = instances
            .iter()
            .cycle()
            .take(9)
            .enumerate()
            .map(|(number, store)| {
                let store = store.clone();
                tokio::spawn(async move {
                    let owner = format!("instance-{number}");
                    let mut mine = Vec::new();
                    // Claim until nothing is left, as the heartbeat loop does.
                    loop {
                        let claimed = store
                            .claim_due_heartbeats(&owner, at(1000), at(1030), 7)
                            .await
                            .unwrap();
                        if claimed.is_empty() {
                            return mine;
                        }
                        for connection in claimed {
                            assert_eq!(connection.lease.map(|l| l.owner), Some(owner.clone()));
                            mine.push(connection.key);
                        }
                    }
                })
            })
            .collect();
        let mut seen = Vec::new();
        for claimer in claimers {
            seen.extend(claimer.await.unwrap());
        }
        let unique: BTreeSet<ConnectionKey> = seen.iter().cloned().collect();
        assert_eq!(unique.len(), seen.len(), "a connection was claimed twice");
        assert_eq!(unique, (0..90).map(key).collect::<BTreeSet<_>>());
        let store: Arc<dyn Store> = Arc::new(instances[0].clone());
        assert!(
            store
                .claim_due_heartbeats("late", at(1000), at(1030), 10)
                .await
                .unwrap()
                .is_empty()
        );
        for instance in &instances {
            instance.close().await;
        }
    })
    .await;
}

#[tokio::test]
async fn heartbeat_and_webhook_backlog_queries_can_read_their_partial_indexes() {
    let Some(server) = server_url() else { return };
    with_database(&server, |url| async move {
        let store = PostgresStore::connect(&url, 1).await.unwrap();
        store.close().await;
        let mut connection = sqlx::PgConnection::connect(&url).await.unwrap();
        // An empty table is cheapest to scan; forbid that to see whether the index serves.
        sqlx::query("SET enable_seqscan = off")
            .execute(&mut connection)
            .await
            .unwrap();
        let backlog_plan = format!("EXPLAIN {WEBHOOK_BACKLOG_SQL}");
        for (statement, index) in [
            (
                "EXPLAIN UPDATE connections SET lease_owner = 'a', lease_until = $2 \
                 WHERE id IN (SELECT id FROM connections \
                 WHERE state = 'active' AND heartbeat_due_at <= $1 \
                 AND (lease_owner IS NULL OR lease_until IS NULL OR lease_until <= $1) \
                 ORDER BY heartbeat_due_at LIMIT 10 FOR UPDATE SKIP LOCKED) RETURNING id",
                "connections_by_heartbeat_due",
            ),
            (
                "EXPLAIN SELECT id FROM connections \
                 WHERE state = 'active' AND refresh_token_used_at < $1 \
                 ORDER BY refresh_token_used_at LIMIT 10",
                "connections_by_refresh_token_use",
            ),
            // The webhook backlog, read at every /metrics scrape (migration 0008): each arm of
            // its one statement reads its own partial index.
            (backlog_plan.as_str(), "webhook_deliveries_pending"),
            (backlog_plan.as_str(), "webhook_deliveries_failed"),
        ] {
            let mut query = sqlx::query_scalar(AssertSqlSafe(statement));
            if statement.contains("$1") {
                query = query.bind(at(0));
            }
            if statement.contains("$2") {
                query = query.bind(at(30));
            }
            let plan: Vec<String> = query.fetch_all(&mut connection).await.unwrap();
            assert!(
                plan.iter().any(|line| line.contains(index)),
                "{index} not used: {plan:#?}"
            );
            // A claim or an idle scan with LIMIT must read in index order; the backlog may
            // sort what the index found, which is the backlog only.
            assert!(
                !statement.contains("LIMIT") || !plan.iter().any(|line| line.contains("Sort")),
                "sorts instead of reading the index in order: {plan:#?}"
            );
        }
        connection.close().await.unwrap();
    })
    .await;
}
