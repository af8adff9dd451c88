//! Refresh grant: rotation and reuse detection, concurrency, secret rules, inactive users,
//! the refresh-token policies against the sim clock, the IP allowlist and the grant cap.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sfsim::{AppSettings, DAY, Fault, FaultKind, FaultTarget, RefreshTokenPolicy};

use crate::support::{assert_oauth_error, client_from, text, world, world_with};

const EXPIRED: &str = "expired access/refresh token";

#[tokio::test]
async fn rotation_returns_a_new_refresh_token_and_kills_the_old_one() {
    let world = world().await;
    let first = world.tokens().await;
    let old = text(&first, "refresh_token").to_owned();
    let (status, second) = world.refresh(&old).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let new = text(&second, "refresh_token").to_owned();
    assert!(!new.is_empty() && new != old);
    assert!(!text(&second, "signature").is_empty());
    assert!(second["issued_at"].is_string());

    let (status, body) = world.refresh(&old).await;
    assert_oauth_error(status, &body, "invalid_grant", EXPIRED);
    assert_eq!(world.sim.counters().reuse_detections, 1);
    let (status, body) = world.refresh(&new).await;
    assert_oauth_error(status, &body, "invalid_grant", EXPIRED);
    let (status, _) = world
        .rest("/services/data/v59.0/limits", text(&second, "access_token"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        world
            .sim
            .active_refresh_tokens(&world.org.org_id, &world.app.consumer_key),
        0
    );
}

#[tokio::test]
async fn without_rotation_the_response_has_no_refresh_token_and_the_token_keeps_working() {
    let world = world_with(AppSettings {
        rotation: false,
        ..AppSettings::default()
    })
    .await;
    let first = world.tokens().await;
    let token = text(&first, "refresh_token").to_owned();
    for _ in 0..3 {
        let (status, body) = world.refresh(&token).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.get("refresh_token").is_none());
    }
    assert_eq!(world.sim.counters().refresh_grants, 3);
}

#[tokio::test]
async fn a_concurrent_refresh_on_the_same_token_is_already_being_processed() {
    let world = world().await;
    let first = world.tokens().await;
    let token = text(&first, "refresh_token").to_owned();
    world.sim.add_fault(Fault::once(
        FaultTarget::TokenRefresh,
        FaultKind::DelayBeforeProcessing(Duration::from_millis(1500)),
    ));
    let slow = {
        let client = world.client.clone();
        let url = format!("{}/services/oauth2/token", world.sim.production_login_url());
        let form = vec![
            ("grant_type".to_owned(), "refresh_token".to_owned()),
            ("refresh_token".to_owned(), token.clone()),
            ("client_id".to_owned(), world.app.consumer_key.clone()),
            (
                "client_secret".to_owned(),
                world.app.consumer_secret.clone(),
            ),
        ];
        tokio::spawn(async move {
            let response = client.post(url).form(&form).send().await.unwrap();
            (
                response.status(),
                response.json::<serde_json::Value>().await.unwrap(),
            )
        })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while world.sim.refreshes_in_flight() == 0 {
        assert!(Instant::now() < deadline, "the slow refresh never started");
        tokio::task::yield_now().await;
    }
    let (status, body) = world.refresh(&token).await;
    assert_oauth_error(
        status,
        &body,
        "invalid_grant",
        "token request is already being processed",
    );
    let (status, body) = slow.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(world.sim.counters().concurrent_rejections, 1);
    assert_eq!(world.sim.counters().refresh_grants, 1);
    let (status, _) = world.refresh(text(&body, "refresh_token")).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the family survives a concurrent rejection by default"
    );
}

#[tokio::test]
async fn a_refresh_without_the_required_secret_is_an_invalid_client() {
    let world = world().await;
    let first = world.tokens().await;
    let (status, body) = world
        .token_with(
            &world.client,
            &world.sim.production_login_url(),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", text(&first, "refresh_token")),
                ("client_id", &world.app.consumer_key),
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
async fn a_sent_secret_is_still_validated_when_not_required() {
    let world = world_with(AppSettings {
        secret_required_for_refresh: false,
        ..AppSettings::default()
    })
    .await;
    let first = world.tokens().await;
    let (status, body) = world
        .token_with(
            &world.client,
            &world.sim.production_login_url(),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", text(&first, "refresh_token")),
                ("client_id", &world.app.consumer_key),
                ("client_secret", "wrong"),
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
async fn an_inactive_user_cannot_refresh() {
    let world = world().await;
    let first = world.tokens().await;
    world
        .sim
        .set_user_active(&world.user.user_id, false)
        .unwrap();
    let (status, body) = world.refresh(text(&first, "refresh_token")).await;
    assert_oauth_error(status, &body, "invalid_grant", "inactive user");
}

#[tokio::test]
async fn an_inactive_org_cannot_refresh() {
    let world = world().await;
    let first = world.tokens().await;
    world.sim.set_org_active(&world.org.org_id, false).unwrap();
    let (status, body) = world.refresh(text(&first, "refresh_token")).await;
    assert_oauth_error(status, &body, "invalid_grant", "inactive organization");
}

async fn refresh_after(
    policy: RefreshTokenPolicy,
    idle_cap: bool,
    steps: &[Duration],
) -> StatusCode {
    let world = world_with(AppSettings {
        refresh_token_policy: policy,
        idle_ttl_limit: idle_cap,
        ..AppSettings::default()
    })
    .await;
    let mut token = text(&world.tokens().await, "refresh_token").to_owned();
    let mut last = StatusCode::OK;
    for step in steps {
        world.sim.advance_clock(*step);
        let (status, body) = world.refresh(&token).await;
        if status != StatusCode::OK {
            assert_oauth_error(status, &body, "invalid_grant", EXPIRED);
            return status;
        }
        token = text(&body, "refresh_token").to_owned();
        last = status;
    }
    last
}

#[tokio::test]
async fn the_zero_policy_never_refreshes() {
    assert_eq!(
        refresh_after(RefreshTokenPolicy::Zero, true, &[Duration::ZERO]).await,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn specific_inactivity_slides_with_each_use_and_expires_when_idle() {
    let window = RefreshTokenPolicy::SpecificInactivity(DAY);
    let hours = |h: u64| Duration::from_secs(h * 3600);
    assert_eq!(
        refresh_after(window, true, &[hours(20), hours(20), hours(20)]).await,
        StatusCode::OK
    );
    assert_eq!(
        refresh_after(window, true, &[hours(20), hours(25)]).await,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn specific_lifetime_expires_even_with_continuous_use() {
    let lifetime = RefreshTokenPolicy::SpecificLifetime(DAY * 2);
    let day = DAY;
    assert_eq!(
        refresh_after(lifetime, true, &[day, day / 2]).await,
        StatusCode::OK
    );
    assert_eq!(
        refresh_after(lifetime, true, &[day, day, day / 2]).await,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn the_thirty_day_idle_cap_applies_on_top_of_infinite_and_long_lifetimes() {
    assert_eq!(
        refresh_after(RefreshTokenPolicy::Infinite, true, &[DAY * 29, DAY * 29]).await,
        StatusCode::OK
    );
    assert_eq!(
        refresh_after(RefreshTokenPolicy::Infinite, true, &[DAY * 31]).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        refresh_after(RefreshTokenPolicy::Infinite, false, &[DAY * 365]).await,
        StatusCode::OK
    );
    let year = RefreshTokenPolicy::SpecificLifetime(DAY * 365);
    assert_eq!(
        refresh_after(year, true, &[DAY * 31]).await,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn the_ip_allowlist_blocks_other_addresses_and_keeps_the_token_valid() {
    let allowed = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let world = world_with(AppSettings {
        refresh_ip_allowlist: Some(vec![(allowed, allowed)]),
        ..AppSettings::default()
    })
    .await;
    let allowed_client = client_from(Some(allowed));
    let blocked_client = client_from(Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    let (code, verifier) = world.code().await;
    let (status, body) = world.exchange_with(&blocked_client, &code, &verifier).await;
    assert_oauth_error(status, &body, "invalid_grant", "ip restricted");
    let (status, first) = world.exchange_with(&allowed_client, &code, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let token = text(&first, "refresh_token");
    let (status, body) = world.refresh_with(&blocked_client, token).await;
    assert_oauth_error(status, &body, "invalid_grant", "ip restricted");
    let (status, body) = world.refresh_with(&allowed_client, token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(world.sim.counters().ip_blocks, 2);
    assert_eq!(world.sim.counters().reuse_detections, 0);
}

#[tokio::test]
async fn a_sixth_grant_revokes_the_oldest() {
    let world = world().await;
    let first = world.tokens().await;
    for _ in 0..5 {
        world.tokens().await;
    }
    assert_eq!(
        world
            .sim
            .active_refresh_tokens(&world.org.org_id, &world.app.consumer_key),
        5
    );
    let (status, body) = world.refresh(text(&first, "refresh_token")).await;
    assert_oauth_error(status, &body, "invalid_grant", EXPIRED);
    let (status, _) = world
        .rest("/services/data/v59.0/limits", text(&first, "access_token"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn access_tokens_expire_after_the_session_timeout() {
    let world = world().await;
    let body = world.tokens().await;
    let access = text(&body, "access_token");
    assert_eq!(
        world.rest("/services/data/v59.0/limits", access).await.0,
        StatusCode::OK
    );
    world.sim.advance_clock(Duration::from_secs(2 * 3600 + 1));
    assert_eq!(
        world.rest("/services/data/v59.0/limits", access).await.0,
        StatusCode::UNAUTHORIZED
    );
}
