//! Hand out a valid access token for a connection: the hot path.
//!
//! A cached token that is still good is served from the lock-free cache without touching the
//! store, a lock or Salesforce. Otherwise the caller joins this process's single flight for the
//! connection (one refresh however many callers), and the refresh path does the rest. A caller
//! whose token was refused reports it as `stale`: it is refreshed only if it is still current.

use crate::broker::{Broker, BrokerError};
use crate::cache::IssuedToken;
use crate::connection::{Connection, ConnectionState};
use crate::ids::ConnectionKey;
use crate::secret::AccessToken;
use crate::store::{SealedField, SealedRef};

/// Token handouts by how they were served, and their latency.
fn record_handout(source: &'static str, started: std::time::Instant) {
    metrics::counter!("forcelink_token_handouts_total", "source" => source).increment(1);
    metrics::histogram!("forcelink_token_handout_seconds", "source" => source)
        .record(started.elapsed().as_secs_f64());
}

impl Broker {
    /// A valid access token for `key`; never a refresh token.
    pub async fn access_token(
        &self,
        key: &ConnectionKey,
        stale: Option<&str>,
    ) -> Result<IssuedToken, BrokerError> {
        let started = std::time::Instant::now();
        let margin = self.settings.refresh_margin;
        if let Some(token) = self.cache.fresh(key, self.clock.now(), margin, stale) {
            record_handout("cache", started);
            return Ok(token);
        }
        // Boxed: the slow path's future is large (several KiB), and every cached handout would
        // otherwise carry, move and zero it.
        let result = Box::pin(self.access_token_slow(key, stale)).await;
        record_handout(if result.is_ok() { "slow_path" } else { "error" }, started);
        result
    }

    /// The single flight: wait for this process's refresh of `key`, or lead it.
    async fn access_token_slow(
        &self,
        key: &ConnectionKey,
        stale: Option<&str>,
    ) -> Result<IssuedToken, BrokerError> {
        let margin = self.settings.refresh_margin;
        let lock = self.refresh_lock(key);
        let result = {
            let _single_flight = lock.lock().await;
            match self.cache.fresh(key, self.clock.now(), margin, stale) {
                Some(token) => Ok(token),
                None => self.obtain(key, stale).await,
            }
        };
        drop(lock);
        self.forget_idle_lock(key);
        result
    }

    /// The stored connection if it is active; otherwise why not (and the cache forgets it).
    pub(crate) async fn load_active(&self, key: &ConnectionKey) -> Result<Connection, BrokerError> {
        let Some(connection) = self.store.connection(key).await? else {
            self.cache.forget(key);
            return Err(BrokerError::NotFound(key.clone()));
        };
        match connection.state {
            ConnectionState::Active => Ok(connection),
            _ => {
                self.cache.forget(key);
                Err(BrokerError::NeedsReauth {
                    key: key.clone(),
                    cause: connection
                        .state_cause
                        .clone()
                        .unwrap_or_else(|| connection.state.to_string()),
                })
            }
        }
    }

    /// The stored access token, if good for a while yet and not the reported stale one.
    pub(crate) fn usable(
        &self,
        connection: &Connection,
        stale: Option<&str>,
    ) -> Result<Option<IssuedToken>, BrokerError> {
        if !connection.access_token_fresh(self.clock.now(), self.settings.refresh_margin) {
            return Ok(None);
        }
        let reference = SealedRef::connection(&connection.key, SealedField::AccessToken);
        let access = self.open(&reference, &connection.tokens.access_token)?;
        if stale.is_some_and(|stale| stale == access) {
            return Ok(None);
        }
        let token = IssuedToken {
            access_token: AccessToken::new(access),
            instance_url: connection.instance_url.clone(),
            issued_at: connection.tokens.access_issued_at,
            expires_at: connection.tokens.access_expires_at,
            generation: connection.generation,
        };
        self.cache.put(&connection.key, &token);
        Ok(Some(token))
    }
}
