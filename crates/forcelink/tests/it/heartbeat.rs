//! The heartbeat against sfsim's movable clock: tokens die after 30 idle days without it and
//! live through 120 days with it; at-risk events; the refresh-token IP allow list on loopback.

use std::sync::Arc;

use forcelink_core::heartbeat::{HeartbeatSettings, HostPacer};

use crate::faults::{FaultyStore, INJECTED};
use crate::harness::{LoginKind, Options, TestApp, TestOrg};

const DAY: u64 = 24 * 3600;

fn manual_ticks() -> HeartbeatSettings {
    HeartbeatSettings {
        batch: 500,
        concurrency: 8,
        per_host_rate: 0.0,
        retry_after: chrono::Duration::minutes(15),
        tick_every: std::time::Duration::from_secs(3600),
    }
}

/// A test app whose heartbeat is driven by the test, not the background loop.
async fn app_without_background_heartbeat(options: Options) -> TestApp {
    let mut app = TestApp::start(options).await;
    app.restart_with(|c| c.heartbeat.enabled = false).await;
    app
}

/// `count` connections, each its own grant (one user and context per connection).
async fn connections(app: &mut TestApp, count: usize) -> Vec<(TestOrg, String)> {
    let org = app.org(LoginKind::Production).await;
    let mut made = Vec::new();
    for n in 0..count {
        let username = format!("hb{n}@{}.example.com", org.org.my_domain);
        let spec = sfsim::UserSpec {
            username: username.clone(),
            display_name: format!("User {n}"),
            email: username.clone(),
        };
        app.sim.create_user(org.id(), spec).unwrap();
        let query = format!("ctx=u{n}&orgid={}", org.id());
        let outcome = forcelink::demo::browser_connect(&app.url, &query, &username)
            .await
            .unwrap();
        assert_eq!(outcome.status, 200, "{}", outcome.page);
        made.push((org.clone(), format!("u{n}")));
    }
    made
}

#[tokio::test]
async fn without_the_heartbeat_an_idle_connection_is_dead_on_day_31() {
    let mut app = app_without_background_heartbeat(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    app.advance(31 * DAY);
    let (status, body) = app.token(org.id()).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("expired_or_revoked"),
        "{body}"
    );
}

#[tokio::test]
async fn the_heartbeat_keeps_100_connections_alive_through_120_days() {
    let mut app = app_without_background_heartbeat(Options {
        ephemeral_store: true,
        ..Options::default()
    })
    .await;
    let made = connections(&mut app, 100).await;
    let broker = app.broker().clone();
    let pacer = Arc::new(HostPacer::default());
    // Batches smaller than the 100 due: each day's tick claims seven batches, each claimed
    // while the last beats of the one before are still running.
    let settings = HeartbeatSettings {
        batch: 16,
        ..manual_ticks()
    };
    for day in 1..=120 {
        app.advance(DAY);
        let report = broker.heartbeat_tick(&settings, &pacer).await.unwrap();
        assert_eq!(report.failed, 0, "day {day}: {report:?}");
        assert_eq!(report.claimed, 100, "day {day}: {report:?}");
        assert_eq!(
            report.refreshed + report.skipped,
            report.claimed,
            "day {day}: {report:?}"
        );
    }
    let counters = app.sim.counters();
    // Each token used about once a day: every day each connection is due exactly once.
    assert_eq!(counters.refresh_grants, 100 * 120, "{counters:?}");
    assert_eq!(
        (counters.reuse_detections, counters.concurrent_rejections),
        (0, 0),
        "{counters:?}"
    );
    for (org, ctx) in &made {
        let (status, body) = app
            .agent_api(
                reqwest::Method::POST,
                &format!("/v1/connections/{}/token?ctx={ctx}", org.id()),
                None,
            )
            .await;
        assert_eq!(status, 200, "{ctx}: {body}");
    }
}

/// A batch of 0 (`HeartbeatSettings` is public; the binary clamps its config) claims one at a
/// time instead of nothing, and the tick ends when nothing is due.
#[tokio::test]
async fn a_tick_with_a_batch_of_zero_claims_one_at_a_time_and_ends() {
    let mut app = app_without_background_heartbeat(Options::default()).await;
    connections(&mut app, 3).await;
    app.advance(DAY + 60);
    let settings = HeartbeatSettings {
        batch: 0,
        ..manual_ticks()
    };
    let report = app
        .broker()
        .heartbeat_tick(&settings, &Arc::new(HostPacer::default()))
        .await
        .unwrap();
    assert_eq!((report.claimed, report.refreshed), (3, 3), "{report:?}");
    assert_eq!(app.sim.counters().refresh_grants, 3);
}

/// A claim that fails while beats of the last batch are in flight ends the tick with its
/// error only after those beats finish: each refreshed once, none left holding a lease or an
/// in-flight record. The next tick takes what the failed claim did not.
#[tokio::test]
async fn a_failed_claim_lets_the_beats_in_flight_finish_and_the_next_tick_takes_the_rest() {
    let mut app = app_without_background_heartbeat(Options::default()).await;
    connections(&mut app, 3).await;
    app.advance(DAY + 60);
    let faulty = Arc::new(FaultyStore::new(app.broker().store().clone()));
    // The first claim takes a full batch of two, so the tick claims again while their beats
    // run; that second claim fails.
    faulty.fail_claim_after(1);
    let broker = app.broker().on_store(faulty.clone());
    let settings = HeartbeatSettings {
        batch: 2,
        ..manual_ticks()
    };
    let pacer = Arc::new(HostPacer::default());
    let error = broker
        .heartbeat_tick(&settings, &pacer)
        .await
        .expect_err("the failed claim ends the tick with an error");
    assert!(error.to_string().contains(INJECTED), "{error}");
    assert_eq!(
        app.sim.counters().refresh_grants,
        2,
        "the two claimed beats finished"
    );
    let store = app.broker().store();
    let stored = store.connections().await.unwrap();
    let refreshed: Vec<_> = stored.iter().filter(|c| c.generation > 1).collect();
    assert_eq!(refreshed.len(), 2, "{stored:#?}");
    for connection in &stored {
        assert!(connection.lease.is_none(), "{connection:#?}");
        assert!(connection.in_flight.is_none(), "{connection:#?}");
    }
    let report = broker.heartbeat_tick(&settings, &pacer).await.unwrap();
    assert_eq!((report.claimed, report.refreshed), (1, 1), "{report:?}");
    assert_eq!(app.sim.counters().refresh_grants, 3);
    assert_eq!(app.sim.counters().reuse_detections, 0);
}

#[tokio::test]
async fn at_risk_events_are_raised_once_at_seven_three_and_one_days() {
    let mut app = app_without_background_heartbeat(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    let broker = app.broker().clone();
    app.advance(22 * DAY);
    assert_eq!(broker.raise_at_risk().await.unwrap(), 0);
    app.advance(DAY + 60);
    assert_eq!(broker.raise_at_risk().await.unwrap(), 1);
    assert_eq!(
        broker.raise_at_risk().await.unwrap(),
        0,
        "raised once per threshold"
    );
    app.advance(4 * DAY);
    assert_eq!(broker.raise_at_risk().await.unwrap(), 1);
    app.advance(2 * DAY);
    assert_eq!(broker.raise_at_risk().await.unwrap(), 1);
    let (_, events) = app
        .api(
            reqwest::Method::GET,
            &format!("/v1/events?org_id={}", org.id()),
            None,
        )
        .await;
    let days: Vec<i64> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "connection.at_risk")
        .map(|e| e["detail"]["days_left"].as_i64().unwrap())
        .collect();
    assert_eq!(days, vec![7, 3, 1]);
    // A successful heartbeat clears the risk.
    let report = broker
        .heartbeat_tick(&manual_ticks(), &Arc::new(HostPacer::default()))
        .await
        .unwrap();
    assert_eq!(report.refreshed, 1);
    let shown = app.shown(org.id()).await;
    assert_eq!(shown["at_risk_days"], serde_json::Value::Null, "{shown}");
}

#[tokio::test]
async fn ip_allow_list_blocks_by_egress_and_recovers_without_reauthorization() {
    let mut app = app_without_background_heartbeat(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    let allowed: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let other: std::net::IpAddr = "127.0.0.3".parse().unwrap();
    app.sim
        .update_app(&app.sf_app.consumer_key, |s| {
            s.refresh_ip_allowlist = Some(vec![(allowed, allowed)])
        })
        .unwrap();
    app.restart_with(|c| c.egress.bind_address = Some(allowed))
        .await;
    app.advance(2 * 3600 + 1);
    let (status, body) = app.token(org.id()).await;
    assert_eq!(status, 200, "egress 127.0.0.2 is allowed: {body}");
    let (_, attempts) = app
        .api(
            reqwest::Method::GET,
            &format!("/v1/connections/{}/attempts", org.id()),
            None,
        )
        .await;
    assert_eq!(attempts["attempts"][0]["egress"], "bind 127.0.0.2");

    app.restart_with(|c| c.egress.bind_address = Some(other))
        .await;
    app.advance(2 * 3600 + 1);
    let (status, body) = app.token(org.id()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("ip_blocked")),
        "{body}"
    );
    let shown = app.shown(org.id()).await;
    assert_eq!(
        (shown["state"].as_str(), shown["health"].as_str()),
        (Some("active"), Some("ip_blocked"))
    );
    let (_, events) = app
        .api(
            reqwest::Method::GET,
            &format!("/v1/events?org_id={}", org.id()),
            None,
        )
        .await;
    let blocked = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "connection.ip_blocked")
        .unwrap();
    assert_eq!(blocked["detail"]["egress"], "bind 127.0.0.3");

    app.sim
        .update_app(&app.sf_app.consumer_key, |s| {
            s.refresh_ip_allowlist = Some(vec![(allowed, other)])
        })
        .unwrap();
    let (status, body) = app.token(org.id()).await;
    assert_eq!(status, 200, "recovers without reauthorization: {body}");
    assert_eq!(app.sim.counters().reuse_detections, 0);
}
