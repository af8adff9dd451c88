//! Authorize endpoint and authorization-code exchange: hosts, PKCE, client secret rules, codes.

use reqwest::StatusCode;
use sfsim::{AppSettings, AppSpec, OrgSpec, UserSpec};

use crate::support::{
    CALLBACK, assert_oauth_error, location_params, param, pkce, text, world, world_with,
};

#[tokio::test]
async fn confidential_app_with_pkce_gets_salesforce_shaped_tokens() {
    let world = world().await;
    let body = world.tokens().await;
    assert!(text(&body, "access_token").starts_with(&format!("{}!", world.org.org_id)));
    assert!(!text(&body, "refresh_token").is_empty());
    assert_eq!(text(&body, "instance_url"), world.org.instance_url);
    assert_eq!(
        text(&body, "id"),
        format!(
            "{}/id/{}/{}",
            world.sim.production_login_url(),
            world.org.org_id,
            world.user.user_id
        )
    );
    assert_eq!(text(&body, "token_type"), "Bearer");
    assert_eq!(text(&body, "scope"), "api refresh_token");
    assert!(body["issued_at"].is_string());
    assert!(body.get("expires_in").is_none());
    assert_eq!(world.sim.counters().code_exchanges, 1);
}

#[tokio::test]
async fn token_responses_carry_json_and_no_store_headers() {
    let world = world().await;
    let (code, verifier) = world.code().await;
    let response = world
        .client
        .post(format!(
            "{}/services/oauth2/token",
            world.sim.production_login_url()
        ))
        .basic_auth(&world.app.consumer_key, Some(&world.app.consumer_secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", CALLBACK),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/json;charset=UTF-8"
    );
    assert_eq!(response.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn public_app_exchanges_a_code_without_a_secret() {
    let world = world_with(AppSettings {
        consumer_secret_optional: true,
        ..AppSettings::default()
    })
    .await;
    let (code, verifier) = world.code().await;
    let (status, body) = world
        .token_with(
            &world.client,
            &world.sim.production_login_url(),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("client_id", &world.app.consumer_key),
                ("redirect_uri", CALLBACK),
                ("code_verifier", &verifier),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn confidential_app_without_a_secret_is_an_invalid_client() {
    let world = world().await;
    let (code, verifier) = world.code().await;
    let (status, body) = world
        .token_with(
            &world.client,
            &world.sim.production_login_url(),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("client_id", &world.app.consumer_key),
                ("redirect_uri", CALLBACK),
                ("code_verifier", &verifier),
            ],
        )
        .await;
    assert_oauth_error(
        status,
        &body,
        "invalid_client",
        "invalid client credentials",
    );
}

#[tokio::test]
async fn app_without_pkce_required_works_without_a_challenge() {
    let world = world_with(AppSettings {
        pkce_required: false,
        ..AppSettings::default()
    })
    .await;
    let response = world
        .authorize_raw(
            &world.sim.production_login_url(),
            &[("login_hint", &world.user.username), ("scope", "api")],
        )
        .await;
    let params = location_params(&response);
    let code = param(&params, "code").unwrap();
    let (status, body) = world
        .token_with(
            &world.client,
            &world.sim.production_login_url(),
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("client_id", &world.app.consumer_key),
                ("client_secret", &world.app.consumer_secret),
                ("redirect_uri", CALLBACK),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.get("refresh_token").is_none(),
        "no refresh_token scope"
    );
}

#[tokio::test]
async fn pkce_required_without_a_challenge_redirects_with_invalid_request() {
    let world = world().await;
    let response = world
        .authorize_raw(
            &world.sim.production_login_url(),
            &[("login_hint", &world.user.username), ("state", "s1")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FOUND);
    let params = location_params(&response);
    assert_eq!(param(&params, "error"), Some("invalid_request"));
    assert_eq!(
        param(&params, "error_description"),
        Some("missing required code challenge")
    );
    assert_eq!(param(&params, "state"), Some("s1"));
}

#[tokio::test]
async fn plain_challenge_method_is_refused_by_default() {
    let world = world().await;
    let response = world
        .authorize_raw(
            &world.sim.production_login_url(),
            &[
                ("login_hint", &world.user.username),
                (
                    "code_challenge",
                    "abcdefghijklmnopqrstuvwxyz0123456789abcdefgh",
                ),
                ("code_challenge_method", "plain"),
            ],
        )
        .await;
    let params = location_params(&response);
    assert_eq!(param(&params, "error"), Some("invalid_request"));
}

#[tokio::test]
async fn a_wrong_verifier_is_an_invalid_code_verifier() {
    let world = world().await;
    let (code, _) = world.code().await;
    let (other_verifier, _) = pkce();
    let (status, body) = world.exchange(&code, &other_verifier).await;
    assert_oauth_error(status, &body, "invalid_grant", "invalid code verifier");
}

#[tokio::test]
async fn a_verifier_without_a_stored_challenge_is_refused() {
    let world = world_with(AppSettings {
        pkce_required: false,
        ..AppSettings::default()
    })
    .await;
    let response = world
        .authorize_raw(
            &world.sim.production_login_url(),
            &[("login_hint", &world.user.username)],
        )
        .await;
    let params = location_params(&response);
    let (status, body) = world
        .exchange(param(&params, "code").unwrap(), "some-verifier")
        .await;
    assert_oauth_error(status, &body, "invalid_grant", "invalid code verifier");
}

#[tokio::test]
async fn a_code_is_single_use() {
    let world = world().await;
    let (code, verifier) = world.code().await;
    assert_eq!(world.exchange(&code, &verifier).await.0, StatusCode::OK);
    let (status, body) = world.exchange(&code, &verifier).await;
    assert_oauth_error(status, &body, "invalid_grant", "expired authorization code");
}

#[tokio::test]
async fn a_code_expires_after_fifteen_minutes() {
    let world = world().await;
    let (code, verifier) = world.code().await;
    world
        .sim
        .advance_clock(std::time::Duration::from_secs(16 * 60));
    let (status, body) = world.exchange(&code, &verifier).await;
    assert_oauth_error(status, &body, "invalid_grant", "expired authorization code");
}

#[tokio::test]
async fn an_unknown_client_id_gets_an_error_page_and_no_redirect() {
    let world = world().await;
    let response = world
        .client
        .get(format!(
            "{}/services/oauth2/authorize",
            world.sim.production_login_url()
        ))
        .query(&[
            ("response_type", "code"),
            ("client_id", "nope"),
            ("redirect_uri", CALLBACK),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.headers().get("location").is_none());
}

#[tokio::test]
async fn a_mismatched_redirect_uri_gets_an_error_page() {
    let world = world().await;
    let response = world
        .client
        .get(format!(
            "{}/services/oauth2/authorize",
            world.sim.production_login_url()
        ))
        .query(&[
            ("response_type", "code"),
            ("client_id", world.app.consumer_key.as_str()),
            ("redirect_uri", "https://evil.example.com/cb"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.headers().get("location").is_none());
}

#[tokio::test]
async fn a_denied_authorization_redirects_with_access_denied() {
    let world = world().await;
    world.sim.set_next_authorize_denied(true);
    let (_, challenge) = pkce();
    let response = world
        .authorize_raw(
            &world.sim.production_login_url(),
            &[
                ("login_hint", &world.user.username),
                ("code_challenge", &challenge),
            ],
        )
        .await;
    let params = location_params(&response);
    assert_eq!(param(&params, "error"), Some("access_denied"));
    assert_eq!(
        param(&params, "error_description"),
        Some("end-user denied authorization")
    );
}

#[tokio::test]
async fn the_default_approver_logs_in_when_there_is_no_login_hint() {
    let world = world().await;
    world.sim.set_default_approver(Some(&world.user.username));
    let (_, challenge) = pkce();
    let response = world
        .authorize_raw(
            &world.sim.production_login_url(),
            &[("code_challenge", &challenge)],
        )
        .await;
    assert!(param(&location_params(&response), "code").is_some());
}

#[tokio::test]
async fn a_sandbox_user_is_refused_on_the_production_host_but_not_on_the_sandbox_host() {
    let world = world().await;
    let sandbox = world
        .sim
        .create_org(OrgSpec {
            name: "Acme UAT".to_owned(),
            sandbox: true,
            my_domain: "acme--uat".to_owned(),
            ..OrgSpec::default()
        })
        .await
        .unwrap();
    let tester = world
        .sim
        .create_user(
            &sandbox.org_id,
            UserSpec::named("admin@acme.example.com.uat"),
        )
        .unwrap();
    assert_eq!(sandbox.login_url, world.sim.sandbox_login_url());
    let (_, challenge) = pkce();
    let refused = world
        .authorize_raw(
            &world.sim.production_login_url(),
            &[
                ("login_hint", &tester.username),
                ("code_challenge", &challenge),
            ],
        )
        .await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let (code, verifier) = world
        .code_as(&world.sim.sandbox_login_url(), &tester.username, "api")
        .await;
    let (status, body) = world
        .token_with(
            &world.client,
            &world.sim.sandbox_login_url(),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("client_id", &world.app.consumer_key),
                ("client_secret", &world.app.consumer_secret),
                ("redirect_uri", CALLBACK),
                ("code_verifier", &verifier),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(text(&body, "id").starts_with(&world.sim.sandbox_login_url()));
}

#[tokio::test]
async fn my_domain_logins_still_get_an_identity_url_on_the_login_host() {
    let world = world().await;
    let my_domain = world.org.instance_url.clone();
    let (code, verifier) = world
        .code_as(&my_domain, &world.user.username, "api refresh_token")
        .await;
    let (status, body) = world
        .token_with(
            &world.client,
            &my_domain,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("client_id", &world.app.consumer_key),
                ("client_secret", &world.app.consumer_secret),
                ("redirect_uri", CALLBACK),
                ("code_verifier", &verifier),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(text(&body, "id").starts_with(&world.sim.production_login_url()));
}

#[tokio::test]
async fn another_orgs_user_cannot_log_in_on_a_my_domain() {
    let world = world().await;
    let other = world
        .sim
        .create_org(OrgSpec {
            name: "Globex".to_owned(),
            my_domain: "globex".to_owned(),
            ..OrgSpec::default()
        })
        .await
        .unwrap();
    let (_, challenge) = pkce();
    let response = world
        .authorize_raw(
            &other.instance_url,
            &[
                ("login_hint", &world.user.username),
                ("code_challenge", &challenge),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_signature_recomputes_from_id_and_issued_at_with_the_consumer_secret() {
    use base64::Engine;
    use hmac::{KeyInit, Mac};
    let world = world().await;
    let body = world.tokens().await;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(world.app.consumer_secret.as_bytes()).unwrap();
    mac.update(text(&body, "id").as_bytes());
    mac.update(text(&body, "issued_at").as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(text(&body, "signature"), expected);
}

#[tokio::test]
async fn an_unsupported_grant_type_is_refused() {
    let world = world().await;
    let (status, body) = world
        .token_with(
            &world.client,
            &world.sim.production_login_url(),
            &[
                ("grant_type", "password"),
                ("client_id", &world.app.consumer_key),
            ],
        )
        .await;
    assert_oauth_error(
        status,
        &body,
        "unsupported_grant_type",
        "grant type not supported",
    );
}

#[tokio::test]
async fn an_unknown_client_id_at_the_token_endpoint_is_invalid_client_id() {
    let world = world().await;
    let (code, verifier) = world.code().await;
    let (status, body) = world
        .token_with(
            &world.client,
            &world.sim.production_login_url(),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("client_id", "3MVG9unknown"),
                ("redirect_uri", CALLBACK),
                ("code_verifier", &verifier),
            ],
        )
        .await;
    assert_oauth_error(
        status,
        &body,
        "invalid_client_id",
        "client identifier invalid",
    );
}

#[tokio::test]
async fn an_app_created_from_a_spec_keeps_its_callback_urls() {
    let world = world().await;
    let app = world.sim.create_app(AppSpec {
        name: "Other".to_owned(),
        callback_urls: vec!["http://127.0.0.1:9/cb".to_owned()],
        ..AppSpec::default()
    });
    assert_eq!(
        world
            .sim
            .app(&app.consumer_key)
            .unwrap()
            .settings
            .callback_urls,
        vec!["http://127.0.0.1:9/cb".to_owned()]
    );
}
