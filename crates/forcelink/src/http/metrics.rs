//! `/metrics` in Prometheus text format. Counters and histograms are recorded where things
//! happen (core, through the `metrics` facade); gauges that describe the store (connections by
//! state, heartbeat lag, open incidents, each webhook endpoint's undelivered deliveries) are
//! read from it at scrape time.
//!
//! The recorder is process-wide by the nature of the `metrics` facade; it is installed once.

use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock};

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use forcelink_core::{BrokerError, ConnectionState, Store};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::http::AppState;
use crate::http::error::ApiError;

static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The endpoints whose backlog gauges this server has set, so that one deleted since is set to
/// 0 once more instead of keeping its last counts (the recorder cannot drop a series). Per
/// server, not per process: tests run several servers on one recorder.
#[derive(Debug, Default)]
pub struct BacklogGauges(Mutex<BTreeSet<String>>);

/// The process's Prometheus recorder, installed on first use.
pub fn handle() -> Option<&'static PrometheusHandle> {
    RECORDER
        .get_or_init(|| {
            let buckets = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ];
            PrometheusBuilder::new()
                .set_buckets(&buckets)
                .ok()
                .and_then(|builder| builder.install_recorder().ok())
        })
        .as_ref()
}

pub async fn render(State(state): State<AppState>) -> Result<Response, ApiError> {
    let Some(handle) = handle() else {
        return Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "metrics_unavailable",
            "another metrics recorder is installed in this process",
        ));
    };
    let store = state.broker.store();
    let now = state.broker.clock().now();
    let counts = store.count_by_state().await.map_err(BrokerError::from)?;
    for known in [
        ConnectionState::Active,
        ConnectionState::NeedsReauth,
        ConnectionState::Revoked,
    ] {
        let count = counts
            .iter()
            .find(|(state, _)| *state == known)
            .map_or(0, |(_, count)| *count);
        metrics::gauge!("forcelink_connections", "state" => known.as_str()).set(count as f64);
    }
    let oldest = store
        .idle_refresh_tokens(now, 1)
        .await
        .map_err(BrokerError::from)?;
    let lag = oldest.first().map_or(0.0, |c| {
        (now - c.refresh_token_used_at).num_seconds().max(0) as f64
    });
    metrics::gauge!("forcelink_heartbeat_lag_seconds").set(lag);
    let incidents = store.incidents().await.map_err(BrokerError::from)?;
    metrics::gauge!("forcelink_app_incidents_active")
        .set(incidents.iter().filter(|i| i.active).count() as f64);
    webhook_backlog(store.as_ref(), &state.backlog_gauges, now).await?;
    handle.run_upkeep();
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response())
}

/// `forcelink_webhook_deliveries{endpoint, state="pending"|"failed"}` and
/// `forcelink_webhook_oldest_pending_seconds{endpoint}` for every endpoint, 0 when it has no
/// backlog, so a cleared backlog reads 0 rather than its last value.
async fn webhook_backlog(
    store: &dyn Store,
    gauges: &BacklogGauges,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let endpoints = store.webhook_endpoints().await.map_err(BrokerError::from)?;
    let backlog = store.webhook_backlog().await.map_err(BrokerError::from)?;
    let mut seen = gauges
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let gone: Vec<String> = seen
        .iter()
        .filter(|id| !endpoints.iter().any(|endpoint| &endpoint.id == *id))
        .cloned()
        .collect();
    for id in gone {
        set_backlog(&id, 0, 0, 0.0);
        seen.remove(&id);
    }
    for endpoint in &endpoints {
        let found = backlog.iter().find(|b| b.endpoint_id == endpoint.id);
        let (pending, failed) = found.map_or((0, 0), |b| (b.pending, b.failed));
        let age = found
            .and_then(|b| b.oldest_pending_at)
            .map_or(0.0, |oldest| {
                (now - oldest).num_milliseconds().max(0) as f64 / 1000.0
            });
        set_backlog(&endpoint.id, pending, failed, age);
        seen.insert(endpoint.id.clone());
    }
    Ok(())
}

fn set_backlog(endpoint: &str, pending: u64, failed: u64, oldest_pending_seconds: f64) {
    let endpoint = endpoint.to_string();
    metrics::gauge!("forcelink_webhook_deliveries", "endpoint" => endpoint.clone(), "state" => "pending")
        .set(pending as f64);
    metrics::gauge!("forcelink_webhook_deliveries", "endpoint" => endpoint.clone(), "state" => "failed")
        .set(failed as f64);
    metrics::gauge!("forcelink_webhook_oldest_pending_seconds", "endpoint" => endpoint)
        .set(oldest_pending_seconds);
}
