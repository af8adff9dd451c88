//! `forcelink doctor`: every check, failing and passing, against sfsim and a real store.

use std::sync::Arc;

use forcelink::config::{Config, SecretSetting};
use forcelink::doctor::{self, Finding, Status};
use forcelink_core::OffsetClock;

use crate::harness::{LoginKind, Options, TestApp};
use crate::schema::{applied_version, store_one_migration_behind};

async fn examine(config: &Config) -> Vec<Finding> {
    doctor::run(config, Arc::new(OffsetClock::default())).await
}

fn status(findings: &[Finding], check: &str) -> Status {
    findings
        .iter()
        .find(|f| f.check == check)
        .unwrap_or_else(|| panic!("no {check} in {findings:?}"))
        .status
}

async fn connected_app() -> (TestApp, crate::harness::TestOrg) {
    let mut app = TestApp::start(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    (app, org)
}

#[tokio::test]
async fn a_healthy_setup_passes_every_check_and_exits_zero() {
    let (app, _) = connected_app().await;
    let mut config = app.config.clone();
    config.egress.declared_ips = vec!["203.0.113.7".into()];
    let findings = examine(&config).await;
    for finding in &findings {
        assert_eq!(finding.status, Status::Ok, "{finding:?}");
    }
    assert_eq!(doctor::exit_code(&findings), 0);
    for check in [
        "config",
        "store",
        "key_ring",
        "login_hosts",
        "clock_skew",
        "egress",
        "heartbeat",
        "pkce_rotation",
        "ip_allow_list",
        "at_risk",
        "incidents",
        "webhooks",
    ] {
        status(&findings, check);
    }
}

#[tokio::test]
async fn config_and_store_failures_stop_the_examination() {
    let (app, _) = connected_app().await;
    let mut config = app.config.clone();
    config.salesforce.client_id = String::new();
    let findings = examine(&config).await;
    assert_eq!(
        (findings.len(), status(&findings, "config")),
        (1, Status::Fail)
    );
    let mut config = app.config.clone();
    config.store.url = "sqlite:/nonexistent-forcelink-dir/forcelink.db".into();
    let findings = examine(&config).await;
    assert_eq!(status(&findings, "store"), Status::Fail);
    assert_eq!(doctor::exit_code(&findings), 1);
}

/// The doctor changes no store: it creates no file where `store.url` points at nothing, and
/// reports a schema behind this build instead of migrating it.
#[tokio::test]
async fn doctor_neither_creates_nor_migrates_the_store() {
    let (app, _) = connected_app().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("forcelink.db");
    let mut config = app.config.clone();
    config.store.url = format!("sqlite:{}", path.display());
    let findings = examine(&config).await;
    let store = findings.iter().find(|f| f.check == "store").unwrap();
    assert_eq!(store.status, Status::Fail);
    assert!(store.summary.contains("no SQLite store"), "{store:?}");
    assert!(!path.exists(), "the doctor created {}", path.display());
    let mut at_directory = config.clone();
    at_directory.store.url = format!("sqlite:{}", dir.path().display());
    let findings = examine(&at_directory).await;
    let store = findings.iter().find(|f| f.check == "store").unwrap();
    assert!(store.summary.contains("a directory"), "{store:?}");

    // A store one migration behind this build.
    let behind = store_one_migration_behind(&path).await;
    let findings = examine(&config).await;
    let store = findings.iter().find(|f| f.check == "store").unwrap();
    assert_eq!(store.status, Status::Fail, "{findings:?}");
    assert!(
        store
            .summary
            .contains(&format!("schema is at version {behind}")),
        "{store:?}"
    );
    assert!(
        store.fix.as_deref().unwrap().contains("forcelink serve"),
        "{store:?}"
    );
    assert_eq!(
        applied_version(&path).await,
        behind,
        "the doctor migrated the store"
    );
}

#[tokio::test]
async fn key_ring_check_finds_old_and_missing_keys() {
    let (app, _) = connected_app().await;
    let mut rotated = app.config.clone();
    rotated.keys.ring.insert(
        "k2".into(),
        SecretSetting(
            forcelink_core::KeyRing::generate_key()
                .into_string()
                .unwrap(),
        ),
    );
    rotated.keys.active = "k2".into();
    assert_eq!(status(&examine(&rotated).await, "key_ring"), Status::Warn);
    rotated.keys.ring.remove("k1");
    assert_eq!(status(&examine(&rotated).await, "key_ring"), Status::Fail);
}

#[tokio::test]
async fn unreachable_login_host_fails() {
    let (app, _) = connected_app().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut config = app.config.clone();
    config
        .salesforce
        .extra_login_urls
        .push(format!("http://{closed}"));
    let findings = examine(&config).await;
    assert_eq!(status(&findings, "login_hosts"), Status::Fail);
    assert!(
        findings
            .iter()
            .any(|f| f.summary.contains(&closed.to_string()))
    );
}

#[tokio::test]
async fn clock_skew_against_salesforce_fails() {
    let (app, _) = connected_app().await;
    app.sim.advance_clock(std::time::Duration::from_secs(3600));
    assert_eq!(
        status(&examine(&app.config).await, "clock_skew"),
        Status::Fail
    );
}

#[tokio::test]
async fn egress_and_heartbeat_warn_when_not_declared_or_disabled() {
    let (app, _) = connected_app().await;
    let mut config = app.config.clone();
    config.heartbeat.enabled = false;
    let findings = examine(&config).await;
    assert_eq!(status(&findings, "egress"), Status::Warn);
    assert_eq!(status(&findings, "heartbeat"), Status::Warn);
    assert_eq!(
        doctor::exit_code(&findings),
        0,
        "warnings alone do not fail"
    );
}

#[tokio::test]
async fn refresh_without_rotation_fails_the_rotation_check() {
    let (app, org) = connected_app().await;
    app.sim
        .update_app(&app.sf_app.consumer_key, |s| s.rotation = false)
        .unwrap();
    app.advance(2 * 3600 + 1);
    assert_eq!(app.token(org.id()).await.0, 200);
    let findings = examine(&app.config).await;
    assert_eq!(status(&findings, "pkce_rotation"), Status::Fail);
}

#[tokio::test]
async fn an_ip_blocked_connection_fails_and_names_the_cause() {
    let (mut app, org) = connected_app().await;
    let allowed: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    app.sim
        .update_app(&app.sf_app.consumer_key, |s| {
            s.refresh_ip_allowlist = Some(vec![(allowed, allowed)])
        })
        .unwrap();
    app.restart_with(|c| c.egress.bind_address = Some("127.0.0.3".parse().unwrap()))
        .await;
    app.advance(2 * 3600 + 1);
    assert_eq!(app.token(org.id()).await.0, 503);
    let findings = examine(&app.config).await;
    let blocked = findings
        .iter()
        .find(|f| f.check == "ip_allow_list")
        .unwrap();
    assert_eq!(blocked.status, Status::Fail);
    assert!(
        blocked.summary.contains(org.id()) && blocked.summary.contains("bind 127.0.0.3"),
        "{blocked:?}"
    );
    assert!(blocked.fix.as_deref().unwrap().contains("allow list"));
}

#[tokio::test]
async fn an_idle_connection_is_reported_at_risk() {
    let (app, _) = connected_app().await;
    let clock = Arc::new(OffsetClock::default());
    clock.advance(chrono::Duration::days(24));
    let findings = doctor::run(&app.config, clock).await;
    assert_eq!(status(&findings, "at_risk"), Status::Warn);
}

#[tokio::test]
async fn an_app_incident_fails() {
    let (mut app, org) = connected_app().await;
    app.restart_with(|c| c.salesforce.client_secret = Some(SecretSetting("wrong".into())))
        .await;
    app.advance(2 * 3600 + 1);
    assert_eq!(app.token(org.id()).await.0, 502);
    let findings = examine(&app.config).await;
    assert_eq!(status(&findings, "incidents"), Status::Fail);
}

/// The doctor as of `minutes` after the app's own clock (which tests may have moved).
async fn examine_later(app: &TestApp, config: &Config, minutes: i64) -> Finding {
    use forcelink_core::Clock;
    let clock = Arc::new(OffsetClock::default());
    clock.advance(
        app.clock.now() - forcelink_core::SystemClock.now() + chrono::Duration::minutes(minutes),
    );
    doctor::run(config, clock)
        .await
        .into_iter()
        .find(|f| f.check == "webhooks")
        .unwrap()
}

/// Polls the delivery log (deadline 30 s) until the only delivery satisfies `done`.
async fn delivery_when(app: &TestApp, done: impl Fn(&serde_json::Value) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, body) = app
            .api(reqwest::Method::GET, "/v1/webhooks/deliveries", None)
            .await;
        if body["deliveries"].as_array().unwrap().iter().any(&done) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        tokio::task::yield_now().await;
    }
}

/// No worker anywhere: an event left unqueued past five minutes fails, and the fix names
/// `webhooks.enabled`. A receiver answering 503: behind after five minutes (warn, with the
/// error), down after an hour (fail); once out of attempts, the missed event is a warning.
#[tokio::test]
async fn webhook_check_finds_no_worker_a_receiver_down_and_missed_events() {
    let (mut app, _) = connected_app().await;
    let refusing = axum::Router::new().route(
        "/hook",
        axum::routing::post(|| async { axum::http::StatusCode::SERVICE_UNAVAILABLE }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, refusing).await });
    app.restart_with(|c| {
        c.webhooks.enabled = false;
        c.webhooks.poll_interval_ms = 20;
        c.webhooks.backoff_base_seconds = 600;
        c.webhooks.backoff_max_seconds = 600;
        c.webhooks.max_attempts = 2;
    })
    .await;
    let (created, body) = app
        .api(
            reqwest::Method::POST,
            "/v1/webhooks/endpoints",
            Some(serde_json::json!({ "url": hook })),
        )
        .await;
    assert_eq!(created, 201, "{body}");
    let endpoint = body["id"].as_str().unwrap().to_string();
    assert_eq!(examine_later(&app, &app.config, 0).await.status, Status::Ok);
    let second = app.org(LoginKind::Production).await;
    app.connect_ok(&second).await;

    let fresh = examine_later(&app, &app.config, 0).await;
    assert_eq!(fresh.status, Status::Ok, "{fresh:?}");
    let unqueued = examine_later(&app, &app.config, 10).await;
    assert_eq!(unqueued.status, Status::Fail, "{unqueued:?}");
    assert!(unqueued.summary.contains("not yet queued"), "{unqueued:?}");
    assert!(unqueued.summary.contains(&endpoint), "{unqueued:?}");
    assert!(unqueued.summary.contains("127.0.0.1"), "{unqueued:?}");
    assert!(
        !unqueued.summary.contains("/hook"),
        "only the host: {unqueued:?}"
    );
    assert!(
        unqueued
            .fix
            .as_deref()
            .unwrap()
            .contains("webhooks.enabled = true"),
        "{unqueued:?}"
    );

    app.restart_with(|c| c.webhooks.enabled = true).await;
    delivery_when(&app, |d| d["attempts"] == 1 && d["state"] == "pending").await;
    assert_eq!(examine_later(&app, &app.config, 0).await.status, Status::Ok);
    let behind = examine_later(&app, &app.config, 10).await;
    assert_eq!(behind.status, Status::Warn, "{behind:?}");
    assert!(behind.summary.contains("1 delivery pending"), "{behind:?}");
    assert!(behind.summary.contains("HTTP 503"), "{behind:?}");
    let down = examine_later(&app, &app.config, 180).await;
    assert_eq!(down.status, Status::Fail, "{down:?}");
    assert!(down.summary.contains("the oldest for 3 hours"), "{down:?}");

    app.advance(800);
    delivery_when(&app, |d| d["state"] == "failed").await;
    let missed = examine_later(&app, &app.config, 0).await;
    assert_eq!(missed.status, Status::Warn, "{missed:?}");
    assert!(
        missed.summary.contains("1 delivery failed for good"),
        "{missed:?}"
    );
    assert!(
        missed
            .fix
            .as_deref()
            .unwrap()
            .contains(&format!("forcelink webhooks retry --endpoint {endpoint}")),
        "{missed:?}"
    );
    app.finish().await;
}
