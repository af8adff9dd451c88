//! The benchmark's untimed set-up: forcelink in this process on a fresh store (a SQLite file in a
//! temporary directory, or a new PostgreSQL database dropped at the end), wired like `forcelink
//! demo` with an `OffsetClock`, and N connections made through the real connect flow. Each
//! connection is its own sfsim user (the grant cap is per user and app) with context `u{i}`.

use std::sync::Arc;

use anyhow::{Context, bail};
use forcelink_core::{KeyRing, OffsetClock};
use sqlx::Connection;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::app::{self, RunningServer};
use crate::config::{Config, SecretSetting};
use crate::demo::browser_connect;

use super::sim_process::SimProcess;

/// One connection under test: org id + context, and the sfsim user that granted it.
#[derive(Debug, Clone)]
pub struct BenchConnection {
    pub org_id: String,
    pub ctx: String,
    pub username: String,
}

/// forcelink running in this process, with what the benchmark needs to reach it.
#[derive(Debug)]
pub struct Forcelink {
    pub server: RunningServer,
    pub url: String,
    pub admin_key: String,
    /// An agent key for every org with both capabilities (the token API and the proxy).
    pub agent_key: String,
    pub clock: Arc<OffsetClock>,
    pub config: Config,
    /// The PostgreSQL server URL and database name to drop at the end.
    pg_database: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

/// Creates a fresh database on `server`; returns (database URL, name).
async fn create_pg_database(server: &str) -> anyhow::Result<(String, String)> {
    let name = format!("forcelink_bench_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(server)
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {server}: pass --pg-url"))?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .context("cannot create the benchmark database")?;
    let mut url = url::Url::parse(server).context("--pg-url is not a URL")?;
    url.set_path(&format!("/{name}"));
    Ok((url.to_string(), name))
}

fn random_key() -> String {
    KeyRing::generate_key().into_string().unwrap_or_default()
}

impl Forcelink {
    /// Starts forcelink against `sim` on a fresh store: SQLite unless `pg_server` is given.
    pub async fn start(
        sim: &SimProcess,
        pg_server: Option<&str>,
        max_connections: u32,
    ) -> anyhow::Result<Forcelink> {
        Self::start_with(sim, pg_server, max_connections, None, |_| {}).await
    }

    /// Like `start`, with the SQLite file's temporary directory made under `db_dir` (e.g. a
    /// tmpfs) when given, and `configure` applied to the config last, before wiring.
    pub async fn start_with(
        sim: &SimProcess,
        pg_server: Option<&str>,
        max_connections: u32,
        db_dir: Option<&std::path::Path>,
        configure: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Forcelink> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot bind 127.0.0.1:0")?;
        let url = format!("http://{}", listener.local_addr()?);
        let dir = match db_dir {
            Some(parent) => tempfile::tempdir_in(parent),
            None => tempfile::tempdir(),
        }
        .context("cannot create a temporary directory")?;
        let mut config = Config::default();
        config.server.public_url = url.clone();
        let (key, secret) = sim.create_app(&config.callback_url()).await?;
        let pg_database = match pg_server {
            Some(server) => {
                let (db_url, name) = create_pg_database(server).await?;
                config.store.url = db_url;
                Some((server.to_string(), name))
            }
            None => {
                config.store.url = format!("sqlite:{}", dir.path().join("bench.db").display());
                None
            }
        };
        config.store.max_connections = max_connections;
        config.salesforce.client_id = key;
        config.salesforce.client_secret = Some(SecretSetting(secret));
        config.salesforce.production_login_url = sim.login_url.clone();
        let admin_key = format!("bench-admin-{}", uuid::Uuid::new_v4().simple());
        config.admin.api_key = Some(SecretSetting(admin_key.clone()));
        config.keys.active = "bench".into();
        config
            .keys
            .ring
            .insert("bench".into(), SecretSetting(random_key()));
        configure(&mut config);
        let clock = Arc::new(OffsetClock::default());
        let started = async {
            let wiring = app::wire_to_serve(&config, clock.clone()).await?;
            let (_, agent_key) = wiring
                .agents
                .create(forcelink_core::AgentKeySpec::all_orgs("bench-agent"))
                .await?;
            let server = app::serve(&config, wiring, listener)?;
            anyhow::Ok((server, agent_key.expose().to_owned()))
        }
        .await;
        let (server, agent_key) = match started {
            Ok(started) => started,
            Err(error) => {
                if let Some((server, name)) = &pg_database {
                    drop_pg_database(server, name).await;
                }
                return Err(error);
            }
        };
        Ok(Forcelink {
            server,
            url,
            admin_key,
            agent_key,
            clock,
            config,
            pg_database,
            _dir: dir,
        })
    }

    /// Stops the server and drops the PostgreSQL database, if any.
    pub async fn finish(self) -> anyhow::Result<()> {
        let stopped = self.server.stop().await;
        if let Some((server, name)) = &self.pg_database {
            drop_pg_database(server, name).await;
        }
        stopped
    }
}

async fn drop_pg_database(server: &str, name: &str) {
    let dropped = async {
        let mut admin = sqlx::PgConnection::connect(server).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await
        .map(drop)
    }
    .await;
    if let Err(error) = dropped {
        eprintln!("warning: could not drop the benchmark database {name}: {error}");
    }
}

/// Creates `orgs` orgs and `n` users in sfsim (user i in org i mod `orgs`).
pub async fn populate(
    sim: &SimProcess,
    n: usize,
    orgs: usize,
) -> anyhow::Result<Vec<BenchConnection>> {
    let mut org_ids = Vec::with_capacity(orgs);
    for k in 0..orgs {
        org_ids.push(sim.create_org(&format!("bench{k}")).await?);
    }
    let mut connections = Vec::with_capacity(n);
    for i in 0..n {
        let k = i % orgs;
        let username = format!("u{i}@bench{k}.example.com");
        sim.create_user(&org_ids[k], &username).await?;
        connections.push(BenchConnection {
            org_id: org_ids[k].clone(),
            ctx: format!("u{i}"),
            username,
        });
    }
    Ok(connections)
}

/// Connects every connection through start → authorize → callback, `concurrency` at a time.
pub async fn connect_all(
    forcelink_url: &str,
    connections: &[BenchConnection],
    concurrency: usize,
) -> anyhow::Result<()> {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut flows = JoinSet::new();
    for connection in connections.iter().cloned() {
        let permits = permits.clone();
        let url = forcelink_url.to_string();
        flows.spawn(async move {
            let _permit = permits.acquire_owned().await?;
            let query = format!(
                "ctx={}&orgid={}&env=production",
                connection.ctx, connection.org_id
            );
            let outcome = browser_connect(&url, &query, &connection.username).await?;
            if outcome.status != 200 {
                bail!(
                    "connecting {} ctx {} failed with {}: {}",
                    connection.org_id,
                    connection.ctx,
                    outcome.status,
                    outcome.page
                );
            }
            Ok(())
        });
    }
    while let Some(flow) = flows.join_next().await {
        flow.context("a connect flow panicked")??;
    }
    Ok(())
}
