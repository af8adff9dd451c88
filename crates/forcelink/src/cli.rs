//! The command line: `serve`, `demo`, `connections`, `agents`, `webhooks`, `keys`, `incidents`,
//! `doctor`, `config check`, `bench`.
//!
//! Each command loads the config the same way and fails with a message that says how to fix
//! what is wrong. Output for people goes to stdout; logs go to stderr.

mod agents;
mod connections;
mod webhooks;

pub use agents::AgentsCommand;
pub use connections::ConnectionsCommand;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use forcelink_core::{KeyRing, StoreError, SystemClock};

use crate::app;
use crate::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "forcelink",
    version,
    about = "Salesforce connection broker: PKCE, refresh token rotation, idle TTL, IP allow lists"
)]
pub struct Cli {
    /// Config file (TOML). Also FORCELINK_CONFIG. Settings can be overridden by FORCELINK_SECTION__KEY.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Log as JSON lines.
    #[arg(long, global = true)]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API and the connect flow.
    Serve,
    /// Run a local Salesforce simulator and forcelink together, connect three demo orgs.
    Demo {
        /// Run the checks and exit instead of serving until Ctrl-C.
        #[arg(long)]
        once: bool,
        /// Address for forcelink to listen on.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
    /// Inspect or revoke stored connections.
    Connections {
        #[command(subcommand)]
        command: ConnectionsCommand,
    },
    /// Create, list or revoke agent keys (for the token API and the Salesforce API proxy).
    Agents {
        #[command(subcommand)]
        command: AgentsCommand,
    },
    /// Webhook endpoints, the delivery log, and retrying deliveries by hand.
    Webhooks {
        #[command(subcommand)]
        command: webhooks::WebhooksCommand,
    },
    /// Manage the encryption key ring.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Export incident timelines (compromise suspicions with their rotation lineage) as JSON.
    Incidents {
        #[command(subcommand)]
        command: IncidentsCommand,
    },
    /// Check the live setup and say what is wrong and how to fix it (exit 1 on failures).
    Doctor {
        #[arg(long)]
        json: bool,
    },
    /// Check the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Run a benchmark against a simulator child process (see BENCHMARKS.md); needs no config.
    Bench {
        #[command(subcommand)]
        command: crate::bench::BenchCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print a new random key for the ring.
    Generate,
    /// Re-seal every stored secret under the active key (servers may keep serving).
    Rotate,
    /// Open every sealed value and report which key it is under.
    Check,
}

#[derive(Debug, Subcommand)]
pub enum IncidentsCommand {
    /// Write every compromise suspicion and its connection's lineage as JSON, for a report to
    /// Salesforce security (security@salesforce.com).
    Export {
        /// Write to this file instead of stdout.
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the config and print it with secrets redacted.
    Check,
}

impl Cli {
    fn load_config(&self) -> anyhow::Result<Config> {
        let path = self.config.clone().or_else(Config::config_path_from_env);
        Config::load(path.as_deref())
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Demo { once, listen } => {
            crate::demo::run(crate::demo::DemoOptions {
                once: *once,
                listen: listen.clone(),
            })
            .await
        }
        Command::Serve => serve(&cli.load_config()?).await,
        Command::Doctor { json } => {
            let findings = crate::doctor::run(&cli.load_config()?, Arc::new(SystemClock)).await;
            if *json {
                println!("{}", serde_json::to_string_pretty(&findings)?);
            } else {
                crate::doctor::print(&findings);
            }
            match crate::doctor::exit_code(&findings) {
                0 => Ok(()),
                _ => bail!("doctor found problems (see FAIL lines above)"),
            }
        }
        Command::Incidents {
            command: IncidentsCommand::Export { output },
        } => incidents_export(&cli.load_config()?, output.as_deref()).await,
        Command::Connections { command } => connections::run(&cli.load_config()?, command).await,
        Command::Keys {
            command: KeysCommand::Generate,
        } => {
            println!(
                "{}",
                KeyRing::generate_key().into_string().unwrap_or_default()
            );
            Ok(())
        }
        Command::Keys { command } => keys(&cli.load_config()?, command).await,
        Command::Agents { command } => agents::run(&cli.load_config()?, command).await,
        Command::Webhooks { command } => webhooks::run(&cli.load_config()?, command).await,
        Command::Config {
            command: ConfigCommand::Check,
        } => config_check(&cli.load_config()?),
        Command::Bench { command } => crate::bench::run(command).await,
    }
}

async fn serve(config: &Config) -> anyhow::Result<()> {
    config.validate_for_serve()?;
    let wiring = app::wire_to_serve(config, Arc::new(SystemClock)).await?;
    let listener = tokio::net::TcpListener::bind(&config.server.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}: change server.listen or free the port",
                config.server.listen
            )
        })?;
    let server = app::serve(config, wiring, listener)?;
    tracing::info!(url = %server.url(), callback = %config.callback_url(), "forcelink serving");
    // A line for supervisors and tests that start forcelink on port 0.
    println!("forcelink serving on {}", server.url());
    tokio::select! {
        result = tokio::signal::ctrl_c() => { result.context("cannot wait for Ctrl-C")?; }
    }
    server.stop().await
}

/// The wiring for a CLI command: the store as found, which must be at this build's schema. CLI
/// commands never create or migrate a store (only `serve` does): a new build run against a live
/// store must not change its schema under the instances running there.
pub(crate) async fn wire_existing(config: &Config) -> anyhow::Result<app::Wiring> {
    let wiring = app::wire_for(config, Arc::new(SystemClock), app::StoreOpening::AsFound).await?;
    if let Err(error) = wiring.broker.store().ping().await {
        return Err(match error {
            StoreError::Migration(_) => anyhow::anyhow!(
                "{error}: start `forcelink serve` of this build once to migrate the store (other \
                 commands never change its schema)"
            ),
            other => anyhow::Error::new(other).context("the store is not usable: check store.url"),
        });
    }
    Ok(wiring)
}

async fn keys(config: &Config, command: &KeysCommand) -> anyhow::Result<()> {
    let wiring = wire_existing(config).await?;
    match command {
        KeysCommand::Generate => {}
        KeysCommand::Rotate => {
            let report = wiring.broker.rekey().await?;
            println!(
                "re-sealed {} of {} values under key {:?} ({} already current, {} re-read after a concurrent write)",
                report.resealed,
                report.examined,
                config.keys.active,
                report.already_current,
                report.retried
            );
        }
        KeysCommand::Check => {
            let health = wiring.broker.ring_health().await?;
            println!(
                "{} sealed values: {} under the active key, {} under older keys, {} unopenable",
                health.examined, health.current, health.old_key, health.unopenable
            );
            if health.unopenable > 0 {
                bail!(
                    "{} values cannot be opened: a key is missing from the ring",
                    health.unopenable
                );
            }
        }
    }
    Ok(())
}

async fn incidents_export(config: &Config, output: Option<&std::path::Path>) -> anyhow::Result<()> {
    let wiring = wire_existing(config).await?;
    let timelines = wiring.broker.incident_timelines(500).await?;
    let document = serde_json::json!({
        "generated_by": concat!("forcelink ", env!("CARGO_PKG_VERSION")),
        "incidents": timelines,
        "note": "refresh tokens appear only as SHA-256 hashes",
    });
    let text = serde_json::to_string_pretty(&document)?;
    match output {
        Some(path) => {
            std::fs::write(path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "wrote {} incident(s) to {}",
                timelines.len(),
                path.display()
            );
        }
        None => println!("{text}"),
    }
    Ok(())
}

/// A time as the command tables show it, or `-` for none.
fn when(time: Option<chrono::DateTime<chrono::Utc>>) -> String {
    time.map_or_else(
        || "-".to_owned(),
        |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

fn config_check(config: &Config) -> anyhow::Result<()> {
    config.validate_for_serve()?;
    app::key_ring(&config.keys)?;
    crate::hosts::LoginHostPolicy::from_config(&config.salesforce)?;
    app::StoreLocation::parse(&config.store.url)?;
    println!("{}", toml::to_string_pretty(config)?);
    println!(
        "# config is valid; callback URL to register on the Salesforce app: {}",
        config.callback_url()
    );
    Ok(())
}
