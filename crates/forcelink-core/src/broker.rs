//! The broker: the use cases of forcelink over its ports, and the one error type they share.
//!
//! `Broker` holds the ports (store, Salesforce, clock) and the key ring; its methods live in
//! `authorize`, `access`, `disconnect`, `rekey`, `heartbeat` and `webhook`. No IO of its own: every effect goes
//! through a port. Errors are named after what the caller must do.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::Duration;

use crate::cache::TokenCache;
use crate::clock::Clock;
use crate::ids::{ConnectionKey, OrgId};
use crate::salesforce::{ClientCredentials, LoginHost, SalesforceError, SalesforceOAuth};
use crate::store::{SealedRef, Store, StoreError};
use crate::vault::{KeyRing, Sealed, VaultError};

/// Typed settings the binary derives from its config.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    pub client: ClientCredentials,
    /// forcelink's callback URL, registered on the app.
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub production_host: LoginHost,
    pub sandbox_host: LoginHost,
    /// How long a started authorization may wait for its callback.
    pub state_ttl: Duration,
    /// Assumed access-token lifetime when nothing better is known (the app's session timeout).
    pub session_timeout: Duration,
    /// Refresh this long before the best known expiry.
    pub refresh_margin: Duration,
    /// This process's name in leases and lineage; unique per running instance.
    pub instance_id: String,
    /// How long a refresh lease lasts; longer than the upstream timeout, renewed while in flight.
    pub lease_ttl: Duration,
    /// After this long, a request that was in flight at Salesforce has surely ended there.
    pub in_flight_window: Duration,
    /// How long a caller waits for another instance's refresh or a pending recovery.
    pub max_wait: Duration,
    /// Salesforce's idle refresh-token TTL (30 days): a rejection within it is suspicious.
    pub idle_ttl: Duration,
    /// Retries of a 5xx / unreachable Salesforce within one request.
    pub transient_retries: u32,
    /// Retries after `token request is already being processed`.
    pub concurrent_retries: u32,
    /// First backoff step; doubles each retry, with jitter.
    pub backoff_base: std::time::Duration,
    /// How token traffic leaves (`bind 127.0.0.2`, `proxy http://…`), recorded on each refresh.
    pub egress: Option<String>,
    /// Use every refresh token at least this often (well inside the idle TTL).
    pub heartbeat_interval: Duration,
    /// Learn each new access token's expiry from introspection (`exp`) when the app allows it.
    pub introspect: bool,
}

impl BrokerSettings {
    /// Defaults derived from the upstream request timeout.
    pub fn timing_for(request_timeout: Duration) -> (Duration, Duration) {
        (
            request_timeout + Duration::seconds(15),
            request_timeout + Duration::seconds(5),
        )
    }
}

/// Everything a use case can fail with.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("no connection for {0}")]
    NotFound(ConnectionKey),
    #[error("unknown, used or expired authorization state")]
    InvalidState,
    #[error("salesforce refused the authorization ({error}): {description}")]
    AuthorizationDenied { error: String, description: String },
    #[error("the grant is for org {actual}, but the connection was started for org {expected}")]
    OrgMismatch { expected: OrgId, actual: OrgId },
    #[error("the token response signature does not verify; nothing was stored")]
    SignatureInvalid,
    #[error("salesforce granted no refresh token: add the refresh_token scope to the app")]
    MissingRefreshToken,
    #[error("the connection needs re-authorization by an org admin: {cause}")]
    NeedsReauth { key: ConnectionKey, cause: String },
    #[error("salesforce blocked the refresh by IP: {description}")]
    IpBlocked {
        key: ConnectionKey,
        description: String,
    },
    #[error("the salesforce app is misconfigured: {detail}")]
    AppMisconfigured { detail: String },
    #[error("salesforce is unavailable: {detail}")]
    Unavailable { detail: String },
    #[error("the outcome of a token request is unknown: {detail}")]
    OutcomeUnknown { detail: String },
    #[error("{detail}; retry in {} s", retry_after.num_seconds().max(1))]
    Busy {
        detail: String,
        retry_after: Duration,
    },
    #[error("unexpected answer from salesforce: {detail}")]
    Protocol { detail: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("sealed value could not be opened: {0}")]
    Vault(#[from] VaultError),
}

impl BrokerError {
    /// Translates an upstream failure that is not specific to one connection.
    pub(crate) fn from_upstream(error: SalesforceError) -> Self {
        match error {
            SalesforceError::AppMisconfigured { error, description } => Self::AppMisconfigured {
                detail: format!("{error}: {description}"),
            },
            SalesforceError::AuthorizationRejected { error, description } => {
                Self::AuthorizationDenied { error, description }
            }
            SalesforceError::Unavailable { detail, .. } => Self::Unavailable { detail },
            SalesforceError::OutcomeUnknown { detail } => Self::OutcomeUnknown { detail },
            SalesforceError::ConcurrentRequest => Self::Unavailable {
                detail: "token request is already being processed".into(),
            },
            other => Self::Protocol {
                detail: other.to_string(),
            },
        }
    }
}

/// The use cases, over their ports.
#[derive(Debug)]
pub struct Broker {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) salesforce: Arc<dyn SalesforceOAuth>,
    pub(crate) ring: Arc<KeyRing>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) settings: BrokerSettings,
    /// One refresh at a time per connection in this process.
    pub(crate) refresh_locks: Mutex<HashMap<ConnectionKey, Arc<tokio::sync::Mutex<()>>>>,
    pub(crate) cache: Arc<TokenCache>,
    /// When a successful refresh should next look for an app incident to clear (unix seconds;
    /// 0 = now). Saves a store write per refresh while nothing is wrong.
    pub(crate) incident_check_at: std::sync::atomic::AtomicI64,
    /// Poked when an event is recorded or an endpoint added, so the webhook worker runs now.
    pub(crate) webhook_wake: tokio::sync::Notify,
    /// In-flight records and commits of concurrent refreshes, written in groups.
    pub(crate) rotations: crate::group_commit::GroupCommit,
}

impl Broker {
    pub fn new(
        store: Arc<dyn Store>,
        salesforce: Arc<dyn SalesforceOAuth>,
        ring: Arc<KeyRing>,
        clock: Arc<dyn Clock>,
        settings: BrokerSettings,
    ) -> Self {
        Self {
            rotations: crate::group_commit::GroupCommit::new(store.clone()),
            store,
            salesforce,
            ring,
            clock,
            settings,
            refresh_locks: Mutex::new(HashMap::new()),
            cache: Arc::new(TokenCache::default()),
            incident_check_at: std::sync::atomic::AtomicI64::new(0),
            webhook_wake: tokio::sync::Notify::new(),
        }
    }

    /// A broker with this one's Salesforce client, key ring, clock and settings over another
    /// store: for example one that wraps this broker's store to inject failures in tests.
    /// Its token cache, refresh locks and group writer are its own.
    pub fn on_store(&self, store: Arc<dyn Store>) -> Broker {
        Broker::new(
            store,
            self.salesforce.clone(),
            self.ring.clone(),
            self.clock.clone(),
            self.settings.clone(),
        )
    }

    pub fn settings(&self) -> &BrokerSettings {
        &self.settings
    }
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub(crate) fn seal(&self, reference: &SealedRef, plaintext: &str) -> Sealed {
        self.ring.seal(plaintext.as_bytes(), &reference.aad())
    }

    pub(crate) fn open(
        &self,
        reference: &SealedRef,
        sealed: &Sealed,
    ) -> Result<String, BrokerError> {
        self.ring
            .open(sealed, &reference.aad())?
            .into_string()
            .ok_or(BrokerError::Vault(VaultError::Malformed))
    }

    pub(crate) fn refresh_lock(&self, key: &ConnectionKey) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .refresh_locks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        locks.entry(key.clone()).or_default().clone()
    }

    /// Whether a successful refresh should try to clear an app incident now: at once after this
    /// process saw one, else at most once a minute (another instance may have raised it).
    pub(crate) fn incident_check_due(&self) -> bool {
        use std::sync::atomic::Ordering;
        let now = self.clock.now().timestamp();
        let due = self.incident_check_at.load(Ordering::Relaxed);
        now >= due
            && self
                .incident_check_at
                .compare_exchange(due, now + 60, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// This process saw the app misconfigured: the next success checks at once.
    pub(crate) fn suspect_incident(&self) {
        self.incident_check_at
            .store(0, std::sync::atomic::Ordering::Relaxed);
    }

    /// Drops a connection's lock entry once nobody holds or waits for it.
    pub(crate) fn forget_idle_lock(&self, key: &ConnectionKey) {
        let mut locks = self
            .refresh_locks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if locks
            .get(key)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            locks.remove(key);
        }
    }

    /// Appends an event; a storage failure is logged, never fatal to the caller.
    pub(crate) async fn emit(
        &self,
        kind: &str,
        key: Option<&ConnectionKey>,
        detail: serde_json::Value,
    ) {
        let event = crate::store::NewEvent {
            at: self.clock.now(),
            kind: kind.to_string(),
            org_id: key.map(|k| k.org_id.clone()),
            context: key.map(|k| k.context.clone()),
            detail: detail.to_string(),
        };
        match self.store.record_event(&event).await {
            Ok(_) => self.webhook_wake.notify_one(),
            Err(error) => tracing::error!(%error, kind, "recording an event failed"),
        }
    }
}
