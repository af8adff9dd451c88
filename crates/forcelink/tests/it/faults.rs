//! A store that passes every call to a real one, except the failures a test asks for: the
//! paths where the store fails half-way through the broker's work, which a real database does
//! not fail on demand.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use forcelink_core::store::{
    AttemptWrite, ClaimedDelivery, DeliveryFilter, DeliveryState, EndpointWrite, Enqueued, Retried,
    RetryTarget, WebhookBacklog, WebhookDelivery, WebhookEndpoint,
};
use forcelink_core::{
    AgentKey, AgentKeyStore, CommitOutcome, Connection, ConnectionHealth, ConnectionKey,
    ConnectionState, Event, EventFilter, GrantWrite, Incident, LeaseOutcome, NewEvent,
    PendingAuthorization, RefreshAttempt, RefreshWrite, RotationEnd, RotationInFlight,
    RotationWrite, RotationWritten, SavedGrant, Sealed, SealedPage, SealedRef, Store, StoreError,
    WebhookStore,
};

/// What a failure injected by `FaultyStore` says.
pub const INJECTED: &str = "injected by the test";

#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn Store>,
    /// Heartbeat claims still to pass before one fails (once); `None`: every claim passes.
    claims_to_pass: Mutex<Option<u32>>,
    /// The same for webhook delivery claims.
    webhook_claims_to_pass: Mutex<Option<u32>>,
    /// Whether a webhook claim has failed.
    webhook_claim_failed: Mutex<bool>,
    /// Webhook attempt records still to fail as unavailable.
    webhook_finishes_to_fail: Mutex<u32>,
    webhook_finish_answers_to_lose: Mutex<u32>,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            claims_to_pass: Mutex::new(None),
            webhook_claims_to_pass: Mutex::new(None),
            webhook_claim_failed: Mutex::new(false),
            webhook_finishes_to_fail: Mutex::new(0),
            webhook_finish_answers_to_lose: Mutex::new(0),
        }
    }

    /// Lets `passing` heartbeat claims through, fails the next one, then lets all through.
    pub fn fail_claim_after(&self, passing: u32) {
        *self.claims_to_pass.lock().unwrap() = Some(passing);
    }

    /// Lets `passing` webhook delivery claims through, fails the next one, then lets all
    /// through.
    pub fn fail_webhook_claim_after(&self, passing: u32) {
        *self.webhook_claims_to_pass.lock().unwrap() = Some(passing);
    }

    /// Fails the next `times` records of a webhook attempt as unavailable.
    pub fn fail_webhook_finishes(&self, times: u32) {
        *self.webhook_finishes_to_fail.lock().unwrap() = times;
    }

    /// Lets the next `times` records of a webhook attempt land, and answers each as
    /// unavailable (a commit whose answer was lost).
    pub fn lose_webhook_finish_answers(&self, times: u32) {
        *self.webhook_finish_answers_to_lose.lock().unwrap() = times;
    }

    /// Whether the webhook claim asked to fail has failed.
    pub fn webhook_claim_failed(&self) -> bool {
        *self.webhook_claim_failed.lock().unwrap()
    }

    fn webhook_claim_fails(&self) -> bool {
        let fails = fails_now(&self.webhook_claims_to_pass);
        if fails {
            *self.webhook_claim_failed.lock().unwrap() = true;
        }
        fails
    }
}

/// Counts one call against `to_pass`: true (once) when it has run out.
fn fails_now(to_pass: &Mutex<Option<u32>>) -> bool {
    let mut left = to_pass.lock().unwrap();
    match *left {
        Some(0) => {
            *left = None;
            true
        }
        Some(n) => {
            *left = Some(n - 1);
            false
        }
        None => false,
    }
}

#[async_trait]
impl Store for FaultyStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn insert_pending(&self, pending: &PendingAuthorization) -> Result<(), StoreError> {
        self.inner.insert_pending(pending).await
    }
    async fn take_pending(
        &self,
        state_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<PendingAuthorization>, StoreError> {
        self.inner.take_pending(state_hash, now).await
    }
    async fn purge_expired_pending(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.inner.purge_expired_pending(now).await
    }
    async fn save_grant(&self, grant: &GrantWrite) -> Result<SavedGrant, StoreError> {
        self.inner.save_grant(grant).await
    }
    async fn connection(&self, key: &ConnectionKey) -> Result<Option<Connection>, StoreError> {
        self.inner.connection(key).await
    }
    async fn connections(&self) -> Result<Vec<Connection>, StoreError> {
        self.inner.connections().await
    }
    async fn commit_refresh(
        &self,
        key: &ConnectionKey,
        expected_generation: i64,
        attempt_id: Option<&str>,
        write: &RefreshWrite,
    ) -> Result<CommitOutcome, StoreError> {
        self.inner
            .commit_refresh(key, expected_generation, attempt_id, write)
            .await
    }
    async fn acquire_lease(
        &self,
        key: &ConnectionKey,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<LeaseOutcome, StoreError> {
        self.inner.acquire_lease(key, owner, now, until).await
    }
    async fn renew_lease(
        &self,
        key: &ConnectionKey,
        owner: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.inner.renew_lease(key, owner, until).await
    }
    async fn release_lease(&self, key: &ConnectionKey, owner: &str) -> Result<bool, StoreError> {
        self.inner.release_lease(key, owner).await
    }
    async fn begin_rotation(
        &self,
        key: &ConnectionKey,
        expected_generation: i64,
        replacing: Option<&str>,
        record: &RotationInFlight,
    ) -> Result<bool, StoreError> {
        self.inner
            .begin_rotation(key, expected_generation, replacing, record)
            .await
    }
    async fn end_rotation(
        &self,
        key: &ConnectionKey,
        attempt_id: &str,
        end: &RotationEnd,
    ) -> Result<bool, StoreError> {
        self.inner.end_rotation(key, attempt_id, end).await
    }
    async fn set_health(
        &self,
        key: &ConnectionKey,
        health: ConnectionHealth,
        detail: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.inner.set_health(key, health, detail, now).await
    }
    async fn write_rotations(
        &self,
        writes: &[RotationWrite],
    ) -> Result<Vec<RotationWritten>, StoreError> {
        self.inner.write_rotations(writes).await
    }
    async fn record_attempt(&self, attempt: &RefreshAttempt) -> Result<(), StoreError> {
        self.inner.record_attempt(attempt).await
    }
    async fn attempts(
        &self,
        key: &ConnectionKey,
        limit: u32,
    ) -> Result<Vec<RefreshAttempt>, StoreError> {
        self.inner.attempts(key, limit).await
    }
    async fn attempts_presenting(
        &self,
        key: &ConnectionKey,
        old_refresh_hash: &str,
    ) -> Result<Vec<RefreshAttempt>, StoreError> {
        self.inner.attempts_presenting(key, old_refresh_hash).await
    }
    async fn record_event(&self, event: &NewEvent) -> Result<i64, StoreError> {
        self.inner.record_event(event).await
    }
    async fn events(&self, filter: &EventFilter) -> Result<Vec<Event>, StoreError> {
        self.inner.events(filter).await
    }
    async fn raise_incident(
        &self,
        kind: &str,
        detail: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.inner.raise_incident(kind, detail, now).await
    }
    async fn clear_incident(&self, kind: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.inner.clear_incident(kind, now).await
    }
    async fn incidents(&self) -> Result<Vec<Incident>, StoreError> {
        self.inner.incidents().await
    }
    async fn set_state(
        &self,
        key: &ConnectionKey,
        expected_generation: Option<i64>,
        state: ConnectionState,
        cause: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.inner
            .set_state(key, expected_generation, state, cause, now)
            .await
    }
    async fn claim_due_heartbeats(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Connection>, StoreError> {
        if fails_now(&self.claims_to_pass) {
            return Err(StoreError::Unavailable(INJECTED.into()));
        }
        self.inner
            .claim_due_heartbeats(owner, now, lease_until, limit)
            .await
    }
    async fn set_heartbeat_due(
        &self,
        key: &ConnectionKey,
        due_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.inner.set_heartbeat_due(key, due_at).await
    }
    async fn idle_refresh_tokens(
        &self,
        used_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Connection>, StoreError> {
        self.inner.idle_refresh_tokens(used_before, limit).await
    }
    async fn lost_rotations(
        &self,
        started_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Connection>, StoreError> {
        self.inner.lost_rotations(started_before, limit).await
    }
    async fn set_at_risk_level(&self, key: &ConnectionKey, level: i32) -> Result<bool, StoreError> {
        self.inner.set_at_risk_level(key, level).await
    }
    async fn count_by_state(&self) -> Result<Vec<(ConnectionState, u64)>, StoreError> {
        self.inner.count_by_state().await
    }
    async fn set_access_expiry(
        &self,
        key: &ConnectionKey,
        expected_generation: i64,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.inner
            .set_access_expiry(key, expected_generation, expires_at)
            .await
    }
    async fn delete_connection(
        &self,
        key: &ConnectionKey,
    ) -> Result<Option<Connection>, StoreError> {
        self.inner.delete_connection(key).await
    }
    async fn sealed_values(
        &self,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<SealedPage, StoreError> {
        self.inner.sealed_values(cursor, limit).await
    }
    async fn replace_sealed(
        &self,
        reference: &SealedRef,
        expected: &Sealed,
        replacement: &Sealed,
    ) -> Result<bool, StoreError> {
        self.inner
            .replace_sealed(reference, expected, replacement)
            .await
    }
}

#[async_trait]
impl AgentKeyStore for FaultyStore {
    async fn insert_agent_key(&self, key: &AgentKey) -> Result<bool, StoreError> {
        self.inner.insert_agent_key(key).await
    }
    async fn agent_key_by_hash(&self, key_hash: &str) -> Result<Option<AgentKey>, StoreError> {
        self.inner.agent_key_by_hash(key_hash).await
    }
    async fn agent_keys(&self) -> Result<Vec<AgentKey>, StoreError> {
        self.inner.agent_keys().await
    }
    async fn revoke_agent_key(
        &self,
        name_or_id: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<AgentKey>, StoreError> {
        self.inner.revoke_agent_key(name_or_id, at).await
    }
    async fn touch_agent_key(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.inner.touch_agent_key(id, at).await
    }
}

#[async_trait]
impl WebhookStore for FaultyStore {
    async fn save_webhook_endpoint(
        &self,
        write: &EndpointWrite,
    ) -> Result<WebhookEndpoint, StoreError> {
        self.inner.save_webhook_endpoint(write).await
    }
    async fn webhook_endpoints(&self) -> Result<Vec<WebhookEndpoint>, StoreError> {
        self.inner.webhook_endpoints().await
    }
    async fn webhook_endpoint(&self, id: &str) -> Result<Option<WebhookEndpoint>, StoreError> {
        self.inner.webhook_endpoint(id).await
    }
    async fn delete_webhook_endpoint(&self, id: &str) -> Result<bool, StoreError> {
        self.inner.delete_webhook_endpoint(id).await
    }
    async fn replace_webhook_secret(
        &self,
        id: &str,
        expected: &Sealed,
        replacement: &Sealed,
    ) -> Result<bool, StoreError> {
        self.inner
            .replace_webhook_secret(id, expected, replacement)
            .await
    }
    async fn enqueue_webhook_deliveries(
        &self,
        now: DateTime<Utc>,
        batch: u32,
    ) -> Result<Enqueued, StoreError> {
        self.inner.enqueue_webhook_deliveries(now, batch).await
    }
    async fn claim_webhook_deliveries(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        per_endpoint: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        if self.webhook_claim_fails() {
            return Err(StoreError::Unavailable(INJECTED.into()));
        }
        self.inner
            .claim_webhook_deliveries(owner, now, lease_until, limit, per_endpoint)
            .await
    }
    async fn finish_webhook_attempt(
        &self,
        delivery_id: &str,
        owner: &str,
        attempt: &AttemptWrite,
    ) -> Result<bool, StoreError> {
        {
            let mut left = self.webhook_finishes_to_fail.lock().unwrap();
            if *left > 0 {
                *left -= 1;
                return Err(StoreError::Unavailable(INJECTED.into()));
            }
        }
        let finished = self
            .inner
            .finish_webhook_attempt(delivery_id, owner, attempt)
            .await;
        let mut left = self.webhook_finish_answers_to_lose.lock().unwrap();
        if *left > 0 {
            *left -= 1;
            return Err(StoreError::Unavailable(INJECTED.into()));
        }
        finished
    }
    async fn webhook_deliveries(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        self.inner.webhook_deliveries(filter).await
    }
    async fn retry_webhook_deliveries(
        &self,
        target: &RetryTarget,
        now: DateTime<Utc>,
    ) -> Result<Retried, StoreError> {
        self.inner.retry_webhook_deliveries(target, now).await
    }
    async fn webhook_delivery_state(&self, id: &str) -> Result<Option<DeliveryState>, StoreError> {
        self.inner.webhook_delivery_state(id).await
    }
    async fn webhook_backlog(&self) -> Result<Vec<WebhookBacklog>, StoreError> {
        self.inner.webhook_backlog().await
    }
}
