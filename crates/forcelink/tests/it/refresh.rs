//! Token handout and refresh failures end to end: dead grants, IP blocks, stale-token reports.

use crate::harness::{LoginKind, Options, TestApp};

#[tokio::test]
async fn cached_token_is_served_without_calling_salesforce() {
    let mut app = TestApp::start(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    let before = app.sim.requests().len();
    for _ in 0..5 {
        assert_eq!(app.token(org.id()).await.0, 200);
    }
    assert_eq!(
        app.sim.requests().len(),
        before,
        "no upstream call for a fresh token"
    );
}

#[tokio::test]
async fn inactive_user_marks_the_connection_needs_reauth_and_stops_calling_salesforce() {
    let mut app = TestApp::start(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    app.sim.set_user_active(&org.user.user_id, false).unwrap();
    app.advance(2 * 3600 + 1);
    let (status, body) = app.token(org.id()).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "needs_reauth");
    assert!(body["message"].as_str().unwrap().contains("inactive_user"));
    assert_eq!(
        body["reconnect_url"],
        format!(
            "{}/v1/connect/salesforce/start?ctx=api&orgid={}",
            app.url,
            org.id()
        )
        .as_str()
    );
    let shown = app.shown(org.id()).await;
    assert_eq!(shown["state"], "needs_reauth");
    let calls = app.sim.requests().len();
    for _ in 0..3 {
        assert_eq!(app.token(org.id()).await.0, 409);
    }
    assert_eq!(
        app.sim.requests().len(),
        calls,
        "a dead grant makes no further upstream calls"
    );
}

#[tokio::test]
async fn revoked_grant_is_classified_dead() {
    let mut app = TestApp::start(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    let refresh = app.stored_refresh_token(org.id()).await;
    let revoked = app
        .http
        .post(format!(
            "{}/services/oauth2/revoke",
            app.sim.production_login_url()
        ))
        .form(&[("token", refresh.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    app.advance(2 * 3600 + 1);
    let (status, body) = app.token(org.id()).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("expired_or_revoked")
    );
}

#[tokio::test]
async fn ip_block_is_reported_and_does_not_kill_the_connection() {
    let mut app = TestApp::start(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    let only = "127.0.0.2".parse().unwrap();
    app.sim
        .update_app(&app.sf_app.consumer_key, |s| {
            s.refresh_ip_allowlist = Some(vec![(only, only)])
        })
        .unwrap();
    app.advance(2 * 3600 + 1);
    let (status, body) = app.token(org.id()).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "ip_blocked");
    let shown = app.shown(org.id()).await;
    assert_eq!(shown["state"], "active");
    // Once the address is allowed, the same grant works again without reauthorization.
    app.sim
        .update_app(&app.sf_app.consumer_key, |s| s.refresh_ip_allowlist = None)
        .unwrap();
    let (status, body) = app.token(org.id()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["generation"], 2);
    assert_eq!(
        app.event_kinds(org.id()).await,
        vec!["connection.ip_blocked", "connection.recovered"]
    );
}

#[tokio::test]
async fn a_short_outage_is_absorbed_by_retries_with_backoff() {
    let mut app = TestApp::start(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    app.sim.add_fault(sfsim::Fault::once(
        sfsim::FaultTarget::TokenRefresh,
        sfsim::FaultKind::Status(503),
    ));
    app.advance(2 * 3600 + 1);
    let (status, body) = app.token(org.id()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.sim.counters().refresh_grants, 1);
}

#[tokio::test]
async fn salesforce_outage_is_transient_and_leaves_the_connection_active() {
    let mut app = TestApp::start(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    app.sim.add_fault(sfsim::Fault {
        target: sfsim::FaultTarget::TokenRefresh,
        org_id: None,
        consumer_key: None,
        kind: sfsim::FaultKind::Status(503),
        times: Some(3),
    });
    app.advance(2 * 3600 + 1);
    // One try and two retries with backoff all meet the outage.
    let (status, body) = app.token(org.id()).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "upstream_unavailable");
    let shown = app.shown(org.id()).await;
    assert_eq!(
        (shown["state"].as_str(), shown["health"].as_str()),
        (Some("active"), Some("degraded"))
    );
    assert_eq!(
        app.event_kinds(org.id()).await,
        vec!["connection.refresh_failed"]
    );
    let (status, body) = app.token(org.id()).await;
    assert_eq!(status, 200, "{body}");
    let shown = app.shown(org.id()).await;
    assert_eq!(shown["health"], "ok");
    assert_eq!(
        app.event_kinds(org.id()).await,
        vec!["connection.refresh_failed", "connection.recovered"]
    );
}

#[tokio::test]
async fn stale_token_report_refreshes_only_while_the_token_is_current() {
    let mut app = TestApp::start(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    let (_, first) = app.token(org.id()).await;
    let stale = first["access_token"].as_str().unwrap().to_string();
    let path = format!("/v1/connections/{}/token", org.id());
    let body = serde_json::json!({ "stale_token": stale });
    let (status, second) = app
        .agent_api(reqwest::Method::POST, &path, Some(body.clone()))
        .await;
    assert_eq!(status, 200, "{second}");
    assert_ne!(second["access_token"], first["access_token"]);
    assert_eq!(app.sim.counters().refresh_grants, 1);
    // Reporting the same old token again hands out the newer one without another refresh.
    let (status, third) = app
        .agent_api(reqwest::Method::POST, &path, Some(body))
        .await;
    assert_eq!(status, 200);
    assert_eq!(third["access_token"], second["access_token"]);
    assert_eq!(app.sim.counters().refresh_grants, 1);
}

#[tokio::test]
async fn a_thousand_concurrent_callers_cause_one_refresh() {
    let mut app = TestApp::start(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    app.advance(2 * 3600 + 1);
    let app = std::sync::Arc::new(app);
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let app = app.clone();
        let org_id = org.id().to_string();
        tasks.push(tokio::spawn(async move { app.token(&org_id).await }));
    }
    let mut tokens = std::collections::HashSet::new();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 200, "{body}");
        tokens.insert(body["access_token"].as_str().unwrap().to_string());
    }
    assert_eq!(tokens.len(), 1, "every caller gets the same new token");
    assert_eq!(app.sim.counters().refresh_grants, 1);
    assert_eq!(app.sim.counters().reuse_detections, 0);
}
