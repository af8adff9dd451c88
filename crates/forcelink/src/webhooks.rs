//! Webhooks in the binary: the `WebhookSender` port over reqwest, the worker's settings from
//! the config, and mirroring the config file's endpoints into the store.
//!
//! The sender follows no redirects, bounds every request by `webhooks.request_timeout_seconds`
//! and reports failures without the URL, headers or body (a signature is not a secret, but
//! nothing here needs to repeat it). Delivery logic lives in core (`webhook::delivery`).

use std::time::Duration;

use anyhow::anyhow;
use async_trait::async_trait;
use forcelink_core::Broker;
use forcelink_core::webhook::{
    ConfigEndpoint, SendOutcome, WebhookRequest, WebhookSender, WebhookSettings,
};

use crate::config::WebhooksConfig;

/// Sends webhooks with reqwest.
#[derive(Debug, Clone)]
pub struct HttpWebhookSender {
    client: reqwest::Client,
}

impl HttpWebhookSender {
    pub fn new(timeout: Duration) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .user_agent(concat!("forcelink-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| anyhow!("cannot build the webhook http client: {error}"))?;
        Ok(Self { client })
    }
}

#[async_trait]
impl WebhookSender for HttpWebhookSender {
    async fn send(&self, request: &WebhookRequest) -> SendOutcome {
        let mut builder = self.client.post(&request.url).body(request.body.clone());
        for (name, value) in &request.headers {
            builder = builder.header(*name, value);
        }
        match builder.send().await {
            Ok(response) => SendOutcome::Answered(response.status().as_u16()),
            Err(error) if error.is_timeout() => SendOutcome::NoAnswer("timed out".into()),
            Err(error) if error.is_connect() => {
                SendOutcome::NoAnswer("could not connect to the receiver".into())
            }
            Err(_) => SendOutcome::NoAnswer("the request failed before an answer".into()),
        }
    }
}

/// The worker's settings from `[webhooks]`.
pub fn settings(config: &WebhooksConfig) -> WebhookSettings {
    WebhookSettings {
        concurrency: config.concurrency.max(1) as usize,
        per_endpoint: config.per_endpoint_concurrency.max(1),
        batch: config.batch.max(1),
        max_attempts: config.max_attempts.max(1),
        backoff_base: chrono::Duration::seconds(i64::from(config.backoff_base_seconds.max(1))),
        backoff_max: chrono::Duration::seconds(i64::from(config.backoff_max_seconds.max(1))),
        request_timeout: Duration::from_secs(u64::from(config.request_timeout_seconds.max(1))),
        poll_every: Duration::from_millis(u64::from(config.poll_interval_ms.max(1))),
    }
}

/// Makes the store's config endpoints exactly those of `config` (see
/// `Broker::sync_config_webhooks`).
pub async fn sync_config_endpoints(config: &WebhooksConfig, broker: &Broker) -> anyhow::Result<()> {
    config.validate()?;
    let mut endpoints = Vec::with_capacity(config.endpoints.len());
    for (index, endpoint) in config.endpoints.iter().enumerate() {
        endpoints.push(ConfigEndpoint {
            url: endpoint.url.clone(),
            event_kinds: endpoint.events.clone(),
            secret: config.secret_of(index)?,
        });
    }
    broker
        .sync_config_webhooks(endpoints)
        .await
        .map_err(|error| anyhow!("registering the config file's webhook endpoints: {error}"))
}
