//! Key rotation while the server keeps serving, and a log capture that proves tokens never
//! reach the logs.

use std::sync::Arc;

use forcelink::app;
use forcelink::config::SecretSetting;
use forcelink_core::{KeyRing, SystemClock};

use crate::harness::{LoginKind, Options, TestApp};
use crate::process::token_at;

#[tokio::test]
async fn keys_rotate_reseals_every_row_while_the_server_keeps_serving() {
    let mut app = TestApp::start(Options::default()).await;
    let mut orgs = Vec::new();
    for _ in 0..3 {
        let org = app.org(LoginKind::Production).await;
        app.connect_ok(&org).await;
        orgs.push(org);
    }
    // Roll the new key out to the server first (old key still in the ring), then rotate.
    let new_key = KeyRing::generate_key().into_string().unwrap();
    app.restart_with(|config| {
        config
            .keys
            .ring
            .insert("k2".into(), SecretSetting(new_key.clone()));
        config.keys.active = "k2".into();
    })
    .await;
    let rotation_config = app.config.clone();
    let rotation = tokio::spawn(async move {
        let wiring = app::wire(&rotation_config, Arc::new(SystemClock))
            .await
            .unwrap();
        wiring.broker.rekey().await.unwrap()
    });
    // Serve and refresh while the rotation runs.
    app.advance(2 * 3600 + 1);
    for org in &orgs {
        let (status, body) = app.token(org.id()).await;
        assert_eq!(status, 200, "{body}");
    }
    let report = rotation.await.unwrap();
    assert_eq!(report.examined, 6, "{report:?}");
    let health = app.broker().ring_health().await.unwrap();
    assert_eq!(
        (health.current, health.old_key, health.unopenable),
        (6, 0, 0),
        "{health:?}"
    );
    // The old key can now leave the ring: everything still opens and works.
    app.restart_with(|config| {
        config.keys.ring.remove("k1");
    })
    .await;
    assert_eq!(app.broker().ring_health().await.unwrap().unopenable, 0);
    app.advance(2 * 3600 + 1);
    for org in &orgs {
        let (status, body) = app.token(org.id()).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["generation"], 3);
    }
    assert_eq!(app.sim.counters().reuse_detections, 0);
}

#[tokio::test]
async fn tokens_and_secrets_never_reach_the_logs() {
    let mut app = TestApp::start(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    let first_refresh = app.stored_refresh_token(org.id()).await;
    let (_, first) = app.token(org.id()).await;
    let first_access = first["access_token"].as_str().unwrap().to_string();
    app.stop_in_process_server().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("forcelink.log");
    let process = app.spawn_process_logging("logged", |_| {}, Some(&log));
    let http = reqwest::Client::new();
    // A refresh (stale report), a refused token, and a dead grant, all at trace level.
    let (status, body) = token_at(
        &http,
        &process.url,
        &app.agent_key,
        org.id(),
        Some(&first_access),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let access = body["access_token"].as_str().unwrap().to_string();
    let refreshed_to = app.stored_refresh_token(org.id()).await;
    app.sim.set_user_active(&org.user.user_id, false).unwrap();
    let (status, _) = token_at(&http, &process.url, &app.agent_key, org.id(), Some(&access)).await;
    assert_eq!(status, 409);
    let wrong = http
        .get(format!("{}/v1/connections", process.url))
        .bearer_auth("wrong-admin-key")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    process.kill_hard();

    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(
        logs.contains("refreshed") && logs.contains("needs re-authorization"),
        "the capture works: {logs}"
    );
    for secret in [
        &first_refresh,
        &refreshed_to,
        &first_access,
        &access,
        &app.sf_app.consumer_secret,
        &app.admin_key,
        &app.agent_key,
    ] {
        assert!(!logs.contains(secret.as_str()), "a secret reached the logs");
    }
}
