//! Agent keys, the agent token API and the Salesforce API proxy, end to end against sfsim:
//! scope and capability checks, the admin/agent split, path and host escapes, body caps,
//! one refresh and one replay on an invalid session, needs_reauth, and what reaches sfsim.

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{LoginKind, Options, TestApp};

const QUERY: &str = "/services/data/v59.0/query?q=SELECT+Id,+Name+FROM+Account";

/// Creates an agent key through the admin API; returns the key.
async fn agent(app: &TestApp, name: &str, orgs: &[&str], can: &[&str]) -> String {
    let (status, body) = app
        .api(
            Method::POST,
            "/v1/agents",
            Some(json!({ "name": name, "orgs": orgs, "capabilities": can })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["key"].as_str().unwrap().to_string()
}

async fn proxied(app: &TestApp, key: &str, method: Method, path: &str) -> (u16, Value) {
    app.call_as(key, method, path, None).await
}

/// Requests sfsim received on an org's instance URL.
fn instance_requests(app: &TestApp, instance_url: &str) -> Vec<sfsim::RecordedRequest> {
    app.sim
        .requests()
        .into_iter()
        .filter(|request| request.host == instance_url)
        .collect()
}

/// Sends one raw HTTP/1.1 request (so no client normalises the target) and returns the status.
async fn raw_status(url: &str, request_line_target: &str, extra_headers: &str) -> u16 {
    let authority = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(authority).await.unwrap();
    let request = format!(
        "GET {request_line_target} HTTP/1.1\r\nHost: {authority}\r\n{extra_headers}Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response);
    text.split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn the_proxy_forwards_with_the_access_token_and_never_the_agent_key() {
    let mut app = TestApp::start(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    let key = agent(&app, "reader", &[org.id()], &["proxy"]).await;

    let (status, body) = proxied(
        &app,
        &key,
        Method::GET,
        &format!("/v1/proxy/{}{QUERY}", org.id()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["totalSize"], 3);
    let record_url = body["records"][0]["attributes"]["url"].as_str().unwrap();
    assert!(record_url.starts_with("/services/data/"), "{record_url}");
    // The relative record URL works appended to the proxy's base.
    let (status, record) = proxied(
        &app,
        &key,
        Method::GET,
        &format!("/v1/proxy/{}{record_url}", org.id()),
    )
    .await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["Id"], body["records"][0]["Id"]);

    let (_, token) = app.token(org.id()).await;
    let access = token["access_token"].as_str().unwrap();
    let seen = instance_requests(&app, &org.org.instance_url);
    let rest: Vec<_> = seen
        .iter()
        .filter(|request| request.path_and_query.starts_with("/services/data/"))
        .collect();
    assert_eq!(rest.len(), 2, "{rest:?}");
    for request in &rest {
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {access}").as_str())
        );
    }
    for request in app.sim.requests() {
        for (name, value) in &request.headers {
            assert!(!value.contains(&key), "sfsim saw the agent key in {name}");
            assert!(!value.contains(&app.agent_key), "sfsim saw an agent key");
        }
        assert!(!request.path_and_query.contains(&key));
    }
    app.finish().await;
}

#[tokio::test]
async fn a_key_for_org_a_gets_403_for_org_b_and_nothing_is_forwarded() {
    let mut app = TestApp::start(Options::default()).await;
    let a = app.org(LoginKind::Production).await;
    let b = app.org(LoginKind::Sandbox).await;
    app.connect_ok(&a).await;
    app.connect_ok(&b).await;
    let key = agent(&app, "org-a", &[a.id()], &["token", "proxy"]).await;
    let before = app.sim.requests().len();

    let (status, body) = proxied(
        &app,
        &key,
        Method::GET,
        &format!("/v1/proxy/{}{QUERY}", b.id()),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("org_not_allowed"))
    );
    let (status, body) = app
        .call_as(
            &key,
            Method::POST,
            &format!("/v1/connections/{}/token", b.id()),
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("org_not_allowed"))
    );
    assert_eq!(app.sim.requests().len(), before, "nothing was forwarded");

    // Org A works with the same key, through both doors.
    let (status, _) = proxied(
        &app,
        &key,
        Method::GET,
        &format!("/v1/proxy/{}{QUERY}", a.id()),
    )
    .await;
    assert_eq!(status, 200);
    let (status, token) = app
        .call_as(
            &key,
            Method::POST,
            &format!("/v1/connections/{}/token", a.id()),
            None,
        )
        .await;
    assert_eq!(status, 200, "{token}");
    for field in [
        "access_token",
        "instance_url",
        "issued_at",
        "expires_at",
        "generation",
    ] {
        assert!(!token[field].is_null(), "{field} missing: {token}");
    }
    assert!(token.get("refresh_token").is_none());
    assert!(
        !token
            .to_string()
            .contains(&app.stored_refresh_token(a.id()).await)
    );
    app.finish().await;
}

#[tokio::test]
async fn capabilities_and_the_admin_agent_split_are_enforced() {
    let mut app = TestApp::start(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    let token_only = agent(&app, "token-only", &["*"], &["token"]).await;
    let proxy_only = agent(&app, "proxy-only", &["*"], &["proxy"]).await;
    let proxy_path = format!("/v1/proxy/{}{QUERY}", org.id());
    let token_path = format!("/v1/connections/{}/token", org.id());

    let (status, body) = proxied(&app, &token_only, Method::GET, &proxy_path).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("capability_not_granted"))
    );
    let (status, body) = app
        .call_as(&proxy_only, Method::POST, &token_path, None)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("capability_not_granted"))
    );

    // The admin key is not an agent key, and an agent key opens no admin route.
    let (status, body) = app
        .call_as(&app.admin_key, Method::POST, &token_path, None)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("admin_key_not_allowed"))
    );
    let (status, body) = proxied(&app, &app.admin_key, Method::GET, &proxy_path).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("admin_key_not_allowed"))
    );
    for path in ["/v1/connections", "/v1/agents", "/v1/events"] {
        let (status, body) = app.call_as(&app.agent_key, Method::GET, path, None).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (403, Some("agent_key_not_allowed")),
            "{path}"
        );
    }
    let (status, body) = app
        .call_as("flk_agent_made-up", Method::POST, &token_path, None)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, _) = app.call_as("", Method::POST, &token_path, None).await;
    assert_eq!(status, 401);

    // The list shows scope, capabilities and last use, never a key or its hash.
    let (status, listed) = app.api(Method::GET, "/v1/agents", None).await;
    assert_eq!(status, 200);
    let text = listed.to_string();
    assert!(!text.contains(&token_only) && !text.contains(&proxy_only));
    assert!(!text.contains(&forcelink_core::agents::hash_agent_key(&token_only)));
    let entry = listed["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "proxy-only")
        .unwrap();
    assert_eq!(entry["capabilities"], json!(["proxy"]));
    assert_eq!(entry["orgs"], json!(["*"]));
    assert!(entry["last_used_at"].is_string(), "{entry}");
    let untouched = listed["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "test-agent")
        .unwrap();
    assert!(untouched["last_used_at"].is_null());

    // Bad create requests say why and store nothing.
    let before = app.api(Method::GET, "/v1/agents", None).await.1["agents"]
        .as_array()
        .unwrap()
        .len();
    for (body, code) in [
        (json!({"name": "x", "orgs": []}), "invalid_agent_key"),
        (
            json!({"name": "x", "orgs": ["banana"]}),
            "invalid_agent_key",
        ),
        (
            json!({"name": "x", "orgs": ["*"], "capabilities": ["admin"]}),
            "invalid_agent_key",
        ),
        (json!({"name": "", "orgs": ["*"]}), "invalid_agent_key"),
        (
            json!({"name": "proxy-only", "orgs": ["*"]}),
            "agent_name_taken",
        ),
        (json!({"nom": "x"}), "invalid_body"),
    ] {
        let (status, answer) = app
            .api(Method::POST, "/v1/agents", Some(body.clone()))
            .await;
        assert_eq!(answer["error"].as_str(), Some(code), "{body}: {answer}");
        assert!(status == 400 || status == 409, "{status}");
    }
    let after = app.api(Method::GET, "/v1/agents", None).await.1["agents"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, after);
    app.finish().await;
}

#[tokio::test]
async fn a_revoked_key_is_refused_at_once_through_the_api_and_from_the_cli() {
    let mut app = TestApp::start(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    let token_path = format!("/v1/connections/{}/token", org.id());
    let key = agent(&app, "soon-gone", &[org.id()], &["token"]).await;
    assert_eq!(
        app.call_as(&key, Method::POST, &token_path, None).await.0,
        200
    );
    let (status, body) = app.api(Method::DELETE, "/v1/agents/soon-gone", None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["revoked"]["revoked_at"].is_string());
    let (status, body) = app.call_as(&key, Method::POST, &token_path, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("agent_key_revoked"))
    );
    let (status, body) = app.api(Method::DELETE, "/v1/agents/nobody", None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("agent_key_not_found"))
    );

    // From another process: the CLI. With no key cache every request reads the store.
    app.restart_with(|config| config.agents.key_cache_seconds = 0)
        .await;
    let (ok, stdout, stderr) = app.cli(&[
        "agents",
        "create",
        "--name",
        "cli-agent",
        "--org",
        org.id(),
        "--can",
        "token",
    ]);
    assert!(ok, "{stderr}");
    let cli_key = stdout.trim().to_string();
    assert!(cli_key.starts_with("flk_agent_"), "{stdout}");
    assert!(stderr.contains("shown once"), "{stderr}");
    assert_eq!(
        app.call_as(&cli_key, Method::POST, &token_path, None)
            .await
            .0,
        200
    );
    let (ok, listed, _) = app.cli(&["agents", "list"]);
    assert!(ok);
    assert!(
        listed.contains("cli-agent") && !listed.contains(&cli_key),
        "{listed}"
    );
    let (ok, json_list, _) = app.cli(&["agents", "list", "--json"]);
    assert!(ok);
    let views: Value = serde_json::from_str(&json_list).unwrap();
    let cli_view = views
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "cli-agent")
        .unwrap();
    assert!(cli_view["last_used_at"].is_string(), "{cli_view}");
    let (ok, _, stderr) = app.cli(&["agents", "revoke", "cli-agent"]);
    assert!(ok, "{stderr}");
    let (status, body) = app.call_as(&cli_key, Method::POST, &token_path, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("agent_key_revoked"))
    );

    // CLI mistakes say how to fix them.
    let (ok, _, stderr) = app.cli(&["agents", "create", "--name", "x", "--org", "banana"]);
    assert!(!ok);
    assert!(stderr.contains("org id"), "{stderr}");
    let (ok, _, stderr) = app.cli(&["agents", "revoke", "nobody"]);
    assert!(!ok);
    assert!(stderr.contains("no agent key"), "{stderr}");
    app.finish().await;
}

#[tokio::test]
async fn escapes_absolute_urls_and_other_paths_are_refused_before_anything_is_sent() {
    let mut app = TestApp::start(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    let auth = format!("Authorization: Bearer {}\r\n", app.agent_key);
    let before = app.sim.requests().len();
    let id = org.id();
    for target in [
        format!("/v1/proxy/{id}/services/../../v1/connections"),
        format!("/v1/proxy/{id}/services/data/../../../id"),
        format!("/v1/proxy/{id}/services/%2e%2e/%2e%2e/v1/connections"),
        format!("/v1/proxy/{id}/services/%2E%2E/x"),
        format!("/v1/proxy/{id}/services/data%2f..%2f..%2fid"),
        format!("/v1/proxy/{id}/services/data%5c..%5cid"),
        format!("/v1/proxy/{id}/services/data%252e%252e/x"),
        format!("/v1/proxy/{id}/services//evil.example/services/data"),
        format!("/v1/proxy/{id}/services/./data"),
        format!("/v1/proxy/{id}/id/{id}"),
        format!("/v1/proxy/{id}/services"),
        format!("http://evil.example/v1/proxy/{id}/services/data/v59.0/limits"),
        format!("{}/v1/proxy/{id}/services/data/v59.0/limits", app.url),
    ] {
        let status = raw_status(&app.url, &target, &auth).await;
        assert!(status == 400 || status == 404, "{target} answered {status}");
    }
    assert_eq!(app.sim.requests().len(), before, "nothing reached sfsim");

    // A Host header or forwarding headers never pick the destination.
    let status = raw_status(
        &app.url,
        &format!("/v1/proxy/{id}/services/data/v59.0/limits"),
        &format!("{auth}X-Forwarded-Host: evil.example\r\nForwarded: host=evil.example\r\n"),
    )
    .await;
    assert_eq!(status, 200);
    let after = app.sim.requests();
    assert_eq!(after.len(), before + 1);
    let last = after.last().unwrap();
    assert_eq!(last.host, org.org.instance_url);
    assert!(last.header("x-forwarded-host").is_none() && last.header("forwarded").is_none());
    app.finish().await;
}

/// POSTs `body` as JSON in chunks of `size` with no declared length; returns the status.
async fn post_chunked(app: &TestApp, url: &str, body: &str, size: usize) -> u16 {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = body
        .as_bytes()
        .chunks(size)
        .map(|chunk| Ok(chunk.to_vec()))
        .collect();
    app.http
        .post(url)
        .bearer_auth(&app.agent_key)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn request_bodies_are_capped_with_413_and_streamed_under_the_cap() {
    let mut app = TestApp::start(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    app.restart_with(|config| config.proxy.max_body_bytes = 1024)
        .await;
    app.connect_ok(&org).await;
    let create = format!(
        "{}/v1/proxy/{}/services/data/v59.0/sobjects/Account",
        app.url,
        org.id()
    );
    let before = app.sim.requests().len();
    let big = json!({ "Name": "x".repeat(2048) }).to_string();
    // Declared too large: refused before anything is read or sent.
    let response = app
        .http
        .post(&create)
        .bearer_auth(&app.agent_key)
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "body_too_large");
    assert_eq!(app.sim.requests().len(), before);
    // Chunked, no length: cut off once it passes the cap.
    let status = post_chunked(&app, &create, &big, 256).await;
    assert_eq!(status, 413);
    let query = format!(
        "/v1/proxy/{}/services/data/v59.0/query?q=SELECT+Id+FROM+Account",
        org.id()
    );
    let (_, listed) = app.agent_api(Method::GET, &query, None).await;
    assert_eq!(listed["totalSize"], 3, "no record was created");

    // Under the cap, chunked: streamed through and created once.
    let small = json!({ "Name": "Streamed Co" }).to_string();
    let status = post_chunked(&app, &create, &small, 5).await;
    assert_eq!(status, 201);
    let (_, listed) = app.agent_api(Method::GET, &query, None).await;
    assert_eq!(listed["totalSize"], 4);
    app.finish().await;
}

#[tokio::test]
async fn an_invalid_session_is_refreshed_once_and_the_request_replayed_with_its_body() {
    let mut app = TestApp::start(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    let (_, first) = app.token(org.id()).await;
    // Only Salesforce's clock moves: forcelink still trusts its token, sfsim does not.
    app.sim
        .advance_clock(std::time::Duration::from_secs(3 * 3600));
    let create = format!(
        "/v1/proxy/{}/services/data/v59.0/sobjects/Account",
        org.id()
    );
    let (status, created) = app
        .agent_api(
            Method::POST,
            &create,
            Some(json!({ "Name": "Replayed Inc" })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(app.sim.counters().refresh_grants, 1);
    let (_, second) = app.token(org.id()).await;
    assert_ne!(first["access_token"], second["access_token"]);
    let query = format!(
        "/v1/proxy/{}/services/data/v59.0/query?q=SELECT+Id+FROM+Account+WHERE+Name+=+'Replayed+Inc'",
        org.id()
    );
    let (status, found) = app.agent_api(Method::GET, &query, None).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["totalSize"], 1, "created exactly once: {found}");
    assert_eq!(app.sim.counters().refresh_grants, 1);

    // Other 401s and errors are relayed as they are, with no refresh.
    let (status, body) = app
        .agent_api(
            Method::GET,
            &format!(
                "/v1/proxy/{}/services/data/v59.0/sobjects/Account/001000000000000AAA",
                org.id()
            ),
            None,
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body[0]["errorCode"], "NOT_FOUND");
    assert_eq!(app.sim.counters().refresh_grants, 1);
    app.finish().await;
}

#[tokio::test]
async fn a_needs_reauth_connection_answers_at_once_with_the_reconnect_url() {
    let mut app = TestApp::start(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    app.sim.set_user_active(&org.user.user_id, false).unwrap();
    app.advance(3 * 3600);
    let path = format!("/v1/proxy/{}{QUERY}", org.id());
    let (status, body) = app.agent_api(Method::GET, &path, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("needs_reauth")),
        "{body}"
    );
    let reconnect = body["reconnect_url"].as_str().unwrap();
    assert!(
        reconnect.ends_with(&format!(
            "/v1/connect/salesforce/start?ctx=api&orgid={}",
            org.id()
        )),
        "{reconnect}"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("An org admin must reconnect it"),
        "{body}"
    );
    let before = app.sim.requests().len();
    let (status, _) = app.agent_api(Method::GET, &path, None).await;
    assert_eq!(status, 409);
    assert_eq!(
        app.sim.requests().len(),
        before,
        "answered without calling Salesforce"
    );
    app.finish().await;
}

#[tokio::test]
async fn a_single_org_key_may_use_the_root_as_its_instance_url() {
    let mut app = TestApp::start(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    let single = agent(&app, "single", &[org.id()], &["proxy"]).await;
    let (status, body) = proxied(&app, &single, Method::GET, QUERY).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["totalSize"], 3);
    let (status, body) = proxied(&app, &app.agent_key, Method::GET, QUERY).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("org_required"))
    );
    app.finish().await;
}

#[tokio::test]
async fn a_slow_salesforce_times_out_with_504() {
    let mut app = TestApp::start(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    app.restart_with(|config| config.proxy.timeout_seconds = 1)
        .await;
    app.connect_ok(&org).await;
    app.sim.add_fault(sfsim::Fault {
        target: sfsim::FaultTarget::Rest,
        org_id: Some(org.org.org_id.clone()),
        consumer_key: None,
        kind: sfsim::FaultKind::DelayBeforeProcessing(std::time::Duration::from_secs(30)),
        times: Some(1),
    });
    let (status, body) = app
        .agent_api(Method::GET, &format!("/v1/proxy/{}{QUERY}", org.id()), None)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (504, Some("upstream_timeout"))
    );
    app.finish().await;
}

#[tokio::test]
async fn tokens_and_agent_keys_never_reach_the_logs_of_a_proxying_process() {
    let mut app = TestApp::start(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    let (_, token) = app.token(org.id()).await;
    let access = token["access_token"].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("trace.log");
    let process = app.spawn_process_logging("proxy-logs", |_| {}, Some(&log));
    let http = reqwest::Client::new();
    for path in [
        format!("/v1/proxy/{}{QUERY}", org.id()),
        format!(
            "/v1/proxy/{}/services/data/v59.0/sobjects/Account/001000000000000AAA",
            org.id()
        ),
    ] {
        let response = http
            .get(format!("{}{path}", process.url))
            .bearer_auth(&app.agent_key)
            .send()
            .await
            .unwrap();
        assert!(response.status().as_u16() < 500);
        let _ = response.bytes().await.unwrap();
    }
    // An invalid session forces a refresh and a replay in the child.
    app.sim
        .advance_clock(std::time::Duration::from_secs(3 * 3600));
    let response = http
        .get(format!("{}/v1/proxy/{}{QUERY}", process.url, org.id()))
        .bearer_auth(&app.agent_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (_, renewed) = app.token(org.id()).await;
    let renewed = renewed["access_token"].as_str().unwrap().to_string();
    process.kill_hard();
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(
        logs.contains("refreshing once and retrying"),
        "the capture works"
    );
    for secret in [&access, &renewed, &app.agent_key, &app.admin_key] {
        assert!(!logs.contains(secret.as_str()), "a secret reached the logs");
    }
    app.finish().await;
}

#[tokio::test]
async fn api_traffic_leaves_from_the_egress_address_only_when_asked() {
    let mut app = TestApp::start(Options::default()).await;
    let org = app.org(LoginKind::Production).await;
    app.connect_ok(&org).await;
    let path = format!("/v1/proxy/{}/services/data/v59.0/limits", org.id());
    let last_peer = |app: &TestApp| {
        instance_requests(app, &org.org.instance_url)
            .last()
            .map(|request| request.peer.ip().to_string())
    };
    app.restart_with(|config| {
        config.egress.bind_address = Some("127.0.0.2".parse().unwrap());
    })
    .await;
    assert_eq!(app.agent_api(Method::GET, &path, None).await.0, 200);
    assert_eq!(
        last_peer(&app).as_deref(),
        Some("127.0.0.1"),
        "token traffic only by default"
    );
    app.restart_with(|config| config.egress.api_traffic = true)
        .await;
    assert_eq!(app.agent_api(Method::GET, &path, None).await.0, 200);
    assert_eq!(last_peer(&app).as_deref(), Some("127.0.0.2"));
    app.finish().await;
}
