//! Access-token expiry: Salesforce sends no `expires_in`, so a new token's expiry is first
//! estimated (issued_at + the configured session timeout) and then, where the app allows
//! introspection, corrected in the background from its `exp`, fenced by generation.
//!
//! The caller is never kept waiting for introspection, and a failed introspection only leaves
//! the estimate in place.

use crate::broker::Broker;
use crate::ids::ConnectionKey;
use crate::salesforce::LoginHost;
use crate::secret::AccessToken;

impl Broker {
    /// Starts learning the real expiry of a just-stored access token.
    pub(crate) fn learn_expiry(
        &self,
        key: &ConnectionKey,
        generation: i64,
        host: &LoginHost,
        token: AccessToken,
    ) {
        if !self.settings.introspect || self.settings.client.client_secret.is_none() {
            return;
        }
        let (store, salesforce, cache) = (
            self.store.clone(),
            self.salesforce.clone(),
            self.cache.clone(),
        );
        let (client, key, host) = (self.settings.client.clone(), key.clone(), host.clone());
        tokio::spawn(async move {
            let introspection = match salesforce.introspect(&host, &client, &token).await {
                Ok(introspection) => introspection,
                Err(error) => {
                    tracing::debug!(connection = %key, class = error.class(), "introspection failed; keeping the estimated expiry");
                    return;
                }
            };
            let Some(expires_at) = introspection.expires_at.filter(|_| introspection.active) else {
                return;
            };
            match store.set_access_expiry(&key, generation, expires_at).await {
                Ok(true) => {
                    cache.set_expiry(&key, generation, expires_at);
                    tracing::debug!(connection = %key, %expires_at, "access-token expiry learned from introspection");
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(connection = %key, %error, "storing the introspected expiry failed")
                }
            }
        });
    }
}
