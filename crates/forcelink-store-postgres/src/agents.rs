//! Agent keys on PostgreSQL: one row per key, found by the hash of the key.
//!
//! Names and hashes are unique; an insert that clashes on the name writes nothing and says
//! so. Revocation keeps the first revocation time; last use only moves forward.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use forcelink_core::agents::{
    AgentKey, AgentScope, capabilities_from_stored, capabilities_to_stored,
};
use forcelink_core::{AgentKeyStore, StoreError};
use sqlx::postgres::PgRow;

use crate::PostgresStore;
use crate::rows::{corrupt, optional_time, text, time, unavailable};

macro_rules! columns {
    () => {
        "id, name, key_hash, scope, capabilities, created_at, revoked_at, last_used_at"
    };
}

fn agent_key(row: &PgRow) -> Result<AgentKey, StoreError> {
    let scope = text(row, "scope")?;
    let capabilities = text(row, "capabilities")?;
    Ok(AgentKey {
        id: text(row, "id")?,
        name: text(row, "name")?,
        key_hash: text(row, "key_hash")?,
        scope: AgentScope::from_stored(&scope).map_err(|problem| corrupt("scope", &problem))?,
        capabilities: capabilities_from_stored(&capabilities)
            .map_err(|problem| corrupt("capabilities", &problem))?,
        created_at: time(row, "created_at")?,
        revoked_at: optional_time(row, "revoked_at")?,
        last_used_at: optional_time(row, "last_used_at")?,
    })
}

#[async_trait]
impl AgentKeyStore for PostgresStore {
    async fn insert_agent_key(&self, key: &AgentKey) -> Result<bool, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO agent_keys (id, name, key_hash, scope, capabilities, created_at, \
             revoked_at, last_used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&key.id)
        .bind(&key.name)
        .bind(&key.key_hash)
        .bind(key.scope.to_stored())
        .bind(capabilities_to_stored(&key.capabilities))
        .bind(key.created_at)
        .bind(key.revoked_at)
        .bind(key.last_used_at)
        .execute(self.pool())
        .await
        .map_err(unavailable("insert_agent_key"))?;
        Ok(inserted.rows_affected() == 1)
    }

    async fn agent_key_by_hash(&self, key_hash: &str) -> Result<Option<AgentKey>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM agent_keys WHERE key_hash = $1"
        ))
        .bind(key_hash)
        .fetch_optional(self.pool())
        .await
        .map_err(unavailable("agent_key_by_hash"))?;
        row.as_ref().map(agent_key).transpose()
    }

    async fn agent_keys(&self) -> Result<Vec<AgentKey>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM agent_keys ORDER BY created_at, name"
        ))
        .fetch_all(self.pool())
        .await
        .map_err(unavailable("agent_keys"))?;
        rows.iter().map(agent_key).collect()
    }

    async fn revoke_agent_key(
        &self,
        name_or_id: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<AgentKey>, StoreError> {
        let row = sqlx::query(concat!(
            "UPDATE agent_keys SET revoked_at = COALESCE(revoked_at, $2) \
             WHERE name = $1 OR id = $1 RETURNING ",
            columns!()
        ))
        .bind(name_or_id)
        .bind(at)
        .fetch_optional(self.pool())
        .await
        .map_err(unavailable("revoke_agent_key"))?;
        row.as_ref().map(agent_key).transpose()
    }

    async fn touch_agent_key(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE agent_keys SET last_used_at = $2 \
             WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)",
        )
        .bind(id)
        .bind(at)
        .execute(self.pool())
        .await
        .map_err(unavailable("touch_agent_key"))?;
        Ok(())
    }
}
