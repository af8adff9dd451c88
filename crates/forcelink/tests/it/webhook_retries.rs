//! An operator retries webhook deliveries through the admin API: a failed delivery is sent
//! again at once under the same `webhook-id`, with a fresh budget of attempts, and one waiting
//! for a later retry is brought forward; an endpoint's retry takes its filters; a retry that
//! does not apply is refused with a stable code and changes nothing.

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{LoginKind, TestApp};
use crate::webhooks::{
    PAST_RETRY, Receiver, attempt_numbers, backlog_gauges, create_endpoint, delivery_when,
    event_ids, start_app,
};

async fn retry(app: &TestApp, path: &str) -> (u16, Value) {
    app.api(Method::POST, path, None).await
}

/// A retry by hand of a delivery that has nothing to retry: 409 and `code`.
async fn refused(app: &TestApp, delivery_id: &str, code: &str) {
    let (status, body) = retry(app, &format!("/v1/webhooks/deliveries/{delivery_id}/retry")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some(code)),
        "{body}"
    );
}

#[tokio::test]
async fn the_operator_retries_a_failed_delivery_and_brings_a_waiting_one_forward() {
    let mut app = start_app().await;
    app.restart_with(|config| config.webhooks.max_attempts = 2)
        .await;
    let mut receiver = Receiver::start().await;
    // Two attempts fail it for good; after each retry by hand it fails again, until the fifth.
    receiver.fail_next(4);
    let endpoint = create_endpoint(&app, json!({ "url": receiver.url })).await;
    let endpoint_id = endpoint["id"].as_str().unwrap().to_string();
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    let event_id = event_ids(&app, org.id(), "connection.created").await[0];
    receiver.wait_for(1).await;
    delivery_when(&app, event_id, |d| d["attempts"] == 1).await;
    app.advance(PAST_RETRY);
    receiver.wait_for(2).await;
    let failed = delivery_when(&app, event_id, |d| d["state"] == "failed").await;
    assert_eq!(
        (&failed["retried_at"], &failed["attempts_before_retry"]),
        (&Value::Null, &json!(0)),
        "{failed}"
    );
    let delivery_id = failed["id"].as_str().unwrap().to_string();
    assert_eq!(backlog_gauges(&app, &endpoint_id).await.1, 1.0);

    // Retries that do not apply: 404 / 409 with stable codes, and nothing changes.
    let untouched = |d: &Value| d["state"] == "failed" && d["attempts"] == 2;
    for (path, status, code) in [
        (
            "/v1/webhooks/deliveries/msg_unknown/retry".to_string(),
            404,
            "delivery_not_found",
        ),
        (
            "/v1/webhooks/endpoints/whe_unknown/retry".to_string(),
            404,
            "endpoint_not_found",
        ),
        (
            format!("/v1/webhooks/endpoints/{endpoint_id}/retry?since=yesterday"),
            400,
            "invalid_query",
        ),
        (
            format!("/v1/webhooks/endpoints/{endpoint_id}/retry?event=connection.exploded"),
            400,
            "invalid_event_kind",
        ),
        (
            format!("/v1/webhooks/endpoints/{endpoint_id}/retry?kind=connection.revoked"),
            400,
            "invalid_query",
        ),
    ] {
        let (got, body) = retry(&app, &path).await;
        assert_eq!(
            (got, body["error"].as_str()),
            (status, Some(code)),
            "{body}"
        );
        delivery_when(&app, event_id, untouched).await;
    }
    let (status, body) = app
        .call_as(
            &app.agent_key,
            Method::POST,
            &format!("/v1/webhooks/deliveries/{delivery_id}/retry"),
            None,
        )
        .await;
    assert_eq!(status, 403, "agents cannot retry: {body}");
    delivery_when(&app, event_id, untouched).await;
    // Filters that leave the delivery out: another kind, or queued before `since`.
    for query in ["event=connection.revoked", "since=2999-01-01T00:00:00Z"] {
        let (status, body) = retry(
            &app,
            &format!("/v1/webhooks/endpoints/{endpoint_id}/retry?{query}"),
        )
        .await;
        assert_eq!(
            (status, body),
            (200, json!({ "retried": [], "brought_forward": [] })),
            "{query}"
        );
        delivery_when(&app, event_id, untouched).await;
    }

    // The failed delivery goes out again at once: the third attempt fails, but the fresh
    // budget keeps the delivery pending, waiting since the retry, not since it was queued.
    let (status, body) = retry(
        &app,
        &format!("/v1/webhooks/deliveries/{delivery_id}/retry"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({ "retried": [delivery_id], "brought_forward": [] })
    );
    receiver.wait_for(3).await;
    let pending = delivery_when(&app, event_id, |d| d["attempts"] == 3).await;
    assert_eq!(pending["state"], "pending", "{pending}");
    assert_eq!(pending["attempts_before_retry"], 2, "{pending}");
    assert!(pending["retried_at"].is_string(), "{pending}");
    let (pending_count, failed_count, oldest) = backlog_gauges(&app, &endpoint_id).await;
    assert_eq!((pending_count, failed_count), (1.0, 0.0));
    assert!(
        oldest < PAST_RETRY as f64,
        "waiting since the retry: {oldest} s"
    );

    // Waiting for its retry, it is brought forward by hand: the fourth attempt goes out with
    // the clock standing still. Held by the receiver, it is in flight: a second retry by hand
    // is refused and changes nothing.
    receiver.hold();
    let (status, body) = retry(
        &app,
        &format!("/v1/webhooks/deliveries/{delivery_id}/retry"),
    )
    .await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({ "retried": [], "brought_forward": [delivery_id] })
        )
    );
    receiver.wait_for(4).await;
    refused(&app, &delivery_id, "delivery_due").await;
    receiver.answer();
    // Its budget was not renewed: the fourth attempt fails it again.
    let failed = delivery_when(&app, event_id, |d| {
        d["state"] == "failed" && d["attempts"] == 4
    })
    .await;
    assert_eq!(failed["attempts_before_retry"], 2, "{failed}");

    // A retry of the whole endpoint sends it a fifth time.
    let (status, body) = retry(&app, &format!("/v1/webhooks/endpoints/{endpoint_id}/retry")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({ "retried": [delivery_id], "brought_forward": [] })
    );
    let received = receiver.wait_for(5).await;
    let delivered = delivery_when(&app, event_id, |d| d["state"] == "delivered").await;
    assert!(
        received.iter().all(|request| request.id == delivery_id),
        "one webhook-id throughout"
    );
    assert_eq!(attempt_numbers(&delivered), [1, 2, 3, 4, 5]);
    assert_eq!(delivered["attempts_before_retry"], 4, "{delivered}");
    assert_eq!(backlog_gauges(&app, &endpoint_id).await, (0.0, 0.0, 0.0));

    // A delivered one is not retried; a retry of an endpoint with none failed retries none.
    refused(&app, &delivery_id, "delivery_delivered").await;
    let (status, body) = retry(&app, &format!("/v1/webhooks/endpoints/{endpoint_id}/retry")).await;
    assert_eq!(
        (status, body),
        (200, json!({ "retried": [], "brought_forward": [] }))
    );
    delivery_when(&app, event_id, |d| {
        d["state"] == "delivered" && d["attempts"] == 5
    })
    .await;
    assert_eq!(receiver.requests().len(), 5);
    app.finish().await;
}

/// A delivery whose retry falls due while another endpoint's receiver hangs is sent when due,
/// not when the hung request ends: the worker looks for due deliveries every poll interval
/// while it has free slots, even with requests in flight.
#[tokio::test]
async fn a_retry_that_falls_due_while_another_receiver_hangs_is_sent_when_due() {
    let mut app = start_app().await;
    app.restart_with(|config| config.webhooks.request_timeout_seconds = 300)
        .await;
    let mut hung = Receiver::start().await;
    let mut flaky = Receiver::start().await;
    hung.hold();
    flaky.fail_next(1);
    for receiver in [&hung, &flaky] {
        create_endpoint(
            &app,
            json!({ "url": receiver.url, "events": ["connection.created"] }),
        )
        .await;
    }
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    flaky.wait_for(1).await;
    let event_id = event_ids(&app, org.id(), "connection.created").await[0];
    delivery_when(&app, event_id, |d| {
        d["attempts"] == 1 && d["state"] == "pending"
    })
    .await;
    hung.wait_for(1).await;
    // Nothing wakes the worker: only the clock moves past the retry.
    app.advance(PAST_RETRY);
    flaky.wait_for(2).await;
    delivery_when(&app, event_id, |d| d["state"] == "delivered").await;
    hung.answer();
    app.finish().await;
}

/// From a terminal: `forcelink webhooks` lists the endpoints (no secret) and the failed
/// delivery, and retries it by hand; the serving instance sends it at its next poll. Mistakes
/// say how to fix them and change nothing.
#[tokio::test]
async fn the_cli_lists_a_failed_delivery_and_retries_it() {
    let mut app = start_app().await;
    app.restart_with(|config| config.webhooks.max_attempts = 1)
        .await;
    let mut receiver = Receiver::start().await;
    receiver.fail_next(1);
    let endpoint = create_endpoint(&app, json!({ "url": receiver.url })).await;
    let endpoint_id = endpoint["id"].as_str().unwrap().to_string();
    let secret = endpoint["secret"].as_str().unwrap().to_string();
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    let event_id = event_ids(&app, org.id(), "connection.created").await[0];
    let failed = delivery_when(&app, event_id, |d| d["state"] == "failed").await;
    let delivery_id = failed["id"].as_str().unwrap().to_string();

    let (ok, listed, stderr) = app.cli(&["webhooks", "endpoints"]);
    assert!(ok, "{stderr}");
    assert!(listed.contains(&endpoint_id), "{listed}");
    assert!(!listed.contains(&secret) && !stderr.contains(&secret));
    let (ok, json_list, stderr) =
        app.cli(&["webhooks", "deliveries", "--state", "failed", "--json"]);
    assert!(ok, "{stderr}");
    let views: Value = serde_json::from_str(&json_list).unwrap();
    assert_eq!(views[0]["id"], delivery_id, "{views}");
    assert_eq!(views[0]["attempts"], 1, "{views}");
    let (ok, table, _) = app.cli(&["webhooks", "deliveries", "--endpoint", &endpoint_id]);
    assert!(
        ok && table.contains(&delivery_id) && table.contains("HTTP 500"),
        "{table}"
    );

    // Mistakes: each names the fix, exits non-zero and changes nothing.
    for (args, says) in [
        (vec!["webhooks", "retry"], "--delivery"),
        (
            vec![
                "webhooks",
                "retry",
                "--endpoint",
                &endpoint_id,
                "--since",
                "yesterday",
            ],
            "RFC 3339",
        ),
        (
            vec![
                "webhooks",
                "retry",
                "--endpoint",
                &endpoint_id,
                "--event",
                "connection.exploded",
            ],
            "known kinds",
        ),
        (
            vec!["webhooks", "retry", "--delivery", "msg_unknown"],
            "no webhook delivery",
        ),
        (
            vec!["webhooks", "deliveries", "--state", "lost"],
            "pending, delivered or failed",
        ),
    ] {
        let (ok, _, stderr) = app.cli(&args);
        assert!(!ok, "{args:?} succeeded");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    delivery_when(&app, event_id, |d| {
        d["state"] == "failed" && d["attempts"] == 1
    })
    .await;

    let (ok, stdout, stderr) = app.cli(&["webhooks", "retry", "--delivery", &delivery_id]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("retried 1 failed") && stdout.contains(&delivery_id),
        "{stdout}"
    );
    receiver.wait_for(2).await;
    let delivered = delivery_when(&app, event_id, |d| d["state"] == "delivered").await;
    assert_eq!(attempt_numbers(&delivered), [1, 2]);
    let (ok, _, stderr) = app.cli(&["webhooks", "retry", "--delivery", &delivery_id]);
    assert!(!ok && stderr.contains("delivered"), "{stderr}");
    app.finish().await;
}
