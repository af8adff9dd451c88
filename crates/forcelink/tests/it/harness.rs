//! `TestApp`: forcelink + sfsim + a fresh database + a clock that moves with sfsim's.
//! Everything binds 127.0.0.1:0; nothing sleeps.

use std::sync::Arc;

use forcelink::app::{self, RunningServer};
use forcelink::config::{Config, SecretSetting};
use forcelink::demo::{BrowserOutcome, browser_connect};
use forcelink_core::{KeyRing, OffsetClock};
use serde_json::Value;

pub use forcelink::demo::LoginKind;

/// Which store a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server for tests, if configured. Says loudly when it is not.
#[allow(clippy::disallowed_methods)] // tests read their one env variable here
pub fn pg_server_url() -> Option<String> {
    let url = std::env::var("FORCELINK_TEST_PG_URL")
        .ok()
        .filter(|u| !u.is_empty());
    if url.is_none() {
        eprintln!(
            "SKIPPED: PostgreSQL end-to-end tests need FORCELINK_TEST_PG_URL (e.g. postgres://postgres@127.0.0.1:5432/postgres)"
        );
    }
    url
}

/// Creates a fresh database on the test server and returns its URL.
pub async fn fresh_pg_database(server: &str) -> String {
    use sqlx::Connection;
    let name = format!("forcelink_e2e_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(server)
        .await
        .expect("connect to the test PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create database");
    let mut url = url::Url::parse(server).expect("FORCELINK_TEST_PG_URL is a URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

#[derive(Debug, Clone)]
pub struct Options {
    pub public_client: bool,
    pub backend: Backend,
    pub key_ids: Vec<&'static str>,
    pub active_key: &'static str,
    /// Put the SQLite file on tmpfs (when there is one): for long simulations where
    /// durability is not what is tested and fsync would dominate.
    pub ephemeral_store: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            public_client: false,
            backend: Backend::Sqlite,
            key_ids: vec!["k1"],
            active_key: "k1",
            ephemeral_store: false,
        }
    }
}

#[derive(Debug)]
pub struct TestApp {
    pub sim: sfsim::Sim,
    pub sf_app: sfsim::App,
    pub server: Option<RunningServer>,
    pub url: String,
    pub admin_key: String,
    /// An agent key for every org with both capabilities, made at start.
    pub agent_key: String,
    pub clock: Arc<OffsetClock>,
    pub config: Config,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// A demo org with its admin user.
#[derive(Debug, Clone)]
pub struct TestOrg {
    pub org: sfsim::Org,
    pub user: sfsim::User,
    pub kind: LoginKind,
}

impl TestOrg {
    pub fn id(&self) -> &str {
        &self.org.org_id
    }
    pub fn start_query(&self) -> String {
        match self.kind {
            LoginKind::Production => format!("ctx=api&orgid={}&env=production", self.org.org_id),
            LoginKind::Sandbox => format!("ctx=api&orgid={}&env=sandbox", self.org.org_id),
            LoginKind::MyDomain => format!(
                "ctx=api&orgid={}&domain={}",
                self.org.org_id, self.org.instance_url
            ),
        }
    }
}

impl TestApp {
    pub async fn start(options: Options) -> TestApp {
        let sim = sfsim::Sim::start().await.expect("sfsim starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let callback = format!("{url}/v1/connect/salesforce/callback");
        let mut settings = sfsim::AppSettings {
            callback_urls: vec![callback.clone()],
            ..Default::default()
        };
        if options.public_client {
            settings.consumer_secret_optional = true;
            settings.secret_required_for_refresh = false;
            // A public client must never send the secret: make sfsim refuse it if it does.
            settings.public_client_secret_rejected = true;
        }
        let sf_app = sim.create_app(sfsim::AppSpec {
            name: "forcelink test".into(),
            callback_urls: vec![callback],
            settings,
        });
        let shm = std::path::Path::new("/dev/shm");
        let dir = if options.ephemeral_store && shm.is_dir() {
            tempfile::tempdir_in(shm).expect("tempdir on tmpfs")
        } else {
            tempfile::tempdir().expect("tempdir")
        };
        let store_url = match options.backend {
            Backend::Sqlite => format!("sqlite:{}", dir.path().join("forcelink.db").display()),
            Backend::Postgres => {
                fresh_pg_database(&pg_server_url().expect("PostgreSQL configured")).await
            }
        };
        let keys: Vec<(String, String)> = options
            .key_ids
            .iter()
            .map(|id| {
                (
                    id.to_string(),
                    KeyRing::generate_key().into_string().expect("utf8"),
                )
            })
            .collect();
        let admin_key = format!("test-admin-key-{}", uuid::Uuid::new_v4().simple());
        let mut config = Config::default();
        config.server.public_url = url.clone();
        config.store.url = store_url;
        config.store.max_connections = 8;
        config.salesforce.client_id = sf_app.consumer_key.clone();
        config.salesforce.client_secret =
            (!options.public_client).then(|| SecretSetting(sf_app.consumer_secret.clone()));
        config.salesforce.production_login_url = sim.production_login_url();
        config.salesforce.sandbox_login_url = sim.sandbox_login_url();
        config.salesforce.request_timeout_seconds = 10;
        config.admin.api_key = Some(SecretSetting(admin_key.clone()));
        config.keys.active = options.active_key.to_string();
        for (id, key) in &keys {
            config
                .keys
                .ring
                .insert(id.clone(), SecretSetting(key.clone()));
        }
        let clock = Arc::new(OffsetClock::default());
        let mut app = TestApp {
            sim,
            sf_app,
            server: None,
            url,
            admin_key,
            agent_key: String::new(),
            clock,
            config,
            http: reqwest::Client::new(),
            _dir: dir,
        };
        app.serve(listener).await;
        let (_, secret) = app
            .server
            .as_ref()
            .expect("server running")
            .wiring
            .agents
            .create(forcelink_core::AgentKeySpec::all_orgs("test-agent"))
            .await
            .expect("agent key");
        app.agent_key = secret.expose().to_owned();
        app
    }

    async fn serve(&mut self, listener: tokio::net::TcpListener) {
        let wiring = app::wire_to_serve(&self.config, self.clock.clone())
            .await
            .expect("wiring");
        self.server = Some(app::serve(&self.config, wiring, listener).expect("serve"));
    }

    /// Restarts the server with a changed config on a fresh port (the sfsim app's callback
    /// follows).
    pub async fn restart_with(&mut self, change: impl FnOnce(&mut Config)) {
        if let Some(server) = self.server.take() {
            server.stop().await.expect("stop");
        }
        change(&mut self.config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let scheme = if self.config.server.tls_cert_file.is_some() {
            "https"
        } else {
            "http"
        };
        self.url = format!("{scheme}://{}", listener.local_addr().expect("addr"));
        self.config.server.public_url = self.url.clone();
        let callback = self.config.callback_url();
        self.sim
            .update_app(&self.sf_app.consumer_key, |s| {
                s.callback_urls.push(callback)
            })
            .expect("update app");
        self.serve(listener).await;
    }

    pub fn broker(&self) -> &Arc<forcelink_core::Broker> {
        &self.server.as_ref().expect("server running").wiring.broker
    }

    /// Creates an org (and its admin user) in sfsim that logs in the given way.
    pub async fn org(&mut self, kind: LoginKind) -> TestOrg {
        self.org_with_accounts(kind, 3, 1).await
    }

    /// An org seeded with `accounts` accounts of `contacts` contacts each, and its admin.
    pub async fn org_with_accounts(
        &mut self,
        kind: LoginKind,
        accounts: usize,
        contacts: usize,
    ) -> TestOrg {
        let n = self.sim.orgs().len();
        let org = self
            .sim
            .create_org(sfsim::OrgSpec {
                name: format!("Org {n}"),
                sandbox: kind == LoginKind::Sandbox,
                my_domain: format!("org{n}"),
                seed_accounts: accounts,
                seed_contacts_per_account: contacts,
            })
            .await
            .expect("create org");
        let username = format!("admin{n}@org{n}.example.com");
        let user = self
            .sim
            .create_user(
                &org.org_id,
                sfsim::UserSpec {
                    username: username.clone(),
                    display_name: "Admin".into(),
                    email: username,
                },
            )
            .expect("create user");
        if kind == LoginKind::MyDomain {
            self.config
                .salesforce
                .extra_login_urls
                .push(org.instance_url.clone());
            // The My Domain becomes an allowed login host; restart to pick up the config.
            self.restart_with(|_| {}).await;
        }
        TestOrg { org, user, kind }
    }

    pub async fn connect(&self, org: &TestOrg) -> BrowserOutcome {
        browser_connect(&self.url, &org.start_query(), &org.user.username)
            .await
            .expect("browser flow")
    }

    pub async fn connect_ok(&self, org: &TestOrg) {
        let outcome = self.connect(org).await;
        assert_eq!(outcome.status, 200, "connect failed: {}", outcome.page);
    }

    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.call_as(&self.admin_key, method, path, body).await
    }

    /// A JSON call with the harness's all-orgs agent key.
    pub async fn agent_api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.call_as(&self.agent_key, method, path, body).await
    }

    /// A JSON call with a given bearer key.
    pub async fn call_as(
        &self,
        key: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// `GET /v1/connections/{org}` as JSON, whatever the status.
    pub async fn shown(&self, org_id: &str) -> Value {
        self.api(
            reqwest::Method::GET,
            &format!("/v1/connections/{org_id}"),
            None,
        )
        .await
        .1
    }

    /// The kinds of the events recorded for an org, oldest first, leaving out the lifecycle
    /// events every connect, reconnect and revoke records (`connection.created`,
    /// `connection.reconnected`, `connection.revoked`): what went wrong or right with a grant.
    pub async fn event_kinds(&self, org_id: &str) -> Vec<String> {
        let lifecycle = [
            "connection.created",
            "connection.reconnected",
            "connection.revoked",
        ];
        self.all_event_kinds(org_id)
            .await
            .into_iter()
            .filter(|kind| !lifecycle.contains(&kind.as_str()))
            .collect()
    }

    /// The kinds of every event recorded for an org, oldest first.
    pub async fn all_event_kinds(&self, org_id: &str) -> Vec<String> {
        let (status, body) = self
            .api(
                reqwest::Method::GET,
                &format!("/v1/events?org_id={org_id}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_string())
            .collect()
    }

    pub async fn token_stale(&self, org_id: &str, stale: &str) -> (u16, Value) {
        let body = serde_json::json!({ "stale_token": stale });
        self.call_as(
            &self.agent_key,
            reqwest::Method::POST,
            &format!("/v1/connections/{org_id}/token"),
            Some(body),
        )
        .await
    }

    pub async fn token(&self, org_id: &str) -> (u16, Value) {
        self.call_as(
            &self.agent_key,
            reqwest::Method::POST,
            &format!("/v1/connections/{org_id}/token"),
            None,
        )
        .await
    }

    /// Stops the server and drops a PostgreSQL test database.
    pub async fn finish(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await.expect("stop");
        }
        if let (Some(server_url), true) = (
            pg_server_url(),
            self.config.store.url.starts_with("postgres"),
        ) {
            use sqlx::Connection;
            let name = self
                .config
                .store
                .url
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_string();
            let mut admin = sqlx::PgConnection::connect(&server_url)
                .await
                .expect("connect");
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut admin)
            .await
            .expect("drop database");
        }
    }

    /// Moves sfsim's clock and forcelink's together.
    pub fn advance(&self, seconds: u64) {
        self.sim
            .advance_clock(std::time::Duration::from_secs(seconds));
        self.clock.advance(chrono::Duration::seconds(
            i64::try_from(seconds).expect("seconds"),
        ));
    }

    /// The plaintext refresh token forcelink holds for an org (opened with the test's keys).
    pub async fn stored_refresh_token(&self, org_id: &str) -> String {
        let key = forcelink_core::ConnectionKey::new(
            forcelink_core::OrgId::parse(org_id).expect("org id"),
            forcelink_core::ConnectionContext::api(),
        );
        // Opened directly, so it works whether or not the in-process server runs.
        let store = app::open_store(&self.config.store).await.expect("store");
        let connection = store
            .connection(&key)
            .await
            .expect("store")
            .expect("connection");
        let ring = app::key_ring(&self.config.keys).expect("ring");
        let reference =
            forcelink_core::SealedRef::connection(&key, forcelink_core::SealedField::RefreshToken);
        let sealed = connection
            .tokens
            .refresh_token
            .expect("refresh token stored");
        ring.open(&sealed, &reference.aad())
            .expect("opens")
            .into_string()
            .expect("utf8")
    }

    /// Presents a refresh token to sfsim directly, as an attacker or a buggy peer would.
    pub async fn present_refresh_token(
        &self,
        login_url: &str,
        refresh_token: &str,
    ) -> (u16, Value) {
        let mut form = vec![
            ("grant_type", "refresh_token".to_string()),
            ("refresh_token", refresh_token.to_string()),
            ("client_id", self.sf_app.consumer_key.clone()),
        ];
        if self.config.salesforce.client_secret.is_some() {
            form.push(("client_secret", self.sf_app.consumer_secret.clone()));
        }
        let response = self
            .http
            .post(format!("{login_url}/services/oauth2/token"))
            .form(&form)
            .send()
            .await
            .expect("token call");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub fn login_url_of(&self, org: &TestOrg) -> String {
        match org.kind {
            LoginKind::Production => self.sim.production_login_url(),
            LoginKind::Sandbox => self.sim.sandbox_login_url(),
            LoginKind::MyDomain => org.org.instance_url.clone(),
        }
    }
}
