//! The connect flow end to end: start URL, Salesforce authorize, callback, stored connection.

use forcelink_core::pkce;

use crate::harness::{Backend, LoginKind, Options, TestApp, pg_server_url};

async fn connect_then_refresh_rotates(options: Options, kind: LoginKind) {
    let mut app = TestApp::start(options).await;
    let org = app.org(kind).await;
    app.connect_ok(&org).await;

    let (status, shown) = app
        .api(
            reqwest::Method::GET,
            &format!("/v1/connections/{}", org.id()),
            None,
        )
        .await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["state"], "active");
    assert_eq!(shown["generation"], 1);
    assert_eq!(shown["pkce"], true);
    assert_eq!(shown["username"], org.user.username.as_str());
    assert_eq!(shown["user_id"], org.user.user_id.as_str());
    assert_eq!(shown["instance_url"], org.org.instance_url.as_str());
    assert_eq!(shown["login_host"], app.login_url_of(&org).as_str());

    let (status, first) = app.token(org.id()).await;
    assert_eq!(status, 200, "{first}");
    assert!(first.get("refresh_token").is_none());
    let old_refresh = app.stored_refresh_token(org.id()).await;

    // Past the session timeout the access token is stale: the next handout refreshes.
    app.advance(2 * 3600 + 1);
    let (status, second) = app.token(org.id()).await;
    assert_eq!(status, 200, "{second}");
    assert_ne!(second["access_token"], first["access_token"]);
    assert_eq!(second["generation"], 2);
    let new_refresh = app.stored_refresh_token(org.id()).await;
    assert_ne!(
        new_refresh, old_refresh,
        "rotation must have stored a new refresh token"
    );
    assert_eq!(app.sim.counters().refresh_grants, 1);

    // The new access token works at the org's REST API.
    let limits = app
        .http
        .get(format!(
            "{}/services/data/v62.0/limits",
            org.org.instance_url
        ))
        .bearer_auth(second["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(limits.status(), 200);

    // Salesforce refuses the rotated-out refresh token (and, per RTR, revokes the family).
    let (status, refused) = app
        .present_refresh_token(&app.login_url_of(&org), &old_refresh)
        .await;
    assert_eq!(status, 400);
    assert_eq!(refused["error"], "invalid_grant");
    assert_eq!(refused["error_description"], "expired access/refresh token");
    assert_eq!(app.sim.counters().reuse_detections, 1);
    app.finish().await;
}

#[tokio::test]
async fn confidential_client_connects_and_refresh_rotates_on_production() {
    connect_then_refresh_rotates(Options::default(), LoginKind::Production).await;
}

#[tokio::test]
async fn confidential_client_connects_and_refresh_rotates_on_sandbox() {
    connect_then_refresh_rotates(Options::default(), LoginKind::Sandbox).await;
}

#[tokio::test]
async fn confidential_client_connects_and_refresh_rotates_on_my_domain() {
    connect_then_refresh_rotates(Options::default(), LoginKind::MyDomain).await;
}

#[tokio::test]
async fn public_client_connects_and_refresh_rotates_on_production() {
    connect_then_refresh_rotates(
        Options {
            public_client: true,
            ..Options::default()
        },
        LoginKind::Production,
    )
    .await;
}

#[tokio::test]
async fn public_client_connects_and_refresh_rotates_on_sandbox() {
    connect_then_refresh_rotates(
        Options {
            public_client: true,
            ..Options::default()
        },
        LoginKind::Sandbox,
    )
    .await;
}

#[tokio::test]
async fn public_client_connects_and_refresh_rotates_on_my_domain() {
    connect_then_refresh_rotates(
        Options {
            public_client: true,
            ..Options::default()
        },
        LoginKind::MyDomain,
    )
    .await;
}

#[tokio::test]
async fn connect_and_rotating_refresh_work_on_postgres() {
    if pg_server_url().is_none() {
        return;
    }
    connect_then_refresh_rotates(
        Options {
            backend: Backend::Postgres,
            ..Options::default()
        },
        LoginKind::Production,
    )
    .await;
    connect_then_refresh_rotates(
        Options {
            backend: Backend::Postgres,
            public_client: true,
            ..Options::default()
        },
        LoginKind::MyDomain,
    )
    .await;
}

#[tokio::test]
async fn start_redirects_to_authorize_with_s256_challenge_and_single_use_state() {
    let app = TestApp::start(Options::default()).await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = browser
        .get(format!(
            "{}/v1/connect/salesforce/start?ctx=api&orgid=00D000000000062",
            app.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(&format!(
        "{}/services/oauth2/authorize",
        app.sim.production_login_url()
    )));
    let query: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["code_challenge"].len(), 43);
    assert_eq!(query["client_id"], app.sf_app.consumer_key);
    assert_eq!(query["redirect_uri"], app.config.callback_url());
    assert!(query["state"].len() >= 43);
    assert!(query["scope"].contains("refresh_token"));
    // The state is stored only as its hash.
    let page = app.broker().store().sealed_values(None, 10).await.unwrap();
    assert_eq!(page.values.len(), 1);
    assert_eq!(
        page.values[0].reference,
        forcelink_core::SealedRef::pending(&pkce::state_hash(&query["state"]))
    );
}

#[tokio::test]
async fn bad_start_parameters_get_clear_errors_and_store_nothing() {
    let app = TestApp::start(Options::default()).await;
    for (query, code) in [
        ("orgid=00D12", "invalid_org_id"),
        ("orgid=001000000000062", "invalid_org_id"),
        ("orgid=00D000000000062XYZ", "invalid_org_id"),
        ("ctx=Has%20Space", "invalid_context"),
        ("env=staging", "invalid_env"),
        ("domain=evil.example.com", "invalid_domain"),
        (
            "domain=http%3A%2F%2Facme.my.salesforce.com",
            "invalid_domain",
        ),
    ] {
        let response = app
            .http
            .get(format!("{}/v1/connect/salesforce/start?{query}", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{query}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"], code, "{query}: {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert!(
        app.broker()
            .store()
            .sealed_values(None, 10)
            .await
            .unwrap()
            .values
            .is_empty()
    );
}

#[tokio::test]
async fn replayed_callback_is_refused_because_state_is_single_use() {
    let mut app = TestApp::start(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let start = browser
        .get(format!(
            "{}/v1/connect/salesforce/start?{}",
            app.url,
            org.start_query()
        ))
        .send()
        .await
        .unwrap();
    let mut authorize = url::Url::parse(start.headers()["location"].to_str().unwrap()).unwrap();
    authorize
        .query_pairs_mut()
        .append_pair("login_hint", &org.user.username);
    let approved = browser.get(authorize).send().await.unwrap();
    let callback = approved.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(browser.get(&callback).send().await.unwrap().status(), 200);
    let replay = browser.get(&callback).send().await.unwrap();
    assert_eq!(replay.status(), 400);
    assert!(
        replay
            .text()
            .await
            .unwrap()
            .contains("expired or was already used")
    );
    assert_eq!(app.sim.counters().code_exchanges, 1);
}

#[tokio::test]
async fn state_expires_after_ten_minutes() {
    let mut app = TestApp::start(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let start = browser
        .get(format!(
            "{}/v1/connect/salesforce/start?{}",
            app.url,
            org.start_query()
        ))
        .send()
        .await
        .unwrap();
    let mut authorize = url::Url::parse(start.headers()["location"].to_str().unwrap()).unwrap();
    authorize
        .query_pairs_mut()
        .append_pair("login_hint", &org.user.username);
    let approved = browser.get(authorize).send().await.unwrap();
    let callback = approved.headers()["location"].to_str().unwrap().to_string();
    app.clock.advance(chrono::Duration::minutes(11));
    let late = browser.get(&callback).send().await.unwrap();
    assert_eq!(late.status(), 400);
    assert_eq!(
        app.sim.counters().code_exchanges,
        0,
        "an expired state never reaches Salesforce"
    );
    assert!(app.broker().store().connections().await.unwrap().is_empty());
}

#[tokio::test]
async fn tampered_identity_fails_the_signature_check_and_stores_nothing() {
    let mut app = TestApp::start(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    app.sim.add_fault(sfsim::Fault {
        target: sfsim::FaultTarget::TokenAuthorizationCode,
        org_id: None,
        consumer_key: None,
        kind: sfsim::FaultKind::TamperIdentity,
        times: None,
    });
    let outcome = app.connect(&org).await;
    assert_eq!(outcome.status, 502, "{}", outcome.page);
    assert!(outcome.page.contains("failed verification"));
    assert!(app.broker().store().connections().await.unwrap().is_empty());
}

#[tokio::test]
async fn grant_for_another_org_is_refused_and_revoked() {
    let mut app = TestApp::start(Options::default()).await;
    let expected = app.org(LoginKind::Production).await;
    let other = app.org(LoginKind::Production).await;
    let query = format!("ctx=api&orgid={}", expected.id());
    let outcome = forcelink::demo::browser_connect(&app.url, &query, &other.user.username)
        .await
        .unwrap();
    assert_eq!(outcome.status, 409, "{}", outcome.page);
    assert!(outcome.page.contains("different org"));
    assert!(app.broker().store().connections().await.unwrap().is_empty());
    assert_eq!(
        app.sim
            .active_refresh_tokens(other.id(), &app.sf_app.consumer_key),
        0,
        "the stray grant is revoked"
    );
}

#[tokio::test]
async fn denied_authorization_shows_a_plain_page_and_stores_nothing() {
    let mut app = TestApp::start(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    app.sim.set_next_authorize_denied(true);
    let outcome = app.connect(&org).await;
    assert_eq!(outcome.status, 400, "{}", outcome.page);
    assert!(outcome.page.contains("did not authorize"));
    assert!(app.broker().store().connections().await.unwrap().is_empty());
}

#[tokio::test]
async fn reconnect_replaces_the_grant_in_place_and_revokes_the_old_one() {
    let mut app = TestApp::start(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    let before = app.broker().store().connections().await.unwrap().remove(0);
    let old_refresh = app.stored_refresh_token(org.id()).await;
    let outcome = app.connect(&org).await;
    assert_eq!(outcome.status, 200);
    assert!(outcome.page.contains("reconnected"));
    let after = app.broker().store().connections().await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].id, before.id, "same connection");
    assert_eq!(after[0].generation, before.generation + 1);
    assert_eq!(after[0].created_at, before.created_at);
    assert_ne!(app.stored_refresh_token(org.id()).await, old_refresh);
    assert_eq!(
        app.sim
            .active_refresh_tokens(org.id(), &app.sf_app.consumer_key),
        1,
        "old grant revoked"
    );
    assert!(app.sim.counters().revocations >= 1);
}

#[tokio::test]
async fn connect_without_orgid_binds_the_org_from_the_identity() {
    let mut app = TestApp::start(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    let outcome = forcelink::demo::browser_connect(&app.url, "ctx=api", &org.user.username)
        .await
        .unwrap();
    assert_eq!(outcome.status, 200, "{}", outcome.page);
    let all = app.broker().store().connections().await.unwrap();
    assert_eq!(all[0].key.org_id.as_str(), org.id());
}
