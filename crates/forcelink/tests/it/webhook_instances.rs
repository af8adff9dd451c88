//! Webhook deliveries shared by several real forcelink processes on one database: each
//! delivery is sent once, by one of them, and one endpoint never has more than
//! `webhooks.per_endpoint_concurrency` requests in flight across all of them.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::harness::{Backend, LoginKind, pg_server_url};
use crate::process::ForcelinkProcess;
use crate::webhooks::{Receiver, create_endpoint, deliveries, metrics_text, start_app_on};

const BOUND: usize = 4;
const EVENTS: usize = 24;

/// `forcelink_webhook_deliveries_total{outcome="delivered"}` of one process.
async fn delivered_by(http: &reqwest::Client, process: &ForcelinkProcess) -> u64 {
    metrics_text(http, &process.url)
        .await
        .lines()
        .find(|line| {
            line.starts_with("forcelink_webhook_deliveries_total{")
                && line.contains("outcome=\"delivered\"")
        })
        .map_or(0, |line| line.rsplit(' ').next().unwrap().parse().unwrap())
}

async fn shared_by_processes(backend: Backend, instances: usize) {
    // The test's own server records the events and shows the log; only the processes deliver.
    let mut app = start_app_on(backend).await;
    app.restart_with(|config| config.webhooks.enabled = false)
        .await;
    let mut receiver = Receiver::start().await;
    create_endpoint(
        &app,
        json!({ "url": receiver.url, "events": ["connection.created"] }),
    )
    .await;
    for _ in 0..EVENTS {
        let org = app.org(LoginKind::Production).await;
        app.connect_ok(&org).await;
    }
    receiver.hold();
    let processes: Vec<ForcelinkProcess> = (0..instances)
        .map(|n| {
            app.spawn_process(&format!("webhooks-{n}"), |config| {
                config.webhooks.enabled = true;
                config.webhooks.poll_interval_ms = 20;
                config.webhooks.concurrency = 8;
                config.webhooks.per_endpoint_concurrency = BOUND as u32;
                // Longer than the test: a request is never timed out and sent again.
                config.webhooks.request_timeout_seconds = 300;
            })
        })
        .collect();

    // Each time the endpoint's slots are full, answer what arrived: the processes must fill
    // them again from the rest, together never past the bound.
    let mut answered = 0;
    while answered < EVENTS {
        let want = answered + BOUND.min(EVENTS - answered);
        if !receiver.arrived_within(want, Duration::from_secs(60)).await {
            // Say why: which deliveries are where, and what their attempts met.
            let log: Vec<String> = deliveries(&app, "limit=1000")
                .await
                .iter()
                .map(|d| {
                    format!(
                        "{} {} attempts={} next={} error={}",
                        d["id"], d["state"], d["attempts"], d["next_attempt_at"], d["last_error"]
                    )
                })
                .collect();
            panic!(
                "{} of {want} requests arrived ({answered} answered); the delivery log:\n{}",
                receiver.requests().len(),
                log.join("\n")
            );
        }
        answered = receiver.answer_arrived();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let log = loop {
        let log = deliveries(&app, "state=delivered&limit=1000").await;
        if log.len() >= EVENTS {
            break log;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {EVENTS} deliveries recorded as delivered",
            log.len()
        );
        tokio::task::yield_now().await;
    };

    let requests = receiver.requests();
    let ids: std::collections::HashSet<&str> =
        requests.iter().map(|request| request.id.as_str()).collect();
    assert_eq!(requests.len(), EVENTS, "each delivery sent once");
    assert_eq!(ids.len(), EVENTS);
    assert_eq!(
        receiver.most_in_flight(),
        BOUND,
        "the endpoint's slots were filled, never past the bound, across {instances} processes"
    );
    assert_eq!(log.len(), EVENTS);
    assert!(
        log.iter().all(|delivery| delivery["attempts"] == 1),
        "{log:?}"
    );
    let mut counted = Vec::new();
    for process in &processes {
        counted.push(delivered_by(&app.http, process).await);
    }
    assert_eq!(
        counted.iter().sum::<u64>(),
        EVENTS as u64,
        "each delivery counted by the one process that sent it: {counted:?}"
    );
    let (status, body) = app
        .api(Method::GET, "/v1/webhooks/deliveries?state=pending", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["deliveries"].as_array().unwrap().len(), 0);
    drop(processes);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_on_one_sqlite_file_share_webhook_deliveries_within_the_bound() {
    shared_by_processes(Backend::Sqlite, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_processes_on_postgres_share_webhook_deliveries_within_the_bound() {
    if pg_server_url().is_none() {
        return;
    }
    shared_by_processes(Backend::Postgres, 3).await;
}
