//! `/metrics` in Prometheus text format. Counters and histograms are recorded where things
//! happen (core, through the `metrics` facade); gauges that describe the store (connections by
//! state, heartbeat lag, open incidents, each webhook endpoint's undelivered deliveries) are
//! read from it at scrape time.
//!
//! The recorder is process-wide by the nature of the `metrics` facade; it is installed once.
//! It cannot drop a series, so the per-endpoint backlog gauges are not kept in it: they are
//! written into the answer from the store's endpoints at each scrape, and an endpoint deleted
//! since is simply absent.

use std::fmt::Write as _;
use std::sync::OnceLock;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use forcelink_core::{BrokerError, ConnectionState, Store};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::http::AppState;
use crate::http::error::ApiError;

static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

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
    let backlog = webhook_backlog(store.as_ref(), now).await?;
    handle.run_upkeep();
    let mut text = handle.render();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&backlog);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

/// `forcelink_webhook_deliveries{endpoint, state="pending"|"failed"}` and
/// `forcelink_webhook_oldest_pending_seconds{endpoint}` for every endpoint in the store, 0 when
/// it has no backlog, as Prometheus text.
async fn webhook_backlog(store: &dyn Store, now: DateTime<Utc>) -> Result<String, ApiError> {
    let endpoints = store.webhook_endpoints().await.map_err(BrokerError::from)?;
    let backlog = store.webhook_backlog().await.map_err(BrokerError::from)?;
    let mut deliveries = String::from(
        "# HELP forcelink_webhook_deliveries Deliveries not yet delivered, by endpoint and state.\n\
         # TYPE forcelink_webhook_deliveries gauge\n",
    );
    let mut oldest = String::from(
        "# HELP forcelink_webhook_oldest_pending_seconds Age of the endpoint's oldest pending \
         delivery (since it was queued, or retried by hand).\n\
         # TYPE forcelink_webhook_oldest_pending_seconds gauge\n",
    );
    for endpoint in &endpoints {
        let found = backlog.iter().find(|b| b.endpoint_id == endpoint.id);
        let (pending, failed) = found.map_or((0, 0), |b| (b.pending, b.failed));
        let age = found
            .and_then(|b| b.oldest_pending_at)
            .map_or(0.0, |oldest| {
                (now - oldest).num_milliseconds().max(0) as f64 / 1000.0
            });
        let id = label_value(&endpoint.id);
        for (state, count) in [("pending", pending), ("failed", failed)] {
            let _ = writeln!(
                deliveries,
                "forcelink_webhook_deliveries{{endpoint=\"{id}\",state=\"{state}\"}} {count}"
            );
        }
        let _ = writeln!(
            oldest,
            "forcelink_webhook_oldest_pending_seconds{{endpoint=\"{id}\"}} {age}"
        );
    }
    deliveries.push_str(&oldest);
    Ok(deliveries)
}

/// A label value as the text format writes it: backslash, double quote and newline escaped.
fn label_value(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
