//! Measuring (wall time and CPU over one or more intervals) and reporting (percentiles, the JSON
//! line, the table).

use std::time::{Duration, Instant};

use serde::Serialize;

use wazoo_bench::cpu::{CpuClock, Sample};

/// Accumulates wall-clock and CPU time over the intervals between [`Meter::start`] and
/// [`Meter::stop`], so a workload can leave unmeasured work (clean-up) out; with a server
/// clock, the server's CPU over the same intervals too.
#[derive(Debug)]
pub struct Meter {
    clock: CpuClock,
    server: Option<CpuClock>,
    wall: Duration,
    cpu: Duration,
    server_cpu: Duration,
    open: Option<(Instant, Sample, Option<Sample>)>,
}

impl Meter {
    /// A meter at zero, reading this process's CPU time from `clock` and, if given, the
    /// server's from `server` (`server_pid=`).
    pub fn new(clock: CpuClock, server: Option<CpuClock>) -> Meter {
        Meter {
            clock,
            server,
            wall: Duration::ZERO,
            cpu: Duration::ZERO,
            server_cpu: Duration::ZERO,
            open: None,
        }
    }

    /// Starts an interval (CPU first, so the clock reads are outside the wall interval).
    pub fn start(&mut self) {
        debug_assert!(self.open.is_none(), "meter started twice");
        let server = self.server.map(|c| c.sample());
        let cpu = self.clock.sample();
        self.open = Some((Instant::now(), cpu, server));
    }

    /// Ends the current interval and adds it up.
    pub fn stop(&mut self) {
        let wall_end = Instant::now();
        let cpu_end = self.clock.sample();
        let server_end = self.server.map(|c| c.sample());
        if let Some((wall_start, cpu_start, server_start)) = self.open.take() {
            self.wall += wall_end - wall_start;
            self.cpu += cpu_end.since(&cpu_start);
            if let (Some(end), Some(start)) = (server_end, server_start) {
                self.server_cpu += end.since(&start);
            }
        }
    }

    /// Wall-clock time measured so far.
    pub fn wall(&self) -> Duration {
        self.wall
    }

    /// CPU time measured so far.
    pub fn cpu(&self) -> Duration {
        self.cpu
    }

    /// The server's CPU time measured so far; `None` without a server clock.
    pub fn server_cpu(&self) -> Option<Duration> {
        self.server.map(|_| self.server_cpu)
    }
}

/// Nanoseconds since `t`, for latency samples.
pub fn nanos_since(t: Instant) -> u64 {
    t.elapsed().as_nanos() as u64
}

/// The `q`-quantile (0..=1) of sorted samples by nearest rank, in microseconds.
pub fn percentile_us(sorted_ns: &[u64], q: f64) -> f64 {
    if sorted_ns.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted_ns.len() as f64).ceil() as usize;
    sorted_ns[rank.clamp(1, sorted_ns.len()) - 1] as f64 / 1_000.0
}

/// Rounds to `digits` decimals, to keep the JSON readable.
fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// One workload's result: one JSON line, with exactly these keys in this order (the last three
/// only when asked for: `server_pid=`, `label=`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Always `"wazoo"`.
    pub client: &'static str,
    /// The workload's name.
    pub workload: &'static str,
    /// Operations asked for.
    pub n: usize,
    /// Operations completed and measured.
    pub ops: usize,
    /// Measured wall-clock seconds.
    pub secs: f64,
    /// Operations per second.
    pub ops_s: f64,
    /// Median latency of one operation, microseconds.
    pub p50_us: f64,
    /// 99th-percentile latency of one operation, microseconds.
    pub p99_us: f64,
    /// CPU seconds (user + system) of the whole process while measuring.
    pub cpu_s: f64,
    /// CPU microseconds per operation.
    pub cpu_us_per_op: f64,
    /// CPU seconds (user + system) of the server process (`server_pid`) while measuring.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_s: Option<f64>,
    /// The server's CPU microseconds per operation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_us_per_op: Option<f64>,
    /// `label=TEXT`, as given: which run of a side-by-side comparison this line belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

impl Report {
    /// Builds a report from a meter and the latency samples (nanoseconds; sorted here).
    pub fn new(workload: &'static str, n: usize, meter: &Meter, mut lat_ns: Vec<u64>) -> Report {
        lat_ns.sort_unstable();
        let ops = lat_ns.len();
        let secs = meter.wall().as_secs_f64();
        let cpu_s = meter.cpu().as_secs_f64();
        let per = |x: f64| if ops == 0 { 0.0 } else { x / ops as f64 };
        Report {
            client: "wazoo",
            workload,
            n,
            ops,
            secs: round(secs, 6),
            ops_s: round(if secs > 0.0 { ops as f64 / secs } else { 0.0 }, 1),
            p50_us: round(percentile_us(&lat_ns, 0.50), 1),
            p99_us: round(percentile_us(&lat_ns, 0.99), 1),
            cpu_s: round(cpu_s, 6),
            cpu_us_per_op: round(per(cpu_s * 1e6), 3),
            server_cpu_s: meter.server_cpu().map(|d| round(d.as_secs_f64(), 6)),
            server_cpu_us_per_op: meter
                .server_cpu()
                .map(|d| round(per(d.as_secs_f64() * 1e6), 3)),
            label: None,
        }
    }
}

/// The human-readable summary of all reports (with the server's CPU per op when measured).
pub fn table(reports: &[Report]) -> String {
    let server = reports.iter().any(|r| r.server_cpu_us_per_op.is_some());
    let mut s = format!(
        "{:<14} | {:>10} | {:>9} | {:>9} | {:>10}",
        "workload", "ops/s", "p50 us", "p99 us", "CPU us/op"
    );
    if server {
        s.push_str(&format!(" | {:>10}", "server us"));
    }
    s.push_str(&format!(
        "\n{:-<14}-|-{:->10}-|-{:->9}-|-{:->9}-|-{:->10}",
        "", "", "", "", ""
    ));
    if server {
        s.push_str(&format!("-|-{:->10}", ""));
    }
    s.push('\n');
    for r in reports {
        s.push_str(&format!(
            "{:<14} | {:>10.0} | {:>9.1} | {:>9.1} | {:>10.2}",
            r.workload, r.ops_s, r.p50_us, r.p99_us, r.cpu_us_per_op
        ));
        if server {
            s.push_str(&format!(
                " | {:>10.2}",
                r.server_cpu_us_per_op.unwrap_or(0.0)
            ));
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).map(|x| x * 1_000).collect();
        assert_eq!(percentile_us(&v, 0.50), 50.0);
        assert_eq!(percentile_us(&v, 0.99), 99.0);
        assert_eq!(percentile_us(&v, 1.0), 100.0);
        assert_eq!(percentile_us(&[7_000], 0.99), 7.0);
        assert_eq!(percentile_us(&[], 0.5), 0.0);
    }

    /// The keys of a report's JSON line, in order (no value may hold a comma).
    fn keys(r: &Report) -> Vec<String> {
        let line = serde_json::to_string(r).unwrap();
        line.trim_matches(|c| c == '{' || c == '}')
            .split(',')
            .map(|kv| kv.split(':').next().unwrap().trim_matches('"').to_string())
            .collect()
    }

    #[test]
    fn report_keys_in_order() {
        let m = Meter::new(wazoo_bench::cpu::CpuClock::new().unwrap(), None);
        let r = Report::new("seq_get", 3, &m, vec![3, 1, 2]);
        assert_eq!(
            keys(&r),
            [
                "client",
                "workload",
                "n",
                "ops",
                "secs",
                "ops_s",
                "p50_us",
                "p99_us",
                "cpu_s",
                "cpu_us_per_op"
            ]
        );
    }

    #[test]
    fn server_cpu_and_label_follow_when_asked_for() {
        let clock = wazoo_bench::cpu::CpuClock::new().unwrap();
        let server = wazoo_bench::cpu::CpuClock::of_process(std::process::id()).unwrap();
        let mut m = Meter::new(clock, Some(server));
        m.start();
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(60) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        m.stop();
        let mut r = Report::new("seq_get", 2, &m, vec![1, 2]);
        r.label = Some("run 1".to_string());
        let k = keys(&r);
        assert_eq!(
            k[k.len() - 3..],
            ["server_cpu_s", "server_cpu_us_per_op", "label"]
        );
        let server_s = r.server_cpu_s.unwrap();
        assert!(server_s >= 0.02, "the stand-in server spent {server_s} s");
        assert_eq!(r.server_cpu_us_per_op, Some(round(server_s * 1e6 / 2.0, 3)));
        let line = serde_json::to_string(&r).unwrap();
        assert!(line.ends_with(r#","label":"run 1"}"#), "{line}");
        assert!(table(&[r]).contains("server us"));
    }
}
