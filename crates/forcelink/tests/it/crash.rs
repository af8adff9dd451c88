//! Crash test: kill -9 a forcelink process while sfsim holds its refresh (until the test
//! releases it), before or after rotating, then restart. No connection may be silently broken: each is active with a working
//! token, or needs_reauth with "rotation outcome lost" exactly when sfsim rotated and the answer
//! never arrived. sfsim sees no reuse from a race of ours.

use std::time::Duration;

use crate::harness::{Backend, LoginKind, Options, TestApp, TestOrg, pg_server_url};
use crate::process::token_at;

const PER_ROUND: usize = 10;

async fn crash_rounds(backend: Backend, rounds: usize) {
    let mut app = TestApp::start(Options {
        backend,
        ..Options::default()
    })
    .await;
    let mut orgs: Vec<TestOrg> = Vec::new();
    for _ in 0..PER_ROUND {
        let org = app.org(LoginKind::Production).await;
        app.connect_ok(&org).await;
        orgs.push(org);
    }
    app.stop_in_process_server().await;
    let http = reqwest::Client::new();
    let mut trials = 0;
    let mut alive: Vec<bool> = vec![true; orgs.len()];
    for round in 0..rounds {
        // The victim waits longer for Salesforce than sfsim holds, so the kill lands mid-request;
        // its lease (which a survivor must wait out) is short so takeover is quick.
        let victim = app.spawn_process(&format!("victim-{round}"), |c| {
            // Its requests must not time out while the others are still on their way under a
            // loaded machine (a timed-out request is cancelled at sfsim and never held).
            c.salesforce.request_timeout_seconds = 15;
            c.refresh.lease_ttl_seconds = 16;
        });
        let mut stale = Vec::new();
        for (index, org) in orgs.iter().enumerate() {
            if !alive[index] {
                stale.push(None);
                continue;
            }
            let (status, body) = token_at(&http, &victim.url, &app.agent_key, org.id(), None).await;
            assert_eq!(status, 200, "{body}");
            stale.push(Some(body["access_token"].as_str().unwrap().to_string()));
        }
        let before = app.sim.counters();
        let reuse_before: Vec<u64> = orgs
            .iter()
            .map(|org| {
                app.sim
                    .counters_for(org.id(), &app.sf_app.consumer_key)
                    .reuse_detections
            })
            .collect();
        let mut rotated_expected = vec![false; orgs.len()];
        for (index, org) in orgs.iter().enumerate() {
            if !alive[index] {
                continue;
            }
            // Alternate: hold then fail without rotating, or rotate then hold the answer.
            let after_rotation = (index + round) % 2 == 0;
            rotated_expected[index] = after_rotation;
            // sfsim holds each request until the test releases it, however slow the victim is.
            let kind = if after_rotation {
                sfsim::FaultKind::RotateThenHold
            } else {
                sfsim::FaultKind::HoldThenStatus(503)
            };
            app.sim.add_fault(sfsim::Fault {
                target: sfsim::FaultTarget::TokenRefresh,
                org_id: Some(org.id().to_string()),
                consumer_key: None,
                kind,
                times: Some(1),
            });
        }
        let live = alive.iter().filter(|a| **a).count();
        let expected_rotations = rotated_expected.iter().filter(|r| **r).count();
        for (index, org) in orgs.iter().enumerate() {
            if let Some(stale) = stale[index].clone() {
                let (http, url, key, org_id) = (
                    http.clone(),
                    victim.url.clone(),
                    app.agent_key.clone(),
                    org.id().to_string(),
                );
                tokio::spawn(
                    async move { token_at(&http, &url, &key, &org_id, Some(&stale)).await },
                );
            }
        }
        // Wait until sfsim holds every request: the "before" ones in flight, the "after" ones rotated.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let counters = app.sim.counters();
            let rotated = (counters.refresh_grants - before.refresh_grants) as usize;
            // "Before" requests hold their in-flight slot; "after" ones have rotated and hold
            // only their answer.
            let held_before = app.sim.refreshes_in_flight();
            if rotated == expected_rotations && held_before == live - expected_rotations {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "sfsim never held every request: rotated {rotated}/{expected_rotations}, held before rotating {held_before}/{}",
                live - expected_rotations
            );
            tokio::task::yield_now().await;
        }
        victim.kill_hard();
        app.sim.release_holds();
        trials += live;
        let survivor = app.spawn_process(&format!("survivor-{round}"), |c| {
            c.refresh.in_flight_window_seconds = 2;
            c.refresh.max_wait_seconds = 20;
        });
        // The survivor settles every lost rotation by itself once the window has passed.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        for org in &orgs {
            loop {
                let shown: serde_json::Value = http
                    .get(format!("{}/v1/connections/{}", survivor.url, org.id()))
                    .bearer_auth(&app.admin_key)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if shown["refresh_in_flight"].is_null() {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "the survivor never settled {}: {shown}",
                    org.id()
                );
                tokio::task::yield_now().await;
            }
        }
        for (index, org) in orgs.iter().enumerate() {
            if !alive[index] {
                continue;
            }
            let (status, body) =
                token_at(&http, &survivor.url, &app.agent_key, org.id(), None).await;
            let reuse = app
                .sim
                .counters_for(org.id(), &app.sf_app.consumer_key)
                .reuse_detections
                - reuse_before[index];
            if rotated_expected[index] {
                assert_eq!(status, 409, "round {round} org {index}: {body}");
                assert_eq!(body["error"], "needs_reauth");
                assert!(
                    body["message"]
                        .as_str()
                        .unwrap()
                        .contains("rotation outcome lost"),
                    "{body}"
                );
                assert_eq!(
                    reuse, 1,
                    "the one recovery probe is the only reuse sfsim saw"
                );
                alive[index] = false;
            } else {
                assert_eq!(status, 200, "round {round} org {index}: {body}");
                assert_eq!(reuse, 0, "no reuse for a token that never rotated");
                let works = http
                    .get(format!(
                        "{}/services/data/v62.0/limits",
                        org.org.instance_url
                    ))
                    .bearer_auth(body["access_token"].as_str().unwrap())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(works.status(), 200);
            }
        }
        drop(survivor);
        // Reconnect the lost ones so every round has PER_ROUND trials.
        if alive.iter().any(|a| !a) {
            app.restart_with(|_| {}).await;
            for (index, org) in orgs.iter().enumerate() {
                if !alive[index] {
                    app.connect_ok(org).await;
                    alive[index] = true;
                }
            }
            app.stop_in_process_server().await;
        }
    }
    assert!(trials >= rounds * PER_ROUND);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_refresh_never_silently_breaks_a_connection_sqlite() {
    crash_rounds(Backend::Sqlite, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_refresh_never_silently_breaks_a_connection_postgres() {
    if pg_server_url().is_none() {
        return;
    }
    crash_rounds(Backend::Postgres, 5).await;
}
