//! PostgreSQL-specific webhook behaviour: a delivery claim waits for a claim in progress on
//! another instance and counts its leases, so two claims at once never pass an endpoint's
//! bound, even when a retry falls due between them. Must not rely on another test's database.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use forcelink_core::store::{AttemptWrite, DeliveryNext, EndpointSource, EndpointWrite, NewEvent};
use forcelink_core::{KeyRing, SealedRef, Store};
use forcelink_store_postgres::{PostgresStore, WEBHOOK_CLAIM_LOCK};
use sqlx::Connection;

use crate::database::{server_url, with_database};

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(1_800_000_000_000).unwrap() + Duration::seconds(seconds)
}

/// Deliveries under an unexpired lease at `now`.
async fn leased(db: &mut sqlx::PgConnection, now: DateTime<Utc>) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT id FROM webhook_deliveries WHERE lease_owner IS NOT NULL AND lease_until > $1 \
         ORDER BY event_id",
    )
    .bind(now)
    .fetch_all(db)
    .await
    .unwrap()
}

/// Bound 3. Deliveries d1…d6 of one endpoint; d2 and d3 are in flight, d1 waits for its retry
/// at second 20. Instance B is in the middle of a claim at second 11: it holds the claim lock
/// and has leased d4 (the one due delivery its bound leaves room for), not yet committed.
/// Instance C claims at second 21, when d1's retry has fallen due. Had C not waited, it would
/// count only the two committed leases and take d1, leaving four in flight. It waits for B,
/// counts B's lease too, and takes nothing.
#[tokio::test]
async fn a_claim_waits_for_a_claim_in_progress_and_counts_its_leases() {
    let Some(server) = server_url() else { return };
    with_database(&server, |url| async move {
        let store: Arc<dyn Store> = Arc::new(PostgresStore::connect(&url, 4).await.unwrap());
        let key = KeyRing::generate_key();
        let ring = KeyRing::new([("k1", &key)], "k1").unwrap();
        store
            .save_webhook_endpoint(&EndpointWrite {
                id: "whe_a".into(),
                url: "https://a.example/hook".into(),
                event_kinds: vec!["connection.created".into()],
                secret: ring.seal(b"whsec_x", &SealedRef::webhook_secret("whe_a").aad()),
                source: EndpointSource::Api,
                now: at(0),
            })
            .await
            .unwrap();
        for second in 1..=6 {
            store
                .record_event(&NewEvent {
                    at: at(second),
                    kind: "connection.created".into(),
                    org_id: None,
                    context: None,
                    detail: "{}".into(),
                })
                .await
                .unwrap();
        }
        assert_eq!(
            store
                .enqueue_webhook_deliveries(at(10), 100)
                .await
                .unwrap()
                .deliveries,
            6
        );
        let first = store
            .claim_webhook_deliveries("x", at(10), at(1000), 3, 3)
            .await
            .unwrap();
        assert_eq!(first.len(), 3);
        assert!(
            store
                .finish_webhook_attempt(
                    &first[0].id,
                    "x",
                    &AttemptWrite {
                        at: at(10),
                        status_code: Some(500),
                        error: Some("HTTP 500".into()),
                        latency_ms: 5,
                        next: DeliveryNext::RetryAt(at(20)),
                    },
                )
                .await
                .unwrap()
        );
        let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
        assert_eq!(
            leased(&mut db, at(21)).await,
            [first[1].id.clone(), first[2].id.clone()]
        );

        // B's claim, half done: the claim lock and a lease on d4, uncommitted.
        let mut b = sqlx::PgConnection::connect(&url).await.unwrap();
        let mut claim_b = b.begin().await.unwrap();
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WEBHOOK_CLAIM_LOCK)
            .execute(&mut *claim_b)
            .await
            .unwrap();
        let d4: String = sqlx::query_scalar(
            "UPDATE webhook_deliveries SET lease_owner = 'b', lease_until = $1 \
             WHERE id = (SELECT id FROM webhook_deliveries WHERE lease_owner IS NULL \
             AND next_attempt_at <= $2 ORDER BY event_id LIMIT 1) RETURNING id",
        )
        .bind(at(1000))
        .bind(at(11))
        .fetch_one(&mut *claim_b)
        .await
        .unwrap();

        let claimer = Arc::clone(&store);
        let mut claim_c = tokio::spawn(async move {
            claimer
                .claim_webhook_deliveries("c", at(21), at(1000), 10, 3)
                .await
                .unwrap()
        });
        // C must be seen waiting for the claim lock before it returns.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            )
            .fetch_one(&mut db)
            .await
            .unwrap();
            if waiting == 1 {
                break;
            }
            if claim_c.is_finished() {
                let took: Vec<String> = (&mut claim_c)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|d| d.id)
                    .collect();
                panic!("C claimed {took:?} without waiting for B's claim in progress");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "C neither waited nor returned"
            );
            tokio::task::yield_now().await;
        }
        claim_b.commit().await.unwrap();
        assert!(
            claim_c.await.unwrap().is_empty(),
            "three in flight already, B's included"
        );
        assert_eq!(
            leased(&mut db, at(21)).await,
            [first[1].id.clone(), first[2].id.clone(), d4]
        );
    })
    .await;
}
