//! The baseline: the time sfsim alone needs for N refreshes, sent to it directly and all at once
//! with the refresh tokens read from forcelink's store (opened with the key ring, as the
//! end-to-end harness does). That spends the tokens outside forcelink: it must run last.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use forcelink_core::{SealedField, SealedRef};
use serde::Serialize;
use tokio::sync::Semaphore;

use super::setup::{BenchConnection, Forcelink};
use super::sim_process::{Counters, SimProcess};
use super::storm::{cpu_now, key_of, ms, settle};
use crate::app;

/// sfsim alone: N refresh grants sent straight to it, all at once.
#[derive(Debug, Clone, Serialize)]
pub struct BaselineResult {
    pub requests: usize,
    pub in_flight_cap: usize,
    pub wall_ms: f64,
    pub failures: usize,
    pub first_failure: Option<String>,
    pub upstream_refreshes: u64,
    pub sfsim_cpu_ms: f64,
    pub client_cpu_ms: f64,
}

/// Reads every connection's current refresh token from the store (opened with the key ring).
async fn stored_refresh_tokens(
    forcelink: &Forcelink,
    connections: &[BenchConnection],
) -> anyhow::Result<Vec<String>> {
    let ring = app::key_ring(&forcelink.config.keys)?;
    let store = forcelink.server.wiring.broker.store();
    let mut tokens = Vec::with_capacity(connections.len());
    for connection in connections {
        let key = key_of(connection)?;
        let stored = store
            .connection(&key)
            .await?
            .with_context(|| format!("{key} is not stored"))?;
        let sealed = stored
            .tokens
            .refresh_token
            .with_context(|| format!("{key} has no refresh token"))?;
        let aad = SealedRef::connection(&key, SealedField::RefreshToken).aad();
        let plain = ring
            .open(&sealed, &aad)
            .map_err(|e| anyhow!("{key}: {e}"))?;
        tokens.push(plain.into_string().context("refresh token is not UTF-8")?);
    }
    Ok(tokens)
}

/// The time sfsim needs for N refreshes with no forcelink in between. Spends the stored refresh
/// tokens outside forcelink (its connections are unusable afterwards): run it last.
pub async fn baseline(
    forcelink: &Forcelink,
    sim: &SimProcess,
    connections: &[BenchConnection],
    runtime: &tokio::runtime::Handle,
    in_flight: usize,
) -> anyhow::Result<BaselineResult> {
    let tokens = stored_refresh_tokens(forcelink, connections).await?;
    let salesforce = &forcelink.config.salesforce;
    let client_id = salesforce.client_id.clone();
    let secret = salesforce
        .client_secret
        .as_ref()
        .map(|s| s.0.clone())
        .unwrap_or_default();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(in_flight)
        .timeout(Duration::from_secs(120))
        .build()
        .context("cannot build an HTTP client")?;
    let url = format!("{}/services/oauth2/token", sim.login_url);
    let permits = Arc::new(Semaphore::new(in_flight.max(1)));
    let before: Counters = sim.counters().await?;
    let (_, client0, sim0) = cpu_now(sim)?;
    let started = Instant::now();
    let mut handles = Vec::with_capacity(tokens.len());
    for token in tokens {
        let (client, url, permits) = (client.clone(), url.clone(), permits.clone());
        let form = [
            ("grant_type", "refresh_token".to_string()),
            ("refresh_token", token),
            ("client_id", client_id.clone()),
            ("client_secret", secret.clone()),
        ];
        handles.push(runtime.spawn(async move {
            let _permit = permits.acquire_owned().await.map_err(|e| e.to_string())?;
            let response = client
                .post(&url)
                .form(&form)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            let body = response.bytes().await.map_err(|e| e.to_string())?;
            if status != reqwest::StatusCode::OK {
                return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
            }
            Ok(())
        }));
    }
    let requests = handles.len();
    let (failures, first_failure) = settle(handles).await;
    let wall = started.elapsed();
    let (_, client1, sim1) = cpu_now(sim)?;
    let delta = sim.counters().await?.since(&before);
    Ok(BaselineResult {
        requests,
        in_flight_cap: in_flight.min(requests),
        wall_ms: ms(wall),
        failures,
        first_failure,
        upstream_refreshes: delta.refresh_grants,
        sfsim_cpu_ms: ms(sim1.saturating_sub(sim0)),
        client_cpu_ms: ms(client1.saturating_sub(client0)),
    })
}
