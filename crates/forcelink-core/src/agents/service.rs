//! `AgentKeys`, the authentication service: creates, lists and revokes agent keys, and checks a
//! presented one through a lock-free cache in front of the store (a cached entry is re-read
//! after `cache_ttl`; a revocation through this process bites at once).

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use super::{
    AGENT_KEY_PREFIX, AgentDenied, AgentKey, AgentKeyError, AgentKeySpec, NewAgentKeySecret,
    generate_agent_key, hash_agent_key, key_digest,
};
use crate::clock::Clock;
use crate::pkce::hex;
use crate::store::Store;

/// How often a key's last use is written back at most: the first use in each such period
/// costs one store write, the others none.
const LAST_USE_RESOLUTION: Duration = Duration::seconds(60);

#[derive(Debug, Clone)]
struct CachedKey {
    key: Arc<AgentKey>,
    checked_at: DateTime<Utc>,
}

/// Creates, lists, revokes and authenticates agent keys.
pub struct AgentKeys {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    cache_ttl: Duration,
    /// By the SHA-256 of the key (bytes: the hot path formats no hex).
    cache: papaya::HashMap<[u8; 32], CachedKey>,
}

impl fmt::Debug for AgentKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentKeys")
            .field("cache_ttl", &self.cache_ttl)
            .field("cached", &self.cache.len())
            .finish_non_exhaustive()
    }
}

impl AgentKeys {
    /// `cache_ttl` of zero reads the store on every request.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, cache_ttl: Duration) -> AgentKeys {
        AgentKeys {
            store,
            clock,
            cache_ttl,
            cache: papaya::HashMap::new(),
        }
    }

    /// Creates a key and returns it with its secret, which is shown once and never stored.
    pub async fn create(
        &self,
        spec: AgentKeySpec,
    ) -> Result<(AgentKey, NewAgentKeySecret), AgentKeyError> {
        let spec = spec.validated()?;
        let secret = generate_agent_key();
        let key = AgentKey {
            id: format!("agk_{}", uuid::Uuid::new_v4().simple()),
            name: spec.name,
            key_hash: hash_agent_key(secret.expose()),
            scope: spec.scope,
            capabilities: spec.capabilities,
            created_at: self.clock.now(),
            revoked_at: None,
            last_used_at: None,
        };
        if !self.store.insert_agent_key(&key).await? {
            return Err(AgentKeyError::NameTaken(key.name));
        }
        Ok((key, secret))
    }

    pub async fn list(&self) -> Result<Vec<AgentKey>, AgentKeyError> {
        Ok(self.store.agent_keys().await?)
    }

    /// Revokes the key with this name or id. Revoking a revoked key is a no-op that returns it.
    pub async fn revoke(&self, name_or_id: &str) -> Result<AgentKey, AgentKeyError> {
        let revoked = self
            .store
            .revoke_agent_key(name_or_id.trim(), self.clock.now())
            .await?
            .ok_or_else(|| AgentKeyError::NotFound(name_or_id.trim().to_owned()))?;
        let pinned = self.cache.pin();
        pinned.retain(|_, cached| cached.key.id != revoked.id);
        Ok(revoked)
    }

    /// Finds the live key behind a presented secret. Unknown and revoked keys are refused.
    pub async fn authenticate(&self, presented: &str) -> Result<Arc<AgentKey>, AgentDenied> {
        if !presented.starts_with(AGENT_KEY_PREFIX) {
            return Err(AgentDenied::Unknown);
        }
        let digest = key_digest(presented);
        let now = self.clock.now();
        let cached = self.cache.pin().get(&digest).cloned();
        let key = match cached {
            Some(cached) if now - cached.checked_at < self.cache_ttl => cached.key,
            _ => {
                let Some(found) = self.store.agent_key_by_hash(&hex(&digest)).await? else {
                    self.cache.pin().remove(&digest);
                    return Err(AgentDenied::Unknown);
                };
                let found = Arc::new(found);
                self.cache.pin().insert(
                    digest,
                    CachedKey {
                        key: found.clone(),
                        checked_at: now,
                    },
                );
                found
            }
        };
        if key.is_revoked() {
            return Err(AgentDenied::Revoked);
        }
        let stale_use = key
            .last_used_at
            .is_none_or(|used| now - used >= LAST_USE_RESOLUTION);
        if stale_use {
            self.note_use(&digest, &key, now).await;
        }
        Ok(key)
    }

    /// Records a use in the store (at most once per `LAST_USE_RESOLUTION` per key) and in
    /// the cache. A failed write is logged, not fatal: last use is information, not policy.
    async fn note_use(&self, digest: &[u8; 32], key: &Arc<AgentKey>, now: DateTime<Utc>) {
        if let Err(error) = self.store.touch_agent_key(&key.id, now).await {
            tracing::warn!(agent = %key.name, %error, "could not record the agent key's last use");
            return;
        }
        let mut updated = AgentKey::clone(key);
        updated.last_used_at = Some(now);
        let pinned = self.cache.pin();
        if let Some(cached) = pinned.get(digest) {
            let checked_at = cached.checked_at;
            pinned.insert(
                *digest,
                CachedKey {
                    key: Arc::new(updated),
                    checked_at,
                },
            );
        }
    }
}
