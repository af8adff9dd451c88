//! `forcelink webhooks`: the endpoints, the delivery log and an operator's retry, from the
//! command line, on the store the config names (the same as the admin API's, for an operator
//! at a terminal, e.g. following `forcelink doctor`'s advice).
//!
//! It must not print a secret: endpoint secrets stay sealed, and deliveries carry no body.

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use forcelink_core::store::{DeliveryFilter, DeliveryState, Retried};
use forcelink_core::webhook::endpoints;

use crate::config::Config;
use crate::http::webhooks::{DeliveryView, EndpointView};

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// List the webhook endpoints (never their secrets).
    Endpoints {
        #[arg(long)]
        json: bool,
    },
    /// The delivery log, newest event first, with each delivery's attempts in `--json`.
    Deliveries {
        /// Only this endpoint's deliveries (whe_…).
        #[arg(long)]
        endpoint: Option<String>,
        /// pending, delivered or failed.
        #[arg(long)]
        state: Option<String>,
        /// Only deliveries of this event kind.
        #[arg(long)]
        event: Option<String>,
        /// At most this many (1–1000).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Send deliveries again now: failed ones with a fresh attempt budget, and ones waiting
    /// for a later retry brought forward. Give --delivery, or --endpoint (optionally narrowed
    /// by --event and --since).
    #[command(group = clap::ArgGroup::new("target").required(true).args(["delivery", "endpoint"]))]
    Retry {
        /// One delivery, by id (msg_…).
        #[arg(long, conflicts_with_all = ["event", "since"])]
        delivery: Option<String>,
        /// Every failed or waiting delivery of this endpoint (whe_…).
        #[arg(long)]
        endpoint: Option<String>,
        /// Only deliveries of this event kind.
        #[arg(long, requires = "endpoint")]
        event: Option<String>,
        /// Only deliveries queued at or after this time (RFC 3339, e.g. 2026-11-24T00:00:00Z).
        #[arg(long, requires = "endpoint")]
        since: Option<String>,
    },
}

pub async fn run(config: &Config, command: &WebhooksCommand) -> anyhow::Result<()> {
    let wiring = super::wire_existing(config).await?;
    let broker = &wiring.broker;
    match command {
        WebhooksCommand::Endpoints { json } => {
            let endpoints = broker.store().webhook_endpoints().await?;
            let views: Vec<EndpointView> = endpoints.iter().map(EndpointView::from).collect();
            if *json {
                println!("{}", serde_json::to_string_pretty(&views)?);
            } else {
                print_endpoints(&views);
            }
        }
        WebhooksCommand::Deliveries {
            endpoint,
            state,
            event,
            limit,
            json,
        } => {
            let filter = DeliveryFilter {
                endpoint_id: endpoint.clone(),
                event_kind: event.as_deref().map(known_kind).transpose()?,
                event_id: None,
                state: state.as_deref().map(delivery_state).transpose()?,
                limit: *limit,
            };
            let found = broker.store().webhook_deliveries(&filter).await?;
            let views: Vec<DeliveryView> = found.iter().map(DeliveryView::from).collect();
            if *json {
                println!("{}", serde_json::to_string_pretty(&views)?);
            } else {
                print_deliveries(&views);
            }
        }
        WebhooksCommand::Retry {
            delivery,
            endpoint,
            event,
            since,
        } => {
            let retried = match (delivery, endpoint) {
                (Some(id), _) => broker
                    .retry_webhook_delivery(id)
                    .await
                    .with_context(|| format!("cannot retry delivery {id}"))?,
                (None, Some(id)) => {
                    let since = since.as_deref().map(rfc3339).transpose()?;
                    broker
                        .retry_endpoint_deliveries(id, event.as_deref(), since)
                        .await
                        .with_context(|| format!("cannot retry endpoint {id}'s deliveries"))?
                }
                (None, None) => bail!("give --delivery ID or --endpoint ID"),
            };
            print_retried(&retried, config);
        }
    }
    Ok(())
}

fn known_kind(kind: &str) -> anyhow::Result<String> {
    endpoints::check_kind(kind).map_err(|error| anyhow::anyhow!("--event: {error}"))?;
    Ok(kind.to_string())
}

fn delivery_state(text: &str) -> anyhow::Result<DeliveryState> {
    DeliveryState::parse(text)
        .with_context(|| format!("--state {text:?}: give pending, delivered or failed"))
}

fn rfc3339(text: &str) -> anyhow::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .with_context(|| {
            format!("--since {text:?} is not an RFC 3339 time; write it like 2026-11-24T00:00:00Z")
        })
}

fn print_retried(retried: &Retried, config: &Config) {
    println!(
        "retried {} failed deliveries (each with a fresh attempt budget) and brought {} waiting \
         ones forward",
        retried.failed.len(),
        retried.brought_forward.len()
    );
    for id in &retried.failed {
        println!("retried          {id}");
    }
    for id in &retried.brought_forward {
        println!("brought forward  {id}");
    }
    if retried.is_empty() {
        return;
    }
    if config.webhooks.enabled {
        eprintln!(
            "instances running the webhook worker send them within webhooks.poll_interval_ms ({} ms)",
            config.webhooks.poll_interval_ms
        );
    } else {
        eprintln!(
            "this config has webhooks.enabled off: they are sent only by an instance that runs \
             the webhook worker"
        );
    }
}

fn print_endpoints(views: &[EndpointView]) {
    println!(
        "{:<40}  {:<6}  {:<14}  {:<6}  URL",
        "ID", "SOURCE", "QUEUED THROUGH", "EVENTS"
    );
    for view in views {
        println!(
            "{:<40}  {:<6}  {:<14}  {:<6}  {}",
            view.id,
            view.source,
            view.queued_through_event_id,
            view.events.len(),
            without_query(&view.url)
        );
    }
}

/// A url as the table shows it: without its query string, which may carry a receiver's token
/// (`--json` shows it whole, as the API does).
fn without_query(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?…"),
        None => url.to_string(),
    }
}

fn print_deliveries(views: &[DeliveryView]) {
    println!(
        "{:<36}  {:<40}  {:<8}  {:<26}  {:<9}  {:<8}  {:<20}  LAST ERROR",
        "ID", "ENDPOINT", "EVENT", "KIND", "STATE", "ATTEMPTS", "NEXT ATTEMPT"
    );
    for view in views {
        println!(
            "{:<36}  {:<40}  {:<8}  {:<26}  {:<9}  {:<8}  {:<20}  {}",
            view.id,
            view.endpoint_id,
            view.event_id,
            view.event,
            view.state,
            view.attempts,
            super::when(view.next_attempt_at),
            view.last_error.as_deref().unwrap_or("-")
        );
    }
}
