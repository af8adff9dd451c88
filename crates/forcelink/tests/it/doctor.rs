//! `forcelink doctor`: every check, failing and passing, against sfsim and a real store.

use std::sync::Arc;

use forcelink::config::{Config, SecretSetting};
use forcelink::doctor::{self, Finding, Status};
use forcelink_core::OffsetClock;

use crate::harness::{LoginKind, Options, TestApp};

async fn examine(config: &Config) -> Vec<Finding> {
    doctor::run(config, Arc::new(OffsetClock::default())).await
}

fn status(findings: &[Finding], check: &str) -> Status {
    findings
        .iter()
        .find(|f| f.check == check)
        .unwrap_or_else(|| panic!("no {check} in {findings:?}"))
        .status
}

async fn connected_app() -> (TestApp, crate::harness::TestOrg) {
    let mut app = TestApp::start(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    (app, org)
}

#[tokio::test]
async fn a_healthy_setup_passes_every_check_and_exits_zero() {
    let (app, _) = connected_app().await;
    let mut config = app.config.clone();
    config.egress.declared_ips = vec!["203.0.113.7".into()];
    let findings = examine(&config).await;
    for finding in &findings {
        assert_eq!(finding.status, Status::Ok, "{finding:?}");
    }
    assert_eq!(doctor::exit_code(&findings), 0);
    for check in [
        "config",
        "store",
        "key_ring",
        "login_hosts",
        "clock_skew",
        "egress",
        "heartbeat",
        "pkce_rotation",
        "ip_allow_list",
        "at_risk",
        "incidents",
    ] {
        status(&findings, check);
    }
}

#[tokio::test]
async fn config_and_store_failures_stop_the_examination() {
    let (app, _) = connected_app().await;
    let mut config = app.config.clone();
    config.salesforce.client_id = String::new();
    let findings = examine(&config).await;
    assert_eq!(
        (findings.len(), status(&findings, "config")),
        (1, Status::Fail)
    );
    let mut config = app.config.clone();
    config.store.url = "sqlite:/nonexistent-forcelink-dir/forcelink.db".into();
    let findings = examine(&config).await;
    assert_eq!(status(&findings, "store"), Status::Fail);
    assert_eq!(doctor::exit_code(&findings), 1);
}

#[tokio::test]
async fn key_ring_check_finds_old_and_missing_keys() {
    let (app, _) = connected_app().await;
    let mut rotated = app.config.clone();
    rotated.keys.ring.insert(
        "k2".into(),
        SecretSetting(
            forcelink_core::KeyRing::generate_key()
                .into_string()
                .unwrap(),
        ),
    );
    rotated.keys.active = "k2".into();
    assert_eq!(status(&examine(&rotated).await, "key_ring"), Status::Warn);
    rotated.keys.ring.remove("k1");
    assert_eq!(status(&examine(&rotated).await, "key_ring"), Status::Fail);
}

#[tokio::test]
async fn unreachable_login_host_fails() {
    let (app, _) = connected_app().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut config = app.config.clone();
    config
        .salesforce
        .extra_login_urls
        .push(format!("http://{closed}"));
    let findings = examine(&config).await;
    assert_eq!(status(&findings, "login_hosts"), Status::Fail);
    assert!(
        findings
            .iter()
            .any(|f| f.summary.contains(&closed.to_string()))
    );
}

#[tokio::test]
async fn clock_skew_against_salesforce_fails() {
    let (app, _) = connected_app().await;
    app.sim.advance_clock(std::time::Duration::from_secs(3600));
    assert_eq!(
        status(&examine(&app.config).await, "clock_skew"),
        Status::Fail
    );
}

#[tokio::test]
async fn egress_and_heartbeat_warn_when_not_declared_or_disabled() {
    let (app, _) = connected_app().await;
    let mut config = app.config.clone();
    config.heartbeat.enabled = false;
    let findings = examine(&config).await;
    assert_eq!(status(&findings, "egress"), Status::Warn);
    assert_eq!(status(&findings, "heartbeat"), Status::Warn);
    assert_eq!(
        doctor::exit_code(&findings),
        0,
        "warnings alone do not fail"
    );
}

#[tokio::test]
async fn refresh_without_rotation_fails_the_rotation_check() {
    let (app, org) = connected_app().await;
    app.sim
        .update_app(&app.sf_app.consumer_key, |s| s.rotation = false)
        .unwrap();
    app.advance(2 * 3600 + 1);
    assert_eq!(app.token(org.id()).await.0, 200);
    let findings = examine(&app.config).await;
    assert_eq!(status(&findings, "pkce_rotation"), Status::Fail);
}

#[tokio::test]
async fn an_ip_blocked_connection_fails_and_names_the_cause() {
    let (mut app, org) = connected_app().await;
    let allowed: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    app.sim
        .update_app(&app.sf_app.consumer_key, |s| {
            s.refresh_ip_allowlist = Some(vec![(allowed, allowed)])
        })
        .unwrap();
    app.restart_with(|c| c.egress.bind_address = Some("127.0.0.3".parse().unwrap()))
        .await;
    app.advance(2 * 3600 + 1);
    assert_eq!(app.token(org.id()).await.0, 503);
    let findings = examine(&app.config).await;
    let blocked = findings
        .iter()
        .find(|f| f.check == "ip_allow_list")
        .unwrap();
    assert_eq!(blocked.status, Status::Fail);
    assert!(
        blocked.summary.contains(org.id()) && blocked.summary.contains("bind 127.0.0.3"),
        "{blocked:?}"
    );
    assert!(blocked.fix.as_deref().unwrap().contains("allow list"));
}

#[tokio::test]
async fn an_idle_connection_is_reported_at_risk() {
    let (app, _) = connected_app().await;
    let clock = Arc::new(OffsetClock::default());
    clock.advance(chrono::Duration::days(24));
    let findings = doctor::run(&app.config, clock).await;
    assert_eq!(status(&findings, "at_risk"), Status::Warn);
}

#[tokio::test]
async fn an_app_incident_fails() {
    let (mut app, org) = connected_app().await;
    app.restart_with(|c| c.salesforce.client_secret = Some(SecretSetting("wrong".into())))
        .await;
    app.advance(2 * 3600 + 1);
    assert_eq!(app.token(org.id()).await.0, 502);
    let findings = examine(&app.config).await;
    assert_eq!(status(&findings, "incidents"), Status::Fail);
}
