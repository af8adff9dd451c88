//! `forcelink demo`: sfsim and forcelink in one process on a fresh SQLite file. Three demo orgs
//! (production, sandbox, My Domain) are connected through the real HTTP flow; `--once` then
//! checks token handout, a rotating refresh and the API proxy, and exits. forcelink serves
//! HTTPS with a self-signed certificate it makes, and prints how to trust it.
//!
//! `browser_connect` plays the admin's browser (follow the redirects by hand, log in with a
//! username) and is shared with the end-to-end tests. Nothing here is used by `serve`.

use std::sync::Arc;

use anyhow::{Context, bail, ensure};
use forcelink_core::OffsetClock;
use rand::RngExt;
use serde_json::Value;

use crate::app;
use crate::config::{Config, SecretSetting};

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub once: bool,
    pub listen: String,
}

/// How a demo org logs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginKind {
    Production,
    Sandbox,
    MyDomain,
}

/// What the browser saw at the end of a connect flow.
#[derive(Debug)]
pub struct BrowserOutcome {
    pub status: u16,
    pub page: String,
}

/// Walks the connect flow like a browser: start URL → Salesforce authorize (logging in as
/// `username`) → forcelink callback. `query` is the start URL's query string.
pub async fn browser_connect(
    forcelink_url: &str,
    query: &str,
    username: &str,
) -> anyhow::Result<BrowserOutcome> {
    browser_connect_trusting(forcelink_url, query, username, None).await
}

/// `browser_connect` with an extra trusted certificate (PEM), for a forcelink on TLS with a
/// self-signed certificate.
pub async fn browser_connect_trusting(
    forcelink_url: &str,
    query: &str,
    username: &str,
    trusted_pem: Option<&str>,
) -> anyhow::Result<BrowserOutcome> {
    let mut browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
    if let Some(pem) = trusted_pem {
        browser = browser.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes())?);
    }
    let browser = browser.build()?;
    let start = browser
        .get(format!(
            "{forcelink_url}/v1/connect/salesforce/start?{query}"
        ))
        .send()
        .await?;
    if start.status().as_u16() != 302 {
        return Ok(BrowserOutcome {
            status: start.status().as_u16(),
            page: start.text().await?,
        });
    }
    let authorize = location(&start)?;
    let mut authorize = url::Url::parse(&authorize).context("authorize URL")?;
    authorize
        .query_pairs_mut()
        .append_pair("login_hint", username);
    let approved = browser.get(authorize).send().await?;
    if approved.status().as_u16() != 302 {
        return Ok(BrowserOutcome {
            status: approved.status().as_u16(),
            page: approved.text().await?,
        });
    }
    let callback = browser.get(location(&approved)?).send().await?;
    Ok(BrowserOutcome {
        status: callback.status().as_u16(),
        page: callback.text().await?,
    })
}

fn location(response: &reqwest::Response) -> anyhow::Result<String> {
    response
        .headers()
        .get("location")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
        .context("redirect without a Location header")
}

fn random_secret(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    rand::rng().fill(&mut raw[..]);
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// The demo's agent keys: one for every org, one bound to the first org only.
struct AgentKeys<'a> {
    all_orgs: &'a str,
    single_org: &'a str,
}

struct DemoOrg {
    name: &'static str,
    kind: LoginKind,
    org: sfsim::Org,
    username: String,
}

pub async fn run(options: DemoOptions) -> anyhow::Result<()> {
    let sim = sfsim::Sim::start()
        .await
        .context("cannot start the Salesforce simulator")?;
    let listener = tokio::net::TcpListener::bind(&options.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}: pass --listen 127.0.0.1:0 for a free port",
                options.listen
            )
        })?;
    // simple-salesforce only speaks https, so the demo serves TLS with a certificate it makes.
    let forcelink_url = format!("https://{}", listener.local_addr()?);
    let certificate = crate::tls::self_signed(&["127.0.0.1".to_owned(), "localhost".to_owned()])?;
    let callback = format!("{forcelink_url}/v1/connect/salesforce/callback");
    let sf_app = sim.create_app(sfsim::AppSpec {
        name: "forcelink demo".into(),
        callback_urls: vec![callback.clone()],
        settings: sfsim::AppSettings {
            callback_urls: vec![callback.clone()],
            ..Default::default()
        },
    });

    let mut orgs = Vec::new();
    for (name, kind, domain) in [
        ("Acme Corp", LoginKind::Production, "acme"),
        ("Globex (UAT sandbox)", LoginKind::Sandbox, "globex--uat"),
        ("Initech", LoginKind::MyDomain, "initech"),
    ] {
        let org = sim
            .create_org(sfsim::OrgSpec {
                name: name.into(),
                sandbox: kind == LoginKind::Sandbox,
                my_domain: domain.into(),
                seed_accounts: 25,
                seed_contacts_per_account: 2,
            })
            .await?;
        let username = format!("admin@{domain}.example.com");
        sim.create_user(
            &org.org_id,
            sfsim::UserSpec {
                username: username.clone(),
                display_name: format!("{name} Admin"),
                email: username.clone(),
            },
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        orgs.push(DemoOrg {
            name,
            kind,
            org,
            username,
        });
    }

    let dir =
        tempfile::tempdir().context("cannot create a temporary directory for the demo database")?;
    let db = dir.path().join("forcelink-demo.db");
    let cert_file = dir.path().join("forcelink-demo-cert.pem");
    let key_file = dir.path().join("forcelink-demo-key.pem");
    std::fs::write(&cert_file, &certificate.cert_pem)
        .context("cannot write the demo certificate")?;
    std::fs::write(&key_file, &certificate.key_pem).context("cannot write the demo key")?;
    let admin_key = random_secret(24);
    let mut config = Config::default();
    config.server.public_url = forcelink_url.clone();
    config.server.tls_cert_file = Some(cert_file.clone());
    config.server.tls_key_file = Some(key_file.clone());
    config.store.url = format!("sqlite:{}", db.display());
    config.salesforce.client_id = sf_app.consumer_key.clone();
    config.salesforce.client_secret = Some(SecretSetting(sf_app.consumer_secret.clone()));
    config.salesforce.production_login_url = sim.production_login_url();
    config.salesforce.sandbox_login_url = sim.sandbox_login_url();
    config.salesforce.extra_login_urls = orgs.iter().map(|o| o.org.instance_url.clone()).collect();
    config.admin.api_key = Some(SecretSetting(admin_key.clone()));
    config.keys.active = "demo".into();
    config.keys.ring.insert(
        "demo".into(),
        SecretSetting(
            forcelink_core::KeyRing::generate_key()
                .into_string()
                .unwrap_or_default(),
        ),
    );

    let clock = Arc::new(OffsetClock::default());
    let wiring = app::wire_to_serve(&config, clock.clone()).await?;
    let (_, agent_secret) = wiring
        .agents
        .create(forcelink_core::AgentKeySpec::all_orgs("demo-agent"))
        .await?;
    let agent_key = agent_secret.expose().to_owned();
    let (_, single_secret) = wiring
        .agents
        .create(forcelink_core::AgentKeySpec {
            name: "demo-acme-only".into(),
            scope: forcelink_core::AgentScope::Orgs(vec![forcelink_core::OrgId::parse(
                &orgs[0].org.org_id,
            )?]),
            capabilities: vec![forcelink_core::Capability::Proxy],
        })
        .await?;
    let single_key = single_secret.expose().to_owned();
    let server = app::serve(&config, wiring, listener)?;

    println!("forcelink demo");
    println!(
        "  forcelink:        {forcelink_url}  (SQLite at {})",
        db.display()
    );
    println!(
        "  salesforce (sim): production {}  sandbox {}",
        sim.production_login_url(),
        sim.sandbox_login_url()
    );
    println!();
    for demo_org in &orgs {
        let query = match demo_org.kind {
            LoginKind::Production => {
                format!("ctx=api&orgid={}&env=production", demo_org.org.org_id)
            }
            LoginKind::Sandbox => format!("ctx=api&orgid={}&env=sandbox", demo_org.org.org_id),
            LoginKind::MyDomain => format!(
                "ctx=api&orgid={}&domain={}",
                demo_org.org.org_id, demo_org.org.instance_url
            ),
        };
        let outcome = browser_connect_trusting(
            &forcelink_url,
            &query,
            &demo_org.username,
            Some(&certificate.cert_pem),
        )
        .await?;
        ensure!(
            outcome.status == 200,
            "connecting {} failed with {}: {}",
            demo_org.name,
            outcome.status,
            outcome.page
        );
        println!(
            "  connected {:<22} via {:?} login as {}",
            demo_org.name, demo_org.kind, demo_org.username
        );
    }

    let api = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(
            certificate.cert_pem.as_bytes(),
        )?)
        .build()?;
    let listed: Value = api
        .get(format!("{forcelink_url}/v1/connections"))
        .bearer_auth(&admin_key)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    println!();
    print_connections(&listed);
    let first = &orgs[0].org.org_id;
    println!();
    println!("Admin API (admin key shown once, demo only):");
    println!("  curl -s -H 'Authorization: Bearer {admin_key}' {forcelink_url}/v1/connections");
    let cert = cert_file.display();
    println!("TLS: a self-signed certificate for 127.0.0.1 and localhost; trust it with");
    println!(
        "  curl --cacert {cert} …   REQUESTS_CA_BUNDLE={cert} (Python)   NODE_EXTRA_CA_CERTS={cert} (Node)"
    );
    println!("Fetch an access token with the demo's agent key (shown once, demo only):");
    println!(
        "  curl -s --cacert {cert} -X POST -H 'Authorization: Bearer {agent_key}' {forcelink_url}/v1/connections/{first}/token"
    );
    println!(
        "Or let forcelink call Salesforce for you (the agent never holds a Salesforce token):"
    );
    println!(
        "  curl -s --cacert {cert} -H 'Authorization: Bearer {agent_key}' '{forcelink_url}/v1/proxy/{first}/services/data/v59.0/query?q=SELECT+Name+FROM+Account+LIMIT+3'"
    );
    println!(
        "  jsforce:           new jsforce.Connection({{ instanceUrl: '{forcelink_url}/v1/proxy/{first}', accessToken: '{agent_key}' }})"
    );
    println!(
        "  simple-salesforce: Salesforce(instance_url='{forcelink_url}', session_id='{single_key}')  # key bound to {} only",
        orgs[0].name
    );

    if options.once {
        let result = checks(
            &sim,
            &sf_app.consumer_key,
            &clock,
            &api,
            &forcelink_url,
            &AgentKeys {
                all_orgs: &agent_key,
                single_org: &single_key,
            },
            &orgs,
        )
        .await;
        server.stop().await?;
        sim.shutdown();
        result?;
        println!();
        println!(
            "demo checks passed: 3 orgs connected over TLS, tokens served, one rotating refresh each, no reuse detected, the proxy works"
        );
        return Ok(());
    }
    println!();
    println!(
        "Start URL for another connection: {forcelink_url}/v1/connect/salesforce/start?ctx=api&orgid=<ORG ID>"
    );
    println!("Serving until Ctrl-C.");
    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    server.stop().await?;
    sim.shutdown();
    Ok(())
}

fn print_connections(listed: &Value) {
    let text = |value: &Value| match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    println!(
        "{:<18}  {:<7}  {:<30}  {:<3}  {:<24}  INSTANCE",
        "ORG", "STATE", "USER", "GEN", "LOGIN HOST"
    );
    for c in listed["connections"].as_array().into_iter().flatten() {
        println!(
            "{:<18}  {:<7}  {:<30}  {:<3}  {:<24}  {}",
            text(&c["org_id"]),
            text(&c["state"]),
            text(&c["username"]),
            text(&c["generation"]),
            text(&c["login_host"]),
            text(&c["instance_url"])
        );
    }
}

async fn token(api: &reqwest::Client, url: &str, key: &str, org: &str) -> anyhow::Result<Value> {
    let response = api
        .post(format!("{url}/v1/connections/{org}/token"))
        .bearer_auth(key)
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    if !status.is_success() {
        bail!("token for {org} failed with {status}: {body}");
    }
    Ok(body)
}

async fn checks(
    sim: &sfsim::Sim,
    consumer_key: &str,
    clock: &OffsetClock,
    api: &reqwest::Client,
    url: &str,
    keys: &AgentKeys<'_>,
    orgs: &[DemoOrg],
) -> anyhow::Result<()> {
    let (key, single_key) = (keys.all_orgs, keys.single_org);
    let mut first_tokens = Vec::new();
    for demo_org in orgs {
        let body = token(api, url, key, &demo_org.org.org_id).await?;
        first_tokens.push(body["access_token"].as_str().unwrap_or("").to_string());
    }
    // Two hours and a bit later every access token has expired: the next handout refreshes.
    let later = std::time::Duration::from_secs(2 * 3600 + 60);
    sim.advance_clock(later);
    clock.advance(chrono::Duration::seconds(2 * 3600 + 60));
    for (demo_org, before) in orgs.iter().zip(&first_tokens) {
        let body = token(api, url, key, &demo_org.org.org_id).await?;
        let after = body["access_token"].as_str().unwrap_or("");
        ensure!(
            !after.is_empty() && after != before,
            "{}: the access token was not refreshed",
            demo_org.name
        );
        ensure!(
            body["generation"] == 2,
            "{}: expected generation 2 after one refresh, got {}",
            demo_org.name,
            body["generation"]
        );
    }
    let counters = sim.counters();
    ensure!(
        counters.refresh_grants == 3,
        "expected 3 refreshes at Salesforce, saw {}",
        counters.refresh_grants
    );
    ensure!(
        counters.reuse_detections == 0,
        "Salesforce detected refresh token reuse {} times",
        counters.reuse_detections
    );
    for demo_org in orgs {
        ensure!(
            sim.active_refresh_tokens(&demo_org.org.org_id, consumer_key) == 1,
            "{}: no live grant at Salesforce",
            demo_org.name
        );
    }
    println!(
        "  refreshed each org once after 2 h of simulated time; Salesforce saw {} refreshes and {} reuse detections",
        counters.refresh_grants, counters.reuse_detections
    );
    // The proxy: by org with the all-orgs key, and at the root with the single-org key.
    let soql = "/services/data/v59.0/query?q=SELECT+Id,+Name+FROM+Account";
    for (path, agent) in [
        (format!("{url}/v1/proxy/{}{soql}", orgs[0].org.org_id), key),
        (format!("{url}{soql}"), single_key),
    ] {
        let response = api.get(&path).bearer_auth(agent).send().await?;
        let status = response.status();
        let body: Value = response.json().await?;
        ensure!(
            status.is_success() && body["totalSize"] == 25,
            "a SOQL query through the proxy failed with {status}: {body}"
        );
    }
    ensure!(
        sim.counters().refresh_grants == 3,
        "the proxy refreshed a token it did not need to"
    );
    println!(
        "  queried 25 accounts through the proxy, by org and at the root with a single-org key"
    );
    Ok(())
}
