//! Conformance checks for the refresh lineage: upsert by attempt id, newest-first per
//! connection, by presented token within a connection, and kept after a connection is deleted.

use super::fixtures::*;

pub(super) async fn record_attempt_upserts_and_both_queries_find_it(store: Arc<dyn Store>) {
    let api = key("00D000000000062", "api");
    let other = key("00D000000000063", "api");
    let mut pending = attempt("a1", &api, "h1", at(10));
    pending.finished_at = None;
    pending.new_refresh_hash = None;
    pending.latency_ms = None;
    pending.outcome = "pending".to_string();
    pending.detail = None;
    pending.egress = None;
    pending.recovery = false;
    store.record_attempt(&pending).await.unwrap();
    assert_eq!(
        store.attempts(&api, 10).await.unwrap(),
        vec![pending.clone()]
    );

    // Overwrites every column of the same attempt.
    let finished = attempt("a1", &api, "h1", at(10));
    store.record_attempt(&finished).await.unwrap();
    let second = attempt("a2", &api, "h2", at(20));
    let tie = attempt("a3", &api, "h1", at(20)); // same start: the larger id is newer
    let elsewhere = attempt("b1", &other, "h1", at(15));
    for entry in [&second, &tie, &elsewhere] {
        store.record_attempt(entry).await.unwrap();
    }

    assert_eq!(
        store.attempts(&api, 10).await.unwrap(),
        vec![tie.clone(), second.clone(), finished.clone()]
    );
    assert_eq!(
        store.attempts(&api, 2).await.unwrap(),
        vec![tie.clone(), second.clone()]
    );
    assert_eq!(
        store.attempts(&other, 10).await.unwrap(),
        vec![elsewhere.clone()]
    );
    assert!(
        store
            .attempts(&key("00D000000000064", "api"), 10)
            .await
            .unwrap()
            .is_empty()
    );

    // By presented token, oldest first, within the connection only.
    assert_eq!(
        store.attempts_presenting(&api, "h1").await.unwrap(),
        vec![finished, tie]
    );
    assert_eq!(
        store.attempts_presenting(&other, "h1").await.unwrap(),
        vec![elsewhere]
    );
    assert_eq!(
        store.attempts_presenting(&api, "h2").await.unwrap(),
        vec![second]
    );
    assert!(
        store
            .attempts_presenting(&other, "h2")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .attempts_presenting(&api, "h9")
            .await
            .unwrap()
            .is_empty()
    );
}

pub(super) async fn lineage_and_events_survive_deleting_the_connection(store: Arc<dyn Store>) {
    let ring = ring();
    let key = key("00D000000000062", "api");
    connected(&store, &ring, &key).await;
    let entry = attempt("a1", &key, "h1", at(5));
    store.record_attempt(&entry).await.unwrap();
    let event = NewEvent {
        at: at(6),
        kind: "connection.needs_reauth".to_string(),
        org_id: Some(key.org_id.clone()),
        context: Some(key.context.clone()),
        detail: r#"{"cause":"invalid_grant"}"#.to_string(),
    };
    let id = store.record_event(&event).await.unwrap();

    assert!(store.delete_connection(&key).await.unwrap().is_some());
    assert_eq!(store.attempts(&key, 10).await.unwrap(), vec![entry.clone()]);
    assert_eq!(
        store.attempts_presenting(&key, "h1").await.unwrap(),
        vec![entry]
    );
    let filter = EventFilter {
        key: Some(key.clone()),
        ..EventFilter::default()
    };
    let events = store.events(&filter).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].id, events[0].kind.as_str()),
        (id, "connection.needs_reauth")
    );

    // A new connection under the same key sees the old lineage: it is keyed by org and context.
    connected(&store, &ring, &key).await;
    assert_eq!(store.attempts(&key, 10).await.unwrap().len(), 1);
}
