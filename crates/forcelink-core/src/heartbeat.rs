//! The heartbeat: use every active connection's refresh token at least once per interval, well
//! inside Salesforce's idle TTL, through the same exactly-once refresh path agents use.
//!
//! `tick()` claims due connections through the store (a lease each, so several instances never
//! refresh one connection in a round and a dead instance's claims lapse within one lease),
//! refreshes them with bounded concurrency under a per-login-host rate limit, reschedules the
//! ones that failed, and raises at-risk events for refresh tokens nearing the idle TTL.
//! `run()` repeats it. Scheduling cost grows with the number due, not the total.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use chrono::Duration;
use futures_util::FutureExt;
use futures_util::future::OptionFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde_json::json;

use crate::broker::{Broker, BrokerError};
use crate::connection::Connection;
use crate::ids::ConnectionKey;

/// How the heartbeat runs.
#[derive(Debug, Clone)]
pub struct HeartbeatSettings {
    /// At most this many connections claimed per batch.
    pub batch: u32,
    /// Refreshes in flight at once.
    pub concurrency: usize,
    /// Refreshes per second per login host.
    pub per_host_rate: f64,
    /// A connection whose heartbeat failed (IP block, outage) is tried again this much later.
    pub retry_after: Duration,
    /// Pause between ticks.
    pub tick_every: std::time::Duration,
}

/// What one tick did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickReport {
    pub claimed: u64,
    pub refreshed: u64,
    /// Recently used by someone else: rescheduled without a refresh.
    pub skipped: u64,
    pub failed: u64,
    pub at_risk_raised: u64,
}

/// Days-left thresholds that raise `connection.at_risk`, most urgent last.
const AT_RISK_LEVELS: [i32; 3] = [7, 3, 1];

/// Spaces refreshes per login host.
#[derive(Debug, Default)]
pub struct HostPacer {
    next_slot: std::sync::Mutex<HashMap<String, Instant>>,
}

impl HostPacer {
    /// Waits for this host's next slot at `rate` per second.
    pub async fn pace(&self, host: &str, rate: f64) {
        if rate <= 0.0 {
            return;
        }
        let spacing = std::time::Duration::from_secs_f64(1.0 / rate);
        let slot = {
            let mut slots = self
                .next_slot
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let now = Instant::now();
            let slot = slots
                .get(host)
                .copied()
                .filter(|next| *next > now)
                .unwrap_or(now);
            slots.insert(host.to_string(), slot + spacing);
            slot
        };
        tokio::time::sleep_until(slot.into()).await;
    }
}

impl Broker {
    /// One heartbeat pass over everything due now.
    pub async fn heartbeat_tick(
        &self,
        settings: &HeartbeatSettings,
        pacer: &HostPacer,
    ) -> Result<TickReport, BrokerError> {
        let mut report = TickReport::default();
        // The beats run as futures of this task, at most `concurrency` at once: no task per
        // connection, and a beat's wake-ups stay with this task. The next batch is claimed as
        // soon as the last connection of the current one has started, so the last beats of a
        // batch overlap the next claim and the refreshes in flight (and with them the store's
        // write groups) stay at `concurrency` instead of draining to none at every batch.
        // At least one of each, whatever the settings say.
        let (concurrency, batch) = (settings.concurrency.max(1), settings.batch.max(1));
        let mut waiting = Vec::new().into_iter();
        let mut beats = FuturesUnordered::new();
        let mut claim = Some(self.claim_batch(batch));
        let mut more_due = true;
        let mut claim_failed = None;
        loop {
            while beats.len() < concurrency {
                let Some(connection) = waiting.next() else {
                    break;
                };
                beats.push(AssertUnwindSafe(self.beat(connection, settings, pacer)).catch_unwind());
            }
            if claim.is_none() && more_due && waiting.len() == 0 {
                claim = Some(self.claim_batch(batch));
            }
            tokio::select! {
                // Beats first: a finished beat frees a slot for a waiting connection.
                biased;
                Some(beat) = beats.next(), if !beats.is_empty() => match beat {
                    Ok(Beat::Refreshed) => report.refreshed += 1,
                    Ok(Beat::Skipped) => report.skipped += 1,
                    Ok(Beat::Failed) => report.failed += 1,
                    Err(_) => {
                        tracing::error!(
                            "a heartbeat refresh panicked; its lease expires by itself"
                        );
                        report.failed += 1;
                    }
                },
                Some(claimed) = OptionFuture::from(claim.as_mut()), if claim.is_some() => {
                    claim = None;
                    match claimed {
                        Ok(claimed) => {
                            // A short (or empty) batch was all that is due.
                            more_due = claimed.len() as u32 >= batch;
                            report.claimed += claimed.len() as u64;
                            waiting = claimed.into_iter();
                        }
                        // No more claims; the beats in flight finish first: they hold leases
                        // and in-flight records that must not be abandoned half-way.
                        Err(error) => {
                            more_due = false;
                            claim_failed = Some(error);
                        }
                    }
                }
                else => break,
            }
        }
        if let Some(error) = claim_failed {
            return Err(error.into());
        }
        report.at_risk_raised = self.raise_at_risk().await?;
        Ok(report)
    }

    /// Claims (leases) the next `batch` due connections.
    fn claim_batch(
        &self,
        batch: u32,
    ) -> futures_util::future::BoxFuture<'_, Result<Vec<Connection>, crate::store::StoreError>>
    {
        let now = self.clock.now();
        self.store.claim_due_heartbeats(
            &self.settings.instance_id,
            now,
            now + self.settings.lease_ttl,
            batch,
        )
    }

    async fn beat(
        &self,
        connection: Connection,
        settings: &HeartbeatSettings,
        pacer: &HostPacer,
    ) -> Beat {
        let key = connection.key.clone();
        let claimed_generation = connection.generation;
        let lock = self.refresh_lock(&key);
        let outcome = {
            let _single_flight = lock.lock().await;
            if settings.per_host_rate > 0.0 {
                pacer
                    .pace(&connection.login_host.origin(), settings.per_host_rate)
                    .await;
            }
            // The refresh path starts from the claimed row under the claim's lease, and its
            // compare-and-swap catches anything that changed since (another instance may have
            // used the token meanwhile); then it re-reads, and refreshes only if still due.
            match self.obtain_claimed(connection).await {
                // The refresh path released the lease itself (with its commit).
                Ok(token) if token.generation > claimed_generation => (Beat::Refreshed, false),
                // Not due any more (used meanwhile): the claim's lease is still ours.
                Ok(_) => (Beat::Skipped, true),
                Err(error) => {
                    let claim_untouched = matches!(
                        error,
                        BrokerError::NeedsReauth { .. } | BrokerError::NotFound(_)
                    );
                    self.heartbeat_failed(&key, &error, settings).await;
                    (Beat::Failed, claim_untouched)
                }
            }
        };
        let (outcome, release) = outcome;
        if release
            && let Err(error) = self
                .store
                .release_lease(&key, &self.settings.instance_id)
                .await
        {
            tracing::warn!(connection = %key, %error, "releasing a heartbeat lease failed; it expires by itself");
        }
        drop(lock);
        self.forget_idle_lock(&key);
        outcome
    }

    async fn heartbeat_failed(
        &self,
        key: &ConnectionKey,
        error: &BrokerError,
        settings: &HeartbeatSettings,
    ) {
        tracing::warn!(connection = %key, %error, "heartbeat refresh failed");
        if matches!(
            error,
            BrokerError::NeedsReauth { .. } | BrokerError::NotFound(_)
        ) {
            return;
        }
        let retry_at = self.clock.now() + settings.retry_after;
        if let Err(error) = self.store.set_heartbeat_due(key, retry_at).await {
            tracing::warn!(connection = %key, %error, "rescheduling a failed heartbeat failed");
        }
    }

    /// Raises `connection.at_risk` once per threshold for refresh tokens whose idle TTL ends
    /// within 7, 3 or 1 days. Returns how many it raised.
    pub async fn raise_at_risk(&self) -> Result<u64, BrokerError> {
        let now = self.clock.now();
        let idle_ttl = self.settings.idle_ttl;
        let widest = Duration::days(i64::from(AT_RISK_LEVELS[0]));
        let at_risk = self
            .store
            .idle_refresh_tokens(now - (idle_ttl - widest), 1000)
            .await?;
        let mut raised = 0;
        for connection in at_risk {
            let left = connection.refresh_token_used_at + idle_ttl - now;
            let Some(level) = AT_RISK_LEVELS
                .iter()
                .rev()
                .copied()
                .find(|days| left <= Duration::days(i64::from(*days)))
            else {
                continue;
            };
            let already = connection.at_risk_level != 0 && connection.at_risk_level <= level;
            if already || !self.store.set_at_risk_level(&connection.key, level).await? {
                continue;
            }
            raised += 1;
            tracing::warn!(connection = %connection.key, days_left = level, "refresh token at risk of idle expiry");
            let detail = json!({
                "days_left": level,
                "idle_expires_at": connection.refresh_token_used_at + idle_ttl,
                "refresh_token_used_at": connection.refresh_token_used_at,
            });
            self.emit("connection.at_risk", Some(&connection.key), detail)
                .await;
        }
        Ok(raised)
    }

    /// Runs ticks forever (until the task is dropped).
    pub async fn run_heartbeat(self: Arc<Self>, settings: HeartbeatSettings) {
        let pacer = HostPacer::default();
        loop {
            match self.heartbeat_tick(&settings, &pacer).await {
                Ok(report) if report.claimed > 0 || report.at_risk_raised > 0 => {
                    tracing::info!(?report, "heartbeat tick");
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "heartbeat tick failed; will retry"),
            }
            let jitter = rand::random_range(0.8..1.2);
            tokio::time::sleep(settings.tick_every.mul_f64(jitter)).await;
        }
    }
}

/// What one connection's heartbeat did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Beat {
    Refreshed,
    Skipped,
    Failed,
}
