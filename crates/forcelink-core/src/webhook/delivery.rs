//! The webhook delivery worker: turn new events into deliveries, claim the due ones, sign and
//! send them, and record each attempt.
//!
//! `webhook_tick()` first runs the store's fan-out (events after each endpoint's cursor become
//! delivery rows, atomically with the cursor move), then claims due deliveries under a lease
//! (so instances sharing a database do not send one twice at once) and sends them in a window
//! of bounded concurrency that refills as they finish. A 2xx answer delivers; anything else is
//! retried with exponential backoff and jitter, timed by the `Clock`, until `max_attempts`,
//! after which the delivery is failed.
//! A crash at any point leaves a delivery pending (its lease lapses), never lost: at-least-once,
//! with `webhook-id` the same on every attempt for de-duplication. `run_webhooks()` repeats
//! ticks, woken by new events or a poll interval. Nothing here logs a secret or a body.

use std::sync::Arc;
use std::time::Instant;

use chrono::Duration;
use serde_json::{Value, json};

use crate::broker::{Broker, BrokerError};
use crate::store::{AttemptWrite, ClaimedDelivery, DeliveryNext, Event, StoreError};
use crate::webhook::{SendOutcome, WebhookRequest, WebhookSender};

/// How the worker runs.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Requests in flight at once per instance.
    pub concurrency: usize,
    /// Deliveries of one endpoint under lease at once, across instances (see
    /// `WebhookStore::claim_webhook_deliveries`).
    pub per_endpoint: u32,
    /// Events read per endpoint per fan-out pass.
    pub batch: u32,
    /// After this many attempts a delivery is failed.
    pub max_attempts: u32,
    /// Delay before the second attempt; doubles per attempt, with jitter.
    pub backoff_base: Duration,
    /// Longest delay between attempts.
    pub backoff_max: Duration,
    /// Upper bound on one request (enforced by the sender); the claim lease is this + 30 s.
    pub request_timeout: std::time::Duration,
    /// Pause between ticks when nothing wakes the worker.
    pub poll_every: std::time::Duration,
}

/// What one tick did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WebhookTickReport {
    pub enqueued: u64,
    pub claimed: u64,
    pub delivered: u64,
    pub retried: u64,
    pub failed: u64,
}

/// How long to wait after `failed_attempts` failures: `base · 2^(failed_attempts − 1)`, times
/// `jitter` (drawn from [0.75, 1.25)), at most `max`.
pub fn retry_delay(failed_attempts: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let doublings = failed_attempts.saturating_sub(1).min(30);
    let step = base.checked_mul(1_i32 << doublings).unwrap_or(max).min(max);
    let millis = (step.num_milliseconds() as f64 * jitter).round() as i64;
    Duration::milliseconds(millis)
        .min(max)
        .max(Duration::zero())
}

/// The JSON body of a message for an event (the Standard Webhooks `type/timestamp/data` form).
pub fn payload(event: &Event) -> String {
    json!({
        "type": event.kind,
        "timestamp": event.at,
        "data": {
            "event_id": event.id,
            "org_id": event.org_id.as_ref().map(|org| org.to_string()),
            "context": event.context.as_ref().map(|context| context.to_string()),
            "detail": serde_json::from_str::<Value>(&event.detail).unwrap_or(Value::Null),
        },
    })
    .to_string()
}

/// What one attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempted {
    Delivered,
    Retried,
    Failed,
}

/// Whether recording an attempt landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recorded {
    Yes,
    /// The claim no longer held the delivery: its lease lapsed, or the endpoint was deleted.
    No,
    /// Refused on a later try after an earlier one was answered "unavailable": that one most
    /// likely landed.
    AnswerLost,
}

/// The pauses before each new try of recording an attempt the store refused as unavailable.
const FINISH_PAUSES: [std::time::Duration; 3] = [
    std::time::Duration::from_millis(100),
    std::time::Duration::from_millis(500),
    std::time::Duration::from_secs(2),
];

/// How many free slots of a window of `window` make the tick claim again: half the window,
/// or what one endpoint at its bound of `per_endpoint` leaves free if that is less, and at
/// least one. So while one receiver hangs with all its allowed deliveries, the others'
/// answers still free enough slots for a refill.
fn refill_at(window: usize, per_endpoint: u32) -> usize {
    let bound = usize::try_from(per_endpoint.max(1)).unwrap_or(usize::MAX);
    window.div_ceil(2).min(window.saturating_sub(bound)).max(1)
}

/// A tick's deliveries in flight. Dropped with the tick (cancelled at shutdown or restart),
/// they are detached and run to their end instead of being aborted mid-request.
struct InFlight(tokio::task::JoinSet<Result<Attempted, BrokerError>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.detach_all();
    }
}

impl Broker {
    /// One pass: fan out new events, then send everything due now, until nothing is due and
    /// nothing is in flight.
    ///
    /// Deliveries run in a window of `concurrency`, at most `per_endpoint` of one endpoint. The
    /// window is filled again (new events fanned out, due deliveries claimed) when the worker is
    /// woken by a new event, every poll interval while a slot is free, or when enough slots are
    /// free: half the window, or what one endpoint at its bound leaves free if that is less.
    /// So a receiver slow to answer holds only its own slots, and a busy worker claims in
    /// batches, not once per delivery. A delivery whose lease lapses while it is in flight (its
    /// `finish` stalled past the lease) may be claimed and sent again meanwhile; the owner
    /// fence keeps one record.
    ///
    /// A store error stops the claiming; the deliveries in flight finish (they hold leases and
    /// must record their attempts) before the tick returns the error. If the tick itself is
    /// dropped (shutdown, restart), its deliveries are detached, not aborted: they still get
    /// their answers and record them, so a restart does not make them be sent again.
    pub async fn webhook_tick(
        self: &Arc<Self>,
        sender: &Arc<dyn WebhookSender>,
        settings: &WebhookSettings,
    ) -> Result<WebhookTickReport, BrokerError> {
        let mut report = WebhookTickReport::default();
        let window = settings.concurrency.max(1);
        let refill_at = refill_at(window, settings.per_endpoint);
        let mut in_flight = InFlight(tokio::task::JoinSet::new());
        let mut failure = None;
        let mut fill = true;
        loop {
            if fill
                && failure.is_none()
                && let Err(error) = self
                    .fill_window(&mut in_flight.0, window, sender, settings, &mut report)
                    .await
            {
                failure = Some(error);
            }
            if in_flight.0.is_empty() {
                break;
            }
            tokio::select! {
                Some(joined) = in_flight.0.join_next() => {
                    match joined {
                        Ok(Ok(Attempted::Delivered)) => report.delivered += 1,
                        Ok(Ok(Attempted::Retried)) => report.retried += 1,
                        Ok(Ok(Attempted::Failed)) => report.failed += 1,
                        Ok(Err(error)) => {
                            tracing::warn!(%error, "recording a webhook attempt failed; its lease lapses and it is sent again");
                        }
                        Err(error) => {
                            tracing::error!(%error, "a webhook delivery task failed; its lease lapses and it is sent again");
                        }
                    }
                    fill = window - in_flight.0.len() >= refill_at;
                }
                () = self.webhook_wake.notified(), if failure.is_none() => fill = true,
                // Slots can free up elsewhere (another instance's answers under an endpoint's
                // bound) and retries fall due with no event here: look again every poll
                // interval while there is room, as the worker does between ticks.
                () = tokio::time::sleep(settings.poll_every),
                    if failure.is_none() && in_flight.0.len() < window => fill = true,
            }
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(report),
        }
    }

    /// Fans out new events, then claims due deliveries into the window's free slots and starts
    /// them, until the window is full or nothing more is due.
    async fn fill_window(
        self: &Arc<Self>,
        in_flight: &mut tokio::task::JoinSet<Result<Attempted, BrokerError>>,
        window: usize,
        sender: &Arc<dyn WebhookSender>,
        settings: &WebhookSettings,
        report: &mut WebhookTickReport,
    ) -> Result<(), BrokerError> {
        loop {
            let enqueued = self
                .store
                .enqueue_webhook_deliveries(self.clock.now(), settings.batch.max(1))
                .await?;
            report.enqueued += enqueued.deliveries;
            if enqueued.caught_up {
                break;
            }
        }
        let lease = Duration::from_std(settings.request_timeout).unwrap_or(Duration::seconds(30))
            + Duration::seconds(30);
        while in_flight.len() < window {
            let free = window - in_flight.len();
            let now = self.clock.now();
            // A token per claim: it fences `finish` even against this instance's own claims.
            let owner = format!(
                "{}/{}",
                self.settings.instance_id,
                uuid::Uuid::new_v4().simple()
            );
            let claimed = self
                .store
                .claim_webhook_deliveries(
                    &owner,
                    now,
                    now + lease,
                    u32::try_from(free).unwrap_or(u32::MAX),
                    settings.per_endpoint.max(1),
                )
                .await?;
            let short = claimed.len() < free;
            report.claimed += claimed.len() as u64;
            for delivery in claimed {
                let (broker, sender, settings, owner) = (
                    self.clone(),
                    sender.clone(),
                    settings.clone(),
                    owner.clone(),
                );
                in_flight.spawn(async move {
                    broker.deliver(&sender, delivery, &owner, &settings).await
                });
            }
            if short {
                break;
            }
        }
        Ok(())
    }

    async fn deliver(
        &self,
        sender: &Arc<dyn WebhookSender>,
        delivery: ClaimedDelivery,
        owner: &str,
        settings: &WebhookSettings,
    ) -> Result<Attempted, BrokerError> {
        let started = Instant::now();
        let attempt_at = self.clock.now();
        let outcome = match self.open_webhook_secret(&delivery.endpoint_id, &delivery.secret) {
            Ok(secret) => {
                let body = payload(&delivery.event);
                let timestamp = attempt_at.timestamp();
                let signature = secret.sign(&delivery.id, timestamp, &body);
                let request = WebhookRequest {
                    url: delivery.url.clone(),
                    headers: vec![
                        ("content-type", "application/json".to_string()),
                        ("webhook-id", delivery.id.clone()),
                        ("webhook-timestamp", timestamp.to_string()),
                        ("webhook-signature", signature),
                    ],
                    body,
                };
                sender.send(&request).await
            }
            Err(_) => SendOutcome::NoAnswer(
                "the endpoint's secret cannot be opened: a key is missing from the ring".into(),
            ),
        };
        let elapsed = started.elapsed();
        metrics::histogram!("forcelink_webhook_attempt_seconds").record(elapsed.as_secs_f64());
        let attempts = delivery.attempts + 1;
        // An operator's retry gives a fresh budget: count from the attempts made before it.
        let counted = attempts.saturating_sub(delivery.attempts_before_retry);
        let (status_code, error, success) = match &outcome {
            SendOutcome::Answered(status) if (200..300).contains(status) => {
                (Some(*status), None, true)
            }
            SendOutcome::Answered(status) => (Some(*status), Some(format!("HTTP {status}")), false),
            SendOutcome::NoAnswer(why) => (None, Some(why.clone()), false),
        };
        let next = if success {
            DeliveryNext::Delivered
        } else if counted >= settings.max_attempts.max(1) {
            DeliveryNext::Failed
        } else {
            let jitter = rand::random_range(0.75..1.25);
            let delay = retry_delay(counted, settings.backoff_base, settings.backoff_max, jitter);
            DeliveryNext::RetryAt(self.clock.now() + delay)
        };
        let attempted = match next {
            DeliveryNext::Delivered => Attempted::Delivered,
            DeliveryNext::RetryAt(_) => Attempted::Retried,
            DeliveryNext::Failed => Attempted::Failed,
        };
        let outcome_label = match attempted {
            Attempted::Delivered => "delivered",
            Attempted::Retried => "retry",
            Attempted::Failed => "failed",
        };
        metrics::counter!("forcelink_webhook_deliveries_total", "outcome" => outcome_label)
            .increment(1);
        let write = AttemptWrite {
            at: attempt_at,
            status_code,
            error: error.clone(),
            latency_ms: i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX),
            next,
        };
        let recorded = self.record_attempt(&delivery.id, owner, &write).await?;
        match attempted {
            Attempted::Delivered => {
                tracing::debug!(delivery = %delivery.id, endpoint = %delivery.endpoint_id, kind = %delivery.event.kind, attempts, "webhook delivered")
            }
            Attempted::Retried => {
                tracing::info!(delivery = %delivery.id, endpoint = %delivery.endpoint_id, attempts, error = error.as_deref().unwrap_or(""), "webhook attempt failed; will retry")
            }
            Attempted::Failed => {
                tracing::warn!(delivery = %delivery.id, endpoint = %delivery.endpoint_id, attempts, error = error.as_deref().unwrap_or(""), "webhook delivery failed for good")
            }
        }
        match recorded {
            Recorded::Yes => {}
            Recorded::No => {
                tracing::warn!(delivery = %delivery.id, "a webhook attempt was not recorded: its lease lapsed (it may be sent again) or its endpoint was deleted");
            }
            Recorded::AnswerLost => {
                tracing::info!(delivery = %delivery.id, "a webhook attempt's record was refused on a second try: the first try most likely landed though its answer was lost (or the lease lapsed meanwhile, and it may be sent again)");
            }
        }
        Ok(attempted)
    }

    /// Records an attempt, trying again after a short pause when the store is unavailable: a
    /// record that never lands leaves the delivery leased until the lease lapses, and then it
    /// is sent again. Gives up (and leaves that to the lease) after `FINISH_PAUSES`.
    async fn record_attempt(
        &self,
        delivery_id: &str,
        owner: &str,
        write: &AttemptWrite,
    ) -> Result<Recorded, BrokerError> {
        let mut pauses = FINISH_PAUSES.iter();
        let mut tried_before = false;
        loop {
            match self
                .store
                .finish_webhook_attempt(delivery_id, owner, write)
                .await
            {
                Err(StoreError::Unavailable(why)) => match pauses.next() {
                    Some(pause) => {
                        tracing::info!(delivery = %delivery_id, error = %why, "recording a webhook attempt failed; trying again");
                        tried_before = true;
                        tokio::time::sleep(*pause).await;
                    }
                    None => return Err(StoreError::Unavailable(why).into()),
                },
                Ok(true) => return Ok(Recorded::Yes),
                // A try whose commit landed but whose answer was lost released the lease, so
                // the next try finds none: not a lapse.
                Ok(false) if tried_before => return Ok(Recorded::AnswerLost),
                Ok(false) => return Ok(Recorded::No),
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Runs ticks forever (until the task is dropped): after each event is recorded, and at
    /// least every `poll_every` (which is when retries come due).
    pub async fn run_webhooks(
        self: Arc<Self>,
        sender: Arc<dyn WebhookSender>,
        settings: WebhookSettings,
    ) {
        loop {
            match self.webhook_tick(&sender, &settings).await {
                Ok(report) if report.claimed > 0 => tracing::debug!(?report, "webhook tick"),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "webhook tick failed; will retry"),
            }
            tokio::select! {
                () = self.webhook_wake.notified() => {}
                () = tokio::time::sleep(settings.poll_every) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_refills_in_batches_yet_never_waits_on_one_hung_endpoint() {
        assert_eq!(refill_at(8, 4), 4, "the defaults: half the window");
        assert_eq!(refill_at(4, 2), 2);
        assert_eq!(
            refill_at(8, 6),
            2,
            "what a hung endpoint at its bound leaves"
        );
        assert_eq!(
            refill_at(3, 4),
            1,
            "a bound above the window: every free slot"
        );
        assert_eq!(refill_at(1, 1), 1);
        for window in 1..=64 {
            for per_endpoint in 1..=70u32 {
                let refill = refill_at(window, per_endpoint);
                assert!(refill >= 1 && refill <= window.div_ceil(2).max(1));
                let held = (per_endpoint as usize).min(window);
                if held < window {
                    assert!(window - held >= refill, "{window}, {per_endpoint}");
                }
            }
        }
    }

    #[test]
    fn retry_delays_double_from_the_base_and_stop_at_the_cap() {
        let base = Duration::seconds(5);
        let max = Duration::seconds(60);
        let delays: Vec<i64> = (1..=6)
            .map(|failed| retry_delay(failed, base, max, 1.0).num_seconds())
            .collect();
        assert_eq!(delays, vec![5, 10, 20, 40, 60, 60]);
        assert_eq!(retry_delay(1, base, max, 0.75).num_milliseconds(), 3750);
        assert_eq!(retry_delay(5, base, max, 1.25), max);
        assert_eq!(retry_delay(u32::MAX, base, max, 1.0), max);
    }

    #[test]
    fn the_payload_carries_type_timestamp_and_the_event() {
        let event = Event {
            id: 42,
            at: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            kind: "connection.revoked".into(),
            org_id: Some(crate::ids::OrgId::parse("00D000000000062").unwrap()),
            context: Some(crate::ids::ConnectionContext::api()),
            detail: r#"{"generation":3}"#.into(),
        };
        let body: Value = serde_json::from_str(&payload(&event)).unwrap();
        assert_eq!(body["type"], "connection.revoked");
        assert_eq!(body["timestamp"], "2027-01-15T08:00:00Z");
        assert_eq!(body["data"]["event_id"], 42);
        assert_eq!(body["data"]["org_id"], "00D000000000062EAA");
        assert_eq!(body["data"]["context"], "api");
        assert_eq!(body["data"]["detail"]["generation"], 3);
    }
}
