//! What the benchmark reads about processes and the machine, all from `/proc` (Linux only; the
//! crate forbids `unsafe`, so no `getrusage`): user+system CPU of a process or of some of its
//! threads, peak resident memory (`VmHWM`), the open-files limit, and the machine's description.
//! CPU times are in clock ticks of 1/100 s (`USER_HZ`, 100 on every Linux architecture we run on).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow};
use serde::Serialize;

/// Linux reports CPU time in `/proc/*/stat` in units of `USER_HZ`, which is 100.
const TICKS_PER_SECOND: u64 = 100;

/// utime + stime of one `/proc/.../stat` file.
fn stat_cpu(path: &Path) -> anyhow::Result<Duration> {
    stat_ticks(path, false)
}

/// utime + stime, and with `reaped` the cutime + cstime of the children it has waited for.
fn stat_ticks(path: &Path, reaped: bool) -> anyhow::Result<Duration> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {} (the benchmark needs Linux)", path.display()))?;
    // The command name is in parentheses and may hold spaces: count fields after the last ')'.
    let after = text
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow!("unexpected format of {}", path.display()))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Field 3 (state) is fields[0]; utime is field 14, stime field 15.
    let tick = |index: usize| -> anyhow::Result<u64> {
        fields
            .get(index)
            .and_then(|f| f.parse::<u64>().ok())
            .ok_or_else(|| anyhow!("no CPU field {index} in {}", path.display()))
    };
    let mut ticks = tick(11)? + tick(12)?;
    if reaped {
        ticks += tick(13)? + tick(14)?;
    }
    Ok(Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND))
}

/// CPU time (user + system) used so far by this process, all threads, living and ended.
pub fn own_cpu() -> anyhow::Result<Duration> {
    stat_cpu(Path::new("/proc/self/stat"))
}

/// CPU time used so far by another process (e.g. the sfsim child).
pub fn pid_cpu(pid: u32) -> anyhow::Result<Duration> {
    stat_cpu(&Path::new("/proc").join(pid.to_string()).join("stat"))
}

/// As `pid_cpu`, plus the CPU of the children the process has ended and waited for: a
/// server's exited workers keep counting, in their parent.
pub fn pid_cpu_with_reaped_children(pid: u32) -> anyhow::Result<Duration> {
    stat_ticks(&Path::new("/proc").join(pid.to_string()).join("stat"), true)
}

/// CPU time used so far by this process's living threads whose name starts with `prefix`.
pub fn threads_cpu(prefix: &str) -> anyhow::Result<Duration> {
    let mut total = Duration::ZERO;
    let tasks = std::fs::read_dir("/proc/self/task").context("cannot list /proc/self/task")?;
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end().starts_with(prefix) {
            // A thread may end between listing and reading: skip it.
            if let Ok(cpu) = stat_cpu(&task.path().join("stat")) {
                total += cpu;
            }
        }
    }
    Ok(total)
}

/// Context switches so far (voluntary + involuntary, from `/proc/self/task/*/status`) of this
/// process's living threads, as (threads whose name starts with `prefix`, all threads). A thread
/// that ended took its count with it, so read this around work whose threads outlive it. Like
/// bytes moved, the count does not move with the machine's speed.
pub fn threads_switches(prefix: &str) -> anyhow::Result<(u64, u64)> {
    let (mut matching, mut all) = (0, 0);
    let tasks = std::fs::read_dir("/proc/self/task").context("cannot list /proc/self/task")?;
    for task in tasks.flatten() {
        let path = task.path().join("status");
        // A thread may end between listing and reading: skip it.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let switches = field_value(&text, &path, "voluntary_ctxt_switches:")?
            + field_value(&text, &path, "nonvoluntary_ctxt_switches:")?;
        all += switches;
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end().starts_with(prefix) {
            matching += switches;
        }
    }
    Ok((matching, all))
}

fn status_kib(path: &Path, field: &str) -> anyhow::Result<u64> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    field_value(&text, path, field)
}

/// The number after `field` on its line of a `/proc` file's `text` (a `kB` unit dropped).
fn field_value(text: &str, path: &Path, field: &str) -> anyhow::Result<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no {field} in {}", path.display()))
}

/// What this process's `read`/`write`-family system calls moved so far (`/proc/self/io`: files
/// and sockets alike, page-cache hits included). Unlike CPU time it does not move with the
/// machine's speed.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Io {
    pub read_calls: u64,
    pub read_bytes: u64,
    pub write_calls: u64,
    pub write_bytes: u64,
}

impl Io {
    pub fn since(&self, earlier: &Io) -> Io {
        Io {
            read_calls: self.read_calls.saturating_sub(earlier.read_calls),
            read_bytes: self.read_bytes.saturating_sub(earlier.read_bytes),
            write_calls: self.write_calls.saturating_sub(earlier.write_calls),
            write_bytes: self.write_bytes.saturating_sub(earlier.write_bytes),
        }
    }
}

pub fn own_io() -> anyhow::Result<Io> {
    let path = Path::new("/proc/self/io");
    let text = std::fs::read_to_string(path).context("cannot read /proc/self/io")?;
    let field = |name: &str| field_value(&text, path, name);
    Ok(Io {
        read_calls: field("syscr:")?,
        read_bytes: field("rchar:")?,
        write_calls: field("syscw:")?,
        write_bytes: field("wchar:")?,
    })
}

/// Peak resident set size in KiB (`VmHWM`) of this process (`None`) or of `pid`.
pub fn peak_rss_kib(pid: Option<u32>) -> anyhow::Result<u64> {
    let path = match pid {
        Some(pid) => Path::new("/proc").join(pid.to_string()).join("status"),
        None => Path::new("/proc/self/status").to_path_buf(),
    };
    status_kib(&path, "VmHWM:")
}

/// The soft limit on open files of this process, if readable.
pub fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The 1, 5 and 15 minute load averages: other work on the machine skews every number here.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".into())
}

/// The machine the numbers were taken on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub model: String,
    pub memory_mib: u64,
    pub kernel: String,
}

pub fn machine() -> Machine {
    let cpus = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let memory_mib = status_kib(Path::new("/proc/meminfo"), "MemTotal:").unwrap_or(0) / 1024;
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    Machine {
        cpus,
        model,
        memory_mib,
        kernel,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_cpu_and_peak_memory() {
        assert!(own_cpu().is_ok());
        assert!(peak_rss_kib(None).unwrap_or(0) > 0);
        assert!(machine().cpus >= 1);
        let (matching, all) = threads_switches("").unwrap_or((0, 0));
        assert!(
            all > 0 && matching == all,
            "every thread's name starts with \"\""
        );
    }

    #[test]
    fn an_ended_child_counts_in_its_parent_once_reaped() {
        let me = std::process::id();
        let reaped = || {
            pid_cpu_with_reaped_children(me)
                .unwrap()
                .saturating_sub(pid_cpu(me).unwrap_or(Duration::ZERO))
        };
        let before = reaped();
        // A child that burns well over one clock tick (10 ms) of CPU, then ends.
        let status = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done"])
            .status()
            .unwrap();
        assert!(status.success());
        assert!(
            reaped() > before,
            "the child's CPU is in its parent's reaped count"
        );
    }
}
