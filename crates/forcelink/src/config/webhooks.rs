//! The `[webhooks]` config section: the delivery worker's settings and the endpoints declared
//! in the file (`[[webhooks.endpoints]] url, secret or secret_file, events`).
//!
//! Validation reuses core's rules (http/https only, known event kinds, `whsec_` secrets) so
//! the file and the admin API accept the same things. Secrets stay `SecretSetting`s: redacted
//! in Debug and in `config check`.

use anyhow::{anyhow, bail};
use forcelink_core::webhook::{WebhookSecret, endpoints};
use serde::{Deserialize, Serialize};

use super::SecretSetting;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Run the delivery worker on this instance (any number may; they share the work).
    pub enabled: bool,
    /// Pause between delivery passes when no new event wakes the worker.
    pub poll_interval_ms: u32,
    /// Requests in flight at once per instance.
    pub concurrency: u32,
    /// Deliveries of one endpoint in flight at once, across all instances.
    pub per_endpoint_concurrency: u32,
    /// Upper bound on one delivery request.
    pub request_timeout_seconds: u32,
    /// After this many attempts a delivery is marked failed.
    pub max_attempts: u32,
    /// Delay before the second attempt; doubles per attempt, ×[0.75, 1.25) jitter.
    pub backoff_base_seconds: u32,
    /// Longest delay between attempts.
    pub backoff_max_seconds: u32,
    /// Events read per endpoint per fan-out pass.
    pub batch: u32,
    pub endpoints: Vec<WebhookEndpointConfig>,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            poll_interval_ms: 1000,
            concurrency: 8,
            per_endpoint_concurrency: 4,
            request_timeout_seconds: 10,
            max_attempts: 12,
            backoff_base_seconds: 5,
            backoff_max_seconds: 3600,
            batch: 500,
            endpoints: Vec::new(),
        }
    }
}

/// One endpoint of the file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpointConfig {
    pub url: String,
    /// `whsec_<base64>`; or `secret_file`.
    pub secret: Option<SecretSetting>,
    /// The event kinds to receive; every kind when left out.
    pub events: Option<Vec<String>>,
}

impl WebhooksConfig {
    /// Start-up checks; each message names the endpoint and says how to fix it.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.max_attempts == 0
            || self.concurrency == 0
            || self.per_endpoint_concurrency == 0
            || self.batch == 0
        {
            bail!(
                "webhooks.max_attempts, webhooks.concurrency, webhooks.per_endpoint_concurrency \
                 and webhooks.batch must be at least 1"
            );
        }
        if self.request_timeout_seconds == 0 || self.poll_interval_ms == 0 {
            bail!(
                "webhooks.request_timeout_seconds and webhooks.poll_interval_ms must be at least 1"
            );
        }
        if self.backoff_base_seconds == 0 || self.backoff_max_seconds < self.backoff_base_seconds {
            bail!(
                "webhooks.backoff_base_seconds must be at least 1 and at most webhooks.backoff_max_seconds"
            );
        }
        let mut seen = Vec::new();
        for (index, endpoint) in self.endpoints.iter().enumerate() {
            let name = format!("webhooks.endpoints[{index}]");
            let url = endpoints::validate_url(&endpoint.url)
                .map_err(|error| anyhow!("{name}.url: {error}"))?;
            if seen.contains(&url) {
                bail!("{name}.url {url} is listed twice: merge the two entries");
            }
            seen.push(url);
            endpoints::validate_kinds(endpoint.events.as_deref())
                .map_err(|error| anyhow!("{name}.events: {error}"))?;
            self.secret_of(index)?;
        }
        Ok(())
    }

    /// The parsed secret of endpoint `index`.
    pub fn secret_of(&self, index: usize) -> anyhow::Result<WebhookSecret> {
        let name = format!("webhooks.endpoints[{index}]");
        let secret = self
            .endpoints
            .get(index)
            .and_then(|endpoint| endpoint.secret.as_ref())
            .ok_or_else(|| {
                anyhow!(
                    "{name} has no secret: set secret or secret_file to `whsec_` + base64 of 24 to 64 random bytes \
                     (e.g. `echo whsec_$(openssl rand -base64 32)`)"
                )
            })?;
        WebhookSecret::parse(&secret.0).map_err(|error| anyhow!("{name}.secret: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(url: &str, secret: &str) -> WebhookEndpointConfig {
        WebhookEndpointConfig {
            url: url.into(),
            secret: Some(SecretSetting(secret.into())),
            events: None,
        }
    }

    #[test]
    fn zero_counts_are_refused_with_the_setting_named() {
        for zero in [
            |c: &mut WebhooksConfig| c.concurrency = 0,
            |c: &mut WebhooksConfig| c.per_endpoint_concurrency = 0,
            |c: &mut WebhooksConfig| c.max_attempts = 0,
            |c: &mut WebhooksConfig| c.batch = 0,
        ] {
            let mut config = WebhooksConfig::default();
            zero(&mut config);
            let error = config.validate().unwrap_err().to_string();
            assert!(
                error.contains("webhooks.per_endpoint_concurrency") && error.contains("at least 1"),
                "{error}"
            );
        }
        WebhooksConfig::default().validate().unwrap();
    }

    #[test]
    fn endpoints_are_validated_and_their_secrets_never_printed() {
        let secret = WebhookSecret::generate();
        let config = WebhooksConfig {
            endpoints: vec![endpoint("https://hooks.example.com/a", secret.expose())],
            ..WebhooksConfig::default()
        };
        config.validate().unwrap();
        let shown = format!("{config:?} {}", toml::to_string(&config).unwrap());
        assert!(!shown.contains(&secret.expose()[6..]), "{shown}");

        let mut bad = config.clone();
        bad.endpoints[0].url = "ftp://hooks.example.com/".into();
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("endpoints[0].url")
        );
        let mut bad = config.clone();
        bad.endpoints[0].secret = Some(SecretSetting("hunter2".into()));
        let error = bad.validate().unwrap_err().to_string();
        assert!(
            error.contains("whsec_") && !error.contains("hunter2"),
            "{error}"
        );
        let mut bad = config.clone();
        bad.endpoints[0].events = Some(vec!["connection.exploded".into()]);
        assert!(bad.validate().is_err());
        let mut bad = config.clone();
        bad.endpoints.push(bad.endpoints[0].clone());
        assert!(bad.validate().unwrap_err().to_string().contains("twice"));
        let mut bad = config;
        bad.endpoints[0].secret = None;
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("no secret")
        );
    }
}
