//! `forcelink connections`: list, show and revoke connections on the store the config names.
//! Views are the admin API's (`ConnectionView`), so no token is ever printed.

use anyhow::{Context, bail};
use clap::Subcommand;
use forcelink_core::{ConnectionContext, ConnectionKey, OrgId};

use super::wire_existing;
use crate::config::Config;
use crate::http::api::ConnectionView;

#[derive(Debug, Subcommand)]
pub enum ConnectionsCommand {
    /// List every connection.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one connection.
    Show {
        org_id: String,
        #[arg(long, default_value = "api")]
        ctx: String,
    },
    /// Revoke the grant at Salesforce and remove the connection.
    Revoke {
        org_id: String,
        #[arg(long, default_value = "api")]
        ctx: String,
    },
}

fn parse_key(org_id: &str, ctx: &str) -> anyhow::Result<ConnectionKey> {
    let org = OrgId::parse(org_id).with_context(|| {
        format!("{org_id:?} is not an org id (15 or 18 characters, starting 00D)")
    })?;
    let context = ConnectionContext::parse(ctx).context("bad --ctx")?;
    Ok(ConnectionKey::new(org, context))
}

pub(super) async fn run(config: &Config, command: &ConnectionsCommand) -> anyhow::Result<()> {
    let wiring = wire_existing(config).await?;
    let store = wiring.broker.store();
    match command {
        ConnectionsCommand::List { json } => {
            let all = store.connections().await?;
            let views: Vec<ConnectionView> = all.iter().map(ConnectionView::from).collect();
            if *json {
                println!("{}", serde_json::to_string_pretty(&views)?);
            } else {
                print_table(&views);
            }
        }
        ConnectionsCommand::Show { org_id, ctx } => {
            let key = parse_key(org_id, ctx)?;
            let Some(connection) = store.connection(&key).await? else {
                bail!("no connection for {key}")
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&ConnectionView::from(&connection))?
            );
        }
        ConnectionsCommand::Revoke { org_id, ctx } => {
            let key = parse_key(org_id, ctx)?;
            wiring
                .broker
                .disconnect(&key)
                .await
                .with_context(|| format!("cannot revoke {key}"))?;
            println!("revoked {key} at Salesforce and removed it");
        }
    }
    Ok(())
}

fn print_table(views: &[ConnectionView]) {
    println!(
        "{:<18}  {:<6}  {:<13}  {:<15}  {:<28}  {:<4}  {:<20}  INSTANCE",
        "ORG", "CTX", "STATE", "HEALTH", "USER", "GEN", "RT LAST USED"
    );
    for v in views {
        let risk = v
            .at_risk_days
            .map(|days| format!("  AT RISK: {days}d left"))
            .unwrap_or_default();
        println!(
            "{:<18}  {:<6}  {:<13}  {:<15}  {:<28}  {:<4}  {:<20}  {}{risk}",
            v.org_id,
            v.context,
            v.state,
            v.health,
            v.username,
            v.generation,
            v.refresh_token_used_at.format("%Y-%m-%d %H:%M"),
            v.instance_url
        );
    }
}
