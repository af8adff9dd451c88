//! Rotation lineage: every refresh attempt recorded (instance, time, token hashes, latency,
//! outcome), the compromise heuristic, and the timeline export for a report to Salesforce.
//!
//! Only SHA-256 hashes of refresh tokens are recorded, never the tokens. The entries of a
//! refresh that starts and of one that commits are written in the same transaction as its
//! in-flight record and its commit (`group_commit`); a lineage write on its own (a failed
//! attempt) that fails is logged, it never blocks a refresh.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use crate::broker::{Broker, BrokerError};
use crate::connection::{Connection, RotationInFlight};
use crate::store::{EventFilter, RefreshAttempt};

/// Outcomes that show Salesforce did not consume the token presented.
const NOT_CONSUMING: &[&str] = &[
    "concurrent_request",
    "ip_blocked",
    "unavailable",
    "app_misconfigured",
];

/// The event kind of a compromise suspicion.
pub const COMPROMISE_SUSPECTED: &str = "connection.compromise_suspected";

/// One suspicion with the lineage of its connection, for `forcelink incidents export`.
#[derive(Debug, Serialize)]
pub struct IncidentTimeline {
    pub event_id: i64,
    pub at: DateTime<Utc>,
    pub org_id: Option<String>,
    pub context: Option<String>,
    pub detail: serde_json::Value,
    pub attempts: Vec<AttemptView>,
}

/// A lineage entry as exported.
#[derive(Debug, Serialize)]
pub struct AttemptView {
    pub attempt_id: String,
    pub instance: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub old_refresh_token_sha256: String,
    pub new_refresh_token_sha256: Option<String>,
    pub latency_ms: Option<i64>,
    pub outcome: String,
    pub detail: Option<String>,
    pub egress: Option<String>,
    pub recovery: bool,
}

impl From<RefreshAttempt> for AttemptView {
    fn from(a: RefreshAttempt) -> Self {
        Self {
            attempt_id: a.attempt_id,
            instance: a.instance,
            started_at: a.started_at,
            finished_at: a.finished_at,
            old_refresh_token_sha256: a.old_refresh_hash,
            new_refresh_token_sha256: a.new_refresh_hash,
            latency_ms: a.latency_ms,
            outcome: a.outcome,
            detail: a.detail,
            egress: a.egress,
            recovery: a.recovery,
        }
    }
}

/// Counts a finished attempt in the metrics.
pub(crate) fn count_attempt(outcome: &str, latency: StdDuration) {
    metrics::counter!("forcelink_refreshes_total", "outcome" => outcome.to_string()).increment(1);
    metrics::histogram!("forcelink_refresh_seconds").record(latency.as_secs_f64());
}

impl Broker {
    /// The lineage entry of an attempt as it starts (outcome `pending`).
    pub(crate) fn attempt_record(
        &self,
        connection: &Connection,
        attempt: &RotationInFlight,
    ) -> RefreshAttempt {
        RefreshAttempt {
            attempt_id: attempt.attempt_id.clone(),
            org_id: connection.key.org_id.clone(),
            context: connection.key.context.clone(),
            instance: attempt.owner.clone(),
            started_at: attempt.started_at,
            finished_at: None,
            old_refresh_hash: attempt.old_refresh_hash.clone(),
            new_refresh_hash: None,
            latency_ms: None,
            outcome: "pending".into(),
            detail: None,
            egress: self.settings.egress.clone(),
            recovery: attempt.recovery,
        }
    }

    /// The lineage entry of an attempt that ended with `outcome`.
    pub(crate) fn finished_record(
        &self,
        connection: &Connection,
        attempt: &RotationInFlight,
        outcome: &str,
        new_hash: Option<String>,
        detail: Option<&str>,
        latency: StdDuration,
    ) -> RefreshAttempt {
        let mut record = self.attempt_record(connection, attempt);
        record.finished_at = Some(self.clock.now());
        record.new_refresh_hash = new_hash;
        record.latency_ms = Some(i64::try_from(latency.as_millis()).unwrap_or(i64::MAX));
        record.outcome = outcome.to_string();
        record.detail = detail.map(str::to_string);
        record
    }

    /// Writes the lineage entry of an attempt that ended without a grouped commit.
    pub(crate) async fn finish_attempt(
        &self,
        connection: &Connection,
        attempt: &RotationInFlight,
        outcome: &str,
        new_hash: Option<String>,
        detail: Option<&str>,
        latency: StdDuration,
    ) {
        count_attempt(outcome, latency);
        let record = self.finished_record(connection, attempt, outcome, new_hash, detail, latency);
        if let Err(error) = self.store.record_attempt(&record).await {
            tracing::error!(connection = %connection.key, %error, "recording a refresh attempt failed");
        }
    }

    /// Salesforce refused a token forcelink was the last to hold. If no attempt of ours could
    /// have consumed it and it was used within the idle TTL, someone else may hold the grant.
    pub(crate) async fn check_compromise(
        &self,
        connection: &Connection,
        attempt: &RotationInFlight,
    ) {
        let presented = match self
            .store
            .attempts_presenting(&connection.key, &attempt.old_refresh_hash)
            .await
        {
            Ok(presented) => presented,
            Err(error) => {
                tracing::error!(%error, "reading the lineage for a compromise check failed");
                return;
            }
        };
        let presented_twice = presented.iter().any(|other| {
            other.attempt_id != attempt.attempt_id
                && !NOT_CONSUMING.contains(&other.outcome.as_str())
        });
        let idle = self.idle_for(connection);
        if presented_twice || idle >= self.settings.idle_ttl {
            return;
        }
        tracing::error!(
            connection = %connection.key,
            attempt = %attempt.attempt_id,
            "salesforce rejected a refresh token only forcelink held: compromise suspected"
        );
        let detail = json!({
            "attempt_id": attempt.attempt_id,
            "refresh_token_sha256": attempt.old_refresh_hash,
            "idle_seconds": idle.num_seconds(),
            "generation": connection.generation,
            "report_to": "security@salesforce.com",
        });
        self.emit(COMPROMISE_SUSPECTED, Some(&connection.key), detail)
            .await;
    }

    /// Every compromise suspicion with its connection's lineage, oldest first.
    pub async fn incident_timelines(
        &self,
        lineage_limit: u32,
    ) -> Result<Vec<IncidentTimeline>, BrokerError> {
        let mut timelines = Vec::new();
        let mut after = None;
        loop {
            let events = self
                .store
                .events(&EventFilter {
                    key: None,
                    after_id: after,
                    limit: 1000,
                })
                .await?;
            let Some(last) = events.last() else { break };
            after = Some(last.id);
            for event in events
                .into_iter()
                .filter(|e| e.kind == COMPROMISE_SUSPECTED)
            {
                let attempts = match (&event.org_id, &event.context) {
                    (Some(org), Some(context)) => {
                        let key = crate::ids::ConnectionKey::new(org.clone(), context.clone());
                        self.store
                            .attempts(&key, lineage_limit)
                            .await?
                            .into_iter()
                            .map(AttemptView::from)
                            .collect()
                    }
                    _ => Vec::new(),
                };
                timelines.push(IncidentTimeline {
                    event_id: event.id,
                    at: event.at,
                    org_id: event.org_id.map(|o| o.to_string()),
                    context: event.context.map(|c| c.to_string()),
                    detail: serde_json::from_str(&event.detail).unwrap_or(serde_json::Value::Null),
                    attempts,
                });
            }
        }
        Ok(timelines)
    }
}
