//! Conformance checks for webhook deliveries: exclusive claims within each endpoint's bound,
//! owner-checked attempts, the delivery log and the backlog.

use super::fixtures::*;
use super::webhooks::{
    attempt, created_events, endpoint, enqueue_all, event, save_created_endpoints,
};
use crate::store::{DeliveryFilter, DeliveryNext, DeliveryState, WebhookBacklog};

pub(super) async fn due_deliveries_are_claimed_exclusively_and_attempts_are_owner_checked(
    store: Arc<dyn Store>,
) {
    let ring = ring();
    store
        .save_webhook_endpoint(&endpoint(
            &ring,
            "whe_a",
            "https://a.example/hook",
            &["connection.created"],
            0,
        ))
        .await
        .unwrap();
    let events = created_events(&store, 1..=6).await;
    assert_eq!(enqueue_all(&store, 10).await, 6);
    assert!(
        store
            .claim_webhook_deliveries("early", at(9), at(100), 10, u32::MAX)
            .await
            .unwrap()
            .is_empty(),
        "not due yet"
    );

    // Concurrent claimers take every delivery exactly once.
    let mut tasks = Vec::new();
    for index in 0..4 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store
                .claim_webhook_deliveries(&format!("claimer-{index}"), at(10), at(40), 2, u32::MAX)
                .await
                .unwrap()
                .into_iter()
                .map(|claimed| (format!("claimer-{index}"), claimed))
                .collect::<Vec<_>>()
        }));
    }
    let mut claimed = Vec::new();
    for task in tasks {
        claimed.extend(task.await.unwrap());
    }
    let mut claimed_events: Vec<i64> = claimed.iter().map(|(_, c)| c.event.id).collect();
    claimed_events.sort_unstable();
    assert_eq!(claimed_events, events);
    let (first_owner, first) = claimed
        .iter()
        .find(|(_, c)| c.event.id == events[0])
        .cloned()
        .unwrap();
    assert_eq!(first.endpoint_id, "whe_a");
    assert_eq!(first.url, "https://a.example/hook");
    assert_eq!(
        open_text(&ring, &SealedRef::webhook_secret("whe_a"), &first.secret),
        "whsec_secret-marker"
    );
    assert_eq!(first.event.kind, "connection.created");
    assert_eq!(first.event.at, at(1));
    assert_eq!(first.event.detail, r#"{"n":1}"#);
    assert_eq!(first.event.context.as_ref().unwrap().as_str(), "api");
    assert_eq!(first.attempts, 0);
    assert!(
        store
            .claim_webhook_deliveries("late", at(20), at(50), 10, u32::MAX)
            .await
            .unwrap()
            .is_empty(),
        "leased"
    );

    // Only the claim's owner can record an attempt.
    let retry_at = DeliveryNext::RetryAt(at(30));
    assert!(
        !store
            .finish_webhook_attempt(&first.id, "someone-else", &attempt(11, Some(500), retry_at))
            .await
            .unwrap()
    );
    assert!(
        store
            .finish_webhook_attempt(&first.id, &first_owner, &attempt(11, Some(500), retry_at))
            .await
            .unwrap()
    );
    assert!(
        !store
            .finish_webhook_attempt(&first.id, &first_owner, &attempt(11, Some(500), retry_at))
            .await
            .unwrap(),
        "the lease was released"
    );
    let only_first = DeliveryFilter {
        event_id: Some(events[0]),
        ..DeliveryFilter::default()
    };
    let shown = store.webhook_deliveries(&only_first).await.unwrap();
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0].state, DeliveryState::Pending);
    assert_eq!(shown[0].attempts, 1);
    assert_eq!(shown[0].next_attempt_at, Some(at(30)));
    assert_eq!(shown[0].last_status_code, Some(500));
    assert_eq!(shown[0].last_error.as_deref(), Some("HTTP 500"));
    assert_eq!(shown[0].updated_at, at(11));

    // Due again at its retry time, not before; then delivered for good.
    assert!(
        store
            .claim_webhook_deliveries("retry", at(29), at(60), 10, u32::MAX)
            .await
            .unwrap()
            .is_empty()
    );
    let again = store
        .claim_webhook_deliveries("retry", at(30), at(60), 10, u32::MAX)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].id.as_str(), again[0].attempts),
        (first.id.as_str(), 1)
    );
    assert!(
        store
            .finish_webhook_attempt(
                &first.id,
                "retry",
                &attempt(31, Some(204), DeliveryNext::Delivered)
            )
            .await
            .unwrap()
    );
    let shown = store.webhook_deliveries(&only_first).await.unwrap();
    assert_eq!(shown[0].state, DeliveryState::Delivered);
    assert_eq!(shown[0].attempts, 2);
    assert_eq!(shown[0].next_attempt_at, None);
    assert_eq!(shown[0].last_status_code, Some(204));
    assert_eq!(shown[0].last_error, None);
    let log: Vec<(u32, Option<u16>, Option<&str>)> = shown[0]
        .attempt_log
        .iter()
        .map(|a| (a.number, a.status_code, a.error.as_deref()))
        .collect();
    assert_eq!(
        log,
        vec![(1, Some(500), Some("HTTP 500")), (2, Some(204), None)]
    );
    let times: Vec<DateTime<Utc>> = shown[0].attempt_log.iter().map(|a| a.at).collect();
    assert_eq!(times, vec![at(11), at(31)]);
    assert_eq!(shown[0].attempt_log[0].latency_ms, 12);

    // A failed delivery is never claimed again; an expired lease is.
    let (second_owner, second) = claimed
        .iter()
        .find(|(_, c)| c.event.id == events[1])
        .cloned()
        .unwrap();
    let mut no_answer = attempt(12, None, DeliveryNext::Failed);
    no_answer.error = Some("timed out".into());
    assert!(
        store
            .finish_webhook_attempt(&second.id, &second_owner, &no_answer)
            .await
            .unwrap()
    );
    let failed = store
        .webhook_deliveries(&DeliveryFilter {
            state: Some(DeliveryState::Failed),
            ..DeliveryFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(
        (failed[0].last_status_code, failed[0].last_error.as_deref()),
        (None, Some("timed out"))
    );
    let taken_over = store
        .claim_webhook_deliveries("survivor", at(40), at(90), 10, u32::MAX)
        .await
        .unwrap();
    let mut taken: Vec<i64> = taken_over.iter().map(|c| c.event.id).collect();
    taken.sort_unstable();
    assert_eq!(
        taken,
        events[2..].to_vec(),
        "lapsed leases, not finished ones"
    );
    let pending = DeliveryFilter {
        state: Some(DeliveryState::Pending),
        ..DeliveryFilter::default()
    };
    assert_eq!(store.webhook_deliveries(&pending).await.unwrap().len(), 4);
}

fn backlog(endpoint_id: &str, pending: u64, failed: u64, oldest: Option<i64>) -> WebhookBacklog {
    WebhookBacklog {
        endpoint_id: endpoint_id.to_string(),
        pending,
        failed,
        oldest_pending_at: oldest.map(at),
    }
}

pub(super) async fn webhook_backlog_counts_pending_and_failed_per_endpoint(store: Arc<dyn Store>) {
    let ring = ring();
    for id in ["whe_b", "whe_a"] {
        store
            .save_webhook_endpoint(&endpoint(
                &ring,
                id,
                "https://a.example/hook",
                &["connection.created"],
                0,
            ))
            .await
            .unwrap();
    }
    assert_eq!(store.webhook_backlog().await.unwrap(), vec![]);
    created_events(&store, 1..=3).await;
    assert_eq!(enqueue_all(&store, 10).await, 6);
    store
        .record_event(&event("connection.created", 11))
        .await
        .unwrap();
    assert_eq!(enqueue_all(&store, 20).await, 2);
    assert_eq!(
        store.webhook_backlog().await.unwrap(),
        vec![
            backlog("whe_a", 4, 0, Some(10)),
            backlog("whe_b", 4, 0, Some(10)),
        ],
        "by endpoint id, the oldest pending queued at the first fan-out"
    );

    // Claimed deliveries are still pending; finished ones leave the backlog or fail in it.
    let claimed = store
        .claim_webhook_deliveries("worker", at(20), at(50), 10, u32::MAX)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 8);
    let mut of_a: Vec<_> = claimed
        .iter()
        .filter(|c| c.endpoint_id == "whe_a")
        .collect();
    of_a.sort_by_key(|c| c.event.id);
    let outcomes = [
        DeliveryNext::Delivered,
        DeliveryNext::Failed,
        DeliveryNext::Delivered,
    ];
    for (delivery, next) in of_a.iter().zip(outcomes) {
        let status = if next == DeliveryNext::Failed {
            410
        } else {
            204
        };
        assert!(
            store
                .finish_webhook_attempt(&delivery.id, "worker", &attempt(21, Some(status), next))
                .await
                .unwrap()
        );
    }
    for delivery in claimed.iter().filter(|c| c.endpoint_id == "whe_b") {
        let done = attempt(22, Some(204), DeliveryNext::Delivered);
        assert!(
            store
                .finish_webhook_attempt(&delivery.id, "worker", &done)
                .await
                .unwrap()
        );
    }
    assert_eq!(
        store.webhook_backlog().await.unwrap(),
        vec![backlog("whe_a", 1, 1, Some(20))],
        "whe_a: the fourth event's delivery (queued at 20) pending, the second's failed; \
         whe_b: nothing left"
    );
}

pub(super) async fn claims_lease_at_most_per_endpoint_deliveries_of_one_endpoint(
    store: Arc<dyn Store>,
) {
    let ring = ring();
    save_created_endpoints(&store, &ring, &["whe_a", "whe_b"]).await;
    let events = created_events(&store, 1..=3).await;
    assert_eq!(enqueue_all(&store, 10).await, 6);
    let taken = |claimed: &[crate::store::ClaimedDelivery]| {
        let mut taken: Vec<(String, i64)> = claimed
            .iter()
            .map(|c| (c.endpoint_id.clone(), c.event.id))
            .collect();
        taken.sort();
        taken
    };
    let pair = |endpoint: &str, event: i64| (endpoint.to_string(), event);

    // Two per endpoint, the oldest events first, though the limit allows all six.
    let first = store
        .claim_webhook_deliveries("one", at(10), at(40), 10, 2)
        .await
        .unwrap();
    assert_eq!(
        taken(&first),
        vec![
            pair("whe_a", events[0]),
            pair("whe_a", events[1]),
            pair("whe_b", events[0]),
            pair("whe_b", events[1]),
        ]
    );
    // Leases held count against the bound, whoever holds them.
    assert!(
        store
            .claim_webhook_deliveries("two", at(11), at(40), 10, 2)
            .await
            .unwrap()
            .is_empty(),
        "both endpoints are at the bound"
    );
    // A finished delivery frees its endpoint's slot.
    let a_first = first
        .iter()
        .find(|c| c.endpoint_id == "whe_a" && c.event.id == events[0])
        .unwrap();
    assert!(
        store
            .finish_webhook_attempt(
                &a_first.id,
                "one",
                &attempt(12, Some(204), DeliveryNext::Delivered)
            )
            .await
            .unwrap()
    );
    let third = store
        .claim_webhook_deliveries("three", at(13), at(40), 10, 2)
        .await
        .unwrap();
    assert_eq!(taken(&third), vec![pair("whe_a", events[2])]);
    // Expired leases hold nothing: everything undelivered is claimable again, two per endpoint.
    let fourth = store
        .claim_webhook_deliveries("four", at(41), at(80), 10, 2)
        .await
        .unwrap();
    assert_eq!(
        taken(&fourth),
        vec![
            pair("whe_a", events[1]),
            pair("whe_a", events[2]),
            pair("whe_b", events[0]),
            pair("whe_b", events[1]),
        ]
    );
}

/// Claimers racing on one endpoint (instances sharing a database) together never pass its
/// bound: in each of six rounds, eight claims at once lease exactly `per_endpoint` deliveries,
/// none twice; then those are answered and the next round races for the rest.
pub(super) async fn racing_claims_together_stay_within_the_per_endpoint_bound(
    store: Arc<dyn Store>,
) {
    const BOUND: usize = 4;
    save_created_endpoints(&store, &ring(), &["whe_a"]).await;
    let events = created_events(&store, 1..=24).await;
    assert_eq!(enqueue_all(&store, 10).await, 24);
    for round in 0..6i64 {
        let now = 10 + round;
        let mut tasks = Vec::new();
        for index in 0..8 {
            let store = Arc::clone(&store);
            let owner = format!("round-{round}-claimer-{index}");
            tasks.push(tokio::spawn(async move {
                let claimed = store
                    .claim_webhook_deliveries(&owner, at(now), at(1000), 10, BOUND as u32)
                    .await
                    .unwrap();
                (owner, claimed)
            }));
        }
        let mut leased = Vec::new();
        for task in tasks {
            let (owner, claimed) = task.await.unwrap();
            leased.extend(claimed.into_iter().map(|claimed| (owner.clone(), claimed)));
        }
        assert_eq!(
            leased.len(),
            BOUND,
            "round {round}: racing claims leased {} deliveries of one endpoint",
            leased.len()
        );
        let mut taken: Vec<i64> = leased.iter().map(|(_, claimed)| claimed.event.id).collect();
        taken.sort_unstable();
        let oldest = &events[round as usize * BOUND..(round as usize + 1) * BOUND];
        assert_eq!(
            taken, oldest,
            "round {round}: the oldest undelivered, each once"
        );
        for (owner, claimed) in leased {
            assert!(
                store
                    .finish_webhook_attempt(
                        &claimed.id,
                        &owner,
                        &attempt(now, Some(204), DeliveryNext::Delivered)
                    )
                    .await
                    .unwrap()
            );
        }
    }
}
