//! The refresh engine's failure classes and guarantees, end to end against sfsim.

use std::collections::HashSet;
use std::sync::Arc;

use forcelink::config::SecretSetting;

use crate::harness::{LoginKind, Options, TestApp};

fn fault(org_id: &str, kind: sfsim::FaultKind, times: u32) -> sfsim::Fault {
    sfsim::Fault {
        target: sfsim::FaultTarget::TokenRefresh,
        org_id: Some(org_id.to_string()),
        consumer_key: None,
        kind,
        times: Some(times),
    }
}

#[tokio::test]
async fn five_hundred_stale_reports_of_one_token_cause_one_refresh() {
    let mut app = TestApp::start(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    let (_, first) = app.token(org.id()).await;
    let stale = first["access_token"].as_str().unwrap().to_string();
    let app = Arc::new(app);
    let tasks: Vec<_> = (0..500)
        .map(|_| {
            let (app, org_id, stale) = (app.clone(), org.id().to_string(), stale.clone());
            tokio::spawn(async move { app.token_stale(&org_id, &stale).await })
        })
        .collect();
    let mut tokens = HashSet::new();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 200, "{body}");
        tokens.insert(body["access_token"].as_str().unwrap().to_string());
    }
    assert_eq!(tokens.len(), 1);
    assert!(!tokens.contains(&stale));
    assert_eq!(app.sim.counters().refresh_grants, 1);
    assert_eq!(app.sim.counters().reuse_detections, 0);
}

#[tokio::test]
async fn token_request_already_being_processed_is_waited_out_not_failed() {
    let mut app = TestApp::start(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    let refresh = app.stored_refresh_token(org.id()).await;
    // Someone else's request with the same token is held at Salesforce, then fails unrotated.
    app.sim.add_fault(fault(
        org.id(),
        sfsim::FaultKind::DelayThenStatus(std::time::Duration::from_millis(400), 503),
        1,
    ));
    let login = app.sim.production_login_url();
    let app = Arc::new(app);
    let outsider = {
        let app = app.clone();
        tokio::spawn(async move { app.present_refresh_token(&login, &refresh).await })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.sim.refreshes_in_flight() == 0 {
        assert!(std::time::Instant::now() < deadline);
        tokio::task::yield_now().await;
    }
    app.advance(2 * 3600 + 1);
    let (status, body) = app.token(org.id()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(outsider.await.unwrap().0, 503);
    let counters = app.sim.counters();
    assert!(
        counters.concurrent_rejections >= 1,
        "forcelink met the in-flight request"
    );
    assert_eq!((counters.refresh_grants, counters.reuse_detections), (1, 0));
    let (_, attempts) = app
        .api(
            reqwest::Method::GET,
            &format!("/v1/connections/{}/attempts", org.id()),
            None,
        )
        .await;
    let outcomes: Vec<&str> = attempts["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert!(
        outcomes.contains(&"concurrent_request") && outcomes.contains(&"rotated"),
        "{outcomes:?}"
    );
    assert!(app.event_kinds(org.id()).await.is_empty(), "not a failure");
}

#[tokio::test]
async fn a_lost_answer_after_rotation_ends_in_rotation_outcome_lost_once() {
    let mut app = TestApp::start(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    app.sim
        .add_fault(fault(org.id(), sfsim::FaultKind::DropAfterProcessing, 1));
    app.advance(2 * 3600 + 1);
    let (status, body) = app.token(org.id()).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "busy");
    let shown = app.shown(org.id()).await;
    assert_eq!(shown["health"], "outcome_unknown");
    assert!(
        shown["refresh_in_flight"]["attempt_id"].is_string(),
        "{shown}"
    );
    // Within the in-flight window nothing is sent again.
    let calls = app.sim.counters().refresh_grants + app.sim.counters().refresh_failures;
    assert_eq!(app.token(org.id()).await.0, 503);
    assert_eq!(
        app.sim.counters().refresh_grants + app.sim.counters().refresh_failures,
        calls
    );
    // After it, the stored token is tried once: Salesforce had rotated, so the grant is lost.
    app.clock.advance(chrono::Duration::seconds(60));
    let (status, body) = app.token(org.id()).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("rotation outcome lost"),
        "{body}"
    );
    let requests = app.sim.requests().len();
    assert_eq!(app.token(org.id()).await.0, 409);
    assert_eq!(app.sim.requests().len(), requests, "it never loops");
    assert_eq!(
        app.event_kinds(org.id()).await,
        vec!["connection.outcome_unknown", "connection.needs_reauth"]
    );
    assert_eq!(
        app.sim.counters().reuse_detections,
        1,
        "only the single recovery probe"
    );
}

#[tokio::test]
async fn a_lost_answer_without_rotation_recovers_with_the_stored_token() {
    let mut app = TestApp::start(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    app.restart_with(|c| {
        c.salesforce.request_timeout_seconds = 1;
        c.refresh.in_flight_window_seconds = 2;
    })
    .await;
    // Salesforce holds the request past our timeout, then fails it without rotating. The
    // caller waits out the in-flight window, the stored token is tried once, and it works.
    app.sim.add_fault(fault(
        org.id(),
        sfsim::FaultKind::DelayThenStatus(std::time::Duration::from_millis(1500), 503),
        1,
    ));
    app.advance(2 * 3600 + 1);
    let (status, body) = app.token(org.id()).await;
    assert_eq!(status, 200, "{body}");
    let shown = app.shown(org.id()).await;
    assert_eq!(
        (shown["state"].as_str(), shown["health"].as_str()),
        (Some("active"), Some("ok"))
    );
    assert!(shown["refresh_in_flight"].is_null());
    assert_eq!(app.sim.counters().reuse_detections, 0);
    assert_eq!(
        app.event_kinds(org.id()).await,
        vec!["connection.outcome_unknown", "connection.recovered"]
    );
    let (_, attempts) = app
        .api(
            reqwest::Method::GET,
            &format!("/v1/connections/{}/attempts", org.id()),
            None,
        )
        .await;
    let outcomes: Vec<(&str, bool)> = attempts["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["outcome"].as_str().unwrap(),
                a["recovery"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        vec![("rotated", true), ("outcome_unknown", false)]
    );
}

#[tokio::test]
async fn invalid_client_is_one_app_incident_not_dead_connections() {
    let mut app = TestApp::start(Options::default()).await;
    let first = app.org(LoginKind::Production).await;
    let second = app.org(LoginKind::Sandbox).await;
    app.connect_ok(&first).await;
    app.connect_ok(&second).await;
    let right = app.config.salesforce.client_secret.clone();
    app.restart_with(|c| c.salesforce.client_secret = Some(SecretSetting("wrong-secret".into())))
        .await;
    app.advance(2 * 3600 + 1);
    for org in [&first, &second] {
        let (status, body) = app.token(org.id()).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (502, Some("app_misconfigured")),
            "{body}"
        );
    }
    let (_, events) = app.api(reqwest::Method::GET, "/v1/events", None).await;
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .filter(|kind| *kind != "connection.created")
        .collect();
    assert_eq!(
        kinds,
        vec!["app.misconfigured"],
        "raised once for the whole app"
    );
    for org in [&first, &second] {
        let shown = app.shown(org.id()).await;
        assert_eq!(shown["state"], "active");
    }
    app.restart_with(|c| c.salesforce.client_secret = right)
        .await;
    assert_eq!(app.token(first.id()).await.0, 200);
    let (_, events) = app.api(reqwest::Method::GET, "/v1/events", None).await;
    assert_eq!(
        events["events"].as_array().unwrap().last().unwrap()["kind"],
        "app.recovered"
    );
}

#[tokio::test]
async fn inactive_organization_needs_reauth() {
    let mut app = TestApp::start(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    app.sim.set_org_active(org.id(), false).unwrap();
    app.advance(2 * 3600 + 1);
    let (status, body) = app.token(org.id()).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("inactive_organization"),
        "{body}"
    );
}

#[tokio::test]
async fn lineage_records_each_attempt_with_hashes_only() {
    let mut app = TestApp::start(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    let old = app.stored_refresh_token(org.id()).await;
    app.advance(2 * 3600 + 1);
    assert_eq!(app.token(org.id()).await.0, 200);
    let new = app.stored_refresh_token(org.id()).await;
    let (_, body) = app
        .api(
            reqwest::Method::GET,
            &format!("/v1/connections/{}/attempts", org.id()),
            None,
        )
        .await;
    let attempts = body["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{body}");
    let attempt = &attempts[0];
    assert_eq!(attempt["outcome"], "rotated");
    assert_eq!(
        attempt["old_refresh_token_sha256"],
        forcelink_core::refresh::token_hash(&old).as_str()
    );
    assert_eq!(
        attempt["new_refresh_token_sha256"],
        forcelink_core::refresh::token_hash(&new).as_str()
    );
    assert!(attempt["latency_ms"].as_i64().is_some());
    assert!(
        attempt["instance"]
            .as_str()
            .unwrap()
            .starts_with("forcelink-")
    );
    assert!(!body.to_string().contains(&old) && !body.to_string().contains(&new));
}

#[tokio::test]
async fn a_token_used_by_someone_else_raises_a_compromise_suspicion_and_exports_a_timeline() {
    let mut app = TestApp::start(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    // A thief refreshes with the stolen token: it rotates away from forcelink.
    let stolen = app.stored_refresh_token(org.id()).await;
    let (status, _) = app
        .present_refresh_token(&app.sim.production_login_url(), &stolen)
        .await;
    assert_eq!(status, 200);
    app.advance(2 * 3600 + 1);
    let (status, body) = app.token(org.id()).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        app.event_kinds(org.id())
            .await
            .contains(&"connection.compromise_suspected".to_string())
    );
    let timelines = app.broker().incident_timelines(100).await.unwrap();
    assert_eq!(timelines.len(), 1);
    assert_eq!(timelines[0].org_id.as_deref(), Some(org.id()));
    assert_eq!(
        timelines[0].attempts[0].old_refresh_token_sha256,
        forcelink_core::refresh::token_hash(&stolen)
    );
    let exported = serde_json::to_string(&timelines).unwrap();
    assert!(!exported.contains(&stolen));
}

#[tokio::test]
async fn introspection_teaches_the_real_access_token_expiry() {
    let mut app = TestApp::start(Options::default()).await;
    app.sim
        .update_app(&app.sf_app.consumer_key, |s| {
            s.session_timeout = std::time::Duration::from_secs(15 * 60)
        })
        .unwrap();
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    // forcelink assumes 120 minutes until introspection says 15.
    let path = format!("/v1/connections/{}", org.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, shown) = app.api(reqwest::Method::GET, &path, None).await;
        let expires: chrono::DateTime<chrono::Utc> = shown["access_token_expires_at"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let created: chrono::DateTime<chrono::Utc> =
            shown["created_at"].as_str().unwrap().parse().unwrap();
        if (expires - created).num_minutes() < 20 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expiry never learned: {shown}"
        );
        tokio::task::yield_now().await;
    }
    // 16 minutes later the token is known to be dead and is refreshed before anyone gets a 401.
    app.advance(16 * 60);
    let (status, body) = app.token(org.id()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["generation"], 2);
}
