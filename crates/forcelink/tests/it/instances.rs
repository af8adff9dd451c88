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
            app.agent_key.clone(),
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

/// Heartbeat round across three processes on PostgreSQL, one killed mid-round: every
/// connection is refreshed exactly once, none later than one lease after the kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn heartbeat_round_across_three_processes_survives_a_kill() {
    use sqlx::Connection;
    if pg_server_url().is_none() {
        return;
    }
    const CONNECTIONS: usize = 1000;
    let mut app = TestApp::start(Options {
        backend: Backend::Postgres,
        ..Options::default()
    })
    .await;
    let org = app.org(LoginKind::Production).await;
    let mut contexts = Vec::new();
    for chunk in (0..CONNECTIONS).collect::<Vec<_>>().chunks(50) {
        let mut tasks = Vec::new();
        for n in chunk {
            let username = format!("round{n}@{}.example.com", org.org.my_domain);
            let spec = sfsim::UserSpec {
                username: username.clone(),
                display_name: format!("User {n}"),
                email: username.clone(),
            };
            app.sim.create_user(org.id(), spec).unwrap();
            let (url, query) = (app.url.clone(), format!("ctx=r{n}&orgid={}", org.id()));
            tasks.push(tokio::spawn(async move {
                forcelink::demo::browser_connect(&url, &query, &username).await
            }));
            contexts.push(format!("r{n}"));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap().status, 200);
        }
    }
    app.stop_in_process_server().await;
    // A new connection's first beat falls at a phase of the interval its key gives, which for
    // one of 1,000 keys can be seconds away: push every first beat out of the test's reach, and
    // note the generation each connection starts the round at.
    let mut db = sqlx::PgConnection::connect(&app.config.store.url)
        .await
        .unwrap();
    let later =
        forcelink_core::Clock::now(&forcelink_core::SystemClock) + chrono::Duration::days(1);
    sqlx::query("UPDATE connections SET heartbeat_due_at = $1")
        .bind(later)
        .execute(&mut db)
        .await
        .unwrap();
    let start_generations: std::collections::HashMap<String, i64> =
        sqlx::query_as("SELECT context, generation FROM connections")
            .fetch_all(&mut db)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let tune = |c: &mut forcelink::config::Config| {
        c.heartbeat.tick_seconds = 1;
        c.heartbeat.batch = 50;
        c.heartbeat.concurrency = 4;
        c.heartbeat.per_host_rate = 0.0;
        c.salesforce.request_timeout_seconds = 3;
        c.refresh.lease_ttl_seconds = 4;
    };
    let processes: Vec<_> = (0..3)
        .map(|n| app.spawn_process(&format!("beat-{n}"), tune))
        .collect();
    // Start a round: everything falls due now.
    let before = app.sim.counters().refresh_grants;
    let round_start = forcelink_core::Clock::now(&forcelink_core::SystemClock);
    sqlx::query("UPDATE connections SET heartbeat_due_at = $1")
        .bind(round_start)
        .execute(&mut db)
        .await
        .unwrap();
    // Kill one instance mid-round.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while app.sim.counters().refresh_grants - before < (CONNECTIONS / 4) as u64 {
        assert!(
            std::time::Instant::now() < deadline,
            "the round never started"
        );
        tokio::task::yield_now().await;
    }
    let mut processes = processes.into_iter();
    processes.next().unwrap().kill_hard();
    let killed_at = forcelink_core::Clock::now(&forcelink_core::SystemClock);
    while app.sim.counters().refresh_grants - before < CONNECTIONS as u64 {
        assert!(
            std::time::Instant::now() < deadline,
            "the round never finished: {:?}",
            app.sim.counters()
        );
        tokio::task::yield_now().await;
    }
    // Wait until every in-flight record is settled (a rotation the dying process never
    // committed is settled by a survivor one lease and one in-flight window later).
    loop {
        let (pending,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM connections WHERE inflight_attempt IS NOT NULL")
                .fetch_one(&mut db)
                .await
                .unwrap();
        if pending == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{pending} rotations never settled"
        );
        tokio::task::yield_now().await;
    }
    let counters = app.sim.counters();
    // Salesforce rotated every token exactly once: nothing was refreshed twice.
    assert_eq!(
        counters.refresh_grants - before,
        CONNECTIONS as u64,
        "{counters:?}"
    );
    assert_eq!(counters.concurrent_rejections, 0, "{counters:?}");
    // context, generation, state, cause, refresh token last used
    type Row = (
        String,
        i64,
        String,
        Option<String>,
        chrono::DateTime<chrono::Utc>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT context, generation, state, state_cause, refresh_token_used_at \
             FROM connections",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(rows.len(), CONNECTIONS);
    let lease = chrono::Duration::seconds(4);
    let mut lost = 0;
    for (context, generation, state, cause, used_at) in rows {
        let started_at = start_generations[&context];
        if generation == started_at {
            // Rotated at Salesforce while the killed process waited for the answer: the grant
            // is gone, and forcelink says so instead of breaking silently.
            assert_eq!(
                (state.as_str(), cause.as_deref()),
                ("needs_reauth", Some("rotation outcome lost"))
            );
            lost += 1;
            continue;
        }
        if (generation, state.as_str()) != (started_at + 1, "active") {
            let lineage: Vec<(String, chrono::DateTime<chrono::Utc>, String, bool)> =
                sqlx::query_as(
                    "SELECT instance, started_at, outcome, recovery FROM refresh_attempts \
                     WHERE context = $1 ORDER BY started_at",
                )
                .bind(&context)
                .fetch_all(&mut db)
                .await
                .unwrap();
            panic!(
                "{context} was not refreshed exactly once in the round (started {round_start}, \
                 kill {killed_at}): generation {started_at} -> {generation}, {state}; \
                 lineage {lineage:?}"
            );
        }
        assert!(used_at >= round_start);
        assert!(
            used_at <= killed_at + lease + chrono::Duration::seconds(30),
            "late: {used_at}"
        );
    }
    assert!(
        lost <= 4,
        "at most the killed process's in-flight refreshes are lost: {lost}"
    );
    assert_eq!(
        counters.reuse_detections, lost,
        "one recovery probe per lost rotation, nothing else"
    );
    drop(processes);
    drop(db);
    app.finish().await;
}
