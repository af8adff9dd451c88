//! The doctor's webhook check: is every endpoint getting its events? It reads the store only
//! (never sends a request to a receiver: that would deliver something).
//!
//! Per endpoint, worst first:
//! - events older than `STALE` that were never queued for it: no instance runs the webhook
//!   worker (fail);
//! - a pending delivery older than `DOWN`: its receiver has not taken anything for that long
//!   (fail), or older than `STALE`: it is behind (warn). The last error recorded says why;
//! - deliveries failed for good: the receiver missed those events (warn).

use chrono::{DateTime, Duration, Utc};
use forcelink_core::Broker;
use forcelink_core::store::{DeliveryFilter, DeliveryState, EventFilter, WebhookEndpoint};
use forcelink_core::webhook::endpoints;

use super::{Finding, Status};
use crate::config::Config;

/// Deliveries normally leave within seconds of their event.
const STALE: Duration = Duration::minutes(5);
/// A receiver that has taken nothing for this long is down, as far as its events go.
const DOWN: Duration = Duration::hours(1);

const CHECK: &str = "webhooks";

/// One thing wrong with one endpoint.
struct Problem {
    status: Status,
    text: String,
    fix: String,
}

pub(super) async fn webhooks(config: &Config, broker: &Broker, now: DateTime<Utc>) -> Finding {
    let store = broker.store();
    let endpoints = match store.webhook_endpoints().await {
        Ok(endpoints) => endpoints,
        Err(error) => {
            return Finding::fail(
                CHECK,
                format!("cannot read the webhook endpoints: {error}"),
                "check the store",
            );
        }
    };
    if endpoints.is_empty() {
        return Finding::ok(CHECK, "no webhook endpoints");
    }
    let backlog = match store.webhook_backlog().await {
        Ok(backlog) => backlog,
        Err(error) => {
            return Finding::fail(
                CHECK,
                format!("cannot read the webhook backlog: {error}"),
                "check the store",
            );
        }
    };
    let mut problems = Vec::new();
    for endpoint in &endpoints {
        let name = format!("{} ({})", endpoint.id, host_of(&endpoint.url));
        match unqueued_since(broker, endpoint).await {
            Ok(Some(since)) if now - since > STALE => problems.push(Problem {
                status: Status::Fail,
                text: format!(
                    "{name}: events since {} not yet queued",
                    since.format("%Y-%m-%d %H:%M")
                ),
                fix: if config.webhooks.enabled {
                    "no instance is running the webhook worker: check that `forcelink serve` runs and what its log says".into()
                } else {
                    "no instance is running the webhook worker: set webhooks.enabled = true on at least one instance".into()
                },
            }),
            Ok(_) => {}
            Err(error) => problems.push(Problem {
                status: Status::Fail,
                text: format!("{name}: cannot read its events: {error}"),
                fix: "check the store".into(),
            }),
        }
        let Some(counts) = backlog.iter().find(|b| b.endpoint_id == endpoint.id) else {
            continue;
        };
        if let Some(oldest) = counts.oldest_pending_at {
            let age = now - oldest;
            if age > STALE {
                let why = last_error(broker, &endpoint.id)
                    .await
                    .map_or_else(String::new, |error| format!("; last error: {error}"));
                problems.push(Problem {
                    status: if age > DOWN {
                        Status::Fail
                    } else {
                        Status::Warn
                    },
                    text: format!(
                        "{name}: {} pending, the oldest for {}{why}",
                        deliveries(counts.pending),
                        human(age)
                    ),
                    fix: format!(
                        "make the receiver at {} answer 2xx; pending deliveries are retried by themselves",
                        host_of(&endpoint.url)
                    ),
                });
            }
        }
        if counts.failed > 0 {
            problems.push(Problem {
                status: Status::Warn,
                text: format!("{name}: {} failed for good", deliveries(counts.failed)),
                fix: format!(
                    "the receiver missed those events (`forcelink webhooks deliveries --endpoint {id} --state failed` lists them): once it answers, `forcelink webhooks retry --endpoint {id}` (or POST /v1/webhooks/endpoints/{id}/retry) sends them again",
                    id = endpoint.id
                ),
            });
        }
    }
    let Some(worst) = problems.iter().map(|p| p.status).max() else {
        return Finding::ok(
            CHECK,
            format!(
                "{} endpoint{}, each caught up",
                endpoints.len(),
                if endpoints.len() == 1 { "" } else { "s" }
            ),
        );
    };
    problems.sort_by_key(|p| std::cmp::Reverse(p.status));
    let summary = problems
        .iter()
        .map(|p| p.text.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    let mut fixes: Vec<&str> = Vec::new();
    for problem in &problems {
        if !fixes.contains(&problem.fix.as_str()) {
            fixes.push(&problem.fix);
        }
    }
    let fix = fixes.join("; ");
    match worst {
        Status::Fail => Finding::fail(CHECK, summary, fix),
        _ => Finding::warn(CHECK, summary, fix),
    }
}

/// When the oldest event past the endpoint's cursor was recorded: the worker's fan-out moves
/// the cursor past every event it reads, whatever its kind, so one left behind means no
/// worker has run since.
async fn unqueued_since(
    broker: &Broker,
    endpoint: &WebhookEndpoint,
) -> Result<Option<DateTime<Utc>>, forcelink_core::store::StoreError> {
    let oldest = broker
        .store()
        .events(&EventFilter {
            key: None,
            after_id: Some(endpoint.cursor),
            limit: 1,
        })
        .await?;
    Ok(oldest.first().map(|event| event.at))
}

/// The error of the newest pending delivery that has one (its attempts failed so far).
async fn last_error(broker: &Broker, endpoint_id: &str) -> Option<String> {
    let pending = broker
        .store()
        .webhook_deliveries(&DeliveryFilter {
            endpoint_id: Some(endpoint_id.to_string()),
            event_kind: None,
            event_id: None,
            state: Some(DeliveryState::Pending),
            limit: 20,
        })
        .await
        .ok()?;
    pending.into_iter().find_map(|delivery| delivery.last_error)
}

/// Only the host (`endpoints::host_of`): an endpoint's path or query may carry a token of the
/// receiver's.
fn host_of(url: &str) -> String {
    Some(endpoints::host_of(url))
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| "an unparsable url".into())
}

fn deliveries(count: u64) -> String {
    if count == 1 {
        "1 delivery".into()
    } else {
        format!("{count} deliveries")
    }
}

fn human(age: Duration) -> String {
    if age >= Duration::hours(48) {
        format!("{} days", age.num_days())
    } else if age >= Duration::hours(2) {
        format!("{} hours", age.num_hours())
    } else {
        format!("{} minutes", age.num_minutes())
    }
}
