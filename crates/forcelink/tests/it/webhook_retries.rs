//! An operator retries failed webhook deliveries through the admin API: the delivery is sent
//! again at once under the same `webhook-id`, with a fresh budget of attempts; a retry that
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

#[tokio::test]
async fn a_failed_delivery_retried_by_the_operator_gets_a_fresh_budget() {
    let mut app = start_app().await;
    app.restart_with(|config| config.webhooks.max_attempts = 2)
        .await;
    let mut receiver = Receiver::start().await;
    // Two attempts fail it for good; the operator's retry fails once more, then succeeds.
    receiver.fail_next(3);
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

    // The endpoint's failed deliveries go out again at once: the third attempt fails, but the
    // fresh budget keeps the delivery pending for a fourth, which succeeds.
    let (status, body) = retry(&app, &format!("/v1/webhooks/endpoints/{endpoint_id}/retry")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["retried"], json!([delivery_id]));
    receiver.wait_for(3).await;
    let pending = delivery_when(&app, event_id, |d| d["attempts"] == 3).await;
    assert_eq!(pending["state"], "pending", "{pending}");
    app.advance(PAST_RETRY);
    let received = receiver.wait_for(4).await;
    let delivered = delivery_when(&app, event_id, |d| d["state"] == "delivered").await;
    assert!(
        received.iter().all(|request| request.id == delivery_id),
        "one webhook-id throughout"
    );
    assert_eq!(attempt_numbers(&delivered), [1, 2, 3, 4]);
    assert_eq!(backlog_gauges(&app, &endpoint_id).await, (0.0, 0.0, 0.0));

    // A delivered one is not retried; a retry of an endpoint with none failed retries none.
    let (status, body) = retry(
        &app,
        &format!("/v1/webhooks/deliveries/{delivery_id}/retry"),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("delivery_not_failed")),
        "{body}"
    );
    let (status, body) = retry(&app, &format!("/v1/webhooks/endpoints/{endpoint_id}/retry")).await;
    assert_eq!((status, &body["retried"]), (200, &json!([])), "{body}");
    delivery_when(&app, event_id, |d| {
        d["state"] == "delivered" && d["attempts"] == 4
    })
    .await;
    assert_eq!(receiver.requests().len(), 4);
    app.finish().await;
}
