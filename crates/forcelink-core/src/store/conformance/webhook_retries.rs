//! Conformance check for an operator's retry of failed webhook deliveries: which deliveries it
//! takes, their fresh attempt budget, the attempt log and the backlog's age after it.

use super::fixtures::*;
use super::webhooks::{attempt, created_events, enqueue_all, save_created_endpoints};
use crate::store::{DeliveryFilter, DeliveryNext, DeliveryState, RetryTarget};

/// An operator's retry makes failed deliveries (one, or all of an endpoint's) pending again,
/// due at once, with `attempts_before_retry` at their attempts so far; it leaves every other delivery as
/// it is, and the attempt log numbers on.
pub(super) async fn failed_deliveries_are_retried_with_a_fresh_budget(store: Arc<dyn Store>) {
    let ring = ring();
    save_created_endpoints(&store, &ring, &["whe_a", "whe_b"]).await;
    let events = created_events(&store, 1..=3).await;
    assert_eq!(enqueue_all(&store, 10).await, 6);
    let claimed = store
        .claim_webhook_deliveries("one", at(10), at(40), 10, u32::MAX)
        .await
        .unwrap();
    let id_of = |endpoint: &str, event: i64| {
        claimed
            .iter()
            .find(|c| c.endpoint_id == endpoint && c.event.id == event)
            .unwrap()
            .id
            .clone()
    };
    let outcomes = [
        ("whe_a", events[0], DeliveryNext::Failed),
        ("whe_a", events[1], DeliveryNext::Delivered),
        ("whe_a", events[2], DeliveryNext::RetryAt(at(50))),
        ("whe_b", events[0], DeliveryNext::Failed),
        ("whe_b", events[1], DeliveryNext::Failed),
        ("whe_b", events[2], DeliveryNext::Delivered),
    ];
    for (endpoint, event, next) in outcomes {
        assert!(
            store
                .finish_webhook_attempt(
                    &id_of(endpoint, event),
                    "one",
                    &attempt(11, Some(500), next)
                )
                .await
                .unwrap()
        );
    }
    let retry = |target: RetryTarget, second: i64| {
        let store = Arc::clone(&store);
        async move {
            let mut ids = store
                .retry_failed_webhook_deliveries(&target, at(second))
                .await
                .unwrap();
            ids.sort();
            ids
        }
    };

    // Only failed deliveries are retried; the others, and unknown ids, are left alone.
    for (id, state) in [
        (id_of("whe_a", events[1]), Some(DeliveryState::Delivered)),
        (id_of("whe_a", events[2]), Some(DeliveryState::Pending)),
        ("msg_unknown".to_string(), None),
    ] {
        assert!(
            retry(RetryTarget::Delivery(id.clone()), 20)
                .await
                .is_empty()
        );
        assert_eq!(store.webhook_delivery_state(&id).await.unwrap(), state);
    }
    assert!(
        retry(RetryTarget::Endpoint("whe_none".into()), 20)
            .await
            .is_empty()
    );

    // One delivery: due at once, its budget counted from its one attempt.
    let a_first = id_of("whe_a", events[0]);
    assert_eq!(
        retry(RetryTarget::Delivery(a_first.clone()), 20).await,
        vec![a_first.clone()]
    );
    assert_eq!(
        store.webhook_delivery_state(&a_first).await.unwrap(),
        Some(DeliveryState::Pending)
    );
    let again = store
        .claim_webhook_deliveries("two", at(20), at(60), 10, u32::MAX)
        .await
        .unwrap();
    assert_eq!(again.len(), 1, "the retry at 50 is not due yet");
    assert_eq!(
        (
            again[0].id.as_str(),
            again[0].attempts,
            again[0].attempts_before_retry
        ),
        (a_first.as_str(), 1, 1)
    );

    // A whole endpoint: both of its failed deliveries, and its failed count falls to 0.
    let mut b_failed = vec![id_of("whe_b", events[0]), id_of("whe_b", events[1])];
    b_failed.sort();
    assert_eq!(
        retry(RetryTarget::Endpoint("whe_b".into()), 30).await,
        b_failed
    );
    let backlog = store.webhook_backlog().await.unwrap();
    let b = backlog.iter().find(|b| b.endpoint_id == "whe_b").unwrap();
    assert_eq!((b.pending, b.failed), (2, 0));
    assert_eq!(
        b.oldest_pending_at,
        Some(at(30)),
        "waiting since the retry, not since it was first queued at 10"
    );
    let mut taken: Vec<(String, u32)> = store
        .claim_webhook_deliveries("three", at(30), at(70), 10, u32::MAX)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.id, c.attempts_before_retry))
        .collect();
    taken.sort();
    assert_eq!(
        taken,
        b_failed
            .iter()
            .map(|id| (id.clone(), 1))
            .collect::<Vec<_>>()
    );

    // The retried attempt is numbered on in the log.
    assert!(
        store
            .finish_webhook_attempt(
                &a_first,
                "two",
                &attempt(21, Some(204), DeliveryNext::Delivered)
            )
            .await
            .unwrap()
    );
    let log = store
        .webhook_deliveries(&DeliveryFilter {
            endpoint_id: Some("whe_a".into()),
            event_id: Some(events[0]),
            ..DeliveryFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(log[0].state, DeliveryState::Delivered);
    assert_eq!(log[0].attempts, 2);
    assert_eq!(
        (log[0].retried_at, log[0].attempts_before_retry),
        (Some(at(20)), 1),
        "the log shows the retry"
    );
    let never = store
        .webhook_deliveries(&DeliveryFilter {
            endpoint_id: Some("whe_a".into()),
            event_id: Some(events[1]),
            ..DeliveryFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (never[0].retried_at, never[0].attempts_before_retry),
        (None, 0)
    );
    assert_eq!(
        log[0]
            .attempt_log
            .iter()
            .map(|a| a.number)
            .collect::<Vec<_>>(),
        [1, 2]
    );
}
