//! Refresh exactly once under rotation, across callers, instances and crashes.
//!
//! A refresh runs only while this instance holds the connection's lease in the store (owner,
//! expiry longer than the upstream timeout, renewed while the request is in flight, released
//! only by its owner). Before the request is sent, a rotation-in-flight record is made durable;
//! the new tokens are committed with a compare-and-swap on the generation and that record, so
//! a stale owner can never overwrite a newer grant. A record found at lease time means an
//! earlier attempt's outcome was lost: once Salesforce's in-flight window has passed, the
//! stored token is tried exactly once (`recovery`). Whoever loses a race re-reads the store.

use std::time::Duration as StdDuration;

use chrono::Duration;
use rand::RngExt;
use sha2::{Digest, Sha256};

use crate::broker::{Broker, BrokerError};
use crate::cache::IssuedToken;
use crate::connection::{Connection, RotationInFlight};
use crate::ids::ConnectionKey;
use crate::pkce::hex;
use crate::salesforce::RefreshGrant;
use crate::secret::RefreshToken;
use crate::store::{
    BeginWrite, LeaseOutcome, RotationWrite, RotationWritten, SealedField, SealedRef,
};

/// What one pass under the lease decided.
#[derive(Debug)]
pub(crate) enum Step {
    Done(IssuedToken),
    /// Done, and the commit released the lease with the new tokens.
    Committed(IssuedToken),
    /// Try again after this long (re-reading the store first), within the caller's wait.
    Retry {
        after: Duration,
        why: &'static str,
    },
    /// Salesforce said another request with this token is in flight: back off and re-read.
    Concurrent,
    /// Salesforce is unavailable: back off and try again a few times.
    Transient(BrokerError),
    Fail(BrokerError),
}

/// SHA-256 hex of a refresh token, as kept in lineage and in-flight records.
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

impl Broker {
    /// The slow path: refresh under the lease, or take what another refresher stored.
    pub(crate) async fn obtain(
        &self,
        key: &ConnectionKey,
        stale: Option<&str>,
    ) -> Result<IssuedToken, BrokerError> {
        self.obtain_with(key, stale, false, None).await
    }

    /// Uses the refresh token now, even if the access token is fresh (the heartbeat), starting
    /// from `claimed`: the connection as the heartbeat's claim returned it, under a lease this
    /// instance took. The caller holds this process's single-flight lock for the connection.
    pub(crate) async fn obtain_claimed(
        &self,
        claimed: Connection,
    ) -> Result<IssuedToken, BrokerError> {
        let key = claimed.key.clone();
        self.obtain_with(&key, None, true, Some(claimed)).await
    }

    /// The refresh loop. A `claimed` connection stands in for the first round's read and lease
    /// if this instance owns its lease: it may be stale by now, which the compare-and-swap of
    /// `begin_rotation` (lease owner, generation, in-flight record) catches; the next round
    /// then reads and leases as usual.
    async fn obtain_with(
        &self,
        key: &ConnectionKey,
        stale: Option<&str>,
        force: bool,
        claimed: Option<Connection>,
    ) -> Result<IssuedToken, BrokerError> {
        let owner = self.settings.instance_id.as_str();
        let mut claimed = claimed.filter(|connection| {
            connection.state == crate::connection::ConnectionState::Active
                && connection
                    .lease
                    .as_ref()
                    .is_some_and(|lease| lease.owner == owner)
        });
        let deadline = self.clock.now() + self.settings.max_wait;
        let mut round: u32 = 0;
        let mut concurrent_left = self.settings.concurrent_retries;
        let mut transient_left = self.settings.transient_retries;
        loop {
            let (connection, leased) = match claimed.take() {
                Some(connection) => (connection, true),
                None => (self.load_active(key).await?, false),
            };
            // A lost rotation whose window has passed is settled first, fresh token or not.
            let force = force && self.heartbeat_still_due(&connection);
            let settle_first = force || self.lost_rotation_due(&connection);
            if !settle_first && let Some(token) = self.usable(&connection, stale)? {
                return Ok(token);
            }
            let now = self.clock.now();
            let lease = if leased {
                LeaseOutcome::Acquired(connection)
            } else {
                self.store
                    .acquire_lease(key, owner, now, now + self.settings.lease_ttl)
                    .await?
            };
            let step = match lease {
                LeaseOutcome::Missing => return Err(BrokerError::NotFound(key.clone())),
                LeaseOutcome::Busy { until, .. } => {
                    metrics::counter!("forcelink_lease_contention_total").increment(1);
                    Step::Retry {
                        after: (until - now).clamp(Duration::milliseconds(20), self.backoff(round)),
                        why: "another instance is refreshing this connection",
                    }
                }
                LeaseOutcome::Acquired(connection) => {
                    let step = self.under_lease(connection, stale, force).await;
                    if !matches!(step, Step::Committed(_))
                        && let Err(error) = self.store.release_lease(key, owner).await
                    {
                        tracing::warn!(connection = %key, %error, "releasing the refresh lease failed; it expires by itself");
                    }
                    step
                }
            };
            let (after, why) = match step {
                Step::Done(token) | Step::Committed(token) => return Ok(token),
                Step::Fail(error) => return Err(error),
                Step::Transient(error) if transient_left == 0 => return Err(error),
                Step::Transient(_) => {
                    transient_left -= 1;
                    (self.backoff(round), "salesforce is unavailable")
                }
                Step::Concurrent if concurrent_left == 0 => {
                    return Err(BrokerError::Busy {
                        detail:
                            "salesforce keeps answering: token request is already being processed"
                                .into(),
                        retry_after: self.backoff(round),
                    });
                }
                Step::Concurrent => {
                    concurrent_left -= 1;
                    (
                        self.backoff(round),
                        "token request is already being processed",
                    )
                }
                Step::Retry { after, why } => (after, why),
            };
            {
                let resume = self.clock.now() + after;
                if resume > deadline {
                    return Err(BrokerError::Busy {
                        detail: why.to_string(),
                        retry_after: after,
                    });
                }
                tracing::debug!(connection = %key, why, wait_ms = after.num_milliseconds(), "waiting to retry");
                tokio::time::sleep(after.to_std().unwrap_or_default()).await;
                round += 1;
            }
        }
    }

    /// A forced (heartbeat) refresh is wanted only while the heartbeat is still due.
    fn heartbeat_still_due(&self, connection: &Connection) -> bool {
        connection.heartbeat_due_at <= self.clock.now()
    }

    /// Whether the connection has an in-flight record whose window has passed.
    pub(crate) fn lost_rotation_due(&self, connection: &Connection) -> bool {
        connection.in_flight.as_ref().is_some_and(|lost| {
            lost.started_at + self.settings.in_flight_window <= self.clock.now()
        })
    }

    /// Settles every rotation whose outcome was lost (after a crash or a lost answer) once its
    /// window has passed, without waiting for a caller. Returns how many it settled.
    pub async fn settle_lost_rotations(&self) -> Result<usize, BrokerError> {
        let ready = self.clock.now() - self.settings.in_flight_window;
        let due: Vec<ConnectionKey> = self
            .store
            .lost_rotations(ready, 1000)
            .await?
            .into_iter()
            .map(|c| c.key)
            .collect();
        let mut settled = 0;
        for key in due {
            let lock = self.refresh_lock(&key);
            let result = {
                let _single_flight = lock.lock().await;
                self.obtain(&key, None).await
            };
            drop(lock);
            self.forget_idle_lock(&key);
            settled += 1;
            match result {
                Ok(_) => {
                    tracing::info!(connection = %key, "lost rotation settled: the connection works")
                }
                Err(error) => tracing::warn!(connection = %key, %error, "lost rotation settled"),
            }
        }
        Ok(settled)
    }

    /// Exponential backoff with jitter: base · 2^round · [0.5, 1.5), capped at 2 s.
    pub(crate) fn backoff(&self, round: u32) -> Duration {
        let base = self.settings.backoff_base.as_secs_f64() * 2f64.powi(round.min(10) as i32);
        let jitter: f64 = rand::rng().random_range(0.5..1.5);
        let seconds = (base * jitter).min(2.0);
        Duration::milliseconds((seconds * 1000.0) as i64)
    }

    async fn under_lease(&self, connection: Connection, stale: Option<&str>, force: bool) -> Step {
        // Re-checked under the lease: another instance may have used the token meanwhile (its
        // claim of an overdue connection), and the round must not use it twice.
        let force = force && self.heartbeat_still_due(&connection);
        if connection.state != crate::connection::ConnectionState::Active {
            return Step::Fail(BrokerError::NeedsReauth {
                key: connection.key.clone(),
                cause: connection.state_cause.clone().unwrap_or_default(),
            });
        }
        if !force && !self.lost_rotation_due(&connection) {
            match self.usable(&connection, stale) {
                Ok(Some(token)) => return Step::Done(token),
                Ok(None) => {}
                Err(error) => return Step::Fail(error),
            }
        }
        match connection.in_flight.clone() {
            Some(lost) => self.recover(connection, lost).await,
            None => self.rotate(connection, None, force).await,
        }
    }

    /// An earlier attempt's outcome was lost. Wait out Salesforce's in-flight window, then try
    /// the stored token once: it either works (nothing had rotated) or the grant is lost.
    async fn recover(&self, connection: Connection, lost: RotationInFlight) -> Step {
        let settles_at = lost.started_at + self.settings.in_flight_window;
        let now = self.clock.now();
        if now < settles_at {
            return Step::Retry {
                after: settles_at - now,
                why: "the outcome of an earlier refresh is still settling",
            };
        }
        tracing::warn!(
            connection = %connection.key,
            lost_attempt = %lost.attempt_id,
            "recovering from a refresh whose outcome was lost: trying the stored token once"
        );
        self.rotate(connection, Some(lost), false).await
    }

    /// Sends one refresh with the stored token, recorded durably first (with its lineage entry
    /// and a renewed lease, in one group write). `heartbeat`: nobody waits for the access
    /// token, so its expiry is not introspected and the refresh is logged at debug level.
    async fn rotate(
        &self,
        connection: Connection,
        replacing: Option<RotationInFlight>,
        heartbeat: bool,
    ) -> Step {
        let key = connection.key.clone();
        let Some(sealed) = &connection.tokens.refresh_token else {
            return Step::Fail(
                self.mark_dead_now(&connection, "no refresh token stored")
                    .await,
            );
        };
        let refresh_token = match self.open(
            &SealedRef::connection(&key, SealedField::RefreshToken),
            sealed,
        ) {
            Ok(token) => RefreshToken::new(token),
            Err(error) => return Step::Fail(error),
        };
        let now = self.clock.now();
        let attempt = RotationInFlight {
            attempt_id: uuid::Uuid::now_v7().to_string(),
            owner: self.settings.instance_id.clone(),
            started_at: now,
            old_refresh_hash: token_hash(refresh_token.expose()),
            recovery: replacing.is_some(),
        };
        let begin = BeginWrite {
            key: key.clone(),
            expected_generation: connection.generation,
            replacing: replacing.map(|lost| lost.attempt_id),
            lease_until: now + self.settings.lease_ttl,
            attempt: self.attempt_record(&connection, &attempt),
            record: attempt.clone(),
        };
        match self.rotations.write(RotationWrite::Begin(begin)).await {
            Ok(RotationWritten::Begun) => {}
            Ok(_) => {
                return Step::Retry {
                    after: Duration::zero(),
                    why: "the connection changed underneath",
                };
            }
            Err(error) => return Step::Fail(error.into()),
        }
        let started = std::time::Instant::now();
        let request = self.salesforce.refresh(RefreshGrant {
            login_host: &connection.login_host,
            client: &self.settings.client,
            refresh_token: &refresh_token,
        });
        // The lease is renewed alongside the request, in this task, until the answer is in.
        let result = tokio::select! {
            biased;
            result = request => result,
            never = self.keep_lease(&key) => match never {},
        };
        let latency = started.elapsed();
        match result {
            Ok(response) => {
                self.rotated(&connection, &attempt, response, latency, heartbeat)
                    .await
            }
            Err(error) => {
                self.rotation_failed(&connection, &attempt, error, latency)
                    .await
            }
        }
    }

    /// Renews the lease while a request is in flight, so it never lapses under a slow answer.
    /// Never finishes: it is dropped when the answer arrives.
    async fn keep_lease(&self, key: &ConnectionKey) -> std::convert::Infallible {
        let owner = self.settings.instance_id.as_str();
        let ttl = self.settings.lease_ttl;
        let every = (ttl / 3)
            .to_std()
            .unwrap_or(StdDuration::from_secs(5))
            .max(StdDuration::from_millis(50));
        loop {
            tokio::time::sleep(every).await;
            match self
                .store
                .renew_lease(key, owner, self.clock.now() + ttl)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    tracing::error!(connection = %key, "lost the refresh lease while a request was in flight");
                    return std::future::pending().await;
                }
                Err(error) => {
                    tracing::warn!(connection = %key, %error, "renewing the refresh lease failed")
                }
            }
        }
    }
}
