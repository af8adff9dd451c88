//! Webhook endpoints: validating and creating them (admin API), deleting them, mirroring the
//! ones of the config file into the store, and an operator's retry of their deliveries.
//!
//! A secret is sealed under the endpoint's own associated data before it reaches the store;
//! the plaintext is handed back only once, to the creator of an API endpoint. Bad input is
//! refused before anything is stored. This module must not log a secret, nor a whole url (a
//! query string may carry a receiver's token): hosts only.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use url::Url;

use crate::broker::{Broker, BrokerError};
use crate::store::{
    DeliveryState, EndpointSource, EndpointWrite, Retried, RetryTarget, SealedRef, WebhookEndpoint,
};
use crate::vault::{Sealed, VaultError};
use crate::webhook::{EVENT_KINDS, WebhookError, WebhookSecret};

/// An endpoint asked for through the admin API.
#[derive(Debug)]
pub struct NewEndpoint {
    pub url: String,
    /// `None`: every kind.
    pub event_kinds: Option<Vec<String>>,
    /// `None`: generate one.
    pub secret: Option<WebhookSecret>,
}

/// A created endpoint and its secret, to show once.
#[derive(Debug)]
pub struct CreatedEndpoint {
    pub endpoint: WebhookEndpoint,
    pub secret: WebhookSecret,
}

/// An endpoint of the config file.
#[derive(Debug)]
pub struct ConfigEndpoint {
    pub url: String,
    /// `None`: every kind.
    pub event_kinds: Option<Vec<String>>,
    pub secret: WebhookSecret,
}

/// Accepts only absolute http(s) URLs with a host and no credentials; returns it normalized.
pub fn validate_url(text: &str) -> Result<String, WebhookError> {
    let url = Url::parse(text.trim())
        .map_err(|_| WebhookError::InvalidUrl(format!("{text:?} is not a URL")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(WebhookError::InvalidUrl(format!(
            "webhook urls must be http or https, not {:?}",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(WebhookError::InvalidUrl("the url has no host".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(WebhookError::InvalidUrl(
            "the url must not carry credentials; receivers verify the signature instead".into(),
        ));
    }
    Ok(url.to_string())
}

/// Checks one kind against `EVENT_KINDS` (a filter of the delivery log or of a retry).
pub fn check_kind(kind: &str) -> Result<(), WebhookError> {
    if EVENT_KINDS.contains(&kind) {
        Ok(())
    } else {
        Err(WebhookError::UnknownEventKind(kind.to_string()))
    }
}

/// Checks the kinds against `EVENT_KINDS`; `None` means all. Returns them in canonical order.
pub fn validate_kinds(kinds: Option<&[String]>) -> Result<Vec<String>, WebhookError> {
    let Some(kinds) = kinds else {
        return Ok(EVENT_KINDS.iter().map(|kind| kind.to_string()).collect());
    };
    if kinds.is_empty() {
        return Err(WebhookError::NoEventKinds);
    }
    for kind in kinds {
        check_kind(kind)?;
    }
    Ok(EVENT_KINDS
        .iter()
        .filter(|known| kinds.iter().any(|kind| kind == *known))
        .map(|kind| kind.to_string())
        .collect())
}

/// The host of an endpoint's url (empty if it does not parse): what logs and reports may show
/// of it, since a path or query may carry a receiver's token.
pub fn host_of(url: &str) -> String {
    Url::parse(url)
        .ok()
        .and_then(|url| url.host_str().map(str::to_string))
        .unwrap_or_default()
}

/// The stable id of a config endpoint: derived from its url, so a restart finds it again.
pub fn config_endpoint_id(url: &str) -> String {
    let digest = Sha256::digest(url.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("cfg_{hex}")
}

impl Broker {
    /// Validates and stores an API endpoint; returns it with its secret (shown once).
    pub async fn create_webhook_endpoint(
        &self,
        new: NewEndpoint,
    ) -> Result<CreatedEndpoint, WebhookError> {
        let url = validate_url(&new.url)?;
        let event_kinds = validate_kinds(new.event_kinds.as_deref())?;
        let secret = new.secret.unwrap_or_else(WebhookSecret::generate);
        let id = format!("whe_{}", uuid::Uuid::new_v4().simple());
        let write = EndpointWrite {
            secret: self.seal(&SealedRef::webhook_secret(&id), secret.expose()),
            id,
            url,
            event_kinds,
            source: EndpointSource::Api,
            now: self.clock.now(),
        };
        let endpoint = self.store.save_webhook_endpoint(&write).await?;
        tracing::info!(endpoint = %endpoint.id, host = %host_of(&endpoint.url), "webhook endpoint created");
        self.webhook_wake.notify_one();
        Ok(CreatedEndpoint { endpoint, secret })
    }

    /// Deletes an API endpoint with its deliveries. Config endpoints are refused.
    pub async fn delete_webhook_endpoint(&self, id: &str) -> Result<WebhookEndpoint, WebhookError> {
        let endpoint = self
            .store
            .webhook_endpoint(id)
            .await?
            .ok_or_else(|| WebhookError::NotFound(id.to_string()))?;
        if endpoint.source == EndpointSource::Config {
            return Err(WebhookError::FromConfig(id.to_string()));
        }
        if !self.store.delete_webhook_endpoint(id).await? {
            return Err(WebhookError::NotFound(id.to_string()));
        }
        tracing::info!(endpoint = %id, "webhook endpoint deleted");
        Ok(endpoint)
    }

    /// An operator's retry of one delivery: sent again now, with a fresh attempt budget if it
    /// had failed for good, or brought forward if it was waiting for a later retry.
    pub async fn retry_webhook_delivery(&self, id: &str) -> Result<Retried, WebhookError> {
        let target = RetryTarget::Delivery(id.to_string());
        // Twice at most: a delivery failed by an attempt that ended after the first look is
        // retried on the second.
        for _ in 0..2 {
            let retried = self
                .store
                .retry_webhook_deliveries(&target, self.clock.now())
                .await?;
            if !retried.is_empty() {
                tracing::info!(
                    delivery = %id,
                    failed = !retried.failed.is_empty(),
                    "webhook delivery retried by the operator"
                );
                self.webhook_wake.notify_one();
                return Ok(retried);
            }
            match self.store.webhook_delivery_state(id).await? {
                None => return Err(WebhookError::DeliveryNotFound(id.to_string())),
                Some(DeliveryState::Delivered) => {
                    return Err(WebhookError::AlreadyDelivered(id.to_string()));
                }
                Some(DeliveryState::Pending) => {
                    return Err(WebhookError::AlreadyDue(id.to_string()));
                }
                Some(DeliveryState::Failed) => {}
            }
        }
        Err(WebhookError::AlreadyDue(id.to_string()))
    }

    /// An operator's retry of an endpoint's deliveries (optionally of one event kind, queued at
    /// or after `since`): every failed one is sent again now with a fresh attempt budget, and
    /// every one waiting for a later retry is brought forward to now.
    pub async fn retry_endpoint_deliveries(
        &self,
        endpoint_id: &str,
        event_kind: Option<&str>,
        since: Option<DateTime<Utc>>,
    ) -> Result<Retried, WebhookError> {
        event_kind.map(check_kind).transpose()?;
        if self.store.webhook_endpoint(endpoint_id).await?.is_none() {
            return Err(WebhookError::NotFound(endpoint_id.to_string()));
        }
        let target = RetryTarget::Endpoint {
            id: endpoint_id.to_string(),
            event_kind: event_kind.map(str::to_string),
            since,
        };
        let retried = self
            .store
            .retry_webhook_deliveries(&target, self.clock.now())
            .await?;
        tracing::info!(
            endpoint = %endpoint_id,
            failed = retried.failed.len(),
            brought_forward = retried.brought_forward.len(),
            "webhook deliveries retried by the operator"
        );
        self.webhook_wake.notify_one();
        Ok(retried)
    }

    /// Makes the store's config endpoints exactly `endpoints`: new ones are added (receiving
    /// events from now on), changed ones updated in place (keeping their outbox), and those
    /// no longer configured removed.
    pub async fn sync_config_webhooks(
        &self,
        endpoints: Vec<ConfigEndpoint>,
    ) -> Result<(), WebhookError> {
        let mut wanted = Vec::new();
        for endpoint in endpoints {
            let url = validate_url(&endpoint.url)?;
            let event_kinds = validate_kinds(endpoint.event_kinds.as_deref())?;
            let id = config_endpoint_id(&url);
            wanted.push(id.clone());
            let stored = self.store.webhook_endpoint(&id).await?;
            let unchanged = stored.as_ref().is_some_and(|stored| {
                stored.url == url
                    && stored.event_kinds == event_kinds
                    && stored.source == EndpointSource::Config
                    && self
                        .open_webhook_secret(&id, &stored.secret)
                        .is_ok_and(|current| current.expose() == endpoint.secret.expose())
            });
            if unchanged {
                continue;
            }
            let write = EndpointWrite {
                secret: self.seal(&SealedRef::webhook_secret(&id), endpoint.secret.expose()),
                id,
                url,
                event_kinds,
                source: EndpointSource::Config,
                now: self.clock.now(),
            };
            let saved = self.store.save_webhook_endpoint(&write).await?;
            tracing::info!(endpoint = %saved.id, host = %host_of(&saved.url), "webhook endpoint from the config registered");
        }
        for stored in self.store.webhook_endpoints().await? {
            if stored.source == EndpointSource::Config && !wanted.contains(&stored.id) {
                self.store.delete_webhook_endpoint(&stored.id).await?;
                tracing::info!(endpoint = %stored.id, host = %host_of(&stored.url), "webhook endpoint left the config; removed");
            }
        }
        Ok(())
    }

    /// Opens an endpoint's sealed secret.
    pub(crate) fn open_webhook_secret(
        &self,
        endpoint_id: &str,
        sealed: &Sealed,
    ) -> Result<WebhookSecret, BrokerError> {
        let text = self.open(&SealedRef::webhook_secret(endpoint_id), sealed)?;
        WebhookSecret::parse(&text).map_err(|_| BrokerError::Vault(VaultError::Malformed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_and_https_urls_without_credentials_are_accepted() {
        assert_eq!(
            validate_url("https://hooks.example.com/forcelink").unwrap(),
            "https://hooks.example.com/forcelink"
        );
        assert!(validate_url("http://127.0.0.1:9000/x").is_ok());
        for bad in [
            "",
            "hooks.example.com",
            "ftp://hooks.example.com/",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "https://user:pass@hooks.example.com/",
        ] {
            assert!(validate_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn kinds_default_to_all_and_unknown_ones_are_refused() {
        assert_eq!(validate_kinds(None).unwrap().len(), EVENT_KINDS.len());
        let picked = vec![
            "connection.revoked".to_string(),
            "connection.created".to_string(),
            "connection.created".to_string(),
        ];
        assert_eq!(
            validate_kinds(Some(&picked)).unwrap(),
            vec!["connection.created", "connection.revoked"]
        );
        assert!(validate_kinds(Some(&[])).is_err());
        assert!(validate_kinds(Some(&["connection.recovered".to_string()])).is_err());
    }

    #[test]
    fn config_endpoint_ids_are_stable_per_url() {
        let id = config_endpoint_id("https://a.example/");
        assert_eq!(id, config_endpoint_id("https://a.example/"));
        assert_ne!(id, config_endpoint_id("https://b.example/"));
        assert!(id.starts_with("cfg_") && id.len() == 20);
    }
}
