//! Webhooks end to end: a real receiving server (axum on 127.0.0.1:0) that records every
//! request and can be told to answer 500 a number of times. Signatures are checked here with
//! an HMAC-SHA256 written from the Standard Webhooks specification (over sha2), never with
//! forcelink's own signing code. Retries are made due by moving the app's clock, not by
//! waiting; waits are for the receiver's requests, with a deadline.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use forcelink::config::{SecretSetting, WebhookEndpointConfig, WebhooksConfig};
use forcelink::webhooks::HttpWebhookSender;
use forcelink_core::webhook::{NewEndpoint, WebhookSender, WebhookSettings};
use forcelink_core::{Broker, Clock};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::faults::{FaultyStore, INJECTED};
use crate::harness::{Backend, LoginKind, Options, TestApp, pg_server_url};

/// A request the receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) id: String,
    timestamp: String,
    signature: String,
    body: String,
}

impl Received {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
    fn kind(&self) -> String {
        self.json()["type"].as_str().unwrap().to_string()
    }
}

#[derive(Debug)]
struct Inbox {
    requests: Mutex<Vec<Received>>,
    /// Answer 500 to this many more requests.
    failures_left: Mutex<u32>,
    /// Requests are answered up to this one (1 for the first to arrive); each later one waits,
    /// after it is recorded.
    answer_upto: tokio::sync::watch::Sender<usize>,
    /// Requests arrived and not yet answered, and the most there ever were at once.
    in_flight: Mutex<(usize, usize)>,
}

#[derive(Debug, Clone)]
pub(crate) struct Receiver {
    pub(crate) url: String,
    inbox: Arc<Inbox>,
    arrived: tokio::sync::watch::Receiver<usize>,
}

async fn record(
    State((inbox, arrived)): State<(Arc<Inbox>, Arc<tokio::sync::watch::Sender<usize>>)>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let count = {
        let mut requests = inbox.requests.lock().unwrap();
        requests.push(Received {
            id: header("webhook-id"),
            timestamp: header("webhook-timestamp"),
            signature: header("webhook-signature"),
            body,
        });
        let mut in_flight = inbox.in_flight.lock().unwrap();
        in_flight.0 += 1;
        in_flight.1 = in_flight.1.max(in_flight.0);
        requests.len()
    };
    let fail = {
        let mut left = inbox.failures_left.lock().unwrap();
        let fail = *left > 0;
        *left = left.saturating_sub(1);
        fail
    };
    arrived.send_replace(count);
    let _ = inbox
        .answer_upto
        .subscribe()
        .wait_for(|upto| count <= *upto)
        .await;
    // Counted out before the answer leaves, so before the sender can free its slot.
    inbox.in_flight.lock().unwrap().0 -= 1;
    if fail {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    }
}

impl Receiver {
    pub(crate) async fn start() -> Receiver {
        let inbox = Arc::new(Inbox {
            requests: Mutex::default(),
            failures_left: Mutex::default(),
            answer_upto: tokio::sync::watch::Sender::new(usize::MAX),
            in_flight: Mutex::default(),
        });
        let (sender, arrived) = tokio::sync::watch::channel(0);
        let router = axum::Router::new()
            .route("/hook", axum::routing::post(record))
            .with_state((inbox.clone(), Arc::new(sender)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Receiver {
            url,
            inbox,
            arrived,
        }
    }

    pub(crate) fn fail_next(&self, times: u32) {
        *self.inbox.failures_left.lock().unwrap() = times;
    }

    /// Requests from now on wait for `answer` (or `answer_arrived`) before they are answered.
    pub(crate) fn hold(&self) {
        let arrived = self.inbox.requests.lock().unwrap().len();
        self.inbox.answer_upto.send_replace(arrived);
    }

    /// Answers every waiting request, and the ones after it at once.
    pub(crate) fn answer(&self) {
        self.inbox.answer_upto.send_replace(usize::MAX);
    }

    /// Answers the requests that have arrived and holds the ones after them; returns how many
    /// have arrived.
    pub(crate) fn answer_arrived(&self) -> usize {
        let requests = self.inbox.requests.lock().unwrap();
        self.inbox.answer_upto.send_replace(requests.len());
        requests.len()
    }

    /// The most requests that were ever waiting for their answer at once.
    pub(crate) fn most_in_flight(&self) -> usize {
        self.inbox.in_flight.lock().unwrap().1
    }

    pub(crate) fn requests(&self) -> Vec<Received> {
        self.inbox.requests.lock().unwrap().clone()
    }

    /// Whether at least `count` requests arrive within `limit`.
    pub(crate) async fn arrived_within(&mut self, count: usize, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.arrived.wait_for(|seen| *seen >= count))
            .await
            .is_ok_and(|changed| changed.is_ok())
    }

    /// Waits (30 s at most) until at least `count` requests have arrived.
    pub(crate) async fn wait_for(&mut self, count: usize) -> Vec<Received> {
        let arrived = tokio::time::timeout(
            Duration::from_secs(30),
            self.arrived.wait_for(|seen| *seen >= count),
        )
        .await
        .is_ok_and(|changed| changed.is_ok());
        let requests = self.requests();
        assert!(
            arrived,
            "the receiver got {} of {count} requests: {requests:?}",
            requests.len()
        );
        requests
    }
}

/// HMAC-SHA256 as RFC 2104 defines it, over sha2: independent of forcelink's code.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner_key: Vec<u8> = block.iter().map(|byte| byte ^ 0x36).collect();
    let outer_key: Vec<u8> = block.iter().map(|byte| byte ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&inner_key)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(&outer_key)
        .chain_update(inner)
        .finalize()
        .into()
}

/// The receiver's check, as docs/webhooks.md tells a receiver to do it.
pub(crate) fn verifies(
    secret: &str,
    id: &str,
    timestamp: &str,
    body: &str,
    signature_header: &str,
) -> bool {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").expect("whsec_ prefix"))
        .unwrap();
    let signed = format!("{id}.{timestamp}.{body}");
    let expected = STANDARD.encode(hmac_sha256(&key, signed.as_bytes()));
    signature_header
        .split(' ')
        .filter_map(|candidate| candidate.strip_prefix("v1,"))
        .any(|candidate| candidate == expected)
}

/// A fresh `whsec_` secret made here (32 random bytes).
fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("whsec_{}", STANDARD.encode(bytes))
}

/// Fast polling and slow, clock-driven retries: a retry happens only when the test moves time.
pub(crate) async fn start_app() -> TestApp {
    start_app_on(Backend::Sqlite).await
}

pub(crate) async fn start_app_on(backend: Backend) -> TestApp {
    let mut app = TestApp::start(Options {
        backend,
        ..Options::default()
    })
    .await;
    app.restart_with(|config| {
        config.webhooks.poll_interval_ms = 20;
        config.webhooks.backoff_base_seconds = 600;
        config.webhooks.backoff_max_seconds = 600;
    })
    .await;
    app
}

/// Past any retry scheduled with the settings of `start_app` (600 s × at most 1.25).
pub(crate) const PAST_RETRY: u64 = 800;

pub(crate) async fn create_endpoint(app: &TestApp, body: Value) -> Value {
    let (status, created) = app
        .api(Method::POST, "/v1/webhooks/endpoints", Some(body))
        .await;
    assert_eq!(status, 201, "{created}");
    created
}

pub(crate) async fn deliveries(app: &TestApp, query: &str) -> Vec<Value> {
    let (status, body) = app
        .api(
            Method::GET,
            &format!("/v1/webhooks/deliveries?{query}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["deliveries"].as_array().unwrap().clone()
}

/// Polls the delivery log (deadline 30 s) until the delivery of `event_id` satisfies `done`.
pub(crate) async fn delivery_when(
    app: &TestApp,
    event_id: i64,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let found = deliveries(app, &format!("event_id={event_id}")).await;
        if let Some(delivery) = found.iter().find(|delivery| done(delivery)) {
            return delivery.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "delivery of event {event_id} never got there: {found:?}"
        );
        tokio::task::yield_now().await;
    }
}

/// The `/metrics` text of the forcelink at `url`.
pub(crate) async fn metrics_text(http: &reqwest::Client, url: &str) -> String {
    http.get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The numbers of a delivery's attempts, as the delivery log lists them.
pub(crate) fn attempt_numbers(delivery: &Value) -> Vec<i64> {
    delivery["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|attempt| attempt["number"].as_i64().unwrap())
        .collect()
}

/// One endpoint's backlog gauges from `/metrics`: (pending, failed, oldest pending seconds).
pub(crate) async fn backlog_gauges(app: &TestApp, endpoint_id: &str) -> (f64, f64, f64) {
    let text = metrics_text(&app.http, &app.url).await;
    let value = |name: &str, state: Option<&str>| -> f64 {
        let line = text
            .lines()
            .find(|line| {
                line.starts_with(&format!("{name}{{"))
                    && line.contains(&format!("endpoint=\"{endpoint_id}\""))
                    && state.is_none_or(|state| line.contains(&format!("state=\"{state}\"")))
            })
            .unwrap_or_else(|| panic!("no {name} {state:?} for {endpoint_id} in:\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    (
        value("forcelink_webhook_deliveries", Some("pending")),
        value("forcelink_webhook_deliveries", Some("failed")),
        value("forcelink_webhook_oldest_pending_seconds", None),
    )
}

pub(crate) async fn event_ids(app: &TestApp, org_id: &str, kind: &str) -> Vec<i64> {
    let (_, body) = app
        .api(Method::GET, &format!("/v1/events?org_id={org_id}"), None)
        .await;
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["kind"] == kind)
        .map(|event| event["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn signatures_verify_with_the_documented_scheme_and_a_tampered_body_fails() {
    let mut app = start_app().await;
    let mut receiver = Receiver::start().await;
    let created = create_endpoint(&app, json!({ "url": receiver.url })).await;
    let secret = created["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;

    let received = receiver.wait_for(1).await;
    let message = &received[0];
    assert!(message.id.starts_with("msg_"), "{message:?}");
    let sent_at: i64 = message.timestamp.parse().unwrap();
    assert!((app.clock.now().timestamp() - sent_at).abs() < 60);
    assert!(
        verifies(
            &secret,
            &message.id,
            &message.timestamp,
            &message.body,
            &message.signature
        ),
        "{message:?}"
    );
    let tampered = message
        .body
        .replace("connection.created", "connection.revoked");
    assert_ne!(tampered, message.body);
    for (id, timestamp, body) in [
        (
            message.id.as_str(),
            message.timestamp.as_str(),
            tampered.as_str(),
        ),
        (
            "msg_other",
            message.timestamp.as_str(),
            message.body.as_str(),
        ),
        (message.id.as_str(), "1", message.body.as_str()),
    ] {
        assert!(!verifies(&secret, id, timestamp, body, &message.signature));
    }
    assert!(!verifies(
        &new_secret(),
        &message.id,
        &message.timestamp,
        &message.body,
        &message.signature
    ));

    let body = message.json();
    let created_events = event_ids(&app, org.id(), "connection.created").await;
    assert_eq!(body["type"], "connection.created");
    assert_eq!(body["data"]["event_id"], created_events[0]);
    assert_eq!(body["data"]["org_id"], org.id());
    assert_eq!(body["data"]["context"], "api");
    assert_eq!(body["data"]["detail"]["generation"], 1);
    let delivered = delivery_when(&app, created_events[0], |d| d["state"] == "delivered").await;
    assert_eq!(delivered["id"], message.id.as_str());
    assert_eq!(delivered["attempts"], 1);
    assert_eq!(delivered["last_status_code"], 204);
    app.finish().await;
}

#[tokio::test]
async fn a_receiver_that_answers_500_twice_gets_the_event_on_the_third_try() {
    let mut app = start_app().await;
    let mut receiver = Receiver::start().await;
    receiver.fail_next(2);
    let endpoint =
        create_endpoint(&app, json!({ "url": receiver.url, "secret": new_secret() })).await;
    let endpoint_id = endpoint["id"].as_str().unwrap();
    assert_eq!(backlog_gauges(&app, endpoint_id).await, (0.0, 0.0, 0.0));
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    let event_id = event_ids(&app, org.id(), "connection.created").await[0];

    receiver.wait_for(1).await;
    let first = delivery_when(&app, event_id, |d| d["attempts"] == 1).await;
    assert_eq!(first["state"], "pending");
    let (pending, failed, _) = backlog_gauges(&app, endpoint_id).await;
    assert_eq!(
        (pending, failed),
        (1.0, 0.0),
        "the retried delivery is pending"
    );
    assert_eq!(first["last_status_code"], 500);
    assert_eq!(first["last_error"], "HTTP 500");
    let next: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(first["next_attempt_at"].clone()).unwrap();
    let wait = next - app.clock.now();
    assert!(
        wait > chrono::Duration::seconds(400) && wait <= chrono::Duration::seconds(750),
        "backoff with jitter around 600 s: {wait}"
    );

    app.advance(PAST_RETRY);
    receiver.wait_for(2).await;
    delivery_when(&app, event_id, |d| d["attempts"] == 2).await;
    let (pending, _, oldest) = backlog_gauges(&app, endpoint_id).await;
    assert_eq!(pending, 1.0);
    assert!(
        oldest >= PAST_RETRY as f64,
        "queued before the clock moved: {oldest}"
    );
    app.advance(PAST_RETRY);
    let received = receiver.wait_for(3).await;
    let delivered = delivery_when(&app, event_id, |d| d["state"] == "delivered").await;

    assert_eq!(received.len(), 3, "nothing after the success: {received:?}");
    assert!(
        received.iter().all(|request| request.id == received[0].id),
        "one webhook-id on every attempt"
    );
    assert_eq!(delivered["id"], received[0].id.as_str());
    assert_eq!(delivered["attempts"], 3);
    assert!(delivered["next_attempt_at"].is_null());
    let statuses: Vec<i64> = delivered["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|attempt| attempt["status_code"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, vec![500, 500, 204]);
    assert_eq!(attempt_numbers(&delivered), vec![1, 2, 3]);
    assert_eq!(
        backlog_gauges(&app, endpoint_id).await,
        (0.0, 0.0, 0.0),
        "a cleared backlog reads 0, not its last value"
    );
    app.finish().await;
}

/// A deleted endpoint's backlog gauges are gone from `/metrics`, not left at the counts it had
/// when it was deleted (nor at 0, as a series of an endpoint that no longer exists).
#[tokio::test]
async fn a_deleted_endpoint_leaves_no_backlog_gauges() {
    let mut app = start_app().await;
    let receiver = Receiver::start().await;
    receiver.fail_next(u32::MAX);
    let endpoint =
        create_endpoint(&app, json!({ "url": receiver.url, "secret": new_secret() })).await;
    let endpoint_id = endpoint["id"].as_str().unwrap();
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    let event_id = event_ids(&app, org.id(), "connection.created").await[0];
    delivery_when(&app, event_id, |d| d["attempts"] == 1).await;
    assert_eq!(backlog_gauges(&app, endpoint_id).await.0, 1.0);
    let (status, body) = app
        .api(
            Method::DELETE,
            &format!("/v1/webhooks/endpoints/{endpoint_id}"),
            None,
        )
        .await;
    assert!(status == 200 || status == 204, "{status}: {body}");
    let text = metrics_text(&app.http, &app.url).await;
    let series: Vec<&str> = text
        .lines()
        .filter(|line| line.contains(&format!("endpoint=\"{endpoint_id}\"")))
        .collect();
    assert!(series.is_empty(), "{series:?}");
    assert!(
        text.contains("# TYPE forcelink_webhook_deliveries gauge"),
        "{text}"
    );
    app.finish().await;
}

/// A receiver that is slow to answer holds only its own deliveries, and at most
/// `per_endpoint_concurrency` of the worker's slots: while every request to it waits, another
/// endpoint still gets each new event, and nothing is lost once it answers.
#[tokio::test]
async fn a_slow_receiver_does_not_hold_up_another_endpoint() {
    let mut app = start_app().await;
    app.restart_with(|config| {
        config.webhooks.concurrency = 4;
        config.webhooks.per_endpoint_concurrency = 2;
        // Longer than the test's deadline: a worker that waited for the slow receiver fails.
        config.webhooks.request_timeout_seconds = 300;
    })
    .await;
    let mut slow = Receiver::start().await;
    let mut fast = Receiver::start().await;
    slow.hold();
    for receiver in [&slow, &fast] {
        create_endpoint(
            &app,
            json!({ "url": receiver.url, "events": ["connection.created"] }),
        )
        .await;
    }
    // Four events: without the per-endpoint bound the slow receiver's four deliveries would
    // fill all four slots.
    let mut orgs = Vec::new();
    for _ in 0..4 {
        let org = app.org(LoginKind::Production).await;
        app.connect_ok(&org).await;
        orgs.push(org);
    }

    slow.wait_for(2).await;
    let received = fast.wait_for(4).await;
    assert!(
        received
            .iter()
            .all(|request| request.kind() == "connection.created"),
        "{received:?}"
    );
    assert_eq!(
        received
            .iter()
            .map(|request| request.json()["data"]["org_id"]
                .as_str()
                .unwrap()
                .to_string())
            .collect::<std::collections::BTreeSet<_>>(),
        orgs.iter().map(|org| org.id().to_string()).collect(),
        "each new connection's event reached the fast endpoint"
    );
    assert_eq!(
        slow.requests().len(),
        2,
        "at most two of the slow receiver's deliveries in flight"
    );

    slow.answer();
    slow.wait_for(4).await;
    for org in &orgs {
        let event_id = event_ids(&app, org.id(), "connection.created").await[0];
        let delivered = deliveries(&app, &format!("event_id={event_id}")).await;
        assert_eq!(delivered.len(), 2, "{delivered:?}");
        for delivery in &delivered {
            delivery_when(&app, event_id, |d| {
                d["id"] == delivery["id"] && d["state"] == "delivered"
            })
            .await;
        }
    }
    assert_eq!(slow.requests().len(), 4, "each sent once");
    app.finish().await;
}

/// An app whose webhook worker is off (the test runs ticks itself), an endpoint for
/// `connection.created` at a receiver that holds every request until told to answer, and a
/// sender for the test's own ticks.
async fn worker_off_with_a_held_receiver() -> (TestApp, Receiver, Arc<dyn WebhookSender>) {
    let mut app = start_app().await;
    app.restart_with(|config| config.webhooks.enabled = false)
        .await;
    let receiver = Receiver::start().await;
    receiver.hold();
    create_endpoint(
        &app,
        json!({ "url": receiver.url, "events": ["connection.created"] }),
    )
    .await;
    let sender: Arc<dyn WebhookSender> =
        Arc::new(HttpWebhookSender::new(Duration::from_secs(300)).unwrap());
    (app, receiver, sender)
}

/// A delivery claim that fails while deliveries are in flight stops the claiming, but the tick
/// returns its error only after those deliveries are answered and recorded (they hold leases);
/// the next tick sends what the failed claim did not take.
#[tokio::test]
async fn a_failed_claim_lets_the_deliveries_in_flight_finish_and_the_next_tick_sends_the_rest() {
    let (mut app, mut receiver, sender) = worker_off_with_a_held_receiver().await;
    let only_created = || Some(vec!["connection.created".to_string()]);
    for _ in 0..2 {
        let org = app.org(LoginKind::Production).await;
        app.connect_ok(&org).await;
    }
    let faulty = Arc::new(FaultyStore::new(app.broker().store().clone()));
    faulty.fail_webhook_claim_after(1);
    let broker = Arc::new(app.broker().on_store(faulty.clone()));
    let settings = WebhookSettings {
        concurrency: 3,
        ..forcelink::webhooks::settings(&WebhooksConfig::default())
    };
    let tick = tokio::spawn({
        let (broker, sender, settings) = (broker.clone(), sender.clone(), settings.clone());
        async move { broker.webhook_tick(&sender, &settings).await }
    });
    // The first claim took both deliveries; they wait for their answers.
    receiver.wait_for(2).await;

    // A third event, then a new endpoint, which wakes the tick: it fans the event out and
    // claims again, and that claim fails.
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    broker
        .create_webhook_endpoint(NewEndpoint {
            url: receiver.url.clone(),
            event_kinds: only_created(),
            secret: None,
        })
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !faulty.webhook_claim_failed() {
        assert!(std::time::Instant::now() < deadline, "no claim failed");
        tokio::task::yield_now().await;
    }
    assert!(
        !tick.is_finished(),
        "the tick waits for the deliveries in flight"
    );
    receiver.answer();
    let error = tick
        .await
        .unwrap()
        .expect_err("the failed claim ends the tick with an error");
    assert!(error.to_string().contains(INJECTED), "{error}");
    let delivered = deliveries(&app, "state=delivered").await;
    assert_eq!(delivered.len(), 2, "answered and recorded: {delivered:?}");
    let pending = deliveries(&app, "state=pending").await;
    assert_eq!(pending.len(), 1, "the third waits: {pending:?}");
    assert_eq!(pending[0]["attempts"], 0);

    let report = broker.webhook_tick(&sender, &settings).await.unwrap();
    assert_eq!((report.claimed, report.delivered), (1, 1), "{report:?}");
    assert_eq!(receiver.requests().len(), 3);
    assert!(deliveries(&app, "state=pending").await.is_empty());
    app.finish().await;
}

/// One connection's delivery sent by a tick of a worker whose store has `fault`; checks that
/// it was delivered with one attempt in the log, and returns what a second tick needs.
async fn one_delivery_through(
    fault: impl FnOnce(&FaultyStore),
) -> (TestApp, Receiver, Arc<dyn WebhookSender>, Arc<Broker>) {
    let (mut app, receiver, sender) = worker_off_with_a_held_receiver().await;
    receiver.answer();
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    let faulty = Arc::new(FaultyStore::new(app.broker().store().clone()));
    fault(&faulty);
    let broker = Arc::new(app.broker().on_store(faulty));
    let settings = forcelink::webhooks::settings(&WebhooksConfig::default());
    let report = broker.webhook_tick(&sender, &settings).await.unwrap();
    assert_eq!((report.claimed, report.delivered), (1, 1), "{report:?}");
    let delivered = deliveries(&app, "state=delivered").await;
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert_eq!(attempt_numbers(&delivered[0]), [1]);
    (app, receiver, sender, broker)
}

/// Recording an attempt that the store refuses as unavailable is tried again after a short
/// pause: the delivery is recorded once and not sent again when its lease lapses.
#[tokio::test]
async fn an_attempt_the_store_fails_to_record_twice_is_recorded_on_the_third_try() {
    let (app, mut receiver, _, _) =
        one_delivery_through(|faulty| faulty.fail_webhook_finishes(2)).await;
    assert_eq!(receiver.wait_for(1).await.len(), 1);
    app.finish().await;
}

/// A record of an attempt that lands but whose answer is lost is tried again; the second try
/// finds the delivery already recorded and changes nothing: one attempt in the log, delivered,
/// never sent again.
#[tokio::test]
async fn an_attempt_recorded_with_its_answer_lost_is_recorded_once() {
    let (app, receiver, sender, broker) =
        one_delivery_through(|faulty| faulty.lose_webhook_finish_answers(1)).await;
    // Past any lease: nothing is due, so nothing is sent again.
    app.advance(PAST_RETRY);
    let settings = forcelink::webhooks::settings(&WebhooksConfig::default());
    let report = broker.webhook_tick(&sender, &settings).await.unwrap();
    assert_eq!(report.claimed, 0, "{report:?}");
    assert_eq!(receiver.requests().len(), 1);
    app.finish().await;
}

/// A tick dropped while a delivery waits for its answer (the worker stopped at shutdown or
/// restart) leaves that delivery running: it gets its answer and records it, and is not sent
/// again when its lease would have lapsed.
#[tokio::test]
async fn a_cancelled_tick_lets_its_deliveries_finish_and_record_their_answers() {
    let (mut app, mut receiver, sender) = worker_off_with_a_held_receiver().await;
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    let event_id = event_ids(&app, org.id(), "connection.created").await[0];
    let broker = app.broker().clone();
    let settings = forcelink::webhooks::settings(&WebhooksConfig::default());
    let tick = tokio::spawn(async move { broker.webhook_tick(&sender, &settings).await });
    receiver.wait_for(1).await;

    tick.abort();
    assert!(tick.await.unwrap_err().is_cancelled());
    receiver.answer();
    let delivered = delivery_when(&app, event_id, |d| d["state"] == "delivered").await;
    assert_eq!(delivered["attempts"], 1);
    assert_eq!(receiver.requests().len(), 1);
    app.finish().await;
}

#[tokio::test]
async fn an_event_queued_before_a_restart_is_delivered_after_it() {
    queued_before_a_restart_is_delivered_after_it(Backend::Sqlite).await;
}

#[tokio::test]
async fn an_event_queued_before_a_restart_is_delivered_after_it_on_postgres() {
    if pg_server_url().is_some() {
        queued_before_a_restart_is_delivered_after_it(Backend::Postgres).await;
    }
}

async fn queued_before_a_restart_is_delivered_after_it(backend: Backend) {
    let mut app = start_app_on(backend).await;
    let mut receiver = Receiver::start().await;
    let secret = new_secret();
    let url = receiver.url.clone();
    let configured = secret.clone();
    // A config-file endpoint this time: registered at start, the same row after restarts.
    app.restart_with(move |config| {
        config.webhooks.endpoints.push(WebhookEndpointConfig {
            url,
            secret: Some(SecretSetting(configured)),
            events: Some(vec![
                "connection.created".into(),
                "connection.revoked".into(),
            ]),
        });
    })
    .await;
    receiver.fail_next(1);
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    let created = event_ids(&app, org.id(), "connection.created").await[0];
    receiver.wait_for(1).await;
    delivery_when(&app, created, |d| {
        d["attempts"] == 1 && d["state"] == "pending"
    })
    .await;

    // Queued with a retry due in ten minutes; the process goes away and comes back.
    app.restart_with(|_| {}).await;
    app.advance(PAST_RETRY);
    let received = receiver.wait_for(2).await;
    let delivered = delivery_when(&app, created, |d| d["state"] == "delivered").await;
    assert_eq!(delivered["attempts"], 2);
    assert_eq!(
        received[1].id, received[0].id,
        "the same webhook-id after the restart"
    );
    assert!(verifies(
        &secret,
        &received[1].id,
        &received[1].timestamp,
        &received[1].body,
        &received[1].signature
    ));

    // An event recorded while no worker runs is delivered once one does.
    app.restart_with(|config| config.webhooks.enabled = false)
        .await;
    let (status, body) = app
        .api(
            Method::DELETE,
            &format!("/v1/connections/{}", org.id()),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let revoked = event_ids(&app, org.id(), "connection.revoked").await[0];
    app.restart_with(|config| config.webhooks.enabled = true)
        .await;
    let received = receiver.wait_for(3).await;
    assert_eq!(received[2].kind(), "connection.revoked");
    assert_eq!(received[2].json()["data"]["event_id"], revoked);
    delivery_when(&app, revoked, |d| d["state"] == "delivered").await;
    let (_, endpoints) = app.api(Method::GET, "/v1/webhooks/endpoints", None).await;
    assert_eq!(endpoints["endpoints"].as_array().unwrap().len(), 1);
    assert_eq!(endpoints["endpoints"][0]["source"], "config");
    app.finish().await;
}

#[tokio::test]
async fn connect_reconnect_and_revoke_are_recorded_and_sent_to_subscribers() {
    let mut app = start_app().await;
    let mut everything = Receiver::start().await;
    let mut revocations = Receiver::start().await;
    create_endpoint(&app, json!({ "url": everything.url })).await;
    create_endpoint(
        &app,
        json!({ "url": revocations.url, "events": ["connection.revoked"] }),
    )
    .await;
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    app.connect_ok(&org).await;
    let (status, body) = app
        .api(
            Method::DELETE,
            &format!("/v1/connections/{}", org.id()),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");

    assert_eq!(
        app.all_event_kinds(org.id()).await,
        vec![
            "connection.created",
            "connection.reconnected",
            "connection.revoked"
        ]
    );
    let mut received = everything.wait_for(3).await;
    received.sort_by_key(|request| request.json()["data"]["event_id"].as_i64());
    let kinds: Vec<String> = received.iter().map(Received::kind).collect();
    assert_eq!(
        kinds,
        vec![
            "connection.created",
            "connection.reconnected",
            "connection.revoked"
        ]
    );
    assert_eq!(received[1].json()["data"]["detail"]["generation"], 2);
    let only = revocations.wait_for(1).await;
    assert_eq!(only[0].kind(), "connection.revoked");
    let revoked = event_ids(&app, org.id(), "connection.revoked").await[0];
    let log = deliveries(&app, &format!("event_id={revoked}")).await;
    assert_eq!(
        log.len(),
        2,
        "one delivery per subscribed endpoint: {log:?}"
    );
    let created_log = deliveries(&app, "event=connection.created").await;
    assert_eq!(created_log.len(), 1, "{created_log:?}");
    assert_eq!(
        revocations.requests().len(),
        1,
        "no other kinds: {:?}",
        revocations.requests()
    );
    app.finish().await;
}

#[tokio::test]
async fn endpoint_api_refuses_bad_input_with_stable_codes_and_stores_nothing() {
    let mut app = start_app().await;
    let cases = [
        (json!({ "url": "ftp://hooks.example.com/x" }), "invalid_url"),
        (json!({ "url": "hooks.example.com/x" }), "invalid_url"),
        (
            json!({ "url": "https://user:pw@hooks.example.com/" }),
            "invalid_url",
        ),
        (
            json!({ "url": "https://hooks.example.com/", "events": ["connection.exploded"] }),
            "invalid_event_kind",
        ),
        (
            json!({ "url": "https://hooks.example.com/", "events": [] }),
            "invalid_event_kind",
        ),
        (
            json!({ "url": "https://hooks.example.com/", "secret": "hunter2" }),
            "invalid_secret",
        ),
        (
            json!({ "url": "https://hooks.example.com/", "secret": "whsec_c2hvcnQ=" }),
            "invalid_secret",
        ),
        (
            json!({ "url": "https://hooks.example.com/", "colour": "blue" }),
            "invalid_body",
        ),
        (json!({ "events": ["connection.created"] }), "invalid_body"),
        (json!(["https://hooks.example.com/"]), "invalid_body"),
    ];
    for (body, code) in cases {
        let (status, answer) = app
            .api(Method::POST, "/v1/webhooks/endpoints", Some(body.clone()))
            .await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some(code)),
            "{body} → {answer}"
        );
        assert!(!answer.to_string().contains("hunter2"), "{answer}");
    }
    let raw = app
        .http
        .post(format!("{}/v1/webhooks/endpoints", app.url))
        .bearer_auth(&app.admin_key)
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    let (_, listed) = app.api(Method::GET, "/v1/webhooks/endpoints", None).await;
    assert_eq!(listed["endpoints"], json!([]), "nothing stored");

    let unauthenticated = app
        .http
        .get(format!("{}/v1/webhooks/endpoints", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    let (status, answer) = app
        .api(Method::DELETE, "/v1/webhooks/endpoints/whe_nope", None)
        .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (404, Some("endpoint_not_found"))
    );
    for (query, code) in [
        ("state=lost", "invalid_delivery_state"),
        ("event=connection.exploded", "invalid_event_kind"),
        ("limit=lots", "invalid_query"),
        ("event_id=-", "invalid_query"),
    ] {
        let (status, answer) = app
            .api(
                Method::GET,
                &format!("/v1/webhooks/deliveries?{query}"),
                None,
            )
            .await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some(code)),
            "{query}"
        );
    }

    // A config endpoint can only be removed from the file; an API one through the API.
    let secret = new_secret();
    app.restart_with(move |config| {
        config.webhooks.endpoints.push(WebhookEndpointConfig {
            url: "https://hooks.example.com/config".into(),
            secret: Some(SecretSetting(secret)),
            events: None,
        });
    })
    .await;
    let (_, listed) = app.api(Method::GET, "/v1/webhooks/endpoints", None).await;
    let config_id = listed["endpoints"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        listed["endpoints"][0]["events"].as_array().unwrap().len(),
        7
    );
    let (status, answer) = app
        .api(
            Method::DELETE,
            &format!("/v1/webhooks/endpoints/{config_id}"),
            None,
        )
        .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (409, Some("config_endpoint"))
    );
    let created = create_endpoint(
        &app,
        json!({ "url": "https://hooks.example.com/api", "events": ["connection.at_risk"] }),
    )
    .await;
    let api_id = created["id"].as_str().unwrap();
    let (status, answer) = app
        .api(
            Method::DELETE,
            &format!("/v1/webhooks/endpoints/{api_id}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["deleted"]["id"], api_id);
    app.restart_with(|config| config.webhooks.endpoints.clear())
        .await;
    let (_, listed) = app.api(Method::GET, "/v1/webhooks/endpoints", None).await;
    assert_eq!(
        listed["endpoints"],
        json!([]),
        "left the file, left the store"
    );
    app.finish().await;
}

#[tokio::test]
async fn webhook_secrets_never_reach_responses_the_database_or_the_logs() {
    let mut app = start_app().await;
    let mut receiver = Receiver::start().await;
    let config_secret = new_secret();
    let api_secret = new_secret();
    let url = receiver.url.clone();
    let configured = config_secret.clone();
    app.restart_with(move |config| {
        config.webhooks.endpoints.push(WebhookEndpointConfig {
            url,
            secret: Some(SecretSetting(configured)),
            events: None,
        });
    })
    .await;
    let created = create_endpoint(
        &app,
        json!({ "url": receiver.url.replace("/hook", "/hook?api"), "secret": api_secret }),
    )
    .await;
    assert_eq!(
        created["secret"],
        api_secret.as_str(),
        "shown once, to its creator"
    );
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    receiver.wait_for(2).await;

    let secrets = [&config_secret, &api_secret];
    let key_parts: Vec<&str> = secrets.iter().map(|secret| &secret[6..]).collect();
    for path in [
        "/v1/webhooks/endpoints",
        "/v1/webhooks/deliveries",
        "/v1/events",
        "/v1/connections",
    ] {
        let (status, body) = app.api(Method::GET, path, None).await;
        assert_eq!(status, 200);
        let text = body.to_string();
        for part in &key_parts {
            assert!(!text.contains(part), "a webhook secret in {path}");
        }
    }
    let shown = format!("{:?} {}", app.config, toml::to_string(&app.config).unwrap());
    for part in &key_parts {
        assert!(
            !shown.contains(part),
            "a webhook secret in the printed config"
        );
    }
    for file in ["forcelink.db", "forcelink.db-wal"] {
        let path = std::path::Path::new(app.config.store.url.trim_start_matches("sqlite:"))
            .with_file_name(file);
        let bytes = std::fs::read(&path).unwrap_or_default();
        for secret in &secrets {
            for text in [secret.as_str(), &secret[6..]] {
                assert!(
                    !bytes
                        .windows(text.len())
                        .any(|window| window == text.as_bytes()),
                    "a webhook secret in {file}"
                );
            }
        }
    }

    // A process logging at trace level creates an endpoint and delivers through it.
    app.restart_with(|config| config.webhooks.endpoints.clear())
        .await;
    app.stop_in_process_server().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("forcelink.log");
    let process = app.spawn_process_logging("logged", |_| {}, Some(&log));
    let logged_secret = new_secret();
    let answer = app
        .http
        .post(format!("{}/v1/webhooks/endpoints", process.url))
        .bearer_auth(&app.admin_key)
        .json(&json!({ "url": receiver.url, "secret": logged_secret, "events": ["connection.revoked"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 201);
    let before = receiver.requests().len();
    let revoked = app
        .http
        .delete(format!("{}/v1/connections/{}", process.url, org.id()))
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    // The API endpoint from before gets it too (it takes every kind).
    let received = receiver.wait_for(before + 2).await;
    let last = received[before..]
        .iter()
        .find(|request| {
            verifies(
                &logged_secret,
                &request.id,
                &request.timestamp,
                &request.body,
                &request.signature,
            )
        })
        .expect("the new endpoint's message verifies with its secret");
    assert_eq!(last.kind(), "connection.revoked");
    process.kill_hard();
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(
        logs.contains("webhook endpoint created"),
        "the capture works: {logs}"
    );
    assert!(
        !logs.contains(&logged_secret[6..]),
        "a webhook secret reached the logs"
    );
    assert!(
        !logs.contains(&last.signature[3..]),
        "a signature reached the logs"
    );
}

#[tokio::test]
async fn key_rotation_reseals_webhook_secrets_and_deliveries_still_verify() {
    let mut app = start_app().await;
    let mut receiver = Receiver::start().await;
    let secret = new_secret();
    create_endpoint(&app, json!({ "url": receiver.url, "secret": secret })).await;
    let new_key = forcelink_core::KeyRing::generate_key()
        .into_string()
        .unwrap();
    app.restart_with(|config| {
        config
            .keys
            .ring
            .insert("k2".into(), SecretSetting(new_key.clone()));
        config.keys.active = "k2".into();
    })
    .await;
    let before = app.broker().ring_health().await.unwrap();
    assert_eq!((before.examined, before.old_key), (1, 1), "{before:?}");
    let report = app.broker().rekey().await.unwrap();
    assert_eq!((report.examined, report.resealed), (1, 1), "{report:?}");
    app.restart_with(|config| {
        config.keys.ring.remove("k1");
    })
    .await;
    let health = app.broker().ring_health().await.unwrap();
    assert_eq!((health.current, health.unopenable), (1, 0), "{health:?}");
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    let received = receiver.wait_for(1).await;
    assert!(verifies(
        &secret,
        &received[0].id,
        &received[0].timestamp,
        &received[0].body,
        &received[0].signature
    ));
    app.finish().await;
}

#[tokio::test]
async fn a_cli_command_with_a_partial_config_never_removes_configured_endpoints() {
    let mut app = start_app().await;
    let receiver = Receiver::start().await;
    let url = receiver.url.clone();
    let secret = new_secret();
    app.restart_with(move |config| {
        config.webhooks.endpoints.push(WebhookEndpointConfig {
            url,
            secret: Some(SecretSetting(secret)),
            events: None,
        });
    })
    .await;
    let listed = |body: Value| body["endpoints"].as_array().unwrap().len();
    let (status, before) = app.api(Method::GET, "/v1/webhooks/endpoints", None).await;
    assert_eq!((status, listed(before)), (200, 1));
    // An operator runs a one-off command with a config file that lacks the endpoint.
    let mut partial = app.config.clone();
    partial.webhooks.endpoints.clear();
    let (mut command, _dir) = crate::process::command_for(&partial, &["agents", "list"]);
    assert!(command.output().unwrap().status.success());
    let (_, after) = app.api(Method::GET, "/v1/webhooks/endpoints", None).await;
    assert_eq!(listed(after), 1, "the configured endpoint is still there");
    app.finish().await;
}
