//! The admin JSON API: authentication, listing, revocation, and that no secret leaks through it
//! or into the database in plaintext.

use crate::harness::{LoginKind, Options, TestApp};

#[tokio::test]
async fn api_requires_the_admin_key() {
    let app = TestApp::start(Options::default()).await;
    let none = app
        .http
        .get(format!("{}/v1/connections", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 401);
    let body: serde_json::Value = none.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized");
    let wrong = app
        .http
        .get(format!("{}/v1/connections", app.url))
        .bearer_auth("not-the-key")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let (status, _) = app.api(reqwest::Method::GET, "/v1/connections", None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn unknown_org_and_bad_ids_get_stable_errors() {
    let app = TestApp::start(Options::default()).await;
    let (status, body) = app
        .agent_api(
            reqwest::Method::POST,
            "/v1/connections/00D000000000062/token",
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("connection_not_found"))
    );
    let (status, body) = app
        .api(reqwest::Method::GET, "/v1/connections/banana", None)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_org_id"))
    );
    let (status, body) = app
        .agent_api(
            reqwest::Method::POST,
            "/v1/connections/00D000000000062/token",
            Some(serde_json::json!({"stale": 1})),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_body"))
    );
    // A malformed query string gets the same JSON error body, naming the field.
    let (status, body) = app
        .api(reqwest::Method::GET, "/v1/events?limit=many", None)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_query")),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("limit"),
        "{body}"
    );
    // No route, or a method the route does not serve: the same JSON body, never the query.
    let (status, body) = app
        .api(reqwest::Method::GET, "/v1/nothing-here?token=secret", None)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    assert!(!body.to_string().contains("secret"), "{body}");
    let (status, body) = app.api(reqwest::Method::PUT, "/v1/events", None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (405, Some("method_not_allowed")),
        "{body}"
    );
}

/// A body over the API's 64 KiB limit is refused with the JSON error body, whether its length
/// is declared or it comes in chunks, and nothing is created.
#[tokio::test]
async fn oversized_bodies_get_413_in_json_and_change_nothing() {
    let app = TestApp::start(Options::default()).await;
    let padding = "x".repeat(70 * 1024);
    let body = serde_json::json!({"name": "big", "orgs": ["*"], "capabilities": ["token"], "note": padding})
        .to_string();
    let chunks: Vec<Result<String, std::io::Error>> = body
        .as_bytes()
        .chunks(8 * 1024)
        .map(|chunk| Ok(String::from_utf8(chunk.to_vec()).unwrap()))
        .collect();
    for request in [
        app.http
            .post(format!("{}/v1/agents", app.url))
            .body(body.clone()),
        app.http
            .post(format!("{}/v1/agents", app.url))
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                chunks,
            ))),
    ] {
        let response = request.bearer_auth(&app.admin_key).send().await.unwrap();
        assert_eq!(response.status(), 413);
        let answer: serde_json::Value = response.json().await.unwrap();
        assert_eq!(answer["error"], "body_too_large", "{answer}");
        assert!(
            answer["message"].as_str().unwrap().contains("64 KiB"),
            "{answer}"
        );
    }
    let (status, agents) = app.api(reqwest::Method::GET, "/v1/agents", None).await;
    assert_eq!(status, 200);
    assert!(
        !agents.to_string().contains("\"big\""),
        "an agent was created from a refused body: {agents}"
    );
    // Under the limit the same route reads the body.
    let (status, body) = app
        .api(
            reqwest::Method::POST,
            "/v1/agents",
            Some(serde_json::json!({"name": "small", "orgs": ["*"], "capabilities": ["token"]})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn delete_revokes_at_salesforce_then_removes() {
    let mut app = TestApp::start(Options::default()).await;
    let org = app.org(LoginKind::Sandbox).await;
    app.connect_ok(&org).await;
    assert_eq!(
        app.sim
            .active_refresh_tokens(org.id(), &app.sf_app.consumer_key),
        1
    );
    let (status, body) = app
        .api(
            reqwest::Method::DELETE,
            &format!("/v1/connections/{}", org.id()),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        app.sim
            .active_refresh_tokens(org.id(), &app.sf_app.consumer_key),
        0
    );
    let (status, _) = app
        .api(
            reqwest::Method::GET,
            &format!("/v1/connections/{}", org.id()),
            None,
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn delete_keeps_the_connection_when_salesforce_is_down() {
    let mut app = TestApp::start(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    app.sim.add_fault(sfsim::Fault {
        target: sfsim::FaultTarget::Revoke,
        org_id: None,
        consumer_key: None,
        kind: sfsim::FaultKind::Status(500),
        times: Some(1),
    });
    let (status, body) = app
        .api(
            reqwest::Method::DELETE,
            &format!("/v1/connections/{}", org.id()),
            None,
        )
        .await;
    assert_eq!(status, 503, "{body}");
    let (status, _) = app
        .api(
            reqwest::Method::GET,
            &format!("/v1/connections/{}", org.id()),
            None,
        )
        .await;
    assert_eq!(status, 200, "nothing is lost when the revoke fails");
}

#[tokio::test]
async fn tokens_never_appear_in_api_listings_or_in_the_database_file() {
    let mut app = TestApp::start(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    let refresh = app.stored_refresh_token(org.id()).await;
    let (_, token) = app.token(org.id()).await;
    let access = token["access_token"].as_str().unwrap().to_string();
    let (_, listed) = app.api(reqwest::Method::GET, "/v1/connections", None).await;
    let shown = app.shown(org.id()).await;
    for text in [listed.to_string(), shown.to_string()] {
        assert!(
            !text.contains(&refresh) && !text.contains(&access),
            "{text}"
        );
    }
    let db_path = app
        .config
        .store
        .url
        .trim_start_matches("sqlite:")
        .to_string();
    let mut bytes = std::fs::read(&db_path).unwrap();
    bytes.extend(std::fs::read(format!("{db_path}-wal")).unwrap_or_default());
    for secret in [&refresh, &access, &app.sf_app.consumer_secret] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "plaintext secret in the database"
        );
    }
    let debug = format!("{:?}", app.broker().store().connections().await.unwrap());
    assert!(!debug.contains(&refresh) && !debug.contains(&access));
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = TestApp::start(Options::default()).await;
    for path in ["/healthz", "/readyz"] {
        let response = app
            .http
            .get(format!("{}{path}", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn metrics_are_served_in_prometheus_text_format() {
    let mut app = TestApp::start(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    app.advance(2 * 3600 + 1);
    assert_eq!(app.token(org.id()).await.0, 200);
    assert_eq!(app.token(org.id()).await.0, 200);
    let response = app
        .http
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    for needle in [
        "forcelink_refreshes_total{outcome=\"rotated\"}",
        "forcelink_refresh_seconds_bucket",
        "forcelink_connections{state=\"active\"}",
        "forcelink_heartbeat_lag_seconds",
        "forcelink_token_handouts_total{source=\"cache\"}",
        "forcelink_token_handout_seconds_bucket",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    // Each family is typed once (a repeated TYPE line fails the whole scrape), and every
    // sample is `name[{labels}] value` with a number for the value.
    let mut typed = std::collections::BTreeSet::new();
    for line in text.lines().filter(|line| !line.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let family = rest.split(' ').next().unwrap();
            assert!(typed.insert(family.to_string()), "{family} typed twice");
        } else if !line.starts_with('#') {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "not a sample: {line}");
        }
    }
}
