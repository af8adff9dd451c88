//! Conformance checks for webhook endpoints, the outbox fan-out (each event once per endpoint,
//! none before the endpoint existed), exclusive claims, owner-checked attempts and the
//! delivery log.

use super::fixtures::*;
use crate::store::{
    AttemptWrite, DeliveryFilter, DeliveryNext, DeliveryState, EndpointSource, EndpointWrite,
    WebhookBacklog,
};

fn endpoint(ring: &KeyRing, id: &str, url: &str, kinds: &[&str], now: i64) -> EndpointWrite {
    EndpointWrite {
        id: id.to_string(),
        url: url.to_string(),
        event_kinds: kinds.iter().map(|kind| kind.to_string()).collect(),
        secret: ring.seal(b"whsec_secret-marker", &SealedRef::webhook_secret(id).aad()),
        source: EndpointSource::Api,
        now: at(now),
    }
}

fn event(kind: &str, second: i64) -> NewEvent {
    let key = key("00D000000000062", "api");
    NewEvent {
        at: at(second),
        kind: kind.to_string(),
        org_id: Some(key.org_id.clone()),
        context: Some(key.context.clone()),
        detail: format!(r#"{{"n":{second}}}"#),
    }
}

fn attempt(second: i64, status: Option<u16>, next: DeliveryNext) -> AttemptWrite {
    AttemptWrite {
        at: at(second),
        status_code: status,
        error: status
            .filter(|code| *code >= 300)
            .map(|code| format!("HTTP {code}")),
        latency_ms: 12,
        next,
    }
}

/// Records a `connection.created` event at each second of `seconds`; returns their ids.
async fn created_events(
    store: &Arc<dyn Store>,
    seconds: std::ops::RangeInclusive<i64>,
) -> Vec<i64> {
    let mut ids = Vec::new();
    for second in seconds {
        ids.push(
            store
                .record_event(&event("connection.created", second))
                .await
                .unwrap(),
        );
    }
    ids
}

async fn enqueue_all(store: &Arc<dyn Store>, second: i64) -> u64 {
    let mut total = 0;
    loop {
        let done = store
            .enqueue_webhook_deliveries(at(second), 2)
            .await
            .unwrap();
        total += done.deliveries;
        if done.caught_up {
            return total;
        }
    }
}

pub(super) async fn webhook_endpoints_are_saved_updated_in_place_listed_and_deleted(
    store: Arc<dyn Store>,
) {
    let ring = ring();
    assert!(store.webhook_endpoints().await.unwrap().is_empty());
    let before = store
        .record_event(&event("connection.created", 1))
        .await
        .unwrap();
    let first = endpoint(
        &ring,
        "whe_b",
        "https://b.example/hook",
        &["connection.created"],
        2,
    );
    let saved = store.save_webhook_endpoint(&first).await.unwrap();
    assert_eq!(
        (saved.id.as_str(), saved.url.as_str(), saved.source),
        ("whe_b", "https://b.example/hook", EndpointSource::Api)
    );
    assert_eq!(saved.event_kinds, vec!["connection.created"]);
    assert_eq!(saved.secret, first.secret);
    assert_eq!((saved.created_at, saved.updated_at), (at(2), at(2)));
    assert_eq!(saved.cursor, before, "starts at the newest event");

    let after = store
        .record_event(&event("connection.revoked", 3))
        .await
        .unwrap();
    let mut changed = endpoint(
        &ring,
        "whe_b",
        "https://b.example/other",
        &["connection.created", "connection.revoked"],
        4,
    );
    changed.source = EndpointSource::Config;
    let updated = store.save_webhook_endpoint(&changed).await.unwrap();
    assert_eq!(updated.url, "https://b.example/other");
    assert_eq!(updated.event_kinds.len(), 2);
    assert_eq!(updated.secret, changed.secret);
    assert_eq!(updated.source, EndpointSource::Config);
    assert_eq!((updated.created_at, updated.updated_at), (at(2), at(4)));
    assert_eq!(updated.cursor, before, "an update keeps the cursor");
    assert!(after > before);

    let second = endpoint(
        &ring,
        "whe_a",
        "http://a.example/",
        &["connection.at_risk"],
        5,
    );
    let second = store.save_webhook_endpoint(&second).await.unwrap();
    assert_eq!(second.cursor, after);
    let listed: Vec<String> = store
        .webhook_endpoints()
        .await
        .unwrap()
        .into_iter()
        .map(|endpoint| endpoint.id)
        .collect();
    assert_eq!(listed, ["whe_b", "whe_a"], "oldest first");
    assert_eq!(
        store.webhook_endpoint("whe_a").await.unwrap(),
        Some(second.clone())
    );
    assert!(store.webhook_endpoint("whe_x").await.unwrap().is_none());

    // The secret is a compare-and-swap on its exact bytes.
    let replacement = ring.seal(b"whsec_other", &SealedRef::webhook_secret("whe_a").aad());
    assert!(
        !store
            .replace_webhook_secret("whe_a", &replacement, &replacement)
            .await
            .unwrap()
    );
    assert!(
        store
            .replace_webhook_secret("whe_a", &second.secret, &replacement)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .webhook_endpoint("whe_a")
            .await
            .unwrap()
            .unwrap()
            .secret,
        replacement
    );
    assert!(
        !store
            .replace_webhook_secret("whe_x", &replacement, &replacement)
            .await
            .unwrap()
    );

    // whe_b now wants the revocation it had not passed yet; whe_a the at-risk event.
    store
        .record_event(&event("connection.at_risk", 6))
        .await
        .unwrap();
    assert_eq!(enqueue_all(&store, 6).await, 2);
    // Deleting takes the endpoint's outbox with it, and only its own.
    assert!(store.delete_webhook_endpoint("whe_a").await.unwrap());
    assert!(!store.delete_webhook_endpoint("whe_a").await.unwrap());
    let log = store
        .webhook_deliveries(&DeliveryFilter::default())
        .await
        .unwrap();
    let left: Vec<(&str, i64)> = log
        .iter()
        .map(|delivery| (delivery.endpoint_id.as_str(), delivery.event_id))
        .collect();
    assert_eq!(left, vec![("whe_b", after)]);
    assert_eq!(store.webhook_endpoints().await.unwrap().len(), 1);
}

pub(super) async fn fan_out_queues_each_later_event_once_per_endpoint_that_wants_it(
    store: Arc<dyn Store>,
) {
    let ring = ring();
    store
        .record_event(&event("connection.created", 0))
        .await
        .unwrap();
    store
        .save_webhook_endpoint(&endpoint(
            &ring,
            "whe_created",
            "https://a.example/",
            &["connection.created"],
            1,
        ))
        .await
        .unwrap();
    store
        .save_webhook_endpoint(&endpoint(
            &ring,
            "whe_both",
            "https://b.example/",
            &["connection.created", "connection.revoked"],
            1,
        ))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for (index, kind) in [
        "connection.created",
        "connection.revoked",
        "connection.recovered",
        "connection.created",
        "connection.revoked",
    ]
    .into_iter()
    .enumerate()
    {
        ids.push(
            store
                .record_event(&event(kind, 10 + index as i64))
                .await
                .unwrap(),
        );
    }
    // Concurrent passes (batch 2, so several rounds each) create every delivery once.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move { enqueue_all(&store, 20).await }));
    }
    let mut created = 0;
    for task in tasks {
        created += task.await.unwrap();
    }
    assert_eq!(created, 2 + 4);
    assert_eq!(enqueue_all(&store, 21).await, 0, "nothing is queued twice");
    for endpoint in store.webhook_endpoints().await.unwrap() {
        assert_eq!(endpoint.cursor, ids[4], "{}", endpoint.id);
    }

    let log = store
        .webhook_deliveries(&DeliveryFilter::default())
        .await
        .unwrap();
    let seen: Vec<(i64, &str)> = log
        .iter()
        .map(|delivery| (delivery.event_id, delivery.endpoint_id.as_str()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (ids[4], "whe_both"),
            (ids[3], "whe_both"),
            (ids[3], "whe_created"),
            (ids[1], "whe_both"),
            (ids[0], "whe_both"),
            (ids[0], "whe_created"),
        ],
        "newest event first"
    );
    for delivery in &log {
        assert_eq!(delivery.state, DeliveryState::Pending);
        assert_eq!(delivery.attempts, 0);
        assert_eq!(delivery.next_attempt_at, Some(at(20)));
        assert!(delivery.attempt_log.is_empty());
        assert!(delivery.id.starts_with("msg_"));
    }
    let mut message_ids: Vec<&str> = log.iter().map(|delivery| delivery.id.as_str()).collect();
    message_ids.sort_unstable();
    message_ids.dedup();
    assert_eq!(message_ids.len(), log.len(), "one message id per delivery");

    let by_endpoint = DeliveryFilter {
        endpoint_id: Some("whe_created".into()),
        ..DeliveryFilter::default()
    };
    assert_eq!(
        store.webhook_deliveries(&by_endpoint).await.unwrap().len(),
        2
    );
    let by_kind = DeliveryFilter {
        event_kind: Some("connection.revoked".into()),
        limit: 1,
        ..DeliveryFilter::default()
    };
    let revoked = store.webhook_deliveries(&by_kind).await.unwrap();
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].event_id, ids[4]);
    let by_event = DeliveryFilter {
        event_id: Some(ids[0]),
        state: Some(DeliveryState::Pending),
        ..DeliveryFilter::default()
    };
    assert_eq!(store.webhook_deliveries(&by_event).await.unwrap().len(), 2);
}

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
    for id in ["whe_a", "whe_b"] {
        store
            .save_webhook_endpoint(&endpoint(
                &ring,
                id,
                &format!("https://{id}.example/hook"),
                &["connection.created"],
                0,
            ))
            .await
            .unwrap();
    }
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
