//! Key rotation while the server keeps serving, and a log capture that proves tokens never
//! reach the logs.

use std::sync::{Arc, Mutex};

use forcelink::app;
use forcelink::config::SecretSetting;
use forcelink_core::{KeyRing, SystemClock};

use crate::harness::{LoginKind, Options, TestApp};

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

/// Collects everything logged on this thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn tokens_and_secrets_never_reach_the_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut app = TestApp::start(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    let first_refresh = app.stored_refresh_token(org.id()).await;
    app.advance(2 * 3600 + 1);
    let (_, body) = app.token(org.id()).await;
    let access = body["access_token"].as_str().unwrap().to_string();
    app.sim.set_user_active(&org.user.user_id, false).unwrap();
    app.advance(2 * 3600 + 1);
    let _ = app.token(org.id()).await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("refreshed"), "the capture works: {logs}");
    for secret in [
        &first_refresh,
        &access,
        &app.sf_app.consumer_secret,
        &app.admin_key,
    ] {
        assert!(!logs.contains(secret.as_str()), "a secret reached the logs");
    }
}
