//! Hand out a valid access token for a connection, refreshing under rotation when needed.
//!
//! The cached token is served without taking a lock. A refresh takes the connection's
//! in-process lock, re-reads the store (another caller may have refreshed meanwhile), refreshes
//! once, and commits the new tokens with a compare-and-swap on the generation before anyone
//! sees them. Failures are sorted by the Salesforce taxonomy: a dead grant marks the
//! connection needs_reauth; an IP block never does.

use chrono::{DateTime, Utc};

use crate::broker::{Broker, BrokerError};
use crate::connection::{Connection, ConnectionState};
use crate::ids::ConnectionKey;
use crate::salesforce::{RefreshGrant, SalesforceError, TokenResponse, verify_signature};
use crate::secret::{AccessToken, RefreshToken};
use crate::store::{CommitOutcome, RefreshWrite, SealedField, SealedRef};

/// A token handed to a caller. Never carries the refresh token.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub access_token: AccessToken,
    pub instance_url: String,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub generation: i64,
    /// This call caused a refresh at Salesforce.
    pub refreshed: bool,
}

impl Broker {
    /// A valid access token for `key`. With `stale`, the caller reports that this token was
    /// refused: forcelink refreshes only if it is still the current one.
    pub async fn access_token(
        &self,
        key: &ConnectionKey,
        stale: Option<&str>,
    ) -> Result<IssuedToken, BrokerError> {
        let connection = self.load_active(key).await?;
        if let Some(token) = self.cached(&connection, stale)? {
            return Ok(token);
        }
        let lock = self.refresh_lock(key);
        let _guard = lock.lock().await;
        let connection = self.load_active(key).await?;
        if let Some(token) = self.cached(&connection, stale)? {
            return Ok(token);
        }
        self.refresh(connection).await
    }

    async fn load_active(&self, key: &ConnectionKey) -> Result<Connection, BrokerError> {
        let connection = self
            .store
            .connection(key)
            .await?
            .ok_or_else(|| BrokerError::NotFound(key.clone()))?;
        match connection.state {
            ConnectionState::Active => Ok(connection),
            _ => Err(BrokerError::NeedsReauth {
                key: key.clone(),
                cause: connection
                    .state_cause
                    .clone()
                    .unwrap_or_else(|| connection.state.to_string()),
            }),
        }
    }

    fn cached(
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
        Ok(Some(IssuedToken {
            access_token: AccessToken::new(access),
            instance_url: connection.instance_url.clone(),
            issued_at: connection.tokens.access_issued_at,
            expires_at: connection.tokens.access_expires_at,
            generation: connection.generation,
            refreshed: false,
        }))
    }

    async fn refresh(&self, connection: Connection) -> Result<IssuedToken, BrokerError> {
        let key = connection.key.clone();
        let refresh_ref = SealedRef::connection(&key, SealedField::RefreshToken);
        let Some(sealed_refresh) = &connection.tokens.refresh_token else {
            return Err(self.mark_dead(&connection, "no refresh token stored").await);
        };
        let refresh_token = RefreshToken::new(self.open(&refresh_ref, sealed_refresh)?);
        let grant = RefreshGrant {
            login_host: &connection.login_host,
            client: &self.settings.client,
            refresh_token: &refresh_token,
        };
        let response = match self.salesforce.refresh(grant).await {
            Ok(response) => response,
            Err(error) => return Err(self.refresh_failed(&connection, error).await),
        };
        if !self.refresh_response_matches(&connection, &response) {
            tracing::error!(connection = %key, "refresh response failed verification; tokens not stored");
            return Err(self
                .mark_dead(&connection, "refresh response failed verification")
                .await);
        }
        self.commit(&connection, response).await
    }

    fn refresh_response_matches(&self, connection: &Connection, response: &TokenResponse) -> bool {
        let ids_match = response
            .identity_ids()
            .is_some_and(|(org, user)| org == connection.key.org_id && user == connection.user_id);
        let signature_ok = match (&self.settings.client.client_secret, &response.signature) {
            (Some(secret), Some(signature)) => {
                verify_signature(secret, &response.id, &response.issued_at, signature)
            }
            (Some(_), None) => false,
            (None, _) => true,
        };
        ids_match && signature_ok
    }

    async fn commit(
        &self,
        connection: &Connection,
        response: TokenResponse,
    ) -> Result<IssuedToken, BrokerError> {
        let key = &connection.key;
        let now = self.clock.now();
        let issued_at = response.issued_at_time().unwrap_or(now);
        let expires_at = issued_at + self.settings.session_timeout;
        let write = RefreshWrite {
            access_token: self.seal(
                &SealedRef::connection(key, SealedField::AccessToken),
                response.access_token.expose(),
            ),
            access_issued_at: issued_at,
            access_expires_at: expires_at,
            refresh_token: response.refresh_token.as_ref().map(|token| {
                self.seal(
                    &SealedRef::connection(key, SealedField::RefreshToken),
                    token.expose(),
                )
            }),
            instance_url: response.instance_url.trim_end_matches('/').to_string(),
            refreshed_at: now,
        };
        match self
            .store
            .commit_refresh(key, connection.generation, &write)
            .await?
        {
            CommitOutcome::Committed(stored) => {
                tracing::info!(
                    connection = %key,
                    generation = stored.generation,
                    rotated = response.refresh_token.is_some(),
                    "refreshed"
                );
                Ok(IssuedToken {
                    access_token: response.access_token,
                    instance_url: stored.instance_url,
                    issued_at,
                    expires_at,
                    generation: stored.generation,
                    refreshed: true,
                })
            }
            CommitOutcome::Stale { current_generation } => {
                tracing::error!(connection = %key, current_generation, "refresh commit lost a race");
                Err(BrokerError::OutcomeUnknown {
                    detail: "another writer committed first; the new tokens were not stored".into(),
                })
            }
            CommitOutcome::Missing => Err(BrokerError::NotFound(key.clone())),
        }
    }

    async fn refresh_failed(&self, connection: &Connection, error: SalesforceError) -> BrokerError {
        let key = connection.key.clone();
        tracing::warn!(connection = %key, class = error.class(), %error, "refresh failed");
        match error {
            SalesforceError::GrantDead {
                reason,
                description,
            } => {
                let cause = format!("{}: {description}", reason.code());
                self.mark_dead(connection, &cause).await
            }
            SalesforceError::IpBlocked { description } => {
                BrokerError::IpBlocked { key, description }
            }
            other => BrokerError::from_upstream(other),
        }
    }

    async fn mark_dead(&self, connection: &Connection, cause: &str) -> BrokerError {
        let now = self.clock.now();
        let result = self
            .store
            .set_state(
                &connection.key,
                Some(connection.generation),
                ConnectionState::NeedsReauth,
                Some(cause),
                now,
            )
            .await;
        if let Err(error) = result {
            return BrokerError::Store(error);
        }
        BrokerError::NeedsReauth {
            key: connection.key.clone(),
            cause: cause.to_string(),
        }
    }
}
