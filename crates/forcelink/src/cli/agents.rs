//! `forcelink agents`: create, list and revoke agent API keys. A new key is printed once, on
//! stdout; the store keeps only its hash.

use clap::Subcommand;

use super::{when, wire_existing};
use crate::config::Config;
use crate::http::api::AgentView;

#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// Create a key and print it once (forcelink keeps only its hash).
    Create {
        #[arg(long)]
        name: String,
        /// An org the key may reach (repeat, or give a comma-separated list).
        #[arg(
            long = "org",
            value_delimiter = ',',
            required_unless_present = "all_orgs",
            conflicts_with = "all_orgs"
        )]
        orgs: Vec<String>,
        /// The key may reach every org.
        #[arg(long)]
        all_orgs: bool,
        /// What the key may do: token, proxy, or both.
        #[arg(long = "can", value_delimiter = ',', default_value = "token,proxy")]
        can: Vec<String>,
    },
    /// List keys with their scope and last use (never the keys).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by name or id; servers refuse it within agents.key_cache_seconds.
    Revoke { name_or_id: String },
}

pub(super) async fn run(config: &Config, command: &AgentsCommand) -> anyhow::Result<()> {
    let wiring = wire_existing(config).await?;
    match command {
        AgentsCommand::Create {
            name,
            orgs,
            all_orgs,
            can,
        } => {
            let scope = if *all_orgs {
                forcelink_core::AgentScope::AllOrgs
            } else {
                crate::http::api::agent_scope(orgs).map_err(|message| {
                    anyhow::anyhow!("{message}; give --org with a 15 or 18 character org id (00D…)")
                })?
            };
            let capabilities = can
                .iter()
                .map(|name| forcelink_core::Capability::parse(name))
                .collect::<Result<Vec<_>, _>>()?;
            let spec = forcelink_core::AgentKeySpec {
                name: name.clone(),
                scope,
                capabilities,
            };
            let (key, secret) = wiring.agents.create(spec).await?;
            let view = AgentView::from(&key);
            println!("{}", secret.expose());
            eprintln!(
                "created agent key {:?} ({}) for {} with {}; it is shown once, store it now",
                view.name,
                view.id,
                view.orgs.join(","),
                view.capabilities.join(",")
            );
        }
        AgentsCommand::List { json } => {
            let keys = wiring.agents.list().await?;
            let views: Vec<AgentView> = keys.iter().map(AgentView::from).collect();
            if *json {
                println!("{}", serde_json::to_string_pretty(&views)?);
            } else {
                print_agents(&views);
            }
        }
        AgentsCommand::Revoke { name_or_id } => {
            let key = wiring.agents.revoke(name_or_id).await?;
            println!(
                "revoked agent key {:?} ({}); servers refuse it within {} s",
                key.name, key.id, config.agents.key_cache_seconds
            );
        }
    }
    Ok(())
}

fn print_agents(views: &[AgentView]) {
    println!(
        "{:<24}  {:<36}  {:<12}  {:<20}  {:<20}  ORGS",
        "NAME", "ID", "CAN", "LAST USED", "REVOKED"
    );
    for view in views {
        println!(
            "{:<24}  {:<36}  {:<12}  {:<20}  {:<20}  {}",
            view.name,
            view.id,
            view.capabilities.join(","),
            when(view.last_used_at),
            when(view.revoked_at),
            view.orgs.join(",")
        );
    }
}
