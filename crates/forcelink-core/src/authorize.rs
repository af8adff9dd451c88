//! Connect: start an authorization (PKCE S256, single-use state) and complete it at the
//! callback (code exchange, signature check, org binding, store, revoke the replaced grant,
//! record `connection.created` or `connection.reconnected`).
//!
//! A grant is stored only after every check passed; a failed callback stores nothing. The
//! verifier never leaves the store unsealed and is never logged.

use chrono::{DateTime, Utc};
use url::Url;

use crate::broker::{Broker, BrokerError};
use crate::connection::{Connection, SealedTokens};
use crate::ids::{ConnectionContext, ConnectionKey, OrgId};
use crate::pkce;
use crate::salesforce::{CodeExchange, LoginHost, TokenResponse, verify_signature};
use crate::secret::{AuthorizationCode, PkceVerifier, StateToken};
use crate::store::{GrantWrite, PendingAuthorization, SealedField, SealedRef};

/// What the start URL asked for, already validated.
#[derive(Debug, Clone)]
pub struct StartRequest {
    pub expected_org: Option<OrgId>,
    pub context: ConnectionContext,
    pub login_host: LoginHost,
    pub login_hint: Option<String>,
}

/// Where to send the admin's browser.
#[derive(Debug)]
pub struct Started {
    pub authorize_url: String,
    pub expires_at: DateTime<Utc>,
}

/// What the callback carried.
#[derive(Debug)]
pub enum CallbackOutcome {
    Code(AuthorizationCode),
    Error { error: String, description: String },
}

/// A stored connection and whether it replaced an earlier grant.
#[derive(Debug)]
pub struct Connected {
    pub connection: Connection,
    pub reconnected: bool,
    /// Revoking the replaced grant at Salesforce failed (it is stored nowhere any more).
    pub old_grant_revoke_failed: bool,
}

impl Broker {
    /// Creates a pending authorization and returns the Salesforce authorize URL.
    pub async fn start_authorization(&self, request: StartRequest) -> Result<Started, BrokerError> {
        let now = self.clock.now();
        let verifier = pkce::new_verifier();
        let state = pkce::new_state();
        let state_hash = pkce::state_hash(state.expose());
        let expires_at = now + self.settings.state_ttl;
        let pending = PendingAuthorization {
            verifier: self.seal(&SealedRef::pending(&state_hash), verifier.expose()),
            state_hash,
            expected_org: request.expected_org,
            context: request.context,
            login_host: request.login_host.clone(),
            redirect_uri: self.settings.redirect_uri.clone(),
            created_at: now,
            expires_at,
        };
        self.store.insert_pending(&pending).await?;
        let url = self.authorize_url(&request.login_host, &state, &verifier, request.login_hint);
        Ok(Started {
            authorize_url: url,
            expires_at,
        })
    }

    fn authorize_url(
        &self,
        host: &LoginHost,
        state: &StateToken,
        verifier: &PkceVerifier,
        login_hint: Option<String>,
    ) -> String {
        let mut url = Url::parse(&host.endpoint("/services/oauth2/authorize"))
            .unwrap_or_else(|_| host.url().clone());
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &self.settings.client.client_id)
                .append_pair("redirect_uri", &self.settings.redirect_uri)
                .append_pair("scope", &self.settings.scopes.join(" "))
                .append_pair("state", state.expose())
                .append_pair("code_challenge", &pkce::s256_challenge(verifier))
                .append_pair("code_challenge_method", "S256");
            if let Some(hint) = login_hint {
                query.append_pair("login_hint", &hint);
            }
        }
        url.to_string()
    }

    /// Completes an authorization from its callback. Consumes the state whatever happens.
    pub async fn complete_authorization(
        &self,
        state: &str,
        outcome: CallbackOutcome,
    ) -> Result<Connected, BrokerError> {
        let now = self.clock.now();
        let state_hash = pkce::state_hash(state);
        let pending = self
            .store
            .take_pending(&state_hash, now)
            .await?
            .ok_or(BrokerError::InvalidState)?;
        let code = match outcome {
            CallbackOutcome::Code(code) => code,
            CallbackOutcome::Error { error, description } => {
                return Err(BrokerError::AuthorizationDenied { error, description });
            }
        };
        let verifier =
            PkceVerifier::new(self.open(&SealedRef::pending(&state_hash), &pending.verifier)?);
        let response = self
            .salesforce
            .exchange_code(CodeExchange {
                login_host: &pending.login_host,
                client: &self.settings.client,
                code: &code,
                redirect_uri: &pending.redirect_uri,
                verifier: &verifier,
            })
            .await
            .map_err(BrokerError::from_upstream)?;
        self.accept_grant(&pending, response).await
    }

    async fn accept_grant(
        &self,
        pending: &PendingAuthorization,
        response: TokenResponse,
    ) -> Result<Connected, BrokerError> {
        let signature_verified = self.check_signature(&response)?;
        let (org_id, user_id) = response
            .identity_ids()
            .ok_or_else(|| BrokerError::Protocol {
                detail: "identity url in the token response is not /id/{org}/{user}".into(),
            })?;
        self.check_identity_origin(&response, &pending.login_host)?;
        if let Some(expected) = pending
            .expected_org
            .as_ref()
            .filter(|expected| **expected != org_id)
        {
            let granted = response.refresh_token.as_ref().map(|t| t.expose());
            self.revoke_quietly(&pending.login_host, granted).await;
            return Err(BrokerError::OrgMismatch {
                expected: expected.clone(),
                actual: org_id,
            });
        }
        let Some(refresh_token) = response.refresh_token.as_ref() else {
            self.revoke_quietly(&pending.login_host, Some(response.access_token.expose()))
                .await;
            return Err(BrokerError::MissingRefreshToken);
        };
        let identity = self
            .salesforce
            .identity(&response.id, &response.access_token)
            .await
            .map_err(BrokerError::from_upstream)?;
        if identity.org_id != org_id || identity.user_id != user_id {
            return Err(BrokerError::Protocol {
                detail: "identity service names another org or user than the token response".into(),
            });
        }
        let key = ConnectionKey::new(org_id, pending.context.clone());
        let now = self.clock.now();
        let issued_at = response.issued_at_time().unwrap_or(now);
        let tokens = SealedTokens {
            access_token: self.seal(
                &SealedRef::connection(&key, SealedField::AccessToken),
                response.access_token.expose(),
            ),
            access_issued_at: issued_at,
            access_expires_at: issued_at + self.settings.session_timeout,
            refresh_token: Some(self.seal(
                &SealedRef::connection(&key, SealedField::RefreshToken),
                refresh_token.expose(),
            )),
        };
        let grant = GrantWrite {
            key: key.clone(),
            user_id,
            username: identity.username,
            instance_url: response.instance_url.trim_end_matches('/').to_string(),
            login_host: pending.login_host.clone(),
            identity_url: response.id.clone(),
            scopes: response.scopes(),
            pkce: true,
            signature_verified,
            tokens,
            now,
            heartbeat_due_at: self.first_heartbeat_due(&key, now),
        };
        let saved = self.store.save_grant(&grant).await?;
        self.cache.forget(&key);
        let access = response.access_token.clone();
        self.learn_expiry(
            &key,
            saved.connection.generation,
            &pending.login_host,
            access,
        );
        let mut old_grant_revoke_failed = false;
        if let Some(old) = &saved.replaced {
            old_grant_revoke_failed = !self.revoke_replaced(&key, &saved.connection, old).await;
        }
        let kind = if saved.replaced.is_some() {
            "connection.reconnected"
        } else {
            "connection.created"
        };
        let detail = serde_json::json!({
            "generation": saved.connection.generation,
            "user_id": saved.connection.user_id.to_string(),
            "username": saved.connection.username,
            "instance_url": saved.connection.instance_url,
            "old_grant_revoke_failed": old_grant_revoke_failed,
        });
        self.emit(kind, Some(&key), detail).await;
        tracing::info!(
            connection = %key,
            reconnected = saved.replaced.is_some(),
            generation = saved.connection.generation,
            "connection authorized"
        );
        Ok(Connected {
            connection: saved.connection,
            reconnected: saved.replaced.is_some(),
            old_grant_revoke_failed,
        })
    }

    /// With a client secret the signature must verify; a public client has no key to check it
    /// with and relies on the identity call instead.
    fn check_signature(&self, response: &TokenResponse) -> Result<bool, BrokerError> {
        let Some(secret) = &self.settings.client.client_secret else {
            return Ok(false);
        };
        let signature = response
            .signature
            .as_deref()
            .ok_or(BrokerError::SignatureInvalid)?;
        if verify_signature(secret, &response.id, &response.issued_at, signature) {
            Ok(true)
        } else {
            tracing::warn!("token response signature does not verify; grant refused");
            Err(BrokerError::SignatureInvalid)
        }
    }

    /// The access token is sent only to the identity URL of a host forcelink trusts.
    fn check_identity_origin(
        &self,
        response: &TokenResponse,
        login_host: &LoginHost,
    ) -> Result<(), BrokerError> {
        let origin = LoginHost::parse(&response.id).map(|host| host.origin());
        let instance = LoginHost::parse(&response.instance_url).map(|host| host.origin());
        let trusted = [
            Some(login_host.origin()),
            Some(self.settings.production_host.origin()),
            Some(self.settings.sandbox_host.origin()),
            instance,
        ];
        match origin {
            Some(origin) if trusted.iter().flatten().any(|t| *t == origin) => Ok(()),
            _ => Err(BrokerError::Protocol {
                detail: "identity url is on an untrusted host".into(),
            }),
        }
    }

    async fn revoke_replaced(
        &self,
        key: &ConnectionKey,
        now: &Connection,
        old: &SealedTokens,
    ) -> bool {
        let Some(sealed) = &old.refresh_token else {
            return true;
        };
        let reference = SealedRef::connection(key, SealedField::RefreshToken);
        let Ok(token) = self.open(&reference, sealed) else {
            return false;
        };
        match self.salesforce.revoke(&now.login_host, &token).await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(connection = %key, error = %error.class(), "revoking the replaced grant failed");
                false
            }
        }
    }

    pub(crate) async fn revoke_quietly(&self, host: &LoginHost, token: Option<&str>) {
        let Some(token) = token else { return };
        if let Err(error) = self.salesforce.revoke(host, token).await {
            tracing::warn!(error = %error.class(), "revoking a refused grant failed");
        }
    }
}
