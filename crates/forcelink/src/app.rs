//! Wiring only: builds the store, the Salesforce client, the key ring and the broker from the
//! config (registering the config file's webhook endpoints), and serves the router on a
//! listener it is given (the bootstrap seam tests use with port 0), with the background
//! workers: sweeper, heartbeat, webhook delivery. No business logic lives here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use chrono::Duration;
use forcelink_core::{
    AgentKeys, Broker, BrokerSettings, ClientCredentials, ClientSecret, Clock, KeyRing,
    SecretBytes, Store, StoreError,
};
use forcelink_salesforce::{ClientOptions, SalesforceClient};
use forcelink_store_postgres::PostgresStore;
use forcelink_store_sqlite::SqliteStore;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::{Config, KeysConfig, StoreConfig};
use crate::hosts::LoginHostPolicy;
use crate::http::{self, AppState};

/// Where the store lives, parsed from `store.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    Sqlite(PathBuf),
    Postgres(String),
}

impl StoreLocation {
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let url = url.trim();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_string()));
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        if path.is_empty() {
            return Err(anyhow!(
                "store.url is empty: use sqlite:PATH or postgres://USER@HOST/DB"
            ));
        }
        Ok(Self::Sqlite(PathBuf::from(path)))
    }
}

/// Whether opening the store creates it and brings its schema up to date (`serve`, and the
/// demo and benchmarks, which make their own), or takes it as it is and creates nothing (every
/// other command: the CLI and `doctor` must not change a live store's schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOpening {
    Migrate,
    AsFound,
}

pub async fn open_store(config: &StoreConfig) -> anyhow::Result<Arc<dyn Store>> {
    open_store_for(config, StoreOpening::Migrate).await
}

pub async fn open_store_for(
    config: &StoreConfig,
    opening: StoreOpening,
) -> anyhow::Result<Arc<dyn Store>> {
    match StoreLocation::parse(&config.url)? {
        StoreLocation::Sqlite(path) => {
            let (opened, hint) = match opening {
                StoreOpening::Migrate => (
                    SqliteStore::open(&path).await,
                    ": check the path is writable",
                ),
                StoreOpening::AsFound => {
                    found_sqlite_file(&path)?;
                    (SqliteStore::open_as_found(&path).await, "")
                }
            };
            let store = opened.map_err(|error| {
                opening_error(error, || {
                    format!("cannot open the SQLite store at {}{hint}", path.display())
                })
            })?;
            Ok(Arc::new(store))
        }
        StoreLocation::Postgres(url) => {
            let connecting = match opening {
                StoreOpening::Migrate => PostgresStore::connect(&url, config.max_connections).await,
                StoreOpening::AsFound => {
                    PostgresStore::connect_as_found(&url, config.max_connections).await
                }
            };
            let store = connecting.map_err(|error| {
                opening_error(error, || {
                    "cannot open the PostgreSQL store: check store.url and that the server is up"
                        .to_string()
                })
            })?;
            Ok(Arc::new(store))
        }
    }
}

/// A store's error with `context` added, except a schema error, whose message already says
/// what is wrong and which a connectivity hint would only muddle.
fn opening_error(error: StoreError, context: impl FnOnce() -> String) -> anyhow::Error {
    match error {
        StoreError::Migration(_) => anyhow::Error::new(error),
        other => anyhow::Error::new(other).context(context()),
    }
}

/// The SQLite file a store opened as found must be: there, a file, readable. `file:` URIs and
/// `:memory:` are left to SQLite.
fn found_sqlite_file(path: &std::path::Path) -> anyhow::Result<()> {
    let text = path.to_string_lossy();
    if text.starts_with("file:") || text == ":memory:" {
        return Ok(());
    }
    match std::fs::metadata(path) {
        Ok(metadata) if metadata.is_dir() => Err(anyhow!(
            "store.url points at {}, a directory: name the database file in it",
            path.display()
        )),
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Err(anyhow!(
            "there is no SQLite store at {}: check store.url (`forcelink serve` creates it)",
            path.display()
        )),
        Err(error) => Err(anyhow!(
            "cannot reach the SQLite store at {}: {error} (run as the user `forcelink serve` \
             runs as)",
            path.display()
        )),
    }
}

pub fn key_ring(config: &KeysConfig) -> anyhow::Result<KeyRing> {
    let keys: Vec<(String, SecretBytes)> = config
        .ring
        .iter()
        .map(|(id, key)| (id.clone(), SecretBytes::new(key.0.clone().into_bytes())))
        .collect();
    KeyRing::new(
        keys.iter().map(|(id, key)| (id.as_str(), key)),
        &config.active,
    )
    .map_err(|error| anyhow!("key ring: {error}"))
}

/// How token traffic leaves, as recorded in lineage and IP-block events.
pub fn egress_label(config: &Config) -> Option<String> {
    match (&config.egress.proxy, config.egress.bind_address) {
        (Some(proxy), _) => Some(format!("proxy {proxy}")),
        (None, Some(address)) => Some(format!("bind {address}")),
        (None, None) => None,
    }
}

pub fn heartbeat_settings(config: &Config) -> forcelink_core::heartbeat::HeartbeatSettings {
    let heartbeat = &config.heartbeat;
    forcelink_core::heartbeat::HeartbeatSettings {
        // `heartbeat_tick` takes at least one of each.
        batch: heartbeat.batch,
        concurrency: heartbeat.concurrency as usize,
        per_host_rate: heartbeat.per_host_rate,
        retry_after: Duration::minutes(i64::from(heartbeat.retry_minutes)),
        tick_every: std::time::Duration::from_secs(u64::from(heartbeat.tick_seconds.max(1))),
    }
}

/// A name for this process in leases and lineage.
pub fn instance_id(config: &Config) -> String {
    if !config.server.instance_id.is_empty() {
        return config.server.instance_id.clone();
    }
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("forcelink-{}-{}", std::process::id(), &suffix[..8])
}

pub fn broker_settings(config: &Config, hosts: &LoginHostPolicy) -> BrokerSettings {
    let salesforce = &config.salesforce;
    let refresh = &config.refresh;
    let timeout = Duration::seconds(i64::from(salesforce.request_timeout_seconds));
    let (default_lease, default_window) = BrokerSettings::timing_for(timeout);
    let seconds_or = |value: u32, default: Duration| {
        if value == 0 {
            default
        } else {
            Duration::seconds(i64::from(value))
        }
    };
    BrokerSettings {
        client: ClientCredentials {
            client_id: salesforce.client_id.clone(),
            client_secret: salesforce
                .client_secret
                .as_ref()
                .map(|s| ClientSecret::new(s.0.clone())),
        },
        redirect_uri: config.callback_url(),
        scopes: salesforce.scopes.clone(),
        production_host: hosts.production.clone(),
        sandbox_host: hosts.sandbox.clone(),
        state_ttl: Duration::minutes(i64::from(salesforce.state_ttl_minutes)),
        session_timeout: Duration::minutes(i64::from(salesforce.session_timeout_minutes)),
        refresh_margin: Duration::seconds(i64::from(salesforce.refresh_margin_seconds)),
        instance_id: instance_id(config),
        lease_ttl: seconds_or(refresh.lease_ttl_seconds, default_lease),
        in_flight_window: seconds_or(refresh.in_flight_window_seconds, default_window),
        max_wait: Duration::seconds(i64::from(refresh.max_wait_seconds)),
        idle_ttl: Duration::days(i64::from(refresh.idle_ttl_days)),
        transient_retries: refresh.transient_retries,
        concurrent_retries: refresh.concurrent_retries,
        backoff_base: std::time::Duration::from_millis(u64::from(refresh.backoff_base_ms)),
        introspect: salesforce.introspect_expiry,
        egress: egress_label(config),
        heartbeat_interval: Duration::hours(i64::from(config.heartbeat.interval_hours)),
    }
}

/// Everything built from a config.
#[derive(Debug, Clone)]
pub struct Wiring {
    pub broker: Arc<Broker>,
    pub hosts: Arc<LoginHostPolicy>,
    pub agents: Arc<AgentKeys>,
}

pub async fn wire(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Wiring> {
    wire_for(config, clock, StoreOpening::Migrate).await
}

pub async fn wire_for(
    config: &Config,
    clock: Arc<dyn Clock>,
    opening: StoreOpening,
) -> anyhow::Result<Wiring> {
    config.validate_keys()?;
    config.validate_refresh()?;
    config.validate_heartbeat()?;
    let ring = Arc::new(key_ring(&config.keys)?);
    let hosts = Arc::new(LoginHostPolicy::from_config(&config.salesforce)?);
    let store = open_store_for(&config.store, opening).await?;
    let options = ClientOptions {
        timeout: std::time::Duration::from_secs(u64::from(
            config.salesforce.request_timeout_seconds,
        )),
        local_address: config.egress.bind_address,
        proxy: config.egress.proxy.clone(),
    };
    let salesforce = Arc::new(SalesforceClient::new(&options).map_err(|e| anyhow!(e))?);
    let agents = Arc::new(AgentKeys::new(
        store.clone(),
        clock.clone(),
        Duration::seconds(i64::from(config.agents.key_cache_seconds)),
    ));
    let broker = Arc::new(Broker::new(
        store,
        salesforce,
        ring,
        clock,
        broker_settings(config, &hosts),
    ));
    Ok(Wiring {
        broker,
        hosts,
        agents,
    })
}

/// `wire` for a process that is about to serve: also mirrors the config file's webhook
/// endpoints into the store, before anything serves, so a configured endpoint receives every
/// event from the start. Only serving processes do this: a one-off CLI command run with a
/// partial config must never remove endpoints (and their delivery logs) from the store.
pub async fn wire_to_serve(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Wiring> {
    let wiring = wire(config, clock).await?;
    crate::webhooks::sync_config_endpoints(&config.webhooks, &wiring.broker).await?;
    Ok(wiring)
}

/// A server running in this process.
#[derive(Debug)]
pub struct RunningServer {
    pub addr: SocketAddr,
    pub wiring: Wiring,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    sweeper: JoinHandle<()>,
    heartbeat: Option<JoinHandle<()>>,
    tls: bool,
    webhooks: Option<JoinHandle<()>>,
}

impl RunningServer {
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }
    /// Stops accepting, lets requests in flight finish, and waits.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.sweeper.abort();
        if let Some(heartbeat) = &self.heartbeat {
            heartbeat.abort();
        }
        if let Some(webhooks) = &self.webhooks {
            webhooks.abort();
        }
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        self.task
            .await
            .context("server task failed")?
            .context("server failed")
    }
}

/// Serves forcelink on `listener` with an already built wiring.
pub fn serve(
    config: &Config,
    wiring: Wiring,
    listener: TcpListener,
) -> anyhow::Result<RunningServer> {
    let addr = listener.local_addr().context("listener has no address")?;
    let admin_key = config
        .admin
        .api_key
        .as_ref()
        .map(|k| k.0.as_str())
        .unwrap_or("");
    let state = AppState {
        broker: wiring.broker.clone(),
        hosts: wiring.hosts.clone(),
        admin_key_hash: forcelink_core::agents::key_digest(admin_key),
        public_url: Arc::from(config.server.public_url.as_str()),
        agents: wiring.agents.clone(),
        proxy: Arc::new(http::proxy::Upstream::from_config(config)?),
    };
    // Install the metrics recorder before anything records.
    let _ = http::metrics::handle();
    let router = http::router(state);
    let sweeper = spawn_sweeper(wiring.broker.clone());
    let heartbeat = config.heartbeat.enabled.then(|| {
        tokio::spawn(
            wiring
                .broker
                .clone()
                .run_heartbeat(heartbeat_settings(config)),
        )
    });
    let tls = tls_config(config)?;
    let serves_tls = tls.is_some();
    let webhooks = if config.webhooks.enabled {
        let settings = crate::webhooks::settings(&config.webhooks);
        let sender = crate::webhooks::HttpWebhookSender::new(settings.request_timeout)?;
        Some(tokio::spawn(
            wiring
                .broker
                .clone()
                .run_webhooks(Arc::new(sender), settings),
        ))
    } else {
        None
    };
    let (shutdown, stopped) = oneshot::channel::<()>();
    let task = match tls {
        Some(tls) => {
            let listener = crate::tls::TlsListener::new(listener, tls)
                .context("cannot serve TLS on the listener")?;
            tokio::spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
            })
        }
        None => tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        }),
    };
    Ok(RunningServer {
        addr,
        wiring,
        shutdown: Some(shutdown),
        task,
        sweeper,
        heartbeat,
        tls: serves_tls,
        webhooks,
    })
}

/// The TLS server config when `[server] tls_cert_file` and `tls_key_file` are set.
fn tls_config(config: &Config) -> anyhow::Result<Option<rustls::ServerConfig>> {
    match (&config.server.tls_cert_file, &config.server.tls_key_file) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => crate::tls::server_config(cert, key).map(Some),
        _ => Err(anyhow!(
            "set both server.tls_cert_file and server.tls_key_file to serve HTTPS, or neither"
        )),
    }
}

/// Settles lost rotations in the background: at start (after a crash) and then every half
/// in-flight window, so no connection waits for a caller to find out it is broken.
fn spawn_sweeper(broker: Arc<Broker>) -> JoinHandle<()> {
    let every = (broker.settings().in_flight_window / 2)
        .to_std()
        .unwrap_or(std::time::Duration::from_secs(5))
        .max(std::time::Duration::from_millis(500));
    tokio::spawn(async move {
        loop {
            if let Err(error) = broker.settle_lost_rotations().await {
                tracing::warn!(%error, "settling lost rotations failed; will retry");
            }
            tokio::time::sleep(every).await;
        }
    })
}
