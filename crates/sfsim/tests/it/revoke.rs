//! Revocation and introspection.

use reqwest::StatusCode;
use serde_json::Value;
use sfsim::{AppSettings, AppSpec};

use crate::support::{CALLBACK, assert_oauth_error, text, world};

async fn revoke(world: &crate::support::World, token: &str) -> (StatusCode, Value) {
    let response = world
        .client
        .post(format!(
            "{}/services/oauth2/revoke",
            world.sim.production_login_url()
        ))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn introspect(
    world: &crate::support::World,
    client_id: &str,
    secret: &str,
    token: &str,
) -> (StatusCode, Value) {
    let response = world
        .client
        .post(format!(
            "{}/services/oauth2/introspect",
            world.sim.production_login_url()
        ))
        .basic_auth(client_id, Some(secret))
        .form(&[("token", token), ("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn revoking_a_refresh_token_revokes_its_access_tokens() {
    let world = world().await;
    let body = world.tokens().await;
    let (status, _) = revoke(&world, text(&body, "refresh_token")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, refreshed) = world.refresh(text(&body, "refresh_token")).await;
    assert_oauth_error(
        status,
        &refreshed,
        "invalid_grant",
        "expired access/refresh token",
    );
    let (status, _) = world
        .rest("/services/data/v59.0/limits", text(&body, "access_token"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(world.sim.counters().revocations, 1);
}

#[tokio::test]
async fn revoking_an_access_token_leaves_the_refresh_token_alive() {
    let world = world().await;
    let body = world.tokens().await;
    let (status, _) = revoke(&world, text(&body, "access_token")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = world.refresh(text(&body, "refresh_token")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn revoking_an_unknown_token_is_invalid_token() {
    let world = world().await;
    let (status, body) = revoke(&world, "nonsense").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(text(&body, "error"), "invalid_token");
}

#[tokio::test]
async fn introspection_describes_own_tokens_and_hides_foreign_ones() {
    let world = world().await;
    let body = world.tokens().await;
    let access = text(&body, "access_token");
    let (status, own) = introspect(
        &world,
        &world.app.consumer_key,
        &world.app.consumer_secret,
        access,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(own["active"], true);
    assert_eq!(text(&own, "token_type"), "access_token");
    assert_eq!(text(&own, "username"), world.user.username);
    assert_eq!(text(&own, "sub"), text(&body, "id"));
    assert!(own["exp"].as_i64().unwrap() > own["iat"].as_i64().unwrap());

    let other = world.sim.create_app(AppSpec {
        name: "Other".to_owned(),
        callback_urls: vec![CALLBACK.to_owned()],
        settings: AppSettings::default(),
    });
    let (_, foreign) =
        introspect(&world, &other.consumer_key, &other.consumer_secret, access).await;
    assert_eq!(foreign, serde_json::json!({"active": false}));
    world
        .sim
        .update_app(&other.consumer_key, |settings| {
            settings.introspect_all_tokens = true
        })
        .unwrap();
    let (_, all) = introspect(&world, &other.consumer_key, &other.consumer_secret, access).await;
    assert_eq!(all["active"], true);

    let (_, refresh) = introspect(
        &world,
        &world.app.consumer_key,
        &world.app.consumer_secret,
        text(&body, "refresh_token"),
    )
    .await;
    assert_eq!(text(&refresh, "token_type"), "refresh_token");
}

#[tokio::test]
async fn introspection_with_a_wrong_secret_is_unauthorized() {
    let world = world().await;
    let (status, body) = introspect(&world, &world.app.consumer_key, "wrong", "x").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(text(&body, "error"), "invalid_client");
}
