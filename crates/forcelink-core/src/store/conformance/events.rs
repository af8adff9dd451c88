//! Conformance checks for events (store-assigned increasing ids, filters, limit) and
//! app-wide incidents (raised once across concurrent raisers, cleared once).

use super::fixtures::*;

fn event(kind: &str, key: Option<&ConnectionKey>, second: i64) -> NewEvent {
    NewEvent {
        at: at(second),
        kind: kind.to_string(),
        org_id: key.map(|key| key.org_id.clone()),
        context: key.map(|key| key.context.clone()),
        detail: format!(r#"{{"n":{second},"text":"é \"quoted\""}}"#),
    }
}

pub(super) async fn events_have_increasing_ids_and_filter_by_key_cursor_and_limit(
    store: Arc<dyn Store>,
) {
    let api = key("00D000000000062", "api");
    let reports = key("00D000000000062", "reports");
    let other = key("00D000000000063", "api");
    assert!(
        store
            .events(&EventFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    let written = [
        event("connection.connected", Some(&api), 1),
        event("app.misconfigured", None, 2),
        event("connection.ip_blocked", Some(&reports), 3),
        event("connection.needs_reauth", Some(&api), 4),
        event("connection.connected", Some(&other), 5),
        event("connection.recovered", Some(&api), 6),
    ];
    let mut ids = Vec::new();
    for new in &written {
        ids.push(store.record_event(new).await.unwrap());
    }
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "ids {ids:?}");

    let all = store.events(&EventFilter::default()).await.unwrap();
    assert_eq!(all.len(), written.len());
    for ((stored, new), id) in all.iter().zip(&written).zip(&ids) {
        assert_eq!(stored.id, *id);
        assert_eq!(
            (
                &stored.at,
                &stored.kind,
                &stored.org_id,
                &stored.context,
                &stored.detail
            ),
            (&new.at, &new.kind, &new.org_id, &new.context, &new.detail)
        );
    }
    let ids_of = |events: Vec<crate::store::Event>| -> Vec<i64> {
        events.into_iter().map(|event| event.id).collect()
    };

    let by_key = EventFilter {
        key: Some(api.clone()),
        ..EventFilter::default()
    };
    assert_eq!(
        ids_of(store.events(&by_key).await.unwrap()),
        vec![ids[0], ids[3], ids[5]]
    );
    let after = EventFilter {
        after_id: Some(ids[2]),
        ..EventFilter::default()
    };
    assert_eq!(
        ids_of(store.events(&after).await.unwrap()),
        ids[3..].to_vec()
    );
    let limited = EventFilter {
        limit: 2,
        ..after.clone()
    };
    assert_eq!(
        ids_of(store.events(&limited).await.unwrap()),
        ids[3..5].to_vec()
    );
    let both = EventFilter {
        key: Some(api.clone()),
        after_id: Some(ids[0]),
        limit: 1,
    };
    assert_eq!(ids_of(store.events(&both).await.unwrap()), vec![ids[3]]);
    let past_the_end = EventFilter {
        after_id: Some(ids[5]),
        ..EventFilter::default()
    };
    assert!(store.events(&past_the_end).await.unwrap().is_empty());

    // Concurrent writers still get distinct, increasing ids after the ones above.
    let mut tasks = Vec::new();
    for index in 0..10 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store
                .record_event(&event("connection.refreshed", None, 10 + index))
                .await
                .unwrap()
        }));
    }
    let mut concurrent = Vec::new();
    for task in tasks {
        concurrent.push(task.await.unwrap());
    }
    concurrent.sort_unstable();
    concurrent.dedup();
    assert_eq!(concurrent.len(), 10);
    assert!(concurrent[0] > ids[5]);
    assert_eq!(
        ids_of(store.events(&past_the_end).await.unwrap()),
        concurrent
    );
}

pub(super) async fn incidents_are_raised_once_and_cleared_once(store: Arc<dyn Store>) {
    assert!(store.incidents().await.unwrap().is_empty());
    let mut tasks = Vec::new();
    for index in 0..8 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let raised = store
                .raise_incident("app.misconfigured", &format!("raiser {index}"), at(index))
                .await
                .unwrap();
            (index, raised)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (index, raised) = task.await.unwrap();
        if raised {
            winners.push(index);
        }
    }
    assert_eq!(winners.len(), 1, "winners {winners:?}");
    let winner = winners[0];
    let raised = store.incidents().await.unwrap();
    assert_eq!(raised.len(), 1);
    assert!(raised[0].active);
    assert_eq!(raised[0].kind, "app.misconfigured");
    assert_eq!(
        (raised[0].since, raised[0].detail.clone()),
        (at(winner), format!("raiser {winner}"))
    );

    // Raising it again while active changes nothing, `since` included.
    assert!(
        !store
            .raise_incident("app.misconfigured", "later", at(30))
            .await
            .unwrap()
    );
    assert_eq!(store.incidents().await.unwrap(), raised);

    assert!(
        store
            .clear_incident("app.misconfigured", at(40))
            .await
            .unwrap()
    );
    assert!(
        !store
            .clear_incident("app.misconfigured", at(41))
            .await
            .unwrap()
    );
    assert!(!store.clear_incident("never.raised", at(41)).await.unwrap());
    let cleared = store.incidents().await.unwrap();
    assert_eq!(cleared.len(), 1);
    assert!(!cleared[0].active);
    assert_eq!(cleared[0].since, at(40));

    assert!(
        store
            .raise_incident("app.misconfigured", "again", at(50))
            .await
            .unwrap()
    );
    assert!(
        store
            .raise_incident("app.ip_blocked", "egress", at(51))
            .await
            .unwrap()
    );
    let listed = store.incidents().await.unwrap();
    let kinds: Vec<&str> = listed
        .iter()
        .map(|incident| incident.kind.as_str())
        .collect();
    assert_eq!(kinds, ["app.ip_blocked", "app.misconfigured"]);
    assert!(listed.iter().all(|incident| incident.active));
    assert_eq!(
        (listed[1].since, listed[1].detail.as_str()),
        (at(50), "again")
    );
}
