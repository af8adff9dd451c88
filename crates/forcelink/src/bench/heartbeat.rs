//! `forcelink bench heartbeat-round`: one heartbeat round over N connections (results in
//! BENCHMARKS.md). forcelink is wired in this process with its background heartbeat off; the
//! benchmark moves sfsim's clock and forcelink's past the heartbeat interval so every connection
//! is due, then calls `Broker::heartbeat_tick` itself, which loops until nothing is due. There is
//! no load generator, so this process's CPU over the round is forcelink's; sfsim is a child
//! process and PostgreSQL's server processes are counted from `/proc`. Several concurrencies can
//! be tried in one run: each gets its own round (the clocks move again before each).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use forcelink_core::heartbeat::{HostPacer, TickReport};
use serde::Serialize;

use super::measure::{
    self, Io, Machine, own_cpu, own_io, peak_rss_kib, pid_cpu, pid_cpu_with_reaped_children,
    threads_cpu, threads_switches,
};
use super::setup::{self, BenchConnection, Forcelink};
use super::sim_process::SimProcess;
use super::storm::ms;
use super::{StoreChoice, advance};
use crate::app;

#[derive(Debug, Clone, Args)]
pub struct HeartbeatArgs {
    /// N: connections, all due in the round.
    #[arg(long, default_value_t = 100_000)]
    pub connections: usize,
    #[arg(long, value_enum, default_value = "sqlite")]
    pub store: StoreChoice,
    /// PostgreSQL server for `--store postgres`; a fresh database is created and dropped.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pub pg_url: String,
    /// Where the SQLite file's temporary directory goes (e.g. /dev/shm, a tmpfs, to take fsync
    /// out of the round). Default: the system's temporary directory.
    #[arg(long)]
    pub db_dir: Option<PathBuf>,
    /// sfsim orgs the connections are spread over (each org is a listener).
    #[arg(long, default_value_t = 10)]
    pub orgs: usize,
    /// Connect flows run at once during set-up.
    #[arg(long, default_value_t = 16)]
    pub setup_concurrency: usize,
    /// Connections claimed per batch (`heartbeat.batch`).
    #[arg(long, default_value_t = 500)]
    pub batch: u32,
    /// Refreshes in flight at once (`heartbeat.concurrency`); a comma-separated list runs one
    /// round per value, in order.
    #[arg(long, value_delimiter = ',', default_value = "32")]
    pub concurrency: Vec<usize>,
    /// forcelink's store pool size (`store.max_connections`).
    #[arg(long, default_value_t = 16)]
    pub db_connections: u32,
    /// Profile the first round with `perf record --call-graph dwarf`, written to this file.
    #[arg(long)]
    pub perf_record: Option<PathBuf>,
    /// After the table, print the whole result as one JSON line.
    #[arg(long)]
    pub json: bool,
}

/// What one round measured.
#[derive(Debug, Clone, Serialize)]
pub struct RoundResult {
    pub batch: u32,
    pub concurrency: usize,
    pub wall_ms: f64,
    pub claimed: u64,
    pub refreshed: u64,
    pub skipped: u64,
    pub failed: u64,
    pub upstream_refreshes: u64,
    pub refresh_failures: u64,
    pub reuse_detections: u64,
    pub concurrent_rejections: u64,
    /// This process's user+system CPU over the round: forcelink's (nothing else runs here).
    pub forcelink_cpu_ms: f64,
    /// SQLite only: the part of `forcelink_cpu_ms` spent on sqlx's SQLite worker threads,
    /// which run the embedded database engine (B-trees, WAL writes, fsync calls).
    pub sqlite_engine_cpu_ms: Option<f64>,
    pub sfsim_cpu_ms: f64,
    /// PostgreSQL only: all `postgres` processes on the machine.
    pub postgres_cpu_ms: Option<f64>,
    pub peak_rss_forcelink_kib: u64,
    pub peak_rss_sfsim_kib: u64,
    /// forcelink's read/write system calls over the round (SQLite's file IO and every socket).
    pub io: Io,
    /// Context switches of this process's threads over the round: all, and (SQLite only) those
    /// of the engine's worker threads among them.
    pub context_switches: u64,
    pub sqlite_engine_context_switches: Option<u64>,
    /// Whether `perf record` was attached (its numbers are skewed by the profiler).
    pub profiled: bool,
}

impl RoundResult {
    fn ok(&self, n: usize) -> bool {
        self.upstream_refreshes == n as u64
            && self.refreshed == n as u64
            && self.failed == 0
            && self.reuse_detections == 0
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct HeartbeatReport {
    pub benchmark: &'static str,
    pub store: String,
    pub db_dir: Option<String>,
    pub connections: usize,
    pub orgs: usize,
    pub machine: Machine,
    pub load_average_start: String,
    pub load_average_end: String,
    pub setup_ms: f64,
    pub setup_code_exchanges: u64,
    pub peak_rss_forcelink_after_setup_kib: u64,
    pub rounds: Vec<RoundResult>,
}

impl HeartbeatReport {
    pub fn passed(&self) -> bool {
        !self.rounds.is_empty() && self.rounds.iter().all(|r| r.ok(self.connections))
    }

    pub fn print(&self, json: bool) -> anyhow::Result<()> {
        let m = &self.machine;
        let n = self.connections;
        println!(
            "heartbeat round: {n} connections, store {}{}",
            self.store,
            self.db_dir
                .as_ref()
                .map_or_else(String::new, |d| format!(" (database under {d})"))
        );
        println!(
            "machine: {} CPUs, {}, {} MiB RAM, Linux {}",
            m.cpus, m.model, m.memory_mib, m.kernel
        );
        println!(
            "load average (1/5/15 min): {} at start, {} at end",
            self.load_average_start, self.load_average_end
        );
        println!(
            "setup (not timed below): {n} connections in {} orgs through the connect flow in {:.1} s ({} code exchanges), peak RSS after setup {:.0} MiB",
            self.orgs,
            self.setup_ms / 1000.0,
            self.setup_code_exchanges,
            self.peak_rss_forcelink_after_setup_kib as f64 / 1024.0
        );
        println!();
        let per = |total_ms: f64| format!("{:.0} µs", total_ms * 1000.0 / n.max(1) as f64);
        let row = |label: &str, cell: &dyn Fn(&RoundResult) -> String| {
            let cells: Vec<String> = self
                .rounds
                .iter()
                .map(|r| format!("{:<20}", cell(r)))
                .collect();
            println!("{label:<38}{}", cells.join(""));
        };
        row("batch / concurrency", &|r| {
            format!(
                "{} / {}{}",
                r.batch,
                r.concurrency,
                if r.profiled { " (perf)" } else { "" }
            )
        });
        row("upstream refreshes (must be N)", &|r| {
            format!("{} {}", r.upstream_refreshes, verdict(r.ok(n)))
        });
        row("refreshed / skipped / failed", &|r| {
            format!("{} / {} / {}", r.refreshed, r.skipped, r.failed)
        });
        row("reuse detections / concurrent rej.", &|r| {
            format!("{} / {}", r.reuse_detections, r.concurrent_rejections)
        });
        row("round wall time", &|r| {
            format!("{:.2} s", r.wall_ms / 1000.0)
        });
        row("refreshes/s", &|r| {
            format!("{:.0}", n as f64 / (r.wall_ms / 1000.0).max(1e-9))
        });
        row("forcelink CPU per refresh", &|r| per(r.forcelink_cpu_ms));
        row("target ≤ 100 µs", &|r| {
            verdict(r.forcelink_cpu_ms * 1000.0 / n.max(1) as f64 <= 100.0).to_string()
        });
        row("forcelink CPU", &|r| {
            format!("{:.2} s", r.forcelink_cpu_ms / 1000.0)
        });
        row("  of which SQLite engine, per refresh", &|r| {
            r.sqlite_engine_cpu_ms.map_or_else(|| "-".into(), per)
        });
        // The embedded engine does much of the store's work, which on PostgreSQL the server
        // does and the target does not count: this line is what SQLite would be judged on if
        // the engine counted as the store. Shown for the team's decision, judged nowhere
        // (BENCHMARKS.md, "The SQLite floor").
        row("  outside the engine (not judged)", &|r| {
            r.sqlite_engine_cpu_ms.map_or_else(
                || "-".into(),
                |engine| {
                    let outside =
                        ((r.forcelink_cpu_ms - engine) * 1000.0 / n.max(1) as f64).max(0.0);
                    format!("{outside:.0} µs")
                },
            )
        });
        row("sfsim CPU", &|r| {
            format!("{:.2} s", r.sfsim_cpu_ms / 1000.0)
        });
        row("sfsim CPU per refresh", &|r| per(r.sfsim_cpu_ms));
        row("postgres server CPU", &|r| {
            r.postgres_cpu_ms
                .map_or_else(|| "-".into(), |c| format!("{:.2} s", c / 1000.0))
        });
        row("wall×2 cores not used by these", &|r| {
            let used = r.forcelink_cpu_ms + r.sfsim_cpu_ms + r.postgres_cpu_ms.unwrap_or(0.0);
            let available = r.wall_ms * self.machine.cpus as f64;
            format!("{:.2} s", (available - used).max(0.0) / 1000.0)
        });
        let per_refresh = |count: u64| count as f64 / n.max(1) as f64;
        row("reads per refresh: calls / KiB", &|r| {
            format!(
                "{:.1} / {:.1}",
                per_refresh(r.io.read_calls),
                per_refresh(r.io.read_bytes) / 1024.0
            )
        });
        row("writes per refresh: calls / KiB", &|r| {
            format!(
                "{:.1} / {:.1}",
                per_refresh(r.io.write_calls),
                per_refresh(r.io.write_bytes) / 1024.0
            )
        });
        row("context switches per refresh", &|r| {
            let engine = r
                .sqlite_engine_context_switches
                .map_or_else(String::new, |e| format!(" (engine {:.1})", per_refresh(e)));
            format!("{:.1}{engine}", per_refresh(r.context_switches))
        });
        row("peak RSS forcelink / sfsim", &|r| {
            format!(
                "{:.0} / {:.0} MiB",
                r.peak_rss_forcelink_kib as f64 / 1024.0,
                r.peak_rss_sfsim_kib as f64 / 1024.0
            )
        });
        println!("result: {}", verdict(self.passed()));
        if json {
            println!("{}", serde_json::to_string(self)?);
        }
        Ok(())
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

/// The name (as the kernel truncates it) of sqlx's SQLite worker threads: each runs one
/// connection's statements, so their CPU is the embedded database engine's. They live as long
/// as the store, so none ends during a round.
const SQLITE_WORKER: &str = "sqlx-sqlite-wor";

/// user+system CPU of every process named `postgres` on the machine (the server and its
/// backends), plus what the postmaster's ended and reaped backends used: a backend that ends
/// during the round (the pool closes idle connections) moves its time into its parent's count
/// instead of taking it along, which once made a round read 0 s.
fn postgres_cpu() -> Duration {
    let mut total = Duration::ZERO;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return total;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == "postgres"
            && let Ok(pid) = name.to_string_lossy().parse::<u32>()
            && let Ok(cpu) = pid_cpu_with_reaped_children(pid)
        {
            total += cpu;
        }
    }
    total
}

/// `perf record` attached to this process until `stop`.
struct Perf(Child);

impl Perf {
    fn attach(output: &Path) -> anyhow::Result<Perf> {
        let child = Command::new("perf")
            .args(["record", "-F", "199", "--call-graph", "dwarf,16384", "-p"])
            .arg(std::process::id().to_string())
            .arg("-o")
            .arg(output)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start perf (apt-get install -y linux-perf)")?;
        // Let it attach before the round starts.
        std::thread::sleep(Duration::from_secs(2));
        Ok(Perf(child))
    }

    fn stop(mut self) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status()
            .context("cannot run kill")?;
        if !status.success() {
            bail!("could not stop perf");
        }
        self.0.wait().context("perf did not finish")?;
        Ok(())
    }
}

pub async fn heartbeat_round(args: &HeartbeatArgs) -> anyhow::Result<()> {
    if args.connections == 0 || args.orgs == 0 || args.concurrency.is_empty() {
        bail!("--connections, --orgs and --concurrency must be at least 1");
    }
    let sim = SimProcess::spawn().await?;
    let pg = (args.store == StoreChoice::Postgres).then_some(args.pg_url.as_str());
    let forcelink = Forcelink::start_with(
        &sim,
        pg,
        args.db_connections,
        args.db_dir.as_deref(),
        |config| config.heartbeat.enabled = false,
    )
    .await?;
    let report = rounds(args, &sim, &forcelink).await;
    let finished = forcelink.finish().await;
    drop(sim);
    let report = report?;
    finished?;
    report.print(args.json)?;
    if !report.passed() {
        bail!("the heartbeat round failed its checks: see the table above");
    }
    Ok(())
}

async fn rounds(
    args: &HeartbeatArgs,
    sim: &SimProcess,
    forcelink: &Forcelink,
) -> anyhow::Result<HeartbeatReport> {
    let n = args.connections;
    let load_average_start = measure::load_average();
    let started = Instant::now();
    eprintln!("bench: creating {n} users in {} sfsim orgs", args.orgs);
    let connections: Vec<BenchConnection> = setup::populate(sim, n, args.orgs).await?;
    eprintln!("bench: connecting {n} connections through the connect flow");
    setup::connect_all(&forcelink.url, &connections, args.setup_concurrency).await?;
    let setup_ms = ms(started.elapsed());
    eprintln!("bench: set-up took {:.1} s", setup_ms / 1000.0);
    let setup_code_exchanges = sim.counters().await?.code_exchanges;
    let peak_after_setup = peak_rss_kib(None)?;
    // Every connection's next heartbeat lies within one interval: one interval and a minute on,
    // all are due.
    let interval = u64::from(forcelink.config.heartbeat.interval_hours) * 3600 + 60;
    let broker = forcelink.server.wiring.broker.clone();
    let pacer = Arc::new(HostPacer::default());
    let mut results = Vec::new();
    for (i, &concurrency) in args.concurrency.iter().enumerate() {
        let mut config = forcelink.config.clone();
        config.heartbeat.per_host_rate = 0.0;
        config.heartbeat.batch = args.batch;
        config.heartbeat.concurrency = u32::try_from(concurrency).context("--concurrency")?;
        let settings = app::heartbeat_settings(&config);
        advance(sim, forcelink, interval).await?;
        let perf = match (&args.perf_record, i) {
            (Some(path), 0) => Some(Perf::attach(path)?),
            _ => None,
        };
        eprintln!(
            "bench: heartbeat round, batch {} concurrency {concurrency}",
            args.batch
        );
        let before = sim.counters().await?;
        let (cpu0, sim0, pg0) = (own_cpu()?, pid_cpu(sim.pid())?, postgres_cpu());
        let engine0 = threads_cpu(SQLITE_WORKER)?;
        let io0 = own_io()?;
        let switches0 = threads_switches(SQLITE_WORKER)?;
        let round_started = Instant::now();
        // On the runtime's workers, as `serve` runs the heartbeat, not on this thread.
        let tick: TickReport = {
            let (broker, pacer) = (broker.clone(), pacer.clone());
            tokio::spawn(async move { broker.heartbeat_tick(&settings, &pacer).await })
                .await
                .context("the heartbeat round panicked")??
        };
        let wall = round_started.elapsed();
        let (cpu1, sim1, pg1) = (own_cpu()?, pid_cpu(sim.pid())?, postgres_cpu());
        let engine1 = threads_cpu(SQLITE_WORKER)?;
        let io = own_io()?.since(&io0);
        let switches1 = threads_switches(SQLITE_WORKER)?;
        let profiled = perf.is_some();
        if let Some(perf) = perf {
            perf.stop()?;
        }
        let delta = sim.counters().await?.since(&before);
        let result = RoundResult {
            batch: args.batch,
            concurrency,
            wall_ms: ms(wall),
            claimed: tick.claimed,
            refreshed: tick.refreshed,
            skipped: tick.skipped,
            failed: tick.failed,
            upstream_refreshes: delta.refresh_grants,
            refresh_failures: delta.refresh_failures,
            reuse_detections: delta.reuse_detections,
            concurrent_rejections: delta.concurrent_rejections,
            forcelink_cpu_ms: ms(cpu1.saturating_sub(cpu0)),
            sqlite_engine_cpu_ms: (args.store == StoreChoice::Sqlite)
                .then(|| ms(engine1.saturating_sub(engine0))),
            sfsim_cpu_ms: ms(sim1.saturating_sub(sim0)),
            postgres_cpu_ms: (args.store == StoreChoice::Postgres)
                .then(|| ms(pg1.saturating_sub(pg0))),
            peak_rss_forcelink_kib: peak_rss_kib(None)?,
            peak_rss_sfsim_kib: peak_rss_kib(Some(sim.pid()))?,
            io,
            context_switches: switches1.1.saturating_sub(switches0.1),
            sqlite_engine_context_switches: (args.store == StoreChoice::Sqlite)
                .then(|| switches1.0.saturating_sub(switches0.0)),
            profiled,
        };
        eprintln!(
            "bench: round done in {:.2} s: {} refreshed, {} upstream, forcelink CPU {:.0} µs/refresh",
            result.wall_ms / 1000.0,
            result.refreshed,
            result.upstream_refreshes,
            result.forcelink_cpu_ms * 1000.0 / n as f64
        );
        results.push(result);
    }
    Ok(HeartbeatReport {
        benchmark: "heartbeat-round",
        store: match args.store {
            StoreChoice::Sqlite => "sqlite".into(),
            StoreChoice::Postgres => "postgres".into(),
        },
        db_dir: args.db_dir.as_ref().map(|d| d.display().to_string()),
        connections: n,
        orgs: args.orgs,
        machine: measure::machine(),
        load_average_start,
        load_average_end: measure::load_average(),
        setup_ms,
        setup_code_exchanges,
        peak_rss_forcelink_after_setup_kib: peak_after_setup,
        rounds: results,
    })
}
