//! Conformance checks for webhook endpoints and the outbox fan-out (each event once per
//! endpoint, none before the endpoint existed), and the fixtures the delivery checks
//! (`webhook_deliveries`) share.

use super::fixtures::*;
use crate::store::{
    AttemptWrite, DeliveryFilter, DeliveryNext, DeliveryState, EndpointSource, EndpointWrite,
};

pub(super) fn endpoint(
    ring: &KeyRing,
    id: &str,
    url: &str,
    kinds: &[&str],
    now: i64,
) -> EndpointWrite {
    EndpointWrite {
        id: id.to_string(),
        url: url.to_string(),
        event_kinds: kinds.iter().map(|kind| kind.to_string()).collect(),
        secret: ring.seal(b"whsec_secret-marker", &SealedRef::webhook_secret(id).aad()),
        source: EndpointSource::Api,
        now: at(now),
    }
}

pub(super) fn event(kind: &str, second: i64) -> NewEvent {
    let key = key("00D000000000062", "api");
    NewEvent {
        at: at(second),
        kind: kind.to_string(),
        org_id: Some(key.org_id.clone()),
        context: Some(key.context.clone()),
        detail: format!(r#"{{"n":{second}}}"#),
    }
}

pub(super) fn attempt(second: i64, status: Option<u16>, next: DeliveryNext) -> AttemptWrite {
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

/// Saves an endpoint `https://{id}.example/hook` for `connection.created` per id.
pub(super) async fn save_created_endpoints(store: &Arc<dyn Store>, ring: &KeyRing, ids: &[&str]) {
    for id in ids {
        store
            .save_webhook_endpoint(&endpoint(
                ring,
                id,
                &format!("https://{id}.example/hook"),
                &["connection.created"],
                0,
            ))
            .await
            .unwrap();
    }
}

/// Records a `connection.created` event at each second of `seconds`; returns their ids.
pub(super) async fn created_events(
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

pub(super) async fn enqueue_all(store: &Arc<dyn Store>, second: i64) -> u64 {
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
