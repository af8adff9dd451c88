//! Identity URL, userinfo and discovery documents.

use reqwest::StatusCode;
use serde_json::Value;
use sfsim::UserSpec;

use crate::support::{text, world};

#[tokio::test]
async fn the_identity_url_answers_with_the_users_identity() {
    let world = world().await;
    let body = world.tokens().await;
    let response = world
        .client
        .get(text(&body, "id"))
        .bearer_auth(text(&body, "access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let identity: Value = response.json().await.unwrap();
    assert_eq!(text(&identity, "user_id"), world.user.user_id);
    assert_eq!(text(&identity, "organization_id"), world.org.org_id);
    assert_eq!(text(&identity, "username"), world.user.username);
    assert_eq!(identity["active"], true);
    assert_eq!(
        text(&identity["urls"], "rest"),
        format!("{}/services/data/v{{version}}/", world.org.instance_url)
    );
}

#[tokio::test]
async fn the_identity_of_another_user_is_forbidden() {
    let world = world().await;
    let body = world.tokens().await;
    let other = world
        .sim
        .create_user(&world.org.org_id, UserSpec::named("other@acme.example.com"))
        .unwrap();
    let response = world
        .client
        .get(format!(
            "{}/id/{}/{}",
            world.sim.production_login_url(),
            world.org.org_id,
            other.user_id
        ))
        .bearer_auth(text(&body, "access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(response.text().await.unwrap(), "Bad_OAuth_Token");
}

#[tokio::test]
async fn userinfo_gives_oidc_claims_on_any_host() {
    let world = world().await;
    let body = world.tokens().await;
    let response = world
        .client
        .get(format!(
            "{}/services/oauth2/userinfo",
            world.org.instance_url
        ))
        .bearer_auth(text(&body, "access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let claims: Value = response.json().await.unwrap();
    assert_eq!(text(&claims, "user_id"), world.user.user_id);
    assert_eq!(text(&claims, "organization_id"), world.org.org_id);
    assert_eq!(text(&claims, "preferred_username"), world.user.username);
    assert_eq!(text(&claims, "sub"), text(&body, "id"));
    let bad = world
        .client
        .get(format!(
            "{}/services/oauth2/userinfo",
            world.org.instance_url
        ))
        .bearer_auth("bogus")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn discovery_names_the_hosts_own_endpoints() {
    let world = world().await;
    let host = world.org.instance_url.clone();
    let document: Value = world
        .client
        .get(format!("{host}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(text(&document, "issuer"), host);
    assert_eq!(
        text(&document, "token_endpoint"),
        format!("{host}/services/oauth2/token")
    );
}
