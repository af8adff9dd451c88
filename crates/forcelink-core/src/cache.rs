//! The in-memory cache of opened access tokens: the lock-free hot path.
//!
//! Readers never take a lock (papaya's lock-free map); writers are the refresh path and state
//! changes. The cache holds no refresh token and is never persisted. It may lag behind another
//! instance's refresh; a caller whose token was refused reports it and goes to the store.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use crate::ids::ConnectionKey;
use crate::secret::AccessToken;

/// What a caller gets: never a refresh token.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub access_token: AccessToken,
    pub instance_url: String,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub generation: i64,
}

/// Opened access tokens by connection.
#[derive(Debug, Default)]
pub struct TokenCache {
    entries: papaya::HashMap<ConnectionKey, Arc<IssuedToken>>,
}

impl TokenCache {
    /// The cached token if it is good until `now + margin` and is not the reported `stale` one.
    pub fn fresh(
        &self,
        key: &ConnectionKey,
        now: DateTime<Utc>,
        margin: Duration,
        stale: Option<&str>,
    ) -> Option<IssuedToken> {
        let entries = self.entries.pin();
        let entry = entries.get(key)?;
        let usable = now + margin < entry.expires_at
            && stale.is_none_or(|stale| stale != entry.access_token.expose());
        usable.then(|| IssuedToken::clone(entry))
    }

    /// Remembers a token unless a newer generation is already cached.
    pub fn put(&self, key: &ConnectionKey, token: &IssuedToken) {
        let entries = self.entries.pin();
        let newer_cached = entries
            .get(key)
            .is_some_and(|cached| cached.generation > token.generation);
        if !newer_cached {
            entries.insert(key.clone(), Arc::new(token.clone()));
        }
    }

    /// Corrects the expiry of the cached token of `generation`, if that is the one cached.
    pub fn set_expiry(&self, key: &ConnectionKey, generation: i64, expires_at: DateTime<Utc>) {
        let entries = self.entries.pin();
        if let Some(cached) = entries
            .get(key)
            .filter(|cached| cached.generation == generation)
        {
            let mut corrected = IssuedToken::clone(cached);
            corrected.expires_at = expires_at;
            entries.insert(key.clone(), Arc::new(corrected));
        }
    }

    pub fn forget(&self, key: &ConnectionKey) {
        self.entries.pin().remove(key);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
