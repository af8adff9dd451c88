//! `forcelink bench agent-serve`: the target for the agent-facing benchmarks that an external
//! load generator (wrk) drives from another process (`bench/agent-api.sh`, results in
//! BENCHMARKS.md). It starts sfsim as a child process and forcelink in this process on a fresh
//! store, connects one org through the real connect flow, makes an agent key, warms the token
//! cache, writes the URLs and credentials the script needs to a JSON file, and serves until
//! Ctrl-C (SIGINT). The file holds live secrets of a throwaway simulator; it is written with
//! mode 0600 and removed on exit.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;

use super::StoreChoice;
use super::setup::{self, Forcelink};
use super::sim_process::SimProcess;

#[derive(Debug, Clone, Args)]
pub struct AgentServeArgs {
    /// Where to write the targets (URLs, the agent key, a live access token for sfsim).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value = "sqlite")]
    pub store: StoreChoice,
    /// PostgreSQL server for `--store postgres`; a fresh database is created and dropped.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pub pg_url: String,
}

pub async fn agent_serve(args: &AgentServeArgs) -> anyhow::Result<()> {
    let sim = SimProcess::spawn().await?;
    let pg = (args.store == StoreChoice::Postgres).then_some(args.pg_url.as_str());
    let forcelink = Forcelink::start(&sim, pg, 16).await?;
    let served = serve_targets(&sim, &forcelink, args).await;
    let _ = std::fs::remove_file(&args.out);
    let finished = forcelink.finish().await;
    served.and(finished)
}

async fn serve_targets(
    sim: &SimProcess,
    forcelink: &Forcelink,
    args: &AgentServeArgs,
) -> anyhow::Result<()> {
    let connections = setup::populate(sim, 1, 1).await?;
    setup::connect_all(&forcelink.url, &connections, 1).await?;
    let connection = &connections[0];
    let http = reqwest::Client::new();
    let token_path = format!(
        "/v1/connections/{}/token?ctx={}",
        connection.org_id, connection.ctx
    );
    let token: serde_json::Value = http
        .post(format!("{}{token_path}", forcelink.url))
        .bearer_auth(&forcelink.agent_key)
        .send()
        .await?
        .error_for_status()
        .context("the first token handout failed")?
        .json()
        .await?;
    let (Some(access_token), Some(instance_url)) = (
        token["access_token"].as_str(),
        token["instance_url"].as_str(),
    ) else {
        bail!("the token answer lacks access_token or instance_url: {token}");
    };
    let resource = "/services/data/v59.0/limits";
    let targets = json!({
        "forcelink_url": forcelink.url,
        "static_url": format!("{}/healthz", forcelink.url),
        "token_url": format!("{}{token_path}", forcelink.url),
        "proxy_url": format!("{}/v1/proxy/{}{resource}", forcelink.url, connection.org_id),
        "proxy_context": connection.ctx,
        "direct_url": format!("{}{resource}", instance_url.trim_end_matches('/')),
        "agent_key": forcelink.agent_key,
        "access_token": access_token,
        "sfsim_pid": sim.pid(),
        "forcelink_pid": std::process::id(),
    });
    write_private(&args.out, &serde_json::to_vec_pretty(&targets)?)?;
    eprintln!(
        "bench: serving forcelink at {} (targets in {}); Ctrl-C to stop",
        forcelink.url,
        args.out.display()
    );
    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    Ok(())
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = path.with_extension("partial");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
