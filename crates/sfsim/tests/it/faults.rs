//! Fault injection: dropped connections after commit, status answers without processing,
//! tampered identity URLs, delayed answers.

use std::time::Duration;

use reqwest::StatusCode;
use sfsim::{Fault, FaultKind, FaultTarget};

use crate::support::{assert_oauth_error, text, world};

#[tokio::test]
async fn a_dropped_refresh_response_is_a_connection_error_but_the_token_was_rotated() {
    let world = world().await;
    let first = world.tokens().await;
    let old = text(&first, "refresh_token").to_owned();
    world.sim.add_fault(Fault::once(
        FaultTarget::TokenRefresh,
        FaultKind::DropAfterProcessing,
    ));
    let outcome = world
        .client
        .post(format!(
            "{}/services/oauth2/token",
            world.sim.production_login_url()
        ))
        .timeout(Duration::from_secs(10))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", old.as_str()),
            ("client_id", world.app.consumer_key.as_str()),
            ("client_secret", world.app.consumer_secret.as_str()),
        ])
        .send()
        .await;
    let error = outcome.unwrap_err();
    assert!(!error.is_timeout(), "{error:?}");
    assert_eq!(
        world.sim.counters().refresh_grants,
        1,
        "the rotation was committed"
    );
    let (status, body) = world.refresh(&old).await;
    assert_oauth_error(
        status,
        &body,
        "invalid_grant",
        "expired access/refresh token",
    );
    assert_eq!(world.sim.counters().reuse_detections, 1);
}

#[tokio::test]
async fn a_status_fault_answers_without_rotating() {
    let world = world().await;
    let first = world.tokens().await;
    let token = text(&first, "refresh_token").to_owned();
    world
        .sim
        .add_fault(Fault::once(FaultTarget::AnyToken, FaultKind::Status(503)));
    let response = world
        .client
        .post(format!(
            "{}/services/oauth2/token",
            world.sim.production_login_url()
        ))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", token.as_str()),
            ("client_id", world.app.consumer_key.as_str()),
            ("client_secret", world.app.consumer_secret.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let (status, body) = world.refresh(&token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_tampered_identity_no_longer_matches_the_signature() {
    use base64::Engine;
    use hmac::{KeyInit, Mac};
    let world = world().await;
    world.sim.add_fault(Fault::once(
        FaultTarget::AnyToken,
        FaultKind::TamperIdentity,
    ));
    let body = world.tokens().await;
    let id = text(&body, "id");
    assert!(!id.ends_with(&world.user.user_id));
    assert!(id.contains(&world.org.org_id));
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(world.app.consumer_secret.as_bytes()).unwrap();
    mac.update(id.as_bytes());
    mac.update(text(&body, "issued_at").as_bytes());
    let recomputed = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_ne!(text(&body, "signature"), recomputed);
}

#[tokio::test]
async fn a_rest_status_fault_is_scoped_to_its_org() {
    let world = world().await;
    let body = world.tokens().await;
    let mut fault = Fault::once(FaultTarget::Rest, FaultKind::Status(500));
    fault.org_id = Some("00Dnotthisorg".to_owned());
    world.sim.add_fault(fault);
    let access = text(&body, "access_token");
    assert_eq!(
        world.rest("/services/data/v59.0/limits", access).await.0,
        StatusCode::OK
    );
    let mut fault = Fault::once(FaultTarget::Rest, FaultKind::Status(500));
    fault.org_id = Some(world.org.org_id.clone());
    world.sim.add_fault(fault);
    assert_eq!(
        world.rest("/services/data/v59.0/limits", access).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    world.sim.clear_faults();
}

#[tokio::test]
async fn a_held_then_failed_refresh_blocks_concurrent_use_and_never_rotates() {
    let world = world().await;
    let first = world.tokens().await;
    let token = text(&first, "refresh_token").to_owned();
    world.sim.add_fault(Fault::once(
        FaultTarget::TokenRefresh,
        FaultKind::DelayThenStatus(std::time::Duration::from_millis(500), 503),
    ));
    let held = {
        let world_sim = world.sim.clone();
        let client = world.client.clone();
        let (key, secret, token) = (
            world.app.consumer_key.clone(),
            world.app.consumer_secret.clone(),
            token.clone(),
        );
        tokio::spawn(async move {
            client
                .post(format!(
                    "{}/services/oauth2/token",
                    world_sim.production_login_url()
                ))
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token.as_str()),
                    ("client_id", key.as_str()),
                    ("client_secret", secret.as_str()),
                ])
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while world.sim.refreshes_in_flight() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the refresh never became in flight"
        );
        tokio::task::yield_now().await;
    }
    let (status, body) = world.refresh(&token).await;
    assert_oauth_error(
        status,
        &body,
        "invalid_grant",
        "token request is already being processed",
    );
    assert_eq!(held.await.unwrap(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(world.sim.counters().refresh_grants, 0, "nothing rotated");
    let (status, body) = world.refresh(&token).await;
    assert_eq!(status, StatusCode::OK, "the token still works: {body}");
}

#[tokio::test]
async fn holds_last_until_released_before_or_after_rotating() {
    let world = world().await;
    let first = world.tokens().await;
    let second = world.tokens().await;
    let (before, after) = (
        text(&first, "refresh_token").to_owned(),
        text(&second, "refresh_token").to_owned(),
    );
    world.sim.add_fault(Fault {
        target: FaultTarget::TokenRefresh,
        org_id: None,
        consumer_key: None,
        kind: FaultKind::HoldThenStatus(503),
        times: Some(1),
    });
    let spawn_refresh = |token: String| {
        let (sim, client, key, secret) = (
            world.sim.clone(),
            world.client.clone(),
            world.app.consumer_key.clone(),
            world.app.consumer_secret.clone(),
        );
        tokio::spawn(async move {
            client
                .post(format!(
                    "{}/services/oauth2/token",
                    sim.production_login_url()
                ))
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token.as_str()),
                    ("client_id", key.as_str()),
                    ("client_secret", secret.as_str()),
                ])
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    let held = spawn_refresh(before.clone());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while world.sim.refreshes_in_flight() == 0 {
        assert!(std::time::Instant::now() < deadline);
        tokio::task::yield_now().await;
    }
    world.sim.add_fault(Fault::once(
        FaultTarget::TokenRefresh,
        FaultKind::RotateThenHold,
    ));
    let rotated = spawn_refresh(after.clone());
    while world.sim.counters().refresh_grants == 0 {
        assert!(std::time::Instant::now() < deadline);
        tokio::task::yield_now().await;
    }
    assert!(
        !held.is_finished() && !rotated.is_finished(),
        "both wait for the release"
    );
    world.sim.release_holds();
    assert_eq!(held.await.unwrap(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(rotated.await.unwrap(), StatusCode::OK);
    assert_eq!(
        world.sim.counters().refresh_grants,
        1,
        "only the second rotated"
    );
    let (status, body) = world.refresh(&before).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the held token was never consumed: {body}"
    );
}
