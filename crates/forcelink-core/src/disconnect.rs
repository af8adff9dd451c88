//! Disconnect: revoke a connection's grant at Salesforce, then remove it.
//!
//! The connection is removed only once Salesforce confirmed the revocation or said the token
//! is already dead, so a failed call loses nothing and can be repeated. Then
//! `connection.revoked` is recorded.

use crate::broker::{Broker, BrokerError};
use crate::connection::Connection;
use crate::ids::ConnectionKey;
use crate::salesforce::SalesforceError;
use crate::store::{SealedField, SealedRef};

impl Broker {
    /// Revokes the grant at Salesforce and deletes the connection.
    pub async fn disconnect(&self, key: &ConnectionKey) -> Result<Connection, BrokerError> {
        let connection = self
            .store
            .connection(key)
            .await?
            .ok_or_else(|| BrokerError::NotFound(key.clone()))?;
        let (field, sealed) = match &connection.tokens.refresh_token {
            Some(refresh) => (SealedField::RefreshToken, refresh),
            None => (SealedField::AccessToken, &connection.tokens.access_token),
        };
        let token = self.open(&SealedRef::connection(key, field), sealed)?;
        match self.salesforce.revoke(&connection.login_host, &token).await {
            Ok(()) => {}
            // Salesforce no longer knows the token: the grant is already gone.
            Err(SalesforceError::AuthorizationRejected { error, .. })
                if error == "invalid_token" => {}
            Err(error) => return Err(BrokerError::from_upstream(error)),
        }
        let removed = self
            .store
            .delete_connection(key)
            .await?
            .ok_or_else(|| BrokerError::NotFound(key.clone()))?;
        self.cache.forget(key);
        let detail = serde_json::json!({
            "generation": removed.generation,
            "user_id": removed.user_id.to_string(),
            "username": removed.username,
        });
        self.emit("connection.revoked", Some(key), detail).await;
        tracing::info!(connection = %key, "connection revoked and removed");
        Ok(removed)
    }
}
