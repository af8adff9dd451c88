//! The control HTTP API mirrors the Rust API: a whole flow set up over HTTP only.

use reqwest::StatusCode;
use serde_json::{Value, json};
use sfsim::Sim;

use crate::support::{CALLBACK, client, location_params, param, pkce, text};

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Value,
) -> Value {
    let response = client
        .request(method, url)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

#[tokio::test]
async fn an_org_user_and_app_created_over_http_can_complete_a_flow() {
    let sim = Sim::start().await.unwrap();
    let http = client();
    let control = format!("{}/sfsim", sim.production_login_url());
    let org = call(
        &http,
        reqwest::Method::POST,
        format!("{control}/orgs"),
        json!({"name": "Acme", "seed_accounts": 2}),
    )
    .await;
    let org_id = text(&org, "org_id").to_owned();
    let user = call(
        &http,
        reqwest::Method::POST,
        format!("{control}/orgs/{org_id}/users"),
        json!({"username": "a@acme.example.com"}),
    )
    .await;
    let app = call(
        &http,
        reqwest::Method::POST,
        format!("{control}/apps"),
        json!({"name": "Broker", "callback_urls": [CALLBACK], "settings": {"rotation": false, "refresh_token_policy": {"type": "infinite"}}}),
    )
    .await;
    assert_eq!(app["settings"]["rotation"], false);
    let key = text(&app, "consumer_key").to_owned();
    let patched = call(
        &http,
        reqwest::Method::PATCH,
        format!("{control}/apps/{key}"),
        json!({"session_timeout_seconds": 60}),
    )
    .await;
    assert_eq!(patched["settings"]["session_timeout_seconds"], 60);
    call(
        &http,
        reqwest::Method::POST,
        format!("{control}/approver"),
        json!({"username": "a@acme.example.com"}),
    )
    .await;

    let (verifier, challenge) = pkce();
    let response = http
        .get(format!(
            "{}/services/oauth2/authorize",
            sim.production_login_url()
        ))
        .query(&[
            ("response_type", "code"),
            ("client_id", key.as_str()),
            ("redirect_uri", CALLBACK),
            ("code_challenge", challenge.as_str()),
            ("scope", "api refresh_token"),
        ])
        .send()
        .await
        .unwrap();
    let code = param(&location_params(&response), "code")
        .unwrap()
        .to_owned();
    let tokens: Value = http
        .post(format!(
            "{}/services/oauth2/token",
            sim.production_login_url()
        ))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("client_id", key.as_str()),
            ("client_secret", text(&app, "consumer_secret")),
            ("redirect_uri", CALLBACK),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(text(&tokens, "id").ends_with(text(&user, "user_id")));

    let before = call(
        &http,
        reqwest::Method::GET,
        format!("{control}/clock"),
        json!({}),
    )
    .await["now_ms"]
        .as_i64()
        .unwrap();
    let after = call(
        &http,
        reqwest::Method::POST,
        format!("{control}/clock/advance"),
        json!({"seconds": 120}),
    )
    .await["now_ms"]
        .as_i64()
        .unwrap();
    assert!(after - before >= 120_000);
    let rest = http
        .get(format!(
            "{}/services/data/v59.0/limits",
            text(&org, "instance_url")
        ))
        .bearer_auth(text(&tokens, "access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        rest.status(),
        StatusCode::UNAUTHORIZED,
        "the 60 s session timed out"
    );

    call(
        &http,
        reqwest::Method::POST,
        format!("{control}/faults"),
        json!({"target": "token_refresh", "kind": {"type": "status", "status": 503}, "times": 1}),
    )
    .await;
    call(
        &http,
        reqwest::Method::DELETE,
        format!("{control}/faults"),
        json!({}),
    )
    .await;
    let counters = call(
        &http,
        reqwest::Method::GET,
        format!("{control}/counters?org_id={org_id}&consumer_key={key}"),
        json!({}),
    )
    .await;
    assert_eq!(counters["code_exchanges"], 1);
    assert_eq!(counters["rest_unauthorized"], 1);
    let requests = call(
        &http,
        reqwest::Method::GET,
        format!("{control}/requests"),
        json!({}),
    )
    .await;
    assert!(requests.as_array().unwrap().len() >= 8);
    sim.shutdown();
}

#[tokio::test]
async fn the_date_header_follows_the_simulated_clock() {
    let world = crate::support::world().await;
    world
        .sim
        .advance_clock(std::time::Duration::from_secs(3 * 3600));
    let response = world
        .client
        .get(format!(
            "{}/.well-known/openid-configuration",
            world.sim.production_login_url()
        ))
        .send()
        .await
        .unwrap();
    let date = response.headers()["date"].to_str().unwrap().to_string();
    let stamped = httpdate::parse_http_date(&date).unwrap();
    let sim_now =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(world.sim.now_ms() as u64);
    let skew = sim_now
        .duration_since(stamped)
        .unwrap_or_else(|e| e.duration());
    assert!(
        skew < std::time::Duration::from_secs(5),
        "Date {date} is not the simulated time"
    );
}
