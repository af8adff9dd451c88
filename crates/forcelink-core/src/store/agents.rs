//! The part of the Store port that keeps agent keys: their hashes, scopes and last use.
//!
//! A separate trait (a supertrait of `Store`) so each adapter keeps it in its own file. No
//! method ever sees a key, only its SHA-256.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::agents::AgentKey;
use crate::store::StoreError;

#[async_trait]
pub trait AgentKeyStore: Send + Sync {
    /// Inserts a new key. `Ok(false)` when the name is already taken (by a live or revoked
    /// key); nothing is written then.
    async fn insert_agent_key(&self, key: &AgentKey) -> Result<bool, StoreError>;

    /// The key with this hash, revoked or not.
    async fn agent_key_by_hash(&self, key_hash: &str) -> Result<Option<AgentKey>, StoreError>;

    /// Every key, revoked ones included, oldest first.
    async fn agent_keys(&self) -> Result<Vec<AgentKey>, StoreError>;

    /// Revokes the key with this name or id and returns it. A key revoked earlier keeps its
    /// first revocation time. `None` when there is no such key.
    async fn revoke_agent_key(
        &self,
        name_or_id: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<AgentKey>, StoreError>;

    /// Records a use of the key; never moves `last_used_at` backwards.
    async fn touch_agent_key(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError>;
}
