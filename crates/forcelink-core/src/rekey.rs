//! Key rotation: re-seal every stored secret under the key ring's active key.
//!
//! Each value is replaced with a compare-and-swap on its exact bytes, so a refresh that writes
//! a row meanwhile is never overwritten; such a row is simply read again. Safe to run while
//! servers keep serving, provided every server's ring holds both the old and the new key.

use crate::broker::{Broker, BrokerError};

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
    /// Re-seals every value not yet under the active key.
    pub async fn rekey(&self) -> Result<RekeyReport, BrokerError> {
        let mut report = RekeyReport::default();
        let mut cursor: Option<String> = None;
        loop {
            let page = self.store.sealed_values(cursor.as_deref(), PAGE).await?;
            for item in page.values {
                report.examined += 1;
                let mut current = item.value;
                loop {
                    if self.ring.is_current(&current) {
                        report.already_current += 1;
                        break;
                    }
                    let aad = item.reference.aad();
                    let resealed = self.ring.reseal(&current, &aad)?;
                    if self
                        .store
                        .replace_sealed(&item.reference, &current, &resealed)
                        .await?
                    {
                        report.resealed += 1;
                        break;
                    }
                    report.retried += 1;
                    match self.reread(&item.reference).await? {
                        Some(newer) => current = newer,
                        None => break,
                    }
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        tracing::info!(
            ?report,
            active_key = self.ring.active_key_id(),
            "key rotation pass done"
        );
        Ok(report)
    }

    async fn reread(
        &self,
        reference: &crate::store::SealedRef,
    ) -> Result<Option<crate::vault::Sealed>, BrokerError> {
        use crate::store::{SealedField, SealedRow};
        let SealedRow::Connection(key) = &reference.row else {
            return Ok(None);
        };
        let Some(connection) = self.store.connection(key).await? else {
            return Ok(None);
        };
        Ok(match reference.field {
            SealedField::AccessToken => Some(connection.tokens.access_token),
            SealedField::RefreshToken => connection.tokens.refresh_token,
            SealedField::PkceVerifier => None,
        })
    }

    /// Opens every sealed value to prove the ring can read the whole store.
    pub async fn ring_health(&self) -> Result<RingHealth, BrokerError> {
        let mut health = RingHealth::default();
        let mut cursor: Option<String> = None;
        loop {
            let page = self.store.sealed_values(cursor.as_deref(), PAGE).await?;
            for item in page.values {
                health.examined += 1;
                match self.ring.open(&item.value, &item.reference.aad()) {
                    Ok(_) if self.ring.is_current(&item.value) => health.current += 1,
                    Ok(_) => health.old_key += 1,
                    Err(_) => health.unopenable += 1,
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        Ok(health)
    }
}
