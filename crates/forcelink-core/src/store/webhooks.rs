//! The webhook half of the Store port: endpoints, the durable outbox of deliveries, and the
//! delivery log. A separate trait (`Store` requires it) so adapters keep it in files of its own.
//!
//! The outbox is derived from the events table, which stays the source of truth: each
//! endpoint has a cursor (the last event id it has considered), and `enqueue_webhook_deliveries`
//! inserts the delivery rows for the events after it and advances it **in one transaction**,
//! so an event is turned into a delivery exactly once per endpoint whatever crashes. Deliveries
//! are claimed under a lease (PostgreSQL: `FOR UPDATE SKIP LOCKED`), so instances sharing a
//! database do not all send one; the contract is at-least-once. Secrets cross this port only as
//! `Sealed` values. This module holds types and the trait, never SQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::store::{Event, StoreError};
use crate::vault::Sealed;

/// Where an endpoint was configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointSource {
    /// The config file: registered at start, removed when it leaves the file.
    Config,
    /// The admin API.
    Api,
}

impl EndpointSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Api => "api",
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "config" => Some(Self::Config),
            "api" => Some(Self::Api),
            _ => None,
        }
    }
}

/// A receiver of webhooks, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEndpoint {
    pub id: String,
    pub url: String,
    /// The event kinds it receives.
    pub event_kinds: Vec<String>,
    /// The signing secret (`whsec_…`), sealed under `SealedRef::webhook_secret(id)`.
    pub secret: Sealed,
    pub source: EndpointSource,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Every event with an id up to this one has been turned into a delivery (or skipped).
    pub cursor: i64,
}

/// An endpoint to insert, or (same id) to update in place keeping its cursor and deliveries.
#[derive(Debug, Clone)]
pub struct EndpointWrite {
    pub id: String,
    pub url: String,
    pub event_kinds: Vec<String>,
    pub secret: Sealed,
    pub source: EndpointSource,
    pub now: DateTime<Utc>,
}

/// What one fan-out pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Enqueued {
    /// Delivery rows inserted.
    pub deliveries: u64,
    /// Every endpoint's cursor reached the newest event (no full batch was read).
    pub caught_up: bool,
}

/// One endpoint's deliveries that are not delivered: what an operator alerts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookBacklog {
    pub endpoint_id: String,
    /// Deliveries still to be sent (due now or waiting for a retry).
    pub pending: u64,
    /// Deliveries given up on (out of attempts, or refused for good).
    pub failed: u64,
    /// When the oldest pending delivery was queued.
    pub oldest_pending_at: Option<DateTime<Utc>>,
}

impl WebhookBacklog {
    /// Joins a store's backlog counts, pending `(endpoint, count, oldest queued)` and failed
    /// `(endpoint, count)`, into one backlog per endpoint, by endpoint id.
    pub fn merge(
        pending: Vec<(String, u64, DateTime<Utc>)>,
        failed: Vec<(String, u64)>,
    ) -> Vec<WebhookBacklog> {
        let mut by_endpoint: std::collections::BTreeMap<String, WebhookBacklog> =
            std::collections::BTreeMap::new();
        let empty = |endpoint_id: &str| WebhookBacklog {
            endpoint_id: endpoint_id.to_string(),
            pending: 0,
            failed: 0,
            oldest_pending_at: None,
        };
        for (endpoint_id, count, oldest) in pending {
            let entry = by_endpoint
                .entry(endpoint_id.clone())
                .or_insert_with(|| empty(&endpoint_id));
            entry.pending += count;
            entry.oldest_pending_at =
                Some(entry.oldest_pending_at.map_or(oldest, |o| o.min(oldest)));
        }
        for (endpoint_id, count) in failed {
            by_endpoint
                .entry(endpoint_id.clone())
                .or_insert_with(|| empty(&endpoint_id))
                .failed += count;
        }
        by_endpoint.into_values().collect()
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Waiting for its next attempt.
    Pending,
    /// A 2xx answer was received.
    Delivered,
    /// Gave up after the maximum number of attempts.
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// A delivery claimed for sending, with everything needed to send it.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    /// The message id (`msg_…`): the `webhook-id` header, the same on every attempt.
    pub id: String,
    pub endpoint_id: String,
    pub url: String,
    pub secret: Sealed,
    pub event: Event,
    /// Attempts made before this one.
    pub attempts: u32,
    /// Attempts made before an operator last asked for a retry (0 if none): the attempt budget
    /// and the backoff count from here.
    pub attempts_before_retry: u32,
}

/// Which deliveries an operator retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryTarget {
    /// One delivery, by its message id.
    Delivery(String),
    /// An endpoint's deliveries, optionally only those of one event kind and those queued at
    /// or after a time.
    Endpoint {
        id: String,
        event_kind: Option<String>,
        since: Option<DateTime<Utc>>,
    },
}

/// What an operator's retry did, by delivery id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retried {
    /// Failed deliveries made pending again, due now, with a fresh attempt budget.
    pub failed: Vec<String>,
    /// Pending deliveries that were waiting for a later retry (and not in flight), made due now;
    /// their attempt budget is unchanged.
    pub brought_forward: Vec<String>,
}

impl Retried {
    pub fn is_empty(&self) -> bool {
        self.failed.is_empty() && self.brought_forward.is_empty()
    }
}

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryNext {
    Delivered,
    RetryAt(DateTime<Utc>),
    Failed,
}

/// The result of one attempt, to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptWrite {
    pub at: DateTime<Utc>,
    /// The HTTP status, when an answer arrived.
    pub status_code: Option<u16>,
    /// Why it failed, never a secret (`HTTP 500`, `timed out`, `connection refused`).
    pub error: Option<String>,
    pub latency_ms: i64,
    pub next: DeliveryNext,
}

/// One recorded attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    /// 1 for the first attempt.
    pub number: u32,
    pub at: DateTime<Utc>,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub latency_ms: i64,
}

/// A delivery as the log shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookDelivery {
    pub id: String,
    pub endpoint_id: String,
    pub event_id: i64,
    pub event_kind: String,
    pub state: DeliveryState,
    pub attempts: u32,
    /// When an operator last retried it (if ever), and the attempts made before that retry.
    pub retried_at: Option<DateTime<Utc>>,
    pub attempts_before_retry: u32,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Every recorded attempt, oldest first.
    pub attempt_log: Vec<DeliveryAttempt>,
}

/// Which deliveries to list (newest event first).
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub endpoint_id: Option<String>,
    pub event_kind: Option<String>,
    pub event_id: Option<i64>,
    pub state: Option<DeliveryState>,
    /// 0 = the adapter's default.
    pub limit: u32,
}

/// Durable storage of webhook endpoints, their outbox and the delivery log.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Inserts an endpoint whose cursor starts at the newest stored event (it receives only
    /// later events), or, if one with this id exists, updates its url, kinds, secret and
    /// source in place, keeping its cursor, created_at and deliveries.
    async fn save_webhook_endpoint(
        &self,
        write: &EndpointWrite,
    ) -> Result<WebhookEndpoint, StoreError>;
    /// Every endpoint, oldest first (then by id).
    async fn webhook_endpoints(&self) -> Result<Vec<WebhookEndpoint>, StoreError>;
    async fn webhook_endpoint(&self, id: &str) -> Result<Option<WebhookEndpoint>, StoreError>;
    /// Removes an endpoint with its deliveries and their attempts. Returns whether it existed.
    async fn delete_webhook_endpoint(&self, id: &str) -> Result<bool, StoreError>;
    /// Replaces an endpoint's sealed secret if it is still `expected` (key rotation).
    async fn replace_webhook_secret(
        &self,
        id: &str,
        expected: &Sealed,
        replacement: &Sealed,
    ) -> Result<bool, StoreError>;

    /// For every endpoint, reads up to `batch` events after its cursor, inserts a pending
    /// delivery (due at `now`, message id generated here) for each whose kind it receives,
    /// and advances the cursor past all it read, in one transaction per pass. Concurrent
    /// callers (other processes) never create a delivery twice (one row per endpoint and
    /// event) and never skip an event.
    async fn enqueue_webhook_deliveries(
        &self,
        now: DateTime<Utc>,
        batch: u32,
    ) -> Result<Enqueued, StoreError>;
    /// Leases (for `owner`, until `lease_until`) up to `limit` pending deliveries due at
    /// `now` whose lease is free or expired, oldest event first, and returns them with their
    /// endpoint and event. Concurrent claimers never get the same delivery. Callers pass an
    /// `owner` unique to this claim (instance + random), so it also fences `finish`.
    ///
    /// No endpoint is given deliveries that would leave more than `per_endpoint` of its
    /// deliveries under an unexpired lease (held by any claimer), so one slow receiver cannot
    /// take every slot. Claims on a shared database take turns, each counting the leases of the
    /// claims before it, so instances claiming at once stay within the bound together.
    async fn claim_webhook_deliveries(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        per_endpoint: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError>;
    /// Records an attempt and moves the delivery on (delivered, retry at, failed), releasing
    /// the lease, if `owner` still holds it; otherwise changes nothing. Returns whether it did.
    async fn finish_webhook_attempt(
        &self,
        delivery_id: &str,
        owner: &str,
        attempt: &AttemptWrite,
    ) -> Result<bool, StoreError>;
    /// An operator's retry, in one transaction. The target's failed deliveries become pending
    /// again, due at `now`, with a fresh attempt budget (`attempts_before_retry` = their
    /// attempts so far, which stay in the log; `retried_at` = `now`). Its pending deliveries
    /// waiting for a retry after `now` and not leased (or whose lease has lapsed) become due at
    /// `now`, their budget and `retried_at` unchanged. Delivered deliveries, pending ones
    /// already due, and leased ones (in flight) are left as they are.
    async fn retry_webhook_deliveries(
        &self,
        target: &RetryTarget,
        now: DateTime<Utc>,
    ) -> Result<Retried, StoreError>;
    /// A delivery's state, if it exists.
    async fn webhook_delivery_state(&self, id: &str) -> Result<Option<DeliveryState>, StoreError>;
    /// The delivery log, newest event first, with each delivery's attempts.
    async fn webhook_deliveries(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<Vec<WebhookDelivery>, StoreError>;
    /// Every endpoint with a pending or failed delivery, by id: its counts and when its oldest
    /// pending delivery was queued. Read through indexes of the undelivered rows only, so its
    /// cost follows the backlog, not the delivery log.
    async fn webhook_backlog(&self) -> Result<Vec<WebhookBacklog>, StoreError>;
}
