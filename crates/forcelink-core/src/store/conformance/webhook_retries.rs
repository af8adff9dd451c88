//! Conformance checks for an operator's retry of webhook deliveries: which deliveries it takes
//! (failed ones, and pending ones waiting for a later retry), their attempt budget, the
//! endpoint retry's filters, the attempt log and the backlog's age after it.

use super::fixtures::*;
use super::webhooks::{
    attempt, created_events, endpoint, enqueue_all, event, save_created_endpoints,
};
use crate::store::{DeliveryFilter, DeliveryNext, DeliveryState, Retried, RetryTarget};

/// Runs a retry at `second`, with both lists of ids sorted.
async fn retry_at(store: &Arc<dyn Store>, target: RetryTarget, second: i64) -> Retried {
    let mut retried = store
        .retry_webhook_deliveries(&target, at(second))
        .await
        .unwrap();
    retried.failed.sort();
    retried.brought_forward.sort();
    retried
}

fn failed(ids: &[&str]) -> Retried {
    Retried {
        failed: ids.iter().map(|id| id.to_string()).collect(),
        brought_forward: Vec::new(),
    }
}

fn brought_forward(ids: &[&str]) -> Retried {
    Retried {
        failed: Vec::new(),
        brought_forward: ids.iter().map(|id| id.to_string()).collect(),
    }
}

fn whole_endpoint(id: &str) -> RetryTarget {
    RetryTarget::Endpoint {
        id: id.to_string(),
        event_kind: None,
        since: None,
    }
}

/// An operator's retry makes failed deliveries (one, or all of an endpoint's) pending again,
/// due at once, with `attempts_before_retry` at their attempts so far; it leaves delivered ones
/// as they are, and the attempt log numbers on.
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
    let retry = |target: RetryTarget, second: i64| retry_at(&store, target, second);

    // Delivered deliveries, and unknown ids, are left alone.
    for (id, state) in [
        (id_of("whe_a", events[1]), Some(DeliveryState::Delivered)),
        ("msg_unknown".to_string(), None),
    ] {
        assert!(
            retry(RetryTarget::Delivery(id.clone()), 20)
                .await
                .is_empty()
        );
        assert_eq!(store.webhook_delivery_state(&id).await.unwrap(), state);
    }
    assert!(retry(whole_endpoint("whe_none"), 20).await.is_empty());

    // One delivery: due at once, its budget counted from its one attempt.
    let a_first = id_of("whe_a", events[0]);
    assert_eq!(
        retry(RetryTarget::Delivery(a_first.clone()), 20).await,
        failed(&[&a_first])
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
    let mut b_failed = [id_of("whe_b", events[0]), id_of("whe_b", events[1])];
    b_failed.sort();
    assert_eq!(
        retry(whole_endpoint("whe_b"), 30).await,
        failed(&[&b_failed[0], &b_failed[1]])
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

/// A retry brings a pending delivery waiting for a later retry forward to now, its budget and
/// `retried_at` unchanged, and leaves a leased one (in flight) and a due one alone; an endpoint
/// retry takes only the event kind and the deliveries queued since the time it is given.
pub(super) async fn waiting_deliveries_are_brought_forward_within_the_filters(
    store: Arc<dyn Store>,
) {
    let ring = ring();
    let kinds = ["connection.created", "connection.at_risk"];
    store
        .save_webhook_endpoint(&endpoint(
            &ring,
            "whe_a",
            "https://a.example/hook",
            &kinds,
            0,
        ))
        .await
        .unwrap();
    let record = |kind: &'static str, second: i64| {
        let store = Arc::clone(&store);
        async move { store.record_event(&event(kind, second)).await.unwrap() }
    };
    // Queued at 10: a creation and an at-risk event; at 20: two creations.
    let early = [record(kinds[0], 1).await, record(kinds[1], 2).await];
    assert_eq!(enqueue_all(&store, 10).await, 2);
    let late = [record(kinds[0], 3).await, record(kinds[0], 4).await];
    assert_eq!(enqueue_all(&store, 20).await, 2);
    let claimed = store
        .claim_webhook_deliveries("one", at(20), at(60), 10, u32::MAX)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 4);
    let id_of = |event: i64| {
        claimed
            .iter()
            .find(|c| c.event.id == event)
            .unwrap()
            .id
            .clone()
    };
    let (created_waiting, at_risk_waiting) = (id_of(early[0]), id_of(early[1]));
    let (created_failed, in_flight) = (id_of(late[0]), id_of(late[1]));
    for (id, next) in [
        (&created_waiting, DeliveryNext::RetryAt(at(100))),
        (&at_risk_waiting, DeliveryNext::RetryAt(at(100))),
        (&created_failed, DeliveryNext::Failed),
    ] {
        assert!(
            store
                .finish_webhook_attempt(id, "one", &attempt(21, Some(500), next))
                .await
                .unwrap()
        );
    }

    // In flight: left alone, and its claim still holds it. Also at 19, before the time it
    // fell due at (a retrying clock behind the claimer's), where only its lease protects it.
    for second in [19, 30] {
        assert!(
            retry_at(&store, RetryTarget::Delivery(in_flight.clone()), second)
                .await
                .is_empty(),
            "at {second}"
        );
    }

    // An unknown kind matches nothing; one kind takes only its own deliveries.
    let only = |kind: &str, since: Option<i64>| RetryTarget::Endpoint {
        id: "whe_a".to_string(),
        event_kind: Some(kind.to_string()),
        since: since.map(at),
    };
    assert!(
        retry_at(&store, only("connection.revoked", None), 30)
            .await
            .is_empty()
    );
    assert_eq!(
        retry_at(&store, only(kinds[0], None), 30).await,
        Retried {
            failed: vec![created_failed.clone()],
            brought_forward: vec![created_waiting.clone()],
        }
    );
    let mut due: Vec<(String, u32, u32)> = store
        .claim_webhook_deliveries("two", at(30), at(70), 10, u32::MAX)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.id, c.attempts, c.attempts_before_retry))
        .collect();
    due.sort();
    let mut expected = vec![
        (created_waiting.clone(), 1, 0),
        (created_failed.clone(), 1, 1),
    ];
    expected.sort();
    assert_eq!(due, expected, "the at-risk delivery waits on; the budgets");
    assert!(
        store
            .finish_webhook_attempt(
                &in_flight,
                "one",
                &attempt(31, Some(204), DeliveryNext::Delivered)
            )
            .await
            .unwrap(),
        "the retry did not take the in-flight delivery from its claim"
    );

    // `since` leaves out what was queued before it.
    let since = |second: i64| RetryTarget::Endpoint {
        id: "whe_a".to_string(),
        event_kind: None,
        since: Some(at(second)),
    };
    assert!(retry_at(&store, since(11), 40).await.is_empty());
    assert_eq!(
        store
            .webhook_delivery_state(&at_risk_waiting)
            .await
            .unwrap(),
        Some(DeliveryState::Pending)
    );
    assert!(
        store
            .claim_webhook_deliveries("three", at(40), at(80), 10, u32::MAX)
            .await
            .unwrap()
            .is_empty(),
        "still waiting for its retry at 100"
    );
    assert_eq!(
        retry_at(&store, since(10), 40).await,
        brought_forward(&[&at_risk_waiting])
    );
    // Now due: a second retry has nothing to bring forward.
    assert!(
        retry_at(&store, RetryTarget::Delivery(at_risk_waiting.clone()), 41)
            .await
            .is_empty()
    );
    let log = store
        .webhook_deliveries(&DeliveryFilter {
            event_id: Some(early[1]),
            ..DeliveryFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (
            log[0].next_attempt_at,
            log[0].retried_at,
            log[0].attempts_before_retry
        ),
        (Some(at(40)), None, 0),
        "brought forward, not retried: due at 40, its budget as it was"
    );
    let backlog = store.webhook_backlog().await.unwrap();
    assert_eq!(
        backlog[0].oldest_pending_at,
        Some(at(10)),
        "a brought-forward delivery waits since it was queued"
    );
}
