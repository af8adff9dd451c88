//! Several real forcelink processes on one database: one refresh per connection however many
//! instances and callers ask at once.

use std::collections::HashSet;

use crate::harness::{Backend, LoginKind, Options, TestApp, pg_server_url};
use crate::process::{ForcelinkProcess, token_at};

/// Every caller, spread over the processes, reports the same current token as stale.
async fn storm_across(
    processes: &[ForcelinkProcess],
    app: &TestApp,
    org_id: &str,
    stale: &str,
    callers: usize,
) {
    let http = reqwest::Client::new();
    let mut tasks = Vec::new();
    for caller in 0..callers {
        let url = processes[caller % processes.len()].url.clone();
        let (http, key, org, stale) = (
            http.clone(),
            app.admin_key.clone(),
            org_id.to_string(),
            stale.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            token_at(&http, &url, &key, &org, Some(&stale)).await
        }));
    }
    let mut tokens = HashSet::new();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 200, "{body}");
        tokens.insert(body["access_token"].as_str().unwrap().to_string());
    }
    assert_eq!(
        tokens.len(),
        1,
        "every caller on every instance gets the same new token"
    );
    assert!(!tokens.contains(stale));
}

async fn one_refresh_across_processes(backend: Backend, instances: usize) {
    let mut app = TestApp::start(Options {
        backend,
        ..Options::default()
    })
    .await;
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    let (_, first) = app.token(org.id()).await;
    let stale = first["access_token"].as_str().unwrap().to_string();
    app.stop_in_process_server().await;
    let processes: Vec<ForcelinkProcess> = (0..instances)
        .map(|n| app.spawn_process(&format!("instance-{n}"), |_| {}))
        .collect();
    storm_across(&processes, &app, org.id(), &stale, 90).await;
    let counters = app.sim.counters();
    assert_eq!(
        counters.refresh_grants, 1,
        "exactly one refresh at Salesforce"
    );
    assert_eq!(counters.reuse_detections, 0);
    assert_eq!(
        counters.concurrent_rejections, 0,
        "instances never raced at Salesforce"
    );
    drop(processes);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_processes_on_postgres_refresh_exactly_once() {
    if pg_server_url().is_none() {
        return;
    }
    one_refresh_across_processes(Backend::Postgres, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_on_one_sqlite_file_refresh_exactly_once() {
    one_refresh_across_processes(Backend::Sqlite, 2).await;
}
