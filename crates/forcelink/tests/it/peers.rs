//! Unmodified Salesforce clients through the proxy: simple-salesforce (PyPI) and jsforce (npm),
//! installed by `tests/peers/install.sh`, run against sfsim across three access-token expiries.
//! forcelink serves TLS with a self-signed certificate that the clients are told to trust the
//! way their users would (REQUESTS_CA_BUNDLE, NODE_EXTRA_CA_CERTS). The clients must see zero
//! errors and sfsim exactly one refresh per expiry.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::harness::{LoginKind, Options, TestApp, TestOrg};

const ACCOUNTS: usize = 450;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs the project's install script (a no-op once installed); fails loudly if it cannot.
fn install_peers() -> PathBuf {
    let output = std::process::Command::new(root().join("tests/peers/install.sh"))
        .output()
        .expect("run tests/peers/install.sh");
    assert!(
        output.status.success(),
        "tests/peers/install.sh failed (it needs python3, npm and access to PyPI and npm):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    root().join("target/peers")
}

/// Connects a big org, makes a proxy key, and restarts forcelink on TLS. Returns the org, the
/// key and the certificate file.
async fn set_up(
    app: &mut TestApp,
    single_org: bool,
) -> (TestOrg, String, PathBuf, tempfile::TempDir) {
    // Enough accounts that a batchSize=200 query has three pages.
    let org = app
        .org_with_accounts(LoginKind::Production, ACCOUNTS, 0)
        .await;
    app.connect_ok(&org).await;
    let orgs = if single_org {
        json!([org.id()])
    } else {
        json!(["*"])
    };
    let (status, body) = app
        .api(
            reqwest::Method::POST,
            "/v1/agents",
            Some(json!({ "name": "client", "orgs": orgs, "capabilities": ["proxy"] })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let key = body["key"].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let made = forcelink::tls::self_signed(&["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert = dir.path().join("forcelink.pem");
    let private = dir.path().join("forcelink-key.pem");
    std::fs::write(&cert, made.cert_pem).unwrap();
    std::fs::write(&private, made.key_pem).unwrap();
    let (cert_file, key_file) = (cert.clone(), private.clone());
    app.restart_with(move |config| {
        config.server.tls_cert_file = Some(cert_file);
        config.server.tls_key_file = Some(key_file);
    })
    .await;
    assert!(app.url.starts_with("https://"), "{}", app.url);
    (org, key, cert, dir)
}

/// Drives a client process through a round before any expiry and three after one each.
async fn three_expiries(app: &TestApp, mut child: tokio::process::Child) {
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let consumer_key = app.sf_app.consumer_key.clone();
    for round in 0..=3u64 {
        match round {
            0 => {}
            // Salesforce's clock alone: forcelink still trusts its token, sfsim answers
            // INVALID_SESSION_ID, and the proxy refreshes once and replays.
            2 => app.sim.advance_clock(Duration::from_secs(2 * 3600 + 120)),
            // Both clocks: forcelink sees the expiry coming and refreshes before the call.
            _ => app.advance(2 * 3600 + 120),
        }
        stdin.write_all(b"round\n").await.unwrap();
        stdin.flush().await.unwrap();
        let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
            .await
            .expect("the client answers within 2 minutes")
            .unwrap()
            .expect("the client is still running");
        let result: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("{line}"));
        assert_eq!(result["ok"], true, "round {round}: {result}");
        assert_eq!(result["total_size"], ACCOUNTS, "round {round}: {result}");
        assert_eq!(result["fetched"], ACCOUNTS, "round {round}: {result}");
        assert_eq!(result["record_matches"], true, "round {round}: {result}");
        let counters = app.sim.counters();
        assert_eq!(
            counters.refresh_grants, round,
            "one refresh per expiry (round {round})"
        );
        assert_eq!(counters.reuse_detections, 0);
    }
    stdin.write_all(b"quit\n").await.unwrap();
    drop(stdin);
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    let _ = child.kill().await;
    assert_eq!(
        app.sim
            .active_refresh_tokens(&app.sim.orgs().last().unwrap().org_id, &consumer_key),
        1
    );
}

/// Runs the client through `three_expiries`, then checks sfsim never saw its key.
async fn drive(app: TestApp, key: &str, client: &mut tokio::process::Command) {
    let child = client
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    three_expiries(&app, child).await;
    sfsim_never_saw(&app, key);
    app.finish().await;
}

fn sfsim_never_saw(app: &TestApp, key: &str) {
    for request in app.sim.requests() {
        assert!(!request.path_and_query.contains(key));
        for (name, value) in &request.headers {
            assert!(!value.contains(key), "sfsim saw the agent key in {name}");
        }
    }
}

#[tokio::test]
async fn simple_salesforce_unmodified_through_forcelinks_root_across_three_expiries() {
    let peers = install_peers();
    let mut app = TestApp::start(Options::default()).await;
    let (_org, key, cert, _dir) = set_up(&mut app, true).await;
    let mut child = tokio::process::Command::new(peers.join("venv/bin/python"));
    child
        .arg(root().join("tests/peers/simple_salesforce_client.py"))
        .env("FORCELINK_INSTANCE_URL", &app.url)
        .env("FORCELINK_AGENT_KEY", &key)
        .env("REQUESTS_CA_BUNDLE", &cert);
    drive(app, &key, &mut child).await;
}

#[tokio::test]
async fn jsforce_unmodified_through_the_org_proxy_url_across_three_expiries() {
    let peers = install_peers();
    let mut app = TestApp::start(Options::default()).await;
    let (org, key, cert, _dir) = set_up(&mut app, false).await;
    let mut child = tokio::process::Command::new("node");
    child
        .arg(root().join("tests/peers/jsforce_client.cjs"))
        .env("NODE_PATH", peers.join("node/node_modules"))
        .env(
            "FORCELINK_INSTANCE_URL",
            format!("{}/v1/proxy/{}", app.url, org.id()),
        )
        .env("FORCELINK_AGENT_KEY", &key)
        .env("NODE_EXTRA_CA_CERTS", &cert);
    drive(app, &key, &mut child).await;
}
