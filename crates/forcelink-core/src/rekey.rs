//! Key rotation: re-seal every stored secret (tokens, PKCE verifiers, webhook endpoint
//! secrets) under the key ring's active key.
//!
//! Each value is replaced with a compare-and-swap on its exact bytes, so a refresh that writes
//! a row meanwhile is never overwritten; such a row is simply read again. Safe to run while
//! servers keep serving, provided every server's ring holds both the old and the new key.

use crate::broker::{Broker, BrokerError};
use crate::store::{SealedField, SealedRef, SealedRow, SealedValue};
use crate::vault::Sealed;

/// What a rotation pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RekeyReport {
    pub examined: u64,
    pub resealed: u64,
    pub already_current: u64,
    /// Values that changed underneath and were re-read.
    pub retried: u64,
}

/// What a key-ring health check found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RingHealth {
    pub examined: u64,
    pub current: u64,
    /// Sealed under an older key of the ring.
    pub old_key: u64,
    /// Could not be opened (unknown key, tampered, moved).
    pub unopenable: u64,
}

const PAGE: u32 = 500;

impl Broker {
    /// Re-seals every value not yet under the active key: tokens, verifiers and webhook
    /// endpoint secrets.
    pub async fn rekey(&self) -> Result<RekeyReport, BrokerError> {
        let mut report = RekeyReport::default();
        let mut cursor: Option<String> = None;
        loop {
            let page = self.store.sealed_values(cursor.as_deref(), PAGE).await?;
            for item in page.values {
                self.rekey_value(item, &mut report).await?;
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        for item in self.webhook_secrets().await? {
            self.rekey_value(item, &mut report).await?;
        }
        tracing::info!(
            ?report,
            active_key = self.ring.active_key_id(),
            "key rotation pass done"
        );
        Ok(report)
    }

    async fn rekey_value(
        &self,
        item: SealedValue,
        report: &mut RekeyReport,
    ) -> Result<(), BrokerError> {
        report.examined += 1;
        let mut current = item.value;
        loop {
            if self.ring.is_current(&current) {
                report.already_current += 1;
                return Ok(());
            }
            let aad = item.reference.aad();
            let resealed = self.ring.reseal(&current, &aad)?;
            let replaced = match &item.reference.row {
                SealedRow::WebhookEndpoint(id) => {
                    self.store
                        .replace_webhook_secret(id, &current, &resealed)
                        .await?
                }
                _ => {
                    self.store
                        .replace_sealed(&item.reference, &current, &resealed)
                        .await?
                }
            };
            if replaced {
                report.resealed += 1;
                return Ok(());
            }
            report.retried += 1;
            match self.reread(&item.reference).await? {
                Some(newer) => current = newer,
                None => return Ok(()),
            }
        }
    }

    /// Every webhook endpoint's sealed secret (endpoints are few: one read).
    async fn webhook_secrets(&self) -> Result<Vec<SealedValue>, BrokerError> {
        Ok(self
            .store
            .webhook_endpoints()
            .await?
            .into_iter()
            .map(|endpoint| SealedValue {
                reference: SealedRef::webhook_secret(&endpoint.id),
                value: endpoint.secret,
            })
            .collect())
    }

    async fn reread(&self, reference: &SealedRef) -> Result<Option<Sealed>, BrokerError> {
        let key = match &reference.row {
            SealedRow::Connection(key) => key,
            SealedRow::WebhookEndpoint(id) => {
                let endpoint = self.store.webhook_endpoint(id).await?;
                return Ok(endpoint.map(|endpoint| endpoint.secret));
            }
            SealedRow::Pending(_) => return Ok(None),
        };
        let Some(connection) = self.store.connection(key).await? else {
            return Ok(None);
        };
        Ok(match reference.field {
            SealedField::AccessToken => Some(connection.tokens.access_token),
            SealedField::RefreshToken => connection.tokens.refresh_token,
            SealedField::PkceVerifier | SealedField::WebhookSecret => None,
        })
    }

    /// Opens every sealed value to prove the ring can read the whole store.
    pub async fn ring_health(&self) -> Result<RingHealth, BrokerError> {
        let mut health = RingHealth::default();
        let mut cursor: Option<String> = None;
        loop {
            let page = self.store.sealed_values(cursor.as_deref(), PAGE).await?;
            for item in page.values {
                self.check_value(&item, &mut health);
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        for item in self.webhook_secrets().await? {
            self.check_value(&item, &mut health);
        }
        Ok(health)
    }

    fn check_value(&self, item: &SealedValue, health: &mut RingHealth) {
        health.examined += 1;
        match self.ring.open(&item.value, &item.reference.aad()) {
            Ok(_) if self.ring.is_current(&item.value) => health.current += 1,
            Ok(_) => health.old_key += 1,
            Err(_) => health.unopenable += 1,
        }
    }
}
