//! `forcelink bench refresh-storm`: a rerunnable benchmark, not a test (results in BENCHMARKS.md).
//! N connections expire at once and M callers each ask for a token; forcelink must refresh each
//! exactly once. sfsim runs as a child process so this process's CPU is forcelink's (less the
//! load generator's threads, which are named and subtracted); the store is a fresh SQLite file or
//! a fresh PostgreSQL database. Phases: set-up (untimed), a pass over HTTP with cached tokens to
//! open the client's connections, the hot path (the same again, measured), the HTTP storm, the
//! in-process storm, and last the baseline of N refreshes sent to sfsim alone. Progress goes to
//! stderr, results to stdout. `forcelink bench heartbeat-round` (module `heartbeat`) measures one
//! heartbeat round over N due connections on the same set-up; `forcelink bench agent-serve`
//! (module `agents`) is the target an external load generator drives for the agent API.

pub mod agents;
pub mod baseline;
pub mod heartbeat;
pub mod measure;
pub mod report;
pub mod setup;
pub mod sim_process;
pub mod storm;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};

use report::Report;
use setup::{BenchConnection, Forcelink};
use sim_process::SimProcess;
use storm::{CLIENT_THREAD, Callers};

#[derive(Debug, Clone, Subcommand)]
pub enum BenchCommand {
    /// N connections expire at once and M callers each ask for a token: counts upstream
    /// refreshes (must be N), wall time, rotations/s, CPU per refresh, peak RSS.
    RefreshStorm(StormArgs),
    /// One heartbeat round over N due connections (`Broker::heartbeat_tick`): wall time,
    /// refreshes/s, forcelink CPU per refresh, sfsim and PostgreSQL CPU, peak RSS.
    HeartbeatRound(heartbeat::HeartbeatArgs),
    /// Serve forcelink with one connection and an agent key for an external load generator
    /// (`bench/agent-api.sh` drives it with wrk): token API, static floor, proxy vs sfsim.
    AgentServe(agents::AgentServeArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreChoice {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeChoice {
    /// HTTP callers, then in-process callers (two storms).
    Both,
    Http,
    InProcess,
}

#[derive(Debug, Clone, Args)]
pub struct StormArgs {
    /// N: connections, all expired at once.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// M: concurrent callers per connection.
    #[arg(long, default_value_t = 20)]
    pub callers: usize,
    #[arg(long, value_enum, default_value = "sqlite")]
    pub store: StoreChoice,
    /// PostgreSQL server for `--store postgres`; a fresh database is created and dropped.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pub pg_url: String,
    #[arg(long, value_enum, default_value = "both")]
    pub mode: ModeChoice,
    /// sfsim orgs the connections are spread over (each org is a listener).
    #[arg(long, default_value_t = 10)]
    pub orgs: usize,
    /// Connect flows run at once during set-up.
    #[arg(long, default_value_t = 16)]
    pub setup_concurrency: usize,
    /// HTTP requests on the wire at once at most (all callers start at once and queue for a
    /// connection). Bounded by the open-files limit: client and server socket per request.
    #[arg(long, default_value_t = 1000)]
    pub http_connections: usize,
    /// forcelink's store pool size (`store.max_connections`).
    #[arg(long, default_value_t = 16)]
    pub db_connections: u32,
    /// After the table, print the whole result as one JSON line.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(command: &BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::RefreshStorm(args) => refresh_storm(args).await,
        BenchCommand::HeartbeatRound(args) => heartbeat::heartbeat_round(args).await,
        BenchCommand::AgentServe(args) => agents::agent_serve(args).await,
    }
}

/// Moves sfsim's clock and forcelink's together.
async fn advance(sim: &SimProcess, forcelink: &Forcelink, seconds: u64) -> anyhow::Result<()> {
    sim.advance_clock(seconds).await?;
    let by = i64::try_from(seconds).context("clock step too large")?;
    forcelink.clock.advance(chrono::Duration::seconds(by));
    Ok(())
}

async fn refresh_storm(args: &StormArgs) -> anyhow::Result<()> {
    if args.connections == 0 || args.callers == 0 || args.orgs == 0 {
        bail!("--connections, --callers and --orgs must be at least 1");
    }
    let limit = measure::open_files_limit();
    // Each request on the wire holds a client and a server socket; keep 1,000 for the rest.
    let fd_room = limit.map_or(usize::MAX, |l| (l.saturating_sub(1000) / 2) as usize);
    let in_flight = args.http_connections.min(fd_room).max(1);
    if in_flight < args.http_connections {
        eprintln!("bench: open-files limit {limit:?} allows only {in_flight} HTTP connections");
    }
    let sim = SimProcess::spawn().await?;
    let pg = (args.store == StoreChoice::Postgres).then_some(args.pg_url.as_str());
    let forcelink = Forcelink::start(&sim, pg, args.db_connections).await?;
    // The load generator's own runtime, so its threads (and CPU) are told apart from forcelink's.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(CLIENT_THREAD)
        .enable_all()
        .build()
        .context("cannot start the load generator's runtime");
    let report = match &runtime {
        Ok(runtime) => phases(args, &sim, &forcelink, runtime.handle(), in_flight, limit).await,
        Err(error) => Err(anyhow::anyhow!("{error:#}")),
    };
    let finished = forcelink.finish().await;
    if let Ok(runtime) = runtime {
        runtime.shutdown_background();
    }
    drop(sim);
    let report = report?;
    finished?;
    report.print(args.json)?;
    if !report.passed() {
        bail!("the refresh storm failed its checks: see the table above");
    }
    Ok(())
}

async fn phases(
    args: &StormArgs,
    sim: &SimProcess,
    forcelink: &Forcelink,
    runtime: &tokio::runtime::Handle,
    in_flight: usize,
    open_files_limit: Option<u64>,
) -> anyhow::Result<Report> {
    let n = args.connections;
    let load_average_start = measure::load_average();
    let started = Instant::now();
    eprintln!("bench: creating {n} users in {} sfsim orgs", args.orgs);
    let connections: Vec<BenchConnection> = setup::populate(sim, n, args.orgs).await?;
    eprintln!("bench: connecting {n} connections through the connect flow");
    setup::connect_all(&forcelink.url, &connections, args.setup_concurrency).await?;
    let setup_ms = started.elapsed().as_secs_f64() * 1000.0;
    let setup_code_exchanges = sim.counters().await?.code_exchanges;
    let peak_after_setup = measure::peak_rss_kib(None)?;
    // Past the session timeout (and the refresh margin): every cached access token is stale.
    let expire = u64::from(forcelink.config.salesforce.session_timeout_minutes) * 60 + 60;
    let mut hot_path = None;
    let mut storms = Vec::new();
    if args.mode != ModeChoice::InProcess {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(in_flight)
            .pool_idle_timeout(Duration::from_secs(600))
            .timeout(Duration::from_secs(120))
            .build()
            .context("cannot build the HTTP client")?;
        let callers = Callers::Http {
            client,
            runtime: runtime.clone(),
            in_flight,
        };
        // The first pass opens the client's connections; the second measures the hot path.
        eprintln!("bench: warming the HTTP client's connection pool (tokens cached)");
        storm::storm(forcelink, sim, &connections, args.callers, &callers).await?;
        eprintln!("bench: hot path over HTTP (tokens cached)");
        hot_path = Some(storm::storm(forcelink, sim, &connections, args.callers, &callers).await?);
        advance(sim, forcelink, expire).await?;
        eprintln!("bench: refresh storm over HTTP");
        storms.push(storm::storm(forcelink, sim, &connections, args.callers, &callers).await?);
    }
    if args.mode != ModeChoice::Http {
        advance(sim, forcelink, expire).await?;
        eprintln!("bench: refresh storm in process");
        let callers = Callers::InProcess;
        storms.push(storm::storm(forcelink, sim, &connections, args.callers, &callers).await?);
    }
    advance(sim, forcelink, expire).await?;
    eprintln!("bench: baseline, {n} refreshes sent to sfsim directly");
    let baseline = baseline::baseline(forcelink, sim, &connections, runtime, in_flight).await?;
    Ok(Report {
        benchmark: "refresh-storm",
        store: match args.store {
            StoreChoice::Sqlite => "sqlite".into(),
            StoreChoice::Postgres => "postgres".into(),
        },
        connections: n,
        callers_each: args.callers,
        orgs: args.orgs,
        machine: measure::machine(),
        open_files_limit,
        load_average_start,
        load_average_end: measure::load_average(),
        setup_ms,
        setup_code_exchanges,
        hot_path,
        storms,
        baseline,
        peak_rss_forcelink_after_setup_kib: peak_after_setup,
        peak_rss_forcelink_kib: measure::peak_rss_kib(None)?,
        peak_rss_sfsim_kib: measure::peak_rss_kib(Some(sim.pid()))?,
    })
}
