//! The benchmark's result: one serialisable record, printed as a table for people and, with
//! `--json`, as one JSON line for scripts. `passed` holds the correctness checks: exactly N
//! upstream refreshes per storm, no non-200 answer, no reuse detection, none on the hot path.

use serde::Serialize;

use super::baseline::BaselineResult;
use super::measure::Machine;
use super::storm::StormResult;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub benchmark: &'static str,
    pub store: String,
    pub connections: usize,
    pub callers_each: usize,
    pub orgs: usize,
    pub machine: Machine,
    pub open_files_limit: Option<u64>,
    /// `/proc/loadavg` when the benchmark started and when it ended (1, 5, 15 min).
    pub load_average_start: String,
    pub load_average_end: String,
    pub setup_ms: f64,
    pub setup_code_exchanges: u64,
    /// HTTP only: the same callers while every token is cached (no refresh may happen).
    pub hot_path: Option<StormResult>,
    pub storms: Vec<StormResult>,
    pub baseline: BaselineResult,
    pub peak_rss_forcelink_after_setup_kib: u64,
    pub peak_rss_forcelink_kib: u64,
    pub peak_rss_sfsim_kib: u64,
}

fn secs(ms: f64) -> String {
    format!("{:.2} s", ms / 1000.0)
}

fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

impl Report {
    fn storm_ok(&self, storm: &StormResult) -> bool {
        storm.upstream_refreshes == self.connections as u64
            && storm.non_200 == 0
            && storm.reuse_detections == 0
    }

    pub fn passed(&self) -> bool {
        let hot_ok = self
            .hot_path
            .as_ref()
            .is_none_or(|hot| hot.upstream_refreshes == 0 && hot.non_200 == 0);
        hot_ok && self.storms.iter().all(|s| self.storm_ok(s)) && self.baseline.failures == 0
    }

    /// Prints the table, then with `json` the whole report as one JSON line.
    pub fn print(&self, json: bool) -> anyhow::Result<()> {
        self.print_table();
        if json {
            println!("{}", serde_json::to_string(self)?);
        }
        Ok(())
    }

    fn print_table(&self) {
        let m = &self.machine;
        println!(
            "refresh storm: {} connections x {} callers each ({} requests), store {}",
            self.connections,
            self.callers_each,
            self.connections * self.callers_each,
            self.store
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
            "setup (not timed below): {} connections in {} orgs through the connect flow in {} ({} code exchanges)",
            self.connections,
            self.orgs,
            secs(self.setup_ms),
            self.setup_code_exchanges
        );
        if let Some(hot) = &self.hot_path {
            println!(
                "hot path (every token cached, http, {} on the wire): {} requests in {}, {} refreshes, {} non-200, forcelink CPU {:.3} ms/request",
                hot.in_flight_cap.unwrap_or(0),
                hot.callers,
                secs(hot.wall_ms),
                hot.upstream_refreshes,
                hot.non_200,
                hot.forcelink_cpu_ms / hot.callers.max(1) as f64
            );
        }
        println!();
        let n = self.connections as f64;
        let row = |label: &str, cell: &dyn Fn(&StormResult) -> String| {
            let cells: Vec<String> = self
                .storms
                .iter()
                .map(|s| format!("{:<22}", cell(s)))
                .collect();
            println!("{label:<34}{}", cells.join(""));
        };
        row("callers", &|s| match s.in_flight_cap {
            Some(cap) => format!("{} ({cap} on wire)", s.mode),
            None => s.mode.to_string(),
        });
        row("upstream refreshes (must be N)", &|s| {
            let verdict = if self.storm_ok(s) { "PASS" } else { "FAIL" };
            format!("{} {verdict}", s.upstream_refreshes)
        });
        row("non-200 answers", &|s| s.non_200.to_string());
        row("reuse detections", &|s| s.reuse_detections.to_string());
        row("concurrent rejections", &|s| {
            s.concurrent_rejections.to_string()
        });
        row("storm wall time", &|s| secs(s.wall_ms));
        row("durable rotations/s", &|s| {
            format!("{:.0}", n / (s.wall_ms / 1000.0).max(1e-9))
        });
        row("forcelink CPU per refresh", &|s| {
            format!("{:.2} ms", s.forcelink_cpu_ms / n)
        });
        row("forcelink CPU per caller", &|s| {
            format!("{:.3} ms", s.forcelink_cpu_ms / s.callers.max(1) as f64)
        });
        row("load generator CPU", &|s| secs(s.client_cpu_ms));
        row("sfsim CPU during storm", &|s| secs(s.sfsim_cpu_ms));
        row("peak RSS of this process so far", &|s| mib(s.peak_rss_kib));
        row("access_token future (bytes)", &|s| {
            s.caller_future_bytes
                .map_or_else(|| "-".into(), |b| b.to_string())
        });
        for storm in &self.storms {
            if let Some(failure) = &storm.first_failure {
                println!("first failure ({}): {failure}", storm.mode);
            }
        }
        let b = &self.baseline;
        println!();
        println!(
            "sfsim alone, {} refresh grants ({} on the wire): {} wall, {} ok, sfsim CPU {}, {} refreshes counted",
            b.requests,
            b.in_flight_cap,
            secs(b.wall_ms),
            b.requests - b.failures,
            secs(b.sfsim_cpu_ms),
            b.upstream_refreshes
        );
        if let Some(failure) = &b.first_failure {
            println!("first baseline failure: {failure}");
        }
        println!(
            "peak RSS: forcelink process {} (after setup {}; includes the load generator), sfsim {}",
            mib(self.peak_rss_forcelink_kib),
            mib(self.peak_rss_forcelink_after_setup_kib),
            mib(self.peak_rss_sfsim_kib)
        );
        println!("result: {}", if self.passed() { "PASS" } else { "FAIL" });
    }
}
