//! The whole process's CPU time (user + system, every thread), read from `/proc`.
//!
//! The precise source is the first field of `/proc/self/task/<tid>/schedstat`: nanoseconds each
//! thread has spent on a CPU. Samples keep the per-thread values, so a thread that starts during
//! a measurement counts from zero. Where schedstat is missing, the fallback is `utime + stime`
//! of `/proc/self/stat` (fields 14 and 15), in clock ticks of 10 ms (`USER_HZ` = 100), which is
//! only useful for long runs.
//!
//! Another process (the server, `server_pid=`) is read from `/proc/<pid>/stat` the same way:
//! its `utime + stime` also counts the threads it has ended, which a JVM's per-thread
//! schedstat would lose.

use std::collections::HashMap;
use std::fs;
use std::time::Duration;

/// Nanoseconds per clock tick of `/proc/self/stat` (`USER_HZ` is 100 on Linux).
const NS_PER_TICK: u64 = 10_000_000;

/// Where CPU time is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Per-thread `schedstat`, in nanoseconds.
    Schedstat,
    /// `/proc/self/stat` `utime + stime`, in 10 ms ticks.
    Stat,
}

impl Source {
    /// A short description for the log.
    pub fn describe(self) -> &'static str {
        match self {
            Source::Schedstat => "sum of /proc/self/task/*/schedstat (ns)",
            Source::Stat => "/proc/self/stat utime+stime (10 ms ticks)",
        }
    }
}

/// One reading of the process's CPU time.
#[derive(Debug, Clone)]
pub enum Sample {
    /// Nanoseconds on CPU per thread id.
    Threads(HashMap<u32, u64>),
    /// Process total in nanoseconds (tick resolution).
    Total(u64),
}

impl Sample {
    /// CPU time spent between `earlier` and this sample. Threads that ended in between lose what
    /// they spent since `earlier` (the benchmark starts no threads while measuring).
    pub fn since(&self, earlier: &Sample) -> Duration {
        let ns = match (self, earlier) {
            (Sample::Threads(now), Sample::Threads(then)) => now
                .iter()
                .map(|(tid, ns)| ns.saturating_sub(then.get(tid).copied().unwrap_or(0)))
                .sum(),
            (Sample::Total(now), Sample::Total(then)) => now.saturating_sub(*then),
            _ => 0,
        };
        Duration::from_nanos(ns)
    }

    /// CPU time spent between `earlier` and this sample by each thread name (threads of one
    /// name summed), for threads alive now; empty where per-thread times are not available.
    pub fn by_name(&self, earlier: &Sample) -> std::collections::BTreeMap<String, Duration> {
        let mut out = std::collections::BTreeMap::new();
        if let (Sample::Threads(now), Sample::Threads(then)) = (self, earlier) {
            for (tid, ns) in now {
                let name = fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
                    .map(|s| s.trim().to_string())
                    .unwrap_or_else(|_| tid.to_string());
                let spent = ns.saturating_sub(then.get(tid).copied().unwrap_or(0));
                *out.entry(name).or_insert(Duration::ZERO) += Duration::from_nanos(spent);
            }
        }
        out
    }
}

/// Reads the process's CPU time from the best source this kernel offers, or another process's
/// ([`CpuClock::of_process`]).
#[derive(Debug, Clone, Copy)]
pub struct CpuClock {
    source: Source,
    /// The process read: `None` for this one.
    pid: Option<u32>,
}

impl CpuClock {
    /// Picks schedstat if it can be read, else `/proc/self/stat`.
    pub fn new() -> anyhow::Result<CpuClock> {
        if threads_schedstat().is_some_and(|m| !m.is_empty()) {
            return Ok(CpuClock {
                source: Source::Schedstat,
                pid: None,
            });
        }
        stat_total(None).ok_or_else(|| anyhow::anyhow!("cannot read CPU time from /proc/self"))?;
        Ok(CpuClock {
            source: Source::Stat,
            pid: None,
        })
    }

    /// Reads the CPU time of process `pid` (user + system, every thread, those it has ended
    /// included) from `/proc/<pid>/stat`, in 10 ms ticks: the server's, for `server_pid=`.
    pub fn of_process(pid: u32) -> anyhow::Result<CpuClock> {
        stat_total(Some(pid)).ok_or_else(|| {
            anyhow::anyhow!("cannot read /proc/{pid}/stat: no such process, or not readable")
        })?;
        Ok(CpuClock {
            source: Source::Stat,
            pid: Some(pid),
        })
    }

    /// The source in use.
    pub fn source(&self) -> Source {
        self.source
    }

    /// Reads the CPU time now.
    pub fn sample(&self) -> Sample {
        match self.source {
            Source::Schedstat => Sample::Threads(threads_schedstat().unwrap_or_default()),
            Source::Stat => Sample::Total(stat_total(self.pid).unwrap_or(0)),
        }
    }
}

/// Nanoseconds on CPU of every live thread, by thread id.
fn threads_schedstat() -> Option<HashMap<u32, u64>> {
    let mut out = HashMap::new();
    for entry in fs::read_dir("/proc/self/task").ok()? {
        let Ok(entry) = entry else { continue };
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        // A thread may end between the listing and the read: skip it.
        let Ok(text) = fs::read_to_string(entry.path().join("schedstat")) else {
            continue;
        };
        let ns = text.split_whitespace().next()?.parse().ok()?;
        out.insert(tid, ns);
    }
    Some(out)
}

/// The `utime + stime` of this process (`None`) or of `pid`, in nanoseconds (tick resolution).
fn stat_total(pid: Option<u32>) -> Option<u64> {
    let path = pid.map_or("/proc/self/stat".to_string(), |p| format!("/proc/{p}/stat"));
    let text = fs::read_to_string(path).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces; field 3 follows.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * NS_PER_TICK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_grows_with_work() {
        let clock = CpuClock::new().expect("a /proc to read");
        let before = clock.sample();
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let spent = clock.sample().since(&before);
        assert!(spent >= Duration::from_millis(20), "spent {spent:?}");
    }

    #[test]
    fn stat_fallback_parses() {
        assert!(stat_total(None).is_some());
    }

    #[test]
    fn another_process_is_read_by_its_pid() {
        // This process, named by its pid, stands in for the server.
        let clock = CpuClock::of_process(std::process::id()).expect("our own /proc/PID/stat");
        assert_eq!(clock.source(), Source::Stat);
        let before = clock.sample();
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(100) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let spent = clock.sample().since(&before);
        assert!(spent >= Duration::from_millis(30), "spent {spent:?}");
        assert!(CpuClock::of_process(u32::MAX).is_err(), "no such process");
    }
}
