//! The timed storm: N×M concurrent token requests, over HTTP (one shared reqwest client on its
//! own runtime, whose threads are named so their CPU can be subtracted) or in process
//! (`Broker::access_token` directly), with sfsim's counters and every process's CPU around it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use forcelink_core::{ConnectionContext, ConnectionKey, OrgId};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::measure::{own_cpu, peak_rss_kib, pid_cpu, threads_cpu};
use super::setup::{BenchConnection, Forcelink};
use super::sim_process::SimProcess;

/// Name prefix of the load generator's threads (at most 15 bytes: a Linux thread name).
pub const CLIENT_THREAD: &str = "bench-client";

/// Who calls forcelink in a storm.
#[derive(Debug, Clone)]
pub enum Callers {
    /// `POST /v1/connections/{org}/token?ctx=…` from `runtime`, at most `in_flight` at a time.
    Http {
        client: reqwest::Client,
        runtime: tokio::runtime::Handle,
        in_flight: usize,
    },
    /// `Broker::access_token` from tasks on forcelink's own runtime.
    InProcess,
}

/// What one storm (or hot-path pass) measured.
#[derive(Debug, Clone, Serialize)]
pub struct StormResult {
    pub mode: &'static str,
    pub callers: usize,
    /// HTTP only: how many requests were on the wire at once at most.
    pub in_flight_cap: Option<usize>,
    pub wall_ms: f64,
    pub non_200: usize,
    pub first_failure: Option<String>,
    pub upstream_refreshes: u64,
    pub refresh_failures: u64,
    pub reuse_detections: u64,
    pub concurrent_rejections: u64,
    /// This process's CPU less the load generator's threads.
    pub forcelink_cpu_ms: f64,
    pub client_cpu_ms: f64,
    pub sfsim_cpu_ms: f64,
    /// This process's peak RSS (VmHWM) so far, read right after this storm.
    pub peak_rss_kib: u64,
    /// In process only: the size of one `Broker::access_token` future.
    pub caller_future_bytes: Option<usize>,
}

pub(super) fn key_of(connection: &BenchConnection) -> anyhow::Result<ConnectionKey> {
    let org = OrgId::parse(&connection.org_id).map_err(|e| anyhow!("org id: {e}"))?;
    let ctx = ConnectionContext::parse(&connection.ctx).map_err(|e| anyhow!("ctx: {e}"))?;
    Ok(ConnectionKey::new(org, ctx))
}

/// CPU counters at one moment: (this process, load generator threads, sfsim).
pub(super) fn cpu_now(sim: &SimProcess) -> anyhow::Result<(Duration, Duration, Duration)> {
    Ok((own_cpu()?, threads_cpu(CLIENT_THREAD)?, pid_cpu(sim.pid())?))
}

pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Waits for every caller; returns (number of failures, the first failure).
pub(super) async fn settle(
    handles: Vec<JoinHandle<Result<(), String>>>,
) -> (usize, Option<String>) {
    let mut failures = 0;
    let mut first = None;
    for handle in handles {
        let outcome = handle.await.unwrap_or_else(|e| Err(e.to_string()));
        if let Err(error) = outcome {
            failures += 1;
            first.get_or_insert(error);
        }
    }
    (failures, first)
}

/// One token request over HTTP; `Err` for anything but 200 with a body.
async fn http_token(
    client: reqwest::Client,
    url: String,
    agent_key: Arc<str>,
    permits: Arc<Semaphore>,
) -> Result<(), String> {
    let _permit = permits.acquire_owned().await.map_err(|e| e.to_string())?;
    let response = client
        .post(&url)
        .bearer_auth(&*agent_key)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    if status != reqwest::StatusCode::OK {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
    }
    Ok(())
}

/// Sends `callers_each` concurrent token requests for every connection and waits for all.
pub async fn storm(
    forcelink: &Forcelink,
    sim: &SimProcess,
    connections: &[BenchConnection],
    callers_each: usize,
    callers: &Callers,
) -> anyhow::Result<StormResult> {
    let keys = connections
        .iter()
        .map(key_of)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let total = connections.len() * callers_each;
    // The memory each waiting in-process caller holds: the broker's future (never polled here).
    let future_bytes = match (callers, keys.first()) {
        (Callers::InProcess, Some(key)) => {
            let probe = forcelink.server.wiring.broker.access_token(key, None);
            Some(std::mem::size_of_val(&probe))
        }
        _ => None,
    };
    let before = sim.counters().await?;
    let (cpu0, client0, sim0) = cpu_now(sim)?;
    let started = Instant::now();
    let mut handles = Vec::with_capacity(total);
    match callers {
        Callers::Http {
            client,
            runtime,
            in_flight,
        } => {
            let permits = Arc::new(Semaphore::new((*in_flight).max(1)));
            let agent_key: Arc<str> = Arc::from(forcelink.agent_key.as_str());
            for _ in 0..callers_each {
                for c in connections {
                    let url = format!(
                        "{}/v1/connections/{}/token?ctx={}",
                        forcelink.url, c.org_id, c.ctx
                    );
                    let call = http_token(client.clone(), url, agent_key.clone(), permits.clone());
                    handles.push(runtime.spawn(call));
                }
            }
        }
        Callers::InProcess => {
            let broker = forcelink.server.wiring.broker.clone();
            for _ in 0..callers_each {
                for key in &keys {
                    let (broker, key) = (broker.clone(), key.clone());
                    handles.push(tokio::spawn(async move {
                        let answer = broker.access_token(&key, None).await;
                        answer.map(drop).map_err(|e| format!("{key}: {e}"))
                    }));
                }
            }
        }
    }
    let (non_200, first_failure) = settle(handles).await;
    let wall = started.elapsed();
    let (cpu1, client1, sim1) = cpu_now(sim)?;
    let delta = sim.counters().await?.since(&before);
    let client_cpu = client1.saturating_sub(client0);
    Ok(StormResult {
        mode: match callers {
            Callers::Http { .. } => "http",
            Callers::InProcess => "in-process",
        },
        callers: total,
        in_flight_cap: match callers {
            Callers::Http { in_flight, .. } => Some((*in_flight).min(total)),
            Callers::InProcess => None,
        },
        wall_ms: ms(wall),
        non_200,
        first_failure,
        upstream_refreshes: delta.refresh_grants,
        refresh_failures: delta.refresh_failures,
        reuse_detections: delta.reuse_detections,
        concurrent_rejections: delta.concurrent_rejections,
        forcelink_cpu_ms: ms(cpu1.saturating_sub(cpu0).saturating_sub(client_cpu)),
        client_cpu_ms: ms(client_cpu),
        sfsim_cpu_ms: ms(sim1.saturating_sub(sim0)),
        peak_rss_kib: peak_rss_kib(None)?,
        caller_future_bytes: future_bytes,
    })
}
